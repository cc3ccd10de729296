"""A load generator made of several client processes, for the benchmarks.

One Python client process tops out near 1k REST calls/s (httpx) or a few thousand gRPC calls/s, so a single client
measures itself rather than the server. `LoadGenerator(procs)` starts `procs` worker processes once (spawned, each on
uvloop when installed); `run(target, callers=..., duration_s=...)` spreads the callers over them, starts them together,
and returns the calls/s, the latencies and, given the server's pid, the server's CPU time per call (read from
/proc/<pid>/stat before and after the timed window).

The clients are as thin as each transport allows, so the numbers are the server's: gRPC sends a pre-serialised request
on a grpc.aio channel with no (de)serialisers; REST writes a prebuilt HTTP/1.1 request on a keep-alive connection per caller and
parses the answer with httptools (an httpx client would cost the load generator ~1 ms of CPU per call). Targets
are plain data (picklable), so any benchmark can describe a server it started.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from dataclasses import dataclass, field

READY_TIMEOUT_S = 60.0  # a worker that has not connected and warmed up by then is reported, not waited for


@dataclass(frozen=True)
class Target:
    """One call to repeat. gRPC: `address` host:port, `path` '/pkg.Service/Method', `body` the serialised request.
    REST: `address` 'http://host:port', `path` with its query string, `body` (non-empty: POST with a JSON body)."""

    transport: str  # "grpc" | "rest"
    address: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class LoadResult:
    callers: int
    procs: int
    calls: int
    errors: int
    wall_s: float
    calls_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_us_per_call: float | None  # None without a server pid (or without /proc)
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no samples."""
    if not sorted_ms:
        return None
    pos = q / 100.0 * (len(sorted_ms) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def _descendants(pid: int) -> list[int]:
    """The live children of `pid`, their children, and so on (Linux /proc)."""
    found, todo = [], [pid]
    while todo and len(found) < 1000:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time so far of process `pid` and its live descendants (`fxplat up` serves from worker
    processes under a supervisor), None when `pid` is unreadable (Linux /proc)."""
    total = 0.0
    for i, p in enumerate([pid, *_descendants(pid)]):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
        except OSError:
            if i == 0:
                return None
            continue  # a child that exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


class LoadGenerator:
    """`procs` client processes, started once and reused for every `run`; always stopped on exit (use `with`)."""

    def __init__(self, procs: int) -> None:
        self.procs = max(1, procs)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, object]] = []

    def __enter__(self) -> "LoadGenerator":
        try:
            for _ in range(self.procs):
                parent, child = self._ctx.Pipe()
                proc = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name="fxplat-loadgen")
                proc.start()
                child.close()
                self._workers.append((proc, parent))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc, conn in self._workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            conn.close()
        self._workers.clear()

    def run(self, target: Target, *, callers: int, duration_s: float, server_pid: int | None = None,
            warmup_calls: int = 20) -> LoadResult:
        """`callers` concurrent callers (spread over at most `callers` workers) call `target` in a loop for
        `duration_s` after a warm-up; throughput = completed calls / the slowest worker's timed window."""
        used = self._workers[:min(self.procs, callers)]
        shares = [callers // len(used) + (1 if i < callers % len(used) else 0) for i in range(len(used))]
        for (_, conn), share in zip(used, shares):
            conn.send({"target": target, "callers": share, "duration_s": duration_s, "warmup": warmup_calls})
        for proc, conn in used:  # connected and warmed up
            if not conn.poll(READY_TIMEOUT_S):
                raise RuntimeError(f"load worker {proc.pid} not ready within {READY_TIMEOUT_S:.0f} s")
            reply = conn.recv()
            if reply != "ready":
                raise RuntimeError(f"load worker {proc.pid} failed: {reply}")
        cpu0 = cpu_seconds(server_pid) if server_pid else None
        for _, conn in used:
            conn.send("go")
        replies = []
        for proc, conn in used:
            if not conn.poll(duration_s + READY_TIMEOUT_S):
                raise RuntimeError(f"load worker {proc.pid} did not report within {duration_s + READY_TIMEOUT_S} s")
            replies.append(conn.recv())
        cpu1 = cpu_seconds(server_pid) if server_pid else None
        failed = [r for r in replies if isinstance(r, str)]
        if failed:
            raise RuntimeError(f"load worker failed: {failed[0]}")
        latencies = sorted(x for r in replies for x in r["latencies_ms"])
        errors = sum(r["errors"] for r in replies)
        wall = max(r["wall_s"] for r in replies)
        calls = len(latencies)
        return LoadResult(
            callers=callers, procs=len(used), calls=calls, errors=errors, wall_s=wall,
            calls_per_s=calls / wall if wall > 0 else 0.0,
            p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
            server_cpu_us_per_call=(cpu1 - cpu0) / (calls + errors) * 1e6
            if cpu0 is not None and cpu1 is not None and calls + errors else None,
            latencies_ms=latencies)


# --- the worker process ----------------------------------------------------------------------------------------------

class _GrpcCaller:
    def __init__(self, target: Target) -> None:
        import grpc

        self._channel = grpc.aio.insecure_channel(target.address)
        self._call = self._channel.unary_unary(target.path)  # bytes in, bytes out: no serialisers on our side
        self._body, self._metadata = target.body, target.headers or None
        self._error = grpc.RpcError

    async def __call__(self) -> bool:
        try:
            await self._call(self._body, metadata=self._metadata, timeout=30.0)
        except self._error:
            return False
        return True

    async def close(self) -> None:
        await self._channel.close()


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a prebuilt request and parses the answer with httptools (the C
    parser uvicorn uses): a few µs per call, where an httpx client costs about a millisecond."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._parser.get_status_code())

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def connection_lost(self, exc) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"connection closed: {exc}"))

    async def request(self, raw: bytes) -> int:
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._done

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _RestCaller:
    """A pool with one connection per caller (a caller takes one, calls, puts it back)."""

    def __init__(self, target: Target, callers: int) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(target.address)
        self._host, self._port = url.hostname, url.port or 80
        head = [f"{'POST' if target.body else 'GET'} {target.path} HTTP/1.1", f"host: {url.netloc}"]
        head += [f"{k}: {v}" for k, v in target.headers]
        if target.body:
            head += ["content-type: application/json", f"content-length: {len(target.body)}"]
        self._raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + target.body
        self._idle: list[_HttpConnection] = []

    async def __call__(self) -> bool:
        while self._idle:  # servers close idle keep-alive connections (uvicorn after 5 s by default)
            conn = self._idle.pop()
            if not conn.closed:
                break
        else:
            conn = await self._connect()
        try:
            status = await conn.request(self._raw)
        except ConnectionError:
            conn.close()
            return False
        self._idle.append(conn)
        return status < 400

    async def _connect(self) -> "_HttpConnection":
        import socket

        _, conn = await asyncio.get_running_loop().create_connection(_HttpConnection, self._host, self._port)
        conn._transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def _job(conn, job: dict, callers_cache: dict) -> dict:
    target: Target = job["target"]
    n = job["callers"]
    key = (target, n)
    if key not in callers_cache:
        callers_cache[key] = _GrpcCaller(target) if target.transport == "grpc" else _RestCaller(target, n)
    call = callers_cache[key]
    for _ in range(max(1, job["warmup"] // n)):  # connect, and warm every connection of the pool
        await asyncio.gather(*(call() for _ in range(n)))
    conn.send("ready")
    if conn.recv() != "go":
        raise RuntimeError("expected go")
    perf = time.perf_counter
    latencies: list[float] = []
    errors = 0
    start = perf()
    stop_at = start + job["duration_s"]

    async def caller() -> None:
        nonlocal errors
        while perf() < stop_at:
            t0 = perf()
            ok = await call()
            if ok:
                latencies.append((perf() - t0) * 1000.0)
            else:
                errors += 1

    await asyncio.gather(*(caller() for _ in range(n)))
    return {"latencies_ms": latencies, "errors": errors, "wall_s": perf() - start}


def _worker_main(conn) -> None:
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        cache: dict = {}
        try:
            while (job := conn.recv()) is not None:
                try:
                    conn.send(runner.run(_job(conn, job, cache)))
                except Exception as exc:  # reported to the parent, which raises it
                    conn.send(f"{type(exc).__name__}: {exc}")
        except (EOFError, KeyboardInterrupt):
            pass
        finally:
            for call in cache.values():
                runner.run(call.close())
