"""Where the adapter's cost over a raw gRPC call goes (GetCandles, EURUSD M1, 10 bars): the measurement behind the
adapter-overhead verdict in docs/benchmarks.md.

A bare grpc.aio floor server (fxplat.floor, no auth, no metrics) answers every call with the same pre-encoded page,
so the server's side is constant and every difference is the caller's. In one process, in a shuffled order each
round, the caller makes:

    raw stub+decode        the generated stub with a prebuilt request, decoded with the client's codec (the baseline)
    grpc client            MarketAnalysisGrpcClient.get_candles: builds the request, deadline, error mapping
    adapter forced         the adapter pinned to gRPC: records, metrics, breaker, attempt bound
    adapter                the flagged adapter at gRPC 100 %: also the flag evaluation and the hedge of a small read
    adapter, no hedge      the same with this method's hedge turned off
    adapter, no hedge/metrics  and its metric updates made no-ops as well

and, to separate the adapter's Python from what running between two gRPC calls does to it, the flagged adapter over
an instant client (answering from memory): timed back to back in a tight loop (its best block of 100 calls) and
alone right after each raw call (p50, "in situ"). Each variant's p50 over the baseline's and its mean CPU of the
caller's main thread over the baseline's are printed; an adapter that adds A µs to a baseline of B µs has an overhead
of A / B.

    .venv/bin/python benchmarks/bench_adapter_cost.py [ROUNDS]
"""
from __future__ import annotations

import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import uvloop

from adapters.connect import connect
from adapters.flags import Flags
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
from fxplat.bench import SERVICE, _write_flags
from fxplat.bench_floor import FloorProcess
from fxplat.ports import free_port
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis.grpc import MarketAnalysisGrpcClient, candle_page_bytes, candles_query_to_pb
from services.market_analysis.models import CandlePage, CandlesQuery
from services.market_analysis.rest import candles_json
from transport import proto_codec as pc
from transport.client_factory import ClientFactory
from transport.config import Endpoint

BARS = 10
QUERY = CandlesQuery("EURUSD", Timeframe.M1, limit=BARS)
BASELINE = "raw stub+decode"


def ten_bar_page() -> CandlePage:
    t = np.arange(BARS, dtype=np.int64) * 60 + 1_735_689_600
    p = np.linspace(1.1, 1.2, BARS)
    return CandlePage(CandleSeries("EURUSD", Timeframe.M1, t, p, p, p, p, p), "")


@contextlib.contextmanager
def floors(workdir: Path):
    """A bare gRPC floor and a bare REST floor (the hedge's other transport) serving the same 10-bar page."""
    page = ten_bar_page()
    (workdir / "page.bin").write_bytes(candle_page_bytes(page))
    (workdir / "page.json").write_bytes(orjson.dumps(candles_json(page)))
    servers = [FloorProcess("grpc", free_port(), workdir / "page.bin", workdir / "grpc.log"),
               FloorProcess("rest", free_port(), workdir / "page.json", workdir / "rest.log")]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield Endpoint(servers[1].address, servers[0].address)
    finally:
        for server in servers:
            server.stop()


class InstantClient(MarketAnalysisGrpcClient):
    """A gRPC client that answers GetCandles from memory: the adapter's own Python, with no call under it."""

    def __init__(self, page: CandlePage) -> None:
        self._page = page

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        return self._page


def adapter(endpoint: Endpoint, factory: ClientFactory, flags: Flags, *, force: str | None = None,
            hedge: bool = True, metrics: bool = True):
    """A Market Analysis adapter as `connect` makes it; without `hedge` its GetCandles is not hedged, without
    `metrics` its usual outcome's metric updates do nothing (for the ablation rows only)."""
    caller = connect(SERVICE, endpoint, factory=factory, flags=flags, caller="bench", force=force)
    method = caller.caller._method("GetCandles")
    if not hedge:
        method.hedged = False
    if not metrics:
        method.chose_grpc = method.ok_grpc = method.latency_grpc = lambda value: None
    return caller


