"""Every Causal Analysis RPC gives the same answer in-process, over gRPC, over REST and through the flagged adapter
(real servers on loopback; the service fetches its candles from Market Analysis over gRPC)."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from adapters.connect import connect
from adapters.core import last_call
from forex.causal_analysis.v1 import causal_analysis_pb2 as pb
from forex.causal_analysis.v1 import causal_analysis_pb2_grpc as pb_grpc
from transport.config import Endpoint
from services.causal_analysis.grpc import lead_lag_result_from_pb
from services.causal_analysis.models import (
    DEFAULT_ALPHA,
    DEFAULT_GRANGER_MAX_LAG,
    DEFAULT_WINDOW,
    CorrelationRequest,
    GrangerRequest,
    LeadLagRequest,
    RollingCorrelationRequest,
    SymbolPair,
)
from services.causal_analysis.rest import lead_lag_from_json
from services.common.market_types import TimeRange, Timeframe
from transport import proto_codec as pc

WIRES = ("grpc", "rest")
MONTH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
WEEK = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 3, 8, tzinfo=timezone.utc))
PAIR = SymbolPair("EURUSD", "GBPUSD")


async def same_everywhere(clients, wire, method: str, request, expected_request=None):
    """The wire's result for `request` equals the domain's for `expected_request` (default: the same request)."""
    expected = await getattr(clients["domain"], method)(expected_request or request)
    got = await getattr(clients[wire], method)(request)
    assert got == expected
    return got


@pytest.mark.parametrize("wire", WIRES)
async def test_granger_several_pairs_one_correction(causal_clients, wire):
    pairs = (PAIR, SymbolPair("usdjpy", "EURUSD"), SymbolPair("AUDUSD", "NZDUSD"))
    result = await same_everywhere(causal_clients, wire, "granger_causality",
                                   GrangerRequest(pairs, Timeframe.H1, MONTH, max_lag=3, alpha=0.1))
    assert [(t.cause, t.effect) for t in result.tests][2:4] == [("USDJPY", "EURUSD"), ("EURUSD", "USDJPY")]
    assert all(len(t.adjusted_p_values) == 3 and (t.adjusted_p_values >= t.p_values).all() for t in result.tests)


@pytest.mark.parametrize("wire", WIRES)
async def test_granger_zeros_mean_defaults(causal_clients, wire):
    result = await same_everywhere(causal_clients, wire, "granger_causality",
                                   GrangerRequest((PAIR,), range=MONTH, max_lag=0, alpha=0.0),
                                   GrangerRequest((PAIR,), range=MONTH))
    assert result.alpha == DEFAULT_ALPHA and len(result.tests[0].p_values) == DEFAULT_GRANGER_MAX_LAG


@pytest.mark.parametrize("wire", WIRES)
async def test_correlation_matrix(causal_clients, wire):
    result = await same_everywhere(causal_clients, wire, "correlation_matrix",
                                   CorrelationRequest(("EURUSD", "gbpusd", "USDJPY", "EURGBP"), Timeframe.H1, MONTH))
    assert result.pearson.shape == result.spearman.shape == (4, 4)
    assert result.symbols == ("EURUSD", "GBPUSD", "USDJPY", "EURGBP")


@pytest.mark.parametrize("wire", WIRES)
async def test_rolling_correlation_keeps_nan_warmup(causal_clients, wire):
    result = await same_everywhere(causal_clients, wire, "rolling_correlation",
                                   RollingCorrelationRequest(PAIR, Timeframe.H1, MONTH, window=24))
    assert np.isnan(result.correlation[:23]).all() and not np.isnan(result.correlation[23:]).any()
    zeros = await same_everywhere(causal_clients, wire, "rolling_correlation",
                                  RollingCorrelationRequest(PAIR, Timeframe.H1, MONTH, window=0),
                                  RollingCorrelationRequest(PAIR, Timeframe.H1, MONTH))
    assert zeros.window == DEFAULT_WINDOW


@pytest.mark.parametrize("wire", WIRES)
async def test_lead_lag(causal_clients, wire):
    result = await same_everywhere(causal_clients, wire, "lead_lag",
                                   LeadLagRequest(SymbolPair("GBPUSD", "EURUSD"), Timeframe.M15, WEEK, max_lag=8))
    assert result.lags.tolist() == list(range(-8, 9))
    await same_everywhere(causal_clients, wire, "lead_lag", LeadLagRequest(PAIR, range=WEEK, max_lag=0),
                          LeadLagRequest(PAIR, range=WEEK))


async def test_raw_callers_get_the_defaults(causal_host, causal_clients, factory):
    """A generic gRPC client leaving fields unset, and a REST body leaving them out, get the documented defaults."""
    expected = await causal_clients["domain"].lead_lag(LeadLagRequest(PAIR, range=WEEK))
    stub = pb_grpc.CausalAnalysisServiceStub(factory.channel(causal_host.grpc_target))
    resp = await stub.LeadLag(pb.LeadLagRequest(pair=pb.SymbolPair(first="eurusd", second="GBPUSD"),
                                                range=pc.range_to_pb(WEEK)))
    assert lead_lag_result_from_pb(resp) == expected
    body = (await factory.http(causal_host.rest_url).post("/v1/lead-lag", json={
        "pair": {"first": "EURUSD", "second": "gbpusd"}, "start": "2025-03-03T00:00:00Z", "end": "2025-03-08"})).json()
    assert lead_lag_from_json(body) == expected


async def test_through_the_flagged_adapter(causal_host, causal_clients, factory, platform_flags):
    adapter = connect("causal_analysis", Endpoint(causal_host.rest_url, causal_host.grpc_target), factory=factory,
                      flags=platform_flags)
    for method, request in (("correlation_matrix", CorrelationRequest(("EURUSD", "USDCHF"), Timeframe.H4, MONTH)),
                            ("lead_lag", LeadLagRequest(PAIR, Timeframe.H1, MONTH, max_lag=4))):
        got = await getattr(adapter, method)(request)
        assert last_call.get().transport == "grpc"  # read before the domain's own calls to Market Analysis
        assert got == await getattr(causal_clients["domain"], method)(request)
