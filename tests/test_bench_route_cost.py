"""benchmarks/bench_route_cost.py, the in-process measurement behind the REST floor verdict in docs/benchmarks.md. Its
rows mean something only if the platform's app it times is the real one (auth on: a token is verified, a bad one is
refused) and answers the call; these tests check that, and that a short run prints every row (they time nothing)."""
from __future__ import annotations

import re

import pytest

from benchmark_scripts import loaded


@pytest.fixture(scope="module")
def bench():
    with loaded("bench_route_cost") as module:
        yield module


async def _status(bench, app, headers) -> int:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    await app({**bench._scope(), "headers": headers}, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


async def test_the_platform_app_it_times_verifies_the_token_and_answers(bench, tmp_path):
    async with bench.platform_app(tmp_path) as app:
        assert await _status(bench, app, bench.HEADERS) == 200
        forged = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + bench.TOKEN[:-4].encode() + b"AAAA")]
        assert await _status(bench, app, forged) == 401
        assert await _status(bench, app, [(b"host", b"127.0.0.1")]) == 401


async def test_a_short_run_prints_every_row(bench, capsys):
    await bench.main(1, 5)
    out = capsys.readouterr().out
    for row in ("bare floor app", "route floor app", "platform app", "domain + JSON", "route - bare",
                "platform - route", "platform - bare"):
        assert re.search(rf"^{re.escape(row)} +µs/call: min +-?\d+\.\d", out, re.M), out
