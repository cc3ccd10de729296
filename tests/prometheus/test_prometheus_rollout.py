"""The Prometheus tier: automated rollouts judged by a real Prometheus scraping a real platform.

`bash scripts/prometheus_tier.sh` starts `fxplat up` (auth off, flags in a file of its own) and Debian's prometheus
scraping every service (1 s) plus this test process (through a file_sd file), then runs this file with PROMETHEUS_URL,
FXPLAT_DATA_DIR, FXPLAT_FLAGS, the services' endpoints and FXPLAT_PROM_SD_FILE set. Without them every test is
skipped, and the tier script fails on any skip.

One rollout of backtesting goes 0 -> 25 -> 50 -> 100 % with every check recorded; one of market_analysis'
AnalyzeMarket, against a gRPC skin that answers with a skewed field, rolls back to 0 % by itself.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from adapters.canary import CanaryStore, database_url
from adapters.connect import connect
from adapters.flags import Flags
from adapters.shadow import Shadower
from adapters.shadow_worker import ShadowWorker
from fxplat.catalog import skins_host
from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.common.market_types import Timeframe
from services.market_analysis.domain import MarketAnalysisDomain
from services.market_analysis.models import SummaryQuery
from transport import config
from transport.client_factory import ClientFactory
from rollout_helpers import MARCH, SYMBOLS, Skewed, fxplat

REQUIRED_ENV = ("PROMETHEUS_URL", "FXPLAT_DATA_DIR", "FXPLAT_FLAGS", "FXPLAT_PROM_SD_FILE", "FXPLAT_ACTOR")
_MISSING = [name for name in REQUIRED_ENV if not os.environ.get(name)]
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs the Prometheus tier ({', '.join(_MISSING)} not set); "
                                              "run bash scripts/prometheus_tier.sh"),
]
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "fxplat-migration.json"


async def prom(expr: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=os.environ["PROMETHEUS_URL"], timeout=10) as http:
        body = (await http.get("/api/v1/query", params={"query": expr})).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


@pytest.fixture(scope="module")
async def scraped_host():
    """This process, seen by Prometheus: a market host whose gRPC skin skews AnalyzeMarket's ATR, its /metrics
    holding everything this process counts (the adapters' calls, fallbacks and shadow comparisons)."""
    domain = MarketAnalysisDomain(Path(os.environ["FXPLAT_DATA_DIR"]))
    await domain.warm()
    host = await skins_host("market_analysis", domain, grpc_impl=Skewed(domain)).start()
    target = host.rest_url.removeprefix("http://")
    Path(os.environ["FXPLAT_PROM_SD_FILE"]).write_text(json.dumps([{"targets": [target],
                                                                     "labels": {"role": "rollout-test"}}]))
    for _ in range(300):  # bounded: file_sd is re-read on change, then scraped every second
        if any(r["value"][1] == "1" for r in await prom(f'up{{instance="{target}"}}')):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"Prometheus never scraped {target}")
    yield host
    await host.stop(grace=0)


@pytest.fixture(scope="module")
async def tier():
    factory = ClientFactory()
    flags = Flags(os.environ["FXPLAT_FLAGS"], unleash_url="", poll_interval=0.1)
    flags.start()
    store = CanaryStore(database_url(Path(os.environ["FXPLAT_DATA_DIR"])))
    shadower = Shadower(store.record, ShadowWorker(factory))
    await shadower.start()
    yield factory, flags, shadower
    await shadower.close()
    await store.close()
    flags.close()
    await factory.close()


async def traffic(stop: asyncio.Event, call, shadower) -> int:
    n = 0
    while not stop.is_set():
        await call(n)
        n += 1
        if n % 10 == 0:
            await shadower.drain()
        await asyncio.sleep(0.005)
    return n


async def history(service: str) -> dict:
    code, out, err = await fxplat(dict(os.environ), "rollout", "history", service, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_a_rollout_on_prometheus_goes_from_0_to_100_with_every_check_recorded(scraped_host, tier):
    factory, flags, shadower = tier
    adapter = connect("backtesting", config.endpoint("backtesting"), factory=factory, flags=flags,
                      shadower=shadower, caller="tier-traffic")
    stored = await adapter.run_backtest(BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20}, range=MARCH))

    async def read(n: int) -> None:
        if n % 2:
            assert (await adapter.get_backtest(stored.summary.id)).summary.id == stored.summary.id
        else:
            await adapter.list_backtests(ListBacktestsQuery(symbol="EURUSD", page_size=5))

    stop = asyncio.Event()
    load = asyncio.create_task(traffic(stop, read, shadower))
    try:
        await asyncio.sleep(2)  # traffic seen by a few scrapes before the first step
        code, out, err = await fxplat(dict(os.environ), "rollout", "start", "backtesting", "--steps", "25,50,100",
                                      "--interval", "4s", "--shadow", "100", "--min-samples", "10",
                                      "--latency-factor", "3", "--wait", "--tick", "0.5s",
                                      "--reason", "prometheus tier", timeout=120)
    finally:
        stop.set()
        calls = await load
    assert code == 0, out + err
    assert "promoted at 100 %" in out, out
    shown = await history("backtesting")
    rollout = shown["rollouts"][-1]
    assert (rollout["state"], rollout["percent"]) == ("promoted", 100)
    analyses = [e for e in shown["events"] if e["rollout_id"] == rollout["id"] and e["kind"] == "analysis"]
    assert [e["percent"] for e in analyses] == [25, 50, 100]
    for e in analyses:
        checks = {c["name"]: c for c in e["checks"]}
        assert all(checks[n]["passed"] for n in ("parity", "errors", "latency", "resilience")), checks
        assert checks["evidence"]["source"].startswith("prometheus ")
        assert checks["evidence"]["shadow_samples"] >= 10 and checks["evidence"]["calls"].get("grpc", 0) > 0
    audit = [(a["flag"], a["old"], a["new"]) for a in shown["audit"] if a["rollout_id"] == rollout["id"]]
    assert audit == [("backtesting.shadow", "0", "100"), ("backtesting.grpc", "0", "25"),
                     ("backtesting.grpc", "25", "50"), ("backtesting.grpc", "50", "100")]
    assert calls > 100


