"""The flagged adapter against real servers on loopback: flags move traffic (seen by the servers), a dead gRPC server
loses no call, unmigrated methods and REST-only services are served over REST, domain errors pass through untouched."""
from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from adapters.breaker import BreakerConfig
from adapters.connect import connect
from adapters.core import MethodPolicy, last_call
from adapters.flags import Flags
from fxplat.catalog import BuildContext, build_host
from transport.config import Endpoint
from services.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from services.market_analysis import grpc as ma_grpc
from services.market_analysis.models import CandlesQuery, SummaryQuery
from transport.client_factory import ClientFactory
from transport.grpc_server import service_handler

from faultproxy import FaultProxy

SERVICE = "market_analysis"
QUERY = CandlesQuery("EURUSD", limit=50)


def served(transport: str, method: str = "GetCandles", code: str = "OK") -> float:
    """Calls the servers counted for this transport (what reached them, not what the adapter says)."""
    return REGISTRY.get_sample_value("fxplat_server_requests_total", {
        "service": SERVICE, "method": method, "transport": transport, "code": code}) or 0.0


def write_flags(path: Path, grpc_pct: int, *, kill_switch: bool = False, methods: str = "") -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"kill_switch: {str(kill_switch).lower()}\nservices:\n  market_analysis:\n    grpc: {grpc_pct}\n"
                   f"    stickiness: random\n{methods}")
    tmp.replace(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def flags_file(tmp_path):
    path = tmp_path / "flags.yaml"
    write_flags(path, 0)
    flags = Flags(path, unleash_url="", poll_interval=0.2)
    flags.start()
    yield path, flags
    flags.close()


@pytest.fixture
async def own_host(data_dir, auth):
    """A Market Analysis host the test may kill and restart."""
    svc = await build_host(SERVICE, BuildContext(data_dir, auth=auth), "127.0.0.1", 0, 0)
    await svc.start()
    yield svc
    await svc.stop(grace=0)


async def test_flag_flip_moves_traffic_within_two_seconds(market_host, factory, flags_file):
    path, flags = flags_file
    adapter = connect(SERVICE, Endpoint(market_host.rest_url, market_host.grpc_target), factory=factory, flags=flags)
    grpc_before, rest_before = served("grpc"), served("rest")
    for _ in range(20):
        await adapter.get_candles(QUERY)
    assert served("rest") - rest_before == 20 and served("grpc") == grpc_before

    write_flags(path, 100)
    flipped = time.monotonic()
    while not flags.use_grpc(SERVICE, "GetCandles"):
        assert time.monotonic() - flipped < 2.0, "flag change not applied within 2 s"
        await asyncio.sleep(0.05)
    grpc_before, rest_before = served("grpc"), served("rest")
    for _ in range(20):
        await adapter.get_candles(QUERY)
    assert served("grpc") - grpc_before == 20 and served("rest") == rest_before

    write_flags(path, 100, kill_switch=True)
    while flags.use_grpc(SERVICE, "GetCandles"):
        assert time.monotonic() - flipped < 4.0
        await asyncio.sleep(0.05)
    rest_before = served("rest")
    for _ in range(10):
        await adapter.get_candles(QUERY)
    assert served("rest") - rest_before == 10


async def test_killing_grpc_loses_no_call_and_traffic_returns(own_host, flags_file, tokens):
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "GetCandles"):
        await asyncio.sleep(0.05)
    async with ClientFactory(token_source=tokens) as factory:
        adapter = connect(SERVICE, Endpoint(own_host.rest_url, own_host.grpc_target), factory=factory, flags=flags,
                          breaker=BreakerConfig(min_calls=3, open_s=0.5, half_open_calls=1))
        breaker = adapter.caller.breaker
        failures: list[BaseException] = []
        transports: list[str] = []

        async def worker(n: int) -> None:
            for _ in range(n):
                try:
                    await adapter.get_candles(QUERY)
                    transports.append(last_call.get().transport)
                except Exception as exc:  # counted, never expected
                    failures.append(exc)

        load = asyncio.gather(*(worker(25) for _ in range(16)))  # 400 calls
        for _ in range(500):  # bounded: until gRPC serves (connect and first health report, on a busy box)
            if "grpc" in transports:
                break
            await asyncio.sleep(0.01)
        await own_host.stop_grpc(grace=0)
        await load
        assert failures == []
        assert breaker.state == "open"
        assert "rest" in transports and "grpc" in transports

        trials_before = breaker.trials
        await own_host.start_grpc()  # same port
        deadline = time.monotonic() + 10
        while breaker.state != "closed":
            assert time.monotonic() < deadline, f"breaker stuck {breaker.state}"
            await asyncio.gather(*(worker(1) for _ in range(16)))  # concurrent callers during half-open
            await asyncio.sleep(0.1)
        assert failures == []
        # Half-open let one trial through at a time: at most one per reset period, not a stampede of 16.
        assert 1 <= breaker.trials - trials_before <= 10
        await adapter.get_candles(QUERY)
        assert last_call.get().transport == "grpc" and not last_call.get().fell_back


