"""Streams through the flagged adapter when things go wrong: the gRPC path dies under 16 live streams (they continue
over SSE with no gap and no duplicate, and new streams return to gRPC once the breaker closes), a consumer stops
reading (the server neither buffers for it nor slows the others), and a replica gets SIGTERM (its streams resume on
another replica)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from adapters.breaker import BreakerConfig
from adapters.connect import connect
from adapters.flags import Flags
from faultproxy import FaultProxy
from fxplat.catalog import BuildContext, build_host
from services.common import errors as E
from transport import streams
from transport.auth import AuthConfig
from transport.client_factory import ClientFactory
from transport.config import Endpoint

SYMBOLS = ["EURUSD", "GBPUSD"]
FXPLAT = str(Path(sys.executable).with_name("fxplat"))


@pytest.fixture
def fast_heartbeats():
    before = streams.limits().settings
    streams.use_settings(streams.StreamSettings(heartbeat_s=0.2, max_per_token=200))
    yield
    streams.use_settings(before)


@pytest.fixture
def grpc_flags(tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text("services:\n  market_analysis: {grpc: 100}\n")
    flags = Flags(path, unleash_url="")
    yield flags
    flags.close()


async def _host(monkeypatch, data_dir, rate: str, **env):
    monkeypatch.setenv("FXPLAT_QUOTES_RATE", rate)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    host = await build_host("market_analysis", BuildContext(data_dir, auth=AuthConfig(mode="off")), "127.0.0.1", 0, 0)
    return await host.start()


class Consumer:
    """Reads one adapter stream, checking as it goes that each symbol's sequences advance by exactly one."""

    def __init__(self, stream) -> None:
        self.stream, self.last, self.count, self.problems = stream, {}, 0, []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for q in self.stream:
            previous = self.last.get(q.symbol)
            if previous is not None and q.sequence != previous + 1:
                self.problems.append(f"{q.symbol}: {previous} -> {q.sequence} over {self.stream.transport}")
            self.last[q.symbol] = q.sequence
            self.count += 1

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.aclose()


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_grpc_path_dies_under_16_streams_they_continue_over_sse_then_new_streams_use_grpc_again(
        monkeypatch, data_dir, grpc_flags, fast_heartbeats):
    host = await _host(monkeypatch, data_dir, "40")
    try:
        async with FaultProxy("127.0.0.1", host.grpc_port) as proxy, ClientFactory() as factory:
            adapter = connect("market_analysis", Endpoint(host.rest_url, proxy.address), factory=factory,
                              flags=grpc_flags, breaker=BreakerConfig(open_s=1.0, half_open_calls=1))
            consumers = [Consumer(adapter.stream_quotes(SYMBOLS)) for _ in range(16)]
            await wait_for(lambda: all(c.count >= 20 for c in consumers), 30, "16 streams flowing over gRPC")
            assert {c.stream.transport for c in consumers} == {"grpc"}

            proxy.mode = "blackhole"  # the gRPC path goes silent: no error, no close, nothing
            killed_at = {id(c): c.count for c in consumers}
            await wait_for(lambda: all(c.stream.transport == "rest" and c.count >= killed_at[id(c)] + 40
                                       for c in consumers), 30, "every stream to continue over SSE")
            for c in consumers:
                assert c.problems == [], c.problems  # no gap, no duplicate
                assert [(f.source, f.target, f.reason) for f in c.stream.failovers] == [("grpc", "rest", "idle")]
                assert not c.task.done()
            assert adapter.caller.breaker.state == "open"

            proxy.mode = "pass"  # healed
            proxy.cut()
            await asyncio.sleep(1.2)  # past the breaker's reset timeout: the next stream is its trial
            fresh = Consumer(adapter.stream_quotes(SYMBOLS))
            await wait_for(lambda: fresh.count >= 10, 20, "a new stream after healing")
            assert fresh.stream.transport == "grpc" and not fresh.stream.failovers
            assert adapter.caller.breaker.state == "closed"
            second = Consumer(adapter.stream_quotes(SYMBOLS))
            await wait_for(lambda: second.count >= 5, 20, "another new stream")
            assert second.stream.transport == "grpc"
            for c in [*consumers, fresh, second]:
                assert c.problems == []
                await c.stop()
    finally:
        await host.stop(grace=0)


