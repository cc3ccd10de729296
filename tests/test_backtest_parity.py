"""Every Backtesting RPC gives the same answer in-process, over gRPC and over REST (real servers on loopback; the
service fetches its candles from Market Analysis through the flagged adapter). The store is shared by the whole
session, so each test works on backtests it made itself."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from services.backtesting.models import Backtest, BacktestRequest, ListBacktestsQuery, Side
from services.common.errors import NotFound
from services.common.market_types import TimeRange, Timeframe

WIRES = ("grpc", "rest")
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def without_identity(b: Backtest) -> Backtest:
    """The backtest with what differs between two runs of one request (id, created_at) blanked out."""
    return dataclasses.replace(b, summary=dataclasses.replace(b.summary, id="", created_at=EPOCH))


REQUESTS = [
    BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20}, Timeframe.H1, MARCH, initial_equity=25_000,
                    spread_pips=0.8, commission_per_unit=0.00001, commission_pct=0.002),
    BacktestRequest("USDJPY", "bollinger_breakout", range=MARCH),  # every default
    BacktestRequest("GBPUSD", "rsi_reversion", {"lower": 1, "upper": 99}, Timeframe.M15, MARCH),  # no trades
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("request_", REQUESTS, ids=["costs", "defaults", "no-trades"])
async def test_run_backtest(backtesting_clients, wire, request_):
    expected = await backtesting_clients["domain"].run_backtest(request_)
    got = await backtesting_clients[wire].run_backtest(request_)
    assert got.summary.id != expected.summary.id  # no idempotency key: a second, separate run
    assert without_identity(got) == without_identity(expected)


async def test_the_runs_cover_unset_metrics_and_both_sides(backtesting_clients):
    """The parity cases above carry both trade sides and metrics that are None (unset on gRPC, null in JSON)."""
    runs = [await backtesting_clients["domain"].run_backtest(r) for r in REQUESTS]
    assert {t.side for t in runs[0].trades} == {Side.LONG, Side.SHORT}
    assert runs[2].summary.metrics.trade_count == 0 and runs[2].summary.metrics.win_rate is None


@pytest.fixture(scope="module")
async def stored(backtesting_clients) -> Backtest:
    return await backtesting_clients["domain"].run_backtest(REQUESTS[0])


@pytest.mark.parametrize("wire", WIRES)
async def test_get_backtest(backtesting_clients, stored, wire):
    got = await backtesting_clients[wire].get_backtest(stored.summary.id)
    assert got == await backtesting_clients["domain"].get_backtest(stored.summary.id) == stored


@pytest.fixture(scope="module")
async def five_stored(backtesting_clients) -> list[Backtest]:
    """Five AUDUSD rsi_reversion runs, oldest first; lists filtered to their creation window see only them."""
    request = BacktestRequest("AUDUSD", "rsi_reversion", range=MARCH)
    return [await backtesting_clients["domain"].run_backtest(dataclasses.replace(request, params={"period": p}))
            for p in range(10, 15)]


@pytest.mark.parametrize("wire", WIRES)
async def test_list_backtests_pages(backtesting_clients, five_stored, wire):
    first, last = five_stored[0].summary, five_stored[-1].summary
    query = ListBacktestsQuery(symbol="AUDUSD", strategy="rsi_reversion", created_after=first.created_at,
                               created_before=last.created_at + timedelta(microseconds=1), page_size=2)
    pages = {}
    for impl in ("domain", wire):
        pages[impl], q = [], query
        for _ in range(10):  # bounded: 5 backtests in pages of 2
            page = await backtesting_clients[impl].list_backtests(q)
            pages[impl].append(page)
            if not page.next_page_token:
                break
            q = dataclasses.replace(q, page_token=page.next_page_token)
    assert pages[wire] == pages["domain"]
    listed = [s for page in pages[wire] for s in page.backtests]
    assert [len(p.backtests) for p in pages[wire]] == [2, 2, 1]
    assert [s.id for s in listed] == [b.summary.id for b in reversed(five_stored)]  # newest first
    assert listed[0] == last  # a summary is the run's summary


@pytest.mark.parametrize("wire", WIRES)
async def test_delete_backtest(backtesting_clients, wire):
    backtest = await backtesting_clients["domain"].run_backtest(REQUESTS[1])
    assert await backtesting_clients[wire].delete_backtest(backtest.summary.id) is None
    for impl in ("domain", wire):
        with pytest.raises(NotFound) as raised:
            await backtesting_clients[impl].get_backtest(backtest.summary.id)
        assert raised.value.field == "id"