class _WithoutMethod(grpc.GenericRpcHandler):
    """A gRPC server that has not migrated one method yet: the real handler minus that method (UNIMPLEMENTED)."""

    def __init__(self, inner: grpc.GenericRpcHandler, method: str) -> None:
        self.inner, self.method = inner, method

    def service(self, details):
        return None if details.method.endswith("/" + self.method) else self.inner.service(details)


async def test_unimplemented_method_is_served_over_rest(own_host, flags_file, tokens):
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "AnalyzeMarket"):
        await asyncio.sleep(0.05)
    await own_host.stop_grpc(grace=0)
    own_host.grpc_handler = _WithoutMethod(own_host.grpc_handler, "AnalyzeMarket")
    await own_host.start_grpc()
    async with ClientFactory(token_source=tokens) as factory:
        adapter = connect(SERVICE, Endpoint(own_host.rest_url, own_host.grpc_target), factory=factory, flags=flags)
        summary = await adapter.analyze_market(SummaryQuery("EURUSD"))
        assert summary.symbol == "EURUSD"
        rec = last_call.get()
        assert rec.transport == "rest" and rec.fallback_reason == "unimplemented"
        await adapter.get_candles(QUERY)
        assert last_call.get().transport == "grpc"


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_domain_errors_neither_retry_nor_fall_back(market_host, factory, flags_file, transport):
    other = "rest" if transport == "grpc" else "grpc"
    path, flags = flags_file
    adapter = connect(SERVICE, Endpoint(market_host.rest_url, market_host.grpc_target), factory=factory, flags=flags,
                      force=transport)
    before = {t: served(t, code="NOT_FOUND") for t in ("grpc", "rest")}
    with pytest.raises(NotFound) as not_found:
        await adapter.get_candles(CandlesQuery("NOPE"))
    assert not_found.value.field == "symbol"
    rec = last_call.get()
    assert rec.transport == transport and not rec.fell_back and rec.attempts == 1
    after = {t: served(t, code="NOT_FOUND") for t in ("grpc", "rest")}
    assert after[transport] - before[transport] == 1  # exactly one call reached the server
    assert after[other] == before[other]  # and nothing was replayed on the other transport
    with pytest.raises(InvalidArgument):
        await adapter.get_candles(CandlesQuery("EURUSD", limit=-3))
    assert last_call.get().attempts == 1


def retries(transport: str, method: str = "GetCandles") -> float:
    return REGISTRY.get_sample_value("fxplat_client_retries_total", {
        "service": SERVICE, "method": method, "transport": transport}) or 0.0


async def test_a_refused_rest_read_is_retried_and_answered_once(market_host, factory, flags_file):
    """The first attempt's failure goes through the same retry policy as every later one (it is made outside tenacity,
    then judged by it): retried after the backoff, counted, and the server sees one call."""
    _, flags = flags_file
    async with FaultProxy("127.0.0.1", int(market_host.rest_url.rsplit(":", 1)[1])) as proxy:
        proxy.mode = "refuse"
        adapter = connect(SERVICE, Endpoint(f"http://{proxy.address}", market_host.grpc_target), factory=factory,
                          flags=flags, force="rest")
        before_served, before_retries = served("rest"), retries("rest")

        async def reopen() -> None:
            for _ in range(500):  # until the first attempt was refused (bounded: 5 s)
                if proxy.connections:
                    proxy.mode = "pass"
                    return
                await asyncio.sleep(0.01)

        opener = asyncio.create_task(reopen())
        page = await adapter.get_candles(QUERY)
        await opener
        rec = last_call.get()
    assert len(page.series) == 50 and rec.transport == "rest" and rec.code == "OK"
    assert rec.attempts >= 2 and retries("rest") - before_retries == rec.attempts - 1
    assert served("rest") - before_served == 1


async def test_rest_gives_up_after_its_attempts_and_never_retries_a_write(market_host, factory, flags_file):
    _, flags = flags_file
    dead = Endpoint(f"http://127.0.0.1:{closed_port()}", market_host.grpc_target)
    read = connect(SERVICE, dead, factory=factory, flags=flags, force="rest")
    before = retries("rest")
    with pytest.raises(Unavailable):
        await read.get_candles(QUERY)
    assert last_call.get().attempts == 3 and retries("rest") - before == 2
    # the same call declared a write (not idempotent): a refused connection may have reached a server that ran it
    write = connect(SERVICE, dead, factory=factory, flags=flags, force="rest")
    write.caller.policies = {**write.caller.policies, "GetCandles": MethodPolicy(idempotent=False, read=False)}
    with pytest.raises(Unavailable):
        await write.get_candles(QUERY)
    assert last_call.get().attempts == 1 and retries("rest") - before == 2


