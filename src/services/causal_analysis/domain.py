"""The Causal Analysis domain: implements `models.CausalAnalysis` over candles from a `MarketAnalysis`.

Each call validates its request, fetches the symbols' bars through the injected `MarketAnalysis` (every page,
concurrently per symbol), aligns them on common timestamps, keeps the most recent MAX_GRANGER_BARS (Granger) or
MAX_ANALYSIS_BARS (the others) aligned bars and runs the statistics of `analysis` in a worker thread, so an event loop
serving network calls is never blocked by them. Errors of the market service (NotFound for an unknown symbol, …)
propagate unchanged.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.causal_analysis import analysis
from services.causal_analysis.models import (
    BARS_PER_LAG,
    DEFAULT_ALPHA,
    DEFAULT_GRANGER_MAX_LAG,
    DEFAULT_LEAD_LAG_MAX_LAG,
    DEFAULT_WINDOW,
    MAX_ANALYSIS_BARS,
    MAX_GRANGER_BARS,
    MAX_LAG,
    MAX_PAIRS,
    MAX_SYMBOLS,
    MAX_WINDOW,
    MIN_BARS,
    MIN_SYMBOLS,
    MIN_WINDOW,
    CorrelationRequest,
    CorrelationResult,
    GrangerRequest,
    GrangerResult,
    GrangerTest,
    LeadLagRequest,
    LeadLagResult,
    RollingCorrelationRequest,
    RollingCorrelationResult,
    SymbolPair,
)
from services.common.errors import InvalidArgument, quoted
from services.common.market_types import TimeRange, Timeframe, from_unix
from services.market_analysis.models import MAX_CANDLES_PER_PAGE, CandlesQuery, MarketAnalysis

Closes = dict[str, tuple[np.ndarray, np.ndarray]]  # symbol -> (bar open times, closes)


@dataclass(frozen=True)
class _Aligned:
    """Bars of several symbols at their common timestamps, as log returns (column i belongs to symbols[i])."""

    symbols: tuple[str, ...]
    time: np.ndarray  # open times of the aligned bars; returns[j] ends at the bar opened at time[j + 1]
    returns: np.ndarray
    range: TimeRange

    @property
    def observations(self) -> int:
        return len(self.returns)


class CausalAnalysisDomain:
    """Granger causality, correlations and lead-lag of FX symbols, on candles served by `market`."""

    def __init__(self, market: MarketAnalysis) -> None:
        self._market = market

    async def granger_causality(self, request: GrangerRequest) -> GrangerResult:
        pairs = _pairs(request.pairs)
        timeframe = Timeframe.parse(request.timeframe)
        # 0 means the default, as on the wire (proto3 cannot tell an explicit 0 from an unset field).
        max_lag = _bounded_int(request.max_lag or DEFAULT_GRANGER_MAX_LAG, 1, MAX_LAG, "max_lag")
        alpha = _alpha(request.alpha or DEFAULT_ALPHA)
        symbols = list(dict.fromkeys(s for p in pairs for s in (p.first, p.second)))
        closes = await self._closes(symbols, timeframe, request.range)
        return await asyncio.to_thread(_granger, closes, pairs, timeframe, max_lag, alpha)

    async def correlation_matrix(self, request: CorrelationRequest) -> CorrelationResult:
        symbols = _symbols(request.symbols)
        timeframe = Timeframe.parse(request.timeframe)
        closes = await self._closes(symbols, timeframe, request.range)
        return await asyncio.to_thread(_correlation_matrix, closes, symbols, timeframe)

    async def rolling_correlation(self, request: RollingCorrelationRequest) -> RollingCorrelationResult:
        pair = _pair(request.pair, "pair")
        timeframe = Timeframe.parse(request.timeframe)
        window = _bounded_int(request.window or DEFAULT_WINDOW, MIN_WINDOW, MAX_WINDOW, "window")
        closes = await self._closes([pair.first, pair.second], timeframe, request.range)
        return await asyncio.to_thread(_rolling_correlation, closes, pair, timeframe, window)

    async def lead_lag(self, request: LeadLagRequest) -> LeadLagResult:
        pair = _pair(request.pair, "pair")
        timeframe = Timeframe.parse(request.timeframe)
        max_lag = _bounded_int(request.max_lag or DEFAULT_LEAD_LAG_MAX_LAG, 1, MAX_LAG, "max_lag")
        closes = await self._closes([pair.first, pair.second], timeframe, request.range)
        return await asyncio.to_thread(_lead_lag, closes, pair, timeframe, max_lag)

    async def _closes(self, symbols: Sequence[str], timeframe: Timeframe, range: TimeRange) -> Closes:
        """(time, close) of each symbol's bars in the range, fetched concurrently. If some fetches fail, the error of
        the first failing symbol in `symbols` order is raised, so the outcome does not depend on timing."""
        fetched = await asyncio.gather(
            *(self._symbol_closes(s, timeframe, range) for s in symbols), return_exceptions=True
        )
        for outcome in fetched:
            if isinstance(outcome, BaseException):
                raise outcome
        return dict(zip(symbols, fetched))  # type: ignore[arg-type]

    async def _symbol_closes(self, symbol: str, timeframe: Timeframe, range: TimeRange) -> tuple[np.ndarray, ...]:
        """One symbol's (time, close), following next_page_token until the range is exhausted."""
        times, closes, token = [], [], ""
        while True:
            page = await self._market.get_candles(CandlesQuery(symbol, timeframe, range, MAX_CANDLES_PER_PAGE, token))
            times.append(page.series.time)
            closes.append(page.series.close)
            token = page.next_page_token
            if not token:
                return np.concatenate(times), np.concatenate(closes)


