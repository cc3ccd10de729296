"""The platform's services: for each, how to build its domain and its two skins. The runner and the tests start
services only through this table, so a new service is one entry here."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from adapters.canary import CanaryStore
from adapters.shadow import Shadower
from transport import config
from transport import logs, ops
from transport.auth import AuthConfig, include_guarded, scope_table
from transport.client_factory import ClientFactory
from transport.grpc_server import service_handler
from transport.rest_app import create_app
from transport.server import ServiceHost, TlsFiles


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
    ops_router: Callable[["BuildContext"], APIRouter] | None = None  # pages for ops, outside the API contract


@dataclass
class BuildContext:
    """What a service needs to be built: its data directory and, for services that call others, the shared client
    factory, the flags and where the other services are (`endpoints` overrides config, e.g. for ports chosen at 0)."""

    data_dir: Path | None
    factory: ClientFactory | None = None
    flags: Any = None
    endpoints: dict[str, config.Endpoint] = field(default_factory=dict)
    caller: str = ""  # the service being built: the flags' `caller` of its outgoing calls
    grpc_enabled: bool = True  # False (fxplat up --no-grpc): calls between services go over REST only
    # How calls are authenticated; no default, so serving without auth is always a written AuthConfig(mode="off").
    # The factory's token source (AuthConfig.service_tokens) signs this service's own outgoing calls.
    auth: AuthConfig = field(kw_only=True)
    tls: TlsFiles | None = None  # serve both transports over TLS
    shadower: Shadower | None = None  # records the shadow comparisons of the adapters built here (canary)
    canary: CanaryStore | None = None  # where they are stored, for the status page

    def client(self, service: str):
        """The flagged adapter through which the service being built calls `service`."""
        from adapters.connect import connect

        if self.factory is None or self.flags is None:
            raise RuntimeError(f"{self.caller} calls {service}: BuildContext needs a client factory and flags")
        endpoint = self.endpoints.get(service) or config.endpoint(service)
        # A dependency served by this same process drains with it: watching its gRPC health would send the calls
        # still in flight here to REST the moment the process starts draining (resilience, issue 11).
        return connect(service, endpoint, factory=self.factory, flags=self.flags, caller=self.caller,
                       grpc_enabled=self.grpc_enabled, shadower=self.shadower,
                       health_check=service not in self.endpoints)


async def _market_analysis(ctx: BuildContext):
    from services.market_analysis.domain import MarketAnalysisDomain
    from services.market_analysis.quotes import QuoteSettings

    domain = MarketAnalysisDomain(ctx.data_dir, QuoteSettings(**config.quote_settings()))
    await domain.warm()
    return domain, None


async def _causal_analysis(ctx: BuildContext):
    from services.causal_analysis.domain import CausalAnalysisDomain

    return CausalAnalysisDomain(ctx.client("market_analysis")), None


async def _backtesting(ctx: BuildContext):
    from services.backtesting.domain import BacktestingDomain

    domain = BacktestingDomain(ctx.client("market_analysis"), data_dir=ctx.data_dir)
    return domain, domain.close


async def _analysis_coordinator(ctx: BuildContext):
    from adapters.core import last_call
    from services.analysis_coordinator.domain import AnalysisCoordinatorDomain
    from services.analysis_coordinator.store import AnalysisStore, database_url

    def served_by() -> tuple[str, str]:
        record = last_call.get()
        return (record.transport, record.fallback_reason) if record else ("", "")

    domain = AnalysisCoordinatorDomain(
        ctx.client("market_analysis"), ctx.client("causal_analysis"), ctx.client("backtesting"),
        AnalysisStore(database_url(None, ctx.data_dir)), served_by)
    return domain, domain.close


def _entries() -> dict[str, ServiceEntry]:
    from fxplat import status_page
    from services.analysis_coordinator import grpc as ac_grpc
    from services.analysis_coordinator import rest as ac_rest
    from services.backtesting import grpc as bt_grpc
    from services.backtesting import rest as bt_rest
    from services.causal_analysis import grpc as ca_grpc
    from services.causal_analysis import rest as ca_rest
    from services.market_analysis import grpc as ma_grpc
    from services.market_analysis import rest as ma_rest

    return {
        "market_analysis": ServiceEntry(
            "market_analysis", "fxplat Market Analysis",
            "Market data (OHLCV candles), technical indicators and market summaries for FX symbols.",
            ma_grpc.SERVICE, _market_analysis, ma_grpc.methods, ma_rest.router),
        "causal_analysis": ServiceEntry(
            "causal_analysis", "fxplat Causal Analysis",
            "Granger causality, correlation matrices, rolling correlations and lead-lag between FX symbols' returns.",
            ca_grpc.SERVICE, _causal_analysis, ca_grpc.methods, ca_rest.router),
        "backtesting": ServiceEntry(
            "backtesting", "fxplat Backtesting",
            "Runs trading strategies over FX history with spread and commission costs, and stores the results.",
            bt_grpc.SERVICE, _backtesting, bt_grpc.methods, bt_rest.router),
        "analysis_coordinator": ServiceEntry(
            "analysis_coordinator", "fxplat Analysis Coordinator",
            "Runs an analysis across market analysis, causal analysis and backtesting concurrently and stores the "
            "report, recording which transport served every component call.",
            ac_grpc.SERVICE, _analysis_coordinator, ac_grpc.methods, ac_rest.router,
            ops_router=lambda ctx: status_page.router(ctx.flags, ctx.canary, ctx.data_dir)),
    }


CATALOG = _entries()


def scopes() -> list[str]:
    """Every scope some RPC requires: what a token for all of the platform carries (service and dev CLI tokens)."""
    return sorted({m.scope for entry in CATALOG.values() for m in entry.grpc_methods(None)})


async def build_host(name: str, ctx: BuildContext, host: str, rest_port: int, grpc_port: int,
                     grpc_enabled: bool = True) -> ServiceHost:
    """Build a service's domain and both skins, bound but not yet started (call `await h.start()`)."""
    entry = CATALOG[name]
    verifier = ctx.auth.verifier()  # before building: a misconfigured auth fails with nothing left open
    impl, closer = await entry.build(replace(ctx, caller=name))
    methods = entry.grpc_methods(impl)
    app = create_app(name, entry.title, entry.description)
    ops.watch(app, domain=impl, flags=ctx.flags)  # what /readyz checks
    include_guarded(app, entry.rest_router(impl), verifier, scope_table(methods))
    logs.sample_reads(name, [m.name for m in methods if m.scope.endswith(":read")])  # writes are always logged
    if entry.ops_router is not None:
        app.include_router(entry.ops_router(ctx))
    handler = service_handler(entry.grpc_service, methods, verifier) if grpc_enabled else None
    svc = ServiceHost(name, host, app, handler, entry.grpc_service, impl,
                      rest_port, grpc_port, tls=ctx.tls)
    if closer:
        svc.closers.append(closer)
    return svc


def skins_host(name: str, rest_impl: Any, grpc_impl: Any = None, host: str = "127.0.0.1") -> ServiceHost:
    """A host serving given implementations of a service's interface (the gRPC skin over `grpc_impl`, default the
    REST one), without auth: for tests and benchmarks that wrap a domain, e.g. to slow or skew one transport."""
    entry = CATALOG[name]
    app = create_app(name, entry.title, entry.description)
    app.include_router(entry.rest_router(rest_impl))
    handler = service_handler(entry.grpc_service, entry.grpc_methods(rest_impl if grpc_impl is None else grpc_impl))
    return ServiceHost(name, host, app, handler, entry.grpc_service, rest_impl)
