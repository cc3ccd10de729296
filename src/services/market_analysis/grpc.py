"""Market Analysis over gRPC: the server skin (request message -> domain -> response message) and the client
(domain -> request message -> domain), with the proto codec between them written once."""
from __future__ import annotations

from forex.market_analysis.v1 import market_analysis_pb2 as pb
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
from services.common.market_types import Timeframe
from services.market_analysis.models import (
    DEFAULT_CANDLES_PER_PAGE,
    CandlePage,
    CandlesQuery,
    IndicatorOutput,
    IndicatorRequest,
    IndicatorResult,
    IndicatorSpec,
    MarketAnalysis,
    MarketSummary,
    Regime,
    SummaryQuery,
    SymbolInfo,
    TrendDirection,
)
from functools import lru_cache

from google.protobuf import timestamp_pb2

from services.market_analysis.models import ClosedCandle, Quote
from transport import grpc_client, wire
from transport import proto_codec as pc
from transport.grpc_server import GrpcMethod
from transport.grpc_streams import GrpcItemStream
from transport.streams import StreamMethod

SERVICE = pb.DESCRIPTOR.services_by_name["MarketAnalysisService"].full_name
_TREND = {t: pb.TrendDirection.Value(f"TREND_DIRECTION_{t.name}") for t in TrendDirection}
_REGIME = {r: pb.Regime.Value(f"REGIME_{r.name}") for r in Regime}


# --- codec ----------------------------------------------------------------------------------------------------------

def symbol_to_pb(s: SymbolInfo) -> pb.SymbolInfo:
    return pb.SymbolInfo(symbol=s.symbol, description=s.description, base=s.base, quote=s.quote, pip_size=s.pip_size,
                         digits=s.digits, source=s.source, first_time=pc.timestamp_to_pb(s.first_time),
                         last_time=pc.timestamp_to_pb(s.last_time))


def symbol_from_pb(m: pb.SymbolInfo) -> SymbolInfo:
    return SymbolInfo(m.symbol, m.description, m.base, m.quote, m.pip_size, m.digits, m.source,
                      pc.timestamp_from_pb(m.first_time), pc.timestamp_from_pb(m.last_time))


def candles_query_to_pb(q: CandlesQuery) -> pb.GetCandlesRequest:
    return pb.GetCandlesRequest(symbol=q.symbol, timeframe=pc.timeframe_to_pb(q.timeframe), range=pc.range_to_pb(q.range),
                                limit=q.limit, page_token=q.page_token)


def candles_query_from_pb(m: pb.GetCandlesRequest) -> CandlesQuery:
    return CandlesQuery(symbol=m.symbol, timeframe=pc.timeframe_from_pb(m.timeframe), range=pc.range_from_pb(m.range),
                        limit=m.limit or DEFAULT_CANDLES_PER_PAGE, page_token=m.page_token)


_CANDLES_FIELD, _TOKEN_FIELD = (pb.GetCandlesResponse.DESCRIPTOR.fields_by_name[f].number
                                 for f in ("candles", "next_page_token"))


def candle_page_bytes(page: CandlePage) -> bytes:
    token = page.next_page_token  # a string field is a length-delimited field of its UTF-8 bytes (empty: omitted)
    return wire.length_delimited(_CANDLES_FIELD, pc.series_bytes(page.series)) + \
        (wire.length_delimited(_TOKEN_FIELD, token.encode()) if token else b"")


def indicator_request_to_pb(r: IndicatorRequest) -> pb.ComputeIndicatorsRequest:
    return pb.ComputeIndicatorsRequest(
        symbol=r.symbol, timeframe=pc.timeframe_to_pb(r.timeframe), range=pc.range_to_pb(r.range),
        indicators=[pb.IndicatorSpec(name=s.name, params=s.params) for s in r.indicators])


def indicator_request_from_pb(m: pb.ComputeIndicatorsRequest) -> IndicatorRequest:
    return IndicatorRequest(symbol=m.symbol, timeframe=pc.timeframe_from_pb(m.timeframe), range=pc.range_from_pb(m.range),
                            indicators=tuple(IndicatorSpec(s.name, dict(s.params)) for s in m.indicators))


def indicator_result_bytes(r: IndicatorResult) -> bytes:
    f = pb.ComputeIndicatorsResponse.DESCRIPTOR.fields_by_name
    head = pc.with_int64s(pb.ComputeIndicatorsResponse, "time", r.time, symbol=r.symbol,
                          timeframe=pc.timeframe_to_pb(r.timeframe))
    lines_field = pb.IndicatorOutput.DESCRIPTOR.fields_by_name["lines"].number
    outputs = b"".join(
        wire.length_delimited(f["outputs"].number,
                              pb.IndicatorOutput(name=o.name, params=o.params).SerializeToString()
                              + b"".join(wire.length_delimited(lines_field, pc.column_bytes(k, v))
                                         for k, v in o.lines.items()))
        for o in r.outputs)
    return head + outputs