async def test_a_skewed_grpc_answer_rolls_back_to_0_without_a_person(scraped_host, tier):
    factory, flags, shadower = tier
    adapter = connect("market_analysis", config.Endpoint(scraped_host.rest_url, scraped_host.grpc_target),
                      factory=factory, flags=flags, shadower=shadower, caller="tier-traffic")

    async def read(n: int) -> None:
        await adapter.analyze_market(SummaryQuery(SYMBOLS[n % len(SYMBOLS)], Timeframe.H4, MARCH))

    stop = asyncio.Event()
    load = asyncio.create_task(traffic(stop, read, shadower))
    try:
        await asyncio.sleep(2)
        code, out, err = await fxplat(dict(os.environ), "rollout", "start", "market_analysis", "--method",
                                      "AnalyzeMarket", "--steps", "50,100", "--interval", "4s", "--shadow", "100",
                                      "--min-samples", "10", "--latency-factor", "3", "--max-failed-checks", "2",
                                      "--wait", "--tick", "0.5s", timeout=120)
        # The alert rule sees what the controller saw (its `for:` is minutes; its expression is checked here).
        mismatching = await prom('sum by (service, method) (rate(fxplat_shadow_comparisons_total{result="mismatch"}'
                                 '[1m])) / sum by (service, method) (rate(fxplat_shadow_comparisons_total[1m])) '
                                 '> 0.001')
    finally:
        stop.set()
        await load
    assert code == 1, out + err  # the command says so: rolled back
    assert "rolled back to 0 %" in out + err
    assert {(r["metric"]["service"], r["metric"]["method"]) for r in mismatching} == {
        ("market_analysis", "AnalyzeMarket")}
    shown = await history("market_analysis")
    rollout = shown["rollouts"][-1]
    assert (rollout["state"], rollout["percent"], rollout["failed_checks"]) == ("rolled_back", 0, 2)
    events = [e for e in shown["events"] if e["rollout_id"] == rollout["id"]]
    assert [e["kind"] for e in events if e["kind"] in ("halted", "rolled_back")] == ["halted", "rolled_back"]
    parity = [c for e in events if e["kind"] == "analysis" for c in e["checks"] if c["name"] == "parity"]
    assert len(parity) == 2 and not any(c["passed"] for c in parity)
    audit = [(a["flag"], a["old"], a["new"], a["actor"].split(":")[0]) for a in shown["audit"]
             if a["rollout_id"] == rollout["id"]]
    person = os.environ["FXPLAT_ACTOR"]  # the tier's name for the person starting rollouts
    assert audit == [("market_analysis.shadow", "0", "100", person),
                     ("market_analysis.methods.AnalyzeMarket.grpc", "-", "50", person),
                     ("market_analysis.methods.AnalyzeMarket.grpc", "50", "0", "rollout-controller")]
    await asyncio.sleep(0.3)
    assert flags.use_grpc("market_analysis", "AnalyzeMarket") is False  # the callers follow within ~1 s


async def test_every_dashboard_query_runs_on_prometheus_and_the_rules_are_loaded(scraped_host):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"].replace("$service", ".*") for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 9
    for expr in exprs:
        await prom(expr)  # asserts status success
    async with httpx.AsyncClient(base_url=os.environ["PROMETHEUS_URL"], timeout=10) as http:
        groups = (await http.get("/api/v1/rules")).json()["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert alerts == {"FxplatBreakerOpen", "FxplatFallbackRateRising", "FxplatShadowMismatches",
                      "FxplatGrpcErrorRateAboveRest"}
    served = await prom('sum by (transport) (fxplat_server_requests_total{service="backtesting"})')
    assert {r["metric"]["transport"] for r in served} >= {"grpc", "rest"}  # the platform's own servers, scraped


async def test_the_status_page_charts_the_fleet_from_prometheus(scraped_host):
    """The coordinator of `fxplat up` (started with PROMETHEUS_URL) draws its charts from Prometheus: the backtesting
    calls this test's traffic made over gRPC and REST appear, though the coordinator made none of them."""
    async with httpx.AsyncClient(base_url=config.endpoint("analysis_coordinator").rest_url, timeout=10) as http:
        status = (await http.get("/status.json")).json()
    assert status["series_source"].startswith(f"Prometheus {os.environ['PROMETHEUS_URL']}")
    backtesting = status["series"]["backtesting"]
    assert sum(backtesting["calls"]["grpc"]) > 0 and sum(backtesting["calls"]["rest"]) > 0
    assert any(v is not None for v in backtesting["p99_ms"]["grpc"])
    kinds = [(e["target"], e["kind"]) for e in status["timeline"]]
    assert ("backtesting", "promoted") in kinds and ("market_analysis.AnalyzeMarket", "rolled_back") in kinds