async def test_rest_only_service_is_served_at_full_grpc_share(data_dir, flags_file, auth, tokens):
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "GetCandles"):
        await asyncio.sleep(0.05)
    svc = await build_host(SERVICE, BuildContext(data_dir, auth=auth), "127.0.0.1", 0, 0, grpc_enabled=False)
    await svc.start()
    try:
        async with ClientFactory(token_source=tokens) as factory:
            # Where its gRPC port would be, nothing listens.
            adapter = connect(SERVICE, Endpoint(svc.rest_url, f"127.0.0.1:{closed_port()}"), factory=factory,
                              flags=flags)
            for _ in range(10):
                page = await adapter.get_candles(QUERY)
                assert len(page.series) == 50
                assert last_call.get().transport == "rest"
    finally:
        await svc.stop(grace=0)


async def _regrpc(host, get_candles, auth) -> None:
    """Restart `host`'s gRPC server with GetCandles replaced by `get_candles` (the other methods unchanged)."""
    methods = [dataclasses.replace(m, call=get_candles) if m.name == "GetCandles" else m for m in ma_grpc.methods(host.impl)]
    await host.stop_grpc(grace=0)
    host.grpc_handler = service_handler(ma_grpc.SERVICE, methods, auth.verifier())
    await host.start_grpc()


async def test_stuck_grpc_read_is_answered_over_rest_within_the_budget(own_host, flags_file, auth, tokens):
    """A gRPC server that never answers: the read is hedged onto REST (its attempt bound is a share of the budget),
    so the call is answered within its budget; the stuck gRPC call is cancelled, not waited for."""
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "GetCandles"):
        await asyncio.sleep(0.05)

    async def stuck(_request):
        await asyncio.sleep(30)

    await _regrpc(own_host, stuck, auth)
    rest_before = served("rest")
    async with ClientFactory(token_source=tokens) as factory:
        adapter = connect(SERVICE, Endpoint(own_host.rest_url, own_host.grpc_target), factory=factory, flags=flags,
                          budget_s=1.0)
        start = time.monotonic()
        page = await adapter.get_candles(QUERY)
        assert len(page.series) == 50
        assert time.monotonic() - start < 1.0  # hedged at half the budget, answered by REST, nothing waits longer
        rec = last_call.get()
        assert rec.transport == "rest" and rec.fallback_reason == "hedge" and rec.code == "OK"
        # The stuck attempt was stopped by cancelling its gRPC call, not the caller's task: nothing is left pending
        # that would kill the caller's next await.
        await asyncio.sleep(0.05)
        assert asyncio.current_task().cancelling() == 0
    assert served("rest") == rest_before + 1


async def test_a_slow_large_page_is_waited_for_over_grpc_not_hedged_onto_rest(own_host, flags_file, auth, tokens):
    """Once the caller has learnt GetCandles answers in milliseconds, a gRPC answer that takes 1 s gets a small page
    hedged onto REST (answered sooner), while a page larger than the default is waited for over gRPC: its REST backup
    would cost the server many times the gRPC call, exactly when the server is slow (under load, every call is)."""
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "GetCandles"):
        await asyncio.sleep(0.05)
    serve = next(m.call for m in ma_grpc.methods(own_host.impl) if m.name == "GetCandles")
    slow = False

    async def get_candles(request):
        if slow:
            await asyncio.sleep(1.0)
        return await serve(request)

    await _regrpc(own_host, get_candles, auth)
    async with ClientFactory(token_source=tokens) as factory:
        adapter = connect(SERVICE, Endpoint(own_host.rest_url, own_host.grpc_target), factory=factory, flags=flags)
        # Answers enough for the hedge delay to follow the latency the caller saw last (a few ms -> 50 ms), the
        # connection's first slow calls out of its window (64) included.
        for _ in range(112):
            await adapter.get_candles(QUERY)
        slow = True
        rest_before = served("rest")
        start = time.monotonic()
        page = await adapter.get_candles(QUERY)
        assert time.monotonic() - start < 0.7 and len(page.series) == 50
        assert (last_call.get().transport, last_call.get().fallback_reason) == ("rest", "hedge")

        large = CandlesQuery("EURUSD", limit=5_000)
        start = time.monotonic()
        page = await adapter.get_candles(large)
        assert time.monotonic() - start >= 1.0 and len(page.series) == 5_000
        assert (last_call.get().transport, last_call.get().fallback_reason) == ("grpc", "")
    assert served("rest") == rest_before + 1  # the small page's hedge only


async def test_deadline_exceeded_with_budget_left_falls_back_to_rest(own_host, flags_file, auth, tokens):
    path, flags = flags_file
    write_flags(path, 100)
    while not flags.use_grpc(SERVICE, "GetCandles"):
        await asyncio.sleep(0.05)

    async def downstream_timed_out(_request):
        raise DeadlineExceeded("a dependency did not answer in time")

    await _regrpc(own_host, downstream_timed_out, auth)
    async with ClientFactory(token_source=tokens) as factory:
        adapter = connect(SERVICE, Endpoint(own_host.rest_url, own_host.grpc_target), factory=factory, flags=flags)
        page = await adapter.get_candles(QUERY)
        assert len(page.series) == 50
        rec = last_call.get()
        assert rec.transport == "rest" and rec.fallback_reason == "deadline"
