"""What FastAPI costs per call for the platform's GetCandles route, with no socket and no server: the bare floor's app
and the route floor's app (fxplat.floor.rest_app) called in-process, alternately, through their ASGI interface with
the benchmark's request (GetCandles EURUSD M1, 10 bars, a bearer token). uvicorn, httptools and uvloop cost the same
for both, so the difference is the route's own cost in FastAPI: dependency solving (path, five query parameters, the
bearer scheme and the scope dependency) and the JSONBytes response.

The minimum over the repeats is the figure to read: other load on the machine only ever adds to it. With the bare
floor's server CPU per call from `fxplat bench` (F µs), the route floor reaches at most F / (F + difference) of the
bare floor's capacity; the REST target (platform >= 0.8x the bare floor) needs that ceiling above 0.8.

    .venv/bin/python benchmarks/bench_route_cost.py [REPEATS] [CALLS]
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import orjson
import uvloop

from fxplat.floor import rest_app
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis.models import CandlePage
from services.market_analysis.rest import candles_json

BARS = 10
HEADERS = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + b"e" * 200)]  # a JWT's length, not verified


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


async def main(repeats: int, calls: int) -> None:
    payload = ten_bar_page()
    apps = {"bare floor app": rest_app(payload, route=False), "route floor app": rest_app(payload, route=True)}
    for app in apps.values():  # warm up (FastAPI builds its middleware stack on the first call)
        await _per_call_us(app, 200)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(repeats):  # alternate, so drift in the machine's load hits both alike
        for name, app in apps.items():
            times[name].append(await _per_call_us(app, calls))
    for name, t in times.items():
        print(f"{name:16} µs/call: min {min(t):6.1f}  median {statistics.median(t):6.1f}")
    bare, route = (times[n] for n in apps)
    print(f"route - bare     µs/call: min {min(route) - min(bare):6.1f}  "
          f"median {statistics.median(route) - statistics.median(bare):6.1f}")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60, int(sys.argv[2]) if len(sys.argv) > 2 else 500))
