"""`fxplat bench --workers`: what a second worker process buys. Market Analysis runs under `fxplat up --workers N`
(N = 1, then 2) and client processes load it with a small call (GetCandles, 10 bars) over gRPC and over REST, each
client task on a connection of its own (the kernel spreads connections, not calls, over the workers). For each run:
calls/s, the server's CPU per call (the workers' own CPU time over the calls they served), the load generator's CPU
(cores it used: on one box it competes with the server), and each worker's share of the calls (its own metrics).

With the load generator on the same cores, 2 workers cannot double the throughput; the rows print what the measured
per-call CPU would give on a node whose cores serve only the service.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fxplat.ports import free_port

CLIENT_PROCESSES = 4
TASKS_PER_PROCESS = 8  # 32 connections in all
START_TIMEOUT_S = 300.0
SERVICE = "market_analysis"


@dataclass
class Run:
    transport: str
    workers: int
    seconds: float
    calls: int = 0
    errors: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    shares: list[float] = field(default_factory=list)  # each worker's fraction of the calls, from its metrics

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def server_ms_per_call(self) -> float:
        return 1000 * self.server_cpu_s / self.calls if self.calls else 0.0

    @property
    def client_ms_per_call(self) -> float:
        return 1000 * self.client_cpu_s / self.calls if self.calls else 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
    def __init__(self, workdir: Path, workers: int) -> None:
        self.workdir, self.workers = workdir, workers
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.metrics_dir = workdir / f"metrics-{workers}"
        self.log_path = workdir / f"up-{workers}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "_Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "DATABASE_URL"))}
        env |= {"FXPLAT_AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fxplat", "up", "--service", SERVICE, "--workers", str(self.workers),
                 "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
                 "--data-dir", str(self.workdir / "data"), "--log-format", "json"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"all services ready" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"fxplat up --workers {self.workers} did not start:\n"
                                   f"{self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        return self

    def pids(self) -> list[int]:
        """The worker processes (the supervisor's children)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", "single-process"], capture_output=True,
                             text=True).stdout
        return sorted(int(p) for p in out.split())

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _client(transport: str, target: str, seconds: float, tasks: int) -> tuple[int, int, float]:
    """One load-generator process: `tasks` callers, each on its own connection, for `seconds`; (calls, errors, CPU s)."""
    import grpc
    import httpx

    from forex.market_analysis.v1 import market_analysis_pb2 as pb
    from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc

    async def main() -> tuple[int, int, float]:
        calls = errors = 0
        # Connections are made before the clock starts: an httpx client costs tens of ms of CPU to build.
        if transport == "grpc":
            # A local subchannel pool: each channel gets a TCP connection of its own, not the process's shared one.
            channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                        for _ in range(tasks)]
            request = pb.GetCandlesRequest(symbol="EURUSD", limit=10)
            stubs = [pb_grpc.MarketAnalysisServiceStub(c) for c in channels]
            await asyncio.gather(*(stub.GetCandles(request, timeout=30) for stub in stubs))
        else:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            clients = [httpx.AsyncClient(base_url=target, limits=limits, timeout=10) for _ in range(tasks)]
            await asyncio.gather(*(c.get("/v1/candles/EURUSD", params={"limit": 10}) for c in clients))
        cpu = time.process_time()
        stop_at = time.monotonic() + seconds

        async def grpc_caller(stub) -> None:
            nonlocal calls, errors
            while time.monotonic() < stop_at:
                try:
                    await stub.GetCandles(request, timeout=10)
                    calls += 1
                except grpc.RpcError:
                    errors += 1

        async def rest_caller(client) -> None:
            nonlocal calls, errors
            while time.monotonic() < stop_at:
                try:
                    (await client.get("/v1/candles/EURUSD", params={"limit": 10})).raise_for_status()
                    calls += 1
                except httpx.HTTPError:
                    errors += 1

        if transport == "grpc":
            await asyncio.gather(*(grpc_caller(stub) for stub in stubs))
            await asyncio.gather(*(c.close() for c in channels))
        else:
            await asyncio.gather(*(rest_caller(c) for c in clients))
            await asyncio.gather(*(c.aclose() for c in clients))
        return calls, errors, time.process_time() - cpu

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main())


