"""The process that makes the shadow calls. A shadow call costs the caller's event loop about a millisecond of CPU to
build and send (httpx) — as much as a small gRPC call takes in all — and that millisecond lands while the primary call
is in flight. Made here, in a child process with its own clients, it costs the caller only a pickle and a socket write
(`benchmarks/bench_shadow.py` measures both).

Protocol over a socketpair: length-prefixed pickles. The parent sends the client settings once, then
`(call id, bearer token, ShadowCall)` per call; the child answers each with `(call id, Outcome)`. The child stops when the parent closes its end (or dies), after finishing
the calls it has. If the child dies, the calls it had come back as None: the parent drops those comparisons, and the
next shadow call starts a new child.

    python -m adapters.shadow_worker FD   (started by ShadowWorker; FD is the child's end of the socketpair)
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from typing import Any

from services.common import errors as E
from transport import context
from transport.client_factory import ClientFactory

log = logging.getLogger("fxplat.shadow")

MAX_IN_FLIGHT = 256  # shadow calls out at once; beyond it a call is not shadowed (a slow shadow costs no memory)
NICE = 10  # the child's scheduling priority, lowered by this much (see main)
START_TIMEOUT_S = 60.0
RESTART_PAUSE_S = 30.0  # after a failed start, shadow calls are dropped this long rather than each starting a child
_HEADER = struct.Struct("!I")


@dataclasses.dataclass
class Outcome:
    """What one side of a shadowed call did: its value (None for an error), "OK" or the error code, and its latency."""

    value: Any = None
    code: str = "OK"
    latency_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class ShadowCall:
    """One call to make on `transport` of `service` at `target`: `client.<method>(*args)` under `budget_s`."""

    service: str
    transport: str  # "grpc" or "rest"
    target: str  # gRPC target or REST base URL
    method: str  # the client method, e.g. "get_candles"
    args: tuple
    budget_s: float
    request_id: str = ""


class ShadowWorker:
    """The parent's handle on the child process: `run` sends a call and returns its Outcome, or None when it was lost."""

    def __init__(self, factory: ClientFactory) -> None:
        self._settings = factory.settings
        self._tokens = factory.token_source
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task | None = None
        self._starting: asyncio.Lock | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._closed = False
        self._no_start_until = 0.0  # monotonic time; set when a start failed

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    @property
    def busy(self) -> bool:
        return len(self._pending) >= MAX_IN_FLIGHT

    async def run(self, call: ShadowCall) -> Outcome | None:
        if self._closed:
            return None
        self._next_id += 1
        call_id = self._next_id
        done = asyncio.get_running_loop().create_future()
        self._pending[call_id] = done
        try:
            writer = await self._started()
        except Exception:  # noqa: BLE001 - no child (logged once when its start failed): this sample is lost
            self._pending.pop(call_id, None)
            return None
        try:  # the caller's current token, so the child never holds a signing key
            _send(writer, (call_id, self._tokens() if self._tokens else "", call))
        except Exception:  # noqa: BLE001 - an argument that does not pickle: this sample is lost
            log.exception("shadow call %s.%s not sent", call.service, call.method)
            self._pending.pop(call_id, None)
            return None
        return await done

    async def start(self) -> None:
        """Start the child now (it takes about a second to import), so the first shadow calls do not queue behind it;
        without this, the first shadow call starts it. A child that cannot start is logged, never raised: shadowing is
        lost, the service is not."""
        try:
            await self._started()
        except Exception:  # noqa: BLE001 - logged where the start failed
            pass

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let the child answer the calls it has (for at most `timeout_s`), then stop it. It is killed rather than left
        to exit by itself: with nothing left to do, its own teardown (niced, numpy loaded) took seconds on a busy box,
        and the service's exit waited for it."""
        self._closed = True
        if self._pending:
            _, late = await asyncio.wait(list(self._pending.values()), timeout=timeout_s)
            if late:
                log.warning("the shadow worker did not finish %d calls within %.0fs; stopping it", len(late),
                            timeout_s)
        if self._writer is not None:
            self._writer.close()
        if self._process is None:
            return
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()
        if self._reader_task is not None:
            await self._reader_task

    async def _started(self) -> asyncio.StreamWriter:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._writer is None:
                if time.monotonic() < self._no_start_until:
                    raise RuntimeError("the shadow worker failed to start recently; not retrying yet")
                try:
                    self._writer = await self._spawn()
                except Exception:
                    log.exception("the shadow worker did not start; shadow calls are dropped for %.0fs",
                                  RESTART_PAUSE_S)
                    self._no_start_until = time.monotonic() + RESTART_PAUSE_S
                    raise
            return self._writer

    async def _spawn(self) -> asyncio.StreamWriter:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adapters.shadow_worker", str(theirs.fileno()), pass_fds=[theirs.fileno()])
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        _send(writer, (self._settings, self._tokens is not None))
        try:
            ready = await asyncio.wait_for(_receive(reader), START_TIMEOUT_S)
        except TimeoutError:
            self._process.kill()
            ready = None
        if ready != "ready":
            writer.close()
            raise RuntimeError(f"the shadow worker did not start (exit code {await self._process.wait()})")
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer))
        return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (answer := await _receive(reader)) is not None:
                call_id, outcome = answer
                if (done := self._pending.pop(call_id, None)) is not None and not done.done():
                    done.set_result(outcome)
        except Exception:  # noqa: BLE001 - a garbled answer ends this child; shadowing goes on with a new one
            log.exception("the shadow worker's answer could not be read")
        finally:
            if self._writer is writer:  # the child is gone: the next call starts a new one
                self._writer = None
            writer.close()
            lost, self._pending = self._pending, {}
            if lost:
                log.warning("the shadow worker stopped with %d calls out; their comparisons are dropped", len(lost))
            for done in lost.values():
                if not done.done():
                    done.set_result(None)


