"""Analysis persistence: one table through SQLAlchemy async (SQLite file `analyses.sqlite` in the data directory by
default, $DATABASE_URL when set), created on first use.

A report is stored as the serialised `forex.analysis_coordinator.v1.Analysis` message: it nests the results of three
other services, and their wire contract is the one format they already share that evolves compatibly (buf breaking
rules). The columns beside it exist for filtering and listing. `idempotency_key` is UNIQUE, so a key stores once even
when two runs race (the loser returns the winner's report). Lists are keyset-paged on (created_at, id), newest first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Column, Index, Integer, LargeBinary, MetaData, String, Table, and_, or_, select

from services.analysis_coordinator import grpc as codec
from services.analysis_coordinator.models import (
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Analysis, AnalysisPage, AnalysisSummary, ListAnalysesQuery,
)
from services.common import storage
from services.common.errors import InvalidArgument, NotFound, quoted
from services.common.market_types import Timeframe
from services.common.storage import (
    Database, UtcDateTime, all_rows, one_row, decode_page_token, encode_page_token, keyed_columns,
)


metadata = MetaData()
analyses = Table(
    "analyses", metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    *keyed_columns(),
    Column("symbols", String(200), nullable=False),  # ",EURUSD,GBPUSD," so LIKE '%,EURUSD,%' finds a symbol
    Column("timeframe", String(8), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("failed_calls", Integer, nullable=False),
    Column("report", LargeBinary, nullable=False),
    Index("ix_analyses_created_at_id", "created_at", "id"),
)
MAX_SYMBOL_FILTER = 32  # the longest symbol a filter may name (LIKE patterns stay short and escaped)
_SUMMARY_COLUMNS = [c for c in analyses.c if c.name != "report"]


def database_url(db_url: str | None, data_dir: Path | None) -> str:
    return storage.database_url(db_url, data_dir, "analyses.sqlite")


class AnalysisStore:
    def __init__(self, url: str) -> None:
        self._db = Database(url, metadata)

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        await self._db.close()

    async def find_by_idempotency_key(self, key: str, fingerprint: str) -> Analysis | None:
        """The analysis stored under `key`, or None; FailedPrecondition if the key came with another request."""
        row = await self._db.find_keyed(analyses, key, fingerprint)
        return None if row is None else codec.analysis_from_bytes(row.report)

    async def insert(self, analysis: Analysis, idempotency_key: str = "", fingerprint: str = "") -> Analysis:
        """Store `analysis` and return it, or the one a concurrent run stored first under the same key."""
        r = analysis.request
        values = {
            "id": analysis.id, "created_at": analysis.created_at, "symbols": "," + ",".join(r.symbols) + ",",
            "timeframe": r.timeframe.value, "strategy": r.strategy, "failed_calls": analysis.failed_calls,
            "report": codec.analysis_to_bytes(analysis),
        }
        winner = await self._db.insert_keyed(analyses, values, idempotency_key, fingerprint)
        return analysis if winner is None else codec.analysis_from_bytes(winner.report)

    async def get(self, analysis_id: str) -> Analysis:
        row = await self._db.read(
            lambda conn: one_row(conn, select(analyses.c.report).where(analyses.c.id == analysis_id)))
        if row is None:
            raise NotFound(f"no analysis with id {quoted(analysis_id)}", field="id")
        return codec.analysis_from_bytes(row.report)

    async def list(self, query: ListAnalysesQuery) -> AnalysisPage:
        page_size = query.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}", field="page_size")
        c = analyses.c
        conditions = []
        if query.page_token:
            created_at, last_id = decode_page_token(query.page_token)
            conditions.append(or_(c.created_at < created_at, and_(c.created_at == created_at, c.id < last_id)))
        if query.symbol:
            if len(query.symbol) > MAX_SYMBOL_FILTER:  # SQLite refuses long LIKE patterns ("too complex"): 500 before
                raise InvalidArgument(f"symbol must be at most {MAX_SYMBOL_FILTER} characters, got "
                                      f"{len(query.symbol):,}", field="symbol")
            conditions.append(c.symbols.contains(f",{query.symbol.strip().upper()},", autoescape=True))
        statement = (select(*_SUMMARY_COLUMNS).where(*conditions)
                     .order_by(c.created_at.desc(), c.id.desc()).limit(page_size + 1))
        rows = await self._db.read(lambda conn: all_rows(conn, statement))
        page = [_summary(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        return AnalysisPage(tuple(page), encode_page_token(page[-1].created_at, page[-1].id) if more else "")


def _summary(row: Any) -> AnalysisSummary:
    return AnalysisSummary(row.id, row.created_at, tuple(row.symbols.strip(",").split(",")), Timeframe(row.timeframe),
                           row.strategy, row.failed_calls)