def _measure(server: _Server, transport: str, seconds: float, pool) -> Run:
    from transport.metrics import per_process

    target = f"127.0.0.1:{server.grpc_port}" if transport == "grpc" else f"http://127.0.0.1:{server.rest_port}"
    pids = server.pids()
    multiprocess = server.workers > 1  # one worker keeps its metrics in memory: all calls are its own
    served_before = {pid: per_process(str(server.metrics_dir), pid) if multiprocess else 0.0 for pid in pids}
    cpu_before = {pid: _cpu_seconds(pid) for pid in pids}
    results = pool.starmap(_client, [(transport, target, seconds, TASKS_PER_PROCESS)] * CLIENT_PROCESSES)
    served = {pid: (per_process(str(server.metrics_dir), pid) if multiprocess else 1.0) - served_before[pid]
              for pid in pids}
    run = Run(transport, server.workers, seconds, sum(r[0] for r in results), sum(r[1] for r in results),
              sum(_cpu_seconds(pid) - cpu_before[pid] for pid in pids), sum(r[2] for r in results))
    total = sum(served.values()) or 1
    run.shares = [served[pid] / total for pid in pids]
    return run


def run_workers_bench(*, json_path: Path | None = None, quick: bool = False, log=print) -> dict:
    seconds = 3.0 if quick else 8.0
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fxplat-bench-workers-") as tmp:
        # Spawned (not forked) clients: no state of this process leaks into them; started once, warmed by the first run.
        with multiprocessing.get_context("spawn").Pool(CLIENT_PROCESSES) as pool:
            for workers in (1, 2):
                log(f"starting market_analysis with --workers {workers} ...")
                with _Server(Path(tmp), workers) as server:
                    for transport in ("grpc", "rest"):
                        _measure(server, transport, 1.0, pool)  # warm-up: connections, caches
                        run = _measure(server, transport, seconds, pool)
                        runs.append(run)
                        log(f"  {transport:4} workers={workers}: {run.rate:7.0f} calls/s, errors {run.errors}, server "
                            f"{run.server_ms_per_call:.3f} ms CPU/call, clients {run.client_cpu_s / run.seconds:.2f} "
                            f"cores, shares {', '.join(f'{s:.0%}' for s in run.shares)}")
    result = _report(runs)
    _print(result)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result


def _report(runs: list[Run]) -> dict:
    rows = [asdict(r) | {"calls_per_s": r.rate, "server_cpu_ms_per_call": r.server_ms_per_call,
                         "client_cpu_ms_per_call": r.client_ms_per_call,
                         "client_cores": r.client_cpu_s / r.seconds if r.seconds else 0.0,
                         "server_cores": r.server_cpu_s / r.seconds if r.seconds else 0.0} for r in runs]
    ratios = []
    for transport in ("grpc", "rest"):
        one = next(r for r in runs if r.transport == transport and r.workers == 1)
        two = next(r for r in runs if r.transport == transport and r.workers == 2)
        ms = two.server_ms_per_call
        ratios.append({
            "transport": transport, "throughput_2_over_1": two.rate / one.rate if one.rate else None,
            "min_worker_share_2": min(two.shares) if two.shares else None,
            # On a node whose cores only serve (the load elsewhere), each worker process can use one core:
            "projected_calls_per_s": {cores: cores * 1000 / ms if ms else None for cores in (2, 4, 8)},
        })
    return {"cores": os.cpu_count(), "client_processes": CLIENT_PROCESSES,
            "connections": CLIENT_PROCESSES * TASKS_PER_PROCESS, "rows": rows, "ratios": ratios}


def _print(result: dict) -> None:
    print(f"\nWorkers: market_analysis GetCandles (10 bars), {result['connections']} connections from "
          f"{result['client_processes']} client processes, on the same {result['cores']} cores as the server")
    print(f"{'transport':9} {'workers':>7} {'calls/s':>9} {'errors':>6} {'server ms CPU/call':>19} "
          f"{'server cores':>12} {'client cores':>12}  worker shares")
    for r in result["rows"]:
        print(f"{r['transport']:9} {r['workers']:>7} {r['calls_per_s']:>9.0f} {r['errors']:>6} "
              f"{r['server_cpu_ms_per_call']:>19.3f} {r['server_cores']:>12.2f} {r['client_cores']:>12.2f}  "
              + " / ".join(f"{s:.0%}" for s in r["shares"]))
    for q in result["ratios"]:
        projected = ", ".join(f"{c} cores ~{v:,.0f}/s" for c, v in q["projected_calls_per_s"].items() if v)
        print(f"{q['transport']}: 2 workers / 1 = {q['throughput_2_over_1']:.2f}x (smallest worker share "
              f"{q['min_worker_share_2']:.0%}); server CPU alone would allow {projected}")
