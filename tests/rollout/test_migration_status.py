"""`fxplat migration status` asks the running servers, not a list: a method whose gRPC skin answers UNIMPLEMENTED is
reported as not migrated, the others as migrated; a probe never runs a write; the Markdown report says the same."""
from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from adapters.flag_schema import FlagsConfig, ServiceFlags
from fxplat.catalog import skins_host
from fxplat.cli import app
from fxplat.migration_status import collect
from services.backtesting.models import ListBacktestsQuery
from services.common.errors import Unimplemented
from transport.config import SERVICES, Endpoint

NOWHERE = Endpoint("http://127.0.0.1:9", "127.0.0.1:9")


class IndicatorsNotPorted:
    """The market domain, except that ComputeIndicators is not implemented (over the transport it is served on)."""

    def __init__(self, impl) -> None:
        self._impl = impl

    def __getattr__(self, name: str):
        return getattr(self._impl, name)

    async def compute_indicators(self, query):
        raise Unimplemented("ComputeIndicators is not on gRPC yet")


async def test_a_method_answering_unimplemented_over_grpc_is_reported_not_migrated(market_host, backtesting_host,
                                                                                   tmp_path):
    market = await skins_host("market_analysis", market_host.impl,
                              grpc_impl=IndicatorsNotPorted(market_host.impl)).start()
    backtesting = await skins_host("backtesting", backtesting_host.impl).start()
    before = len((await backtesting_host.impl.list_backtests(ListBacktestsQuery(page_size=100))).backtests)
    endpoints = {s: NOWHERE for s in SERVICES} | {
        "market_analysis": Endpoint(market.rest_url, market.grpc_target),
        "backtesting": Endpoint(backtesting.rest_url, backtesting.grpc_target)}
    flags = FlagsConfig(services={"market_analysis": ServiceFlags(grpc=100), "backtesting": ServiceFlags(grpc=25)})
    try:
        rows = await collect(flags, tmp_path, None, endpoints)
        env = {f"FXPLAT_{s.upper()}_GRPC_TARGET": e.grpc_target for s, e in endpoints.items()} | {
            "FXPLAT_DATA_DIR": str(tmp_path), "FXPLAT_FLAGS": None, "UNLEASH_URL": None}
        report = tmp_path / "migration-status.md"
        result = await asyncio.to_thread(CliRunner().invoke, app,
                                         ["migration", "status", "--markdown", str(report)], env=env)
    finally:
        await market.stop(grace=0)
        await backtesting.stop(grace=0)
    by = {(r.service, r.method): r for r in rows}
    indicators = by[("market_analysis", "ComputeIndicators")]
    assert (indicators.grpc_implemented, indicators.grpc_probe) == ("no", "probe: UNIMPLEMENTED")
    assert indicators.next_step.startswith("implement the gRPC method")
    for method in ("ListSymbols", "GetCandles", "AnalyzeMarket"):
        assert by[("market_analysis", method)].grpc_implemented == "yes"
        assert by[("market_analysis", method)].share == 100
    assert by[("market_analysis", "GetCandles")].parity_tests == ["test_market_parity.py"]
    for method in ("RunBacktest", "GetBacktest", "ListBacktests", "DeleteBacktest"):
        assert by[("backtesting", method)].grpc_implemented == "yes", by[("backtesting", method)]
    assert by[("backtesting", "RunBacktest")].grpc_probe == "probe: INVALID_ARGUMENT"  # refused before running
    assert len((await backtesting_host.impl.list_backtests(ListBacktestsQuery(page_size=100))).backtests) == before
    assert by[("causal_analysis", "GrangerCausality")].grpc_implemented == "unknown"  # nothing listens there

    assert result.exit_code == 0, result.output
    assert "ComputeIndicators" in result.stdout
    text = report.read_text()
    assert "| market_analysis | ComputeIndicators | no | probe: UNIMPLEMENTED |" in text
    assert "| market_analysis | ListSymbols | yes | probe: OK |" in text
