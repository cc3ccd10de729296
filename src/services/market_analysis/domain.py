"""The Market Analysis domain: implements `models.MarketAnalysis` over synthetic and imported data.

Data sources: every symbol of `synthetic.SYMBOLS` (source "synthetic"), plus every symbol imported into the store of
`data_dir` (source "imported"). Imported data takes precedence: a synthetic symbol that has been imported is served
from the import only. An imported symbol is served at each imported timeframe as imported and at coarser timeframes
resampled from its finest imported timeframe; finer timeframes are rejected.

Returned arrays are contiguous int64/float64 numpy arrays; candle columns are read-only views of cached data (copy
before modifying). The async methods run their work in a worker thread (`asyncio.to_thread`), so the first request
for a symbol, which may generate or load data, does not block the event loop; `warm()` pays that cost at startup.
One exception: a page of at most INLINE_MAX_BARS bars of a symbol and timeframe already served runs on the event loop
(slicing cached columns takes microseconds, the hop to a thread and back costs more than the work).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import math
import re
import threading
from datetime import datetime
from pathlib import Path

import numpy as np

from services.common.errors import InvalidArgument, NotFound, quoted
from services.common.market_types import CandleSeries, TimeRange, Timeframe
from services.market_analysis import indicators, summary, synthetic
from services.market_analysis.models import (
    MAX_CANDLES_PER_PAGE,
    MAX_INDICATORS,
    MAX_INDICATOR_BARS,
    CandlePage,
    CandlesQuery,
    IndicatorRequest,
    IndicatorResult,
    MarketSummary,
    SummaryQuery,
    SymbolInfo,
)
from services.market_analysis.quotes import QuoteHub, QuoteSettings, SourceInfo
from services.market_analysis.store import ImportedStore, ImportedTimeframe

DEFAULT_SUMMARY_BARS = 500
_RESAMPLED_CACHE_SIZE = 64
INLINE_MAX_BARS = 2_000  # pages this small, of data already loaded, are cut on the event loop


class MarketAnalysisDomain:
    """Market data, indicators and summaries. `data_dir` holds imported data (None = synthetic data only)."""

    def __init__(self, data_dir: Path | None = None, quotes: QuoteSettings | None = None) -> None:
        self._store = ImportedStore(Path(data_dir)) if data_dir is not None else None
        self._resampled: dict[tuple, CandleSeries] = {}  # imported series resampled, keyed with the store version
        self._lock = threading.Lock()
        self.quotes = QuoteHub(self.replay_source, quotes)  # the live streams (StreamQuotes, WatchCandles)
        # (symbol, timeframe) served at least once: their data is loaded (cached), so a small page costs microseconds.
        # After an import the store reloads on first use; that one call may then read it on the event loop.
        self._loaded: set[tuple[str, object]] = set()

    # --- MarketAnalysis --------------------------------------------------------------------------------------------

    async def list_symbols(self) -> list[SymbolInfo]:
        return await asyncio.to_thread(self.symbols)

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        key = (query.symbol, query.timeframe)
        if key in self._loaded and 0 < query.limit <= INLINE_MAX_BARS:
            return self.candle_page(query)
        page = await asyncio.to_thread(self.candle_page, query)
        self._loaded.add(key)
        return page

    async def compute_indicators(self, request: IndicatorRequest) -> IndicatorResult:
        return await asyncio.to_thread(self.indicator_result, request)

    async def analyze_market(self, query: SummaryQuery) -> MarketSummary:
        return await asyncio.to_thread(self.market_summary, query)

    async def warm(self) -> None:
        """Generate the synthetic market and its timeframes now (about a second), off the event loop."""
        await asyncio.to_thread(synthetic.warm)

    # --- synchronous implementation --------------------------------------------------------------------------------

    def symbols(self) -> list[SymbolInfo]:
        """Every symbol, synthetic and imported, sorted by name."""
        infos: dict[str, SymbolInfo] = {}
        for spec in synthetic.SYMBOLS.values():
            first, last = synthetic.first_last_time(spec.symbol)
            infos[spec.symbol] = SymbolInfo(
                spec.symbol, spec.description, spec.base, spec.quote, spec.pip_size, spec.digits, "synthetic",
                first, last,
            )
        for symbol in self._store.symbols() if self._store else ():
            infos[symbol] = _imported_info(symbol, self._store.timeframes(symbol))
        return [infos[s] for s in sorted(infos)]

    def series(self, symbol: str, timeframe: Timeframe | str) -> CandleSeries:
        """The whole history of `symbol` at `timeframe` (NotFound for an unknown symbol)."""
        symbol = _symbol(symbol)
        timeframe = Timeframe.parse(timeframe)
        imported = self._store.timeframes(symbol) if self._store else []
        if imported:
            return self._imported_series(symbol, timeframe, imported)
        if symbol in synthetic.SYMBOLS:
            return synthetic.candles(symbol, timeframe)
        raise NotFound(f"unknown symbol {quoted(symbol)}; ListSymbols lists the available symbols", field="symbol")

    def replay_source(self, symbol: str) -> SourceInfo:
        """What the live streams replay for `symbol`: its finest bars (synthetic M1, or the finest imported)."""
        symbol = _symbol(symbol)
        imported = self._store.timeframes(symbol) if self._store else []
        series = self.series(symbol, imported[0].timeframe if imported else Timeframe.M1)
        info = _imported_info(symbol, imported) if imported else None
        spec = synthetic.SYMBOLS.get(symbol)
        pip, digits = (info.pip_size, info.digits) if info else (spec.pip_size, spec.digits)
        return SourceInfo(series, pip, digits)

    def candles(self, symbol: str, timeframe: Timeframe | str, range: TimeRange = TimeRange()) -> CandleSeries:
        """All bars of `symbol` at `timeframe` with range.start <= time < range.end (no paging)."""
        series = self.series(symbol, timeframe)
        return series.slice(*_bounds(series.time, range))

    def candle_page(self, query: CandlesQuery) -> CandlePage:
        """One page of bars: at most `limit` bars of the range, from its start or from where `page_token` points."""
        symbol = _symbol(query.symbol)
        timeframe = Timeframe.parse(query.timeframe)
        limit = _limit(query.limit)
        range = query.range or TimeRange()
        fingerprint = _fingerprint(symbol, timeframe, range)
        resume_at = _decode_token(query.page_token, fingerprint, range) if query.page_token else None
        series = self.series(symbol, timeframe)
        start, stop = _bounds(series.time, range)
        if resume_at is not None:
            start = max(start, int(np.searchsorted(series.time, resume_at, side="left")))
        end = min(stop, start + limit)
        token = _encode_token(int(series.time[end]), fingerprint) if end < stop else ""
        return CandlePage(series.slice(start, end), token)

    def indicator_result(self, request: IndicatorRequest) -> IndicatorResult:
        """Indicators over the bars of the range, one output per spec, in request order."""
        specs = tuple(request.indicators)
        if not specs:
            raise InvalidArgument("at least one indicator is required", field="indicators")
        if len(specs) > MAX_INDICATORS:
            raise InvalidArgument(
                f"at most {MAX_INDICATORS} indicators per request, got {len(specs)}", field="indicators"
            )
        for i, spec in enumerate(specs):
            indicators.validate(spec, i)
        series = self.candles(request.symbol, request.timeframe, request.range or TimeRange())
        if len(series) > MAX_INDICATOR_BARS:
            raise InvalidArgument(
                f"the range holds {len(series):,} {series.timeframe.value} bars, more than the {MAX_INDICATOR_BARS:,} "
                "an indicator request may cover; narrow the range or use a coarser timeframe",
                field="range",
            )
        outputs = tuple(indicators.compute(spec, series, i) for i, spec in enumerate(specs))
        return IndicatorResult(series.symbol, series.timeframe, series.time, outputs)

    def market_summary(self, query: SummaryQuery) -> MarketSummary:
        """Market summary of the range; without a range start, of the last 500 bars (before range.end, if set).
        Support and resistance levels are rounded to the symbol's quoted digits."""
        series = self.series(query.symbol, query.timeframe)
        range = query.range or TimeRange()
        start, stop = _bounds(series.time, range)
        if range.start is None:
            start = max(0, stop - DEFAULT_SUMMARY_BARS)
        return summary.summarize(series.slice(start, stop), digits=self._digits(series.symbol))

    def _digits(self, symbol: str) -> int | None:
        imported = self._store.timeframes(symbol) if self._store else []
        if imported:
            return _imported_info(symbol, imported).digits
        spec = synthetic.SYMBOLS.get(symbol)
        return spec.digits if spec else None

    # --- imported data ---------------------------------------------------------------------------------------------

    def _imported_series(self, symbol: str, timeframe: Timeframe, imported: list[ImportedTimeframe]) -> CandleSeries:
        assert self._store is not None
        if any(i.timeframe is timeframe for i in imported):
            series = self._store.load(symbol, timeframe)
            if series is not None:
                return series
        finest = imported[0].timeframe
        if timeframe.seconds < finest.seconds:
            available = ", ".join(t.value for t in Timeframe if t.seconds >= finest.seconds)
            raise InvalidArgument(
                f"{symbol} has imported data only from {finest.value} up; available timeframes: {available}",
                field="timeframe",
            )
        key = (symbol, timeframe, self._store.version)
        with self._lock:
            cached = self._resampled.get(key)
        if cached is not None:
            return cached
        source = self._store.load(symbol, finest)
        if source is None:  # removed between catalogue and load
            raise NotFound(f"unknown symbol {quoted(symbol)}; ListSymbols lists the available symbols", field="symbol")
        resampled = synthetic.resample(source, timeframe)
        for column in CandleSeries.COLUMNS:
            getattr(resampled, column).flags.writeable = False
        with self._lock:
            for stale in [k for k in self._resampled if k[2] != key[2]]:
                del self._resampled[stale]
            while len(self._resampled) >= _RESAMPLED_CACHE_SIZE:
                del self._resampled[next(iter(self._resampled))]  # oldest first
            self._resampled[key] = resampled
        return resampled


