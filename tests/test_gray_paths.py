"""Gray failures of the gRPC path between a caller and a Market Analysis process (a real `fxplat up`), injected by a
TCP proxy: a blackholed path and a slow path lose no call and move traffic to REST within the attempt bound, the
breaker opens on the failure or slow-call rate and traffic returns to gRPC after healing; a server 300 ms away
connects; both transports blackholed end in a DEADLINE_EXCEEDED that names the service."""
from __future__ import annotations

import asyncio
import time

import pytest

from adapters.connect import connect
from adapters.core import last_call
from adapters.flags import Flags
from adapters.resilience import KINDS
from faultproxy import FaultProxy
from gray import ALL_GRPC, Load, Replica, base_env, free_port, p99
from services.common.errors import DeadlineExceeded
from services.market_analysis.models import CandlesQuery
from transport.client_factory import ClientFactory
from transport.config import Endpoint

pytestmark = pytest.mark.timeout(400)  # the module's server starts in the first test (a minute on a busy box)
QUERY = CandlesQuery("EURUSD", limit=20)
ATTEMPT_S = KINDS["lookup"].attempt_s  # ListSymbols is a lookup
HOST = "127.0.0.2"


@pytest.fixture(scope="module")
def flags(tmp_path_factory):
    path = tmp_path_factory.mktemp("gray-flags") / "flags.yaml"
    path.write_text(ALL_GRPC)
    evaluator = Flags(path, unleash_url="")
    yield path, evaluator
    evaluator.close()


@pytest.fixture(scope="module")
async def market(tmp_path_factory, flags):
    tmp = tmp_path_factory.mktemp("gray-market")
    replica = Replica("market_analysis", HOST, free_port(HOST), free_port(HOST), tmp / "data", base_env(flags[0]),
                      tmp / "up.log").start()
    try:
        await replica.ready()
        yield replica
    finally:
        replica.kill()


@pytest.fixture
async def proxied(market, flags):
    """The adapter, its gRPC path through a fault proxy, REST direct."""
    async with FaultProxy(HOST, market.grpc_port) as proxy, ClientFactory() as factory:
        adapter = connect("market_analysis", Endpoint(market.rest_url, proxy.address), factory=factory,
                          flags=flags[1], caller=f"gray-{time.monotonic_ns()}")
        for _ in range(40):  # warm: the adapter knows gRPC answers fast
            await adapter.list_symbols()
        yield proxy, adapter


async def _fault_and_heal(proxy, adapter, mode: str, delay_s: float = 0.0) -> tuple[Load, float, float | None]:
    """16 callers: 1 s healthy, 8 s of the fault, then healed until the calls are back on gRPC (at most 15 s).
    Returns the load, when the fault began and when the breaker opened (None: it never did)."""
    breaker = adapter.caller.breaker
    load = Load().start(adapter.list_symbols)
    await asyncio.sleep(1.0)
    proxy.mode, proxy.delay_s = mode, delay_s
    fault = time.monotonic()
    opened = None
    while time.monotonic() - fault < 8.0:  # bounded
        if opened is None and breaker.state == "open":
            opened = time.monotonic()
        await asyncio.sleep(0.05)
    proxy.mode = "pass"
    healed = time.monotonic()
    while time.monotonic() - healed < 15.0:  # bounded: back on gRPC after the open period and a trial
        recent = load.since(time.monotonic() - 0.5)
        if breaker.state == "closed" and recent and all(c[2] == "grpc" for c in recent):
            break
        await asyncio.sleep(0.1)
    await load.stop()
    during = load.since(fault, fault + 8.0)
    print(f"\n{mode}: {len(load.calls)} calls, {len(load.failures)} failed; during the fault {len(during)} calls, "
          f"{sum(c[2] == 'rest' for c in during)} on REST, p99 {p99([c[1] for c in during]) * 1000:,.0f} ms; breaker "
          f"open after {'never' if opened is None else f'{opened - fault:.2f} s'}")  # the figures, with -s
    return load, fault, opened


@pytest.mark.slow
async def test_blackholed_grpc_loses_no_call_and_comes_back(proxied):
    proxy, adapter = proxied
    load, fault, opened = await _fault_and_heal(proxy, adapter, "blackhole")
    assert load.failures == []
    during = load.since(fault, fault + 8.0)
    assert during and all(c[2] == "rest" for c in during if c[0] > fault + ATTEMPT_S + 1.5)
    # Each call was answered within the attempt bound plus the REST call (generous: REST calls take up to seconds on
    # a 2-core box shared with other work).
    assert max(c[1] for c in during) < ATTEMPT_S + 3.0, sorted(c[1] for c in during)[-5:]
    assert opened is not None and opened - fault < ATTEMPT_S + 2.0, "breaker did not open within a few seconds"
    assert adapter.caller.breaker.state == "closed"
    assert all(c[2] == "grpc" for c in load.calls[-16:]), "traffic did not return to gRPC after healing"


@pytest.mark.slow
async def test_slow_grpc_opens_the_breaker_on_the_slow_call_rate(proxied):
    proxy, adapter = proxied
    load, fault, opened = await _fault_and_heal(proxy, adapter, "delay", delay_s=1.0)  # +2 s per call
    assert load.failures == []
    assert opened is not None, "the slow-call rate did not open the breaker"
    assert "slow_call_rate" in adapter.caller.breaker.trip_log[0]
    during = load.since(fault, fault + 8.0)
    assert p99([c[1] for c in during]) < 2 * ATTEMPT_S
    assert sum(c[2] == "rest" for c in during) > len(during) / 2  # moved to REST
    assert all(c[2] == "grpc" for c in load.calls[-16:]), "traffic did not return to gRPC after healing"


async def test_a_server_300_ms_away_is_reached_over_grpc(market, flags):
    async with FaultProxy(HOST, market.grpc_port) as proxy, ClientFactory() as factory:
        proxy.mode, proxy.delay_s = "delay", 0.3  # one way, every chunk: the TCP and HTTP/2 handshakes too
        adapter = connect("market_analysis", Endpoint(market.rest_url, proxy.address), factory=factory,
                          flags=flags[1], force="grpc")
        page = await adapter.get_candles(QUERY)
        assert len(page.series) == 20 and last_call.get().transport == "grpc" and not last_call.get().fell_back


async def test_deadline_exceeded_names_the_service(market, flags):
    async with FaultProxy(HOST, market.grpc_port) as grpc_path, \
            FaultProxy(HOST, market.rest_port) as rest_path, ClientFactory() as factory:
        grpc_path.mode = rest_path.mode = "blackhole"
        adapter = connect("market_analysis", Endpoint(f"http://{rest_path.address}", grpc_path.address),
                          factory=factory, flags=flags[1], budget_s=1.0)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as raised:
            await adapter.get_candles(QUERY)
        assert time.monotonic() - start < 2.0
        assert raised.value.message.startswith("market_analysis ") and raised.value.metadata["service"] == \
            "market_analysis"
