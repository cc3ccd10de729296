"""Reading bar files as people have them: a CSV's layout is worked out from the file itself, then every row is
validated before anything is stored (store.import_csv writes the result in one transaction).

What is recognised without options
----------------------------------
* Text: UTF-8 (with or without a BOM), UTF-16 with its BOM (Excel's "Unicode text"), else Windows-1252; bytes none
  of these reads are refused by line.
* Separator: comma, semicolon, tab or pipe, sniffed as the one that splits the first lines into the same number of
  fields (at least four). With `;`, tab or `|` a decimal comma (`1,0845`) is read as a decimal point.
* Header or not: a first line with no numbers is a header; a first line with at least four numbers is data, and the
  columns are the conventional order: time (one column, or date and time in two), open, high, low, close, then
  optionally volume; MetaTrader 5's nine-column export (… close, tickvol, vol, spread) takes tickvol as volume.
* Header names, case-insensitive, spaces, `_` and MetaTrader's `<…>` brackets ignored: time, date, datetime,
  timestamp, `Gmt time` (Dukascopy), `DTYYYYMMDD`; date and time in two columns are joined; an empty first name is
  an unnamed index (pandas `df.to_csv()` with a DatetimeIndex) and holds the time when no column is named so.
  open, high, low, close required; volume from volume, tickvol, tick_volume, vol or real_volume (0 when absent).
  A ticker, symbol or instrument column names the symbol (one per file), so none needs to be given. Other columns
  are ignored. A name read for a column must not appear twice (which one would hold the prices is ambiguous).
* Times: ISO-8601 with or without a zone (naive = UTC); `2025.01.02 13:00` (MetaTrader); `20250102 130000`;
  `02.01.2025 13:00:00.000` (day first, as Dukascopy writes it); `01/02/2025` and `01-02-2025` when some date in the
  file settles the day/month order (else an error says so); unix seconds, or milliseconds when >= 1e11.
* Rows: numbers finite, prices positive, volume not negative, low <= open, close <= high, no duplicate times; rows
  may come in any order. The first problem is reported as `line N: column 'c': …` (N is the file's line), up to ten
  as field violations. Blank lines are skipped but counted.
"""
from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from services.common.errors import FieldViolation, InvalidArgument, quoted
from services.common.market_types import Timeframe, from_unix

PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_NAMES = ("time", "date", "datetime", "timestamp", "gmttime", "dtyyyymmdd")  # first present wins
DATE_NAMES = ("date", "dtyyyymmdd")  # joined with a `time` column when both exist
VOLUME_NAMES = ("volume", "tickvol", "tickvolume", "vol", "realvolume")
SYMBOL_NAMES = ("ticker", "symbol", "instrument")  # a column naming the symbol: then --symbol is not needed
SEPARATORS = ("\t", ";", ",", "|")
SNIFF_LINES = 20
MIN_FIELDS = 4  # a bar needs at least open, high, low, close
EPOCH_MILLIS_THRESHOLD = 1e11  # larger plain numbers are milliseconds (1e11 s would be the year 5138)
MAX_REPORTED_PROBLEMS = 10
_COLUMN_ORDER = ("symbol", "time", *PRICE_COLUMNS, "volume")


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
    symbol: str | None = None  # what the file's ticker/symbol column says, if it has one


@dataclass(frozen=True)
class Layout:
    """Where each logical column is: an index, or (date, time) indexes for a time split in two."""

    columns: dict[str, int | tuple[int, int]]
    header: bool
    time_label: str  # how errors name the time column


