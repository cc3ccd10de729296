"""Causal Analysis over gRPC: the server skin (request message -> domain -> response message) and the client
(domain -> request message -> domain), with the proto codec between them written once.

Proto3 cannot tell an unset scalar from zero, so the contract reads a zero max_lag, alpha or window (and an unspecified
timeframe) as the default; the REST skin reads zeros the same way, so both transports give the same answer."""
from __future__ import annotations

from forex.causal_analysis.v1 import causal_analysis_pb2 as pb
from forex.causal_analysis.v1 import causal_analysis_pb2_grpc as pb_grpc
from services.causal_analysis.models import (
    DEFAULT_ALPHA,
    DEFAULT_GRANGER_MAX_LAG,
    DEFAULT_LEAD_LAG_MAX_LAG,
    DEFAULT_WINDOW,
    CausalAnalysis,
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
from transport import grpc_client, wire
from transport import proto_codec as pc
from transport.grpc_server import GrpcMethod

SERVICE = pb.DESCRIPTOR.services_by_name["CausalAnalysisService"].full_name


# --- codec ----------------------------------------------------------------------------------------------------------

def pair_to_pb(p: SymbolPair) -> pb.SymbolPair:
    return pb.SymbolPair(first=p.first, second=p.second)


def pair_from_pb(m: pb.SymbolPair) -> SymbolPair:
    return SymbolPair(m.first, m.second)


def granger_request_to_pb(r: GrangerRequest) -> pb.GrangerCausalityRequest:
    return pb.GrangerCausalityRequest(pairs=[pair_to_pb(p) for p in r.pairs], timeframe=pc.timeframe_to_pb(r.timeframe),
                                      range=pc.range_to_pb(r.range), max_lag=r.max_lag, alpha=r.alpha)


def granger_request_from_pb(m: pb.GrangerCausalityRequest) -> GrangerRequest:
    return GrangerRequest(tuple(pair_from_pb(p) for p in m.pairs), pc.timeframe_from_pb(m.timeframe),
                          pc.range_from_pb(m.range), m.max_lag or DEFAULT_GRANGER_MAX_LAG, m.alpha or DEFAULT_ALPHA)


def _granger_test_to_pb(t: GrangerTest) -> pb.GrangerTest:
    return pb.GrangerTest(cause=t.cause, effect=t.effect, f_statistics=t.f_statistics.tolist(),
                          p_values=t.p_values.tolist(), adjusted_p_values=t.adjusted_p_values.tolist(),
                          best_lag=t.best_lag, p_value=t.p_value, adjusted_p_value=t.adjusted_p_value,
                          significant=t.significant, observations=t.observations, range=pc.range_to_pb(t.range))


def _granger_test_from_pb(m: pb.GrangerTest) -> GrangerTest:
    return GrangerTest(m.cause, m.effect, wire.doubles(m.f_statistics), wire.doubles(m.p_values),
                       wire.doubles(m.adjusted_p_values), m.best_lag, m.p_value, m.adjusted_p_value, m.significant,
                       m.observations, pc.range_from_pb(m.range))


def granger_result_to_pb(r: GrangerResult) -> pb.GrangerCausalityResponse:
    return pb.GrangerCausalityResponse(timeframe=pc.timeframe_to_pb(r.timeframe), alpha=r.alpha,
                                       tests=[_granger_test_to_pb(t) for t in r.tests])


def granger_result_from_pb(m: pb.GrangerCausalityResponse) -> GrangerResult:
    return GrangerResult(pc.timeframe_from_pb(m.timeframe), m.alpha, tuple(_granger_test_from_pb(t) for t in m.tests))


def correlation_request_to_pb(r: CorrelationRequest) -> pb.CorrelationMatrixRequest:
    return pb.CorrelationMatrixRequest(symbols=r.symbols, timeframe=pc.timeframe_to_pb(r.timeframe),
                                       range=pc.range_to_pb(r.range))


def correlation_request_from_pb(m: pb.CorrelationMatrixRequest) -> CorrelationRequest:
    return CorrelationRequest(tuple(m.symbols), pc.timeframe_from_pb(m.timeframe), pc.range_from_pb(m.range))


def correlation_result_to_pb(r: CorrelationResult) -> pb.CorrelationMatrixResponse:
    return pb.CorrelationMatrixResponse(symbols=r.symbols, timeframe=pc.timeframe_to_pb(r.timeframe),
                                        pearson=r.pearson.ravel().tolist(), spearman=r.spearman.ravel().tolist(),
                                        observations=r.observations, range=pc.range_to_pb(r.range))


def correlation_result_from_pb(m: pb.CorrelationMatrixResponse) -> CorrelationResult:
    n = len(m.symbols)  # the matrices are n x n, flat row-major on the wire
    return CorrelationResult(tuple(m.symbols), pc.timeframe_from_pb(m.timeframe),
                             wire.doubles(m.pearson).reshape(n, n), wire.doubles(m.spearman).reshape(n, n),
                             m.observations, pc.range_from_pb(m.range))


def rolling_request_to_pb(r: RollingCorrelationRequest) -> pb.RollingCorrelationRequest:
    return pb.RollingCorrelationRequest(pair=pair_to_pb(r.pair), timeframe=pc.timeframe_to_pb(r.timeframe),
                                        range=pc.range_to_pb(r.range), window=r.window)


def rolling_request_from_pb(m: pb.RollingCorrelationRequest) -> RollingCorrelationRequest:
    return RollingCorrelationRequest(pair_from_pb(m.pair), pc.timeframe_from_pb(m.timeframe), pc.range_from_pb(m.range),
                                     m.window or DEFAULT_WINDOW)


def rolling_result_bytes(r: RollingCorrelationResult) -> bytes:
    """A serialised RollingCorrelationResponse, its correlation column (one value per bar) written straight from
    numpy."""
    head = pc.with_int64s(pb.RollingCorrelationResponse, "time", r.time, pair=pair_to_pb(r.pair),
                          timeframe=pc.timeframe_to_pb(r.timeframe), window=r.window)
    field = pb.RollingCorrelationResponse.DESCRIPTOR.fields_by_name["correlation"].number
    return head + wire.packed_doubles(field, r.correlation)


def rolling_result_from_pb(m: pb.RollingCorrelationResponse) -> RollingCorrelationResult:
    return RollingCorrelationResult(pair_from_pb(m.pair), pc.timeframe_from_pb(m.timeframe), m.window,
                                    wire.int64s(m.time), wire.doubles(m.correlation))


def lead_lag_request_to_pb(r: LeadLagRequest) -> pb.LeadLagRequest:
    return pb.LeadLagRequest(pair=pair_to_pb(r.pair), timeframe=pc.timeframe_to_pb(r.timeframe),
                             range=pc.range_to_pb(r.range), max_lag=r.max_lag)


def lead_lag_request_from_pb(m: pb.LeadLagRequest) -> LeadLagRequest:
    return LeadLagRequest(pair_from_pb(m.pair), pc.timeframe_from_pb(m.timeframe), pc.range_from_pb(m.range),
                          m.max_lag or DEFAULT_LEAD_LAG_MAX_LAG)


def lead_lag_result_to_pb(r: LeadLagResult) -> pb.LeadLagResponse:
    return pb.LeadLagResponse(pair=pair_to_pb(r.pair), timeframe=pc.timeframe_to_pb(r.timeframe), leader=r.leader,
                              follower=r.follower, lag=r.lag, correlation=r.correlation, lags=r.lags.tolist(),
                              cross_correlation=r.cross_correlation.tolist(), noise_bound=r.noise_bound,
                              observations=r.observations, range=pc.range_to_pb(r.range))


def lead_lag_result_from_pb(m: pb.LeadLagResponse) -> LeadLagResult:
    return LeadLagResult(pair_from_pb(m.pair), pc.timeframe_from_pb(m.timeframe), m.leader, m.follower, m.lag,
                         m.correlation, wire.int64s(m.lags), wire.doubles(m.cross_correlation), m.noise_bound,
                         m.observations, pc.range_from_pb(m.range))


# --- server skin ----------------------------------------------------------------------------------------------------

def methods(impl: CausalAnalysis) -> list[GrpcMethod]:
    """The RPCs over any CausalAnalysis implementation: the server skin serves them over the domain, `fxplat call`
    runs them over the flagged adapter."""

    async def granger_causality(req: pb.GrangerCausalityRequest) -> pb.GrangerCausalityResponse:
        return granger_result_to_pb(await impl.granger_causality(granger_request_from_pb(req)))

    async def correlation_matrix(req: pb.CorrelationMatrixRequest) -> pb.CorrelationMatrixResponse:
        return correlation_result_to_pb(await impl.correlation_matrix(correlation_request_from_pb(req)))

    async def rolling_correlation(req: pb.RollingCorrelationRequest) -> bytes:
        return rolling_result_bytes(await impl.rolling_correlation(rolling_request_from_pb(req)))

    async def lead_lag(req: pb.LeadLagRequest) -> pb.LeadLagResponse:
        return lead_lag_result_to_pb(await impl.lead_lag(lead_lag_request_from_pb(req)))

    return [
        GrpcMethod("GrangerCausality", pb.GrangerCausalityRequest, granger_causality, "causal:read"),
        GrpcMethod("CorrelationMatrix", pb.CorrelationMatrixRequest, correlation_matrix, "causal:read"),
        GrpcMethod("RollingCorrelation", pb.RollingCorrelationRequest, rolling_correlation, "causal:read"),
        GrpcMethod("LeadLag", pb.LeadLagRequest, lead_lag, "causal:read"),
    ]


# --- client ---------------------------------------------------------------------------------------------------------

class CausalAnalysisGrpcClient:
    """CausalAnalysis over a gRPC channel (made by the client factory)."""

    transport = "grpc"

    def __init__(self, channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._stub = pb_grpc.CausalAnalysisServiceStub(channel)
        self._md = metadata

    async def granger_causality(self, request: GrangerRequest) -> GrangerResult:
        resp = await grpc_client.unary(self._stub.GrangerCausality, granger_request_to_pb(request), metadata=self._md)
        return granger_result_from_pb(resp)

    async def correlation_matrix(self, request: CorrelationRequest) -> CorrelationResult:
        resp = await grpc_client.unary(self._stub.CorrelationMatrix, correlation_request_to_pb(request),
                                       metadata=self._md)
        return correlation_result_from_pb(resp)

    async def rolling_correlation(self, request: RollingCorrelationRequest) -> RollingCorrelationResult:
        resp = await grpc_client.unary(self._stub.RollingCorrelation, rolling_request_to_pb(request),
                                       metadata=self._md)
        return rolling_result_from_pb(resp)

    async def lead_lag(self, request: LeadLagRequest) -> LeadLagResult:
        resp = await grpc_client.unary(self._stub.LeadLag, lead_lag_request_to_pb(request), metadata=self._md)
        return lead_lag_result_from_pb(resp)
