"""`fxplat up` as a process supervisor: every service in processes of its own, so the services use every core.

The supervisor starts each service's workers in dependency order (a service's dependencies are ready before it
starts), waits until each child says it is ready, restarts a child that dies with a growing pause, and on SIGTERM or
SIGINT stops the services callers first, each child draining with its own stop sequence (fxplat.runner). Children
write to the supervisor's stdout/stderr: one log stream. It exits 0 after a clean stop.

A child is `fxplat up --single-process --service NAME` with the resolved ports. With `workers` > 1 the workers of a
service bind the same ports with SO_REUSEPORT and the kernel spreads connections over them; the supervisor holds a
bound (not listening) socket on each such port for its whole life, which reserves the port (port 0 gets a free one
once, for all workers) and makes a port held by another program an error at start, not a silent split. Their
Prometheus metrics then go through prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR): a scrape of the
shared port reaches one worker at random, so each worker must answer for all of them (see transport.metrics).

This module imports nothing heavy: the supervisor itself never loads the services.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

from transport import config

log = logging.getLogger("fxplat.supervisor")

READY_FD_ENV = "FXPLAT_READY_FD"  # a child writes one line there when it serves (see notify_ready)
WORKER_ENV = "FXPLAT_WORKER"  # "<service>/<index>": which worker a child is, stamped on its log lines
SUPERVISOR_PID_ENV = "FXPLAT_SUPERVISOR_PID"
REUSE_PORT_ENV = "FXPLAT_REUSE_PORT"  # "1": bind with SO_REUSEPORT (several workers on one port)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
START_TIMEOUT_S = 300.0  # a child not ready by then is a failed start (imports and warm-up on a busy box)
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0  # the pause before a restart doubles with each quick death, up to the max
STABLE_S = 30.0  # a child that served this long before dying restarts after the shortest pause again
STOP_MARGIN_S = 30.0  # beyond drain delay + grace, before a child that does not stop is killed (its exit after
# "stopped" closes the shadow worker and clients: seconds on a busy box)


def child_setup() -> None:
    """In a child, first thing: die with the supervisor (SIGTERM when it exits, however it exits; the child then drains
    as on any SIGTERM), and stamp the log lines with the worker's name."""
    if not os.environ.get(READY_FD_ENV):
        return
    stamp_worker_logs()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    if str(os.getppid()) != os.environ.get(SUPERVISOR_PID_ENV):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def notify_ready() -> None:
    """In a child: tell the supervisor that this process serves (no-op when not started by one)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"ready\n")
            os.close(int(fd))


def stamp_worker_logs() -> None:
    """In a child: every log record carries `worker` ("market_analysis/1") and the JSON lines show it."""
    worker = os.environ.get(WORKER_ENV)
    if not worker:
        return

    def stamp(record: logging.LogRecord) -> bool:
        record.worker = worker
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(stamp)


def reuse_port() -> bool:
    return os.environ.get(REUSE_PORT_ENV) == "1"


def _reserve(host: str, port: int, what: str, hold: bool) -> tuple[socket.socket | None, int]:
    """Bind `port` (0: a free one). `hold`: keep the socket (SO_REUSEPORT, never listening) so workers can share the
    port; else close it and only return the number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hold:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind {what} to {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    if not hold:
        sock.close()
        return None, bound
    return sock, bound


@dataclass
class _Child:
    service: str
    index: int
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_deaths: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}/{self.index}"


