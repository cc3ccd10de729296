"""The ops status page in a real browser (headless Chromium): it loads, shows all four services with what the flags
say and what recent traffic did, and follows a flag flip on its own."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from adapters.connect import connect
from adapters.flags import Flags
from fxplat.catalog import BuildContext
from transport.config import Endpoint
from fxplat.runner import start_services
from services.analysis_coordinator.models import AnalysisRequest
from rollout.model import Rollout, Thresholds
from rollout.store import RolloutStore
from services.common.market_types import TimeRange, Timeframe

SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium for this test")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    return CHROMIUM


async def browse(chromium: str, url: str, profile, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
        *extra, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def row(dom: str, service: str) -> str:
    match = re.search(rf'<tr data-service="{service}">(.*?)</tr>', dom, re.S)
    assert match, f"no row for {service} in the page"
    return match.group(1)


async def test_status_page_shows_every_service_and_follows_a_flag_flip(chromium, data_dir, factory, auth, tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text("services:\n" + "".join(f"  {s}: {{grpc: 100}}\n" for s in SERVICES))
    flags = Flags(path, unleash_url="", poll_interval=0.1)
    flags.start()
    hosts = await start_services(list(SERVICES), BuildContext(data_dir, factory, flags, auth=auth), host="127.0.0.1",
                                 ports={s: (0, 0) for s in SERVICES})
    try:
        coordinator = hosts[-1]
        adapter = connect("analysis_coordinator", Endpoint(coordinator.rest_url, coordinator.grpc_target),
                          factory=factory, flags=flags, caller="status-test")
        march = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
        await adapter.run_analysis(AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.H1, march))

        url = f"{coordinator.rest_url}/status"
        dom = await browse(chromium, url, tmp_path / "profile", "--dump-dom")
        for service in SERVICES:
            assert "100%" in row(dom, service).split("</td>")[1]  # the flags' gRPC share
        assert "file:" in dom and "closed" in row(dom, "backtesting")  # source of the flags; breaker state
        calls = int(re.search(r'class="num">(\d+)</td>', row(dom, "backtesting")).group(1))
        assert calls >= 2  # the analysis' two backtests, made by the coordinator's adapter

        path.write_text(path.read_text().replace("backtesting: {grpc: 100}", "backtesting: {grpc: 0}"))
        for _ in range(50):  # bounded: the file is polled every 0.1 s
            if not flags.use_grpc("backtesting", "RunBacktest"):
                break
            await asyncio.sleep(0.05)
        dom = await browse(chromium, url, tmp_path / "profile", "--dump-dom")
        assert "0%" in row(dom, "backtesting").split("</td>")[1]
        assert "100%" in row(dom, "market_analysis").split("</td>")[1]
    finally:
        for svc in reversed(hosts):
            await svc.stop(grace=0)
        flags.close()


async def test_status_page_charts_the_last_hour_and_the_rollout_timeline(chromium, factory, auth, tmp_path):
    """Per service three small charts of the last hour (calls per transport, p50/p99, errors and fallbacks) and the
    rollouts' timeline with its halts and rollbacks, drawn by the browser from /status.json."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = tmp_path / "flags.yaml"
    path.write_text("services:\n" + "".join(f"  {s}: {{grpc: 50}}\n" for s in SERVICES))
    store = RolloutStore.for_data_dir(data_dir)
    start = datetime.now(timezone.utc) - timedelta(minutes=50)
    await history(store, start)
    flags = Flags(path, unleash_url="", poll_interval=0.1)
    flags.start()
    hosts = await start_services(list(SERVICES), BuildContext(data_dir, factory, flags, auth=auth), host="127.0.0.1",
                                 ports={s: (0, 0) for s in SERVICES})
    try:
        coordinator = hosts[-1]
        adapter = connect("analysis_coordinator", Endpoint(coordinator.rest_url, coordinator.grpc_target),
                          factory=factory, flags=flags, caller="status-test")
        march = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
        for symbols in (("EURUSD", "GBPUSD"), ("USDJPY", "AUDUSD"), ("EURUSD", "USDCHF")):
            await adapter.run_analysis(AnalysisRequest(symbols, Timeframe.H1, march))

        url = f"{coordinator.rest_url}/status"
        dom = await browse(chromium, url, tmp_path / "profile", "--dump-dom")
        charts = re.search(r'<tr class="charts" data-charts="backtesting">(.*?)</tr>', dom, re.S).group(1)
        assert charts.count('class="chart-svg"') == 3
        assert "<rect" in charts  # this minute's calls, as bars
        assert "<path" in charts  # p50/p99 lines
        assert "last hour of this process's adapters" in dom
        timeline = re.search(r'<div id="timeline">(.*?)</div>', dom, re.S).group(1)
        assert timeline.count('class="ev ev-rolled_back"') == 1 and timeline.count('class="ev ev-promoted"') == 1
        assert "market_analysis.AnalyzeMarket" in timeline and ">backtesting<" in timeline
        events = re.findall(r'<tr data-event="(\w+)"[^>]*>(.*?)</tr>', dom, re.S)
        assert [kind for kind, _ in events][:2] == ["rolled_back", "analysis"]  # newest first
        assert "failed: parity" in events[1][1] and "failed: parity" not in events[0][1]

        shot = tmp_path / "status.png"
        await browse(chromium, url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1300,1180")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("FXPLAT_UPDATE_SCREENSHOT"):  # how docs/status.png is refreshed
            shutil.copy(shot, os.environ["FXPLAT_UPDATE_SCREENSHOT"])
    finally:
        for svc in reversed(hosts):
            await svc.stop(grace=0)
        flags.close()
        await store.close()


async def history(store: RolloutStore, start: datetime) -> None:
    """Two rollouts of the last hour: backtesting promoted through its steps; market_analysis.AnalyzeMarket halted and
    rolled back by failed parity checks."""
    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    passed = [{"name": n, "passed": True} for n in ("parity", "errors", "latency", "resilience")]
    failed = [{"name": "parity", "passed": False}] + passed[1:]
    bt = await store.create(Rollout(0, "backtesting", "", [5, 25, 50, 100], 300, 2, Thresholds(), "file:x",
                                    step_started_at=at(0)))
    await store.event(bt, "started", "started by alice", actor="alice", at=at(0))
    for i, minute in enumerate((5, 10, 15)):
        bt.step_index = i
        await store.event(bt, "analysis", "analysis", actor="controller", checks=passed, at=at(minute))
        bt.step_index = i + 1
        await store.event(bt, "step", f"step {i + 2}/4", actor="controller", at=at(minute))
    await store.event(bt, "analysis", "analysis", actor="controller", checks=passed, at=at(20))
    bt.state = "promoted"
    await store.event(bt, "promoted", "every check passed at 100 %: promoted", actor="controller", at=at(20))
    ma = await store.create(Rollout(0, "market_analysis", "AnalyzeMarket", [25, 100], 300, 2, Thresholds(),
                                    "file:x", step_started_at=at(25)))
    await store.event(ma, "started", "started by alice", actor="alice", at=at(25))
    await store.event(ma, "analysis", "analysis", actor="controller", checks=failed, at=at(30))
    await store.event(ma, "halted", "failed check 1/2 (parity: 100.00%)", actor="controller", at=at(30))
    await store.event(ma, "analysis", "analysis", actor="controller", checks=failed, at=at(35))
    ma.state = "rolled_back"
    await store.event(ma, "rolled_back", "failed check 2/2 (parity: 100.00%): rolled back to 0 %", actor="controller",
                      at=at(35))
