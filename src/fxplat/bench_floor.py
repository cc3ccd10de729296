"""The floor rows of `fxplat bench`: the platform's server against bare servers sending the same bytes.

For the small call (GetCandles EURUSD M1, 10 bars) the benchmark asks the platform's server once for its answer on each
transport, then starts floor servers in their own processes (see fxplat.floor) that send exactly those bytes with no
auth, metrics, logs, tracing or domain: per transport a bare one, and a route floor that serves the method as the
platform declares it (REST: FastAPI with the route's parameters, bearer dependency and response class; gRPC: the
request decoded and the response message encoded per call), so it costs what the framework costs for the method; and a
domain floor that serves the method from the platform's own domain through its own skin (the gRPC method's codec, the
REST router) with none of the per-call layer (auth, metrics, logs, request ids, deadlines, limits). All get the same
request bytes, the bearer token included. The load generator (fxplat.loadgen: client processes, thin
clients) then calls floors and platform alternately, one caller (sequential p50) and 16 callers (calls/s), and reads
each server's CPU time per call from /proc. The ratios say what the platform's per-call layer costs on each transport:
how much of the gap to the bare floor the framework takes for the method alone, how much the domain, and what is left
for the layer itself.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fxplat.floor import CANDLES_METHOD, DOMAIN_KINDS
from fxplat.loadgen import LoadGenerator, LoadResult, Target
from fxplat.ports import free_port

SMALL_BARS = 10
# transport -> row name -> floor server kind (python -m fxplat.floor KIND); the platform's row is "platform"
FLOORS = {"grpc": {"floor": "grpc", "route": "grpc-route", "domain": "grpc-domain"},
          "rest": {"floor": "rest", "route": "rest-route", "domain": "rest-domain"}}
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FloorPlan:
    rounds: int  # floor and platform alternate this many times; each round measures both ways
    seq_s: float  # one caller, per round and server
    conc_s: float  # 16 callers, per round and server
    procs: int  # client processes of the load generator


FULL = FloorPlan(rounds=3, seq_s=1.0, conc_s=2.0, procs=4)
QUICK = FloorPlan(rounds=1, seq_s=0.3, conc_s=0.7, procs=2)


@dataclass
class FloorRow:
    transport: str
    # "floor" (bare) | "route" (the platform's method as declared, nothing else) | "domain" (the method over the
    # platform's domain, without its per-call layer) | "platform"
    server: str
    seq_n: int = 0
    seq_p50_ms: float | None = None
    seq_p99_ms: float | None = None
    conc_calls: int = 0
    calls_per_s: float | None = None
    conc_p50_ms: float | None = None
    errors: int = 0
    server_cpu_us_per_call: float | None = None  # under 16 callers


class FloorProcess:
    """A floor server (python -m fxplat.floor KIND PORT [PAYLOAD]) in a child process; always stopped on exit."""

    def __init__(self, kind: str, port: int, payload: Path, log_path: Path) -> None:
        self.kind, self.port, self.payload, self.log_path = kind, port, payload, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}" if self.kind.startswith("grpc") else f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        with open(self.log_path, "wb") as out:
            payload = [] if self.kind in DOMAIN_KINDS else [str(self.payload)]  # a domain floor computes its answer
            self.proc = subprocess.Popen([sys.executable, "-m", "fxplat.floor", self.kind, str(self.port), *payload],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        import grpc
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.kind} floor server exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if self.kind.startswith("grpc"):
                with grpc.insecure_channel(self.address) as channel:
                    try:
                        channel.unary_unary(CANDLES_METHOD)(b"", timeout=1.0)
                        return
                    except grpc.RpcError as exc:  # an answer, even a refusal (a domain floor wants a symbol), is ready
                        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                            return
            else:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.address}/healthz", timeout=1.0).status_code == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"the {self.kind} floor server was not ready within {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def platform_targets(grpc_target: str, rest_url: str, token: str) -> dict[str, Target]:
    """The small call on the platform's server, as the load generator sends it (with a bearer token)."""
    from forex.market_analysis.v1 import market_analysis_pb2 as pb
    from services.common.market_types import Timeframe
    from services.market_analysis.grpc import candles_query_to_pb
    from services.market_analysis.models import CandlesQuery

    request = candles_query_to_pb(CandlesQuery("EURUSD", Timeframe.M1, limit=SMALL_BARS))
    assert isinstance(request, pb.GetCandlesRequest)
    auth = (("authorization", f"Bearer {token}"),)
    return {"grpc": Target("grpc", grpc_target, CANDLES_METHOD, request.SerializeToString(), auth),
            "rest": Target("rest", rest_url, f"/v1/candles/EURUSD?timeframe=M1&limit={SMALL_BARS}", b"", auth)}


