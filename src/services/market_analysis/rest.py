"""Market Analysis over REST: the FastAPI skin and the client, with the JSON shapes (the contract existing REST consumers
use: conventional JSON, a candle is an object, ISO-8601 UTC times, NaN as null) declared once as pydantic models.

Responses are built from numpy columns and returned as ready JSON bytes: FastAPI then skips validating them against
the response models (for 100k candles that validation alone took ~0.8 s). The pydantic models still declare the shape
in OpenAPI, and the parity and snapshot tests keep the two in step.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated

import httpx
import numpy as np
import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from services.common.market_types import CandleSeries, TimeRange, Timeframe
from services.market_analysis.models import (
    DEFAULT_CANDLES_PER_PAGE,
    INDICATOR_NAMES,
    MAX_CANDLES_PER_PAGE,
    MAX_INDICATORS,
    CandlePage,
    CandlesQuery,
    IndicatorOutput,
    IndicatorRequest,
    IndicatorResult,
    IndicatorSpec,
    MarketAnalysis,
    MarketSummary,
    Regime,
    SummaryQuery,
    SymbolInfo,
    TrendDirection,
)
from services.common.errors import InvalidArgument, quoted
from services.market_analysis.models import ClosedCandle, Quote
from transport import rest_client, sse
from transport.limits import Timestamp
from transport.rest_app import (
    PROBLEM_RESPONSES, SYMBOL_SCHEMA, TIMEFRAME_SCHEMA, JSONBytes, bounded, from_nullable, one_of,
    iso_time, iso_times, nullable, parse_time, unix_times,
)

TIMEFRAME_DOC = "Bar length: " + ", ".join(t.value for t in Timeframe)


# --- JSON shapes ----------------------------------------------------------------------------------------------------

class SymbolOut(BaseModel):
    symbol: str
    description: str
    base: str
    quote: str
    pip_size: float
    digits: int
    source: str = Field(description="synthetic or imported")
    first_time: datetime
    last_time: datetime


class SymbolsOut(BaseModel):
    symbols: list[SymbolOut]


class Candle(BaseModel):
    time: datetime = Field(description="bar open time, ISO-8601 UTC")
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandlesOut(BaseModel):
    symbol: str
    timeframe: str
    candles: list[Candle]
    next_page_token: str = Field("", description="pass as page_token to get the next page; empty on the last page")


class IndicatorIn(BaseModel):
    name: str = Field(description="sma, ema, rsi, macd, bollinger or atr", json_schema_extra=one_of(INDICATOR_NAMES))
    params: dict[str, float] = Field(default_factory=dict, description="e.g. {\"period\": 20}; defaults fill the rest")


class IndicatorsIn(BaseModel):
    symbol: str = Field(json_schema_extra=SYMBOL_SCHEMA)
    timeframe: str = Field("H1", description=TIMEFRAME_DOC, json_schema_extra=TIMEFRAME_SCHEMA)
    start: Timestamp | None = Field(None, description="inclusive, ISO-8601; default: first bar")
    end: Timestamp | None = Field(None, description="exclusive, ISO-8601; default: after the last bar")
    indicators: list[IndicatorIn] = Field(json_schema_extra={"minItems": 1, "maxItems": MAX_INDICATORS})


class IndicatorOut(BaseModel):
    name: str
    params: dict[str, float]
    lines: dict[str, list[float | None]] = Field(description="line name -> one value per bar, null during warm-up")


class IndicatorsOut(BaseModel):
    symbol: str
    timeframe: str
    time: list[datetime]
    outputs: list[IndicatorOut]


class SummaryOut(BaseModel):
    symbol: str
    timeframe: str
    as_of: datetime
    bars: int
    last_price: float
    change_pct: float
    trend: TrendDirection
    trend_strength: float
    atr: float
    realized_volatility: float
    regime: Regime
    support: list[float]
    resistance: list[float]


def symbol_json(s: SymbolInfo) -> dict:
    return {"symbol": s.symbol, "description": s.description, "base": s.base, "quote": s.quote, "pip_size": s.pip_size,
            "digits": s.digits, "source": s.source, "first_time": iso_time(s.first_time), "last_time": iso_time(s.last_time)}


def candles_json(page: CandlePage) -> dict:
    s = page.series
    keys = CandleSeries.COLUMNS
    rows = zip(iso_times(s.time), s.open.tolist(), s.high.tolist(), s.low.tolist(), s.close.tolist(), s.volume.tolist())
    return {"symbol": s.symbol, "timeframe": s.timeframe.value, "candles": [dict(zip(keys, r)) for r in rows],
            "next_page_token": page.next_page_token}


def indicators_json(r: IndicatorResult) -> dict:
    return {"symbol": r.symbol, "timeframe": r.timeframe.value, "time": iso_times(r.time),
            "outputs": [{"name": o.name, "params": o.params, "lines": {k: nullable(v) for k, v in o.lines.items()}}
                        for o in r.outputs]}


def summary_json(s: MarketSummary) -> dict:
    return {"symbol": s.symbol, "timeframe": s.timeframe.value, "as_of": iso_time(s.as_of), "bars": s.bars,
            "last_price": s.last_price, "change_pct": s.change_pct, "trend": s.trend.value,
            "trend_strength": s.trend_strength, "atr": s.atr, "realized_volatility": s.realized_volatility,
            "regime": s.regime.value, "support": list(s.support), "resistance": list(s.resistance)}


def summary_from_json(b: dict) -> MarketSummary:
    return MarketSummary(b["symbol"], Timeframe(b["timeframe"]), parse_time(b["as_of"]), b["bars"], b["last_price"],
                         b["change_pct"], TrendDirection(b["trend"]), b["trend_strength"], b["atr"],
                         b["realized_volatility"], Regime(b["regime"]), tuple(b["support"]), tuple(b["resistance"]))


class QuoteOut(BaseModel):
    """One quote: an SSE `quote` event's data, or one NDJSON line."""

    symbol: str
    sequence: int = Field(description="per-symbol sequence; the same number always denotes the same quote")
    time: datetime = Field(description="market time, ISO-8601 UTC with milliseconds")
    bid: float
    ask: float
    mid: float


