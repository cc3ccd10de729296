"""What every stored resource shares: the database URL rule, async drivers, UTC columns, schema creation on first
use and keyset page tokens. SQLAlchemy 2 async over SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL.

SQLite runs in WAL mode, so readers never block a writer, and reads go through `Database.read`, which a caller's
deadline cannot cut in half: a read cancelled mid-query (ListBacktests at its deadline) once left the database locked
and writes failing "database is locked" for 10-45 s. SQLite files are created private (0600) in a private directory."""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Column, DateTime, MetaData, Row, String, Table, TypeDecorator, event, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common import schema
from services.common.errors import FailedPrecondition, InvalidArgument, quoted
from services.common.market_types import utc

IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def database_url(db_url: str | None, data_dir: Path | None, sqlite_file: str) -> str:
    """`db_url`, else $DATABASE_URL, else the SQLite file `sqlite_file` in `data_dir`."""
    url = db_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    if data_dir is None:
        raise ValueError("storage needs db_url, DATABASE_URL or a data directory")
    return f"sqlite+aiosqlite:///{Path(data_dir) / sqlite_file}"


def async_url(url: str) -> str:
    """`url` with an async driver: plain sqlite:// and postgresql:// get aiosqlite and asyncpg."""
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)).render_as_string(
        hide_password=False)


def sync_url(url: str) -> str:
    """`url` with a synchronous driver (sqlite3, psycopg), for code that runs in threads rather than the loop."""
    parsed = make_url(url)
    driver = parsed.drivername.split("+")[0]
    return parsed.set(drivername={"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"}.get(
        driver, driver)).render_as_string(hide_password=False)


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes, stored naive in UTC so SQLite and PostgreSQL compare them the same way."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


def private_file(path: Path) -> None:
    """Create `path` (mode 0600) and its directory (0700) unless they exist: market data, backtests and analyses are
    nobody else's business on a shared host. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers see a snapshot and never block the writer
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class Database:
    """An async engine whose tables (`metadata`) are created or upgraded on first use (services.common.schema: safe
    from several replicas at once; `fxplat db upgrade` does the same up front). A bare MetaData is a component named
    after its first table."""

    def __init__(self, url: str, metadata: MetaData | schema.Component) -> None:
        self.engine: AsyncEngine = create_async_engine(async_url(url))
        if self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                with contextlib.suppress(OSError):  # unusable: SQLite names the problem at first use (/readyz)
                    private_file(Path(database))
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.component = schema.component(metadata)
        self._ready = False
        self._lock = asyncio.Lock()

    async def ready(self) -> AsyncEngine:
        if not self._ready:
            async with self._lock:
                if not self._ready:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(schema.upgrade, self.component)
                    self._ready = True
        return self.engine

    async def read(self, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `query` on a connection of its own and return its result. If the caller is cancelled (its deadline
        passed), the query still runs to its end in the background, so its connection goes back to the pool finished,
        never mid-statement holding a lock."""
        engine = await self.ready()

        async def run() -> T:
            async with engine.connect() as conn:
                return await query(conn)

        task = asyncio.ensure_future(run())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_consume)  # finishes on its own; its outcome has no one to go to
            raise

    async def ping(self) -> None:
        """Raises unless the database answers (its tables created, a `SELECT 1` run): a readiness check."""
        async with (await self.ready()).connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # Idempotency keys: a table with the `keyed_columns()` stores each key once. Concurrent writes with one key race
    # on the UNIQUE insert; the loser stores nothing and gets the winner's row.

    async def find_keyed(self, table: Table, key: str, fingerprint: str) -> Row | None:
        """The row stored under idempotency `key`, or None; FailedPrecondition if the key came with another request
        (`fingerprint` differs)."""
        async def find(conn: AsyncConnection) -> Row | None:
            return (await conn.execute(select(table).where(table.c.idempotency_key == key))).one_or_none()

        row = await self.read(find)
        if row is not None and row.request_fingerprint != fingerprint:
            raise FailedPrecondition(f"idempotency key {quoted(key)} was already used with a different request",
                                     reason=IDEMPOTENCY_KEY_REUSED)
        return row

    async def insert_keyed(self, table: Table, values: dict[str, Any], key: str, fingerprint: str) -> Row | None:
        """Insert `values` under `key` (none if empty); None when stored, else the row that took the key first."""
        try:
            async with (await self.ready()).begin() as conn:
                await conn.execute(insert(table).values(
                    values | {"idempotency_key": key or None, "request_fingerprint": fingerprint}))
        except IntegrityError:
            winner = await self.find_keyed(table, key, fingerprint) if key else None
            if winner is None:
                raise
            return winner
        return None


async def all_rows(conn: AsyncConnection, statement: Any) -> list[Row]:
    """A `Database.read` query: every row of `statement`."""
    return list((await conn.execute(statement)).all())


async def one_row(conn: AsyncConnection, statement: Any) -> Row | None:
    """A `Database.read` query: the one row of `statement`, or None."""
    return (await conn.execute(statement)).one_or_none()


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


def keyed_columns() -> list[Column]:
    """The columns `Database.find_keyed` / `insert_keyed` need."""
    return [Column("idempotency_key", String(255), unique=True),  # NULL when the write had no key
            Column("request_fingerprint", String(64))]  # sha256 of the normalised request, to detect a reused key


def encode_page_token(created_at: datetime, last_id: str) -> str:
    """Keyset token after the item (created_at, id) of a newest-first list."""
    raw = json.dumps([created_at.isoformat(), last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created_at, last_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(created_at), str(last_id)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgument("page_token is not a token this service issued", field="page_token") from None