def read(path: Path) -> ParsedBars:
    """Read and validate the CSV file at `path`; InvalidArgument on the first problem (by file line)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"file not found: {path}", field="path") from None
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e}", field="path") from None
    return parse_text(decode(raw, str(path)), name=str(path))


def decode(raw: bytes, name: str = "the file") -> str:
    """UTF-8 (with or without a BOM); UTF-16 marked by its BOM (Excel's "Unicode text"); else Windows-1252, what
    Windows tools write when not UTF-8 (times and prices are ASCII in all three)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"{name} starts as UTF-16 text but byte {e.start} is not: {e.reason}",
                                  field="file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as utf8:
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            line = raw.count(b"\n", 0, utf8.start) + 1
            column = utf8.start - raw.rfind(b"\n", 0, utf8.start)
            raise InvalidArgument(f"line {line}: byte {column} (0x{raw[utf8.start]:02x}) is not text: {name} is "
                                  "neither UTF-8, UTF-16 with a BOM, nor Windows-1252",
                                  violations=[FieldViolation("file", f"line {line}")]) from None


def parse_text(text: str, name: str = "the file") -> ParsedBars:
    if not text.strip():
        raise InvalidArgument(f"{name} is empty: expected bars, one per line (time, open, high, low, close)",
                              field="file")
    body = text.lstrip("\r\n")
    first_line = 1 + text[: len(text) - len(body)].count("\n")  # file line of the first row
    sep = sniff_separator(body)
    frame = _read_cells(body, sep, first_line, name)
    lines = np.arange(len(frame), dtype=np.int64) + first_line
    layout = _layout(frame, first_line)
    if layout.header:
        frame, lines = frame.iloc[1:], lines[1:]
    blank = _blank_rows(frame)
    if blank.any():
        frame, lines = frame[~blank], lines[~blank]
    if len(frame) == 0:
        raise InvalidArgument(f"{name} has a header but no data rows", field="file")
    cells: dict[str, np.ndarray] = {}
    for column, where in layout.columns.items():
        if isinstance(where, tuple):
            joined = frame.iloc[:, where[0]].str.strip() + " " + frame.iloc[:, where[1]].str.strip()
            cells[column] = joined.to_numpy(dtype=object)
        else:
            values = frame.iloc[:, where]
            if column != "time" and sep != ",":
                values = values.str.replace(",", ".", regex=False)  # decimal comma
            cells[column] = values.to_numpy(dtype=object)
    bars = _validate(cells, lines, layout.time_label)
    return bars if "symbol" not in cells else replace(bars, symbol=_one_symbol(cells["symbol"], lines))


def _one_symbol(cells: np.ndarray, lines: np.ndarray) -> str:
    names = pd.Series(cells, dtype=object).astype(str).str.strip().str.upper().to_numpy()
    other = np.flatnonzero(names != names[0])
    if len(other):
        k = other[0]
        raise InvalidArgument(f"line {lines[k]}: column 'symbol': {names[k]}, but line {lines[0]} says {names[0]}; "
                              "import one symbol per file", violations=[FieldViolation("file", f"line {lines[k]}")])
    return str(names[0])


def symbol_of(bars: ParsedBars, given: str | None) -> str:
    """The symbol to store the bars under: `given`, else the one the file names; an error when neither says, or
    when they disagree."""
    if given and bars.symbol and given.strip().upper() != bars.symbol:
        raise InvalidArgument(f"the file's bars are {bars.symbol}, not {given}", field="symbol")
    if not given and not bars.symbol:
        raise InvalidArgument("the file does not name its symbol: pass it (--symbol EURUSD)", field="symbol")
    return given or bars.symbol


def sniff_separator(body: str) -> str:
    """The separator that splits the first non-blank lines into one same number (>= MIN_FIELDS) of fields; else the
    most frequent one on the first line (rows that disagree are then reported by line)."""
    sample = [ln for ln in body.splitlines()[: SNIFF_LINES * 2] if ln.strip()][:SNIFF_LINES]
    for sep in SEPARATORS:
        counts = {ln.count(sep) for ln in sample}
        if len(counts) == 1 and counts.pop() >= MIN_FIELDS - 1:
            return sep
    counts = {sep: sample[0].count(sep) for sep in SEPARATORS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _read_cells(body: str, sep: str, first_line: int, name: str) -> pd.DataFrame:
    try:
        # Everything as text, so each cell can be validated and reported by line; the C parser keeps this fast.
        return pd.read_csv(io.StringIO(body), sep=sep, header=None, dtype=str, na_filter=False,
                           skip_blank_lines=False,  # keeps row i on file line first_line + i
                           skipinitialspace=True, engine="c")
    except pd.errors.ParserError as e:
        wrong = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if wrong:
            expected, line, saw = (int(g) for g in wrong.groups())
            hint = " (a decimal comma in a comma-separated file?)" if sep == "," else ""
            raise InvalidArgument(f"line {line + first_line - 1}: {saw} fields but the header has {expected}{hint}",
                                  field="file") from None
        raise InvalidArgument(f"{name} is not a readable CSV file: {e}", field="file") from None


def _numeric(cells: pd.Series) -> np.ndarray:
    fixed = cells.str.strip().str.replace(",", ".", regex=False)
    return np.isfinite(pd.to_numeric(fixed, errors="coerce").to_numpy(dtype=np.float64))


def _layout(frame: pd.DataFrame, first_line: int) -> Layout:
    first = frame.iloc[0].astype(str)
    numbers = int(_numeric(first).sum())
    if numbers == 0:
        return _header_layout([_normalize_name(c) for c in first], first_line)
    if numbers >= MIN_FIELDS:
        return _headerless_layout(frame, first_line)
    raise InvalidArgument(
        f"line {first_line}: neither a header (names such as time, open, high, low, close) nor a bar (a time and at "
        f"least four prices): {', '.join(first)}", violations=[FieldViolation("file", f"line {first_line}")])


def _normalize_name(name: str) -> str:
    return re.sub(r"[\s_<>]", "", str(name)).lower()


def _header_layout(header: list[str], line: int) -> Layout:
    index = {name: i for i, name in reversed(list(enumerate(header)))}
    used = {*TIME_NAMES, *PRICE_COLUMNS, *VOLUME_NAMES, *SYMBOL_NAMES}
    twice = next((n for i, n in enumerate(header) if n in used and index[n] != i), None)
    if twice is not None:
        first, second = [i + 1 for i, n in enumerate(header) if n == twice][:2]
        raise InvalidArgument(f"line {line}: columns {first} and {second} are both named '{twice}', so which one to "
                              "read is ambiguous; rename or remove one",
                              violations=[FieldViolation("file", f"line {line}")])
    found: dict[str, int | tuple[int, int]] = {}
    label = ""
    date = next((n for n in DATE_NAMES if n in index), None)
    if date and "time" in index:
        found["time"], label = (index[date], index["time"]), f"{header[index[date]]}' + '{header[index['time']]}"
    elif name := next((n for n in TIME_NAMES if n in index), None):
        found["time"], label = index[name], name
    elif header[0] == "":  # pandas' unnamed index: df.to_csv() of a frame indexed by time
        found["time"], label = 0, "time (the unnamed first column)"
    missing = [c for c in PRICE_COLUMNS if c not in index]
    if "time" not in found or missing:
        parts = (["a time column (time, date, datetime, timestamp, or an unnamed first column)"]
                 if "time" not in found else []) + missing
        raise InvalidArgument(f"line {line}: the header lacks required column(s): {'; '.join(parts)}; header is "
                              f"{', '.join(header)}", violations=[FieldViolation("file", f"line {line}")])
    for name in PRICE_COLUMNS:
        found[name] = index[name]
    if volume := next((n for n in VOLUME_NAMES if n in index), None):
        found["volume"] = index[volume]
    if ticker := next((n for n in SYMBOL_NAMES if n in index), None):
        found["symbol"] = index[ticker]
    return Layout(found, header=True, time_label=label)


_DATE_CELL = re.compile(r"^(\d{4}[.\-/]\d{1,2}[.\-/]\d{1,2}|\d{1,2}[.\-/]\d{1,2}[.\-/]\d{4}|\d{8})$")
_TIME_CELL = re.compile(r"^(\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?|\d{6}|\d{4})$")


def _headerless_layout(frame: pd.DataFrame, first_line: int) -> Layout:
    """The conventional order: time (or date, time), open, high, low, close[, volume]; MetaTrader 5 exports
    (… close, tickvol, vol, spread) take tickvol as the volume. Trailing empty columns (a separator at the end of
    each line) are ignored."""
    width = frame.shape[1]
    while width > 0 and (frame.iloc[:, width - 1].str.strip() == "").all():
        width -= 1
    first = [str(c).strip() for c in frame.iloc[0, :width]]
    split = width > 1 and bool(_DATE_CELL.match(first[0])) and bool(_TIME_CELL.match(first[1]))
    if split and len(first[1]) in (4, 6) and ":" not in first[1] and len(first[0]) != 8:
        split = False  # a bare 1300 or 130000 is a time only beside a compact 20250102 date
    start = 2 if split else 1
    values = width - start
    if values not in (4, 5, 7):
        raise InvalidArgument(
            f"line {first_line}: {width} columns and no header; without one, columns must be time (or date and time), open, "
            "high, low, close and optionally volume; add a header row naming the columns", field="file")
    columns: dict[str, int | tuple[int, int]] = {"time": (0, 1) if split else 0}
    columns.update({name: start + i for i, name in enumerate(PRICE_COLUMNS)})
    if values > 4:
        columns["volume"] = start + 4
    return Layout(columns, header=False, time_label="date' + 'time" if split else "time")


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty or white space (blank lines in the file)."""
    blank = (frame.iloc[:, 0].str.strip() == "").to_numpy(copy=True)
    if blank.any():
        candidates = frame[blank]
        blank[blank] = np.all([(candidates[c].str.strip() == "").to_numpy() for c in frame.columns], axis=0)
    return blank


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


def _validate(cells: dict[str, np.ndarray], lines: np.ndarray, time_label: str) -> ParsedBars:
    problems = _Problems(lines)
    raw_time = cells["time"]
    time = _parse_times(raw_time, lines, time_label)
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
    return f"column '{column}': missing value" if not text else f"column '{column}': {quoted(text)} {what}"


_BAD_TIME = np.iinfo(np.int64).min
_EPOCH_RANGE = (-2_208_988_800, 7_258_118_400)  # 1900-01-01 .. 2200-01-01, in unix seconds
_YEAR_FIRST = re.compile(r"^(\d{4})[./-](\d{1,2})[./-](\d{1,2})(?!\d)")  # 2025.01.02 (MetaTrader), 2025/1/2
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[ T](\d{2})(\d{2})(\d{2})?)?$")  # 20250102 130000
_YEAR_LAST = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4})")  # 02.01.2025, 01/02/2025, 01-02-2025


def _iso_date(year: str, month: str, day: str) -> str:
    return f"{year}-{int(month):02d}-{int(day):02d}"


def _day_first(series: pd.Series, lines: np.ndarray, label: str) -> bool | None:
    """For dates written with the year last: True when the day comes first, False when the month does, None when no
    cell is so written. '.' means day first (the European convention); '/' and '-' are settled by a part above 12,
    or the file is ambiguous."""
    parts = series.str.extract(_YEAR_LAST)
    written = parts[0].notna().to_numpy()
    if not written.any():
        return None
    if (parts[1][written] == ".").all():
        return True
    a, b = parts[0][written].astype(int).to_numpy(), parts[2][written].astype(int).to_numpy()
    if (a > 12).any() and (b > 12).any():
        k = np.flatnonzero(written)[int(np.argmax(b > 12))]
        raise InvalidArgument(f"line {lines[k]}: column '{label}': {quoted(series.iloc[k])} puts the month first, but "
                              "earlier dates put the day first", violations=[FieldViolation("file", f"line {lines[k]}")])
    if (a > 12).any():
        return True
    if (b > 12).any():
        return False
    k = np.flatnonzero(written)[0]
    raise InvalidArgument(
        f"line {lines[k]}: column '{label}': {quoted(series.iloc[k])} could be day/month or month/day, and no date in the "
        "file settles it; write dates as YYYY-MM-DD", violations=[FieldViolation("file", f"line {lines[k]}")])


def _parse_times(text: np.ndarray, lines: np.ndarray, label: str) -> np.ndarray:
    """Unix seconds per cell; _BAD_TIME where the cell is not a time."""
    series = pd.Series(text, dtype=object).astype(str).str.strip()
    series = series.str.replace(_COMPACT, lambda m: f"{m[1]}-{m[2]}-{m[3]} {m[4] or '00'}:{m[5] or '00'}:{m[6] or '00'}",
                                regex=True)
    day_first = _day_first(series, lines, label)
    if day_first is not None:
        day, month = (1, 3) if day_first else (3, 1)
        series = series.str.replace(_YEAR_LAST, lambda m: _iso_date(m[4], m[month], m[day]), regex=True)
    number = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    numeric = np.isfinite(number)
    seconds = np.full(len(text), _BAD_TIME, dtype=np.int64)
    epoch = np.where(np.abs(number) >= EPOCH_MILLIS_THRESHOLD, number / 1000.0, number)
    plausible = numeric & (epoch >= _EPOCH_RANGE[0]) & (epoch < _EPOCH_RANGE[1])
    seconds[plausible] = np.floor(epoch[plausible]).astype(np.int64)
    if not numeric.all():
        iso = series[~numeric].str.replace(_YEAR_FIRST, lambda m: _iso_date(m[1], m[2], m[3]), regex=True)
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


def check_timeframe(bars: ParsedBars, tf: Timeframe | None) -> Timeframe:
    """`tf`, or the one the bars' spacing says; InvalidArgument naming the line of a bar too close to the last."""
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
