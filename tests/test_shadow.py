"""Shadow calls: a flagged share of read calls also goes to the other transport, the caller gets the primary's
answer without waiting, and each comparison is stored; a deliberate difference is caught with its field path,
identical behaviour shows no mismatch, writes are never shadowed."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.canary import CanaryStore, database_url, report
from adapters.connect import connect
from adapters.core import last_call
from adapters.flags import Flags
from adapters.shadow import Shadower
from adapters import shadow_worker
from adapters.shadow_worker import ShadowWorker
from fxplat.catalog import skins_host
from transport.config import Endpoint
from services.backtesting.models import BacktestRequest
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import CandlesQuery, SummaryQuery

FXPLAT = str(Path(sys.executable).with_name("fxplat"))
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))


class Skewed:
    """The real market domain, except that AnalyzeMarket's ATR comes out one part in a million higher."""

    def __init__(self, impl) -> None:
        self._impl = impl

    def __getattr__(self, name: str):
        return getattr(self._impl, name)

    async def analyze_market(self, query):
        summary = await self._impl.analyze_market(query)
        return dataclasses.replace(summary, atr=summary.atr * (1 + 1e-6))


@pytest.fixture
def shadow_flags(tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text("services:\n  market_analysis: {grpc: 100, shadow: 100}\n  backtesting: {grpc: 100, shadow: 100}\n")
    with Flags(path, unleash_url="") as flags:
        yield flags


@pytest.fixture
async def canary(tmp_path, factory):
    store = CanaryStore(database_url(tmp_path))
    shadower = Shadower(store.record, ShadowWorker(factory))
    await shadower.start()
    yield store, shadower
    await shadower.close()
    await store.close()


async def test_a_slightly_different_grpc_answer_is_caught_with_its_field_path(market_host, factory, shadow_flags,
                                                                               canary, tmp_path):
    store, shadower = canary
    host = await skins_host("market_analysis", market_host.impl, grpc_impl=Skewed(market_host.impl)).start()
    try:
        adapter = connect("market_analysis", Endpoint(host.rest_url, host.grpc_target), factory=factory,
                          flags=shadow_flags, shadower=shadower)
        for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
            summary = await adapter.analyze_market(SummaryQuery(symbol, Timeframe.H1, MARCH))
            assert last_call.get().transport == "grpc"
            assert summary.atr != (await market_host.impl.analyze_market(SummaryQuery(symbol, Timeframe.H1, MARCH))).atr
        await adapter.list_symbols()  # identical on both sides
        await shadower.drain()
    finally:
        await host.stop(grace=0)
    found = await store.comparisons()
    by_method = {m: [c for c in found if c.method == m] for m in ("AnalyzeMarket", "ListSymbols")}
    assert len(by_method["AnalyzeMarket"]) == 3 and len(by_method["ListSymbols"]) == 1
    for c in by_method["AnalyzeMarket"]:
        assert (c.primary_transport, c.shadow_transport, c.primary_code, c.shadow_code) == ("grpc", "rest", "OK", "OK")
        assert [d.path for d in c.diffs] == ["atr"]
        assert float(c.diffs[0].primary) == pytest.approx(float(c.diffs[0].shadow) * (1 + 1e-6), rel=1e-12)
    assert by_method["ListSymbols"][0].match

    # The report, as ops read it: the mismatching method is to be rolled back, with its diffs listed.
    code, out, err = await run("canary", "report", "--json", "--data-dir", str(tmp_path))
    assert code == 0, err
    rows = {(r["service"], r["method"]): r for r in json.loads(out)["methods"]}
    analyze = rows[("market_analysis", "AnalyzeMarket")]
    assert analyze["samples"] == 3 and analyze["mismatch_rate"] == 1.0
    assert analyze["worst"][0]["diffs"][0]["path"] == "atr"
    code, out, err = await run("canary", "report", "--service", "market_analysis", "--since", "1h",
                               "--data-dir", str(tmp_path))
    assert code == 0 and "AnalyzeMarket" in out and "atr" in out, err


async def test_identical_behaviour_shows_no_mismatch(market_host, factory, shadow_flags, canary):
    store, shadower = canary
    adapter = connect("market_analysis", Endpoint(market_host.rest_url, market_host.grpc_target), factory=factory,
                      flags=shadow_flags, shadower=shadower)
    symbols = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCAD")
    for i in range(100):  # 300 shadowed calls
        symbol = symbols[i % len(symbols)]
        await adapter.get_candles(CandlesQuery(symbol, Timeframe.H1, MARCH, limit=50))
        await adapter.analyze_market(SummaryQuery(symbol, Timeframe.H4, MARCH))
        await adapter.list_symbols()
        if i % 20 == 19:  # a caller in a tight loop outruns the worker; past 256 shadows out it would skip some
            await shadower.drain()
    await shadower.drain()
    found = await store.comparisons()
    assert len(found) == 300 and all(c.match for c in found), [c.diffs for c in found if not c.match][:3]
    assert all(r.mismatches == 0 and r.samples == 100 for r in report(found))


async def test_writes_are_never_shadowed_and_a_failing_shadow_never_reaches_the_caller(
        backtesting_host, market_host, factory, shadow_flags, canary):
    store, shadower = canary
    dead_rest = Endpoint("http://127.0.0.1:9", backtesting_host.grpc_target)  # the shadow side (REST) is down
    adapter = connect("backtesting", dead_rest, factory=factory, flags=shadow_flags, shadower=shadower)
    stored = await adapter.run_backtest(BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20}, range=MARCH))
    again = await adapter.get_backtest(stored.summary.id)  # a read: shadowed to the dead REST side
    assert again == stored and last_call.get().transport == "grpc"
    await shadower.drain()
    found = await store.comparisons()
    assert [c.method for c in found] == ["GetBacktest"]  # RunBacktest, a write, was not shadowed
    assert (found[0].primary_code, found[0].shadow_code) == ("OK", "UNAVAILABLE")
    assert [d.path for d in found[0].diffs] == ["code"]