async def measure(endpoint: Endpoint, workdir: Path, rounds: int) -> dict[str, dict[str, float]]:
    flags = Flags(_write_flags(workdir / "flags.yaml", 100), unleash_url="")
    async with ClientFactory() as factory:
        channel = factory.channel(endpoint.grpc_target)
        stub = pb_grpc.MarketAnalysisServiceStub(channel)
        request = candles_query_to_pb(QUERY)

        async def raw() -> CandlePage:
            resp = await stub.GetCandles(request, timeout=30.0)
            return CandlePage(pc.series_from_pb(resp.candles), resp.next_page_token)

        client = MarketAnalysisGrpcClient(channel)
        calls = {BASELINE: raw, "grpc client": lambda: client.get_candles(QUERY)}
        for name, kwargs in (("adapter forced", {"force": "grpc"}), ("adapter", {}),
                             ("adapter, no hedge", {"hedge": False}),
                             ("adapter, no hedge/metrics", {"hedge": False, "metrics": False})):
            calls[name] = adapter(endpoint, factory, flags, **kwargs).get_candles
        page = await raw()
        instant = adapter(endpoint, factory, flags)
        instant.caller.grpc = InstantClient(page)
        for name, call in calls.items():  # every variant answers the same page, and is warm
            got = await call(QUERY) if name.startswith("adapter") else await call()
            if got.series != page.series:
                raise RuntimeError(f"{name} answered another page")
        for _ in range(200):
            await instant.get_candles(QUERY)

        wall = {name: [] for name in [*calls, "instant adapter, in situ"]}
        cpu = {name: [] for name in calls}
        order = list(calls.items())
        perf, thread = time.perf_counter, time.thread_time
        for _ in range(rounds):
            random.shuffle(order)
            for name, call in order:
                c0, t0 = thread(), perf()
                await (call(QUERY) if name.startswith("adapter") else call())
                wall[name].append(perf() - t0)
                cpu[name].append(thread() - c0)
            await raw()  # right after a real call, as a real adapter call runs
            t0 = perf()
            await instant.get_candles(QUERY)
            wall["instant adapter, in situ"].append(perf() - t0)
        loop_s = []
        for _ in range(max(1, rounds // 100)):
            t0 = perf()
            for _ in range(100):
                await instant.get_candles(QUERY)
            loop_s.append((perf() - t0) / 100)

    base_p50, base_cpu = statistics.median(wall[BASELINE]), statistics.fmean(cpu[BASELINE])
    rows = {name: {"p50_us": (statistics.median(wall[name]) - base_p50) * 1e6,
                   "cpu_us": (statistics.fmean(cpu[name]) - base_cpu) * 1e6 if name in cpu else float("nan")}
            for name in wall}
    rows[BASELINE] = {"p50_us": base_p50 * 1e6, "cpu_us": base_cpu * 1e6}
    rows["instant adapter, in situ"]["p50_us"] = statistics.median(wall["instant adapter, in situ"]) * 1e6
    # the best block of the loop: what the code costs when nothing else runs (a collection or a hedge clock tick can
    # land in any block)
    rows["instant adapter, tight loop"] = {"p50_us": min(loop_s) * 1e6, "cpu_us": float("nan")}
    return rows


def report(rows: dict[str, dict[str, float]]) -> str:
    base = rows[BASELINE]["p50_us"]
    lines = [f"{BASELINE:28} p50 {base:7.1f} µs   main-thread CPU {rows[BASELINE]['cpu_us']:6.1f} µs  (the baseline)"]
    for name, row in rows.items():
        if name == BASELINE or name.startswith("instant"):
            continue
        lines.append(f"{name:28} p50 {row['p50_us']:+7.1f} µs ({row['p50_us'] / base * 100:+5.1f} %)   "
                     f"main-thread CPU {row['cpu_us']:+6.1f} µs")
    situ, loop = rows["instant adapter, in situ"]["p50_us"], rows["instant adapter, tight loop"]["p50_us"]
    lines.append(f"{'instant adapter, tight loop':28} µs  {loop:7.1f}      (best block of 100 calls)")
    lines.append(f"{'instant adapter, in situ':28} p50 {situ:7.1f} µs   ({situ / loop:.1f}x its tight-loop cost)")
    return "\n".join(lines)


async def main(rounds: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, floors(Path(tmp)) as endpoint:
        return report(await measure(endpoint, Path(tmp), rounds))


if __name__ == "__main__":
    print(uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
