"""The route floors of `fxplat bench` (fxplat.floor rest-route and grpc-route): the platform's GetCandles served as the
platform declares it, with nothing of the platform's per-call layer. Their rows mean something only if they take the
same calls as the platform and refuse the same bad ones the same way; these tests check that (they time nothing: the
benchmark measures)."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from fxplat.bench_floor import FLOORS, FloorProcess, platform_targets
from fxplat.ports import free_port

ROUTE = "/v1/candles/{symbol}"


@contextlib.asynccontextmanager
async def running_floor(transport: str, payload: bytes, workdir: Path):
    """The route floor of `transport` serving `payload`, stopped on exit."""
    (workdir / "payload").write_bytes(payload)
    floor = FloorProcess(FLOORS[transport]["route"], free_port(), workdir / "payload", workdir / "floor.log")
    floor.launch()
    try:
        await asyncio.to_thread(floor.wait_ready)
        yield floor
    finally:
        floor.stop()


@pytest.fixture(scope="module")
async def route_floor(market_host, tokens, tmp_path_factory):
    """The route floor serving the platform's own answer to the benchmark's call, and that call's target."""
    target = platform_targets(market_host.grpc_target, market_host.rest_url, tokens())["rest"]
    async with httpx.AsyncClient(base_url=market_host.rest_url, headers=dict(target.headers)) as client:
        answer = await client.get(target.path)
    assert answer.status_code == 200, answer.text
    async with running_floor("rest", answer.content, tmp_path_factory.mktemp("route-floor")) as floor:
        yield floor, target, answer


async def test_the_route_floor_answers_the_benchmark_call_with_the_platform_bytes(route_floor):
    floor, target, answer = route_floor
    async with httpx.AsyncClient(base_url=floor.address, headers=dict(target.headers)) as client:
        got = await client.get(target.path)
    assert got.status_code == 200
    assert got.content == answer.content
    assert got.headers["content-type"] == answer.headers["content-type"]  # JSONBytes on both


@pytest.mark.parametrize("query, field", [
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("start=yesterday", "start"),
    ("end=1e20", "end"),  # a number posing as a time (transport.limits.Timestamp)
    ("start=10000-01-01T00:00:00Z", "start"),
])
async def test_the_route_floor_refuses_a_bad_parameter_as_the_platform_does(route_floor, market_host, query, field):
    """FastAPI validates the declared parameter types before any handler runs, on the floor as on the platform: the
    same 400 problem+json, naming the same field. (What the domain checks later, such as limit=0 or an unknown
    timeframe, the floor does not: it has no domain.)"""
    floor, target, _ = route_floor
    answers = []
    for base in (market_host.rest_url, floor.address):
        async with httpx.AsyncClient(base_url=base, headers=dict(target.headers)) as client:
            answers.append(await client.get(f"/v1/candles/EURUSD?timeframe=M1&{query}"))
    platform, floor_answer = answers
    assert platform.status_code == floor_answer.status_code == 400
    assert floor_answer.headers["content-type"] == platform.headers["content-type"] == "application/problem+json"
    assert floor_answer.json()["field_violations"] == platform.json()["field_violations"]
    assert [v["field"] for v in platform.json()["field_violations"]] == [field]


async def test_the_route_floor_declares_the_platform_route(route_floor, market_host):
    """The same parameters (names, places, types, bounds, defaults) and the same bearer security scheme as the
    platform's GetCandles, as each server documents them: a parameter added to the platform's route and not to the
    floor fails here."""
    floor, _, _ = route_floor
    docs = []
    for base in (market_host.rest_url, floor.address):
        async with httpx.AsyncClient(base_url=base) as client:
            docs.append((await client.get("/openapi.json")).json())
    platform, floor_doc = (d["paths"][ROUTE]["get"] for d in docs)
    assert floor_doc["parameters"] == platform["parameters"]
    assert floor_doc["security"] == platform["security"] == [{"bearerAuth": []}]
    assert floor_doc["operationId"] == platform["operationId"]
    assert set(docs[1]["paths"]) == {ROUTE, "/healthz"}  # and nothing else of the platform


@pytest.fixture(scope="module")
async def grpc_route_floor(market_host, tokens, tmp_path_factory):
    """The gRPC route floor (fxplat.floor grpc-route) with the platform's own answer to the benchmark's call."""
    import grpc

    target = platform_targets(market_host.grpc_target, market_host.rest_url, tokens())["grpc"]
    async with grpc.aio.insecure_channel(market_host.grpc_target) as channel:
        answer = await channel.unary_unary(target.path)(target.body, metadata=target.headers, timeout=30)
    async with running_floor("grpc", answer, tmp_path_factory.mktemp("grpc-route-floor")) as floor:
        yield floor, target, answer


async def test_the_grpc_route_floor_answers_the_platform_message_and_refuses_what_it_refuses(grpc_route_floor,
                                                                                              market_host):
    """It encodes the platform's answer again per call (the same message, field for field) and decodes every request:
    bytes that are no GetCandlesRequest get INVALID_ARGUMENT from it as from the platform."""
    import grpc

    from forex.market_analysis.v1 import market_analysis_pb2 as pb

    floor, target, answer = grpc_route_floor
    async with grpc.aio.insecure_channel(floor.address) as channel:
        got = await channel.unary_unary(target.path)(target.body, metadata=target.headers, timeout=30)
    assert pb.GetCandlesResponse.FromString(got) == pb.GetCandlesResponse.FromString(answer)
    assert len(pb.GetCandlesResponse.FromString(got).candles.time) == 10
    codes = []
    for address in (market_host.grpc_target, floor.address):
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(target.path)(b"\xff\xff\xff", metadata=target.headers, timeout=30)
        codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2