class HeldBack:
    """The real market domain, except that ListSymbols says it `arrived` and waits for `release` (a slow shadow)."""

    def __init__(self, impl) -> None:
        self._impl, self.arrived, self.release = impl, asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str):
        return getattr(self._impl, name)

    async def list_symbols(self):
        self.arrived.set()
        await self.release.wait()
        return await self._impl.list_symbols()


@pytest.fixture
async def held_back(market_host, factory, shadow_flags, canary):
    """(REST side held back, adapter): a market host whose REST ListSymbols waits for `release`, gRPC the real one."""
    rest_side = HeldBack(market_host.impl)
    host = await skins_host("market_analysis", rest_side, grpc_impl=market_host.impl).start()
    adapter = connect("market_analysis", Endpoint(host.rest_url, host.grpc_target), factory=factory,
                      flags=shadow_flags, shadower=canary[1])
    try:
        yield rest_side, adapter
    finally:
        rest_side.release.set()
        await host.stop(grace=0)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("fxplat_shadow_dropped_total",
                                     {"service": "market_analysis", "method": "ListSymbols", "reason": reason}) or 0.0


async def test_the_caller_does_not_wait_for_the_shadow(market_host, canary, held_back):
    """Ordering, not timing: the answer is back while the shadow call is still out (REST, delayed by the server)."""
    store, shadower = canary
    rest_side, adapter = held_back
    assert await adapter.list_symbols() == await market_host.impl.list_symbols()
    assert await store.comparisons() == []  # the shadow is still waiting on the server
    rest_side.release.set()
    await shadower.drain()
    assert [c.match for c in await store.comparisons()] == [True]


async def test_a_dead_shadow_worker_costs_only_its_samples_and_is_replaced(canary, held_back):
    store, shadower = canary
    rest_side, adapter = held_back
    before = dropped("worker_lost")
    first_pid = shadower.worker.pid
    symbols = await adapter.list_symbols()
    await asyncio.wait_for(rest_side.arrived.wait(), 30)  # its shadow is out, waiting on the server
    os.kill(first_pid, signal.SIGKILL)
    await shadower.drain()
    assert await store.comparisons() == [] and dropped("worker_lost") == before + 1

    rest_side.release.set()
    assert await adapter.list_symbols() == symbols  # the next shadowed call starts a new worker
    await shadower.drain()
    assert [c.match for c in await store.comparisons()] == [True]
    assert shadower.worker.pid not in (None, first_pid)


async def test_a_worker_with_its_hands_full_skips_shadowing_and_the_caller_goes_on(canary, held_back, monkeypatch):
    store, shadower = canary
    rest_side, adapter = held_back
    monkeypatch.setattr(shadow_worker, "MAX_IN_FLIGHT", 1)
    before = dropped("busy")
    await adapter.list_symbols()
    await asyncio.wait_for(rest_side.arrived.wait(), 30)  # its shadow is out, held by the server
    await adapter.list_symbols()  # the worker has its one call out: this one is not shadowed
    assert dropped("busy") == before + 1
    rest_side.release.set()
    await shadower.drain()
    assert [c.match for c in await store.comparisons()] == [True]


async def test_a_shadow_worker_that_cannot_start_costs_only_the_samples(
        market_host, factory, shadow_flags, tmp_path, monkeypatch):
    store = CanaryStore(database_url(tmp_path))
    monkeypatch.setattr(sys, "executable", "/bin/false")  # what the worker is started with
    shadower = Shadower(store.record, ShadowWorker(factory))
    try:
        await shadower.start()  # logged, not raised
        adapter = connect("market_analysis", Endpoint(market_host.rest_url, market_host.grpc_target),
                          factory=factory, flags=shadow_flags, shadower=shadower)
        before = dropped("worker_lost")
        for _ in range(3):
            assert await adapter.list_symbols() == await market_host.impl.list_symbols()
        await shadower.drain()
        assert await store.comparisons() == [] and dropped("worker_lost") == before + 3
    finally:
        await shadower.close()
        await store.close()


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(FXPLAT, *args, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()
