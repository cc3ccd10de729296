"""Causal Analysis: domain types and the service's Python interface.

The interface (`CausalAnalysis`) is implemented by the domain (`domain.CausalAnalysisDomain`), by the gRPC and REST
clients and by the flagged adapter; callers depend on this Protocol only. Field names match `forex.causal_analysis.v1`
one to one; matrices are 2-D here and flat row-major on the wire.

Every analysis works on log returns `ln(close[t] / close[t-1])` of the requested symbols' bars, aligned on common
timestamps (a bar missing from any symbol is dropped from all). Each result's `range` is the span of the aligned bars
used, [first bar's open, last bar's close); `observations` is the number of returns (aligned bars - 1).
A max_lag, alpha or window of 0 means its default, as on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from services.common.market_types import TimeRange, Timeframe

MAX_LAG = 50  # upper bound of max_lag (Granger and lead-lag)
DEFAULT_GRANGER_MAX_LAG = 5
DEFAULT_LEAD_LAG_MAX_LAG = 10
DEFAULT_ALPHA = 0.05
MAX_PAIRS = 20
MIN_SYMBOLS, MAX_SYMBOLS = 2, 20
MIN_WINDOW, MAX_WINDOW = 5, 5000
DEFAULT_WINDOW = 100
MIN_BARS = 30  # fewest aligned bars any analysis accepts
BARS_PER_LAG = 5  # Granger and lead-lag need at least max_lag * BARS_PER_LAG aligned bars
MAX_GRANGER_BARS = 20_000  # Granger uses at most this many most recent aligned bars, to bound CPU
MAX_ANALYSIS_BARS = 200_000  # the other analyses use at most this many most recent aligned bars


@dataclass(frozen=True)
class SymbolPair:
    first: str
    second: str


@dataclass(frozen=True)
class GrangerRequest:
    """Granger causality of every pair in both directions, first -> second and second -> first. Lags 1..max_lag
    (1..MAX_LAG) are tested; verdicts are at false discovery rate `alpha`, 0 < alpha < 1."""

    pairs: tuple[SymbolPair, ...]
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    max_lag: int = DEFAULT_GRANGER_MAX_LAG
    alpha: float = DEFAULT_ALPHA


@dataclass(frozen=True, eq=False)
class GrangerTest:
    """Does `cause` Granger-cause `effect`: do cause's past returns improve an OLS prediction of effect's return from
    effect's own past returns? Element k-1 of each array belongs to lag k. `p_values` are the raw F-test p-values;
    `adjusted_p_values` are Benjamini–Hochberg adjusted over every F-test of the request (all pairs, directions and
    lags: choosing the best lag is itself a multiple comparison). `best_lag` has the lowest raw p-value (the shortest
    on ties); `p_value` and `adjusted_p_value` are taken at it; `significant` is adjusted_p_value <= alpha."""

    cause: str
    effect: str
    f_statistics: np.ndarray
    p_values: np.ndarray
    adjusted_p_values: np.ndarray
    best_lag: int
    p_value: float
    adjusted_p_value: float
    significant: bool
    observations: int
    range: TimeRange

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GrangerTest):
            return NotImplemented
        return _fields_equal(self, other, ("f_statistics", "p_values", "adjusted_p_values"), (
            "cause", "effect", "best_lag", "p_value", "adjusted_p_value", "significant", "observations", "range"))


@dataclass(frozen=True)
class GrangerResult:
    """One test per pair and direction, in request order: pair 0 first -> second, pair 0 second -> first, pair 1 …"""

    timeframe: Timeframe
    alpha: float
    tests: tuple[GrangerTest, ...]


@dataclass(frozen=True)
class CorrelationRequest:
    """Correlation matrices of 2..20 distinct symbols."""

    symbols: tuple[str, ...]
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)


@dataclass(frozen=True, eq=False)
class CorrelationResult:
    """`pearson[i, j]` and `spearman[i, j]` correlate the returns of symbols[i] and symbols[j] (n × n, symmetric, unit
    diagonal). Pearson: cov(a, b) / (std(a) std(b)); Spearman: Pearson of the ranks."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    pearson: np.ndarray
    spearman: np.ndarray
    observations: int
    range: TimeRange

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CorrelationResult):
            return NotImplemented
        return _fields_equal(self, other, ("pearson", "spearman"), ("symbols", "timeframe", "observations", "range"))


@dataclass(frozen=True)
class RollingCorrelationRequest:
    """Pearson correlation of a pair's returns over a trailing window of `window` returns (MIN_WINDOW..MAX_WINDOW)."""

    pair: SymbolPair
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    window: int = DEFAULT_WINDOW


@dataclass(frozen=True, eq=False)
class RollingCorrelationResult:
    """`correlation[i]` covers the `window` returns ending at the bar opened at `time[i]` (int64 unix seconds; a
    return belongs to the bar it ends at). The first window - 1 values are NaN (warm-up), as is any window in which a
    series does not move."""

    pair: SymbolPair
    timeframe: Timeframe
    window: int
    time: np.ndarray
    correlation: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RollingCorrelationResult):
            return NotImplemented
        return _fields_equal(self, other, ("time", "correlation"), ("pair", "timeframe", "window"))


@dataclass(frozen=True)
class LeadLagRequest:
    """Cross-correlation of a pair's returns over lags -max_lag..+max_lag (max_lag 1..MAX_LAG)."""

    pair: SymbolPair
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    max_lag: int = DEFAULT_LEAD_LAG_MAX_LAG


@dataclass(frozen=True, eq=False)
class LeadLagResult:
    """`cross_correlation[i]` is the Pearson correlation of first's return at bar t with second's at bar t + lags[i].
    The lead is the non-zero lag with the largest |cross-correlation|: at lag k > 0 first leads second by k bars, at
    k < 0 second leads first by -k bars. `lag` (>= 1) and `correlation` describe that peak. A peak within
    ±`noise_bound` (1.96 / sqrt(observations)) is indistinguishable from independent noise."""

    pair: SymbolPair
    timeframe: Timeframe
    leader: str
    follower: str
    lag: int
    correlation: float
    lags: np.ndarray
    cross_correlation: np.ndarray
    noise_bound: float
    observations: int
    range: TimeRange

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LeadLagResult):
            return NotImplemented
        return _fields_equal(self, other, ("lags", "cross_correlation"), (
            "pair", "timeframe", "leader", "follower", "lag", "correlation", "noise_bound", "observations", "range"))


def _fields_equal(a: object, b: object, arrays: tuple[str, ...], scalars: tuple[str, ...]) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in scalars) and all(
        np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in arrays
    )


@runtime_checkable
class CausalAnalysis(Protocol):
    async def granger_causality(self, request: GrangerRequest) -> GrangerResult: ...

    async def correlation_matrix(self, request: CorrelationRequest) -> CorrelationResult: ...

    async def rolling_correlation(self, request: RollingCorrelationRequest) -> RollingCorrelationResult: ...

    async def lead_lag(self, request: LeadLagRequest) -> LeadLagResult: ...
