"""The ops status page in a real browser (headless Chromium): it loads, shows all four services with what the flags
say and what recent traffic did, and follows a flag flip on its own."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
from datetime import datetime, timezone

import pytest

from adapters.connect import connect
from adapters.flags import Flags
from fxplat.catalog import BuildContext
from transport.config import Endpoint
from fxplat.runner import start_services
from services.analysis_coordinator.models import AnalysisRequest
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

        shot = tmp_path / "status.png"
        await browse(chromium, url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1300,420")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("FXPLAT_UPDATE_SCREENSHOT"):  # how docs/status.png is refreshed
            shutil.copy(shot, os.environ["FXPLAT_UPDATE_SCREENSHOT"])
    finally:
        for svc in reversed(hosts):
            await svc.stop(grace=0)
        flags.close()
