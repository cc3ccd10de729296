"""Build a service's flagged adapter from its endpoint: the one way callers (services, CLI, tests) get a client."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from adapters import resilience
from adapters.breaker import AsyncBreaker, BreakerConfig
from adapters.core import FlaggedCaller, MethodPolicy, transport_failure
from adapters.shadow import Shadower
from transport.config import Endpoint
from transport.client_factory import ClientFactory


@dataclass(frozen=True)
class ClientKit:
    grpc_client: Callable[..., Any]
    rest_client: Callable[..., Any]
    adapter: Callable[[FlaggedCaller], Any]
    policies: dict[str, MethodPolicy]
    full_name: str  # the gRPC service, e.g. forex.market_analysis.v1.MarketAnalysisService (its health is checked)


def _kits() -> dict[str, ClientKit]:
    from adapters import analysis_coordinator as ac
    from adapters import backtesting as bt
    from adapters import causal_analysis as ca
    from adapters import market_analysis as ma
    from services.analysis_coordinator import grpc as ac_grpc
    from services.analysis_coordinator.grpc import AnalysisCoordinatorGrpcClient
    from services.analysis_coordinator.rest import AnalysisCoordinatorRestClient
    from services.backtesting import grpc as bt_grpc
    from services.backtesting.grpc import BacktestingGrpcClient
    from services.backtesting.rest import BacktestingRestClient
    from services.causal_analysis import grpc as ca_grpc
    from services.causal_analysis.grpc import CausalAnalysisGrpcClient
    from services.causal_analysis.rest import CausalAnalysisRestClient
    from services.market_analysis import grpc as ma_grpc
    from services.market_analysis.grpc import MarketAnalysisGrpcClient
    from services.market_analysis.rest import MarketAnalysisRestClient

    return {"market_analysis": ClientKit(MarketAnalysisGrpcClient, MarketAnalysisRestClient, ma.MarketAnalysisAdapter,
                                         ma.POLICIES, ma_grpc.SERVICE),
            "causal_analysis": ClientKit(CausalAnalysisGrpcClient, CausalAnalysisRestClient, ca.CausalAnalysisAdapter,
                                         ca.POLICIES, ca_grpc.SERVICE),
            "backtesting": ClientKit(BacktestingGrpcClient, BacktestingRestClient, bt.BacktestingAdapter,
                                     bt.POLICIES, bt_grpc.SERVICE),
            "analysis_coordinator": ClientKit(AnalysisCoordinatorGrpcClient, AnalysisCoordinatorRestClient,
                                              ac.AnalysisCoordinatorAdapter, ac.POLICIES, ac_grpc.SERVICE)}


KITS = _kits()


def _single_address(target: str) -> bool:
    """An IP literal and port: one address (a balancer, a ClusterIP, one server), so there is nothing for the channel
    to choose between, and a health Watch through an L7 balancer would only take a turn of its round robin and check
    whichever replica it landed on. Names and address lists keep client-side health checking."""
    host = target.rpartition(":")[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect(service: str, endpoint: Endpoint, *, factory: ClientFactory, flags: Any, caller: str = "",
            grpc_enabled: bool = True, force: str | None = None, breaker: BreakerConfig | None = None,
            budget_s: float | None = None, shadower: Shadower | None = None, health_check: bool = True):
    """The service's flagged adapter. `grpc_enabled=False` builds a REST-only adapter (no gRPC client at all);
    `shadower` records the comparisons of the read calls the flags choose to shadow; `breaker` replaces the service's
    breaker settings (adapters.resilience); `health_check` makes the channel skip replicas whose gRPC health says
    NOT_SERVING (draining)."""
    kit = KITS[service]
    settings = resilience.for_service(service)
    health = kit.full_name if health_check and not _single_address(endpoint.grpc_target) else None
    grpc_impl = kit.grpc_client(factory.channel(endpoint.grpc_target, health_service=health)) \
        if grpc_enabled else None
    rest_impl = kit.rest_client(factory.http(endpoint.rest_url))
    guard = AsyncBreaker(service, endpoint.grpc_target, is_failure=transport_failure,
                         config=breaker or settings.breaker, caller=caller)
    caller_obj = FlaggedCaller(service, grpc_impl, rest_impl, flags, kit.policies, caller=caller, breaker=guard,
                               force=force, shadower=shadower, endpoint=endpoint, kinds=dict(settings.kinds))
    if budget_s is not None:
        caller_obj.budget_s = budget_s
    return kit.adapter(caller_obj)
