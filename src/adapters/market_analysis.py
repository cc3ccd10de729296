"""Market Analysis through the flags: implements the MarketAnalysis interface over whichever transport each call gets."""
from __future__ import annotations

from adapters.core import FlaggedCaller, MethodPolicy
from adapters.streaming import ResumableStream, StreamingAdapter
from services.market_analysis.models import (
    DEFAULT_CANDLES_PER_PAGE,
    CandlePage,
    CandlesQuery,
    IndicatorRequest,
    IndicatorResult,
    MarketAnalysis,
    MarketSummary,
    SummaryQuery,
    SymbolInfo,
)

# A page of at most the default size is hedged like a lookup (as JSON it costs a few times the protobuf page, not 25x).
HEDGED_PAGE_BARS = DEFAULT_CANDLES_PER_PAGE


def _small_page(query: CandlesQuery) -> bool:
    return query.limit <= HEDGED_PAGE_BARS


POLICIES = {"ListSymbols": MethodPolicy(idempotent=True, read=True),
            "AnalyzeMarket": MethodPolicy(idempotent=True, read=True),
            "GetCandles": MethodPolicy(idempotent=True, read=True, kind="bulk", hedge_if=_small_page),
            "ComputeIndicators": MethodPolicy(idempotent=True, read=True, kind="bulk")}


class MarketAnalysisAdapter:
    def __init__(self, caller: FlaggedCaller[MarketAnalysis]) -> None:
        self.caller = caller
        self._streams = StreamingAdapter(caller)

    def stream_quotes(self, symbols: list[str], after: dict[str, int] | None = None, **options) -> ResumableStream:
        """Live quotes as an async iterator that resumes across transports (see adapters.streaming)."""
        return self._streams.stream_quotes(symbols, after, **options)

    def watch_candles(self, symbol: str, timeframe="M1", after: int = 0, **options) -> ResumableStream:
        """Bars as they close, as an async iterator that resumes across transports (see adapters.streaming)."""
        return self._streams.watch_candles(symbol, timeframe, after, **options)

    async def list_symbols(self) -> list[SymbolInfo]:
        return await self.caller.call("ListSymbols", "list_symbols")

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        return await self.caller.call("GetCandles", "get_candles", query)

    async def compute_indicators(self, request: IndicatorRequest) -> IndicatorResult:
        return await self.caller.call("ComputeIndicators", "compute_indicators", request)

    async def analyze_market(self, query: SummaryQuery) -> MarketSummary:
        return await self.caller.call("AnalyzeMarket", "analyze_market", query)
