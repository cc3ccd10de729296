"""Hosting one service: its gRPC server and its REST (uvicorn) server in the running event loop, started together and
stopped gracefully (health NOT_SERVING, in-flight calls finish within the grace period, then close)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

import grpc
import uvicorn
from fastapi import FastAPI

from transport import grpc_server

log = logging.getLogger("fxplat.server")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner (fxplat up, tests) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off only on accepted sockets whose proto is IPPROTO_TCP, and with
    # Nagle on, uvicorn's two writes per response (head, body) meet the client's delayed ACK: +40 ms per REST call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind REST to {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class ServiceHost:
    """A running service. `rest_url` and `grpc_target` are where clients reach it (ports resolved when 0 was asked)."""

    name: str
    host: str
    app: FastAPI
    grpc_handler: grpc.GenericRpcHandler | None
    service_full_name: str
    impl: object = None  # the domain it serves, for in-process callers (tests)
    rest_port: int = 0
    grpc_port: int = 0
    _grpc: grpc.aio.Server | None = None
    _health: object | None = None
    _uvicorn: _EmbeddedUvicorn | None = None
    _task: asyncio.Task | None = None
    _sock: socket.socket | None = None
    closers: list = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.grpc_port}"

    async def start(self) -> "ServiceHost":
        self._sock = bind_socket(self.host, self.rest_port)
        self.rest_port = self._sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
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
            self.host, self.grpc_port, {self.service_full_name: self.grpc_handler})

    async def stop_grpc(self, grace: float | None = None) -> None:
        """Stop the gRPC server only (REST keeps serving): what a crash or a gRPC rollback looks like to clients."""
        if self._grpc is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._grpc.stop(grace)
        self._grpc = None

    async def stop(self, grace: float = 5.0) -> None:
        await self.stop_grpc(grace)
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), grace + 1)
            self._uvicorn = None
        for close in reversed(self.closers):
            await close()
        self.closers.clear()

    @property
    def grpc_serving(self) -> bool:
        return self._grpc is not None

