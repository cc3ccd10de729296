"""Bad input gets the same typed error, naming the field, on both transports; never a 500 or a traceback."""
from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from forex.common.v1 import common_pb2
from forex.market_analysis.v1 import market_analysis_pb2 as pb
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
from services.common.errors import InvalidArgument, NotFound
from services.common.market_types import TimeRange
from services.market_analysis.models import CandlesQuery, IndicatorRequest, IndicatorSpec

WIRES = ("domain", "grpc", "rest")
T0, T1 = datetime(2025, 3, 1, tzinfo=timezone.utc), datetime(2025, 3, 2, tzinfo=timezone.utc)

CASES = [
    ("unknown symbol", lambda c: c.get_candles(CandlesQuery("XXXYYY")), NotFound, "symbol"),
    ("limit negative", lambda c: c.get_candles(CandlesQuery("EURUSD", limit=-1)), InvalidArgument, "limit"),
    ("limit too big", lambda c: c.get_candles(CandlesQuery("EURUSD", limit=10_000_000)), InvalidArgument, "limit"),
    ("bad page token", lambda c: c.get_candles(CandlesQuery("EURUSD", page_token="garbage!")), InvalidArgument,
     "page_token"),
    ("unknown indicator", lambda c: c.compute_indicators(
        IndicatorRequest("EURUSD", indicators=(IndicatorSpec("sma"), IndicatorSpec("vwapx")))), InvalidArgument,
     "indicators[1].name"),
    ("bad parameter", lambda c: c.compute_indicators(
        IndicatorRequest("EURUSD", indicators=(IndicatorSpec("rsi", {"period": 1}),))), InvalidArgument,
     "indicators[0].params.period"),
    ("no indicators", lambda c: c.compute_indicators(IndicatorRequest("EURUSD")), InvalidArgument, "indicators"),
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_same_error_on_every_transport(market_clients, wire, case):
    _, call, error_type, field = case
    with pytest.raises(error_type) as raised:
        await call(market_clients[wire])
    assert raised.value.field == field
    with pytest.raises(error_type) as from_domain:
        await call(market_clients["domain"])
    assert raised.value == from_domain.value  # same message, violations and reason


def test_inverted_range_is_rejected_before_any_call():
    with pytest.raises(InvalidArgument) as raised:
        TimeRange(T1, T0)
    assert raised.value.field == "range"


async def test_rest_problem_json(market_host, factory):
    http = factory.http(market_host.rest_url)
    resp = await http.get("/v1/candles/EURUSD", params={"timeframe": "M7"})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "INVALID_ARGUMENT" and body["field_violations"][0]["field"] == "timeframe"
    resp = await http.get("/v1/candles/EURUSD", params={"start": T1.isoformat(), "end": T0.isoformat()})
    assert resp.status_code == 400 and resp.json()["field_violations"][0]["field"] == "range"
    resp = await http.get("/v1/candles/EURUSD", params={"limit": "lots"})  # FastAPI's own validation, same shape
    assert resp.status_code == 400 and resp.json()["field_violations"][0]["field"] == "limit"
    resp = await http.post("/v1/indicators", content=b"{not json")
    assert resp.status_code == 400 and resp.json()["code"] == "INVALID_ARGUMENT"
    resp = await http.get("/v1/nowhere")
    assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND"
    resp = await http.get("/v1/candles/NOPE")
    assert resp.status_code == 404 and resp.json()["field_violations"][0]["field"] == "symbol"


async def test_grpc_rich_status(market_host, factory):
    stub = pb_grpc.MarketAnalysisServiceStub(factory.channel(market_host.grpc_target))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetCandles(pb.GetCandlesRequest(symbol="EURUSD", timeframe=99))
    err = raised.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = next(status_pb2.Status.FromString(v) for k, v in err.trailing_metadata()
                  if k == rpc_status.GRPC_DETAILS_METADATA_KEY)
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert bad.field_violations[0].field == "timeframe"
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR))
    assert info.domain == "fxplat"
    ok = await stub.GetCandles(pb.GetCandlesRequest(symbol="EURUSD", timeframe=common_pb2.TIMEFRAME_H1, limit=3))
    assert len(ok.candles.close) == 3
