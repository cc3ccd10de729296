"""The Analysis Coordinator domain: validates a request, fans out concurrently to Market Analysis, Causal Analysis and
Backtesting through their Python interfaces, and stores one report.

The services arrive injected (in production: flagged adapters). What served each call comes from `served_by`, a
function the builder injects that reports (transport, fallback reason) of the latest call in the current task; the
domain itself knows nothing of transports. A failing component is recorded in the report, never fatal: the rest of
the analysis is still returned and stored.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from services.analysis_coordinator.models import (
    DEFAULT_STRATEGY, MAX_SYMBOLS, MIN_SYMBOLS, Analysis, AnalysisPage, AnalysisRequest, CallStatus, ComponentCall,
    ListAnalysesQuery,
)
from services.analysis_coordinator.store import AnalysisStore
from services.backtesting.models import MAX_IDEMPOTENCY_KEY_LENGTH, Backtesting, BacktestRequest
from services.backtesting.strategies import resolve_params
from services.causal_analysis.models import CausalAnalysis, CorrelationRequest, GrangerRequest, SymbolPair
from services.common.errors import DomainError, InvalidArgument, NotFound, quoted
from services.common.market_types import Timeframe
from services.market_analysis.models import MarketAnalysis, SummaryQuery

log = logging.getLogger("fxplat.coordinator")

ServedBy = Callable[[], tuple[str, str]]


def _in_process() -> tuple[str, str]:
    return "local", ""


class AnalysisCoordinatorDomain:
    """Implements `AnalysisCoordinator` over the three other services' interfaces."""

    def __init__(self, market: MarketAnalysis, causal: CausalAnalysis, backtesting: Backtesting,
                 store: AnalysisStore, served_by: ServedBy = _in_process) -> None:
        self._market = market
        self._causal = causal
        self._backtesting = backtesting
        self._store = store
        self._served_by = served_by

    async def ready(self) -> None:
        """Raises unless the store answers: the service cannot serve without it."""
        await self._store.ping()

    async def close(self) -> None:
        await self._store.close()

    async def run_analysis(self, request: AnalysisRequest) -> Analysis:
        request = _validate(request)
        fingerprint = _fingerprint(request)
        key = request.idempotency_key
        if key and (stored := await self._store.find_by_idempotency_key(key, fingerprint)) is not None:
            return stored
        await self._check_symbols(request.symbols)
        calls, results = zip(*await asyncio.gather(*(
            self._component(name, service, method, invoke) for name, service, method, invoke in self._plan(request))))
        by_name = dict(zip((c.component for c in calls), results))
        analysis = Analysis(
            id=uuid4().hex, created_at=datetime.now(timezone.utc), request=request,
            market=tuple(r for s in request.symbols if (r := by_name[f"market:{s}"]) is not None),
            granger=by_name.get("causal:granger"), correlations=by_name.get("causal:correlations"),
            backtests=tuple(r for s in request.symbols if (r := by_name[f"backtest:{s}"]) is not None),
            calls=tuple(calls),
        )
        return await self._store.insert(analysis, key, fingerprint)

    async def get_analysis(self, analysis_id: str) -> Analysis:
        return await self._store.get(analysis_id)

    async def list_analyses(self, query: ListAnalysesQuery) -> AnalysisPage:
        return await self._store.list(query)

    def _plan(self, r: AnalysisRequest) -> list[tuple[str, str, str, Callable[[], Awaitable[Any]]]]:
        """Every component call of the analysis: (component, service, method, call)."""
        plan: list[tuple[str, str, str, Callable[[], Awaitable[Any]]]] = [
            (f"market:{s}", "market_analysis", "AnalyzeMarket",
             lambda s=s: self._market.analyze_market(SummaryQuery(s, r.timeframe, r.range)))
            for s in r.symbols]
        if len(r.symbols) >= 2:
            pairs = tuple(SymbolPair(a, b) for a, b in itertools.combinations(r.symbols, 2))
            plan.append(("causal:granger", "causal_analysis", "GrangerCausality",
                         lambda: self._causal.granger_causality(GrangerRequest(pairs, r.timeframe, r.range))))
            plan.append(("causal:correlations", "causal_analysis", "CorrelationMatrix",
                         lambda: self._causal.correlation_matrix(CorrelationRequest(r.symbols, r.timeframe, r.range))))
        plan.extend(
            (f"backtest:{s}", "backtesting", "RunBacktest",
             lambda s=s: self._backtesting.run_backtest(BacktestRequest(
                 s, r.strategy, r.params, r.timeframe, r.range, idempotency_key=_backtest_key(r.idempotency_key, s))))
            for s in r.symbols)
        return plan

    async def _component(self, name: str, service: str, method: str, invoke: Callable[[], Awaitable[Any]]):
        """Run one component call in its own task (so `served_by` sees this call's record); never raises."""
        start = time.perf_counter()
        result, code, message = None, "", ""
        try:
            result = await invoke()
        except DomainError as exc:
            code, message = exc.code, exc.message
        except Exception as exc:  # a bug in a component must not lose the rest of the report
            log.exception("component %s failed unexpectedly", name)
            code, message = "INTERNAL", f"{type(exc).__name__}: {exc}"
        transport, fallback = self._served_by()
        call = ComponentCall(name, service, method, CallStatus.FAILED if code else CallStatus.OK, transport, fallback,
                             (time.perf_counter() - start) * 1000, code, message)
        return call, result

    async def _check_symbols(self, symbols: tuple[str, ...]) -> None:
        known = {s.symbol for s in await self._market.list_symbols()}
        for i, symbol in enumerate(symbols):
            if symbol not in known:
                raise NotFound(f"unknown symbol {quoted(symbol)}", field=f"symbols[{i}]")


def _validate(r: AnalysisRequest) -> AnalysisRequest:
    """The request with symbols upper-cased, the strategy defaulted and its parameters resolved (defaults filled),
    or InvalidArgument naming the first bad field."""
    symbols = tuple(s.strip().upper() for s in r.symbols)
    if not MIN_SYMBOLS <= len(symbols) <= MAX_SYMBOLS:
        raise InvalidArgument(f"give {MIN_SYMBOLS}..{MAX_SYMBOLS} symbols, got {len(symbols)}", field="symbols")
    for i, symbol in enumerate(symbols):
        if not symbol:
            raise InvalidArgument("symbol is empty", field=f"symbols[{i}]")
        if symbol in symbols[:i]:
            raise InvalidArgument(f"{symbol} is given twice", field=f"symbols[{i}]")
    strategy = r.strategy or DEFAULT_STRATEGY
    params = resolve_params(strategy, r.params)
    if len(r.idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidArgument(f"idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                              field="idempotency_key")
    return AnalysisRequest(symbols, Timeframe.parse(r.timeframe), r.range, strategy, params, r.idempotency_key)


def _fingerprint(r: AnalysisRequest) -> str:
    """sha256 of the normalised request without its idempotency key: detects a key reused for another request."""
    canonical = {"symbols": list(r.symbols), "timeframe": r.timeframe.value, "strategy": r.strategy,
                 "params": r.params, "range": [r.range.start and r.range.start.isoformat(),
                                               r.range.end and r.range.end.isoformat()]}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _backtest_key(analysis_key: str, symbol: str) -> str:
    """A retried analysis (same key) re-sends each backtest with the same key, so Backtesting stores it once."""
    if not analysis_key:
        return ""
    return "analysis-" + hashlib.sha256(f"{analysis_key}\0{symbol}".encode()).hexdigest()
