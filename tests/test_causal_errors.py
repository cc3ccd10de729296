"""Bad input gets the same typed error, naming the field, in-process and on both transports; never a 500."""
from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from forex.causal_analysis.v1 import causal_analysis_pb2 as pb
from forex.causal_analysis.v1 import causal_analysis_pb2_grpc as pb_grpc
from services.causal_analysis.models import (
    CorrelationRequest,
    GrangerRequest,
    LeadLagRequest,
    RollingCorrelationRequest,
    SymbolPair,
)
from services.common.errors import InvalidArgument, NotFound
from services.common.market_types import TimeRange, Timeframe
from transport import errors

WIRES = ("domain", "grpc", "rest")
WEEK = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 3, 8, tzinfo=timezone.utc))
NO_BARS = TimeRange(datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 2, 1, tzinfo=timezone.utc))
PAIR = SymbolPair("EURUSD", "GBPUSD")

CASES = [
    ("unknown symbol", lambda c: c.lead_lag(LeadLagRequest(SymbolPair("EURUSD", "XXXYYY"), range=WEEK)), NotFound,
     "symbol"),
    ("pair of one symbol", lambda c: c.lead_lag(LeadLagRequest(SymbolPair("EURUSD", "eurusd"))), InvalidArgument,
     "pair"),
    ("empty symbol", lambda c: c.granger_causality(GrangerRequest((SymbolPair("EURUSD", ""),))), InvalidArgument,
     "pairs[0].second"),
    ("no pairs", lambda c: c.granger_causality(GrangerRequest(())), InvalidArgument, "pairs"),
    ("pair repeated", lambda c: c.granger_causality(GrangerRequest((PAIR, SymbolPair("GBPUSD", "EURUSD")))),
     InvalidArgument, "pairs[1]"),
    ("max_lag 51", lambda c: c.granger_causality(GrangerRequest((PAIR,), max_lag=51)), InvalidArgument, "max_lag"),
    ("max_lag -1", lambda c: c.lead_lag(LeadLagRequest(PAIR, max_lag=-1)), InvalidArgument, "max_lag"),
    ("alpha 1.5", lambda c: c.granger_causality(GrangerRequest((PAIR,), alpha=1.5)), InvalidArgument, "alpha"),
    ("window 2", lambda c: c.rolling_correlation(RollingCorrelationRequest(PAIR, window=2)), InvalidArgument,
     "window"),
    ("one symbol", lambda c: c.correlation_matrix(CorrelationRequest(("EURUSD",))), InvalidArgument, "symbols"),
    ("symbol twice", lambda c: c.correlation_matrix(CorrelationRequest(("EURUSD", "USDJPY", "eurusd"))),
     InvalidArgument, "symbols[2]"),
    ("no bars in range", lambda c: c.correlation_matrix(CorrelationRequest(("EURUSD", "USDJPY"), range=NO_BARS)),
     InvalidArgument, "range"),
    ("too few bars for max_lag", lambda c: c.granger_causality(GrangerRequest((PAIR,), Timeframe.H1, WEEK, 50)),
     InvalidArgument, "range"),
    ("too few bars for window", lambda c: c.rolling_correlation(
        RollingCorrelationRequest(PAIR, Timeframe.H1, WEEK, window=500)), InvalidArgument, "range"),
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_same_error_on_every_transport(causal_clients, wire, case):
    _, call, error_type, field = case
    with pytest.raises(error_type) as raised:
        await call(causal_clients[wire])
    assert raised.value.field == field
    with pytest.raises(error_type) as from_domain:
        await call(causal_clients["domain"])
    assert raised.value == from_domain.value  # same message, violations and reason


@pytest.mark.parametrize("body, field", [
    ({"pairs": "x"}, "pairs"),
    ({"pairs": [{"first": "EURUSD", "second": "GBPUSD"}], "timeframe": "M7"}, "timeframe"),
    ({"pairs": [{"first": "EURUSD", "second": "GBPUSD"}], "start": "2025-03-08", "end": "2025-03-03"}, "range"),
    ({"pairs": [{"first": "EURUSD"}], "max_lag": "lots"}, "pairs[0].second"),
])
async def test_rest_bad_body_is_problem_json(causal_host, factory, body, field):
    resp = await factory.http(causal_host.rest_url).post("/v1/granger", json=body)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == errors.PROBLEM_CONTENT_TYPE
    assert resp.json()["code"] == "INVALID_ARGUMENT" and resp.json()["field_violations"][0]["field"] == field


async def test_grpc_unknown_timeframe(causal_host, factory):
    stub = pb_grpc.CausalAnalysisServiceStub(factory.channel(causal_host.grpc_target))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LeadLag(pb.LeadLagRequest(pair=pb.SymbolPair(first="EURUSD", second="GBPUSD"), timeframe=99))
    error = errors.from_grpc_error(raised.value)
    assert isinstance(error, InvalidArgument) and error.field == "timeframe"
