"""Backtest persistence: SQLAlchemy 2 async over SQLite (aiosqlite) by default, or any async URL such as
postgresql+asyncpg://. One table, created on first use.

Trades are stored as columnar JSON; the equity curve as little-endian binary columns (int64 times, float64 equity).
`idempotency_key` is UNIQUE: concurrent runs with one key race on the insert, the loser gets an IntegrityError and
returns the winner's row, so a key never stores twice. Lists use keyset pagination on (created_at, id), newest first.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON, Column, Double, Index, Integer, LargeBinary, MetaData, String, Table, and_, delete, or_, select,
)

from services.backtesting.models import (
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Backtest, BacktestMetrics, BacktestPage, BacktestSummary, EquityCurve,
    ListBacktestsQuery, Side, Trade,
)
from services.common import storage
from services.common.errors import InvalidArgument, NotFound, quoted
from services.common.market_types import TimeRange, Timeframe, from_unix, to_unix
from services.common.storage import (
    Database, UtcDateTime, all_rows, one_row, decode_page_token, encode_page_token, keyed_columns,
)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


metadata = MetaData()
backtests = Table(
    "backtests", metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    *keyed_columns(),
    Column("symbol", String(32), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("range_start", UtcDateTime, nullable=False),
    Column("range_end", UtcDateTime, nullable=False),
    Column("initial_equity", Double, nullable=False),
    Column("spread_pips", Double, nullable=False),
    Column("commission_per_unit", Double, nullable=False),
    Column("commission_pct", Double, nullable=False),
    Column("bars", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("trades", JSON, nullable=False),
    Column("equity_time", LargeBinary, nullable=False),
    Column("equity", LargeBinary, nullable=False),
    Index("ix_backtests_created_at_id", "created_at", "id"),
    Index("ix_backtests_symbol", "symbol"),
    Index("ix_backtests_strategy", "strategy"),
)
_SUMMARY_COLUMNS = [c for c in backtests.c if c.name not in ("trades", "equity_time", "equity")]
_TRADE_FIELDS = [f.name for f in dataclasses.fields(Trade)]


def database_url(db_url: str | None, data_dir: Path | None) -> str:
    """`db_url`, else $DATABASE_URL, else the SQLite file `backtests.sqlite` in `data_dir`."""
    return storage.database_url(db_url, data_dir, "backtests.sqlite")


class BacktestStore:
    def __init__(self, url: str) -> None:
        self._db = Database(url, metadata)

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        await self._db.close()

    async def find_by_idempotency_key(self, key: str, fingerprint: str) -> Backtest | None:
        """The backtest stored under `key`, or None; FailedPrecondition if the key came with a different request."""
        row = await self._db.find_keyed(backtests, key, fingerprint)
        return None if row is None else _backtest(row)

    async def insert(self, backtest: Backtest, idempotency_key: str = "", fingerprint: str = "") -> Backtest:
        """Store `backtest` and return it. If a concurrent insert took `idempotency_key` first, store nothing and
        return that one instead (FailedPrecondition if its request differs)."""
        winner = await self._db.insert_keyed(backtests, _row(backtest), idempotency_key, fingerprint)
        return backtest if winner is None else _backtest(winner)

    async def get(self, backtest_id: str) -> Backtest:
        row = await self._db.read(
            lambda conn: one_row(conn, select(backtests).where(backtests.c.id == backtest_id)))
        if row is None:
            raise _not_found(backtest_id)
        return _backtest(row)

    async def list(self, query: ListBacktestsQuery) -> BacktestPage:
        page_size = query.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}", field="page_size")
        conditions = []
        if query.page_token:
            created_at, last_id = decode_page_token(query.page_token)
            c = backtests.c
            conditions.append(or_(c.created_at < created_at, and_(c.created_at == created_at, c.id < last_id)))
        if query.symbol:
            conditions.append(backtests.c.symbol == query.symbol)
        if query.strategy:
            conditions.append(backtests.c.strategy == query.strategy)
        if query.created_after is not None:
            conditions.append(backtests.c.created_at >= query.created_after)
        if query.created_before is not None:
            conditions.append(backtests.c.created_at < query.created_before)
        statement = (select(*_SUMMARY_COLUMNS).where(*conditions)
                     .order_by(backtests.c.created_at.desc(), backtests.c.id.desc()).limit(page_size + 1))
        rows = await self._db.read(lambda conn: all_rows(conn, statement))
        page = [_summary(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        return BacktestPage(tuple(page), encode_page_token(page[-1].created_at, page[-1].id) if more else "")

    async def delete(self, backtest_id: str) -> None:
        async with (await self._db.ready()).begin() as conn:
            result = await conn.execute(delete(backtests).where(backtests.c.id == backtest_id))
        if result.rowcount == 0:
            raise _not_found(backtest_id)


def _not_found(backtest_id: str) -> NotFound:
    return NotFound(f"no backtest with id {quoted(backtest_id)}", field="id")


# --- rows <-> domain ------------------------------------------------------------------------------------------------

def _row(b: Backtest) -> dict[str, Any]:
    s = b.summary
    trades = {name: [getattr(t, name) for t in b.trades] for name in _TRADE_FIELDS}
    trades["side"] = [side.value for side in trades["side"]]
    trades["entry_time"] = [to_unix(t) for t in trades["entry_time"]]
    trades["exit_time"] = [to_unix(t) for t in trades["exit_time"]]
    return {
        "id": s.id, "created_at": s.created_at, "symbol": s.symbol, "strategy": s.strategy, "params": s.params,
        "timeframe": s.timeframe.value, "range_start": s.range.start, "range_end": s.range.end,
        "initial_equity": s.initial_equity, "spread_pips": s.spread_pips,
        "commission_per_unit": s.commission_per_unit, "commission_pct": s.commission_pct, "bars": s.bars,
        "metrics": dataclasses.asdict(s.metrics), "trades": trades,
        "equity_time": b.equity_curve.time.astype("<i8").tobytes(),
        "equity": b.equity_curve.equity.astype("<f8").tobytes(),
    }


def _summary(row: Any) -> BacktestSummary:
    return BacktestSummary(
        id=row.id, created_at=row.created_at, symbol=row.symbol, strategy=row.strategy, params=row.params,
        timeframe=Timeframe(row.timeframe), range=TimeRange(row.range_start, row.range_end),
        initial_equity=row.initial_equity, spread_pips=row.spread_pips, commission_per_unit=row.commission_per_unit,
        commission_pct=row.commission_pct, bars=row.bars, metrics=BacktestMetrics(**row.metrics),
    )


def _backtest(row: Any) -> Backtest:
    columns = dict(row.trades)
    columns["side"] = [Side(v) for v in columns["side"]]
    columns["entry_time"] = [from_unix(v) for v in columns["entry_time"]]
    columns["exit_time"] = [from_unix(v) for v in columns["exit_time"]]
    trades = tuple(Trade(*values) for values in zip(*(columns[name] for name in _TRADE_FIELDS), strict=True))
    curve = EquityCurve(np.frombuffer(row.equity_time, dtype="<i8").astype(np.int64),
                        np.frombuffer(row.equity, dtype="<f8").astype(np.float64))
    return Backtest(_summary(row), trades, curve)
