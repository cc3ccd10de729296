"""The fleet through HAProxy: every RPC on both transports, shared imports, a rolling restart and a killed replica
under 16 callers without a lost call. Run by `bash scripts/fleet_tier.sh`."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from adapters.connect import connect
from adapters.flags import Flags
from fxplat import calls
from fxplat.credentials import client_factory
from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.causal_analysis.models import LeadLagRequest, SymbolPair
from services.common.errors import Unavailable
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import CandlesQuery
from services.analysis_coordinator.models import ListAnalysesQuery
from transport import config

MARCH = {"start": "2025-03-03T00:00:00Z", "end": "2025-03-10T00:00:00Z"}
CALLERS = 16


def _examples(backtest_id: str = "", analysis_id: str = "") -> dict[str, dict[str, dict]]:
    """A valid request for every RPC (protobuf JSON)."""
    pair = {"first": "EURUSD", "second": "GBPUSD"}
    return {
        "market_analysis": {
            "ListSymbols": {},
            "GetCandles": {"symbol": "EURUSD", "timeframe": "TIMEFRAME_H1", "range": MARCH, "limit": 5},
            "ComputeIndicators": {"symbol": "EURUSD", "timeframe": "TIMEFRAME_H1", "range": MARCH,
                                  "indicators": [{"name": "rsi"}]},
            "AnalyzeMarket": {"symbol": "GBPUSD", "timeframe": "TIMEFRAME_H4"},
        },
        "causal_analysis": {
            "GrangerCausality": {"pairs": [pair], "timeframe": "TIMEFRAME_H1", "range": MARCH, "max_lag": 3},
            "CorrelationMatrix": {"symbols": ["EURUSD", "GBPUSD", "USDJPY"], "timeframe": "TIMEFRAME_H1",
                                  "range": MARCH},
            "RollingCorrelation": {"pair": pair, "timeframe": "TIMEFRAME_H1", "range": MARCH, "window": 24},
            "LeadLag": {"pair": pair, "timeframe": "TIMEFRAME_H1", "range": MARCH, "max_lag": 5},
        },
        "backtesting": {
            "RunBacktest": {"symbol": "USDJPY", "strategy": "sma_cross", "params": {"fast": 5, "slow": 30},
                            "timeframe": "TIMEFRAME_H1", "range": MARCH},
            "GetBacktest": {"id": backtest_id},
            "ListBacktests": {"page_size": 5},
            "DeleteBacktest": {"id": backtest_id},
        },
        "analysis_coordinator": {
            "RunAnalysis": {"symbols": ["EURUSD", "GBPUSD"], "timeframe": "TIMEFRAME_H1", "range": MARCH},
            "GetAnalysis": {"id": analysis_id},
            "ListAnalyses": {"page_size": 5},
        },
    }


def _served(replica, transport: str) -> float:
    """Calls this replica's own /metrics counted as served OK over `transport`."""
    text = httpx.get(f"{replica.rest_url}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in re.finditer(
        rf'^fxplat_server_requests_total\{{code="OK",method="[^"]+",service="{replica.service}",'
        rf'transport="{transport}"\}} (\S+)$', text, re.M))


async def _call(service: str, method: str, request: dict, transport: str, flags: Flags):
    """One RPC forced onto `transport` (no fallback). Each call opens a new connection; on a starved box a connect
    can time out before the balancer is even reached, so a refused or timed-out connect is tried again (twice)."""
    for attempt in range(3):
        try:
            return await calls.call(service, method, json.dumps(request), transport=transport, flags=flags)
        except Unavailable as exc:
            if attempt == 2 or "connect" not in exc.message:
                raise
            await asyncio.sleep(1)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_every_rpc_through_the_balancer(fleet_env, transport):
    fleet = fleet_env
    flags = Flags(None, unleash_url="")
    try:
        before = {(r.service, r.host): _served(r, transport) for r in fleet.all()}
        done: list[str] = []
        for _ in range(2):  # twice: round robin sends each service's calls to both replicas
            ids: dict[str, str] = {}
            for service in config.SERVICES:
                for method in _examples()[service]:
                    request = _examples(ids.get("backtest", ""), ids.get("analysis", ""))[service][method]
                    result, record = await _call(service, method, request, transport, flags)
                    assert record.transport == transport and not record.fell_back, (service, method, record)
                    if method == "RunBacktest":
                        ids["backtest"] = result["backtest"]["summary"]["id"]
                    if method == "RunAnalysis":
                        ids["analysis"] = result["analysis"]["id"]
                        assert result["analysis"].get("failed_calls", 0) == 0, result["analysis"]
                    done.append(f"{service}.{method}")
        assert len(set(done)) == 15
        for replica in fleet.all():
            assert _served(replica, transport) > before[(replica.service, replica.host)], \
                f"{replica} served no {transport} call through the balancer"
    finally:
        flags.close()


