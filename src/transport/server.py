"""Hosting one service: its gRPC server and its REST (uvicorn) server in the running event loop, started together and
stopped gracefully (health NOT_SERVING, in-flight calls finish within the grace period, then close); both over TLS when
given a certificate."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvicorn
from fastapi import FastAPI

from transport import config, grpc_server, ops

log = logging.getLogger("fxplat.server")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner (fxplat up, tests) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A REST listening socket. `reuse_port`: several worker processes bind the same port and the kernel spreads
    connections over them (SO_REUSEPORT); without it a port in use is an error, as it should be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off only on accepted sockets whose proto is IPPROTO_TCP, and with
    # Nagle on, uvicorn's two writes per response (head, body) meet the client's delayed ACK: +40 ms per REST call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind REST to {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate (chain) and private key, PEM files: both transports serve TLS with them."""

    cert_file: Path
    key_file: Path

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())])


@dataclass
class ServiceHost:
    """A running service. `rest_url` and `grpc_target` are where clients reach it (ports resolved when 0 was asked)."""

    name: str
    host: str
    app: FastAPI
    grpc_handler: grpc_server.ServiceHandler | None
    service_full_name: str
    impl: object = None  # the domain it serves, for in-process callers (tests)
    rest_port: int = 0
    grpc_port: int = 0
    tls: TlsFiles | None = None
    reuse_port: bool = False  # one of several worker processes on the same ports (fxplat up --workers N)
    _grpc: grpc.aio.Server | None = None
    _health: object | None = None
    _uvicorn: _EmbeddedUvicorn | None = None
    _task: asyncio.Task | None = None
    _sock: socket.socket | None = None
    closers: list = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{config.reach(self.host)}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{config.reach(self.host)}:{self.grpc_port}"

    async def start(self) -> "ServiceHost":
        self._sock = bind_socket(self.host, self.rest_port, self.reuse_port)
        self.rest_port = self._sock.getsockname()[1]
        tls = {"ssl_certfile": str(self.tls.cert_file), "ssl_keyfile": str(self.tls.key_file)} if self.tls else {}
        # log_config=None: uvicorn's loggers go through the process's handler (transport.logs), not its own.
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30,
                                log_config=None, **tls)
        self._uvicorn = _EmbeddedUvicorn(config)
        self._task = asyncio.create_task(self._uvicorn.serve(sockets=[self._sock]), name=f"{self.name}-rest")
        while not self._uvicorn.started:
            if self._task.done():
                self._task.result()  # surfaces the startup error
                raise RuntimeError(f"{self.name}: REST server exited during startup")
            await asyncio.sleep(0.01)
        if self.grpc_handler is not None:
            await self.start_grpc()
        return self

    async def start_grpc(self) -> None:
        self._grpc, self.grpc_port, self._health = await grpc_server.create_server(
            self.host, self.grpc_port, {self.service_full_name: self.grpc_handler},
            self.tls.grpc_credentials() if self.tls else None, reuse_port=self.reuse_port)

    async def stop_grpc(self, grace: float | None = None) -> None:
        """Stop the gRPC server only (REST keeps serving): what a crash or a gRPC rollback looks like to clients."""
        if self._grpc is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if grace:  # refuse new calls and let those in flight finish before grpc.aio may cut them off
            async with self.grpc_handler.gate.closed(grace) as left:
                await self._grpc.stop(left)
        else:
            await self._grpc.stop(grace)
        self._grpc = None

    async def begin_shutdown(self) -> None:
        """Send new traffic elsewhere while still serving: /readyz answers 503 and gRPC health NOT_SERVING. A process
        hosting several services does this for all of them before stopping any (see fxplat.runner)."""
        ops.readiness(self.app).draining = True
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls on both transports at once, give in-flight calls up to `grace` seconds, then close (gRPC
        sends GOAWAY as it closes; calls refused before are answered UNAVAILABLE/SHUTTING_DOWN, never run)."""
        await self.begin_shutdown()
        await asyncio.gather(self.stop_grpc(grace), self._stop_rest(grace))
        for close in reversed(self.closers):
            await close()
        self.closers.clear()

    async def _stop_rest(self, grace: float) -> None:
        if self._uvicorn is None or self._task is None:
            return
        # After the grace uvicorn cancels the calls still running. Not 0: uvicorn would then log an error even when
        # nothing runs, as it cancels before looking.
        self._uvicorn.config.timeout_graceful_shutdown = max(grace, 0.01)
        ops.refuse_calls(self.app)
        self._uvicorn.should_exit = True  # closes the listener (new connections refused), then drains
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), grace + 1)
        self._uvicorn = None

    @property
    def grpc_serving(self) -> bool:
        return self._grpc is not None

