"""What the rollout tests share: a market host whose gRPC skin may be skewed, shadowed traffic through the adapters,
and the `fxplat` command run as a person (or a controller) runs it."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

from adapters.canary import CanaryStore, database_url
from adapters.connect import connect
from adapters.shadow import Shadower
from adapters.shadow_worker import ShadowWorker
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import CandlesQuery, SummaryQuery
from transport.config import SERVICES, Endpoint

FXPLAT = str(Path(sys.executable).with_name("fxplat"))
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD")


class Skewed:
    """The real market domain, except that AnalyzeMarket's ATR comes out one part in a million higher."""

    def __init__(self, impl) -> None:
        self._impl = impl

    def __getattr__(self, name: str):
        return getattr(self._impl, name)

    async def analyze_market(self, query):
        summary = await self._impl.analyze_market(query)
        return dataclasses.replace(summary, atr=summary.atr * (1 + 1e-6))


@asynccontextmanager
async def shadowed_traffic(host, factory, flags, data_dir: Path, *, pause_s: float = 0.01):
    """Reads through a market adapter (shadowed as the flags say, comparisons stored in `data_dir`'s canary store)
    until the block ends; yields a dict counting the calls."""
    store = CanaryStore(database_url(data_dir))
    shadower = Shadower(store.record, ShadowWorker(factory))
    await shadower.start()
    adapter = connect("market_analysis", Endpoint(host.rest_url, host.grpc_target), factory=factory, flags=flags,
                      shadower=shadower, caller="rollout-test")
    stop, counts = asyncio.Event(), {"calls": 0}

    async def loop() -> None:
        i = 0
        while not stop.is_set():
            symbol = SYMBOLS[i % len(SYMBOLS)]
            await adapter.analyze_market(SummaryQuery(symbol, Timeframe.H4, MARCH))
            await adapter.get_candles(CandlesQuery(symbol, Timeframe.H1, MARCH, limit=20))
            counts["calls"] += 2
            i += 1
            if i % 10 == 0:
                await shadower.drain()
            await asyncio.sleep(pause_s)

    task = asyncio.create_task(loop())
    try:
        yield counts
    finally:
        stop.set()
        await task
        await shadower.close()
        await store.close()


def env_for(host, data_dir: Path, flags_path: Path, **extra: str) -> dict[str, str]:
    """A CLI environment whose every service's /metrics is `host`'s (the test process), with its own data dir."""
    env = dict(os.environ, FXPLAT_DATA_DIR=str(data_dir), FXPLAT_FLAGS=str(flags_path), FXPLAT_ACTOR="tester")
    env.pop("PROMETHEUS_URL", None)
    env.pop("UNLEASH_ADMIN_URL", None)
    for service in SERVICES:
        env[f"FXPLAT_{service.upper()}_REST_URL"] = host.rest_url
        env[f"FXPLAT_{service.upper()}_GRPC_TARGET"] = host.grpc_target
    return env | extra


async def fxplat(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(FXPLAT, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()
