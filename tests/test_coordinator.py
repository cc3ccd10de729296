"""The Analysis Coordinator on real servers: every RPC equal in-process, over gRPC and over REST; the report records
what served each component; failures stay inside their component; idempotency keys store one analysis."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest

from adapters.connect import connect
from adapters.core import last_call
from fxplat.catalog import BuildContext, build_host
from transport.config import Endpoint
from services.analysis_coordinator.grpc import AnalysisCoordinatorGrpcClient
from services.analysis_coordinator.models import Analysis, AnalysisRequest, CallStatus, ListAnalysesQuery
from services.analysis_coordinator.rest import AnalysisCoordinatorRestClient
from services.backtesting.models import ListBacktestsQuery
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.market_types import TimeRange, Timeframe

WIRES = ("domain", "grpc", "rest")
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
REQUEST = AnalysisRequest(("EURUSD", "GBPUSD", "USDJPY"), Timeframe.H1, MARCH, "sma_cross", {"fast": 5, "slow": 15})


def comparable(a: Analysis) -> Analysis:
    """The report without what legitimately differs between two runs: ids, times, latencies, transports."""
    backtests = tuple(dataclasses.replace(b, summary=dataclasses.replace(b.summary, id="", created_at=None))
                      for b in a.backtests)
    calls = tuple(dataclasses.replace(c, latency_ms=0.0, transport="", fallback_reason="") for c in a.calls)
    request = dataclasses.replace(a.request, idempotency_key="")
    return dataclasses.replace(a, id="", created_at=None, request=request, backtests=backtests, calls=calls)


@pytest.fixture(scope="module")
async def reports(coordinator_clients):
    return {wire: await coordinator_clients[wire].run_analysis(REQUEST) for wire in WIRES}


def test_report_is_complete(reports):
    a = reports["domain"]
    assert [c.component for c in a.calls] == [
        "market:EURUSD", "market:GBPUSD", "market:USDJPY", "causal:granger", "causal:correlations",
        "backtest:EURUSD", "backtest:GBPUSD", "backtest:USDJPY"]
    assert all(c.status is CallStatus.OK and c.latency_ms > 0 for c in a.calls)
    # The session's services call each other at 100 % gRPC (tests/conftest.py).
    assert {c.transport for c in a.calls} == {"grpc"}
    assert [s.symbol for s in a.market] == list(REQUEST.symbols)
    assert [b.summary.symbol for b in a.backtests] == list(REQUEST.symbols)
    assert len(a.granger.tests) == 6  # 3 pairs, both directions
    assert a.correlations.symbols == REQUEST.symbols
    assert a.request.params == {"fast": 5.0, "slow": 15.0}
    assert a.failed_calls == 0


@pytest.mark.parametrize("wire", ("grpc", "rest"))
def test_run_analysis_same_report_on_every_transport(reports, wire):
    assert comparable(reports[wire]) == comparable(reports["domain"])


@pytest.mark.parametrize("wire", WIRES)
async def test_get_analysis(coordinator_clients, reports, wire):
    stored = reports["grpc"]
    assert await coordinator_clients[wire].get_analysis(stored.id) == stored


@pytest.mark.parametrize("wire", WIRES)
async def test_list_analyses_pages_newest_first(coordinator_clients, reports, wire):
    ids, token = [], ""
    for _ in range(50):  # bounded
        page = await coordinator_clients[wire].list_analyses(ListAnalysesQuery("USDJPY", page_size=2, page_token=token))
        ids += [s.id for s in page.analyses]
        token = page.next_page_token
        if not token:
            break
    everything = await coordinator_clients["domain"].list_analyses(ListAnalysesQuery("USDJPY", page_size=100))
    assert ids == [s.id for s in everything.analyses]
    assert {r.id for r in reports.values()} <= set(ids)
    summary = next(s for s in everything.analyses if s.id == reports["rest"].id)
    assert summary.symbols == REQUEST.symbols and summary.strategy == "sma_cross" and summary.failed_calls == 0


BAD = [
    ("no symbols", dataclasses.replace(REQUEST, symbols=()), InvalidArgument, "symbols"),
    ("seven symbols", dataclasses.replace(REQUEST, symbols=("EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD",
                                                            "USDCAD", "NZDUSD")), InvalidArgument, "symbols"),
    ("symbol twice", dataclasses.replace(REQUEST, symbols=("EURUSD", "eurusd")), InvalidArgument, "symbols[1]"),
    ("unknown symbol", dataclasses.replace(REQUEST, symbols=("EURUSD", "XXXYYY")), NotFound, "symbols[1]"),
    ("unknown strategy", dataclasses.replace(REQUEST, strategy="martingale"), InvalidArgument, "strategy"),
    ("fast >= slow", dataclasses.replace(REQUEST, params={"fast": 20, "slow": 10}), InvalidArgument, "params.fast"),
    ("unknown param", dataclasses.replace(REQUEST, params={"period": 3}), InvalidArgument, "params.period"),
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
async def test_bad_requests_fail_the_same_way_everywhere(coordinator_clients, wire, case):
    _, request, error_type, field = case
    with pytest.raises(error_type) as raised:
        await coordinator_clients[wire].run_analysis(request)
    with pytest.raises(error_type) as from_domain:
        await coordinator_clients["domain"].run_analysis(request)
    assert raised.value.field == field
    assert raised.value == from_domain.value


@pytest.mark.parametrize("wire", WIRES)
async def test_unknown_id_and_bad_paging(coordinator_clients, wire):
    for unknown in ("f" * 32, "", "../v1/analyses"):
        with pytest.raises(NotFound) as raised:
            await coordinator_clients[wire].get_analysis(unknown)
        assert raised.value == NotFound(f"no analysis with id {unknown!r}", field="id")
    with pytest.raises(InvalidArgument) as raised:
        await coordinator_clients[wire].list_analyses(ListAnalysesQuery(page_size=101))
    assert raised.value.field == "page_size"
    with pytest.raises(InvalidArgument) as raised:
        await coordinator_clients[wire].list_analyses(ListAnalysesQuery(page_token="garbage!"))
    assert raised.value.field == "page_token"


async def test_a_failing_component_is_reported_and_the_rest_returned(coordinator_clients):
    """Three days of H1 bars are enough for market summaries and causality, not for a 100-bar moving average."""
    short = TimeRange(datetime(2025, 3, 4, tzinfo=timezone.utc), datetime(2025, 3, 7, tzinfo=timezone.utc))
    a = await coordinator_clients["grpc"].run_analysis(AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.H1, short, "sma_cross",
                                                           {"fast": 10, "slow": 100}))
    failed = [c for c in a.calls if c.status is CallStatus.FAILED]
    assert [c.component for c in failed] == ["backtest:EURUSD", "backtest:GBPUSD"]
    assert all(c.error_code == "INVALID_ARGUMENT" and "needs at least 102" in c.error_message for c in failed)
    assert len(a.market) == 2 and a.granger is not None and a.correlations is not None and a.backtests == ()
    assert a.failed_calls == 2
    assert (await coordinator_clients["rest"].get_analysis(a.id)).failed_calls == 2


@pytest.mark.parametrize("wire", ("grpc", "rest"))
async def test_one_key_stores_one_analysis_and_one_backtest_per_symbol(coordinator_clients, backtesting_host, wire):
    key = f"coordinator-test-{wire}"
    request = dataclasses.replace(REQUEST, symbols=("AUDUSD",), idempotency_key=key)
    first = await coordinator_clients[wire].run_analysis(request)
    stored_backtests = await backtesting_host.impl.list_backtests(ListBacktestsQuery(symbol="AUDUSD", page_size=100))
    again = await coordinator_clients["rest" if wire == "grpc" else "grpc"].run_analysis(request)
    assert again == first  # the stored report, not a second run
    page = await coordinator_clients["domain"].list_analyses(ListAnalysesQuery("AUDUSD", page_size=100))
    assert sum(s.id == first.id for s in page.analyses) == 1
    after = await backtesting_host.impl.list_backtests(ListBacktestsQuery(symbol="AUDUSD", page_size=100))
    assert after == stored_backtests
    with pytest.raises(FailedPrecondition) as raised:  # the key, reused for another request
        await coordinator_clients[wire].run_analysis(dataclasses.replace(request, strategy="rsi_reversion", params={}))
    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"


DEAD = Endpoint("http://127.0.0.1:9", "127.0.0.1:9")  # discard port: nothing listens, connections are refused


async def test_a_dependency_down_is_named(platform_ctx, market_host, backtesting_host, factory):
    """Causal Analysis down: its components fail with UNAVAILABLE naming it, the rest of the report is there.
    Market Analysis down: the analysis cannot start and says which dependency is missing."""
    ctx = dataclasses.replace(platform_ctx, endpoints={**platform_ctx.endpoints, "causal_analysis": DEAD})
    host = await build_host("analysis_coordinator", ctx, "127.0.0.1", 0, 0)
    await host.start()
    try:
        client = AnalysisCoordinatorRestClient(factory.http(host.rest_url))
        a = await client.run_analysis(dataclasses.replace(REQUEST, symbols=("EURUSD", "GBPUSD")))
        causal = [c for c in a.calls if c.service == "causal_analysis"]
        assert len(causal) == 2 and all(c.status is CallStatus.FAILED and c.error_code == "UNAVAILABLE"
                                         and c.error_message.startswith("causal_analysis is unavailable")
                                         for c in causal)
        assert all(c.fallback_reason == "unavailable" and c.transport == "rest" for c in causal)
        assert a.granger is None and a.correlations is None and len(a.market) == 2 and len(a.backtests) == 2
    finally:
        await host.stop(grace=0)

    ctx = dataclasses.replace(platform_ctx, endpoints={**platform_ctx.endpoints, "market_analysis": DEAD})
    host = await build_host("analysis_coordinator", ctx, "127.0.0.1", 0, 0)
    await host.start()
    try:
        for client in (AnalysisCoordinatorGrpcClient(factory.channel(host.grpc_target)),
                       AnalysisCoordinatorRestClient(factory.http(host.rest_url))):
            with pytest.raises(Unavailable) as raised:
                await client.run_analysis(REQUEST)
            assert raised.value.message.startswith("market_analysis is unavailable")
            assert raised.value.metadata["service"] == "market_analysis"
    finally:
        await host.stop(grace=0)


async def test_through_the_adapter(coordinator_host, factory, platform_flags):
    adapter = connect("analysis_coordinator", Endpoint(coordinator_host.rest_url, coordinator_host.grpc_target),
                      factory=factory, flags=platform_flags)
    a = await adapter.run_analysis(dataclasses.replace(REQUEST, symbols=("EURUSD",)))
    assert last_call.get().transport == "grpc"
    assert a.request.idempotency_key  # the adapter gave the write a key, so a retry cannot run it twice
    assert await adapter.get_analysis(a.id) == a


async def test_flags_move_every_component_call_and_the_report_stays_the_same(data_dir, factory, auth, tmp_path):
    """The acceptance run: four services, flags at 100 % gRPC, then 0 %; every component call of each analysis went
    over the transport the flags chose, and the two reports are equal apart from ids, timings and transports."""
    from adapters.flags import Flags
    from fxplat.runner import start_services

    path = tmp_path / "flags.yaml"
    path.write_text(ALL_SERVICES.format(percent=100))
    flags = Flags(path, unleash_url="", poll_interval=0.1)
    flags.start()
    hosts = await start_services(["market_analysis", "causal_analysis", "backtesting", "analysis_coordinator"],
                                 BuildContext(data_dir, factory, flags, auth=auth), host="127.0.0.1",
                                 ports={name: (0, 0) for name in ("market_analysis", "causal_analysis", "backtesting",
                                                                  "analysis_coordinator")})
    try:
        coordinator = hosts[-1]
        adapter = connect("analysis_coordinator", Endpoint(coordinator.rest_url, coordinator.grpc_target),
                          factory=factory, flags=flags)
        request = dataclasses.replace(REQUEST, symbols=("EURUSD", "GBPUSD"))
        over_grpc = await adapter.run_analysis(request)
        assert last_call.get().transport == "grpc"

        path.write_text(ALL_SERVICES.format(percent=0))
        for _ in range(100):  # bounded: the file is polled every 0.1 s
            if not flags.use_grpc("analysis_coordinator", "RunAnalysis"):
                break
            await asyncio.sleep(0.05)
        over_rest = await adapter.run_analysis(request)
        assert last_call.get().transport == "rest"
    finally:
        for svc in reversed(hosts):
            await svc.stop(grace=0)
        flags.close()
    assert {c.transport for c in over_grpc.calls} == {"grpc"} and {c.transport for c in over_rest.calls} == {"rest"}
    assert len(over_grpc.calls) == 6 and over_grpc.failed_calls == 0
    assert over_rest.id != over_grpc.id
    assert comparable(over_rest) == comparable(over_grpc)


ALL_SERVICES = """services:
  market_analysis: {{grpc: {percent}}}
  causal_analysis: {{grpc: {percent}}}
  backtesting: {{grpc: {percent}}}
  analysis_coordinator: {{grpc: {percent}}}
"""
