"""Market Analysis over gRPC: the server skin (request message -> domain -> response message) and the client
(domain -> request message -> domain), with the proto codec between them written once."""
from __future__ import annotations

from forex.market_analysis.v1 import market_analysis_pb2 as pb
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
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
from transport import grpc_client, wire
from transport import proto_codec as pc
from transport.grpc_server import GrpcMethod

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


def candle_page_bytes(page: CandlePage) -> bytes:
    head = pb.GetCandlesResponse(next_page_token=page.next_page_token).SerializeToString()
    field = pb.GetCandlesResponse.DESCRIPTOR.fields_by_name["candles"].number
    return wire.length_delimited(field, pc.series_bytes(page.series)) + head


def indicator_request_to_pb(r: IndicatorRequest) -> pb.ComputeIndicatorsRequest:
    return pb.ComputeIndicatorsRequest(
        symbol=r.symbol, timeframe=pc.timeframe_to_pb(r.timeframe), range=pc.range_to_pb(r.range),
        indicators=[pb.IndicatorSpec(name=s.name, params=s.params) for s in r.indicators])


def indicator_request_from_pb(m: pb.ComputeIndicatorsRequest) -> IndicatorRequest:
    return IndicatorRequest(symbol=m.symbol, timeframe=pc.timeframe_from_pb(m.timeframe), range=pc.range_from_pb(m.range),
                            indicators=tuple(IndicatorSpec(s.name, dict(s.params)) for s in m.indicators))


def indicator_result_bytes(r: IndicatorResult) -> bytes:
    f = pb.ComputeIndicatorsResponse.DESCRIPTOR.fields_by_name
    head = pb.ComputeIndicatorsResponse(symbol=r.symbol, timeframe=pc.timeframe_to_pb(r.timeframe),
                                        time=r.time.tolist()).SerializeToString()
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

    return [
        GrpcMethod("ListSymbols", pb.ListSymbolsRequest, list_symbols, "market:read"),
        GrpcMethod("GetCandles", pb.GetCandlesRequest, get_candles, "market:read"),
        GrpcMethod("ComputeIndicators", pb.ComputeIndicatorsRequest, compute_indicators, "market:read"),
        GrpcMethod("AnalyzeMarket", pb.AnalyzeMarketRequest, analyze_market, "market:read"),
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
