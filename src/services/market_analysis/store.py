"""Imported market data: CSV import into an SQLite store, and a cached reader.

The store is the file `market.sqlite` in the data directory: table `candles` holds the bars by
(symbol, timeframe, time) and table `imports` one row per imported (symbol, timeframe) with its extent and the price
precision seen in the file. Each import of a (symbol, timeframe) replaces the previous one in a single transaction, so
readers see either the old data or the new, never a mix.

The file's layout (separator, header or not, time columns, date formats) is worked out and every row validated by
csv_import before anything is written. Symbol: 3 to 12 letters or digits (upper-cased). Timeframe: when not given,
the most common spacing between consecutive bars.
"""
from __future__ import annotations

import os
import re
import sqlite3
import threading
import time as _time
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path

import numpy as np

from services.common import storage
from services.common.errors import InvalidArgument, quoted
from services.common.market_types import CandleSeries, Timeframe, from_unix
from services.market_analysis import csv_import
from services.market_analysis.csv_import import ParsedBars

DB_FILE = "market.sqlite"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{3,12}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, rows INTEGER NOT NULL,
    first_time INTEGER NOT NULL, last_time INTEGER NOT NULL, digits INTEGER NOT NULL,
    source TEXT NOT NULL, imported_at INTEGER NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
"""

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
    replaced = _write(db_path(data_dir), symbol, tf, bars, source=str(path))
    return ImportReport(
        symbol=symbol,
        timeframe=tf,
        rows=len(bars.time),
        first_time=from_unix(bars.time[0]),
        last_time=from_unix(bars.time[-1]),
        replaced_rows=replaced,
    )


# --- storage ---------------------------------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    storage.private_file(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.executescript(_SCHEMA)
    return conn


def _write(path: Path, symbol: str, tf: Timeframe, bars: ParsedBars, source: str) -> int:
    """Replace the stored bars of (symbol, tf) by `bars` in one transaction; returns the number of rows replaced."""
    global _generation
    rows = zip(
        repeat(symbol),
        repeat(tf.value),
        bars.time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
    )
    conn = _connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            replaced = conn.execute(
                "DELETE FROM candles WHERE symbol = ? AND timeframe = ?", (symbol, tf.value)
            ).rowcount
            conn.executemany(
                "INSERT INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            conn.execute(
                "INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    symbol,
                    tf.value,
                    len(bars.time),
                    int(bars.time[0]),
                    int(bars.time[-1]),
                    bars.digits,
                    source,
                    int(_time.time()),
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    with _generation_lock:
        _generation += 1
    return max(replaced, 0)


# --- reading ---------------------------------------------------------------------------------------------------------


class ImportedStore:
    """Read side of the store, cached: catalogue and series are re-read only when the database file changes (its
    mtime, size or inode, or an import in this process), so a running service sees new imports. Thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.path = db_path(Path(data_dir))
        self._lock = threading.Lock()
        self._version: tuple | None = None
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
                self._series[key] = self._read_series(symbol, tf)
            return self._series[key]

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            version: tuple = (st.st_mtime_ns, st.st_size, st.st_ino, _generation)
        except FileNotFoundError:
            version = (None, _generation)
        if version == self._version:
            return
        self._series.clear()
        self._catalog = self._read_catalog() if version[0] is not None else {}
        self._version = version

    def _open(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=30)

    def _read_catalog(self) -> dict[str, list[ImportedTimeframe]]:
        conn = self._open()
        try:
            rows = conn.execute(
                "SELECT symbol, timeframe, rows, first_time, last_time, digits FROM imports"
            ).fetchall()
        except sqlite3.OperationalError:  # file exists but no import has completed yet
            rows = []
        finally:
            conn.close()
        catalog: dict[str, list[ImportedTimeframe]] = {}
        for symbol, tf, n, first, last, digits in rows:
            entry = ImportedTimeframe(symbol, Timeframe(tf), n, from_unix(first), from_unix(last), digits)
            catalog.setdefault(symbol, []).append(entry)
        for entries in catalog.values():
            entries.sort(key=lambda e: e.timeframe.seconds)
        return catalog

    def _read_series(self, symbol: str, tf: Timeframe) -> CandleSeries:
        conn = self._open()
        try:
            cursor = conn.execute(
                "SELECT time, open, high, low, close, volume FROM candles "
                "WHERE symbol = ? AND timeframe = ? ORDER BY time",
                (symbol, tf.value),
            )
            table = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 6)
        finally:
            conn.close()
        columns = [np.ascontiguousarray(table[:, i]) for i in range(6)]
        columns[0] = columns[0].astype(np.int64)
        for c in columns:
            c.flags.writeable = False
        return CandleSeries(symbol, tf, *columns)