@pytest.mark.parametrize("force", ["grpc", "rest"])
async def test_domain_errors_end_the_adapter_stream_typed_alike(market_host, factory, grpc_flags, force):
    adapter = connect("market_analysis", Endpoint(market_host.rest_url, market_host.grpc_target), factory=factory,
                      flags=grpc_flags, force=force)
    with pytest.raises(E.NotFound, match="NOPE"):
        async with adapter.stream_quotes(["NOPE"]) as stream:
            async for _ in stream:
                pass
    with pytest.raises(E.InvalidArgument) as caught:
        async with adapter.watch_candles("EURUSD", "M1", after=1) as stream:
            async for _ in stream:
                pass
    assert caught.value.field == "resume_after"


def _items_sent(transport: str) -> float:
    return REGISTRY.get_sample_value("fxplat_server_stream_items_total", {
        "service": "market_analysis", "method": "StreamQuotes", "transport": transport}) or 0.0


@pytest.mark.slow
@pytest.mark.parametrize("stalled_on", ["grpc", "rest"])
async def test_a_consumer_that_stops_reading_costs_no_memory_and_does_not_slow_others(
        monkeypatch, data_dir, stalled_on, fast_heartbeats):
    """A consumer of 8 symbols at 1,500 quotes/s each stops reading (its connection stalls, as a stuck client's
    does: a blackholing proxy): once the socket buffers are full the server sends it nothing more — it queues nothing
    for it, the subscription conflates — while a consumer on the other transport keeps up without a gap."""
    symbols = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP"]
    host = await _host(monkeypatch, data_dir, "1500", FXPLAT_QUOTES_LAG_BOUND="15000")
    other = "rest" if stalled_on == "grpc" else "grpc"
    try:
        async with FaultProxy("127.0.0.1", host.grpc_port if stalled_on == "grpc" else host.rest_port) as proxy, \
                ClientFactory() as factory:
            from adapters.connect import KITS

            kit = KITS["market_analysis"]
            clients = {"grpc": kit.grpc_client(factory.channel(host.grpc_target)),
                       "rest": kit.rest_client(factory.http(host.rest_url))}
            clients[stalled_on] = kit.grpc_client(factory.channel(proxy.address)) if stalled_on == "grpc" else \
                kit.rest_client(factory.http(f"http://{proxy.address}"))
            stalled = clients[stalled_on].stream_quotes(symbols)
            await stalled.open()
            await stalled.next()
            proxy.mode = "blackhole"  # from now on the consumer reads nothing
            hub = host.impl.quotes
            lags, gaps, last = [], [], None

            async def keep_up() -> None:
                nonlocal last
                fast = clients[other].stream_quotes(["EURUSD"])
                await fast.open()
                try:
                    while True:
                        for q in await fast.next():
                            if last is not None and q.sequence != last + 1:
                                gaps.append((last, q.sequence))
                            last = q.sequence
                            lags.append((time.monotonic(), hub.head - q.sequence))
                finally:
                    await fast.close()

            reader = asyncio.create_task(keep_up())
            # The stalled stream's sends stop once the socket and HTTP/2 buffers are full (measured: ~3.5 MB on gRPC,
            # within seconds): wait for 3 s without a send, bounded at 25 s, while 12,000 quotes/s are produced for it.
            started, sent, quiet_since = time.monotonic(), [_items_sent(stalled_on)], None
            while quiet_since is None or time.monotonic() - quiet_since < 3.0:
                assert time.monotonic() - started < 25, f"the server kept sending to a stalled consumer: {sent[-5:]}"
                await asyncio.sleep(0.5)
                sent.append(_items_sent(stalled_on))
                quiet_since = (quiet_since or time.monotonic()) if sent[-1] == sent[-2] else None
            quiet_started = quiet_since
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            elapsed = time.monotonic() - started
            proxy.mode = "pass"
            proxy.cut()
            await stalled.close()
            assert gaps == [], gaps[:5]  # the other consumer was never conflated: it kept up
            assert len(lags) > 0.3 * elapsed * 1500, len(lags)  # it kept receiving (the bound allows a loaded box)
            # Once the stalled consumer's buffers are full it costs the server nothing: the other one is then live.
            quiet = sorted(lag for at, lag in lags if at >= quiet_started)
            assert quiet and quiet[len(quiet) // 2] < 3000, quiet[len(quiet) // 2:][:5]  # median lag under 2 s
    finally:
        await host.stop(grace=0)


# --- SIGTERM on a replica -------------------------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _replica(tmp_path: Path, name: str, rest: int, grpc_port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "OTEL_", "DATABASE_URL"))}
    env.update(FXPLAT_AUTH="off", FXPLAT_LOG_FORMAT="json", FXPLAT_STREAM_HEARTBEAT_S="0.2", FXPLAT_QUOTES_RATE="40",
               FXPLAT_DATA_DIR=str(tmp_path / name), FXPLAT_FLAGS=str(tmp_path / "flags.yaml"))
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen([FXPLAT, "up", "--service", "market_analysis", "--rest-port", str(rest),
                             "--grpc-port", str(grpc_port)], env=env, stdout=log, stderr=subprocess.STDOUT)


async def _ready(rest: int, proc: subprocess.Popen) -> None:
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "replica exited during startup"
            try:
                if (await http.get(f"http://127.0.0.1:{rest}/readyz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "replica not ready within 90 s"
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_sigterm_ends_streams_resumably_and_the_adapter_resumes_on_another_replica(tmp_path):
    (tmp_path / "flags.yaml").write_text("services:\n  market_analysis: {grpc: 100}\n")
    a_rest, a_grpc, b_rest, b_grpc = _free_ports(4)
    a, b = _replica(tmp_path, "a", a_rest, a_grpc), _replica(tmp_path, "b", b_rest, b_grpc)
    flags = Flags(tmp_path / "flags.yaml", unleash_url="")
    try:
        await asyncio.gather(_ready(a_rest, a), _ready(b_rest, b))
        # The proxies stand in for a load balancer: replica A until it stops, then B.
        async with FaultProxy("127.0.0.1", a_grpc) as grpc_lb, FaultProxy("127.0.0.1", a_rest) as rest_lb, \
                ClientFactory() as factory:
            adapter = connect("market_analysis", Endpoint(f"http://{rest_lb.address}", grpc_lb.address),
                              factory=factory, flags=flags)
            consumers = [Consumer(adapter.stream_quotes(SYMBOLS)) for _ in range(4)]
            await wait_for(lambda: all(c.count >= 20 for c in consumers), 30, "streams flowing from replica A")
            grpc_lb.upstream, rest_lb.upstream = ("127.0.0.1", b_grpc), ("127.0.0.1", b_rest)
            at_sigterm = {id(c): c.count for c in consumers}
            a.send_signal(signal.SIGTERM)
            await asyncio.to_thread(a.wait, 30)
            assert a.returncode == 0
            await wait_for(lambda: all(c.count >= at_sigterm[id(c)] + 60 for c in consumers), 30,
                           "streams to continue on replica B")
            for c in consumers:
                assert c.problems == [], c.problems
                assert any(f.reason == "shutting_down" for f in c.stream.failovers), c.stream.failovers
                assert not c.task.done()
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"http://127.0.0.1:{b_rest}/metrics")).text
            open_on_b = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                            if line.startswith('fxplat_server_streams_open{method="StreamQuotes"'))
            assert open_on_b == 4
            ended = [json.loads(line) for line in (tmp_path / "a.log").read_text().splitlines()
                     if '"stream":true' in line]
            # Each stream's one line says how it ended (and re-opens that reached A while it stopped were refused).
            assert len([e for e in ended if e["items"] > 0 and e["ended"].startswith("SHUTTING_DOWN")]) == 4, ended
            for c in consumers:
                await c.stop()
    finally:
        flags.close()
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
