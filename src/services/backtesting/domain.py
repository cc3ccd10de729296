"""The Backtesting domain: validates a request, fetches candles through the MarketAnalysis interface, runs the engine
and stores the result. No transport here: the market is whatever MarketAnalysis implementation the caller injects.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import numpy as np

from services.backtesting import engine, strategies
from services.backtesting.models import (
    COST_BOUNDS, DEFAULT_INITIAL_EQUITY, MAX_BACKTEST_BARS, MAX_IDEMPOTENCY_KEY_LENGTH, MAX_INITIAL_EQUITY, Backtest,
    BacktestPage, BacktestRequest, BacktestSummary, ListBacktestsQuery,
)
from services.backtesting.store import BacktestStore, database_url
from services.common.errors import InvalidArgument, NotFound, quoted
from services.common.market_types import CandleSeries, TimeRange, from_unix
from services.market_analysis.models import MAX_CANDLES_PER_PAGE, CandlesQuery, MarketAnalysis

THREAD_MIN_BARS = 20_000  # series at least this long run in a worker thread, off the event loop


class BacktestingDomain:
    """Implements `Backtesting`. Storage: `db_url`, else $DATABASE_URL, else `<data_dir>/backtests.sqlite`."""

    def __init__(self, market: MarketAnalysis, db_url: str | None = None, data_dir: Path | None = None) -> None:
        self._market = market
        self._store = BacktestStore(database_url(db_url, data_dir))

    async def ready(self) -> None:
        """Raises unless the store answers: the service cannot serve without it."""
        await self._store.ping()

    async def close(self) -> None:
        await self._store.close()

    async def run_backtest(self, request: BacktestRequest) -> Backtest:
        if request.initial_equity == 0:  # 0 means the default, as on the wire (proto3 cannot send an explicit 0)
            request = dataclasses.replace(request, initial_equity=DEFAULT_INITIAL_EQUITY)
        params = _validate(request)
        fingerprint = _fingerprint(request, params)
        key = request.idempotency_key
        if key and (stored := await self._store.find_by_idempotency_key(key, fingerprint)) is not None:
            return stored
        series = await self._candles(request)
        needed = strategies.min_bars(request.strategy, params)
        if len(series) < needed:
            raise InvalidArgument(
                f"the range holds {len(series)} bars; {request.strategy} with these parameters needs at least {needed}",
                field="range")
        pip_size = await self._pip_size(request.symbol) if request.spread_pips else 0.0
        costs = engine.Costs(request.spread_pips * pip_size / 2, request.commission_per_unit,
                             request.commission_pct / 100)
        args = (series, request.strategy, params, costs, request.initial_equity)
        outcome = await asyncio.to_thread(engine.run, *args) if len(series) >= THREAD_MIN_BARS else engine.run(*args)
        summary = BacktestSummary(
            id=uuid4().hex, created_at=datetime.now(timezone.utc), symbol=request.symbol, strategy=request.strategy,
            params=params, timeframe=request.timeframe,
            range=TimeRange(from_unix(series.time[0]), from_unix(series.time[-1] + request.timeframe.seconds)),
            initial_equity=request.initial_equity, spread_pips=request.spread_pips,
            commission_per_unit=request.commission_per_unit, commission_pct=request.commission_pct,
            bars=len(series), metrics=outcome.metrics,
        )
        return await self._store.insert(Backtest(summary, outcome.trades, outcome.equity_curve), key, fingerprint)

    async def get_backtest(self, backtest_id: str) -> Backtest:
        return await self._store.get(backtest_id)

    async def list_backtests(self, query: ListBacktestsQuery) -> BacktestPage:
        return await self._store.list(query)

    async def delete_backtest(self, backtest_id: str) -> None:
        await self._store.delete(backtest_id)

    async def _candles(self, request: BacktestRequest) -> CandleSeries:
        """Every bar of the request's range, following the market's pages."""
        pages: list[CandleSeries] = []
        token = ""
        while True:
            page = await self._market.get_candles(CandlesQuery(
                request.symbol, request.timeframe, request.range, MAX_CANDLES_PER_PAGE, token))
            pages.append(page.series)
            if sum(map(len, pages)) > MAX_BACKTEST_BARS:
                raise InvalidArgument(f"the range holds more than {MAX_BACKTEST_BARS} bars", field="range")
            token = page.next_page_token
            if not token:
                break
        return CandleSeries(request.symbol, request.timeframe,
                            *(np.concatenate([getattr(p, c) for p in pages]) for c in CandleSeries.COLUMNS))

    async def _pip_size(self, symbol: str) -> float:
        for info in await self._market.list_symbols():
            if info.symbol == symbol:
                return info.pip_size
        raise NotFound(f"unknown symbol {quoted(symbol)}", field="symbol")


def _validate(request: BacktestRequest) -> dict[str, float]:
    """InvalidArgument for the first bad field; returns the strategy's params with defaults filled in."""
    if not request.symbol:
        raise InvalidArgument("symbol is required", field="symbol")
    params = strategies.resolve_params(request.strategy, request.params)
    if not (math.isfinite(request.initial_equity) and 0 < request.initial_equity <= MAX_INITIAL_EQUITY):
        raise InvalidArgument(f"initial_equity must be positive, at most {MAX_INITIAL_EQUITY:g}, got "
                              f"{request.initial_equity:g}", field="initial_equity")
    for name, high in COST_BOUNDS.items():
        value = getattr(request, name)
        if not (math.isfinite(value) and 0 <= value <= high):
            raise InvalidArgument(f"{name} must be between 0 and {high:g}, got {value:g}", field=name)
    if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidArgument(f"idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                              field="idempotency_key")
    return params


def _fingerprint(request: BacktestRequest, params: dict[str, float]) -> str:
    """sha256 of the request as it will run (defaults filled in, idempotency key left out)."""
    r = request.range
    canonical = {
        "symbol": request.symbol, "strategy": request.strategy, "params": params, "timeframe": request.timeframe.value,
        "range": [r.start and r.start.isoformat(), r.end and r.end.isoformat()],
        **{name: float(getattr(request, name))
           for name in ("initial_equity", "spread_pips", "commission_per_unit", "commission_pct")},
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
