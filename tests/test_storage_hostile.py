"""Storage a reader cannot jam: a read cut off by its deadline leaves no lock behind (WAL, cancel-safe reads), long
LIKE filters are refused cleanly, and data files are private."""
from __future__ import annotations

import asyncio
import os
import stat

import pytest

from services.analysis_coordinator.models import ListAnalysesQuery
from services.analysis_coordinator.store import AnalysisStore
from services.backtesting.domain import BacktestingDomain
from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.common.errors import InvalidArgument
from test_backtest_store import FakeMarket

ROUNDS = 30


async def test_a_read_cancelled_mid_query_never_makes_the_next_write_fail(tmp_path):
    domain = BacktestingDomain(FakeMarket(page_bars=100), data_dir=tmp_path)
    try:
        request = BacktestRequest("TESTUSD", "sma_cross", {"fast": 2, "slow": 3})
        for _ in range(40):  # enough rows that a page read is still running when its deadline strikes
            await domain.run_backtest(request)
        cancelled = 0
        for i in range(ROUNDS):
            # The deadline grows a little each round, so reads are cut at every stage: queued, mid-query, fetching.
            try:
                await asyncio.wait_for(domain.list_backtests(ListBacktestsQuery(page_size=100)), 0.0001 * (i % 8))
            except asyncio.TimeoutError:
                cancelled += 1
            # The writes right after must succeed (with the old rollback journal they failed "database is locked").
            stored = await asyncio.wait_for(domain.run_backtest(request), 10)
            await asyncio.wait_for(domain.delete_backtest(stored.summary.id), 10)
        assert cancelled >= ROUNDS // 3, f"only {cancelled} of {ROUNDS} reads were cut off: the test proved little"
        assert len((await domain.list_backtests(ListBacktestsQuery(page_size=100))).backtests) == 40
    finally:
        await domain.close()


async def test_sqlite_is_in_wal_mode_and_its_files_are_private(tmp_path):
    data = tmp_path / "data"
    domain = BacktestingDomain(FakeMarket(), data_dir=data)
    try:
        await domain.run_backtest(BacktestRequest("TESTUSD", "sma_cross", {"fast": 2, "slow": 3}))
        async with domain._store._db.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
        for path in data.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        await domain.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


async def test_a_long_symbol_filter_is_invalid_argument_not_a_database_error(tmp_path):
    store = AnalysisStore(f"sqlite+aiosqlite:///{tmp_path / 'analyses.sqlite'}")
    try:
        with pytest.raises(InvalidArgument) as raised:
            await store.list(ListAnalysesQuery(symbol="EUR%_" * 12_000))
        assert raised.value.field == "symbol" and len(raised.value.message) < 200
        assert (await store.list(ListAnalysesQuery(symbol="%_\\"))).analyses == ()  # escaped, so it matches nothing
    finally:
        await store.close()


def test_umask_does_not_matter(tmp_path):
    """Files are created 0600 even when the process umask would allow more."""
    from services.common.storage import private_file

    old = os.umask(0)
    try:
        private_file(tmp_path / "d" / "x.sqlite")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "x.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
