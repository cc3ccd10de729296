"""`fxplat up --workers 2`: two processes serve one service on the same ports, each a fair share of the calls (counted
by its own metrics), the port's /metrics adds them up, a worker that dies is replaced, and SIGTERM stops it all with
exit code 0."""
from __future__ import annotations

import asyncio
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from forex.market_analysis.v1 import market_analysis_pb2 as pb
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
from transport.metrics import per_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
START_S = 180  # two workers import and warm the synthetic market on a busy 2-core box
CONNECTIONS = 60  # the kernel spreads connections (not calls) over the workers: enough of them for a fair split
CALLS_PER_CONNECTION = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(metrics_dir: Path) -> list[int]:
    return sorted(int(re.search(r"counter_(\d+)\.db", f).group(1)) for f in glob.glob(f"{metrics_dir}/counter_*.db"))


def _wait(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, f"fxplat up exited with {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f}s"
        time.sleep(0.2)


@pytest.fixture
def two_workers(tmp_path):
    rest, grpc_port = _free_port(), _free_port()
    metrics_dir = tmp_path / "metrics"
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "FXPLAT_AUTH": "off"}
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fxplat", "up", "--service", "market_analysis", "--workers", "2",
                             "--rest-port", str(rest), "--grpc-port", str(grpc_port), "--data-dir", str(tmp_path),
                             "--log-format", "json"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        _wait(lambda: b"all services ready" in (tmp_path / "up.log").read_bytes(), START_S, "readiness", proc)
        yield proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}", metrics_dir, tmp_path / "up.log"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def _grpc_calls(target: str) -> None:
    async def one_connection() -> None:
        # A local subchannel pool: a connection of its own (channels in one process share one by default).
        async with grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = pb_grpc.MarketAnalysisServiceStub(channel)
            for _ in range(CALLS_PER_CONNECTION):
                await stub.ListSymbols(pb.ListSymbolsRequest(), timeout=30)

    for start in range(0, CONNECTIONS, 10):  # ten connections at a time
        await asyncio.gather(*(one_connection() for _ in range(min(10, CONNECTIONS - start))))


async def _rest_calls(url: str) -> None:
    async def one_connection() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(CALLS_PER_CONNECTION):
                (await client.get("/v1/symbols")).raise_for_status()

    for start in range(0, CONNECTIONS, 10):
        await asyncio.gather(*(one_connection() for _ in range(min(10, CONNECTIONS - start))))


def _served_total(url: str, transport: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(
        r'^fxplat_server_requests_total\{code="OK",method="ListSymbols",service="market_analysis",'
        rf'transport="{transport}"\}} (\S+)$', text, re.M))


async def test_two_workers_share_the_calls_and_the_supervisor_restarts_and_stops(two_workers):
    proc, url, target, metrics_dir, log_path = two_workers
    workers = _pids(metrics_dir)
    assert len(workers) == 2, f"expected two worker processes with metrics, found {workers}"
    expected = CONNECTIONS * CALLS_PER_CONNECTION
    await _grpc_calls(target)
    await _rest_calls(url)
    served = {pid: per_process(str(metrics_dir), pid) for pid in workers}
    total = sum(served.values())
    assert total == 2 * expected, f"the workers counted {served}, {2 * expected} calls were made"
    for pid, count in served.items():
        assert count >= 0.3 * total, f"worker {pid} served {count:.0f} of {total:.0f} calls: {served}"
    # Any worker's /metrics (whichever the kernel picks) shows the calls of both.
    assert _served_total(url, "grpc") == expected and _served_total(url, "rest") == expected

    # A worker killed outright is replaced; the port keeps answering meanwhile.
    os.kill(workers[0], signal.SIGKILL)
    _wait(lambda: log_path.read_bytes().count(b"ready (pid") >= 3, START_S, "a restarted worker", proc)
    replacement = [pid for pid in _pids(metrics_dir) if pid not in workers]
    assert replacement, "no new worker process"
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    for pid in [workers[1], *replacement]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
