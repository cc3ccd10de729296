"""`fxplat analyze`: one analysis through the coordinator's flagged adapter, rendered as rich tables (or JSON)."""
from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table

from adapters.connect import connect
from adapters.core import CallRecord, last_call
from transport import config
from fxplat.credentials import client_factory
from services.analysis_coordinator.models import Analysis, AnalysisRequest, CallStatus
from services.common.errors import InvalidArgument


def parse_params(items: list[str]) -> dict[str, float]:
    """["fast=10", "slow=20"] -> {"fast": 10.0, "slow": 20.0}; InvalidArgument naming the bad item."""
    params: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidArgument(f"--param {item!r}: expected NAME=NUMBER, e.g. fast=10", field="param")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise InvalidArgument(f"--param {item!r}: {value!r} is not a number", field="param") from None
    return params


async def run(request: AnalysisRequest, *, flags, transport: str) -> tuple[Analysis, CallRecord | None]:
    async with client_factory() as factory:
        adapter = connect("analysis_coordinator", config.endpoint("analysis_coordinator"), factory=factory,
                          flags=flags, caller="cli", force=None if transport == "auto" else transport,
                          budget_s=120.0)  # a whole-history analysis of several symbols takes seconds, not 30
        analysis = await adapter.run_analysis(request)
        return analysis, last_call.get()


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f}%"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def render(a: Analysis) -> Group:
    r = a.request
    failed = a.failed_calls
    parts: list = [
        f"[bold]Analysis {a.id}[/] at {a.created_at:%Y-%m-%d %H:%M:%S} UTC — {', '.join(r.symbols)} "
        f"{r.timeframe.value}, {r.strategy} {r.params}",
        f"[{'green' if not failed else 'yellow'}]{len(a.calls) - failed}/{len(a.calls)} component calls succeeded[/]",
    ]
    if a.market:
        t = Table(title="Market", title_justify="left")
        for col in ("symbol", "last", "change", "trend", "R²", "regime", "ATR", "vol (ann.)"):
            t.add_column(col, justify="left" if col in ("symbol", "trend", "regime") else "right")
        for s in a.market:
            t.add_row(s.symbol, _num(s.last_price, ".5g"), _pct(s.change_pct / 100), s.trend.value,
                      _num(s.trend_strength, ".2f"), s.regime.value, _num(s.atr, ".5g"), _share(s.realized_volatility))
        parts.append(t)
    if a.correlations is not None:
        c = a.correlations
        t = Table(title=f"Correlation of returns (Pearson), {c.observations} returns", title_justify="left")
        t.add_column("")
        for s in c.symbols:
            t.add_column(s, justify="right")
        for i, s in enumerate(c.symbols):
            t.add_row(s, *(_num(v, "+.3f") for v in c.pearson[i]))
        parts.append(t)
    if a.granger is not None:
        g = a.granger
        t = Table(title=f"Granger causality (Benjamini-Hochberg, alpha {g.alpha:g})", title_justify="left")
        for col in ("cause → effect", "best lag", "p-value", "adjusted p", "verdict"):
            t.add_column(col, justify="left" if col in ("cause → effect", "verdict") else "right")
        for test in g.tests:
            t.add_row(f"{test.cause} → {test.effect}", str(test.best_lag), f"{test.p_value:.3g}",
                      f"{test.adjusted_p_value:.3g}", "[green]causes[/]" if test.significant else "no evidence")
        parts.append(t)
    if a.backtests:
        t = Table(title=f"Backtests: {r.strategy}", title_justify="left")
        for col in ("symbol", "bars", "total return", "annualised", "Sharpe", "max drawdown", "trades", "win rate",
                    "final equity"):
            t.add_column(col, justify="left" if col == "symbol" else "right")
        for b in a.backtests:
            m = b.summary.metrics
            t.add_row(b.summary.symbol, str(b.summary.bars), _pct(m.total_return), _pct(m.annualized_return),
                      _num(m.sharpe_ratio, ".2f"), _share(m.max_drawdown), str(m.trade_count), _share(m.win_rate),
                      _num(m.final_equity, ",.2f"))
        parts.append(t)
    t = Table(title="Component calls", title_justify="left")
    for col in ("component", "method", "status", "transport", "fallback", "ms", "error"):
        t.add_column(col, justify="right" if col == "ms" else "left")
    for call in a.calls:
        ok = call.status is CallStatus.OK
        t.add_row(call.component, call.method, "[green]ok[/]" if ok else "[red]failed[/]",
                  call.transport or "-", call.fallback_reason or "-", f"{call.latency_ms:.0f}",
                  f"{call.error_code}: {call.error_message}" if not ok else "")
    parts.append(t)
    return Group(*parts)


def print_report(a: Analysis, console: Console | None = None) -> None:
    (console or Console()).print(render(a))
