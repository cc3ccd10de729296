"""Creating and upgrading the stores' tables, safe from several replicas at once.

Each store is a component ("backtests", "analyses", "canary", "market") with an ordered list of steps; the table
`fxplat_schema` records how many of them a database has had. `upgrade` applies the missing steps in one transaction
per component, holding a lock, so replicas starting together (or `fxplat db upgrade` run beside them) never race:
on PostgreSQL a transaction-scoped advisory lock (every replica's upgrade waits for the first, then finds nothing to
do); on SQLite the database file's write lock, taken before anything is read. Every step is idempotent (it checks
before it changes), so a database made by an older release and a fresh one both end at the same head.

Why not Alembic: four small components whose SQLite files live apart by default (one per store) and share one
PostgreSQL database when DATABASE_URL is set; a lock-guarded, recorded list of steps is what that needs, and it runs
from the service itself (first use) or from `fxplat db upgrade` with the same code. A database newer than this code
(a rollback to the previous release) is used as it is: steps only ever add.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, inspect, select, text

log = logging.getLogger("fxplat.schema")

_versions = MetaData()
schema_versions = Table(
    "fxplat_schema", _versions,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)
Step = Callable[[Connection], None]
_LOCK_KEY = zlib.crc32(b"fxplat schema")  # one advisory lock for every component's upgrade


@dataclass(frozen=True)
class Component:
    """A store's tables and the steps that bring a database to them; step 1 usually creates the tables."""

    name: str
    metadata: MetaData
    steps: Sequence[Step] = ()

    def all_steps(self) -> list[Step]:
        return list(self.steps) or [create_tables(self.metadata)]


def component(metadata: MetaData | Component) -> Component:
    """`metadata` as a component named after its first table (a store of one table), or the component given."""
    return metadata if isinstance(metadata, Component) else Component(next(iter(metadata.tables)), metadata)


def create_tables(metadata: MetaData) -> Step:
    def step(conn: Connection) -> None:
        metadata.create_all(conn, checkfirst=True)

    return step


def add_column(table: str, column: str, ddl_type: str) -> Step:
    """A step adding `column` to `table` unless it has it (`ddl_type` with its default, e.g. 'BIGINT NOT NULL
    DEFAULT 0')."""
    def step(conn: Connection) -> None:
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}"))

    return step


def upgrade(conn: Connection, component: Component) -> tuple[int, int]:
    """Apply `component`'s missing steps inside `conn`'s transaction, under the lock; (version before, after)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # A write first: SQLite then holds its write lock until commit, so a second process waits here.
        conn.execute(text("CREATE TABLE IF NOT EXISTS fxplat_schema_lock (id INTEGER PRIMARY KEY)"))
        conn.execute(text("DELETE FROM fxplat_schema_lock"))
    _versions.create_all(conn, checkfirst=True)
    row = conn.execute(select(schema_versions.c.version)
                       .where(schema_versions.c.component == component.name)).one_or_none()
    before = row.version if row else 0
    steps = component.all_steps()
    for step in steps[before:]:
        step(conn)
    after = max(before, len(steps))
    if after != before:
        values = {"component": component.name, "version": after}
        if row is None:
            conn.execute(schema_versions.insert().values(values))
        else:
            conn.execute(schema_versions.update().where(schema_versions.c.component == component.name)
                         .values(version=after))
        log.info("schema %s: version %d -> %d", component.name, before, after)
    return before, after
