"""How `fxplat rollout status` and `history` print: tables for people, JSON for machines."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from rollout import audit
from rollout.controller import summary
from rollout.model import Rollout
from rollout.store import AuditEntry, Event

_STATE_STYLE = {"running": "cyan", "paused": "yellow", "promoted": "green", "rolled_back": "bold red",
                "aborted": "red"}


def _when(at: datetime | None) -> str:
    return f"{at:%H:%M:%S}" if at else "-"


def print_status(rollouts: list[Rollout], last_checks: dict[int, list[dict[str, Any]]],
                 holders: dict[str, str]) -> None:
    if not rollouts:
        Console().print("no rollouts yet: `fxplat rollout start SERVICE` starts one")
        return
    table = Table(title="rollouts (newest per service)")
    for col in ("id", "target", "state", "gRPC %", "step", "failed checks", "next check", "controller",
                "last analysis"):
        table.add_column(col)
    for r in rollouts:
        checks = last_checks.get(r.id, [])
        shown = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAIL'}" for c in checks if "passed" in c) or "-"
        style = _STATE_STYLE.get(r.state, "")
        table.add_row(str(r.id), r.target, f"[{style}]{r.state}[/]", str(r.percent),
                      f"{r.step_index + 1}/{len(r.steps)} ({','.join(map(str, r.steps))})",
                      f"{r.failed_checks}/{r.max_failed_checks}", _when(r.next_check_at),
                      holders.get(r.service, "none"), shown)
    Console(width=160).print(table)


def print_history(rollouts: list[Rollout], events: list[Event], entries: list[AuditEntry]) -> None:
    console = Console(width=160)
    targets = {r.id: r.target for r in rollouts}
    table = Table(title="rollout timeline")
    for col in ("at (UTC)", "rollout", "event", "gRPC %", "by", "what"):
        table.add_column(col)
    for e in events:
        what = e.message
        failed = [c for c in e.checks if c.get("passed") is False]
        if e.kind == "analysis":
            what += ": " + "; ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'} {c['value']}"
                                     for c in e.checks if "passed" in c)
        style = "red" if failed or e.kind in ("rolled_back", "aborted") else ""
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", f"{e.rollout_id} {targets.get(e.rollout_id, '')}",
                      f"[{style}]{e.kind}[/]" if style else e.kind, str(e.percent), e.actor, what)
    console.print(table)
    audit_table = Table(title="flag audit log")
    for col in ("at (UTC)", "who", "flag", "old -> new", "why"):
        audit_table.add_column(col)
    for a in entries:
        audit_table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.actor, a.flag, f"{a.old} -> {a.new}", a.why)
    console.print(audit_table)


def history_json(rollouts: list[Rollout], events: list[Event], entries: list[AuditEntry]) -> dict[str, Any]:
    return {"rollouts": [summary(r) for r in rollouts],
            "events": [{"rollout_id": e.rollout_id, "at": e.at.isoformat(), "kind": e.kind, "percent": e.percent,
                        "message": e.message, "checks": e.checks, "actor": e.actor} for e in events],
            "audit": [audit.to_json(a) for a in entries]}
