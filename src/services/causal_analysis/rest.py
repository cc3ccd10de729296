"""Causal Analysis over REST: the FastAPI skin and the client, with the JSON shapes (snake_case, ISO-8601 UTC times,
NaN as null, matrices as lists of rows) declared once as pydantic models.

As in Market Analysis, responses are returned as ready JSON bytes; the pydantic models declare the shape in OpenAPI.
Request bodies carry types only: the domain validates values, so a bad value gets the same error as over gRPC. A zero
max_lag, alpha or window means the default, as it must in the gRPC contract (proto3 cannot send an explicit zero).
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

import httpx
import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.causal_analysis.models import (
    DEFAULT_ALPHA,
    DEFAULT_GRANGER_MAX_LAG,
    DEFAULT_LEAD_LAG_MAX_LAG,
    DEFAULT_WINDOW,
    MAX_LAG,
    MAX_PAIRS,
    MAX_SYMBOLS,
    MAX_WINDOW,
    MIN_SYMBOLS,
    MIN_WINDOW,
    CausalAnalysis,
    CorrelationRequest,
    CorrelationResult,
    GrangerRequest,
    GrangerResult,
    GrangerTest,
    LeadLagRequest,
    LeadLagResult,
    RollingCorrelationRequest,
    RollingCorrelationResult,
    SymbolPair,
)
from services.common.market_types import TimeRange, Timeframe
from transport import rest_client
from transport.limits import Timestamp
from transport.rest_app import (
    PROBLEM_RESPONSES, SYMBOL_SCHEMA, TIMEFRAME_SCHEMA, JSONBytes, bounded, from_nullable,
    iso_time, iso_times, nullable, parse_time, unix_times,
)

TIMEFRAME_DOC = "Bar length: " + ", ".join(t.value for t in Timeframe)
TIMEFRAME = Field("H1", description=TIMEFRAME_DOC, json_schema_extra=TIMEFRAME_SCHEMA)
Symbol = Annotated[str, Field(json_schema_extra=SYMBOL_SCHEMA)]
START_DOC = "inclusive, ISO-8601 (UTC if no offset); default: the first bar"
END_DOC = "exclusive, ISO-8601 (UTC if no offset); default: after the last bar"


# --- JSON shapes ----------------------------------------------------------------------------------------------------

class Pair(BaseModel):
    first: str = Field(description="e.g. EURUSD (case-insensitive; returned upper case)",
                       json_schema_extra=SYMBOL_SCHEMA)
    second: str = Field(description="e.g. GBPUSD; different from first", json_schema_extra=SYMBOL_SCHEMA)


class Span(BaseModel):
    start: datetime = Field(description="open time of the first aligned bar used, ISO-8601 UTC")
    end: datetime = Field(description="close time of the last aligned bar used (exclusive), ISO-8601 UTC")


class GrangerIn(BaseModel):
    pairs: list[Pair] = Field(description=f"1..{MAX_PAIRS} pairs, no pair twice in either order; each is tested in "
                                          "both directions", json_schema_extra={"minItems": 1, "maxItems": MAX_PAIRS})
    timeframe: str = TIMEFRAME
    start: Timestamp | None = Field(None, description=START_DOC)
    end: Timestamp | None = Field(None, description=END_DOC)
    max_lag: int = Field(DEFAULT_GRANGER_MAX_LAG, description=f"highest lag tested, 1..{MAX_LAG} bars; default "
                                                              f"{DEFAULT_GRANGER_MAX_LAG} (0 also means the default)",
                         json_schema_extra=bounded(0, MAX_LAG))
    alpha: float = Field(DEFAULT_ALPHA, description="false discovery rate of the verdicts, strictly between 0 and 1; "
                                                    f"default {DEFAULT_ALPHA} (0 also means the default)",
                         json_schema_extra={"minimum": 0, "exclusiveMaximum": 1})


class GrangerTestOut(BaseModel):
    cause: str = Field(description="symbol whose past returns are tested as predictor")
    effect: str = Field(description="symbol whose returns are predicted")
    f_statistics: list[float | None] = Field(description="F statistic at each lag 1..max_lag")
    p_values: list[float | None] = Field(description="raw F-test p-value at each lag 1..max_lag")
    adjusted_p_values: list[float | None] = Field(
        description="Benjamini-Hochberg adjusted p-value at each lag, over every F-test of the request")
    best_lag: int = Field(description="lag with the lowest raw p-value (the shortest on ties)")
    p_value: float | None = Field(description="raw p-value at best_lag")
    adjusted_p_value: float | None = Field(description="adjusted p-value at best_lag")
    significant: bool = Field(description="cause Granger-causes effect: adjusted_p_value <= alpha")
    observations: int = Field(description="aligned returns used (aligned bars - 1)")
    range: Span


class GrangerOut(BaseModel):
    timeframe: str
    alpha: float = Field(description="false discovery rate the verdicts were made at")
    tests: list[GrangerTestOut] = Field(description="two per pair in request order: first -> second, second -> first")


class CorrelationsIn(BaseModel):
    symbols: list[Symbol] = Field(description=f"{MIN_SYMBOLS}..{MAX_SYMBOLS} distinct symbols", json_schema_extra={
        "minItems": MIN_SYMBOLS, "maxItems": MAX_SYMBOLS, "uniqueItems": True})
    timeframe: str = TIMEFRAME
    start: Timestamp | None = Field(None, description=START_DOC)
    end: Timestamp | None = Field(None, description=END_DOC)


class CorrelationsOut(BaseModel):
    symbols: list[str] = Field(description="upper case, in request order; they index the matrices' rows and columns")
    timeframe: str
    pearson: list[list[float | None]] = Field(description="Pearson correlation matrix, one list per row")
    spearman: list[list[float | None]] = Field(description="Spearman rank correlation matrix, one list per row")
    observations: int = Field(description="aligned returns used (aligned bars - 1)")
    range: Span


class RollingCorrelationIn(BaseModel):
    pair: Pair
    timeframe: str = TIMEFRAME
    start: Timestamp | None = Field(None, description=START_DOC)
    end: Timestamp | None = Field(None, description=END_DOC)
    window: int = Field(DEFAULT_WINDOW, description=f"returns per correlation, {MIN_WINDOW}..{MAX_WINDOW}; default "
                                                    f"{DEFAULT_WINDOW} (0 also means the default)",
                        json_schema_extra={"anyOf": [{"enum": [0]}, bounded(MIN_WINDOW, MAX_WINDOW)]})


class RollingCorrelationOut(BaseModel):
    pair: Pair
    timeframe: str
    window: int
    time: list[datetime] = Field(description="open time of the bar each return ends at, ISO-8601 UTC")
    correlation: list[float | None] = Field(
        description="correlation of the window ending at time[i]; null during warm-up and where a symbol does not move")


class LeadLagIn(BaseModel):
    pair: Pair
    timeframe: str = TIMEFRAME
    start: Timestamp | None = Field(None, description=START_DOC)
    end: Timestamp | None = Field(None, description=END_DOC)
    max_lag: int = Field(DEFAULT_LEAD_LAG_MAX_LAG, description=f"lags -max_lag..+max_lag are examined, 1..{MAX_LAG}; "
                                                               f"default {DEFAULT_LEAD_LAG_MAX_LAG} (0 also means the "
                                                               "default)",
                         json_schema_extra=bounded(0, MAX_LAG))


class LeadLagOut(BaseModel):
    pair: Pair
    timeframe: str
    leader: str = Field(description="symbol whose moves come first")
    follower: str = Field(description="symbol whose moves follow")
    lag: int = Field(description="bars the leader leads by, >= 1")
    correlation: float | None = Field(description="cross-correlation at the lead")
    lags: list[int] = Field(description="every lag examined, ascending; at k > 0 first leads second")
    cross_correlation: list[float | None] = Field(
        description="correlation of first's return at bar t with second's at bar t + lags[i]")
    noise_bound: float = Field(description="1.96 / sqrt(observations): a peak within +-noise_bound looks like noise")
    observations: int = Field(description="aligned returns used (aligned bars - 1)")
    range: Span


def _float(v: float | None) -> float:
    return math.nan if v is None else v


def _pair(p: dict) -> SymbolPair:
    return SymbolPair(p["first"], p["second"])


def _pair_json(p: SymbolPair) -> dict:
    return {"first": p.first, "second": p.second}


def _span(r: TimeRange) -> dict:
    return {"start": iso_time(r.start), "end": iso_time(r.end)}


def _span_from(d: dict) -> TimeRange:
    return TimeRange(parse_time(d["start"]), parse_time(d["end"]))


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)  # null -> NaN


def _granger_test_json(t: GrangerTest) -> dict:
    return {"cause": t.cause, "effect": t.effect, "f_statistics": nullable(t.f_statistics),
            "p_values": nullable(t.p_values), "adjusted_p_values": nullable(t.adjusted_p_values),
            "best_lag": t.best_lag, "p_value": t.p_value, "adjusted_p_value": t.adjusted_p_value,
            "significant": t.significant, "observations": t.observations, "range": _span(t.range)}


def _granger_test_from_json(t: dict) -> GrangerTest:
    return GrangerTest(t["cause"], t["effect"], from_nullable(t["f_statistics"]), from_nullable(t["p_values"]),
                       from_nullable(t["adjusted_p_values"]), t["best_lag"], _float(t["p_value"]),
                       _float(t["adjusted_p_value"]), t["significant"], t["observations"], _span_from(t["range"]))


def granger_json(r: GrangerResult) -> dict:
    return {"timeframe": r.timeframe.value, "alpha": r.alpha, "tests": [_granger_test_json(t) for t in r.tests]}


def granger_from_json(b: dict) -> GrangerResult:
    return GrangerResult(Timeframe(b["timeframe"]), b["alpha"], tuple(_granger_test_from_json(t) for t in b["tests"]))


def correlation_json(r: CorrelationResult) -> dict:
    return {"symbols": list(r.symbols), "timeframe": r.timeframe.value,
            "pearson": [nullable(row) for row in r.pearson], "spearman": [nullable(row) for row in r.spearman],
            "observations": r.observations, "range": _span(r.range)}


def correlation_from_json(b: dict) -> CorrelationResult:
    return CorrelationResult(tuple(b["symbols"]), Timeframe(b["timeframe"]), _matrix(b["pearson"]),
                             _matrix(b["spearman"]), b["observations"], _span_from(b["range"]))


def rolling_json(r: RollingCorrelationResult) -> dict:
    return {"pair": _pair_json(r.pair), "timeframe": r.timeframe.value, "window": r.window, "time": iso_times(r.time),
            "correlation": nullable(r.correlation)}


def rolling_from_json(b: dict) -> RollingCorrelationResult:
    return RollingCorrelationResult(_pair(b["pair"]), Timeframe(b["timeframe"]), b["window"], unix_times(b["time"]),
                                    from_nullable(b["correlation"]))


def lead_lag_json(r: LeadLagResult) -> dict:
    return {"pair": _pair_json(r.pair), "timeframe": r.timeframe.value, "leader": r.leader, "follower": r.follower,
            "lag": r.lag, "correlation": r.correlation, "lags": r.lags.tolist(),
            "cross_correlation": nullable(r.cross_correlation), "noise_bound": r.noise_bound,
            "observations": r.observations, "range": _span(r.range)}


def lead_lag_from_json(b: dict) -> LeadLagResult:
    return LeadLagResult(_pair(b["pair"]), Timeframe(b["timeframe"]), b["leader"], b["follower"], b["lag"],
                         _float(b["correlation"]), np.array(b["lags"], dtype=np.int64),
                         from_nullable(b["cross_correlation"]), b["noise_bound"], b["observations"],
                         _span_from(b["range"]))


# --- server skin ----------------------------------------------------------------------------------------------------

def router(impl: CausalAnalysis) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["causal-analysis"], responses=PROBLEM_RESPONSES)

    @api.post("/granger", response_model=GrangerOut, name="GrangerCausality",
              summary="Granger causality of pairs, both directions, Benjamini-Hochberg corrected")
    async def granger_causality(body: GrangerIn):
        request = GrangerRequest(tuple(SymbolPair(p.first, p.second) for p in body.pairs),
                                 Timeframe.parse(body.timeframe), TimeRange(body.start, body.end),
                                 body.max_lag or DEFAULT_GRANGER_MAX_LAG, body.alpha or DEFAULT_ALPHA)
        return JSONBytes(granger_json(await impl.granger_causality(request)))

    @api.post("/correlations", response_model=CorrelationsOut, name="CorrelationMatrix",
              summary="Pearson and Spearman correlation matrices of several symbols")
    async def correlation_matrix(body: CorrelationsIn):
        request = CorrelationRequest(tuple(body.symbols), Timeframe.parse(body.timeframe),
                                     TimeRange(body.start, body.end))
        return JSONBytes(correlation_json(await impl.correlation_matrix(request)))

    @api.post("/rolling-correlation", response_model=RollingCorrelationOut, name="RollingCorrelation",
              summary="Correlation of a pair over a trailing window, bar by bar")
    async def rolling_correlation(body: RollingCorrelationIn):
        request = RollingCorrelationRequest(SymbolPair(body.pair.first, body.pair.second),
                                            Timeframe.parse(body.timeframe), TimeRange(body.start, body.end),
                                            body.window or DEFAULT_WINDOW)
        return JSONBytes(rolling_json(await impl.rolling_correlation(request)))

    @api.post("/lead-lag", response_model=LeadLagOut, name="LeadLag",
              summary="Which symbol of a pair leads, by how many bars")
    async def lead_lag(body: LeadLagIn):
        request = LeadLagRequest(SymbolPair(body.pair.first, body.pair.second), Timeframe.parse(body.timeframe),
                                 TimeRange(body.start, body.end), body.max_lag or DEFAULT_LEAD_LAG_MAX_LAG)
        return JSONBytes(lead_lag_json(await impl.lead_lag(request)))

    return api


# --- client ---------------------------------------------------------------------------------------------------------

def _common(request: GrangerRequest | CorrelationRequest | RollingCorrelationRequest | LeadLagRequest) -> dict:
    r = request.range
    return {"timeframe": request.timeframe.value, "start": iso_time(r.start), "end": iso_time(r.end)}


class CausalAnalysisRestClient:
    """CausalAnalysis over an httpx client (made by the client factory) whose base_url is the service's REST root."""

    transport = "rest"

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self._http = http
        self._headers = headers or {}

    async def _post(self, path: str, body: dict) -> dict:
        return await rest_client.call(self._http, "POST", path, body=body, headers=self._headers)

    async def granger_causality(self, request: GrangerRequest) -> GrangerResult:
        return granger_from_json(await self._post("/v1/granger", {
            "pairs": [_pair_json(p) for p in request.pairs], **_common(request), "max_lag": request.max_lag,
            "alpha": request.alpha}))

    async def correlation_matrix(self, request: CorrelationRequest) -> CorrelationResult:
        return correlation_from_json(await self._post("/v1/correlations", {
            "symbols": list(request.symbols), **_common(request)}))

    async def rolling_correlation(self, request: RollingCorrelationRequest) -> RollingCorrelationResult:
        return rolling_from_json(await self._post("/v1/rolling-correlation", {
            "pair": _pair_json(request.pair), **_common(request), "window": request.window}))

    async def lead_lag(self, request: LeadLagRequest) -> LeadLagResult:
        return lead_lag_from_json(await self._post("/v1/lead-lag", {
            "pair": _pair_json(request.pair), **_common(request), "max_lag": request.max_lag}))
