"""The platform's services: for each, how to build its domain and its two skins. The runner and the tests start
services only through this table, so a new service is one entry here."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from transport.grpc_server import service_handler
from transport.rest_app import create_app
from transport.server import ServiceHost


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    title: str
    description: str
    grpc_service: str  # full proto service name
    # Builds the domain implementation; returns (impl, async closer or None).
    build: Callable[["BuildContext"], Awaitable[tuple[Any, Callable[[], Awaitable[None]] | None]]]
    grpc_methods: Callable[[Any], list]  # RPC table over any implementation: the server skin, `fxplat call`
    rest_router: Callable[[Any], APIRouter]


@dataclass
class BuildContext:
    data_dir: Path | None


async def _market_analysis(ctx: BuildContext):
    from services.market_analysis.domain import MarketAnalysisDomain

    domain = MarketAnalysisDomain(ctx.data_dir)
    await domain.warm()
    return domain, None


def _entries() -> dict[str, ServiceEntry]:
    from services.market_analysis import grpc as ma_grpc
    from services.market_analysis import rest as ma_rest

    return {
        "market_analysis": ServiceEntry(
            "market_analysis", "fxplat Market Analysis",
            "Market data (OHLCV candles), technical indicators and market summaries for FX symbols.",
            ma_grpc.SERVICE, _market_analysis, ma_grpc.methods, ma_rest.router),
    }


CATALOG = _entries()


async def build_host(name: str, ctx: BuildContext, host: str, rest_port: int, grpc_port: int,
                     grpc_enabled: bool = True) -> ServiceHost:
    """Build a service's domain and both skins, bound but not yet started (call `await h.start()`)."""
    entry = CATALOG[name]
    impl, closer = await entry.build(ctx)
    app = create_app(name, entry.title, entry.description)
    app.include_router(entry.rest_router(impl))
    handler = service_handler(entry.grpc_service, entry.grpc_methods(impl)) if grpc_enabled else None
    svc = ServiceHost(name, host, app, handler, entry.grpc_service, impl,
                      rest_port, grpc_port)
    if closer:
        svc.closers.append(closer)
    return svc
