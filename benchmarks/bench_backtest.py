"""Backtest domain time on 100,000 H1 bars, per strategy: the engine alone, then a full `run_backtest` (candles from an
in-memory market, SQLite storage in a temporary directory). Target: under a second.

    .venv/bin/python benchmarks/bench_backtest.py
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from services.backtesting import engine, strategies
from services.backtesting.domain import BacktestingDomain
from services.backtesting.models import STRATEGY_DEFAULTS, BacktestRequest, ListBacktestsQuery
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis.models import CandlePage, CandlesQuery

BARS = 100_000
REPEATS = 5


def random_walk(n: int) -> CandleSeries:
    rng = np.random.default_rng(1)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate(([1.1], close[:-1]))
    time_ = np.arange(n, dtype=np.int64) * 3600 + 1_735_689_600
    return CandleSeries("EURUSD", Timeframe.H1, time_, open_, np.maximum(open_, close), np.minimum(open_, close),
                        close, np.ones(n))


class InMemoryMarket:
    """Just enough MarketAnalysis for run_backtest: one page with every bar."""

    def __init__(self, series: CandleSeries) -> None:
        self.series = series

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        return CandlePage(self.series)


def best_of(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def main() -> None:
    series = random_walk(BARS)
    costs = engine.Costs(half_spread=0.00005, commission_rate=0.00002)
    with tempfile.TemporaryDirectory() as tmp:
        domain = BacktestingDomain(InMemoryMarket(series), data_dir=Path(tmp))  # type: ignore[arg-type]
        await domain.list_backtests(ListBacktestsQuery())  # create the table outside the timing
        print(f"{BARS:,} bars, best of {REPEATS}")
        for name in STRATEGY_DEFAULTS:
            params = strategies.resolve_params(name, {})
            engine_s = best_of(lambda: engine.run(series, name, params, costs, 10_000.0))
            full = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                bt = await domain.run_backtest(BacktestRequest("EURUSD", name, initial_equity=10_000.0))
                full.append(time.perf_counter() - start)
            print(f"  {name:<20} engine {engine_s * 1e3:6.1f} ms   run_backtest incl. storage "
                  f"{min(full) * 1e3:6.1f} ms   ({bt.summary.metrics.trade_count:,} trades)")
        await domain.close()


if __name__ == "__main__":
    asyncio.run(main())