# --- computations (run in a worker thread) ---------------------------------------------------------------------------


def _aligned(
    closes: Closes,
    symbols: Sequence[str],
    timeframe: Timeframe,
    needed: int,
    cap: int,
    purpose: str,
) -> _Aligned:
    """The symbols' most recent `cap` bars at common timestamps, as returns; InvalidArgument(field="range") when fewer
    than `needed` bars align or a symbol's close never moves."""
    time, matrix = analysis.align([closes[s][0] for s in symbols], [closes[s][1] for s in symbols])
    if len(time) < needed:
        raise InvalidArgument(
            f"only {len(time)} {timeframe.value} bars of {', '.join(symbols)} share a timestamp in the range; "
            f"{purpose} needs at least {needed}: widen the range or use a finer timeframe",
            field="range",
        )
    time, matrix = time[-cap:], matrix[-cap:]
    for symbol, column in zip(symbols, matrix.T):
        if np.ptp(column) == 0:
            raise InvalidArgument(f"{symbol}'s close does not move in the range; its returns are all zero",
                                  field="range")
    span = TimeRange(from_unix(time[0]), from_unix(time[-1] + timeframe.seconds))
    return _Aligned(tuple(symbols), time, analysis.log_returns(matrix), span)


def _granger(closes: Closes, pairs: Sequence[SymbolPair], timeframe: Timeframe, max_lag: int, alpha: float
             ) -> GrangerResult:
    """Both directions of every pair, each pair on its own aligned bars; one Benjamini–Hochberg family over all the
    F-tests."""
    needed = max(MIN_BARS, BARS_PER_LAG * max_lag)
    samples = [_aligned(closes, (p.first, p.second), timeframe, needed, MAX_GRANGER_BARS,
                        f"Granger with max_lag {max_lag}") for p in pairs]
    directions = [(sample, c, 1 - c) for sample in samples for c in (0, 1)]
    f_tests = [analysis.granger_f_tests(s.returns[:, c], s.returns[:, e], max_lag) for s, c, e in directions]
    adjusted = analysis.benjamini_hochberg(np.array([p for _, p in f_tests]))
    tests = []
    for (sample, c, e), (f, p), q in zip(directions, f_tests, adjusted):
        best = int(np.argmin(p))
        tests.append(GrangerTest(
            sample.symbols[c], sample.symbols[e], f, p, q, best + 1, float(p[best]), float(q[best]),
            bool(q[best] <= alpha), sample.observations, sample.range,
        ))
    return GrangerResult(timeframe, alpha, tuple(tests))


