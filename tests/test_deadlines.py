"""A caller's deadline travels with the call: coordinator -> backtesting -> market analysis, on both transports, each
hop receiving what the previous one had left; work past the deadline fails with DEADLINE_EXCEEDED and is abandoned."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest

from adapters.connect import connect
from adapters.flags import Flags
from fxplat.catalog import CATALOG, build_host, skins_host
from transport.config import Endpoint
from services.analysis_coordinator.grpc import AnalysisCoordinatorGrpcClient
from services.analysis_coordinator.models import AnalysisRequest, ListAnalysesQuery
from services.analysis_coordinator.rest import AnalysisCoordinatorRestClient
from services.backtesting.domain import BacktestingDomain
from services.common.errors import DeadlineExceeded
from services.common.market_types import TimeRange, Timeframe
from transport import context
from transport.server import ServiceHost

BUDGET_S = 20.0
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))


class Recording:
    """A real implementation, noting the deadline budget each call arrives with (what its server skin was given)."""

    def __init__(self, impl, seen: list[tuple[str, float | None]]) -> None:
        self._impl = impl
        self._seen = seen

    def __getattr__(self, name: str):
        target = getattr(self._impl, name)

        async def call(*args, **kwargs):
            self._seen.append((name, context.remaining()))
            return await target(*args, **kwargs)

        return call


async def serve(name: str, impl) -> ServiceHost:
    return await skins_host(name, impl).start()


@pytest.fixture(params=["grpc", "rest"])
async def chain(request, platform_ctx, market_host, causal_host, tmp_path):
    """Every hop over one transport: a recording market, a recording backtesting that calls it, a coordinator."""
    path = tmp_path / "flags.yaml"
    percent = 100 if request.param == "grpc" else 0
    path.write_text("services:\n" + "".join(f"  {s}: {{grpc: {percent}}}\n" for s in CATALOG))
    flags = Flags(path, unleash_url="")
    seen = {"market_analysis": [], "backtesting": []}
    market = await serve("market_analysis", Recording(market_host.impl, seen["market_analysis"]))
    market_ep = Endpoint(market.rest_url, market.grpc_target)
    domain = BacktestingDomain(connect("market_analysis", market_ep, factory=platform_ctx.factory, flags=flags,
                                       caller="backtesting"), data_dir=tmp_path)
    backtesting = await serve("backtesting", Recording(domain, seen["backtesting"]))
    ctx = dataclasses.replace(platform_ctx, flags=flags, endpoints={
        **platform_ctx.endpoints, "market_analysis": market_ep,
        "backtesting": Endpoint(backtesting.rest_url, backtesting.grpc_target)})
    coordinator = await (await build_host("analysis_coordinator", ctx, "127.0.0.1", 0, 0)).start()
    factory = platform_ctx.factory
    client = (AnalysisCoordinatorGrpcClient(factory.channel(coordinator.grpc_target)) if request.param == "grpc"
              else AnalysisCoordinatorRestClient(factory.http(coordinator.rest_url)))
    yield request.param, client, seen
    for host in (coordinator, backtesting, market):
        await host.stop(grace=0)
    await domain.close()
    flags.close()


async def test_the_deadline_shrinks_across_two_hops(chain):
    wire, client, seen = chain
    with context.budget(BUDGET_S):
        analysis = await client.run_analysis(AnalysisRequest(("EURUSD",), Timeframe.H1, MARCH))
    assert {c.transport for c in analysis.calls} == {wire} and analysis.failed_calls == 0
    at_backtesting = [left for name, left in seen["backtesting"] if name == "run_backtest"]
    at_market = [left for name, left in seen["market_analysis"] if name == "get_candles"]  # only backtesting asks
    assert len(at_backtesting) == 1 and at_market
    # Hop 1 (coordinator -> backtesting) got less than the caller's budget; hop 2 (-> market) less again.
    assert 0 < at_backtesting[0] < BUDGET_S
    assert all(0 < left < at_backtesting[0] for left in at_market), (at_backtesting, at_market, seen)
    # The coordinator's own calls to market analysis are one hop away: also within the caller's budget.
    assert all(left is not None and 0 < left < BUDGET_S for name, left in seen["market_analysis"]
               if name in ("list_symbols", "analyze_market"))


async def test_work_past_the_deadline_is_abandoned(chain):
    """A whole-history M1 analysis takes seconds; with 0.3 s it fails with DEADLINE_EXCEEDED and stores nothing."""
    _, client, _ = chain
    request = AnalysisRequest(("EURUSD", "GBPUSD", "USDJPY"), Timeframe.M1)
    before = await client.list_analyses(ListAnalysesQuery(page_size=100))
    with context.budget(0.3), pytest.raises(DeadlineExceeded):
        await client.run_analysis(request)
    await asyncio.sleep(4)  # longer than the whole analysis would take: had it gone on, it would be stored by now
    after = await client.list_analyses(ListAnalysesQuery(page_size=100))
    assert after.analyses == before.analyses
