"""What FastAPI and the platform cost per call for GetCandles (EURUSD M1, 10 bars), with no socket and no server:
the bare floor's app, the route floor's app (fxplat.floor.rest_app) and the platform's own Market Analysis app (built
as `fxplat up` builds it: auth on with a verified token, metrics, the sampled call log, the domain) called in-process,
alternately, through their ASGI interface with the same request. uvicorn, httptools and uvloop cost the same for all,
so the differences are the route's own cost in FastAPI (dependency solving of the path, five query parameters, the
bearer scheme and the scope dependency; the JSONBytes response) and the platform's own per-call layer and domain.
A fourth row times the domain call and its JSON answer alone (MarketAnalysisDomain.get_candles, candles_json, orjson),
no HTTP at all: the part of the platform's work that any REST skin has to do.

The minimum over the repeats is the figure to read: other load on the machine only ever adds to it. With the bare
floor's server CPU per call from `fxplat bench` (F µs), a server that adds D µs per call to the bare floor reaches at
most F / (F + D) of its capacity; the REST target (platform >= 0.8x the bare floor) allows D <= F / 4.

    .venv/bin/python benchmarks/bench_route_cost.py [REPEATS] [CALLS]
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import uvloop

from fxplat.catalog import BuildContext, build_host
from fxplat.floor import rest_app
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis.domain import MarketAnalysisDomain
from services.market_analysis.models import CandlePage, CandlesQuery
from services.market_analysis.rest import candles_json
from transport import logs
from transport.auth import AuthConfig, Signer

BARS = 10
SECRET = secrets.token_hex(32)
# A real token for the platform's app (the floors do not verify it), as `fxplat bench` sends it.
TOKEN = Signer(SECRET, "HS256").mint(sub="bench", scopes=["market:read"], ttl_s=3600)
HEADERS = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode())]


def ten_bar_page() -> bytes:
    t = np.arange(BARS, dtype=np.int64) * 60 + 1_735_689_600
    p = np.linspace(1.1, 1.2, BARS)
    return orjson.dumps(candles_json(CandlePage(CandleSeries("EURUSD", Timeframe.M1, t, p, p, p, p, p), "next")))


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"the app answered {message['status']}")


def _scope() -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/v1/candles/EURUSD", "raw_path": b"/v1/candles/EURUSD", "root_path": "",
            "query_string": f"timeframe=M1&limit={BARS}".encode(), "headers": HEADERS,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def _per_call_us(app, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await app(_scope(), _receive, _send)
    return (time.perf_counter() - start) / calls * 1e6


@contextlib.asynccontextmanager
async def platform_app(data_dir: Path):
    """Market Analysis's REST app as `fxplat up` builds it (auth on, this run's secret), its domain warmed; not
    listening (called through ASGI), closed on exit."""
    host = await build_host("market_analysis", BuildContext(data_dir, auth=AuthConfig("on", secret=SECRET)),
                            "127.0.0.1", 0, 0, grpc_enabled=False)
    try:
        await host.impl.warm()
        yield host.app
    finally:
        for close in reversed(host.closers):
            await close()


def _domain_call(domain: MarketAnalysisDomain):
    """The domain's answer to the same call and its JSON bytes, as the REST skin builds them; no HTTP."""
    query = CandlesQuery("EURUSD", Timeframe.M1, limit=BARS)

    async def call(scope, receive, send) -> None:  # the apps' signature, to be timed alike
        orjson.dumps(candles_json(await domain.get_candles(query)))

    return call


async def main(repeats: int, calls: int) -> None:
    payload = ten_bar_page()
    # The platform's call log goes where a service's goes (a stream), here to nowhere: its cost is still paid.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with open(os.devnull, "w") as devnull, tempfile.TemporaryDirectory() as data_dir:
        root.handlers[:] = [logs.handler("json", devnull)]
        root.setLevel(logging.INFO)
        try:
            async with platform_app(Path(data_dir)) as platform:
                apps = {"bare floor app": rest_app(payload, route=False),
                        "route floor app": rest_app(payload, route=True),
                        "platform app": platform, "domain + JSON": _domain_call(MarketAnalysisDomain())}
                for app in apps.values():  # warm up (FastAPI builds its middleware stack on the first call)
                    await _per_call_us(app, 200)
                times: dict[str, list[float]] = {name: [] for name in apps}
                for _ in range(repeats):  # alternate, so drift in the machine's load hits all alike
                    for name, app in apps.items():
                        times[name].append(await _per_call_us(app, calls))
        finally:
            root.handlers[:], root.level = handlers, level
    for name, t in times.items():
        print(f"{name:16} µs/call: min {min(t):6.1f}  median {statistics.median(t):6.1f}")
    bare, route, plat = (min(times[n]) for n in list(apps)[:3])
    print(f"route - bare     µs/call: min {route - bare:6.1f}   (FastAPI's own cost of the platform's route)")
    print(f"platform - route µs/call: min {plat - route:6.1f}   (the platform's own layer and domain)")
    print(f"platform - bare  µs/call: min {plat - bare:6.1f}   (allowed for 0.8x of a bare floor of F µs: F / 4)")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60, int(sys.argv[2]) if len(sys.argv) > 2 else 500))
