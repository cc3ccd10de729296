"""BacktestingDomain with real SQLite storage (tmp_path) over an in-test fake MarketAnalysis: validation, idempotency
(including two racing coroutines), get / list / delete and keyset pagination."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from services.backtesting.domain import BacktestingDomain
from services.backtesting.models import Backtesting, BacktestRequest, ListBacktestsQuery, Side
from services.backtesting.store import BacktestStore
from services.common.storage import IDEMPOTENCY_KEY_REUSED, async_url
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.market_types import CandleSeries, TimeRange, Timeframe
from services.market_analysis.models import CandlePage, CandlesQuery, MarketAnalysis, SymbolInfo

T0 = datetime(2025, 3, 3, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
# The sma_cross(2, 3) series of test_backtest_engine: long 10 -> 11, short 11 -> 10, final equity 1200 from 1000.
OPEN = [10, 10, 10, 9, 8, 9, 10, 12, 11, 11, 8, 9]
CLOSE = [10, 10, 9, 8, 9, 11, 12, 11, 9, 8, 9, 10]


class FakeMarket:
    """Serves one symbol's H1 bars in pages of `page_bars`, whatever limit is asked; `gate` holds get_candles until
    that many calls wait on it (to force a race)."""

    def __init__(self, page_bars: int = 5, gate: asyncio.Barrier | None = None) -> None:
        self.page_bars, self.gate, self.candle_calls = page_bars, gate, 0
        n = len(CLOSE)
        o, c = np.array(OPEN, dtype=float), np.array(CLOSE, dtype=float)
        self.series = CandleSeries("TESTUSD", Timeframe.H1, np.arange(n, dtype=np.int64) * 3600 + int(T0.timestamp()),
                                   o, np.maximum(o, c), np.minimum(o, c), c, np.ones(n))

    async def list_symbols(self) -> list[SymbolInfo]:
        return [SymbolInfo("TESTUSD", "Test", "TEST", "USD", 0.01, 2, "synthetic", T0, T0 + 11 * HOUR)]

    async def get_candles(self, query: CandlesQuery) -> CandlePage:
        self.candle_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if query.symbol != "TESTUSD":
            raise NotFound(f"unknown symbol {query.symbol!r}", field="symbol")
        times = self.series.time
        lo = np.searchsorted(times, query.range.start.timestamp()) if query.range.start else 0
        hi = np.searchsorted(times, query.range.end.timestamp()) if query.range.end else len(times)
        start = int(query.page_token or lo)
        stop = min(start + self.page_bars, hi)
        return CandlePage(self.series.slice(start, stop), str(stop) if stop < hi else "")

    async def compute_indicators(self, request):
        raise NotImplementedError

    async def analyze_market(self, query):
        raise NotImplementedError


def request(**changes) -> BacktestRequest:
    return dataclasses.replace(
        BacktestRequest("TESTUSD", "sma_cross", {"fast": 2, "slow": 3}, initial_equity=1000.0), **changes)


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
async def domain(tmp_path):
    d = BacktestingDomain(FakeMarket(), data_dir=tmp_path)
    yield d
    await d.close()


async def test_runs_through_the_market_pages_and_stores_the_result(domain, tmp_path):
    assert isinstance(FakeMarket(), MarketAnalysis) and isinstance(domain, Backtesting)
    bt = await domain.run_backtest(request())
    assert domain._market.candle_calls == 3  # 12 bars in pages of 5
    s = bt.summary
    assert (s.symbol, s.strategy, s.params, s.bars) == ("TESTUSD", "sma_cross", {"fast": 2, "slow": 3}, 12)
    assert s.range == TimeRange(T0, T0 + 12 * HOUR)
    assert s.metrics.final_equity == pytest.approx(1200)
    assert [t.side for t in bt.trades] == [Side.LONG, Side.SHORT]
    assert (tmp_path / "backtests.sqlite").exists()
    assert await domain.get_backtest(s.id) == bt  # trades, equity curve and metrics survive the round trip


async def test_spread_in_pips_uses_the_symbols_pip_size(domain):
    # 100 pips of 0.01 = 1.0 spread: buys 0.5 above, sells 0.5 below; the spread eats both trades' profit.
    bt = await domain.run_backtest(request(spread_pips=100))
    assert [(t.entry_price, t.exit_price) for t in bt.trades] == [(10.5, 10.5), (10.5, 10.5)]
    assert bt.summary.metrics.final_equity == pytest.approx(1000)


@pytest.mark.parametrize(("changes", "field"), [
    ({"strategy": "martingale"}, "strategy"),
    ({"params": {"fast": 3, "slow": 2}}, "params.fast"),
    ({"params": {"fast": 2, "slow": 3, "signal": 9}}, "params.signal"),
    ({"strategy": "bollinger_breakout", "params": {"period": 1}}, "params.period"),
    ({"spread_pips": -1}, "spread_pips"),
    ({"commission_per_unit": -0.1}, "commission_per_unit"),
    ({"commission_pct": float("inf")}, "commission_pct"),
    ({"initial_equity": -1}, "initial_equity"),  # 0 means the default
    ({"symbol": ""}, "symbol"),
    ({"params": {"fast": 5, "slow": 11}}, "range"),  # needs 13 bars, the market has 12
    ({"range": TimeRange(T0, T0 + 4 * HOUR)}, "range"),  # 4 bars, needs 5
    ({"idempotency_key": "k" * 256}, "idempotency_key"),
])
async def test_bad_requests_name_the_field(domain, changes, field):
    with pytest.raises(InvalidArgument) as raised:
        await domain.run_backtest(request(**changes))
    assert raised.value.field == field


async def test_zero_initial_equity_means_the_default(domain):
    bt = await domain.run_backtest(request(initial_equity=0))
    assert bt.summary.initial_equity == 10_000 and bt.equity_curve.equity[0] == pytest.approx(10_000, rel=0.1)


async def test_unknown_symbol_is_the_markets_not_found(domain):
    with pytest.raises(NotFound) as raised:
        await domain.run_backtest(request(symbol="XXXYYY"))
    assert raised.value == NotFound("unknown symbol 'XXXYYY'", field="symbol")


async def test_idempotency_key_returns_the_stored_result_without_running_again(domain):
    bollinger = request(strategy="bollinger_breakout", idempotency_key="k1")
    first = await domain.run_backtest(dataclasses.replace(bollinger, params={"period": 3}))
    calls = domain._market.candle_calls
    # The same request once defaults are filled in (k defaults to 2): the stored result, not a new run.
    again = await domain.run_backtest(dataclasses.replace(bollinger, params={"period": 3.0, "k": 2}))
    assert again == first
    assert domain._market.candle_calls == calls  # not run again
    other = await domain.run_backtest(request())  # no key: a new run
    assert other.summary.id != first.summary.id
    assert len((await domain.list_backtests(ListBacktestsQuery())).backtests) == 2


async def test_idempotency_key_reused_with_a_different_request_fails(domain):
    await domain.run_backtest(request(idempotency_key="k2"))
    with pytest.raises(FailedPrecondition) as raised:
        await domain.run_backtest(request(idempotency_key="k2", spread_pips=1))
    assert raised.value.reason == IDEMPOTENCY_KEY_REUSED


async def test_racing_runs_with_one_key_store_one_row(tmp_path):
    market = FakeMarket(page_bars=100, gate=asyncio.Barrier(2))  # both runs pass the key lookup before either stores
    domain = BacktestingDomain(market, data_dir=tmp_path)
    try:
        a, b = await asyncio.gather(*(domain.run_backtest(request(idempotency_key="race")) for _ in range(2)))
        assert market.candle_calls == 2
        assert a == b
        listed = await domain.list_backtests(ListBacktestsQuery())
        assert [s.id for s in listed.backtests] == [a.summary.id]
    finally:
        await domain.close()


async def test_get_and_delete_unknown_ids_are_not_found(domain):
    bt = await domain.run_backtest(request())
    await domain.delete_backtest(bt.summary.id)
    for call in (domain.get_backtest, domain.delete_backtest):
        with pytest.raises(NotFound) as raised:
            await call(bt.summary.id)
        assert raised.value.field == "id"


async def test_list_pages_newest_first_with_filters(tmp_path):
    store = BacktestStore(f"sqlite:///{tmp_path / 'list.sqlite'}")
    domain = BacktestingDomain(FakeMarket(), db_url=f"sqlite:///{tmp_path / 'runs.sqlite'}")
    try:
        template = await domain.run_backtest(request())
        # 25 rows; created_at repeats in pairs so the id breaks ties; every third is EURUSD rsi_reversion.
        for i in range(25):
            summary = dataclasses.replace(
                template.summary, id=f"{i:032x}", created_at=T0 + (i // 2) * HOUR,
                symbol="EURUSD" if i % 3 == 0 else "TESTUSD", strategy="rsi_reversion" if i % 3 == 0 else "sma_cross")
            await store.insert(dataclasses.replace(template, summary=summary))
        newest_first = sorted(range(25), key=lambda i: (i // 2, i), reverse=True)

        seen, token = [], ""
        while True:
            page = await store.list(ListBacktestsQuery(page_size=10, page_token=token))
            seen += [int(s.id, 16) for s in page.backtests]
            token = page.next_page_token
            if not token:
                break
        assert seen == newest_first

        eur = await store.list(ListBacktestsQuery(symbol="EURUSD", strategy="rsi_reversion"))
        assert [int(s.id, 16) for s in eur.backtests] == [i for i in newest_first if i % 3 == 0]
        window = await store.list(ListBacktestsQuery(created_after=T0 + 2 * HOUR, created_before=T0 + 4 * HOUR))
        assert sorted(int(s.id, 16) for s in window.backtests) == [4, 5, 6, 7]  # created at T0+2h and T0+3h
        assert (await store.list(ListBacktestsQuery())).backtests[0].metrics == template.summary.metrics
    finally:
        await store.close()
        await domain.close()


@pytest.mark.parametrize(("query", "field"), [
    (ListBacktestsQuery(page_size=101), "page_size"),
    (ListBacktestsQuery(page_size=-1), "page_size"),
    (ListBacktestsQuery(page_token="not a token"), "page_token"),
])
async def test_bad_list_queries_name_the_field(domain, query, field):
    with pytest.raises(InvalidArgument) as raised:
        await domain.list_backtests(query)
    assert raised.value.field == field


async def test_database_url_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    domain = BacktestingDomain(FakeMarket(), data_dir=tmp_path / "unused")
    try:
        await domain.run_backtest(request())
    finally:
        await domain.close()
    assert (tmp_path / "env.sqlite").exists() and not (tmp_path / "unused").exists()


def test_plain_urls_get_async_drivers():
    assert async_url("sqlite:////data/b.sqlite") == "sqlite+aiosqlite:////data/b.sqlite"
    assert async_url("postgresql://fx:secret@db:5432/fx") == "postgresql+asyncpg://fx:secret@db:5432/fx"
    assert async_url("postgresql+asyncpg://db/fx") == "postgresql+asyncpg://db/fx"
