"""Analysis Coordinator over REST: the FastAPI skin and the client. A report nests the other services' results in
their own REST shapes (reused from their skins), so a consumer reads a market summary or a backtest the same way
whether it came from the coordinator or from the service itself."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, Field

from services.analysis_coordinator.models import (
    DEFAULT_PAGE_SIZE, DEFAULT_STRATEGY, MAX_PAGE_SIZE, MAX_SYMBOLS, MIN_SYMBOLS, Analysis, AnalysisCoordinator,
    AnalysisPage, AnalysisRequest, AnalysisSummary, CallStatus, ComponentCall, ListAnalysesQuery,
)
from services.backtesting import rest as backtesting_json
from services.backtesting.models import MAX_IDEMPOTENCY_KEY_LENGTH, STRATEGY_DEFAULTS
from services.causal_analysis import rest as causal_json
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis import rest as market_json
from transport import rest_client
from transport.limits import Timestamp
from transport.rest_app import (
    PROBLEM_RESPONSES, SYMBOL_SCHEMA, TIMEFRAME_SCHEMA, JSONBytes, bounded, iso_time, parse_time,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"


# --- JSON shapes ----------------------------------------------------------------------------------------------------

class AnalysisIn(BaseModel):
    symbols: list[Annotated[str, Field(json_schema_extra=SYMBOL_SCHEMA)]] = Field(
        description=f"1..{MAX_SYMBOLS} distinct symbols, e.g. [\"EURUSD\", \"GBPUSD\"]; causality needs two or more "
                    "(every pair is tested)",
        json_schema_extra={"minItems": MIN_SYMBOLS, "maxItems": MAX_SYMBOLS, "uniqueItems": True})
    timeframe: str = Field("H1", description=market_json.TIMEFRAME_DOC, json_schema_extra=TIMEFRAME_SCHEMA)
    start: Timestamp | None = Field(None, description="inclusive, ISO-8601; default: each component's default")
    end: Timestamp | None = Field(None, description="exclusive, ISO-8601; default: each component's default")
    strategy: str = Field(DEFAULT_STRATEGY, description="sma_cross, rsi_reversion or bollinger_breakout",
                          json_schema_extra={"enum": list(STRATEGY_DEFAULTS)})
    params: dict[str, float] = Field(default_factory=dict, description="strategy parameters; defaults fill the rest")


class AnalysisRequestOut(AnalysisIn):
    idempotency_key: str = ""


class ComponentCallOut(BaseModel):
    component: str = Field(description="e.g. market:EURUSD, causal:granger, causal:correlations, backtest:GBPUSD")
    service: str
    method: str
    status: CallStatus
    transport: str = Field(description="grpc or rest (after any fallback); local for an in-process call")
    fallback_reason: str = Field(description="why the call left gRPC for REST; empty if it did not")
    latency_ms: float
    error_code: str = Field(description="google.rpc.Code name of the failure; empty on success")
    error_message: str


class AnalysisOut(BaseModel):
    id: str
    created_at: datetime
    request: AnalysisRequestOut
    market: list[market_json.SummaryOut] = Field(description="market summary per symbol that succeeded")
    granger: causal_json.GrangerOut | None = Field(description="null if that component failed or one symbol was given")
    correlations: causal_json.CorrelationsOut | None = Field(
        description="null if that component failed or one symbol was given")
    backtests: list[backtesting_json.BacktestOut] = Field(description="backtest per symbol that succeeded")
    calls: list[ComponentCallOut]


class AnalysisEnvelope(BaseModel):
    analysis: AnalysisOut


class AnalysisSummaryOut(BaseModel):
    id: str
    created_at: datetime
    symbols: list[str]
    timeframe: str
    strategy: str
    failed_calls: int


class AnalysesOut(BaseModel):
    analyses: list[AnalysisSummaryOut]
    next_page_token: str = Field("", description="pass as page_token for the next page; empty on the last page")


def request_json(r: AnalysisRequest) -> dict:
    return {"symbols": list(r.symbols), "timeframe": r.timeframe.value, "start": iso_time(r.range.start),
            "end": iso_time(r.range.end), "strategy": r.strategy, "params": r.params, "idempotency_key": r.idempotency_key}


def request_from_json(b: dict) -> AnalysisRequest:
    return AnalysisRequest(tuple(b["symbols"]), Timeframe(b["timeframe"]), _range(b["start"], b["end"]),
                           b["strategy"], b["params"], b["idempotency_key"])


def _range(start: str | None, end: str | None) -> TimeRange:
    return TimeRange(parse_time(start), parse_time(end))


def call_json(c: ComponentCall) -> dict:
    return {"component": c.component, "service": c.service, "method": c.method, "status": c.status.value,
            "transport": c.transport, "fallback_reason": c.fallback_reason, "latency_ms": c.latency_ms,
            "error_code": c.error_code, "error_message": c.error_message}


def analysis_json(a: Analysis) -> dict:
    return {
        "id": a.id, "created_at": iso_time(a.created_at), "request": request_json(a.request),
        "market": [market_json.summary_json(s) for s in a.market],
        "granger": a.granger and causal_json.granger_json(a.granger),
        "correlations": a.correlations and causal_json.correlation_json(a.correlations),
        "backtests": [backtesting_json.backtest_json(b) for b in a.backtests],
        "calls": [call_json(c) for c in a.calls],
    }


def analysis_from_json(b: dict) -> Analysis:
    return Analysis(
        id=b["id"], created_at=parse_time(b["created_at"]), request=request_from_json(b["request"]),
        market=tuple(market_json.summary_from_json(s) for s in b["market"]),
        granger=b["granger"] and causal_json.granger_from_json(b["granger"]),
        correlations=b["correlations"] and causal_json.correlation_from_json(b["correlations"]),
        backtests=tuple(backtesting_json.backtest_from_json(x) for x in b["backtests"]),
        calls=tuple(ComponentCall(**{**c, "status": CallStatus(c["status"])}) for c in b["calls"]))


def summary_json(s: AnalysisSummary) -> dict:
    return {"id": s.id, "created_at": iso_time(s.created_at), "symbols": list(s.symbols), "timeframe": s.timeframe.value,
            "strategy": s.strategy, "failed_calls": s.failed_calls}


def summary_from_json(b: dict) -> AnalysisSummary:
    return AnalysisSummary(b["id"], parse_time(b["created_at"]), tuple(b["symbols"]), Timeframe(b["timeframe"]),
                           b["strategy"], b["failed_calls"])


# --- server skin ----------------------------------------------------------------------------------------------------

def router(impl: AnalysisCoordinator) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["analysis-coordinator"], responses=PROBLEM_RESPONSES)

    @api.post("/analyses", response_model=AnalysisEnvelope, name="RunAnalysis",
              summary="Run an analysis across market analysis, causal analysis and backtesting")
    async def run_analysis(body: AnalysisIn, idempotency_key: Annotated[str, Header(
            alias=IDEMPOTENCY_HEADER, json_schema_extra={"maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
            description="makes the call safe to retry: a key already used returns the "
                                                  "stored analysis without running again")] = ""):
        request = AnalysisRequest(tuple(body.symbols), Timeframe.parse(body.timeframe), TimeRange(body.start, body.end),
                                  body.strategy, dict(body.params), idempotency_key)
        return JSONBytes({"analysis": analysis_json(await impl.run_analysis(request))})

    @api.get("/analyses/{id:path}", response_model=AnalysisEnvelope, name="GetAnalysis", summary="Get a stored analysis")
    async def get_analysis(id: Annotated[str, Path(description="analysis id")]):
        return JSONBytes({"analysis": analysis_json(await impl.get_analysis(id))})

    @api.get("/analyses", response_model=AnalysesOut, name="ListAnalyses", summary="List stored analyses, newest first")
    async def list_analyses(
            symbol: Annotated[str, Query(description="only analyses including this symbol",
                                         json_schema_extra={"maxLength": 32})] = "",
            page_size: Annotated[int, Query(description="1..100; 0 means the default",
                                            json_schema_extra=bounded(0, MAX_PAGE_SIZE))] = DEFAULT_PAGE_SIZE,
            page_token: Annotated[str, Query(description="from a previous page")] = ""):
        page = await impl.list_analyses(ListAnalysesQuery(symbol, page_size, page_token))
        return JSONBytes({"analyses": [summary_json(s) for s in page.analyses],
                          "next_page_token": page.next_page_token})

    return api


# --- client ---------------------------------------------------------------------------------------------------------

class AnalysisCoordinatorRestClient:
    """AnalysisCoordinator over an httpx client (made by the client factory) whose base_url is the service's root."""

    transport = "rest"

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self._http = http
        self._headers = headers or {}

    async def run_analysis(self, request: AnalysisRequest) -> Analysis:
        body = request_json(request)
        del body["idempotency_key"]
        headers = {**self._headers, **({IDEMPOTENCY_HEADER: request.idempotency_key} if request.idempotency_key else {})}
        resp = await rest_client.call(self._http, "POST", "/v1/analyses", body=body, headers=headers)
        return analysis_from_json(resp["analysis"])

    async def get_analysis(self, analysis_id: str) -> Analysis:
        # Quoted whole: the route's {id:path} takes any id, '' and '/' included, to the service's own NOT_FOUND.
        resp = await rest_client.call(self._http, "GET", f"/v1/analyses/{quote(analysis_id, safe='')}",
                                      headers=self._headers)
        return analysis_from_json(resp["analysis"])

    async def list_analyses(self, query: ListAnalysesQuery) -> AnalysisPage:
        resp = await rest_client.call(self._http, "GET", "/v1/analyses", headers=self._headers, params={
            "symbol": query.symbol, "page_size": query.page_size, "page_token": query.page_token})
        return AnalysisPage(tuple(summary_from_json(s) for s in resp["analyses"]), resp["next_page_token"])
