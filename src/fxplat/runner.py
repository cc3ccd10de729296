"""`fxplat up`: start services in one process and event loop, log where each listens, stop cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from adapters.flags import Flags
from fxplat import config
from fxplat.catalog import BuildContext, build_host
from transport.client_factory import ClientFactory
from transport.server import ServiceHost

log = logging.getLogger("fxplat.up")


async def start_services(names: list[str], ctx: BuildContext, *, host: str, grpc_enabled: bool = True,
                         ports: dict[str, tuple[int, int]] | None = None) -> list[ServiceHost]:
    """Start `names` in order (a service's dependencies first); each one's endpoints go into `ctx.endpoints`, so the
    services started after it reach it where it actually listens."""
    started: list[ServiceHost] = []
    try:
        for name in names:
            rest_port, grpc_port = (ports or {}).get(name) or config.ports(name)
            svc = await build_host(name, ctx, host, rest_port, grpc_port, grpc_enabled)
            started.append(await svc.start())
            ctx.endpoints[name] = config.Endpoint(svc.rest_url, svc.grpc_target)
    except BaseException:
        for svc in reversed(started):
            await svc.stop(grace=0)
        raise
    return started


async def serve(names: list[str], *, host: str, data_dir: Path, flags: Flags, grpc_enabled: bool = True,
                ports: dict[str, tuple[int, int]] | None = None, grace: float = 5.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    flags.start()
    async with ClientFactory() as factory:
        try:
            ctx = BuildContext(data_dir, factory, flags, grpc_enabled=grpc_enabled)
            hosts = await start_services(names, ctx, host=host, grpc_enabled=grpc_enabled, ports=ports)
            await _run_until(stop, hosts, data_dir, flags, grace)
        finally:
            flags.close()


async def _run_until(stop: asyncio.Event, hosts: list[ServiceHost], data_dir: Path, flags: Flags, grace: float) -> None:
    for svc in hosts:
        grpc_where = f"gRPC {svc.grpc_target}" if svc.grpc_serving else "gRPC off (--no-grpc)"
        log.info("%-22s REST %s   %s", svc.name, svc.rest_url, grpc_where)
    log.info("flags from %s; data directory %s; Ctrl-C to stop", flags.snapshot().source, data_dir)
    await stop.wait()
    log.info("stopping: finishing in-flight calls (grace %.0fs)", grace)
    for svc in reversed(hosts):
        await svc.stop(grace)
    log.info("stopped")

