"""Analysis Coordinator through the flags: implements the AnalysisCoordinator interface over whichever transport each
call gets."""
from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from adapters.core import FlaggedCaller, MethodPolicy
from services.analysis_coordinator.models import (
    Analysis, AnalysisCoordinator, AnalysisPage, AnalysisRequest, ListAnalysesQuery,
)

POLICIES = {
    # A write, made safe to retry and to replay over REST by the idempotency key run_analysis always sends.
    "RunAnalysis": MethodPolicy(idempotent=True, read=False, kind="compute"),
    "GetAnalysis": MethodPolicy(idempotent=True, read=True),
    "ListAnalyses": MethodPolicy(idempotent=True, read=True),
}


class AnalysisCoordinatorAdapter:
    def __init__(self, caller: FlaggedCaller[AnalysisCoordinator]) -> None:
        self.caller = caller

    async def run_analysis(self, request: AnalysisRequest) -> Analysis:
        # One key for every attempt of this call (gRPC, its REST fallback, REST retries): if an attempt ran but its
        # answer was lost, the next one returns the stored analysis instead of running it again.
        if not request.idempotency_key:
            request = replace(request, idempotency_key=uuid4().hex)
        return await self.caller.call("RunAnalysis", "run_analysis", request)

    async def get_analysis(self, analysis_id: str) -> Analysis:
        return await self.caller.call("GetAnalysis", "get_analysis", analysis_id)

    async def list_analyses(self, query: ListAnalysesQuery) -> AnalysisPage:
        return await self.caller.call("ListAnalyses", "list_analyses", query)