@dataclass
class Supervisor:
    """Runs `names` (in dependency order) with `workers` processes each. `ports` holds each service's (REST, gRPC)
    ports, 0 for a free one; `child_args` go to every child's `fxplat up` (data dir, flags, auth, log format)."""

    names: list[str]
    host: str
    ports: dict[str, tuple[int, int]]
    workers: int = 1
    grpc_enabled: bool = True
    child_args: list[str] = field(default_factory=list)
    start_timeout_s: float = START_TIMEOUT_S
    _children: dict[str, list[_Child]] = field(default_factory=dict)
    _held: list[socket.socket] = field(default_factory=list)
    _stopping: bool = False
    _stop: asyncio.Event | None = None
    _watchers: list[asyncio.Task] = field(default_factory=list)
    _metrics_dir: str | None = None
    _own_metrics_dir: bool = True

    async def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT, stop; 0 after a clean stop, 1 when a start failed."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            env = self._prepare()
            for name in self.names:
                children = [_Child(name, i, self._argv(name), env | {WORKER_ENV: f"{name}/{i}"})
                            for i in range(self.workers)]
                self._children[name] = children
                started = await self._race_stop(asyncio.gather(*(self._start(c) for c in children)))
                if not started:
                    log.info("stop requested during start")
                    return await self._shutdown(0)
                for child in children:
                    self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch-{child.name}"))
            log.info("all services ready (%d process(es) each); Ctrl-C to stop", self.workers)
            await self._stop.wait()
            return await self._shutdown(0)
        except _StartFailed as exc:
            log.error("%s", exc)
            return await self._shutdown(1)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for sock in self._held:
                sock.close()
            if self._metrics_dir and self._own_metrics_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _prepare(self) -> dict[str, str]:
        """Resolve the ports and build the children's environment: where every service of this supervisor listens
        (so dependents reach it there), SO_REUSEPORT and the metrics directory for several workers."""
        env = dict(os.environ)
        env.pop(READY_FD_ENV, None)
        env.pop("FXPLAT_WORKERS", None)  # a child is one worker (its --single-process refuses more)
        env["FXPLAT_HOST"] = self.host
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        hold = self.workers > 1
        h = f"[{self.host}]" if ":" in self.host else self.host
        for name in self.names:
            rest, grpc = self.ports[name]
            sock, rest = _reserve(self.host, rest, f"{name} REST", hold)
            self._held += [sock] if sock else []
            if self.grpc_enabled:
                sock, grpc = _reserve(self.host, grpc, f"{name} gRPC", hold)
                self._held += [sock] if sock else []
            self.ports[name] = (rest, grpc)
            prefix = f"FXPLAT_{name.upper()}_"
            env |= {prefix + "REST_PORT": str(rest), prefix + "GRPC_PORT": str(grpc),
                    prefix + "REST_URL": f"{'https' if config.tls_on() else 'http'}://{h}:{rest}",
                    prefix + "GRPC_TARGET": f"{h}:{grpc}"}
        if hold:
            env[REUSE_PORT_ENV] = "1"
            env[MULTIPROC_ENV] = self._metrics_directory()
        else:
            env.pop(REUSE_PORT_ENV, None)
            env.pop(MULTIPROC_ENV, None)
        return env

    def _metrics_directory(self) -> str:
        """PROMETHEUS_MULTIPROC_DIR as given (emptied of an earlier run's files), else a new directory removed at
        the end."""
        given = os.environ.get(MULTIPROC_ENV)
        if not given:
            self._metrics_dir = tempfile.mkdtemp(prefix="fxplat-metrics-")
            return self._metrics_dir
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        self._metrics_dir = given
        self._own_metrics_dir = False
        return given

    def _argv(self, name: str) -> list[str]:
        rest, grpc = self.ports[name]
        argv = [sys.executable, "-m", "fxplat", "up", "--single-process", "--service", name, "--host", self.host,
                "--rest-port", str(rest), *self.child_args]
        if self.grpc_enabled:
            argv += ["--grpc-port", str(grpc)]
        else:
            argv.append("--no-grpc")
        return argv

    async def _race_stop(self, work) -> bool:
        """Await `work`; False (and `work` cancelled) if a stop is requested first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, _StartFailed):
            await task
        return False

    async def _start(self, child: _Child) -> None:
        """Spawn `child` and wait until it is ready; _StartFailed when it dies or takes too long."""
        read_end, write_end = os.pipe()
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv, env=child.env | {READY_FD_ENV: str(write_end)}, pass_fds=(write_end,),
                stdin=asyncio.subprocess.DEVNULL,
                process_group=0)  # a terminal's Ctrl-C reaches the supervisor only, which stops callers first
        finally:
            os.close(write_end)
        child.started_at = time.monotonic()
        log.info("%s starting (pid %d)", child.name, child.proc.pid)
        try:
            # EOF (b"") when the child exits first; the read ends with the child at the latest, as its end closes.
            line = await asyncio.wait_for(asyncio.to_thread(os.read, read_end, 64), self.start_timeout_s)
        except asyncio.TimeoutError:
            await self._kill(child)
            raise _StartFailed(f"{child.name} was not ready within {self.start_timeout_s:.0f}s") from None
        except asyncio.CancelledError:
            await self._kill(child)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.close(read_end)
        if not line:
            code = await child.proc.wait()
            raise _StartFailed(f"{child.name} exited with code {code} before it was ready (its log is above)")
        log.info("%s ready (pid %d)", child.name, child.proc.pid)

    async def _kill(self, child: _Child) -> None:
        if child.proc and child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()
        self._forget(child)

    def _forget(self, child: _Child) -> None:
        """A dead worker's live gauges (in-flight calls, breaker states) leave the shared metrics."""
        if self._metrics_dir and child.proc is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(child.proc.pid, self._metrics_dir)

    async def _watch(self, child: _Child) -> None:
        """Restart `child` whenever it dies outside a stop, after a pause that grows while it keeps dying quickly."""
        while True:
            code = await child.proc.wait()
            if self._stopping or self._stop.is_set():
                return
            self._forget(child)
            lived = time.monotonic() - child.started_at
            child.quick_deaths = 0 if lived >= STABLE_S else child.quick_deaths + 1
            pause = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** max(0, child.quick_deaths - 1))
            log.warning("%s (pid %d) exited with code %s after %.1fs; restarting in %.1fs", child.name,
                        child.proc.pid, code, lived, pause)
            await asyncio.sleep(pause)
            if self._stopping:
                return
            try:
                await self._start(child)
            except _StartFailed as exc:
                log.error("%s", exc)  # the loop waits for the dead child and tries again, later

    async def _shutdown(self, status: int) -> int:
        """Stop the services callers first (the reverse of the start order): each child gets SIGTERM and drains
        with its own stop sequence; one that outlives drain delay + grace + a margin is killed."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        limit = config.drain_delay_s() + config.grace_s() + STOP_MARGIN_S
        for name in reversed(self.names):
            children = [c for c in self._children.get(name, []) if c.proc and c.proc.returncode is None]
            for child in children:
                child.proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*(self._reap(c, limit) for c in children))
            if not all(results):
                status = status or 1
        log.info("stopped")
        return status

    async def _reap(self, child: _Child, limit: float) -> bool:
        """True when `child` stopped by itself, with code 0, within `limit` seconds."""
        try:
            code = await asyncio.wait_for(child.proc.wait(), limit)
        except asyncio.TimeoutError:
            log.error("%s (pid %d) did not stop within %.0fs; killing it", child.name, child.proc.pid, limit)
            await self._kill(child)
            return False
        self._forget(child)
        if code != 0:
            log.error("%s (pid %d) exited with code %d while stopping", child.name, child.proc.pid, code)
        return code == 0


class _StartFailed(Exception):
    pass


def run(supervisor: Supervisor) -> int:
    return asyncio.run(supervisor.run())
