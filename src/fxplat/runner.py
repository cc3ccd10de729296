"""`fxplat up`: start services in one process and event loop, log where each listens, stop cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from fxplat import config
from fxplat.catalog import BuildContext, build_host
from transport.server import ServiceHost

log = logging.getLogger("fxplat.up")


async def start_services(names: list[str], *, host: str, data_dir: Path | None, grpc_enabled: bool = True,
                         ports: dict[str, tuple[int, int]] | None = None) -> list[ServiceHost]:
    started: list[ServiceHost] = []
    try:
        for name in names:
            rest_port, grpc_port = (ports or {}).get(name) or config.ports(name)
            svc = await build_host(name, BuildContext(data_dir), host, rest_port, grpc_port, grpc_enabled)
            started.append(await svc.start())
    except BaseException:
        for svc in reversed(started):
            await svc.stop(grace=0)
        raise
    return started


async def serve(names: list[str], *, host: str, data_dir: Path, grpc_enabled: bool = True,
                ports: dict[str, tuple[int, int]] | None = None, grace: float = 5.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hosts = await start_services(names, host=host, data_dir=data_dir, grpc_enabled=grpc_enabled, ports=ports)
    for svc in hosts:
        grpc_where = f"gRPC {svc.grpc_target}" if svc.grpc_serving else "gRPC off (--no-grpc)"
        log.info("%-22s REST %s   %s", svc.name, svc.rest_url, grpc_where)
    log.info("data directory %s; Ctrl-C to stop", data_dir)
    await stop.wait()
    log.info("stopping: finishing in-flight calls (grace %.0fs)", grace)
    for svc in reversed(hosts):
        await svc.stop(grace)
    log.info("stopped")

