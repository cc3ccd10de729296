"""What shadowing costs the caller when the shadow side is slow: p50/p99 of GetCandles through the adapter (primary
gRPC) with shadowing off and at 100 %, measured interleaved in one run, calls paced at 100/s, the server in its own
process. The REST side (the shadow) answers 50 ms late.
Target: the caller's p50 with shadowing within 10 % of without (the caller never waits for the shadow).

As deployed, the caller and the service it calls do not share CPUs: the server is pinned to the last core, the caller
(and its shadow worker) to the others. `--shared` lets them all share every core, which on a small machine measures
the shadow's CPU (the shadow worker's and the server's REST work) competing with the primary call.

    .venv/bin/python benchmarks/bench_shadow.py [SHADOW_PERCENT] [--shared]
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from adapters.canary import CanaryStore, database_url
from adapters.connect import connect
from adapters.flags import Flags
from adapters.shadow import Shadower
from adapters.shadow_worker import ShadowWorker
from fxplat.catalog import skins_host
from transport.config import Endpoint
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.domain import MarketAnalysisDomain
from services.market_analysis.models import CandlesQuery
from transport.client_factory import ClientFactory

CALLS = 1000
SHADOW_PERCENT = next((int(a) for a in sys.argv[1:] if a.isdigit()), 100)
CORES = sorted(os.sched_getaffinity(0))
PINNED = "--shared" not in sys.argv and len(CORES) >= 2
PACE_S = 0.02  # one call every 20 ms per adapter: 100 calls/s in all, 50 of them shadowed
SHADOW_DELAY_S = 0.05
QUERIES = {  # a small call, where the shadow's fixed client cost shows most, and a medium one
    "GetCandles 100 bars": CandlesQuery("EURUSD", Timeframe.H1, TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc)),
                                        limit=100),
    "GetCandles 5,000 bars": CandlesQuery("EURUSD", Timeframe.H1, limit=5_000),
}


class SlowRest:
    def __init__(self, impl) -> None:
        self._impl = impl

    def __getattr__(self, name: str):
        return getattr(self._impl, name)

    async def get_candles(self, query):
        await asyncio.sleep(SHADOW_DELAY_S)
        return await self._impl.get_candles(query)


async def serve() -> None:
    """The server, in its own process as in production: prints its endpoints, serves until stdin closes."""
    if PINNED:
        os.sched_setaffinity(0, CORES[-1:])
    with tempfile.TemporaryDirectory() as tmp:
        domain = MarketAnalysisDomain(Path(tmp))
        await domain.warm()
        host = await skins_host("market_analysis", SlowRest(domain), grpc_impl=domain).start()
        print(host.rest_url, host.grpc_target, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await host.stop(grace=0)


async def main() -> None:
    server = await asyncio.create_subprocess_exec(sys.executable, __file__, "serve", *sys.argv[1:],
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    rest_url, grpc_target = (await asyncio.wait_for(server.stdout.readline(), 120)).decode().split()
    if PINNED:  # after starting the server, which pins itself; the shadow worker, started later, inherits this
        os.sched_setaffinity(0, CORES[:-1])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await measure(Endpoint(rest_url, grpc_target), Path(tmp))
    finally:
        server.stdin.close()
        await server.wait()


async def measure(endpoint: Endpoint, tmp_path: Path) -> None:
    files = {}
    for name, shadow in (("off", 0), ("on", SHADOW_PERCENT)):
        files[name] = tmp_path / f"flags-{name}.yaml"
        files[name].write_text(f"services:\n  market_analysis: {{grpc: 100, shadow: {shadow}}}\n")
    store = CanaryStore(database_url(tmp_path))
    print(f"Through the adapter, primary gRPC, shadow share {SHADOW_PERCENT} %, {CALLS} calls each way, interleaved; "
          f"the shadow (REST) answers "
          f"{SHADOW_DELAY_S * 1000:.0f} ms late; paced at {2 / PACE_S:.0f} calls/s; server in its own process; "
          + (f"server on core {CORES[-1]}, caller on {CORES[:-1]}" if PINNED else f"all sharing cores {CORES}"))
    async with ClientFactory() as factory:
        shadower = Shadower(store.record, ShadowWorker(factory))
        await shadower.start()
        adapters = {name: connect("market_analysis", endpoint, factory=factory, flags=Flags(path, unleash_url=""),
                                  shadower=shadower)
                    for name, path in files.items()}
        for label, query in QUERIES.items():
            for adapter in adapters.values():  # warm both connections
                for _ in range(20):
                    await adapter.get_candles(query)
            samples: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(CALLS):
                for name in (("off", "on") if i % 2 else ("on", "off")):
                    start = time.perf_counter()
                    await adapters[name].get_candles(query)
                    samples[name].append((time.perf_counter() - start) * 1000)
                    # Paced like live traffic: a caller is not a loop saturating its process.
                    await asyncio.sleep(max(0.0, PACE_S - (time.perf_counter() - start)))
            await shadower.drain()
            p = {name: (np.percentile(v, 50), np.percentile(v, 99)) for name, v in samples.items()}
            ratio = p["on"][0] / p["off"][0]
            print(f"  {label}: shadowing off p50 {p['off'][0]:.2f} ms (p99 {p['off'][1]:.2f}), "
                  f"on p50 {p['on'][0]:.2f} ms (p99 {p['on'][1]:.2f}); "
                  f"ratio {ratio:.3f} (target <= 1.10: {'PASS' if ratio <= 1.10 else 'MISS'})")
        await shadower.close()
    compared = await store.comparisons()
    await store.close()
    print(f"  shadow comparisons recorded: {len(compared)}, mismatches: {sum(not c.match for c in compared)}")


if __name__ == "__main__":
    asyncio.run(serve() if "serve" in sys.argv[1:] else main())
