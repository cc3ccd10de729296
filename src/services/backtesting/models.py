"""Backtesting: domain types and the service's Python interface.

The interface (`Backtesting`) is implemented by the domain (`domain.BacktestingDomain`), by the gRPC and REST clients
and by the flagged adapter; callers depend on this Protocol only. Field names match `forex.backtesting.v1` one to one.
Ratios (returns, drawdown, win rate, exposure) are fractions: 0.05 means 5 %. Money is in the symbol's quote currency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

from services.common.market_types import TimeRange, Timeframe

STRATEGY_DEFAULTS: dict[str, dict[str, float]] = {
    "sma_cross": {"fast": 10, "slow": 20},
    "rsi_reversion": {"period": 14, "lower": 30, "upper": 70},
    "bollinger_breakout": {"period": 20, "k": 2},
}
DEFAULT_INITIAL_EQUITY = 10_000.0
MAX_BACKTEST_BARS = 500_000
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Bounds of the money inputs: beyond them a backtest means nothing and its arithmetic overflows (1e308 was accepted).
MAX_INITIAL_EQUITY = 1e12
MAX_SPREAD_PIPS = 1_000.0
MAX_COMMISSION_PER_UNIT = 1_000.0
MAX_COMMISSION_PCT = 100.0
COST_BOUNDS = {"spread_pips": MAX_SPREAD_PIPS, "commission_per_unit": MAX_COMMISSION_PER_UNIT,
               "commission_pct": MAX_COMMISSION_PCT}


@dataclass(frozen=True)
class BacktestRequest:
    """One backtest to run. `params` holds the strategy's parameters (see STRATEGY_DEFAULTS); omitted ones take the
    defaults. Costs: a buy fills `spread_pips / 2` pips above the bar's price, a sell as far below; every fill pays
    `commission_per_unit` per unit plus `commission_pct` per cent of its notional. A non-empty `idempotency_key` makes
    the call safe to retry: the first result stored under the key is returned instead of running again."""

    symbol: str
    strategy: str
    params: dict[str, float] = field(default_factory=dict)
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    initial_equity: float = DEFAULT_INITIAL_EQUITY
    spread_pips: float = 0.0
    commission_per_unit: float = 0.0
    commission_pct: float = 0.0
    idempotency_key: str = ""


class Side(str, Enum):
    LONG = "long"
    SHORT = "short"


@dataclass(frozen=True)
class Trade:
    """One round trip. Times are fill times: a bar's open time, or the last bar's close time for the final exit. Prices
    include the half spread; `pnl` is net of both commissions; `trade_return` is pnl / equity at entry."""

    side: Side
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    units: float
    pnl: float
    trade_return: float


@dataclass(frozen=True, eq=False)
class EquityCurve:
    """Equity at each bar's close, marked to the close (the last bar after the final exit's costs)."""

    time: np.ndarray  # int64 unix seconds, bar open times
    equity: np.ndarray  # float64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EquityCurve):
            return NotImplemented
        return np.array_equal(self.time, other.time) and np.array_equal(self.equity, other.equity)


@dataclass(frozen=True)
class BacktestMetrics:
    """Performance of a backtest. A metric that would divide by zero (no trades, no losing trades, flat equity)
    or overflow is None. Sharpe and Sortino use per-bar equity returns annualised with the timeframe's bars per year."""

    total_return: float  # final equity / initial equity - 1
    annualized_return: float | None  # (1 + total_return) ** (bars_per_year / bars) - 1; None on overflow
    sharpe_ratio: float | None  # mean / sample std of per-bar returns * sqrt(bars_per_year)
    sortino_ratio: float | None  # mean / sqrt(mean(min(r, 0)^2)) * sqrt(bars_per_year)
    max_drawdown: float  # largest fall from a running equity peak, as a fraction of the peak
    win_rate: float | None  # share of trades with pnl > 0
    profit_factor: float | None  # gross profit / gross loss
    trade_count: int
    average_trade_pnl: float | None
    average_trade_return: float | None
    exposure: float  # share of bars a position was held through
    final_equity: float


@dataclass(frozen=True)
class BacktestSummary:
    """A stored backtest without its trades and equity curve. `params` has defaults filled in; `range` is the span of
    the bars actually tested, [first bar's open, last bar's close)."""

    id: str
    created_at: datetime
    symbol: str
    strategy: str
    params: dict[str, float]
    timeframe: Timeframe
    range: TimeRange
    initial_equity: float
    spread_pips: float
    commission_per_unit: float
    commission_pct: float
    bars: int
    metrics: BacktestMetrics


@dataclass(frozen=True)
class Backtest:
    summary: BacktestSummary
    trades: tuple[Trade, ...]
    equity_curve: EquityCurve


@dataclass(frozen=True)
class ListBacktestsQuery:
    """Filters (empty / None = any) and paging. Newest first; `created_after` is inclusive, `created_before` exclusive.
    `page_size` 1..100, 0 means the default (20)."""

    symbol: str = ""
    strategy: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""


@dataclass(frozen=True)
class BacktestPage:
    backtests: tuple[BacktestSummary, ...]
    next_page_token: str = ""  # empty when this page is the last


@runtime_checkable
class Backtesting(Protocol):
    async def run_backtest(self, request: BacktestRequest) -> Backtest: ...

    async def get_backtest(self, backtest_id: str) -> Backtest: ...

    async def list_backtests(self, query: ListBacktestsQuery) -> BacktestPage: ...

    async def delete_backtest(self, backtest_id: str) -> None: ...
