"""`fxplat bench --streams`: live quotes over a gRPC server stream vs Server-Sent Events, side by side in one run, on
the platform and on floor servers.

Per scenario three servers run in child processes: the platform (`fxplat up --single-process --service
market_analysis` on free loopback ports, so the measured pid is the server itself) generating `rate` quotes/s per
symbol, and one floor server per transport (fxplat.stream_floor: the same quotes per message at the same cadence, with
none of the platform's work). Scenarios: 1 subscriber of 8 symbols at 1,000 quotes/s per symbol; 100 subscribers of 4
symbols at 20 quotes/s (8,000 quotes/s in all either way); the latter with a 200 ms coalescing window. The client (this
process, one event loop) reads every stream for a fixed window through the services' stream clients (GrpcItemStream /
SseItemStream) and counts the quotes delivered; the server's CPU time over the same window comes from /proc/<pid>/stat.
Platform gRPC, platform SSE, floor gRPC and floor SSE alternate, twice, so drift in machine load hits all alike.

Reported per row: quotes/s delivered, server CPU (% of a core), server CPU µs per quote and quotes per server
CPU-second; then gRPC / SSE of quotes per CPU-second per scenario against the target (>= 3x), for the platform and for
the floors (the transports alone: if they are < 3x apart, no server on this stack reaches the target short of
an SSE side slower than it needs to be).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fxplat.ports import free_port

TARGET_RATIO = 3.0
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP"]
START_TIMEOUT_S = 120.0
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    subscribers: int
    symbols_each: int
    rate: float  # quotes/s per symbol on its server
    coalesce_ms: float = 0.0  # the platform's coalescing window (FXPLAT_STREAM_COALESCE_MS); the floors tick at it

    @property
    def label(self) -> str:
        return f"{self.subscribers:>3} sub" + (f" +{self.coalesce_ms:g}ms" if self.coalesce_ms else "")


SCENARIOS = (Scenario(1, 8, 1000.0), Scenario(100, 4, 20.0), Scenario(100, 4, 20.0, coalesce_ms=200.0))


@dataclass
class Row:
    server: str  # "platform" | "floor" (fxplat.stream_floor)
    transport: str
    scenario: str  # Scenario.label
    window_s: float
    quotes: int
    server_cpu_s: float

    @property
    def quotes_per_s(self) -> float:
        return self.quotes / self.window_s

    @property
    def cpu_pct(self) -> float:
        return 100 * self.server_cpu_s / self.window_s

    @property
    def cpu_us_per_quote(self) -> float:
        return 1e6 * self.server_cpu_s / max(1, self.quotes)

    @property
    def quotes_per_cpu_s(self) -> float:
        return self.quotes / max(1e-9, self.server_cpu_s)


class _Child:
    """A server in a child process, ready when `ready()` holds; its CPU time from /proc; stopped on exit."""

    def __init__(self, workdir: Path, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.workdir, self.name, self.cmd, self.env = workdir, name, cmd, env
        self.proc: subprocess.Popen | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def __enter__(self):
        self.log = open(self.workdir / f"{self.name}.log", "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"benchmark server {self.name} exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"benchmark server {self.name} not ready within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_"))}


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class _Server(_Child):
    """The platform: one Market Analysis server (--single-process: the measured pid is the server itself), quotes at
    `rate` per symbol, serving both transports."""

    def __init__(self, workdir: Path, rate: float, coalesce_ms: float = 0.0) -> None:
        self.rest_port, self.grpc_port = free_port(), free_port()
        env = _env()
        env.update(FXPLAT_AUTH="off", FXPLAT_QUOTES_RATE=str(rate), FXPLAT_DATA_DIR=str(workdir),
                   FXPLAT_LOG_FORMAT="json", FXPLAT_MAX_STREAMS_PER_TOKEN="1000",
                   FXPLAT_QUOTES_LAG_BOUND=str(int(rate * 10)), FXPLAT_STREAM_COALESCE_MS=str(coalesce_ms))
        cmd = [sys.executable, "-c", "from fxplat.cli import app; app()", "up", "--single-process",
               "--service", "market_analysis", "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port)]
        super().__init__(workdir, f"server-{self.rest_port}", cmd, env)

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.rest_port}/readyz")


class _Floor(_Child):
    """A floor server of one transport (fxplat.stream_floor)."""

    def __init__(self, workdir: Path, transport: str, scenario: Scenario) -> None:
        port = free_port()
        self.transport = transport
        self.rest_port = self.grpc_port = port
        cmd = [sys.executable, "-m", "fxplat.stream_floor", transport, str(port), str(scenario.rate),
               str(scenario.symbols_each), str(scenario.coalesce_ms)]
        super().__init__(workdir, f"floor-{transport}-{port}", cmd, _env())

    def ready(self) -> bool:
        if self.transport == "rest":
            return _http_ok(f"http://127.0.0.1:{self.rest_port}/healthz")
        with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
            return True


async def _measure(server: _Child, transport: str, scenario: Scenario, window_s: float) -> Row:
    from services.market_analysis.grpc import MarketAnalysisGrpcClient
    from services.market_analysis.rest import MarketAnalysisRestClient
    from transport.client_factory import ClientFactory

    async with ClientFactory(max_connections=scenario.subscribers + 10) as factory:
        if transport == "grpc":
            client = MarketAnalysisGrpcClient(factory.channel(f"127.0.0.1:{server.grpc_port}"))
        else:
            client = MarketAnalysisRestClient(factory.http(f"http://127.0.0.1:{server.rest_port}"))
        streams = [client.stream_quotes([SYMBOLS[(i + k) % len(SYMBOLS)] for k in range(scenario.symbols_each)])
                   for i in range(scenario.subscribers)]
        await asyncio.gather(*(s.open() for s in streams))
        counting = False
        count = 0

        async def read(stream) -> None:
            nonlocal count
            while True:
                batch = await stream.next()
                if counting:
                    count += len(batch)

        readers = [asyncio.create_task(read(s)) for s in streams]
        await asyncio.sleep(1.0)  # warm-up: connections up, backlogs drained
        counting, cpu0, t0 = True, server.cpu_s(), time.perf_counter()
        await asyncio.sleep(window_s)
        counting, cpu1, t1 = False, server.cpu_s(), time.perf_counter()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for s in streams:
            await s.close()
    kind = "floor" if isinstance(server, _Floor) else "platform"
    return Row(kind, transport, scenario.label, t1 - t0, count, cpu1 - cpu0)


def _ratio_line(label: str, g: Row, s: Row) -> tuple[float, str]:
    ratio = g.quotes_per_cpu_s / s.quotes_per_cpu_s
    return ratio, f"{label}: gRPC delivers {ratio:.2f}x the quotes per server CPU-second of SSE"


def run_stream_bench(*, json_path: Path | None = None, quick: bool = False, log=print) -> dict:
    """Run every scenario on both transports, platform and floor (twice, alternating), and print the table and the
    ratios."""
    window = 3.0 if quick else 8.0
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fxplat-bench-streams-") as tmp:
        for scenario in SCENARIOS:
            with _Server(Path(tmp), scenario.rate, scenario.coalesce_ms) as server, \
                    _Floor(Path(tmp), "grpc", scenario) as fg, _Floor(Path(tmp), "rest", scenario) as fr:
                coalescing = f", {scenario.coalesce_ms:g} ms coalescing" if scenario.coalesce_ms else ""
                log(f"{scenario.subscribers} subscriber(s) x {scenario.symbols_each} symbols at "
                    f"{scenario.rate:g} quotes/s per symbol{coalescing} (platform pid {server.proc.pid}, floors "
                    f"{fg.proc.pid} {fr.proc.pid}) ...")
                for _ in range(1 if quick else 2):
                    for child, transport in ((server, "grpc"), (server, "rest"), (fg, "grpc"), (fr, "rest")):
                        rows.append(asyncio.run(_measure(child, transport, scenario, window)))
    merged: dict[tuple[str, str, str], Row] = {}
    for r in rows:  # the rounds of a server, transport and scenario, summed
        m = merged.setdefault((r.server, r.transport, r.scenario), Row(r.server, r.transport, r.scenario, 0.0, 0, 0.0))
        m.window_s, m.quotes, m.server_cpu_s = m.window_s + r.window_s, m.quotes + r.quotes, \
            m.server_cpu_s + r.server_cpu_s
    log("")
    order = [s.label for s in SCENARIOS]
    log(f"{'scenario':<13} {'server':<9} {'transport':<9} {'quotes/s':>9} {'server CPU':>11} "
        f"{'CPU µs/quote':>13} {'quotes per CPU-s':>17}")
    for (kind, transport, label), r in sorted(merged.items(), key=lambda kv: (order.index(kv[0][2]),
                                                                              kv[0][0] != "platform", kv[0][1])):
        name = "gRPC" if transport == "grpc" else "SSE"
        log(f"{label:<13} {kind:<9} {name:<9} {r.quotes_per_s:>9,.0f} {r.cpu_pct:>10.0f}% "
            f"{r.cpu_us_per_quote:>13.1f} {r.quotes_per_cpu_s:>17,.0f}")
    ratios, floor_ratios = {}, {}
    log("")
    for scenario in SCENARIOS:
        n = scenario.label
        ratio, line = _ratio_line(f"{n:<13} platform", merged[("platform", "grpc", n)],
                                  merged[("platform", "rest", n)])
        ratios[n] = ratio
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        log(f"{line} ({verdict} the >= {TARGET_RATIO:g}x target)")
        floor, line = _ratio_line(f"{n:<13} floor   ", merged[("floor", "grpc", n)],
                                  merged[("floor", "rest", n)])
        floor_ratios[n] = floor
        log(f"{line} (the transports alone{'' if floor >= TARGET_RATIO else ': the target is out of reach here'})")
    result = {"rows": [{**asdict(r), "quotes_per_s": r.quotes_per_s, "cpu_us_per_quote": r.cpu_us_per_quote,
                        "quotes_per_cpu_s": r.quotes_per_cpu_s} for r in merged.values()],
              "ratios": {str(k): v for k, v in ratios.items()},
              "floor_ratios": {str(k): v for k, v in floor_ratios.items()}, "target": TARGET_RATIO, "quick": quick,
              "wall_s": time.perf_counter() - started}
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))
    return result