def _correlation_matrix(closes: Closes, symbols: tuple[str, ...], timeframe: Timeframe) -> CorrelationResult:
    sample = _aligned(closes, symbols, timeframe, MIN_BARS, MAX_ANALYSIS_BARS, "a correlation matrix")
    return CorrelationResult(
        symbols, timeframe, analysis.pearson_matrix(sample.returns), analysis.spearman_matrix(sample.returns),
        sample.observations, sample.range,
    )


def _rolling_correlation(closes: Closes, pair: SymbolPair, timeframe: Timeframe, window: int
                         ) -> RollingCorrelationResult:
    sample = _aligned(closes, (pair.first, pair.second), timeframe, max(MIN_BARS, window + 1), MAX_ANALYSIS_BARS,
                      f"a rolling correlation with window {window}")
    correlation = analysis.rolling_correlation(sample.returns[:, 0], sample.returns[:, 1], window)
    return RollingCorrelationResult(pair, timeframe, window, sample.time[1:], correlation)


def _lead_lag(closes: Closes, pair: SymbolPair, timeframe: Timeframe, max_lag: int) -> LeadLagResult:
    sample = _aligned(closes, (pair.first, pair.second), timeframe, max(MIN_BARS, BARS_PER_LAG * max_lag),
                      MAX_ANALYSIS_BARS, f"lead-lag with max_lag {max_lag}")
    lags, correlations = analysis.cross_correlation(sample.returns[:, 0], sample.returns[:, 1], max_lag)
    lead = analysis.strongest_lead(lags, correlations)
    leader, follower = (pair.first, pair.second) if lead > 0 else (pair.second, pair.first)
    return LeadLagResult(
        pair, timeframe, leader, follower, abs(lead), float(correlations[lags == lead][0]), lags, correlations,
        analysis.white_noise_bound(sample.observations), sample.observations, sample.range,
    )


# --- request validation ----------------------------------------------------------------------------------------------


def _symbol(value: str, field: str) -> str:
    symbol = str(value or "").strip().upper()
    if not symbol:
        raise InvalidArgument("a symbol is required, e.g. EURUSD", field=field)
    return symbol


def _pair(pair: SymbolPair, field: str) -> SymbolPair:
    first, second = _symbol(pair.first, f"{field}.first"), _symbol(pair.second, f"{field}.second")
    if first == second:
        raise InvalidArgument(f"a pair needs two different symbols, got {first} twice", field=field)
    return SymbolPair(first, second)


def _pairs(pairs: Sequence[SymbolPair]) -> tuple[SymbolPair, ...]:
    if not 1 <= len(pairs) <= MAX_PAIRS:
        raise InvalidArgument(f"between 1 and {MAX_PAIRS} pairs are required, got {len(pairs)}", field="pairs")
    checked: list[SymbolPair] = []
    for i, pair in enumerate(pairs):
        pair = _pair(pair, f"pairs[{i}]")
        for j, earlier in enumerate(checked):
            if {pair.first, pair.second} == {earlier.first, earlier.second}:
                raise InvalidArgument(
                    f"pairs[{i}] repeats pairs[{j}] ({earlier.first}/{earlier.second}); both directions are tested "
                    "for every pair", field=f"pairs[{i}]",
                )
        checked.append(pair)
    return tuple(checked)


def _symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    if not MIN_SYMBOLS <= len(symbols) <= MAX_SYMBOLS:
        raise InvalidArgument(
            f"between {MIN_SYMBOLS} and {MAX_SYMBOLS} symbols are required, got {len(symbols)}", field="symbols"
        )
    checked: list[str] = []
    for i, value in enumerate(symbols):
        symbol = _symbol(value, f"symbols[{i}]")
        if symbol in checked:
            raise InvalidArgument(f"{symbol} is listed twice", field=f"symbols[{i}]")
        checked.append(symbol)
    return tuple(checked)


def _bounded_int(value: int, low: int, high: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high:,}, got {quoted(value)}", field=field)
    return int(value)


def _alpha(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InvalidArgument(f"alpha must be strictly between 0 and 1, got {quoted(value)}", field="alpha")
    return float(value)
