"""Backtesting over REST: the FastAPI skin and the client, with the JSON shapes (conventional JSON: snake_case,
ISO-8601 UTC times, a missing metric as null, the equity curve as a list of {time, equity} points) declared once as
pydantic models. The idempotency key travels as the `Idempotency-Key` header, as REST APIs conventionally carry it.

As in Market Analysis, responses are built as dicts and returned as ready JSON bytes; the pydantic models declare the
shape in OpenAPI. `backtest_json`, `backtest_from_json` and `BacktestOut` are reused by the coordinator's REST skin.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

import httpx
import numpy as np
from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field

from services.backtesting.models import (
    DEFAULT_INITIAL_EQUITY,
    DEFAULT_PAGE_SIZE,
    MAX_COMMISSION_PCT,
    MAX_COMMISSION_PER_UNIT,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_INITIAL_EQUITY,
    MAX_PAGE_SIZE,
    MAX_SPREAD_PIPS,
    STRATEGY_DEFAULTS,
    Backtest,
    Backtesting,
    BacktestMetrics,
    BacktestPage,
    BacktestRequest,
    BacktestSummary,
    EquityCurve,
    ListBacktestsQuery,
    Side,
    Trade,
)
from services.common.market_types import TimeRange, Timeframe
from transport import rest_client
from transport.limits import Timestamp
from transport.rest_app import (
    PROBLEM_RESPONSES, SYMBOL_SCHEMA, TIMEFRAME_SCHEMA, JSONBytes, bounded, iso_time, iso_times, parse_time,
    unix_times,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMEFRAME_DOC = "Bar length: " + ", ".join(t.value for t in Timeframe)


# --- JSON shapes ----------------------------------------------------------------------------------------------------

class RunBacktestIn(BaseModel):
    symbol: str = Field(description="e.g. EURUSD", json_schema_extra=SYMBOL_SCHEMA)
    strategy: str = Field(description="sma_cross, rsi_reversion or bollinger_breakout",
                          json_schema_extra={"enum": list(STRATEGY_DEFAULTS)})
    params: dict[str, float] = Field(default_factory=dict,
                                     description="strategy parameters, e.g. {\"fast\": 10, \"slow\": 20}; "
                                                 "defaults fill the rest")
    timeframe: str = Field("H1", description=TIMEFRAME_DOC, json_schema_extra=TIMEFRAME_SCHEMA)
    start: Timestamp | None = Field(None, description="inclusive, ISO-8601; default: first bar")
    end: Timestamp | None = Field(None, description="exclusive, ISO-8601; default: after the last bar")
    initial_equity: float = Field(DEFAULT_INITIAL_EQUITY, description="starting equity; 0 means the default",
                                  json_schema_extra=bounded(0, MAX_INITIAL_EQUITY))
    spread_pips: float = Field(0.0, description="full bid-ask spread in pips; buys fill half above, sells half below",
                               json_schema_extra=bounded(0, MAX_SPREAD_PIPS))
    commission_per_unit: float = Field(0.0, description="paid per unit on every fill",
                                       json_schema_extra=bounded(0, MAX_COMMISSION_PER_UNIT))
    commission_pct: float = Field(0.0, description="per cent of each fill's notional",
                                  json_schema_extra=bounded(0, MAX_COMMISSION_PCT))


class RangeOut(BaseModel):
    start: datetime = Field(description="first bar's open")
    end: datetime = Field(description="last bar's close")


class MetricsOut(BaseModel):
    """Fractions (0.05 = 5 %); null where the metric would divide by zero or overflow."""

    total_return: float
    annualized_return: float | None
    sharpe_ratio: float | None
    sortino_ratio: float | None
    max_drawdown: float
    win_rate: float | None
    profit_factor: float | None
    trade_count: int
    average_trade_pnl: float | None
    average_trade_return: float | None
    exposure: float
    final_equity: float


class BacktestSummaryOut(BaseModel):
    id: str
    created_at: datetime
    symbol: str
    strategy: str
    params: dict[str, float] = Field(description="defaults filled in")
    timeframe: str
    range: RangeOut = Field(description="span of the bars actually tested")
    initial_equity: float
    spread_pips: float
    commission_per_unit: float
    commission_pct: float
    bars: int
    metrics: MetricsOut


class TradeOut(BaseModel):
    side: Side
    entry_time: datetime
    entry_price: float = Field(description="spread included")
    exit_time: datetime
    exit_price: float = Field(description="spread included")
    units: float
    pnl: float = Field(description="net of both commissions")
    trade_return: float = Field(description="pnl / equity before entry")


class EquityPoint(BaseModel):
    time: datetime = Field(description="bar open time")
    equity: float = Field(description="equity at the bar's close")


class BacktestOut(BaseModel):
    summary: BacktestSummaryOut
    trades: list[TradeOut]
    equity_curve: list[EquityPoint]


class BacktestResponse(BaseModel):
    backtest: BacktestOut


class BacktestsOut(BaseModel):
    backtests: list[BacktestSummaryOut] = Field(description="newest first")
    next_page_token: str = Field("", description="pass as page_token to get the next page; empty on the last page")


def summary_json(s: BacktestSummary) -> dict:
    return {"id": s.id, "created_at": iso_time(s.created_at), "symbol": s.symbol, "strategy": s.strategy,
            "params": s.params, "timeframe": s.timeframe.value,
            "range": {"start": iso_time(s.range.start), "end": iso_time(s.range.end)}, "initial_equity": s.initial_equity,
            "spread_pips": s.spread_pips, "commission_per_unit": s.commission_per_unit,
            "commission_pct": s.commission_pct, "bars": s.bars, "metrics": dataclasses.asdict(s.metrics)}


def summary_from_json(d: dict) -> BacktestSummary:
    return BacktestSummary(
        d["id"], parse_time(d["created_at"]), d["symbol"], d["strategy"], d["params"], Timeframe(d["timeframe"]),
        TimeRange(parse_time(d["range"]["start"]), parse_time(d["range"]["end"])), d["initial_equity"], d["spread_pips"],
        d["commission_per_unit"], d["commission_pct"], d["bars"], BacktestMetrics(**d["metrics"]))


def backtest_json(b: Backtest) -> dict:
    curve = b.equity_curve
    return {
        "summary": summary_json(b.summary),
        "trades": [{"side": t.side.value, "entry_time": iso_time(t.entry_time), "entry_price": t.entry_price,
                    "exit_time": iso_time(t.exit_time), "exit_price": t.exit_price, "units": t.units, "pnl": t.pnl,
                    "trade_return": t.trade_return} for t in b.trades],
        "equity_curve": [{"time": t, "equity": e} for t, e in zip(iso_times(curve.time), curve.equity.tolist())],
    }


def backtest_from_json(d: dict) -> Backtest:
    trades = tuple(Trade(Side(t["side"]), parse_time(t["entry_time"]), t["entry_price"], parse_time(t["exit_time"]),
                         t["exit_price"], t["units"], t["pnl"], t["trade_return"]) for t in d["trades"])
    points = d["equity_curve"]
    curve = EquityCurve(unix_times([p["time"] for p in points]),
                        np.array([p["equity"] for p in points], dtype=np.float64))
    return Backtest(summary_from_json(d["summary"]), trades, curve)


# --- server skin ----------------------------------------------------------------------------------------------------

IdPath = Annotated[str, Path(alias="id", description="backtest id")]
IdempotencyKeyHeader = Annotated[str, Header(
    alias=IDEMPOTENCY_HEADER, json_schema_extra={"maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
    description="up to 255 characters; a key already stored returns that backtest instead of "
                                          "running again (same key, other request: 400 IDEMPOTENCY_KEY_REUSED)")]
AfterQ = Annotated[Timestamp | None, Query(description="created at or after, ISO-8601 (UTC if no offset)")]
BeforeQ = Annotated[Timestamp | None, Query(description="created before, ISO-8601 (UTC if no offset)")]


def router(impl: Backtesting) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["backtesting"], responses=PROBLEM_RESPONSES)

    @api.post("/backtests", response_model=BacktestResponse, name="RunBacktest", summary="Run and store a backtest")
    async def run_backtest(body: RunBacktestIn, idempotency_key: IdempotencyKeyHeader = ""):
        # 0 means the default, as on gRPC (where an unset double is 0), so both transports run the same request.
        request = BacktestRequest(body.symbol, body.strategy, dict(body.params), Timeframe.parse(body.timeframe),
                                  TimeRange(body.start, body.end), body.initial_equity,
                                  body.spread_pips, body.commission_per_unit, body.commission_pct, idempotency_key)
        return JSONBytes({"backtest": backtest_json(await impl.run_backtest(request))})

    @api.get("/backtests/{id:path}", response_model=BacktestResponse, name="GetBacktest", summary="Get a stored backtest")
    async def get_backtest(backtest_id: IdPath):
        return JSONBytes({"backtest": backtest_json(await impl.get_backtest(backtest_id))})

    @api.get("/backtests", response_model=BacktestsOut, name="ListBacktests",
             summary="List stored backtests (summaries, newest first)")
    async def list_backtests(symbol: str = "", strategy: str = "", created_after: AfterQ = None,
                             created_before: BeforeQ = None,
                             page_size: Annotated[int, Query(description="1..100; 0 means the default",
                                                             json_schema_extra=bounded(0, MAX_PAGE_SIZE))
                                                  ] = DEFAULT_PAGE_SIZE,
                             page_token: Annotated[str, Query(description="from a previous page")] = ""):
        page = await impl.list_backtests(
            ListBacktestsQuery(symbol, strategy, created_after, created_before, page_size, page_token))
        return JSONBytes({"backtests": [summary_json(s) for s in page.backtests],
                          "next_page_token": page.next_page_token})

    @api.delete("/backtests/{id:path}", status_code=204, response_class=Response, name="DeleteBacktest",
                summary="Delete a stored backtest")
    async def delete_backtest(backtest_id: IdPath):
        await impl.delete_backtest(backtest_id)
        return Response(status_code=204)

    return api


# --- client ---------------------------------------------------------------------------------------------------------

class BacktestingRestClient:
    """Backtesting over an httpx client (made by the client factory) whose base_url is the service's REST root."""

    transport = "rest"

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self._http = http
        self._headers = headers or {}

    async def _call(self, method: str, path: str, headers: dict[str, str] | None = None, **kw):
        return await rest_client.call(self._http, method, path, headers={**self._headers, **(headers or {})}, **kw)

    async def run_backtest(self, request: BacktestRequest) -> Backtest:
        r = request.range
        body = {"symbol": request.symbol, "strategy": request.strategy, "params": request.params,
                "timeframe": request.timeframe.value, "start": iso_time(r.start), "end": iso_time(r.end),
                "initial_equity": request.initial_equity, "spread_pips": request.spread_pips,
                "commission_per_unit": request.commission_per_unit, "commission_pct": request.commission_pct}
        key = {IDEMPOTENCY_HEADER: request.idempotency_key} if request.idempotency_key else None
        return backtest_from_json((await self._call("POST", "/v1/backtests", key, body=body))["backtest"])

    async def get_backtest(self, backtest_id: str) -> Backtest:
        return backtest_from_json((await self._call("GET", _path(backtest_id)))["backtest"])

    async def list_backtests(self, query: ListBacktestsQuery) -> BacktestPage:
        body = await self._call("GET", "/v1/backtests", params={
            "symbol": query.symbol, "strategy": query.strategy,
            "created_after": iso_time(query.created_after),
            "created_before": iso_time(query.created_before),
            "page_size": query.page_size, "page_token": query.page_token})
        return BacktestPage(tuple(summary_from_json(s) for s in body["backtests"]), body["next_page_token"])

    async def delete_backtest(self, backtest_id: str) -> None:
        await self._call("DELETE", _path(backtest_id))


def _path(backtest_id: str) -> str:
    # Quoted whole: the route's {id:path} takes any id, '' and '/' included, to the service's own NOT_FOUND.
    return f"/v1/backtests/{quote(backtest_id, safe='')}"
