"""Imported market data: CSV import into a store, and a cached reader.

The store is the file `market.sqlite` in the data directory, or the database DATABASE_URL names (PostgreSQL: every
replica of the service then serves the same imports). Table `candles` holds the bars by
(symbol, timeframe, time) and table `imports` one row per imported (symbol, timeframe) with its extent and the price
precision seen in the file. Each import of a (symbol, timeframe) replaces the previous one in a single transaction, so
readers see either the old data or the new, never a mix.

CSV format
----------
* Header row required; names are matched case-insensitively and surrounding spaces are ignored. Delimiter: comma,
  semicolon, tab or pipe (detected from the header).
* Time column: the first of `time`, `date`, `datetime`, `timestamp` present; when both `date` and `time` exist (as
  MetaTrader exports them) they are joined. Accepted values: ISO-8601 with or without a zone (naive times are UTC),
  e.g. `2025-01-02T13:00:00Z`, `2025-01-02 13:00:00`, `2025-01-02`; `2025.01.02 13:00` (MetaTrader); or a plain
  number, read as unix seconds, or as unix milliseconds when >= 1e11 (years 1900-2199). Sub-second parts are
  truncated.
* `open`, `high`, `low`, `close` required; `volume` optional (0 when absent). Other columns are ignored.
* Every row is validated before anything is written: numbers must parse and be finite, prices positive, volume not
  negative, low <= open, close <= high, no duplicate times. Rows may be in any order (they are sorted). The first
  problem is reported as `line N: column 'c': …` (N is the 1-based line in the file, the header being line 1); up to
  ten problems are listed as field violations.
* Symbol: 3 to 12 letters or digits (upper-cased).
* Timeframe: when not given it is inferred as the most common spacing between consecutive bars, which must be one of
  the supported timeframes. Bars closer together than half the timeframe are rejected.
"""
from __future__ import annotations

import io
import math
import os
import re
import secrets
import threading
import time as _time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger, Column, Connection, Double, Engine, Integer, MetaData, Table, Text, create_engine, delete, insert,
    select, text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from services.common import schema, storage
from services.common.errors import FieldViolation, InvalidArgument, Unavailable
from services.common.market_types import CandleSeries, Timeframe, from_unix

DB_FILE = "market.sqlite"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{3,12}")
TIME_COLUMNS = ("time", "date", "datetime", "timestamp")
PRICE_COLUMNS = ("open", "high", "low", "close")
EPOCH_MILLIS_THRESHOLD = 1e11  # larger plain numbers are milliseconds (1e11 s would be the year 5138)
MAX_REPORTED_PROBLEMS = 10


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
            f"invalid symbol {symbol!r}: use 3 to 12 letters or digits, e.g. EURUSD", field="symbol"
        )
    return normalized


# --- import ----------------------------------------------------------------------------------------------------------


def import_csv(path: Path, symbol: str, timeframe: Timeframe | str | None, data_dir: Path) -> ImportReport:
    """Validate the whole CSV at `path`, then store it as the bars of `symbol` at `timeframe` (inferred when None),
    replacing any previous import of that symbol and timeframe. Raises InvalidArgument and writes nothing when any
    row is bad (see the module docstring for the format)."""
    symbol = validate_symbol(symbol)
    tf = Timeframe.parse(timeframe) if timeframe is not None else None
    bars = parse_csv(Path(path))
    tf = _check_timeframe(bars, tf)
    replaced = _write(database_url(data_dir), symbol, tf, bars, source=str(path))
    return ImportReport(
        symbol=symbol,
        timeframe=tf,
        rows=len(bars.time),
        first_time=from_unix(bars.time[0]),
        last_time=from_unix(bars.time[-1]),
        replaced_rows=replaced,
    )


