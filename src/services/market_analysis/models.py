"""Market Analysis: domain types and the service's Python interface.

The interface (`MarketAnalysis`) is implemented four times: by the domain (`domain.MarketAnalysisDomain`), by the gRPC
and REST clients, and by the flagged adapter. Callers depend on this Protocol only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

from services.common.market_types import CandleSeries, TimeRange, Timeframe

MAX_CANDLES_PER_PAGE = 200_000
DEFAULT_CANDLES_PER_PAGE = 1_000
MAX_INDICATOR_BARS = 200_000
MAX_INDICATORS = 20  # per ComputeIndicators request
INDICATOR_NAMES = ("sma", "ema", "rsi", "macd", "bollinger", "atr")


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    description: str
    base: str
    quote: str
    pip_size: float
    digits: int  # decimal places prices are quoted with
    source: str  # "synthetic" or "imported"
    first_time: datetime  # first available M1 (or imported) bar
    last_time: datetime  # last available bar


@dataclass(frozen=True)
class CandlesQuery:
    symbol: str
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    limit: int = DEFAULT_CANDLES_PER_PAGE
    page_token: str = ""


@dataclass(frozen=True)
class CandlePage:
    series: CandleSeries
    next_page_token: str = ""  # empty when this page is the last


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator to compute. `params` keys per name: sma/ema/rsi/atr: period; macd: fast, slow, signal;
    bollinger: period, k. Missing params take the standard defaults."""

    name: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class IndicatorRequest:
    symbol: str
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    indicators: tuple[IndicatorSpec, ...] = ()


@dataclass(frozen=True, eq=False)
class IndicatorOutput:
    """Result of one IndicatorSpec: resolved params (defaults filled in) and its named lines, each aligned with the
    result's `time` column. Single-line indicators use the line name `value`; macd has `macd`, `signal`, `histogram`;
    bollinger has `middle`, `upper`, `lower`. Warm-up bars are NaN."""

    name: str
    params: dict[str, float]
    lines: dict[str, np.ndarray]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndicatorOutput):
            return NotImplemented
        return (
            self.name == other.name
            and self.params == other.params
            and self.lines.keys() == other.lines.keys()
            and all(np.array_equal(v, other.lines[k], equal_nan=True) for k, v in self.lines.items())
        )


@dataclass(frozen=True, eq=False)
class IndicatorResult:
    symbol: str
    timeframe: Timeframe
    time: np.ndarray  # int64 unix seconds, one per bar
    outputs: tuple[IndicatorOutput, ...]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndicatorResult):
            return NotImplemented
        return (
            self.symbol == other.symbol
            and self.timeframe == other.timeframe
            and np.array_equal(self.time, other.time)
            and self.outputs == other.outputs
        )


@dataclass(frozen=True)
class SummaryQuery:
    symbol: str
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)  # default: the last 500 bars


class TrendDirection(str, Enum):
    UP = "up"
    DOWN = "down"
    SIDEWAYS = "sideways"


class Regime(str, Enum):
    TRENDING = "trending"
    RANGING = "ranging"
    VOLATILE = "volatile"
    QUIET = "quiet"


@dataclass(frozen=True)
class MarketSummary:
    symbol: str
    timeframe: Timeframe
    as_of: datetime  # open time of the last bar analysed
    bars: int  # number of bars analysed
    last_price: float
    change_pct: float  # last close vs first close of the window, in per cent
    trend: TrendDirection
    trend_strength: float  # 0..1
    atr: float  # ATR(14), Wilder, in price units
    realized_volatility: float  # annualised std of log returns
    regime: Regime
    support: tuple[float, ...]  # nearest first, below last price
    resistance: tuple[float, ...]  # nearest first, above last price


@dataclass(frozen=True, slots=True)
class Quote:
    """One live quote (see services.market_analysis.quotes): `sequence` counts the symbol's quotes, and the same
    sequence always denotes the same quote."""

    symbol: str
    sequence: int
    time: float  # market time, unix seconds UTC
    bid: float
    ask: float
    mid: float


@dataclass(frozen=True, slots=True)
class ClosedCandle:
    """A bar as it closes in the live stream; `sequence` is the symbol's quote sequence that closed it."""

    symbol: str
    timeframe: Timeframe
    sequence: int
    time: int  # bar open time, unix seconds UTC
    open: float
    high: float
    low: float
    close: float
    volume: float


@runtime_checkable
class MarketAnalysis(Protocol):
    async def list_symbols(self) -> list[SymbolInfo]: ...

    async def get_candles(self, query: CandlesQuery) -> CandlePage: ...

    async def compute_indicators(self, request: IndicatorRequest) -> IndicatorResult: ...

    async def analyze_market(self, query: SummaryQuery) -> MarketSummary: ...
