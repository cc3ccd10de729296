"""Replicas as real `fxplat up --service` processes on 127.0.0.2/.3 (.4), reached through one target naming them all:
calls spread over them, one SIGKILLed with calls in flight loses no call and gRPC keeps serving from the other, a
replica draining on SIGTERM (drain delay, then grace) loses no call and exits 0, and a rolling restart of two replicas
of every service under load fails no call and replays no write."""
from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest

from adapters.connect import connect
from adapters.flags import Flags
from gray import ALL_GRPC, Load, Replica, base_env, free_port, stop_all
from services.analysis_coordinator.models import ListAnalysesQuery
from services.backtesting.models import BacktestRequest
from services.common.market_types import TimeRange
from services.market_analysis.models import CandlesQuery
from transport import context
from transport.client_factory import ClientFactory
from transport.config import Endpoint

QUERY = CandlesQuery("EURUSD", limit=20)
WRITE = BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20},
                        range=TimeRange(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)))
A, B = "127.0.0.2", "127.0.0.3"


@pytest.fixture
def flags(tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text(ALL_GRPC)
    evaluator = Flags(path, unleash_url="")
    yield path, evaluator
    evaluator.close()


def _replicas(service: str, tmp_path, flags_path, hosts=(A, B), env=None, args=()) -> list[Replica]:
    rest, grpc_port = free_port(*hosts), free_port(*hosts)
    return [Replica(service, h, rest, grpc_port, tmp_path / "data", base_env(flags_path, **(env or {})),
                    tmp_path / f"{service}-{h}.log", args) for h in hosts]


def _target(replicas: list[Replica]) -> str:
    return "ipv4:" + ",".join(f"{r.host}:{r.grpc_port}" for r in replicas)


def _roots(replicas: list[Replica]) -> str:
    return ",".join(r.rest_url for r in replicas)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_an_ipv4_list_spreads_calls_and_a_killed_replica_loses_none(tmp_path, flags):
    replicas = _replicas("market_analysis", tmp_path, flags[0])
    try:
        for r in replicas:
            r.start()
        await asyncio.gather(*(r.ready() for r in replicas))
        async with ClientFactory() as factory:
            adapter = connect("market_analysis", Endpoint(replicas[1].rest_url, _target(replicas)),
                              factory=factory, flags=flags[1], caller="gray-kill")
            load = Load().start(lambda: adapter.get_candles(QUERY))
            before = [await r.served() for r in replicas]
            await asyncio.sleep(2.0)
            spread = [await r.served() - b for r, b in zip(replicas, before)]
            assert min(spread) > 0.25 * sum(spread), f"calls not spread over both replicas: {spread}"

            replicas[0].signal(signal.SIGKILL)  # 16 calls in flight, about half of them on this replica
            killed = time.monotonic()
            await asyncio.sleep(5.0)
            await load.stop()
        after = load.since(killed, killed + 5.0)
        assert load.failures == []
        on_grpc = sum(c[2] == "grpc" for c in after) / len(after)
        print(f"\nreplica killed: {len(load.calls)} calls, {len(load.failures)} failed; spread before {spread}; in the 5 s "
              f"after the kill {len(after)} calls, {on_grpc:.1%} on gRPC; breaker {adapter.caller.breaker.state}")
        assert on_grpc >= 0.95, f"{on_grpc:.1%} of {len(after)} calls stayed on gRPC after the kill"
        assert adapter.caller.breaker.state == "closed"
    finally:
        stop_all(replicas)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_draining_replica_keeps_serving_then_exits_0_and_loses_no_call(tmp_path, flags):
    replicas = _replicas("market_analysis", tmp_path, flags[0], args=("--drain-delay", "1.5", "--grace", "3"))
    try:
        for r in replicas:
            r.start()
        await asyncio.gather(*(r.ready() for r in replicas))
        async with ClientFactory() as factory:
            adapter = connect("market_analysis", Endpoint(replicas[1].rest_url, _target(replicas)),
                              factory=factory, flags=flags[1], caller="gray-drain")
            load = Load().start(lambda: adapter.get_candles(QUERY))
            await asyncio.sleep(1.0)
            replicas[0].signal(signal.SIGTERM)
            term = time.monotonic()
            await asyncio.sleep(0.5)  # clients' health watches see NOT_SERVING: no new calls reach it
            quiet = await replicas[0].served()
            await asyncio.sleep(0.7)
            assert await replicas[0].served() - quiet <= 16, "a draining replica still got new calls"
            assert await replicas[0].wait(10) == 0
            assert time.monotonic() - term >= 1.5  # it kept serving for the drain delay
            await asyncio.sleep(1.0)
            await load.stop()
        since = load.since(term)
        share = sum(c[2] == "grpc" for c in since) / len(since)
        print(f"\nreplica drained: {len(load.calls)} calls, {len(load.failures)} failed; after SIGTERM {len(since)} "
              f"calls, {share:.1%} on gRPC")
        assert load.failures == []
        assert share >= 0.95
    finally:
        stop_all(replicas)


@pytest.mark.slow
@pytest.mark.timeout(900)  # 8 processes started twice: ~1 min on an idle 2-core box, many on a busy one
async def test_rolling_restart_of_every_service_fails_no_call_and_replays_no_write(tmp_path, flags):
    """Two replicas of each service, each in its own process, no balancer in front: the services and the callers
    reach them through ipv4: lists (gRPC) and lists of both REST roots (REST). Under load, every replica in turn
    gets SIGTERM (drain 1 s) and is started again once it exited 0."""
    services = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")
    env: dict[str, str] = {"FXPLAT_DRAIN_DELAY_S": "1", "FXPLAT_GRACE_S": "5"}
    groups: dict[str, list[Replica]] = {}
    for name in services:
        groups[name] = _replicas(name, tmp_path, flags[0])
        env[f"FXPLAT_{name.upper()}_GRPC_TARGET"] = _target(groups[name])
        env[f"FXPLAT_{name.upper()}_REST_URL"] = _roots(groups[name])
    every = [r for group in groups.values() for r in group]
    for r in every:
        r.env.update(env)
    try:
        for name in services:  # dependencies first, both replicas together
            for r in groups[name]:
                r.start()
            await asyncio.gather(*(r.ready() for r in groups[name]))
        async with ClientFactory() as factory:
            client = {name: connect(name, Endpoint(_roots(groups[name]), _target(groups[name])),
                                    factory=factory, flags=flags[1], caller="gray-rolling") for name in services}
            writes: list[str] = []

            async def write():
                rid = uuid.uuid4().hex
                context.request_id.set(rid)
                writes.append(rid)
                await client["backtesting"].run_backtest(WRITE)

            loads = [Load().start(lambda: client["market_analysis"].get_candles(QUERY), callers=6),
                     Load().start(lambda: client["analysis_coordinator"].list_analyses(ListAnalysesQuery()), callers=2),
                     Load().start(write, callers=4)]
            await asyncio.sleep(1.0)
            for r in every:
                r.signal(signal.SIGTERM)
                assert await r.wait(20) == 0, r.log.read_text()[-2000:]
                r.start()
                await r.ready()
            for load in loads:
                await load.stop()
        assert [f for load in loads for f in load.failures] == []
        assert writes
    finally:
        stop_all(every)
    # Every write ran exactly once: one OK RunBacktest per request id over all replicas' logs (a refusal by a
    # draining replica is UNAVAILABLE and never ran).
    ran: dict[str, int] = {}
    for r in groups["backtesting"]:
        for line in r.log.read_text().splitlines():
            if line.startswith("{") and '"RunBacktest"' in line:
                entry = json.loads(line)
                if entry.get("code") == "OK":
                    ran[entry["request_id"]] = ran.get(entry["request_id"], 0) + 1
    print(f"\nrolling restart: {sum(len(load.calls) for load in loads)} calls, "
          f"{sum(len(load.failures) for load in loads)} failed; {len(writes)} writes, "
          f"{sum(n > 1 for n in ran.values())} ran twice, {sum(rid not in ran for rid in writes)} never ran")
    assert [rid for rid in writes if ran.get(rid) != 1] == []