@dataclass(frozen=True)
class ParsedBars:
    """Validated bars sorted by time, with the file line of each bar (for later error messages)."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    line: np.ndarray
    digits: int


def parse_csv(path: Path) -> ParsedBars:
    """Read and validate a CSV file into sorted bars; InvalidArgument on the first problem (by file line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidArgument(f"file not found: {path}", field="path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"cannot read {path}: {e}", field="path") from None
    return parse_csv_text(text, name=str(path))


def parse_csv_text(text: str, name: str = "the file") -> ParsedBars:
    if not text.strip():
        raise InvalidArgument(f"{name} is empty: expected a header row and data rows", field="file")
    body = text.lstrip("\r\n")
    first_line = 1 + text[: len(text) - len(body)].count("\n")  # file line of the header
    try:
        # Everything as text, so each cell can be validated and reported by line; the C parser keeps this fast.
        frame = pd.read_csv(
            io.StringIO(body),
            sep=_delimiter(body.splitlines()[0]),
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,  # keeps row i on file line first_line + 1 + i
            skipinitialspace=True,
            engine="c",
        )
    except pd.errors.ParserError as e:
        wrong = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if wrong:
            expected, line, saw = (int(g) for g in wrong.groups())
            raise InvalidArgument(
                f"line {line + first_line - 1}: {saw} fields but the header has {expected} "
                "(a decimal comma in a comma-separated file?)",
                field="file",
            ) from None
        raise InvalidArgument(f"{name} is not a readable CSV file: {e}", field="file") from None
    header = [str(c).strip().lower() for c in frame.columns]
    columns = _locate_columns(header)
    lines = np.arange(len(frame), dtype=np.int64) + first_line + 1
    blank = _blank_rows(frame)
    if blank.any():
        frame, lines = frame[~blank], lines[~blank]
    if len(frame) == 0:
        raise InvalidArgument(f"{name} has a header but no data rows", field="file")
    cells: dict[str, np.ndarray] = {}
    for column, where in columns.items():
        if isinstance(where, tuple):  # separate date and time columns
            joined = frame.iloc[:, where[0]].str.strip() + " " + frame.iloc[:, where[1]].str.strip()
            cells[column] = joined.to_numpy(dtype=object)
        else:
            cells[column] = frame.iloc[:, where].to_numpy(dtype=object)
    time_label = "date' + 'time" if isinstance(columns["time"], tuple) else header[columns["time"]]
    return _validate(cells, lines, time_label)


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty or white space (blank lines in the file)."""
    blank = (frame.iloc[:, 0].str.strip() == "").to_numpy(copy=True)
    if blank.any():
        candidates = frame[blank]
        blank[blank] = np.all([(candidates[c].str.strip() == "").to_numpy() for c in frame.columns], axis=0)
    return blank


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _locate_columns(header: list[str]) -> dict[str, int | tuple[int, int]]:
    """Map logical column -> index in the header; 'time' may be a (date, time) pair."""
    index = {name: i for i, name in reversed(list(enumerate(header)))}  # first occurrence wins
    found: dict[str, int | tuple[int, int]] = {}
    if "date" in index and "time" in index:
        found["time"] = (index["date"], index["time"])
    else:
        for name in TIME_COLUMNS:
            if name in index:
                found["time"] = index[name]
                break
    missing = [c for c in ("time", *PRICE_COLUMNS) if c not in found and c not in index]
    if missing:
        wanted = "a time column (time, date, datetime or timestamp)" if "time" in missing else ""
        names = [c for c in missing if c != "time"]
        parts = [p for p in (wanted, ", ".join(names)) if p]
        raise InvalidArgument(
            f"the header lacks required column(s): {'; '.join(parts)}; header is {', '.join(header)}", field="file"
        )
    for name in (*PRICE_COLUMNS, "volume"):
        if name in index:
            found[name] = index[name]
    return found


class _Problems:
    """Collects row problems found by vectorised checks and raises with the earliest in file order. Within a cell,
    the check run first wins (e.g. "not a number" before "outside the bar's range"), one problem per cell."""

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = lines
        self.found: dict[tuple[int, int], str] = {}  # (line, column rank) -> message

    def check(self, bad: np.ndarray, column: str, message: Callable[[int], str]) -> None:
        rank = _COLUMN_ORDER.index(column)
        for k in np.flatnonzero(bad)[:MAX_REPORTED_PROBLEMS]:
            self.found.setdefault((int(self.lines[k]), rank), message(int(k)))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        first = sorted(self.found.items())[:MAX_REPORTED_PROBLEMS]
        messages = [f"line {line}: {text}" for (line, _), text in first]
        raise InvalidArgument(messages[0], violations=[FieldViolation("file", m) for m in messages])


_COLUMN_ORDER = ("time", *PRICE_COLUMNS, "volume")


def _validate(cells: dict[str, np.ndarray], lines: np.ndarray, time_label: str) -> ParsedBars:
    problems = _Problems(lines)
    raw_time = cells["time"]
    time = _parse_times(raw_time)
    valid_time = time != _BAD_TIME
    problems.check(
        ~valid_time,
        "time",
        lambda k: _describe_bad(
            time_label, raw_time[k], "is not a valid time (expected ISO-8601 such as 2025-01-02T13:00:00Z, "
            "or unix seconds or milliseconds)"
        ),
    )
    order = np.argsort(time, kind="stable")  # stable: equal times keep file order
    sorted_time = time[order]
    repeat = np.r_[False, (sorted_time[1:] == sorted_time[:-1]) & (sorted_time[1:] != _BAD_TIME)]
    duplicate = np.zeros(len(time), dtype=bool)
    duplicate[order[repeat]] = True
    first_seen = np.zeros(len(time), dtype=np.int64)
    first_seen[order[repeat]] = lines[order[np.flatnonzero(repeat) - 1]]
    problems.check(
        duplicate,
        "time",
        lambda k: f"column '{time_label}': duplicate time {from_unix(time[k]).isoformat()} "
        f"(already on line {first_seen[k]})",
    )

    values: dict[str, np.ndarray] = {}
    for name in (*PRICE_COLUMNS, "volume"):
        if name not in cells:
            values[name] = np.zeros(len(lines))
            continue
        text = cells[name]
        number = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype=np.float64, copy=True)
        bad = ~np.isfinite(number)
        number[bad] = np.nan  # comparisons below are then False: one problem per cell
        values[name] = number
        problems.check(bad, name, lambda k, n=name, t=text: _describe_bad(n, t[k], "is not a number"))
        if name == "volume":
            problems.check(number < 0, name, lambda k, v=number: f"column 'volume': {v[k]:g} is negative")
        else:
            problems.check(
                number <= 0, name, lambda k, n=name, v=number: f"column '{n}': price must be positive, got {v[k]:g}"
            )

    o, h, low, c = (values[n] for n in PRICE_COLUMNS)
    problems.check(h < low, "high", lambda k: f"column 'high': high {h[k]:g} is below low {low[k]:g}")
    for name, v in (("open", o), ("close", c)):
        problems.check(
            (h >= low) & ((v < low) | (v > h)),
            name,
            lambda k, n=name, v=v: f"column '{n}': {n} {v[k]:g} is outside the bar's range "
            f"[low {low[k]:g}, high {h[k]:g}]",
        )
    problems.raise_if_any()

    return ParsedBars(
        time=np.ascontiguousarray(sorted_time),
        open=o[order],
        high=h[order],
        low=low[order],
        close=c[order],
        volume=values["volume"][order],
        line=lines[order],
        digits=_decimals(cells["close"]),
    )


def _describe_bad(column: str, text: str, what: str) -> str:
    text = str(text).strip()
    return f"column '{column}': missing value" if not text else f"column '{column}': {text!r} {what}"


_BAD_TIME = np.iinfo(np.int64).min
_EPOCH_RANGE = (-2_208_988_800, 7_258_118_400)  # 1900-01-01 .. 2200-01-01, in unix seconds
_METATRADER_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})")


def _parse_times(text: np.ndarray) -> np.ndarray:
    """Unix seconds per cell; _BAD_TIME where the cell is not a time."""
    series = pd.Series(text, dtype=object).str.strip()
    number = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    numeric = np.isfinite(number)
    seconds = np.full(len(text), _BAD_TIME, dtype=np.int64)
    epoch = np.where(np.abs(number) >= EPOCH_MILLIS_THRESHOLD, number / 1000.0, number)
    plausible = numeric & (epoch >= _EPOCH_RANGE[0]) & (epoch < _EPOCH_RANGE[1])
    seconds[plausible] = np.floor(epoch[plausible]).astype(np.int64)
    if not numeric.all():
        iso = series[~numeric].str.replace(_METATRADER_DATE, r"\1-\2-\3", regex=True)
        parsed = pd.to_datetime(iso, utc=True, format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy()
        whole = (parsed[ok] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        idx = np.flatnonzero(~numeric)[ok]
        seconds[idx] = whole.to_numpy(dtype=np.int64)
    return seconds


def _decimals(text: np.ndarray) -> int:
    """Most decimals written in a price column (how precisely the source quotes), capped at 10; looks at up to
    10,000 evenly spaced cells."""
    step = max(1, len(text) // 10_000)
    s = pd.Series(text[::step], dtype=object).str.strip()
    point = s.str.rfind(".")
    decimals = np.where(point >= 0, s.str.len() - point - 1, 0)
    return int(min(10, max(0, decimals.max())))


def infer_timeframe(time: np.ndarray) -> Timeframe:
    """The timeframe whose length is the most common spacing between consecutive (sorted) bar times."""
    hint = "; pass the timeframe explicitly (--timeframe)"
    if len(time) < 2:
        raise InvalidArgument(f"cannot infer the timeframe from a single bar{hint}", field="timeframe")
    spacing, counts = np.unique(np.diff(time), return_counts=True)
    common = int(spacing[np.argmax(counts)])
    for tf in Timeframe:
        if tf.seconds == common:
            return tf
    raise InvalidArgument(
        f"cannot infer the timeframe: the most common spacing between bars is {common} s, which is none of "
        f"{', '.join(f'{t.value} ({t.seconds} s)' for t in Timeframe)}{hint}",
        field="timeframe",
    )


def _check_timeframe(bars: ParsedBars, tf: Timeframe | None) -> Timeframe:
    tf = tf or infer_timeframe(bars.time)
    gap = np.diff(bars.time)
    too_close = np.r_[False, gap < tf.seconds / 2]
    if too_close.any():
        k = int(np.argmax(too_close))
        raise InvalidArgument(
            f"line {bars.line[k]}: column 'time': bar is only {gap[k - 1]} s after the previous one "
            f"(line {bars.line[k - 1]}), too close for timeframe {tf.value}",
            field="timeframe",
        )
    return tf


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
    if url.startswith("sqlite"):
        Path(make_url(url).database).parent.mkdir(parents=True, exist_ok=True)
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
            try:
                st = os.stat(self.path)
                version: tuple = (st.st_mtime_ns, st.st_size, st.st_ino, _generation)
            except FileNotFoundError:
                version = (None, _generation)
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
