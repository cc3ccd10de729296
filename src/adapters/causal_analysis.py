"""Causal Analysis through the flags: implements the CausalAnalysis interface over whichever transport each call gets."""
from __future__ import annotations

from adapters.core import FlaggedCaller, MethodPolicy
from services.causal_analysis.models import (
    CausalAnalysis,
    CorrelationRequest,
    CorrelationResult,
    GrangerRequest,
    GrangerResult,
    LeadLagRequest,
    LeadLagResult,
    RollingCorrelationRequest,
    RollingCorrelationResult,
)

POLICIES = {m: MethodPolicy(idempotent=True, read=True, kind="compute")
            for m in ("GrangerCausality", "CorrelationMatrix", "RollingCorrelation", "LeadLag")}


class CausalAnalysisAdapter:
    def __init__(self, caller: FlaggedCaller[CausalAnalysis]) -> None:
        self.caller = caller

    async def granger_causality(self, request: GrangerRequest) -> GrangerResult:
        return await self.caller.call("GrangerCausality", "granger_causality", request)

    async def correlation_matrix(self, request: CorrelationRequest) -> CorrelationResult:
        return await self.caller.call("CorrelationMatrix", "correlation_matrix", request)

    async def rolling_correlation(self, request: RollingCorrelationRequest) -> RollingCorrelationResult:
        return await self.caller.call("RollingCorrelation", "rolling_correlation", request)

    async def lead_lag(self, request: LeadLagRequest) -> LeadLagResult:
        return await self.caller.call("LeadLag", "lead_lag", request)
