"""The rollout controller on real servers: shadowed traffic through the adapters, flags in a real file, state in the
platform's database. One rollout survives its controller being killed (another continues it, after the lease runs
out); one against a skewed gRPC answer rolls back to 0 % on its own; every flag change lands in the audit log."""
from __future__ import annotations

import asyncio
import json
import signal

import pytest

from adapters.canary import CanaryStore, database_url
from adapters.flag_schema import parse_flags
from adapters.flags import Flags
from fxplat.catalog import skins_host
from rollout import actions
from rollout.controller import Controller
from rollout.evidence import LocalSource
from rollout.flag_writers import FileWriter
from rollout.model import Thresholds
from rollout.store import RolloutStore
from rollout_helpers import FXPLAT, Skewed, env_for, fxplat, shadowed_traffic

# Generous where the machine is noisy (latency, other tests' breakers in this process): those checks have tests of
# their own in test_analysis.py. Parity and the step logic are what these tests are about.
LENIENT = ("--min-samples", "5", "--latency-factor", "50", "--max-breaker-opens", "99", "--max-fallback-rate", "1")


@pytest.fixture
def flags_file(tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text("# market first\nservices:\n  market_analysis: {grpc: 0, shadow: 100}\n")
    return path


async def warm(counts: dict) -> None:
    """Until the traffic has started (the shadow worker, a child process, takes a moment to come up)."""
    for _ in range(300):
        if counts["calls"] >= 20:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no traffic")


async def wait_for(store: RolloutStore, rollout_id: int, predicate, timeout: float = 60):
    for _ in range(int(timeout / 0.1)):  # bounded
        r = await store.get(rollout_id)
        if predicate(r):
            return r
        await asyncio.sleep(0.1)
    raise AssertionError(f"rollout {rollout_id} never got there: {r}")


async def test_a_killed_controller_is_replaced_and_the_same_rollout_goes_on_to_100(market_host, factory, tmp_path,
                                                                                   flags_file):
    data = tmp_path / "data"
    data.mkdir()
    env = env_for(market_host, data, flags_file)
    store = RolloutStore.for_data_dir(data)
    with Flags(flags_file, unleash_url="", poll_interval=0.1) as flags:
        async with shadowed_traffic(market_host, factory, flags, data) as counts:
            await warm(counts)
            # A loaded machine may starve the traffic of a window (too few samples: halted, not rolled back).
            code, out, err = await fxplat(env, "rollout", "start", "market_analysis", "--steps", "25,50,100",
                                          "--interval", "3s", "--reason", "first service to move",
                                          "--max-failed-checks", "10", *LENIENT)
            assert code == 0, err
            assert "rollout 1 of market_analysis: 25 % on gRPC" in out
            assert parse_flags(flags_file.read_text(), "f").services["market_analysis"].grpc == 25
            assert "# market first" in flags_file.read_text()  # the file keeps its comments

            first = await asyncio.create_subprocess_exec(
                FXPLAT, "rollout", "run", "--tick", "0.3s", "--lease-ttl", "8s", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await wait_for(store, 1, lambda r: r.step_index >= 1)
            first.send_signal(signal.SIGKILL)  # no chance to release its lease or finish anything
            await first.wait()
            mid = await store.get(1)
            assert mid.state == "running" and mid.percent == 50

            # While the dead controller's lease runs, nobody else drives the service.
            other = Controller(store, LocalSource([], CanaryStore(database_url(data))), holder="impatient")
            assert [r.id for r in await other.tick()] == [1] and (await store.get(1)).version == mid.version

            code, out, err = await fxplat(env, "rollout", "run", "--until-idle", "--tick", "0.3s", "--lease-ttl",
                                          "2s", timeout=90)
            assert code == 0, err
            assert counts["calls"] > 50
    done = await store.get(1)
    assert (done.state, done.percent) == ("promoted", 100)
    assert parse_flags(flags_file.read_text(), "f").services["market_analysis"].grpc == 100
    events = await store.events([1])
    kinds = [e.kind for e in events]
    assert kinds.count("started") == 1 and kinds.count("promoted") == 1 and kinds.count("rolled_back") == 0
    assert [e.percent for e in events if e.kind == "step"] == [50, 100]  # no step done twice, none skipped
    analyses = [e for e in events if e.kind == "analysis"]
    assert len(analyses) == 3 + done.failed_checks  # one per step, and one per halt
    assert all(c["passed"] for c in analyses[-1].checks if "passed" in c)
    controllers = {e.actor for e in events if e.kind == "controller"}
    assert len(controllers) == 2  # the killed one and the one that took over

    # The kill may land between a step's commit and its flag write: then the controller taking over writes it (and
    # records it again if the dead one had recorded its intent already).
    entries = await store.audit_log(flag_prefix="market_analysis.grpc")
    changes = [(a.old, a.new) for a in entries]
    assert [c for i, c in enumerate(changes) if i == 0 or c != changes[i - 1]] == [("0", "25"), ("25", "50"),
                                                                                 ("50", "100")]
    assert entries[0].actor == "tester" and "first service to move" in entries[0].why
    assert all(a.actor.startswith("rollout-controller:") for a in entries[1:])
    await store.close()

    code, out, err = await fxplat(env, "rollout", "history", "market_analysis", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["rollouts"][0]["state"] == "promoted" and len(shown["audit"]) == len(entries)
    code, out, err = await fxplat(env, "rollout", "status")
    assert code == 0 and "promoted" in out, err


async def test_a_skewed_grpc_answer_rolls_the_method_back_to_0_without_a_person(market_host, factory, tmp_path,
                                                                              flags_file):
    data = tmp_path / "data"
    data.mkdir()
    host = await skins_host("market_analysis", market_host.impl, grpc_impl=Skewed(market_host.impl)).start()
    store = RolloutStore.for_data_dir(data)
    source = LocalSource([f"{host.rest_url}/metrics"], CanaryStore(database_url(data)))
    try:
        with Flags(flags_file, unleash_url="", poll_interval=0.1) as flags:
            async with shadowed_traffic(host, factory, flags, data) as counts:
                await warm(counts)
                r = await actions.start(store, source, FileWriter(flags_file), service="market_analysis",
                                        method="AnalyzeMarket", steps=[50, 100], interval_s=1.5, max_failed_checks=2,
                                        thresholds=Thresholds(min_samples=5, latency_factor=50, max_breaker_opens=99,
                                                              max_fallback_rate=1),
                                        actor="tester")
                await asyncio.sleep(0.3)  # the flags file is polled every 0.1 s
                assert flags.use_grpc("market_analysis", "GetCandles") is False  # only the method moves
                await asyncio.wait_for(Controller(store, source, lease_ttl_s=5).run(tick_s=0.2, until_idle=True), 60)
        done = await store.get(r.id)
        assert (done.state, done.percent, done.failed_checks) == ("rolled_back", 0, 2)
        assert parse_flags(flags_file.read_text(), "f").services["market_analysis"].methods["AnalyzeMarket"].grpc == 0
        events = await store.events([r.id])
        assert [e.kind for e in events if e.kind in ("halted", "rolled_back", "step")] == ["halted", "rolled_back"]
        parity = [c for e in events if e.kind == "analysis" for c in e.checks if c["name"] == "parity"]
        assert len(parity) == 2 and not any(c["passed"] for c in parity)
        assert parity[-1]["value"] == "100.00%"  # REST and gRPC never agreed on AnalyzeMarket
        entries = await store.audit_log(flag_prefix="market_analysis.methods.AnalyzeMarket")
        assert [(a.old, a.new) for a in entries] == [("-", "50"), ("50", "0")]
        assert entries[1].actor.startswith("rollout-controller:") and "rolled back" in entries[1].why
    finally:
        await source.close()
        await store.close()
        await host.stop(grace=0)


async def test_one_controller_holds_a_service_until_its_lease_runs_out(tmp_path):
    store = RolloutStore.for_data_dir(tmp_path)
    try:
        assert await store.acquire("rollout:backtesting", "a", 0.5)
        assert not await store.acquire("rollout:backtesting", "b", 0.5)
        assert await store.acquire("rollout:backtesting", "a", 0.5)  # renewing
        assert await store.acquire("rollout:market_analysis", "b", 0.5)  # another service is free
        await asyncio.sleep(0.7)
        assert await store.acquire("rollout:backtesting", "b", 0.5)
        assert (await store.lease_holder("rollout:backtesting"))[0] == "b"
    finally:
        await store.close()
