"""Imported market data: CSV import into a store, and a cached reader.

The store is the file `market.sqlite` in the data directory, or the database DATABASE_URL names (PostgreSQL: every
replica of the service then serves the same imports). Table `candles` holds the bars by
(symbol, timeframe, time) and table `imports` one row per imported (symbol, timeframe) with its extent and the price
precision seen in the file. Each import of a (symbol, timeframe) replaces the previous one in a single transaction, so
readers see either the old data or the new, never a mix.

The file's layout (separator, header or not, time columns, date formats) is worked out and every row validated by
csv_import before anything is written. Symbol: 3 to 12 letters or digits (upper-cased). Timeframe: when not given,
the most common spacing between consecutive bars.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import threading
import time as _time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger, Column, Connection, Double, Engine, Integer, MetaData, Table, Text, create_engine, delete, insert,
    select, text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from services.common import schema, storage
from services.common.errors import InvalidArgument, Unavailable, quoted
from services.common.market_types import CandleSeries, Timeframe, from_unix
from services.market_analysis import csv_import
from services.market_analysis.csv_import import PRICE_COLUMNS, ParsedBars

DB_FILE = "market.sqlite"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{3,12}")


# Bumped by every import in this process, so readers notice a change even within the file's mtime resolution.
_generation = 0
_generation_lock = threading.Lock()


@dataclass(frozen=True)
class ImportReport:
    symbol: str
    timeframe: Timeframe
    rows: int
    first_time: datetime
    last_time: datetime
    replaced_rows: int  # rows of the previous import of this symbol and timeframe that were replaced


@dataclass(frozen=True)
class ImportedTimeframe:
    """One imported (symbol, timeframe): its extent and the decimals its prices were written with."""

    symbol: str
    timeframe: Timeframe
    rows: int
    first_time: datetime
    last_time: datetime
    digits: int
    revision: int = 0  # changes with every import of it


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / DB_FILE


def validate_symbol(symbol: str) -> str:
    """Upper-cased symbol if it is 3-12 letters or digits, else InvalidArgument(field='symbol')."""
    normalized = str(symbol).strip().upper()
    if not SYMBOL_PATTERN.fullmatch(normalized):
        raise InvalidArgument(
            f"invalid symbol {quoted(symbol)}: use 3 to 12 letters or digits, e.g. EURUSD", field="symbol"
        )
    return normalized


# --- import ----------------------------------------------------------------------------------------------------------


def import_csv(path: Path, symbol: str | None, timeframe: Timeframe | str | None, data_dir: Path) -> ImportReport:
    """Validate the whole CSV at `path`, then store it as the bars of `symbol` (None: the file's ticker column) at
    `timeframe` (inferred when None), replacing any previous import of that symbol and timeframe. Raises
    InvalidArgument and writes nothing when any row is bad (see csv_import for the formats)."""
    if symbol is not None:
        validate_symbol(symbol)
    tf = Timeframe.parse(timeframe) if timeframe is not None else None
    bars = csv_import.read(Path(path))
    symbol = validate_symbol(csv_import.symbol_of(bars, symbol))
    tf = csv_import.check_timeframe(bars, tf)
    replaced = _write(database_url(data_dir), symbol, tf, bars, source=str(path))
    return ImportReport(
        symbol=symbol,
        timeframe=tf,
        rows=len(bars.time),
        first_time=from_unix(bars.time[0]),
        last_time=from_unix(bars.time[-1]),
        replaced_rows=replaced,
    )


# --- storage ---------------------------------------------------------------------------------------------------------
# SQLAlchemy Core over a synchronous driver (sqlite3, or psycopg for PostgreSQL): the domain reads the store from its
# worker threads, and `fxplat data import` is a plain command.

metadata = MetaData()
candles = Table(
    "candles", metadata,
    Column("symbol", Text, primary_key=True),
    Column("timeframe", Text, primary_key=True),
    Column("time", BigInteger, primary_key=True, autoincrement=False),
    *(Column(name, Double, nullable=False) for name in (*PRICE_COLUMNS, "volume")),
    sqlite_with_rowid=False,
)
imports = Table(
    "imports", metadata,
    Column("symbol", Text, primary_key=True),
    Column("timeframe", Text, primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("first_time", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=False),
    Column("digits", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("imported_at", BigInteger, nullable=False),  # unix seconds
    # Unique per import: how a replica notices that another process replaced an import (see ImportedStore).
    Column("revision", BigInteger, nullable=False, server_default="0"),
)
SCHEMA = schema.Component("market", metadata, [
    schema.create_tables(metadata),
    schema.add_column("imports", "revision", "BIGINT NOT NULL DEFAULT 0"),  # stores made before the column
])
POLL_S = 1.0  # with a shared database, how often a replica looks for imports made elsewhere


def database_url(data_dir: Path) -> str:
    """$DATABASE_URL (every replica shares the imports), else the SQLite file market.sqlite in `data_dir`."""
    return storage.database_url(None, data_dir, DB_FILE)


def _engine(url: str) -> Engine:
    if url.startswith(("sqlite", "postgresql+asyncpg", "postgresql", "postgres")):
        url = storage.sync_url(url)
    if url.startswith("sqlite") and not make_url(url).database.startswith("file:"):  # a URI opens an existing file
        storage.private_file(Path(make_url(url).database))  # 0600 in a 0700 directory
    return create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})


def _write(url: str, symbol: str, tf: Timeframe, bars: ParsedBars, source: str) -> int:
    """Replace the stored bars of (symbol, tf) by `bars` in one transaction; returns the number of rows replaced."""
    global _generation
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            schema.upgrade(conn, SCHEMA)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # concurrent imports of one key take turns
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": zlib.crc32(f"market import {symbol} {tf.value}".encode())})
            key = (imports.c.symbol == symbol) & (imports.c.timeframe == tf.value)
            conn.execute(delete(imports).where(key))  # on SQLite, the write lock from here to commit
            replaced = conn.execute(delete(candles).where(
                (candles.c.symbol == symbol) & (candles.c.timeframe == tf.value))).rowcount
            columns = {"time": bars.time.tolist(), **{n: getattr(bars, n).tolist() for n in (*PRICE_COLUMNS, "volume")}}
            conn.execute(insert(candles), [
                {"symbol": symbol, "timeframe": tf.value, **dict(zip(columns, values))}
                for values in zip(*columns.values())])
            conn.execute(insert(imports).values(
                symbol=symbol, timeframe=tf.value, rows=len(bars.time), first_time=int(bars.time[0]),
                last_time=int(bars.time[-1]), digits=bars.digits, source=source, imported_at=int(_time.time()),
                revision=secrets.randbits(62)))
    finally:
        engine.dispose()
    with _generation_lock:
        _generation += 1
    return max(replaced, 0)


# --- reading ---------------------------------------------------------------------------------------------------------


class ImportedStore:
    """Read side of the store, cached: catalogue and series are re-read only when the data changed. With SQLite that
    is the database file changing (its mtime, size or inode) or an import in this process; with a shared database
    (DATABASE_URL) the catalogue is re-read at most every POLL_S seconds, and an import made by any process changes
    its revisions. Thread-safe."""

    def __init__(self, data_dir: Path, url: str | None = None) -> None:
        self.url = url or database_url(Path(data_dir))
        self._sqlite = self.url.startswith("sqlite")
        self.path = Path(make_url(self.url).database) if self._sqlite else None
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._version: tuple | None = None
        self._checked_at = -math.inf
        self._catalog: dict[str, list[ImportedTimeframe]] = {}
        self._series: dict[tuple[str, Timeframe], CandleSeries] = {}

    @property
    def version(self) -> tuple:
        """Changes whenever the stored data may have changed; usable as part of a cache key."""
        with self._lock:
            self._refresh()
            return self._version  # type: ignore[return-value]

    def symbols(self) -> list[str]:
        with self._lock:
            self._refresh()
            return sorted(self._catalog)

    def timeframes(self, symbol: str) -> list[ImportedTimeframe]:
        """Imported timeframes of `symbol`, finest first (empty when none)."""
        with self._lock:
            self._refresh()
            return list(self._catalog.get(symbol, ()))

    def load(self, symbol: str, timeframe: Timeframe | None = None) -> CandleSeries | None:
        """Imported bars of `symbol` at `timeframe` exactly as imported (None = its finest imported timeframe);
        None when there is no such import. Arrays are read-only."""
        with self._lock:
            self._refresh()
            imported = self._catalog.get(symbol)
            if not imported:
                return None
            tf = imported[0].timeframe if timeframe is None else timeframe
            if all(i.timeframe is not tf for i in imported):
                return None
            key = (symbol, tf)
            if key not in self._series:
                self._series[key] = self._guarded(self._read_series, symbol, tf)
            return self._series[key]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _refresh(self) -> None:
        if self._sqlite:
            # Asked first, not caught: with no import yet this runs on every read, and a raised FileNotFoundError
            # cost ~8 µs of a served call's CPU (a server profile under load), access() a fraction of one.
            version: tuple = (None, _generation)
            if os.access(self.path, os.F_OK):
                with contextlib.suppress(FileNotFoundError):  # removed since
                    st = os.stat(self.path)
                    version = (st.st_mtime_ns, st.st_size, st.st_ino, _generation)
            if version == self._version:
                return
            catalog = self._guarded(self._read_catalog) if version[0] is not None else {}
        else:
            if self._version is not None and self._version[0] == _generation \
                    and _time.monotonic() - self._checked_at < POLL_S:
                return
            catalog = self._guarded(self._read_catalog)
            self._checked_at = _time.monotonic()
            version = (_generation, tuple((e.symbol, e.timeframe, e.revision) for entries in catalog.values()
                                          for e in entries))
            if version == self._version:
                return
        self._series.clear()
        self._catalog = catalog
        self._version = version

    def _guarded(self, read, *args):
        """`read(*args)`; a database that does not answer is UNAVAILABLE for the caller, not an internal error."""
        try:
            return read(*args)
        except OperationalError as exc:
            if self._sqlite and "no such table" in str(exc):  # the file exists, no import has completed yet
                return {}
            raise Unavailable(f"the market data store does not answer: {str(exc).splitlines()[0][:200]}",
                              reason="STORE_UNAVAILABLE") from None

    def _connect(self) -> Connection:
        if self._engine is None:
            if self._sqlite:  # read-only: the file appears with the first import
                self._engine = _engine(f"sqlite:///file:{self.path}?mode=ro&uri=true")
            else:
                engine = _engine(self.url)
                with engine.begin() as conn:  # a shared database's tables exist before any import
                    schema.upgrade(conn, SCHEMA)
                self._engine = engine
        return self._engine.connect()

    def _read_catalog(self) -> dict[str, list[ImportedTimeframe]]:
        with self._connect() as conn:
            rows = conn.execute(select(imports.c.symbol, imports.c.timeframe, imports.c.rows, imports.c.first_time,
                                       imports.c.last_time, imports.c.digits, imports.c.revision)).all()
        catalog: dict[str, list[ImportedTimeframe]] = {}
        for symbol, tf, n, first, last, digits, revision in rows:
            entry = ImportedTimeframe(symbol, Timeframe(tf), n, from_unix(first), from_unix(last), digits, revision)
            catalog.setdefault(symbol, []).append(entry)
        for entries in catalog.values():
            entries.sort(key=lambda e: e.timeframe.seconds)
        return catalog

    def _read_series(self, symbol: str, tf: Timeframe) -> CandleSeries:
        c = candles.c
        with self._connect() as conn:
            rows = conn.execute(select(c.time, c.open, c.high, c.low, c.close, c.volume)
                                .where((c.symbol == symbol) & (c.timeframe == tf.value)).order_by(c.time)).all()
        table = np.array(rows, dtype=np.float64).reshape(-1, 6)
        columns = [np.ascontiguousarray(table[:, i]) for i in range(6)]
        columns[0] = columns[0].astype(np.int64)
        for column in columns:
            column.flags.writeable = False
        return CandleSeries(symbol, tf, *columns)
