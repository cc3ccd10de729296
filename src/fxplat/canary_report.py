"""`fxplat canary report`: the stored shadow comparisons of the data directory, as a table or JSON."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adapters import canary

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_VERDICT_STYLE = {"promote": "green", "hold": "yellow", "roll back": "bold red"}


def since(text: str) -> datetime | None:
    """'30m' -> now minus 30 minutes; 'all' -> None (everything)."""
    if text == "all":
        return None
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ValueError(f"--since {text!r}: expected a duration such as 90s, 30m, 6h or 2d, or 'all'")
    return datetime.now(timezone.utc) - timedelta(**{_UNITS[match[2]]: int(match[1])})


async def load(data_dir: Path, start: datetime | None, service: str | None) -> list[canary.MethodReport]:
    store = canary.CanaryStore(canary.database_url(data_dir))
    try:
        return canary.report(await store.comparisons(since=start, service=service))
    finally:
        await store.close()


def to_json(rows: list[canary.MethodReport], since_text: str) -> dict:
    return {"since": since_text, "methods": [{
        "service": r.service, "method": r.method, "samples": r.samples, "mismatches": r.mismatches,
        "mismatch_rate": r.mismatch_rate, "error_rate": r.error_rate, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
        "verdict": r.verdict, "reason": r.reason,
        "worst": [{"at": c.at.isoformat(), "primary": c.primary_transport, "primary_code": c.primary_code,
                   "shadow_code": c.shadow_code,
                   "diffs": [{"path": d.path, "primary": d.primary, "shadow": d.shadow} for d in c.diffs]}
                  for c in r.worst]} for r in rows]}


def print_report(rows: list[canary.MethodReport], since_text: str) -> None:
    console = Console()
    if not rows:
        console.print(f"no shadow comparisons in the last {since_text}: set a service's shadow share "
                      "(fxplat flags set SERVICE --shadow 10) and let traffic run")
        return
    table = Table(title=f"Canary: shadow comparisons, last {since_text}")
    for col in ("service", "method", "samples", "mismatch", "errors gRPC / REST", "p50 gRPC / REST ms",
                "p99 gRPC / REST ms", "verdict"):
        table.add_column(col, justify="right" if col in ("samples", "mismatch") else "left")
    for r in rows:
        style = _VERDICT_STYLE[r.verdict]
        table.add_row(r.service, r.method, str(r.samples), f"{r.mismatch_rate:.2%}",
                      f"{_pct(r.error_rate, 'grpc')} / {_pct(r.error_rate, 'rest')}",
                      f"{_ms(r.p50_ms, 'grpc')} / {_ms(r.p50_ms, 'rest')}",
                      f"{_ms(r.p99_ms, 'grpc')} / {_ms(r.p99_ms, 'rest')}",
                      f"[{style}]{r.verdict}[/] ({r.reason})")
    console.print(table)
    for r in rows:
        for c in r.worst:
            console.print(f"[bold]{r.service}.{r.method}[/] at {c.at:%Y-%m-%d %H:%M:%S} "
                          f"({c.primary_transport} primary):")
            for d in c.diffs:
                console.print(f"    {d.path}: {c.primary_transport} {d.primary}  vs  {c.shadow_transport} {d.shadow}")


def _pct(rates: dict[str, float], transport: str) -> str:
    return f"{rates[transport]:.1%}" if transport in rates else "-"


def _ms(values: dict[str, float], transport: str) -> str:
    return f"{values[transport]:.1f}" if transport in values else "-"