def indicator_result_from_pb(m: pb.ComputeIndicatorsResponse) -> IndicatorResult:
    return IndicatorResult(
        symbol=m.symbol, timeframe=pc.timeframe_from_pb(m.timeframe), time=wire.int64s(m.time),
        outputs=tuple(IndicatorOutput(o.name, dict(o.params), {c.name: wire.doubles(c.values) for c in o.lines})
                      for o in m.outputs))


def summary_query_to_pb(q: SummaryQuery) -> pb.AnalyzeMarketRequest:
    return pb.AnalyzeMarketRequest(symbol=q.symbol, timeframe=pc.timeframe_to_pb(q.timeframe),
                                   range=pc.range_to_pb(q.range))


def summary_query_from_pb(m: pb.AnalyzeMarketRequest) -> SummaryQuery:
    return SummaryQuery(symbol=m.symbol, timeframe=pc.timeframe_from_pb(m.timeframe), range=pc.range_from_pb(m.range))


def summary_to_pb(s: MarketSummary) -> pb.AnalyzeMarketResponse:
    return pb.AnalyzeMarketResponse(
        symbol=s.symbol, timeframe=pc.timeframe_to_pb(s.timeframe), as_of=pc.timestamp_to_pb(s.as_of), bars=s.bars,
        last_price=s.last_price, change_pct=s.change_pct, trend=_TREND[s.trend], trend_strength=s.trend_strength,
        atr=s.atr, realized_volatility=s.realized_volatility, regime=_REGIME[s.regime], support=s.support,
        resistance=s.resistance)


def summary_from_pb(m: pb.AnalyzeMarketResponse) -> MarketSummary:
    trend = {v: k for k, v in _TREND.items()}[m.trend]
    regime = {v: k for k, v in _REGIME.items()}[m.regime]
    return MarketSummary(m.symbol, pc.timeframe_from_pb(m.timeframe), pc.timestamp_from_pb(m.as_of), m.bars,
                         m.last_price, m.change_pct, trend, m.trend_strength, m.atr, m.realized_volatility, regime,
                         tuple(m.support), tuple(m.resistance))


