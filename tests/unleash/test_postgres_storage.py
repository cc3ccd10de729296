"""Backtests and analyses stored in PostgreSQL (DATABASE_URL) instead of SQLite: the same behaviour, idempotency keys
included. Runs in the server tier (`bash scripts/unleash_tier.sh`), whose throwaway PostgreSQL cluster also serves
Unleash; skipped by the plain `pytest` run, which has no PostgreSQL."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from uuid import uuid4

import pytest

from services.analysis_coordinator.domain import AnalysisCoordinatorDomain
from services.analysis_coordinator.models import AnalysisRequest, ListAnalysesQuery
from services.analysis_coordinator.store import AnalysisStore
from services.backtesting.domain import BacktestingDomain
from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.common.errors import FailedPrecondition, NotFound
from services.common.market_types import TimeRange, Timeframe

POSTGRES_URL = os.environ.get("FXPLAT_TEST_POSTGRES_URL", "")
pytestmark = [
    pytest.mark.unleash,  # the tier's marker: this test needs the tier's PostgreSQL
    pytest.mark.skipif(not POSTGRES_URL, reason="needs FXPLAT_TEST_POSTGRES_URL; `bash scripts/unleash_tier.sh` "
                                                "starts PostgreSQL and runs this test"),
]
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))


@pytest.fixture
async def backtesting(market_host, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)  # the way an operator selects PostgreSQL
    domain = BacktestingDomain(market_host.impl)
    yield domain
    await domain.close()


async def test_backtests_in_postgres(backtesting):
    symbol_key = uuid4().hex
    request = BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20}, Timeframe.H1, MARCH,
                              idempotency_key=symbol_key)
    # Ten concurrent runs with one key: PostgreSQL's UNIQUE index lets one store, the others get its result.
    results = await asyncio.gather(*(backtesting.run_backtest(request) for _ in range(10)))
    assert len({r.summary.id for r in results}) == 1
    stored = results[0]
    assert await backtesting.get_backtest(stored.summary.id) == stored
    with pytest.raises(FailedPrecondition):
        await backtesting.run_backtest(BacktestRequest("EURUSD", "rsi_reversion", range=MARCH,
                                                       idempotency_key=symbol_key))
    since = stored.summary.created_at
    for strategy in ("rsi_reversion", "bollinger_breakout"):
        await backtesting.run_backtest(BacktestRequest("EURUSD", strategy, range=MARCH))
    ids, token = [], ""
    for _ in range(10):  # bounded paging, two per page
        page = await backtesting.list_backtests(ListBacktestsQuery(symbol="EURUSD", created_after=since, page_size=2,
                                                                   page_token=token))
        ids += [s.id for s in page.backtests]
        token = page.next_page_token
        if not token:
            break
    assert len(ids) == 3 and ids[-1] == stored.summary.id  # newest first
    await backtesting.delete_backtest(stored.summary.id)
    with pytest.raises(NotFound):
        await backtesting.get_backtest(stored.summary.id)


async def test_analyses_in_postgres(market_host, causal_host, backtesting):
    store = AnalysisStore(POSTGRES_URL)
    coordinator = AnalysisCoordinatorDomain(market_host.impl, causal_host.impl, backtesting, store)
    try:
        request = AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.H1, MARCH, idempotency_key=uuid4().hex)
        first = await coordinator.run_analysis(request)
        assert first.failed_calls == 0 and {c.transport for c in first.calls} == {"local"}
        assert await coordinator.run_analysis(request) == await coordinator.get_analysis(first.id)
        page = await coordinator.list_analyses(ListAnalysesQuery("GBPUSD", page_size=100))
        assert sum(s.id == first.id for s in page.analyses) == 1
    finally:
        await store.close()
