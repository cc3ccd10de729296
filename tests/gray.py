"""Helpers of the gray-failure tests (tests/test_gray_*.py): service replicas as real `fxplat up` processes on loopback
addresses of their own, a load of 16 callers through the flagged adapter, and what each replica says it served."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from adapters.core import last_call
from services.common.errors import DomainError

FXPLAT = str(Path(sys.executable).with_name("fxplat"))
ALL_GRPC = "kill_switch: false\nservices:\n" + "".join(
    f"  {s}: {{grpc: 100, stickiness: random}}\n"
    for s in ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator"))


def free_port(*hosts: str) -> int:
    """A port free on every one of `hosts` (replicas of one service share their port number, as pods do)."""
    def sock(host: str) -> socket.socket:
        return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)

    for _ in range(50):  # bounded
        with sock(hosts[0]) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for host in hosts[1:]:
                with sock(host) as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


def base_env(flags: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "OTEL_", "DATABASE_URL"))}
    env.update(FXPLAT_AUTH="off", FXPLAT_LOG_FORMAT="json", FXPLAT_FLAGS=str(flags), **extra)
    return env


@dataclass
class Replica:
    """One `fxplat up --service NAME` process listening on `host` (REST and gRPC ports given)."""

    service: str
    host: str
    rest_port: int
    grpc_port: int
    data_dir: Path
    env: dict[str, str]
    log: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def start(self) -> "Replica":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [FXPLAT, "up", "--service", self.service, "--host", self.host, "--rest-port", str(self.rest_port),
                 "--grpc-port", str(self.grpc_port), "--data-dir", str(self.data_dir), *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    async def ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:  # bounded
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.rest_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.service}@{self.host} not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def served(self, method: str = "GetCandles", transport: str = "grpc") -> float:
        """Calls this replica counted (OK), from its /metrics; 0 when it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                text = (await http.get(f"{self.rest_url}/metrics")).text
        except httpx.HTTPError:
            return 0.0
        prefix = (f'fxplat_server_requests_total{{code="OK",method="{method}",service="{self.service}",'
                  f'transport="{transport}"}}')
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@dataclass
class Load:
    """Callers looping over `call()` until stopped; every call's end time, latency, transport, fallback and error."""

    calls: list[tuple[float, float, str, str]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self, call, callers: int = 16) -> "Load":
        async def caller() -> None:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    await call()
                    rec = last_call.get()
                    self.calls.append((time.monotonic(), time.monotonic() - start, rec.transport,
                                       rec.fallback_reason))
                except (DomainError, Exception) as exc:  # counted, never expected
                    self.failures.append(exc)
                    await asyncio.sleep(0.05)

        self._tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 30)

    def since(self, t0: float, t1: float = float("inf")) -> list[tuple[float, float, str, str]]:
        return [c for c in self.calls if t0 <= c[0] < t1]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def stop_all(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.proc is not None and r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
    for r in replicas:
        if r.proc is not None:
            try:
                r.proc.wait(15)
            except subprocess.TimeoutExpired:
                r.kill()