class ClosedCandleOut(BaseModel):
    """One closed bar: an SSE `candle` event's data, or one NDJSON line."""

    symbol: str
    timeframe: str
    sequence: int = Field(description="sequence of the quote that closed the bar")
    time: datetime = Field(description="bar open time, ISO-8601 UTC")
    open: float
    high: float
    low: float
    close: float
    volume: float


def _iso_ms(unix: float) -> str:
    return str(np.datetime64(round(unix * 1000), "ms")) + "Z"


def quote_json(q: Quote) -> dict:
    return {"symbol": q.symbol, "sequence": q.sequence, "time": _iso_ms(q.time), "bid": q.bid, "ask": q.ask,
            "mid": q.mid}


@lru_cache(maxsize=1 << 16)
def quote_json_bytes(q: Quote) -> bytes:
    """A quote's JSON, encoded once per quote for every subscriber (they share the feed's Quote objects)."""
    return orjson.dumps(quote_json(q))


def quote_from_json(b: dict) -> Quote:
    t = np.datetime64(b["time"].rstrip("Z"), "ms").astype(np.int64) / 1000
    return Quote(b["symbol"], int(b["sequence"]), float(t), b["bid"], b["ask"], b["mid"])


def candle_json(c: ClosedCandle) -> dict:
    return {"symbol": c.symbol, "timeframe": c.timeframe.value, "sequence": c.sequence, "time": iso_times([c.time])[0],
            "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume}


def candle_from_json(b: dict) -> ClosedCandle:
    return ClosedCandle(b["symbol"], Timeframe(b["timeframe"]), int(b["sequence"]), int(unix_times([b["time"]])[0]),
                        b["open"], b["high"], b["low"], b["close"], b["volume"])


def resume_token(positions: dict[str, int]) -> str:
    """The SSE event id of a quote stream: every symbol's last sequence, 'EURUSD:812,GBPUSD:811'."""
    return ",".join(f"{s}:{n}" for s, n in positions.items())


def parse_resume_token(text: str, field: str) -> dict[str, int]:
    positions: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        symbol, sep, seq = part.partition(":")
        if not sep or not seq.isdigit() or not symbol:
            raise InvalidArgument(f"malformed resume position {quoted(part)}: expected SYMBOL:SEQUENCE[,SYMBOL:SEQUENCE...] "
                                  "as in a previous event's id", field=field)
        positions[symbol.strip().upper()] = int(seq)
    return positions


def _stream_doc(model: type[BaseModel], kind: str) -> dict:
    return {200: {"description": f"text/event-stream: one `{kind}` event per item (`id` = resume token, `data` = the "
                                 f"JSON object), `: heartbeat` comments while idle, a last `error` event with a "
                                 f"problem+json body; or, with `Accept: {sse.NDJSON}`, one JSON object per line",
                  "content": {sse.EVENT_STREAM: {"schema": {"type": "string"}},
                              sse.NDJSON: {"schema": model.model_json_schema()}}}}


# --- server skin ----------------------------------------------------------------------------------------------------

SymbolPath = Annotated[str, Path(description="e.g. EURUSD", json_schema_extra=SYMBOL_SCHEMA)]
TimeframeQ = Annotated[str, Query(description=TIMEFRAME_DOC, json_schema_extra=TIMEFRAME_SCHEMA)]
StartQ = Annotated[Timestamp | None, Query(description="inclusive, ISO-8601 (UTC if no offset)")]
EndQ = Annotated[Timestamp | None, Query(description="exclusive, ISO-8601 (UTC if no offset)")]
LimitQ = Annotated[int, Query(description="bars per page, 1..200000",
                              json_schema_extra=bounded(1, MAX_CANDLES_PER_PAGE))]
PageTokenQ = Annotated[str, Query(description="from a previous page")]


def router(impl: MarketAnalysis) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["market-analysis"], responses=PROBLEM_RESPONSES)

    @api.get("/symbols", response_model=SymbolsOut, name="ListSymbols", summary="List symbols")
    async def list_symbols():
        return JSONBytes({"symbols": [symbol_json(s) for s in await impl.list_symbols()]})

    @api.get("/candles/{symbol}", response_model=CandlesOut, name="GetCandles", summary="Get candles (paged, up to 200,000 per page)")
    async def get_candles(symbol: SymbolPath, timeframe: TimeframeQ = "H1", start: StartQ = None, end: EndQ = None,
                          limit: LimitQ = DEFAULT_CANDLES_PER_PAGE, page_token: PageTokenQ = ""):
        query = CandlesQuery(symbol, Timeframe.parse(timeframe), TimeRange(start, end), limit, page_token)
        return JSONBytes(candles_json(await impl.get_candles(query)))

    @api.post("/indicators", response_model=IndicatorsOut, name="ComputeIndicators", summary="Compute indicators")
    async def compute_indicators(body: IndicatorsIn):
        request = IndicatorRequest(body.symbol, Timeframe.parse(body.timeframe), TimeRange(body.start, body.end),
                                   tuple(IndicatorSpec(i.name, dict(i.params)) for i in body.indicators))
        return JSONBytes(indicators_json(await impl.compute_indicators(request)))

    @api.get("/market-summary/{symbol}", response_model=SummaryOut, name="AnalyzeMarket", summary="Analyze the market of a symbol")
    async def analyze_market(symbol: SymbolPath, timeframe: TimeframeQ = "H1", start: StartQ = None, end: EndQ = None):
        query = SummaryQuery(symbol, Timeframe.parse(timeframe), TimeRange(start, end))
        return JSONBytes(summary_json(await impl.analyze_market(query)))

    streams = "market-analysis streams"

    @api.get("/quotes/stream", name="StreamQuotes", summary="Stream live quotes (SSE or NDJSON)",
             response_class=StreamingResponse, responses=_stream_doc(QuoteOut, "quote"), tags=[streams])
    async def stream_quotes(
            request: Request,
            symbols: Annotated[str, Query(description="comma-separated, e.g. EURUSD,GBPUSD (1..20)")],
            after: Annotated[str, Query(description="resume after these positions: SYMBOL:SEQUENCE,... (an event "
                                                    "id); Last-Event-ID takes precedence")] = "",
            last_event_id: Annotated[str | None, Header(description="resume token: the id of the last event "
                                                                    "received")] = None):
        field = "Last-Event-ID" if last_event_id else "after"
        positions = parse_resume_token(last_event_id or after, field)
        names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        state = {s: positions[s] for s in names if s in positions}

        def encode(q: Quote) -> tuple[str, dict]:
            state[q.symbol] = q.sequence
            return resume_token(state), quote_json_bytes(q)

        return await sse.respond(request, service="market_analysis", method="StreamQuotes", kind="quote",
                                 open_=lambda: impl.quotes.quotes(names, positions), encoder=encode)

    @api.get("/candles/{symbol}/stream", name="WatchCandles", summary="Stream bars as they close (SSE or NDJSON)",
             response_class=StreamingResponse, responses=_stream_doc(ClosedCandleOut, "candle"), tags=[streams])
    async def watch_candles(
            request: Request, symbol: SymbolPath, timeframe: Annotated[str, Query(description=TIMEFRAME_DOC)] = "M1",
            after: Annotated[int, Query(ge=0, description="resume after this sequence; Last-Event-ID takes "
                                                          "precedence")] = 0,
            last_event_id: Annotated[str | None, Header(description="the id of the last event received")] = None):
        if last_event_id:
            if not last_event_id.strip().isdigit():
                raise InvalidArgument("Last-Event-ID must be the id of a candle event (a sequence number)",
                                      field="Last-Event-ID")
            after = int(last_event_id)
        tf = Timeframe.parse(timeframe)
        return await sse.respond(request, service="market_analysis", method="WatchCandles", kind="candle",
                                 open_=lambda: impl.quotes.candles(symbol, tf, after),
                                 encoder=lambda c: (str(c.sequence), candle_json(c)))

    return api


