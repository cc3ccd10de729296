"""SIGTERM to `fxplat up`, as an orchestrator sends it: health turns NOT_SERVING, new calls are refused, the calls in
flight finish and succeed, then the process exits 0 within its grace period."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.analysis_coordinator.grpc import AnalysisCoordinatorGrpcClient
from services.analysis_coordinator.models import AnalysisRequest
from services.analysis_coordinator.rest import AnalysisCoordinatorRestClient
from services.common import errors as E
from services.common.market_types import TimeRange, Timeframe

FXPLAT = str(Path(sys.executable).with_name("fxplat"))
SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")
GRACE_S = 5.0  # fxplat up's default
# Two months of M1 bars for two symbols: an analysis that takes about a second here, well within the grace period.
SLOW = AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.M1,
                       TimeRange(datetime(2025, 2, 1, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc)))
# Five months of M1 bars: seconds of work, far beyond a short grace period.
LONG = AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.M1,
                       TimeRange(datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 6, 1, tzinfo=timezone.utc)))
ALL_GRPC = "services:\n" + "".join(f"  {name}: {{grpc: 100}}\n" for name in SERVICES)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def in_flight(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('fxplat_server_in_flight_requests{service="analysis_coordinator"'))


@dataclass
class Up:
    """`fxplat up --single-process` serving the four services on free ports, and clients of each."""

    proc: subprocess.Popen
    log_path: Path
    url: dict[str, str]
    target: dict[str, str]
    channels: dict[str, grpc.aio.Channel]
    http: httpx.AsyncClient  # the coordinator's REST API


@contextlib.asynccontextmanager
async def fxplat_up(tmp_path: Path, *args: str) -> AsyncIterator[Up]:
    """Start it, wait until every service is ready on both transports (/readyz: its storage created, so no call in
    flight pays for that), and kill it at the end if it still runs."""
    ports = dict(zip(SERVICES, zip(*[iter(free_ports(2 * len(SERVICES)))] * 2)))
    flags = tmp_path / "flags.yaml"
    flags.write_text(ALL_GRPC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "OTEL_", "DATABASE_URL"))}
    env.update(FXPLAT_AUTH="off", FXPLAT_LOG_FORMAT="json", FXPLAT_FLAGS=str(flags))
    for name, (rest, grpc_port) in ports.items():
        env[f"FXPLAT_{name.upper()}_REST_PORT"], env[f"FXPLAT_{name.upper()}_GRPC_PORT"] = str(rest), str(grpc_port)
    url = {name: f"http://127.0.0.1:{rest}" for name, (rest, _) in ports.items()}
    target = {name: f"127.0.0.1:{grpc_port}" for name, (_, grpc_port) in ports.items()}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        # --single-process: this is the runner's stop order (every service NOT_SERVING first); the supervisor stops
        # service processes callers first (tests/test_workers.py checks its SIGTERM).
        proc = subprocess.Popen([FXPLAT, "up", "--single-process", "--data-dir", str(tmp_path / "data"), *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    channels = {name: grpc.aio.insecure_channel(target[name]) for name in SERVICES}
    http = httpx.AsyncClient(base_url=url["analysis_coordinator"], timeout=30)
    try:
        async with httpx.AsyncClient(timeout=1) as probe:
            for _ in range(1200):  # bounded: 120 s for four service processes to start (a busy box: minutes)
                assert proc.poll() is None, log_path.read_text()
                try:
                    if all([(await probe.get(f"{u}/readyz")).status_code == 200 for u in url.values()] +
                           [(await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1))
                            .status == health_pb2.HealthCheckResponse.SERVING for ch in channels.values()]):
                        break
                except (httpx.TransportError, grpc.RpcError):
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"fxplat up did not come up:\n{log_path.read_text()}")
        yield Up(proc, log_path, url, target, channels, http)
    finally:
        await http.aclose()
        for channel in channels.values():
            await channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def start_in_flight(up: Up, request: AnalysisRequest) -> list[asyncio.Task]:
    """One analysis in flight on each transport (gRPC, REST), returned once the coordinator serves both."""
    slow = [asyncio.create_task(AnalysisCoordinatorGrpcClient(up.channels["analysis_coordinator"]).run_analysis(request)),
            asyncio.create_task(AnalysisCoordinatorRestClient(up.http).run_analysis(request))]
    for _ in range(500):  # bounded: until the coordinator serves both
        if await in_flight(up.http) >= 2:
            break
        await asyncio.sleep(0.01)
    assert not any(t.done() for t in slow), [t.result() for t in slow if t.done()]
    return slow


def log_lines(up: Up) -> list[dict]:
    return [json.loads(line) for line in up.log_path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigterm_finishes_calls_in_flight_refuses_new_ones_and_exits_0(tmp_path):
    async with fxplat_up(tmp_path) as up:
        proc, log_path, url, target, channels, http = up.proc, up.log_path, up.url, up.target, up.channels, up.http
        # One slow analysis in flight on each transport.
        slow = await start_in_flight(up, SLOW)
        proc.send_signal(signal.SIGTERM)

        # Health first: market analysis keeps serving the calls in flight, but reports NOT_SERVING.
        health = health_pb2_grpc.HealthStub(channels["market_analysis"])
        for _ in range(100):  # bounded
            status = (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.01)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING

        # New calls to the stopping coordinator fail with UNAVAILABLE on both transports (connection refused, or a
        # 503 on a connection that was opened just as the server stopped).
        async with httpx.AsyncClient(base_url=url["analysis_coordinator"], timeout=2) as fresh_http:
            fresh_channel = grpc.aio.insecure_channel(target["analysis_coordinator"])
            fresh = {"grpc": AnalysisCoordinatorGrpcClient(fresh_channel),
                     "rest": AnalysisCoordinatorRestClient(fresh_http)}
            refused: dict[str, E.Unavailable] = {}
            for _ in range(100):  # bounded: the REST server notices the stop within ~0.1 s
                for transport in fresh.keys() - refused.keys():
                    try:
                        await fresh[transport].get_analysis("f" * 32)
                    except E.Unavailable as exc:
                        refused[transport] = exc
                    except E.NotFound:  # still served: not stopping yet
                        pass
                if len(refused) == 2:
                    break
                await asyncio.sleep(0.02)
            await fresh_channel.close()
        assert set(refused) == {"grpc", "rest"}, log_path.read_text()

        reports = await asyncio.wait_for(asyncio.gather(*slow), GRACE_S + 5)
        assert all(r.failed_calls == 0 and len(r.calls) == 6 for r in reports)
        assert await asyncio.to_thread(proc.wait, GRACE_S + 5) == 0, log_path.read_text()

    lines = log_lines(up)
    served = [line for line in lines if line.get("method") == "RunAnalysis"]
    assert sorted((line["transport"], line["code"]) for line in served) == [("grpc", "OK"), ("rest", "OK")]
    assert lines[-1]["msg"] == "stopped"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_calls_still_running_when_the_grace_ends_are_answered_unavailable_not_500(tmp_path):
    """A call the grace period cannot wait for any longer is cut off: UNAVAILABLE on both transports (on REST a typed
    503, where uvicorn by itself would answer a plain 500), and the process still exits 0."""
    async with fxplat_up(tmp_path, "--grace", "0.3") as up:
        slow = await start_in_flight(up, LONG)
        up.proc.send_signal(signal.SIGTERM)
        answers = await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), 30)
        assert [type(a) for a in answers] == [E.Unavailable, E.Unavailable], answers
        assert "grace period ended" in str(answers[1])
        assert await asyncio.to_thread(up.proc.wait, 30) == 0, up.log_path.read_text()
    lines = log_lines(up)
    served = sorted((line["transport"], line["code"]) for line in lines if line.get("method") == "RunAnalysis")
    assert served == [("grpc", "CANCELLED"), ("rest", "UNAVAILABLE")]
    assert not [line for line in lines if "Exception in ASGI application" in line.get("msg", "")]
    assert lines[-1]["msg"] == "stopped"