async def test_an_import_through_one_replica_is_served_by_the_other(fleet_env, tmp_path):
    fleet = fleet_env
    a, b = fleet.replicas["market_analysis"]
    csv = tmp_path / "xagusd.csv"
    csv.write_text("time,open,high,low,close,volume\n" + "".join(
        f"{1740787200 + 3600 * i},{30 + i * 0.01:.2f},{30.5 + i * 0.01:.2f},{29.5 + i * 0.01:.2f},"
        f"{30.1 + i * 0.01:.2f},{i}\n" for i in range(48)))
    # The import as replica a's host would run it: its data directory, the shared DATABASE_URL.
    imported = subprocess.run([sys.executable, "-m", "fxplat", "data", "import", str(csv), "--symbol", "XAGUSD",
                               "--data-dir", str(a.data_dir)], env=a.env, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert not (b.data_dir / "market.sqlite").exists() and not (a.data_dir / "market.sqlite").exists()
    headers = {"authorization": f"Bearer {os.environ['FXPLAT_TOKEN']}"}
    deadline = time.monotonic() + 10
    for replica in (b, a):
        while True:
            r = httpx.get(f"{replica.rest_url}/v1/candles/XAGUSD", params={"timeframe": "H1", "limit": 3},
                          headers=headers, timeout=10)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert r.status_code == 200, f"{replica}: {r.status_code} {r.text}"
        assert [c["open"] for c in r.json()["candles"]] == [30.0, 30.01, 30.02]
    # And over gRPC, straight to replica b.
    os.environ["FXPLAT_MARKET_ANALYSIS_GRPC_TARGET"] = b.grpc_target
    try:
        result, record = await calls.call("market_analysis", "ListSymbols", "{}", transport="grpc",
                                          flags=Flags(None, unleash_url=""))
    finally:
        os.environ["FXPLAT_MARKET_ANALYSIS_GRPC_TARGET"] = fleet.env["FXPLAT_MARKET_ANALYSIS_GRPC_TARGET"]
    assert {s["symbol"]: s["source"] for s in result["symbols"]}["XAGUSD"] == "imported"


class Load:
    """16 callers through the flagged adapters (flags: 50 % gRPC, decided per call), reads on all four services and
    backtests (writes, with their idempotency keys), until stopped; every failure is kept."""

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        self.calls = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Load":
        self._flags = Flags(Path(self.fleet.env["FXPLAT_FLAGS"]), unleash_url="")
        self._factory = client_factory()
        adapters = {s: connect(s, config.endpoint(s), factory=self._factory, flags=self._flags, caller="fleet-test")
                    for s in config.SERVICES}
        march = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 3, 10, tzinfo=timezone.utc))
        work = [
            lambda: adapters["market_analysis"].get_candles(CandlesQuery("EURUSD", Timeframe.H1, march, limit=20)),
            lambda: adapters["market_analysis"].list_symbols(),
            lambda: adapters["causal_analysis"].lead_lag(LeadLagRequest(SymbolPair("EURUSD", "GBPUSD"),
                                                                        Timeframe.H1, march, max_lag=3)),
            lambda: adapters["backtesting"].list_backtests(ListBacktestsQuery(page_size=3)),
            lambda: adapters["backtesting"].run_backtest(BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20},
                                                                         Timeframe.H4, march)),
            lambda: adapters["analysis_coordinator"].list_analyses(ListAnalysesQuery(page_size=3)),
        ]

        async def caller(n: int) -> None:
            i = n
            while not self._stop.is_set():
                i += 1
                name = ("get_candles", "list_symbols", "lead_lag", "list_backtests", "run_backtest",
                        "list_analyses")[i % len(work)]
                try:
                    await work[i % len(work)]()
                    self.calls += 1
                except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                    self.failures.append(f"{name}: {type(exc).__name__}: {exc}")

        self._tasks = [asyncio.create_task(caller(n)) for n in range(CALLERS)]
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._factory.close()
        self._flags.close()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f}s"
        await asyncio.sleep(0.3)


async def test_rolling_restart_under_load_loses_no_call(fleet_env):
    fleet = fleet_env
    async with Load(fleet) as load:
        await _until(lambda: load.calls >= 50, 60, "load")
        stopped = {}
        for wave in (0, 1):  # replica a of every service, then replica b: one replica of each always serves
            replicas = [fleet.replicas[s][wave] for s in config.SERVICES]
            codes = await asyncio.gather(*(asyncio.to_thread(r.stop) for r in replicas))
            stopped |= {str(r): (code, r.log_tail(1500)) for r, code in zip(replicas, codes)}
            for r in replicas:
                r.start()
            for r in replicas:
                await asyncio.to_thread(r.wait_ready)
            for r in replicas:  # HAProxy's checks put the new replicas back before the other ones go
                await asyncio.to_thread(fleet.wait_in_rotation, r)
        calls_at_end = load.calls
    assert not load.failures, f"{len(load.failures)} of {load.calls} calls failed: {load.failures[:10]}"
    unclean = {name: log for name, (code, log) in stopped.items() if code != 0}
    assert not unclean, f"replicas that did not exit 0 on SIGTERM: {unclean}"
    assert calls_at_end >= 200, f"only {calls_at_end} calls during the restart"


async def test_a_replica_killed_under_load_loses_no_call(fleet_env):
    fleet = fleet_env
    victims = [fleet.replicas["market_analysis"][0], fleet.replicas["backtesting"][1]]
    async with Load(fleet) as load:
        await _until(lambda: load.calls >= 50, 60, "load")
        killed = []
        for victim in victims:
            pids = victim.service_pids()
            assert pids, f"no service process under {victim}"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed += pids
        mark = load.calls
        await _until(lambda: load.calls >= mark + 300, 120, "calls after the kill")
        # The supervisors replace the killed processes; the fleet is whole again.
        for victim in victims:
            await _until(lambda v=victim: bool(set(v.service_pids()) - set(killed)) and v.ready(), 400,
                         f"a restarted {victim}")
            await asyncio.to_thread(fleet.wait_in_rotation, victim)
    assert not load.failures, f"{len(load.failures)} of {load.calls} calls failed: {load.failures[:10]}"