def _ts(unix: float) -> timestamp_pb2.Timestamp:
    ms = round(unix * 1000)
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _unix(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos // 1_000_000 / 1000


def quote_to_pb(q: Quote) -> pb.Quote:
    return pb.Quote(symbol=q.symbol, sequence=q.sequence, time=_ts(q.time), bid=q.bid, ask=q.ask, mid=q.mid)


def quote_from_pb(m: pb.Quote) -> Quote:
    return Quote(m.symbol, m.sequence, _unix(m.time), m.bid, m.ask, m.mid)


@lru_cache(maxsize=1 << 16)
def quote_field(q: Quote) -> bytes:
    """A quote as one `quotes` field of StreamQuotesResponse, serialised once per quote for every subscriber (the
    feed's ring hands the same Quote objects to all of them)."""
    return wire.length_delimited(_QUOTES_FIELD, quote_to_pb(q).SerializeToString())


_QUOTES_FIELD = pb.StreamQuotesResponse.DESCRIPTOR.fields_by_name["quotes"].number


def candle_to_pb(c: ClosedCandle) -> pb.ClosedCandle:
    return pb.ClosedCandle(sequence=c.sequence, time=_ts(c.time), open=c.open, high=c.high, low=c.low, close=c.close,
                           volume=c.volume)


def candle_from_pb(m: pb.ClosedCandle, symbol: str, timeframe: Timeframe) -> ClosedCandle:
    return ClosedCandle(symbol, timeframe, m.sequence, m.time.seconds, m.open, m.high, m.low, m.close, m.volume)


def stream_quotes_request(symbols: list[str], after: dict[str, int] | None) -> pb.StreamQuotesRequest:
    return pb.StreamQuotesRequest(symbols=symbols, resume_after=[pb.QuotePosition(symbol=s, sequence=n)
                                                                 for s, n in (after or {}).items()])


# --- server skin ----------------------------------------------------------------------------------------------------

def methods(impl: MarketAnalysis) -> list[GrpcMethod]:
    """The RPCs over any MarketAnalysis implementation: the server skin serves them over the domain, `fxplat call`
    runs them over the flagged adapter."""

    async def list_symbols(_: pb.ListSymbolsRequest) -> pb.ListSymbolsResponse:
        return pb.ListSymbolsResponse(symbols=[symbol_to_pb(s) for s in await impl.list_symbols()])

    async def get_candles(req: pb.GetCandlesRequest) -> bytes:
        return candle_page_bytes(await impl.get_candles(candles_query_from_pb(req)))

    async def compute_indicators(req: pb.ComputeIndicatorsRequest) -> bytes:
        return indicator_result_bytes(await impl.compute_indicators(indicator_request_from_pb(req)))

    async def analyze_market(req: pb.AnalyzeMarketRequest) -> pb.AnalyzeMarketResponse:
        return summary_to_pb(await impl.analyze_market(summary_query_from_pb(req)))

    async def stream_quotes(req: pb.StreamQuotesRequest):
        return await impl.quotes.quotes(list(req.symbols), {p.symbol: p.sequence for p in req.resume_after})

    async def watch_candles(req: pb.WatchCandlesRequest):
        return await impl.quotes.candles(req.symbol, pc.timeframe_from_pb(req.timeframe, default=Timeframe.M1),
                                         req.resume_after)

    def quotes_message(batch: list[Quote]) -> bytes:
        return b"".join(map(quote_field, batch))  # a serialised StreamQuotesResponse

    def candles_message(batch: list[ClosedCandle]) -> pb.WatchCandlesResponse:
        return pb.WatchCandlesResponse(candles=[candle_to_pb(c) for c in batch])

    return [
        GrpcMethod("ListSymbols", pb.ListSymbolsRequest, list_symbols, "market:read"),
        GrpcMethod("GetCandles", pb.GetCandlesRequest, get_candles, "market:read"),
        GrpcMethod("ComputeIndicators", pb.ComputeIndicatorsRequest, compute_indicators, "market:read"),
        GrpcMethod("AnalyzeMarket", pb.AnalyzeMarketRequest, analyze_market, "market:read"),
        StreamMethod("StreamQuotes", pb.StreamQuotesRequest, stream_quotes, quotes_message, "market:read"),
        StreamMethod("WatchCandles", pb.WatchCandlesRequest, watch_candles, candles_message, "market:read"),
    ]


# --- client ---------------------------------------------------------------------------------------------------------

class MarketAnalysisGrpcClient:
    """MarketAnalysis over a gRPC channel (made by the client factory)."""

    transport = "grpc"

    def __init__(self, channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._stub = pb_grpc.MarketAnalysisServiceStub(channel)
        self._md = metadata

    async def list_symbols(self) -> list[SymbolInfo]:
        resp = await grpc_client.unary(self._stub.ListSymbols, pb.ListSymbolsRequest(), metadata=self._md)
        return [symbol_from_pb(s) for s in resp.symbols]

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        resp = await grpc_client.unary(self._stub.GetCandles, candles_query_to_pb(query), metadata=self._md)
        return CandlePage(pc.series_from_pb(resp.candles), resp.next_page_token)

    async def compute_indicators(self, request: IndicatorRequest) -> IndicatorResult:
        resp = await grpc_client.unary(self._stub.ComputeIndicators, indicator_request_to_pb(request), metadata=self._md)
        return indicator_result_from_pb(resp)

    async def analyze_market(self, query: SummaryQuery) -> MarketSummary:
        resp = await grpc_client.unary(self._stub.AnalyzeMarket, summary_query_to_pb(query), metadata=self._md)
        return summary_from_pb(resp)

    # --- streams (read through adapters.streaming, which resumes them across transports) ---

    def stream_quotes(self, symbols: list[str], after: dict[str, int] | None = None) -> GrpcItemStream:
        """StreamQuotes from after each symbol's position (else live); batches of Quote."""
        return GrpcItemStream(self._stub.StreamQuotes, stream_quotes_request(symbols, after),
                              lambda m: [quote_from_pb(q) for q in m.quotes], self._md)

    def watch_candles(self, symbol: str, timeframe: Timeframe, after: int = 0) -> GrpcItemStream:
        """WatchCandles after sequence `after` (0: the next bar to close); batches of ClosedCandle."""
        tf = Timeframe.parse(timeframe)
        request = pb.WatchCandlesRequest(symbol=symbol, timeframe=pc.timeframe_to_pb(tf), resume_after=after)
        return GrpcItemStream(self._stub.WatchCandles, request,
                              lambda m: [candle_from_pb(c, symbol.upper(), tf) for c in m.candles], self._md)
