"""Build a service's flagged adapter from its endpoint: the one way callers (services, CLI, tests) get a client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from adapters.breaker import AsyncBreaker
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


def _kits() -> dict[str, ClientKit]:
    from adapters import analysis_coordinator as ac
    from adapters import backtesting as bt
    from adapters import causal_analysis as ca
    from adapters import market_analysis as ma
    from services.analysis_coordinator.grpc import AnalysisCoordinatorGrpcClient
    from services.analysis_coordinator.rest import AnalysisCoordinatorRestClient
    from services.backtesting.grpc import BacktestingGrpcClient
    from services.backtesting.rest import BacktestingRestClient
    from services.causal_analysis.grpc import CausalAnalysisGrpcClient
    from services.causal_analysis.rest import CausalAnalysisRestClient
    from services.market_analysis.grpc import MarketAnalysisGrpcClient
    from services.market_analysis.rest import MarketAnalysisRestClient

    return {"market_analysis": ClientKit(MarketAnalysisGrpcClient, MarketAnalysisRestClient, ma.MarketAnalysisAdapter,
                                         ma.POLICIES),
            "causal_analysis": ClientKit(CausalAnalysisGrpcClient, CausalAnalysisRestClient, ca.CausalAnalysisAdapter,
                                         ca.POLICIES),
            "backtesting": ClientKit(BacktestingGrpcClient, BacktestingRestClient, bt.BacktestingAdapter,
                                     bt.POLICIES),
            "analysis_coordinator": ClientKit(AnalysisCoordinatorGrpcClient, AnalysisCoordinatorRestClient,
                                              ac.AnalysisCoordinatorAdapter, ac.POLICIES)}


KITS = _kits()


def connect(service: str, endpoint: Endpoint, *, factory: ClientFactory, flags: Any, caller: str = "",
            grpc_enabled: bool = True, force: str | None = None, breaker_reset_s: float = 5.0,
            breaker_fail_max: int = 5, budget_s: float | None = None, shadower: Shadower | None = None):
    """The service's flagged adapter. `grpc_enabled=False` builds a REST-only adapter (no gRPC client at all);
    `shadower` records the comparisons of the read calls the flags choose to shadow."""
    kit = KITS[service]
    grpc_impl = kit.grpc_client(factory.channel(endpoint.grpc_target)) if grpc_enabled else None
    rest_impl = kit.rest_client(factory.http(endpoint.rest_url))
    breaker = AsyncBreaker(service, endpoint.grpc_target, is_failure=transport_failure, fail_max=breaker_fail_max,
                           reset_timeout=breaker_reset_s, caller=caller)
    caller_obj = FlaggedCaller(service, grpc_impl, rest_impl, flags, kit.policies, caller=caller, breaker=breaker,
                               force=force, shadower=shadower, endpoint=endpoint)
    if budget_s is not None:
        caller_obj.budget_s = budget_s
    return kit.adapter(caller_obj)