def _fetch_payloads(targets: dict[str, Target], workdir: Path) -> dict[str, Path]:
    """The platform's own answers, byte for byte, for the floor servers to send."""
    import grpc
    import httpx

    g, r = targets["grpc"], targets["rest"]
    with grpc.insecure_channel(g.address) as channel:
        grpc_bytes = channel.unary_unary(CANDLES_METHOD)(g.body, metadata=g.headers, timeout=30.0)
    resp = httpx.get(r.address + r.path, headers=dict(r.headers), timeout=30.0)
    resp.raise_for_status()
    paths = {"grpc": workdir / "floor-grpc.bin", "rest": workdir / "floor-rest.json"}
    paths["grpc"].write_bytes(grpc_bytes)
    paths["rest"].write_bytes(resp.content)
    return paths


def _fold(row: FloorRow, seq: list[LoadResult], conc: list[LoadResult]) -> None:
    from fxplat.loadgen import percentile

    lat = sorted(x for r in seq for x in r.latencies_ms)
    row.seq_n, row.seq_p50_ms, row.seq_p99_ms = len(lat), percentile(lat, 50), percentile(lat, 99)
    lat = sorted(x for r in conc for x in r.latencies_ms)
    wall = sum(r.wall_s for r in conc)
    row.conc_calls, row.conc_p50_ms = len(lat), percentile(lat, 50)
    row.calls_per_s = len(lat) / wall if wall else None
    row.errors = sum(r.errors for r in seq + conc)
    cpu = [r.server_cpu_us_per_call * (r.calls + r.errors) for r in conc if r.server_cpu_us_per_call is not None]
    n = sum(r.calls + r.errors for r in conc if r.server_cpu_us_per_call is not None)
    row.server_cpu_us_per_call = sum(cpu) / n if cpu and n else None


def run(*, grpc_target: str, rest_url: str, token: str, server_pid: int, workdir: Path, quick: bool,
        concurrency: int, log) -> list[dict]:
    """Start the floor servers, measure floor and platform alternately on both transports, stop the floors."""
    plan = QUICK if quick else FULL
    targets = platform_targets(grpc_target, rest_url, token)
    payloads = _fetch_payloads(targets, workdir)
    floors = {(transport, who): FloorProcess(kind, free_port(), payloads[transport], workdir / f"floor-{kind}.log")
              for transport, kinds in FLOORS.items() for who, kind in kinds.items()}
    rows: list[FloorRow] = []
    try:
        for floor in floors.values():
            floor.launch()
        with LoadGenerator(plan.procs) as load:  # its processes start while the floors do
            for floor in floors.values():
                floor.wait_ready()
            for kind, call in targets.items():
                # the floors get the very same request, bearer token included (they do not verify it, but receiving
                # it is transport work: ~50 µs of server CPU per gRPC call for the header alone, measured)
                runs: dict[str, tuple[Target, int]] = {}
                for who in FLOORS[kind]:
                    floor = floors[(kind, who)]
                    assert floor.proc is not None
                    runs[who] = (Target(kind, floor.address, call.path, call.body, call.headers), floor.proc.pid)
                runs["platform"] = (call, server_pid)
                seq: dict[str, list[LoadResult]] = {who: [] for who in runs}
                conc: dict[str, list[LoadResult]] = {who: [] for who in runs}
                t0 = time.perf_counter()
                for _ in range(plan.rounds):  # alternate, so drift in the machine's load hits both alike
                    for who, (target, pid) in runs.items():
                        seq[who].append(load.run(target, callers=1, duration_s=plan.seq_s, server_pid=pid))
                    for who, (target, pid) in runs.items():
                        conc[who].append(load.run(target, callers=concurrency, duration_s=plan.conc_s,
                                                  server_pid=pid))
                for who in runs:
                    row = FloorRow(kind, who)
                    _fold(row, seq[who], conc[who])
                    rows.append(row)
                log(f"  floor {kind}: {time.perf_counter() - t0:.1f} s")
    finally:
        for floor in floors.values():
            floor.stop()
    return [asdict(r) for r in rows]