# --- client ---------------------------------------------------------------------------------------------------------

def _range_params(r: TimeRange) -> dict:
    return {"start": iso_time(r.start), "end": iso_time(r.end)}


class MarketAnalysisRestClient:
    """MarketAnalysis over an httpx client (made by the client factory) whose base_url is the service's REST root."""

    transport = "rest"

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self._http = http
        self._headers = headers or {}

    async def _call(self, method: str, path: str, **kw):
        return await rest_client.call(self._http, method, path, headers=self._headers, **kw)

    async def list_symbols(self) -> list[SymbolInfo]:
        body = await self._call("GET", "/v1/symbols")
        return [SymbolInfo(s["symbol"], s["description"], s["base"], s["quote"], s["pip_size"], s["digits"],
                           s["source"], parse_time(s["first_time"]), parse_time(s["last_time"])) for s in body["symbols"]]

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        body = await self._call("GET", f"/v1/candles/{query.symbol}", params={
            "timeframe": query.timeframe.value, "limit": query.limit, "page_token": query.page_token,
            **_range_params(query.range)})
        rows = body["candles"]
        cols = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in ("open", "high", "low", "close", "volume")}
        series = CandleSeries(body["symbol"], Timeframe(body["timeframe"]), unix_times([r["time"] for r in rows]), **cols)
        return CandlePage(series, body["next_page_token"])

    async def compute_indicators(self, request: IndicatorRequest) -> IndicatorResult:
        body = await self._call("POST", "/v1/indicators", body={
            "symbol": request.symbol, "timeframe": request.timeframe.value, **_range_params(request.range),
            "indicators": [{"name": s.name, "params": s.params} for s in request.indicators]})
        return IndicatorResult(
            body["symbol"], Timeframe(body["timeframe"]), unix_times(body["time"]),
            tuple(IndicatorOutput(o["name"], o["params"], {k: from_nullable(v) for k, v in o["lines"].items()})
                  for o in body["outputs"]))

    async def analyze_market(self, query: SummaryQuery) -> MarketSummary:
        return summary_from_json(await self._call("GET", f"/v1/market-summary/{query.symbol}", params={
            "timeframe": query.timeframe.value, **_range_params(query.range)}))

    # --- streams (read through adapters.streaming, which resumes them across transports) ---

    def stream_quotes(self, symbols: list[str], after: dict[str, int] | None = None) -> sse.SseItemStream:
        return sse.SseItemStream(self._http, "/v1/quotes/stream", params={"symbols": ",".join(symbols)},
                                 last_event_id=resume_token(after) if after else None,
                                 decode=lambda _, obj: quote_from_json(obj))

    def watch_candles(self, symbol: str, timeframe: Timeframe, after: int = 0) -> sse.SseItemStream:
        return sse.SseItemStream(self._http, f"/v1/candles/{symbol}/stream",
                                 params={"timeframe": Timeframe.parse(timeframe).value},
                                 last_event_id=str(after) if after else None,
                                 decode=lambda _, obj: candle_from_json(obj))