def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)


async def _receive(reader: asyncio.StreamReader) -> Any:
    try:
        size, = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# --- the child -------------------------------------------------------------------------------------------------------

async def _serve(sock: socket.socket) -> None:
    from adapters.connect import KITS

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    hello = await _receive(reader)
    if hello is None:
        return
    settings, with_tokens = hello
    token = ""
    factory = ClientFactory.from_settings(settings, (lambda: token) if with_tokens else None)
    clients: dict[tuple[str, str, str], Any] = {}
    running: set[asyncio.Task] = set()
    _send(writer, "ready")

    def client(call: ShadowCall) -> Any:
        key = (call.service, call.transport, call.target)
        if key not in clients:
            kit = KITS[call.service]
            clients[key] = (kit.grpc_client(factory.channel(call.target)) if call.transport == "grpc"
                            else kit.rest_client(factory.http(call.target)))
        return clients[key]

    async def answer(call_id: int, call: ShadowCall) -> None:
        context.request_id.set(call.request_id)
        with context.budget(call.budget_s):
            outcome = await _observe(lambda: getattr(client(call), call.method)(*call.args))
        if outcome.code != "OK":
            outcome.value = None  # errors compare by code; an exception may not pickle
        try:
            _send(writer, (call_id, outcome))
        except Exception:  # noqa: BLE001 - a value that does not pickle is an INTERNAL outcome, not a lost call
            log.exception("shadow answer of %s.%s does not pickle", call.service, call.method)
            _send(writer, (call_id, Outcome(None, "INTERNAL", outcome.latency_s)))

    try:
        while (job := await _receive(reader)) is not None:
            call_id, token, call = job  # token: the newest one the caller sent
            task = asyncio.get_running_loop().create_task(answer(call_id, call))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running, return_exceptions=True)
        await writer.drain()
    finally:
        writer.close()
        await factory.close()


async def _observe(call) -> Outcome:
    """Run `call` and capture its outcome instead of raising."""
    start = time.perf_counter()
    out = Outcome()
    try:
        out.value = await call()
    except E.DomainError as exc:
        out.code = exc.code
    except Exception as exc:  # noqa: BLE001 - a bug on one side is a finding, not a crash
        log.warning("shadow call failed: %r", exc)
        out.code = "INTERNAL"
    out.latency_s = time.perf_counter() - start
    return out


def main(fd: int) -> None:
    # Shadow calls are background work: when the caller's cores are busy, the caller's own work goes first.
    os.nice(NICE)
    # The parent decides when the child stops (it closes the socket): a Ctrl-C or a SIGTERM sent to the whole group
    # must not cut the calls the parent is still waiting for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="shadow worker: %(levelname)s %(message)s")
    asyncio.run(_serve(socket.socket(fileno=fd)))


if __name__ == "__main__":
    # Through the module's own name, so what is pickled names adapters.shadow_worker, not __main__.
    from adapters.shadow_worker import main as run_worker

    run_worker(int(sys.argv[1]))
