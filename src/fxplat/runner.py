"""`fxplat up --single-process` (and each child of the supervisor): start services in one process and event loop, log
where each listens, stop cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from adapters.canary import CanaryStore
from adapters.canary import database_url as canary_url
from adapters.flags import Flags
from adapters.shadow import Shadower
from adapters.shadow_worker import ShadowWorker
from transport import config
from fxplat import supervisor
from fxplat.catalog import BuildContext, build_host, scopes
from transport.auth import AuthConfig
from transport.client_factory import ClientFactory
from transport.server import ServiceHost, TlsFiles

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
            svc.reuse_port = supervisor.reuse_port()  # one of several workers on these ports
            started.append(await svc.start())
            ctx.endpoints[name] = config.Endpoint(svc.rest_url, svc.grpc_target)
    except BaseException:
        for svc in reversed(started):
            await svc.stop(grace=0)
        raise
    return started


async def serve(names: list[str], *, host: str, data_dir: Path, flags: Flags, auth: AuthConfig,
                tls: TlsFiles | None = None, grpc_enabled: bool = True,
                ports: dict[str, tuple[int, int]] | None = None, grace: float | None = None,
                drain_delay: float | None = None) -> None:
    """`auth` as AuthConfig.for_serving returns it; `tls` serves both transports over TLS; `drain_delay` and `grace`
    (default: FXPLAT_DRAIN_DELAY_S, FXPLAT_GRACE_S) shape the stop on SIGTERM/SIGINT."""
    grace = config.grace_s() if grace is None else grace
    drain_delay = config.drain_delay_s() if drain_delay is None else drain_delay
    supervisor.child_setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    flags.start()
    log.info("%s", auth.describe())
    # Calls between services carry the service token and trust the configured CA.
    async with ClientFactory(ca_file=config.tls_ca(), tls=config.tls_on(),
                             token_source=auth.service_tokens(scopes())) as factory:
        store = CanaryStore(canary_url(data_dir))
        shadower = Shadower(store.record, ShadowWorker(factory))
        try:
            if flags.may_shadow():  # else the first shadow call starts the worker, if flags ever ask for one
                await shadower.start()
            ctx = BuildContext(data_dir, factory, flags, grpc_enabled=grpc_enabled, auth=auth, tls=tls,
                               shadower=shadower, canary=store)
            hosts = await start_services(names, ctx, host=host, grpc_enabled=grpc_enabled, ports=ports)
            await _run_until(stop, hosts, data_dir, flags, grace, drain_delay)
        finally:
            await shadower.close()  # the comparisons of the last calls are recorded, not lost
            flags.close()
            await store.close()


async def _run_until(stop: asyncio.Event, hosts: list[ServiceHost], data_dir: Path, flags: Flags, grace: float,
                     drain_delay: float) -> None:
    for svc in hosts:
        grpc_where = f"gRPC {svc.grpc_target}" if svc.grpc_serving else "gRPC off (--no-grpc)"
        log.info("%-22s REST %s   %s", svc.name, svc.rest_url, grpc_where)
    log.info("flags from %s; data directory %s; event loop %s; Ctrl-C to stop", flags.snapshot().source, data_dir,
             type(asyncio.get_running_loop()).__module__.split(".")[0])
    supervisor.notify_ready()
    await stop.wait()
    log.info("draining: not ready, still serving for %.1f s; then finishing in-flight calls (grace %.1f s)",
             drain_delay, grace)
    # Every service sends new traffic away first (readiness 503, gRPC health NOT_SERVING) and keeps serving for the
    # drain delay, so load balancers and clients' health checks notice before any call is refused; then each stops,
    # callers before the services they call, so a call in flight still reaches its dependencies. One grace period
    # covers them all.
    for svc in hosts:
        await svc.begin_shutdown()
    await asyncio.sleep(drain_delay)
    deadline = time.monotonic() + grace
    for svc in reversed(hosts):
        await svc.stop(max(0.0, deadline - time.monotonic()))
    log.info("stopped")

