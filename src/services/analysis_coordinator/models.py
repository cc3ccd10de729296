"""Analysis Coordinator: domain types and the service's Python interface.

One analysis fans out to the three other services through their Python interfaces (in production, their flagged
adapters) and aggregates one stored report. Field names match `forex.analysis_coordinator.v1` one to one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

from services.backtesting.models import Backtest
from services.causal_analysis.models import CorrelationResult, GrangerResult
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.models import MarketSummary

MIN_SYMBOLS, MAX_SYMBOLS = 1, 6  # 6 symbols are 15 pairs: Granger tests every pair (Causal Analysis takes up to 20)
DEFAULT_STRATEGY = "sma_cross"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


@dataclass(frozen=True)
class AnalysisRequest:
    """Symbols (distinct, upper case after validation), one timeframe and range for every component, the backtest
    strategy and its parameters (omitted ones take the strategy's defaults). A non-empty `idempotency_key` makes the
    run safe to retry: the report stored under the key is returned instead of running again."""

    symbols: tuple[str, ...]
    timeframe: Timeframe = Timeframe.H1
    range: TimeRange = field(default_factory=TimeRange)
    strategy: str = DEFAULT_STRATEGY
    params: dict[str, float] = field(default_factory=dict)
    idempotency_key: str = ""


class CallStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class ComponentCall:
    """One call the coordinator made: which component, whether it succeeded, which transport served it ("grpc",
    "rest", or "local" for an in-process implementation), why it fell back from gRPC if it did, and its wall time
    (fallback and retries included)."""

    component: str  # "market:EURUSD", "causal:granger", "causal:correlations", "backtest:EURUSD"
    service: str
    method: str
    status: CallStatus
    transport: str
    fallback_reason: str
    latency_ms: float
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class Analysis:
    """A stored report. Each component's result is present if its call succeeded (Granger and correlations also need
    two symbols or more); `calls` says what happened to every component."""

    id: str
    created_at: datetime
    request: AnalysisRequest
    market: tuple[MarketSummary, ...]
    granger: GrangerResult | None
    correlations: CorrelationResult | None
    backtests: tuple[Backtest, ...]
    calls: tuple[ComponentCall, ...]

    @property
    def failed_calls(self) -> int:
        return sum(c.status is CallStatus.FAILED for c in self.calls)


@dataclass(frozen=True)
class AnalysisSummary:
    id: str
    created_at: datetime
    symbols: tuple[str, ...]
    timeframe: Timeframe
    strategy: str
    failed_calls: int


@dataclass(frozen=True)
class ListAnalysesQuery:
    """Newest first; `symbol` keeps analyses that include it; `page_size` 1..100, 0 means the default (20)."""

    symbol: str = ""
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""


@dataclass(frozen=True)
class AnalysisPage:
    analyses: tuple[AnalysisSummary, ...]
    next_page_token: str = ""


@runtime_checkable
class AnalysisCoordinator(Protocol):
    async def run_analysis(self, request: AnalysisRequest) -> Analysis: ...

    async def get_analysis(self, analysis_id: str) -> Analysis: ...

    async def list_analyses(self, query: ListAnalysesQuery) -> AnalysisPage: ...