# --- helpers ---------------------------------------------------------------------------------------------------------


def _symbol(symbol: str) -> str:
    normalized = str(symbol or "").strip().upper()
    if not normalized:
        raise InvalidArgument("symbol is required, e.g. EURUSD", field="symbol")
    return normalized


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= MAX_CANDLES_PER_PAGE:
        raise InvalidArgument(f"limit must be between 1 and {MAX_CANDLES_PER_PAGE:,}, got {quoted(limit)}",
                              field="limit")
    return int(limit)


def _ceil_unix(dt: datetime) -> int:
    return math.ceil(dt.timestamp())


def _bounds(time: np.ndarray, range: TimeRange) -> tuple[int, int]:
    """Index bounds [start, stop) of the bars with range.start <= time < range.end."""
    start = 0 if range.start is None else int(np.searchsorted(time, _ceil_unix(range.start), side="left"))
    stop = len(time) if range.end is None else int(np.searchsorted(time, _ceil_unix(range.end), side="left"))
    return start, max(start, stop)


def _imported_info(symbol: str, imported: list[ImportedTimeframe]) -> SymbolInfo:
    finest = imported[0]
    known = synthetic.SYMBOLS.get(symbol)
    if known is not None:
        base, quote, description = known.base, known.quote, known.description
        pip_size, digits = known.pip_size, known.digits
    else:
        is_pair = len(symbol) == 6 and symbol.isalpha()
        base, quote = (symbol[:3], symbol[3:]) if is_pair else (symbol, "")
        description = f"{base} / {quote} (imported)" if is_pair else f"{symbol} (imported)"
        digits = max(i.digits for i in imported)
        # Pips are the 4th decimal, or the 2nd for JPY quotes and instruments quoted with few decimals.
        pip_size = 0.01 if quote == "JPY" or digits <= 3 else 0.0001
    return SymbolInfo(
        symbol, description, base, quote, pip_size, digits, "imported", finest.first_time, finest.last_time
    )


