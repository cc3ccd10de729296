"""The route and domain floors of `fxplat bench` (fxplat.floor rest-route and grpc-route: the platform's GetCandles
served as the platform declares it; rest-domain and grpc-domain: served from the platform's domain), with nothing of the
platform's per-call layer. Their rows mean something only if they take the same calls as the platform and refuse the
same bad ones the same way; these tests check that (they time nothing: the benchmark measures)."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import httpx
import pytest

from fxplat.bench_floor import FLOORS, FloorProcess, platform_targets
from fxplat.ports import free_port

ROUTE = "/v1/candles/{symbol}"


@contextlib.asynccontextmanager
async def running_floor(transport: str, payload: bytes, workdir: Path, who: str = "route"):
    """The `who` floor of `transport` serving `payload` (a domain floor computes its own), stopped on exit."""
    (workdir / "payload").write_bytes(payload)
    floor = FloorProcess(FLOORS[transport][who], free_port(), workdir / "payload", workdir / "floor.log")
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
    target = platform_targets(market_host.grpc_target, market_host.rest_url, tokens())["grpc"]
    async with grpc.aio.insecure_channel(market_host.grpc_target) as channel:
        answer = await channel.unary_unary(target.path)(target.body, metadata=target.headers, timeout=30)
    async with running_floor("grpc", answer, tmp_path_factory.mktemp("grpc-route-floor")) as floor:
        yield floor, target, answer


async def test_the_grpc_route_floor_answers_the_platform_message_and_refuses_what_it_refuses(grpc_route_floor,
                                                                                              market_host):
    """It encodes the platform's answer again per call (the same message, field for field) and decodes every request:
    bytes that are no GetCandlesRequest get INVALID_ARGUMENT from it as from the platform."""
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


@pytest.fixture(scope="module")
async def domain_floors(tmp_path_factory):
    """Both domain floors (fxplat.floor grpc-domain and rest-domain), started together."""
    async with contextlib.AsyncExitStack() as stack:
        yield {transport: await stack.enter_async_context(
            running_floor(transport, b"", tmp_path_factory.mktemp(f"{transport}-domain-floor"), "domain"))
            for transport in ("grpc", "rest")}


async def _answers(transport: str, addresses: list[str], path: str, body: bytes, headers) -> list:
    """The same call to each address: (status, body) for REST, (code, answer bytes or details) for gRPC."""
    out = []
    for address in addresses:
        if transport == "rest":
            async with httpx.AsyncClient(base_url=address, headers=dict(headers)) as client:
                r = await client.get(path)
            out.append((r.status_code, r.content))
            continue
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                got = await channel.unary_unary(path)(body, metadata=headers, timeout=30)
                out.append((grpc.StatusCode.OK, got))
            except grpc.aio.AioRpcError as exc:
                out.append((exc.code(), exc.details()))
    return out


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_the_domain_floor_answers_the_benchmark_call_with_the_platform_bytes(domain_floors, transport,
                                                                                 market_host, tokens):
    """It computes the page itself, from the same domain through the same skin: byte for byte the platform's answer.
    And it has none of the platform's per-call layer: without a token the platform refuses the call, the floor
    answers it."""
    target = platform_targets(market_host.grpc_target, market_host.rest_url, tokens())[transport]
    base = market_host.rest_url if transport == "rest" else market_host.grpc_target
    platform, floor = await _answers(transport, [base, domain_floors[transport].address], target.path, target.body,
                                     target.headers)
    assert platform[0] == floor[0] and platform[0] in (200, grpc.StatusCode.OK)
    assert floor[1] == platform[1]
    platform, floor = await _answers(transport, [base, domain_floors[transport].address], target.path, target.body, ())
    assert platform[0] in (401, grpc.StatusCode.UNAUTHENTICATED)
    assert floor[0] in (200, grpc.StatusCode.OK)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
@pytest.mark.parametrize("symbol, query", [("NOPEUSD", "limit=10"), ("EURUSD", "limit=300000"),
                                           ("EURUSD", "timeframe=M7")])
async def test_the_domain_floor_refuses_what_the_domain_refuses_as_the_platform_does(domain_floors, transport, symbol,
                                                                                   query, market_host, tokens):
    """An unknown symbol, a limit out of range, an unknown timeframe: the domain's own checks, so the same status and
    message from the floor as from the platform."""
    from forex.market_analysis.v1 import market_analysis_pb2 as pb

    target = platform_targets(market_host.grpc_target, market_host.rest_url, tokens())[transport]
    if transport == "rest":
        base, path, body = market_host.rest_url, f"/v1/candles/{symbol}?{query}", b""
    else:
        key, _, value = query.partition("=")
        fields = {"limit": int(value)} if key == "limit" else {"limit": 10, "timeframe": 99}
        base, path, body = market_host.grpc_target, target.path, pb.GetCandlesRequest(symbol=symbol, **fields)
        body = body.SerializeToString()
    platform, floor = await _answers(transport, [base, domain_floors[transport].address], path, body, target.headers)
    assert platform[0] not in (200, grpc.StatusCode.OK)
    assert floor == platform


@pytest.mark.parametrize("argv", [[], ["grpc-domain"], ["rest", "9999"], ["grpc-domain", "9999", "extra"],
                                  ["ftp", "1", "x"], ["grpc", "http", "x"]])
def test_a_floor_started_wrongly_says_how_to_start_it(argv):
    from fxplat.floor import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert "usage: python -m fxplat.floor grpc|grpc-route|grpc-domain|rest|rest-route|rest-domain PORT" in str(
        stopped.value)
