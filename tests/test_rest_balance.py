"""A REST URL listing several replicas (no balancer in front): calls spread over them, a replica that refuses is
skipped without losing the call (a write included: nothing was sent), a 503 is the caller's to judge. Real uvicorn
servers on loopback."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from transport.client_factory import ClientFactory
from transport.config import Endpoint


def _replica(name: str, seen: Counter, status: dict) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str, request: Request) -> Response:
        seen[name] += 1
        body = await request.body()
        return Response(f"{name} {request.method} /{path} {body.decode()} {request.headers['host']}",
                        status_code=status.get(name, 200))

    return app


@contextlib.asynccontextmanager
async def _serving(app: FastAPI):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _refused_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_calls_take_the_listed_replicas_in_turn():
    seen: Counter = Counter()
    async with _serving(_replica("a", seen, {})) as a, _serving(_replica("b", seen, {})) as b:
        async with ClientFactory() as factory:
            http = factory.http(f"{a}, {b}/")
            answers = [(await http.get("/v1/symbols")).text for _ in range(20)]
    assert seen == {"a": 10, "b": 10}
    # The path and the Host header are the chosen replica's.
    assert f"b GET /v1/symbols  {b.removeprefix('http://')}" in answers


async def test_a_replica_that_refuses_is_skipped_and_no_call_is_lost():
    seen: Counter = Counter()
    async with _serving(_replica("a", seen, {})) as a:
        async with ClientFactory() as factory:
            http = factory.http(f"{_refused_url()},{a}")
            answers = [await http.post("/v1/backtests", content=f"write {i}") for i in range(10)]
    assert [r.status_code for r in answers] == [200] * 10
    assert [r.text.split()[4] for r in answers] == [str(i) for i in range(10)]  # each write once, body intact
    assert seen == {"a": 10}


async def test_a_503_is_returned_to_the_caller_and_the_next_call_goes_elsewhere():
    seen: Counter = Counter()
    status = {"a": 503}
    async with _serving(_replica("a", seen, status)) as a, _serving(_replica("b", seen, status)) as b:
        async with ClientFactory() as factory:
            http = factory.http(f"{a},{b}")
            first = await http.get("/x")
            rest = [(await http.get("/x")).status_code for _ in range(6)]
    assert first.status_code == 503 and first.text.startswith("a ")  # not repeated behind the caller's back
    assert rest == [200] * 6 and seen == {"a": 1, "b": 6}  # a is passed over for a moment after its 503


async def test_every_replica_refusing_is_a_connect_error():
    async with ClientFactory() as factory:
        with pytest.raises(httpx.ConnectError):
            await factory.http(f"{_refused_url()},{_refused_url()}").get("/x")


def test_endpoint_lists_its_rest_roots():
    assert Endpoint("http://a:1/, http://b:2", "x:1").rest_urls == ["http://a:1", "http://b:2"]
    assert Endpoint("http://a:1", "x:1").rest_urls == ["http://a:1"]