# --- page tokens -----------------------------------------------------------------------------------------------------
# A token is base64url("1:<next bar time>:<fingerprint>") without padding. The fingerprint ties it to the query
# (symbol, timeframe, range); the limit may change from page to page.

_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]{1,200}")
_TOKEN_BODY = re.compile(r"1:(-?\d{1,19}):([0-9a-f]{16})")


@functools.lru_cache(maxsize=4096)  # a hash per page asked for; the same few queries come again and again
def _fingerprint(symbol: str, timeframe: Timeframe, range: TimeRange) -> str:
    bounds = [b.isoformat() if b is not None else "" for b in (range.start, range.end)]
    text = "|".join((symbol, timeframe.value, *bounds))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_token(next_time: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(f"1:{next_time}:{fingerprint}".encode()).rstrip(b"=").decode("ascii")


def _decode_token(token: str, fingerprint: str, range: TimeRange) -> int:
    """The bar time a token resumes at; InvalidArgument(field='page_token') if malformed or from another query."""
    malformed = InvalidArgument(
        "malformed page token: pass the next_page_token of the previous response unchanged", field="page_token"
    )
    if not isinstance(token, str) or not _TOKEN_ALPHABET.fullmatch(token):
        raise malformed
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise malformed from None
    match = _TOKEN_BODY.fullmatch(body)
    if not match:
        raise malformed
    next_time, token_fingerprint = int(match.group(1)), match.group(2)
    outside = (range.start is not None and next_time < _ceil_unix(range.start)) or (
        range.end is not None and next_time >= _ceil_unix(range.end)
    )
    if token_fingerprint != fingerprint or outside:
        raise InvalidArgument(
            "the page token belongs to a different query: keep symbol, timeframe and range as in the first request",
            field="page_token",
        )
    return next_time
