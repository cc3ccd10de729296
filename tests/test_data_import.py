"""CSV import into the SQLite store, its validation, and how imported data is served by the domain."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.common.market_types import Timeframe, TimeRange
from services.market_analysis.domain import MarketAnalysisDomain
from services.market_analysis.models import CandlesQuery
from services.market_analysis.store import ImportedStore, db_path, import_csv

T0 = int(datetime(2025, 3, 3, 0, 0, tzinfo=timezone.utc).timestamp())  # a Monday


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def bars_csv(n: int = 48, step: int = 3600, start: int = T0, base: float = 1.2) -> str:
    """A valid H1 CSV (ISO times without zone) of n bars."""
    lines = ["time,open,high,low,close,volume"]
    price = base
    for i in range(n):
        o = price
        c = round(o * (1 + 0.001 * np.sin(i)), 5)
        h, lo = round(max(o, c) + 0.0005, 5), round(min(o, c) - 0.0005, 5)
        lines.append(f"{utc(start + i * step):%Y-%m-%d %H:%M:%S},{o:.5f},{h:.5f},{lo:.5f},{c:.5f},{100 + i}")
        price = c
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- good files -----------------------------------------------------------------------------------------------------


def test_import_iso_times_and_read_back(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the reader's read-only URI (file:...) once made ./file:/<data_dir>/market.sqlite
    report = import_csv(write(tmp_path, bars_csv(48)), "gbpusd", Timeframe.H1, data_dir)
    assert (report.symbol, report.timeframe, report.rows, report.replaced_rows) == ("GBPUSD", Timeframe.H1, 48, 0)
    assert report.first_time == utc(T0) and report.last_time == utc(T0 + 47 * 3600)
    assert db_path(data_dir).exists()
    series = ImportedStore(data_dir).load("GBPUSD")
    assert series is not None and len(series) == 48 and series.timeframe is Timeframe.H1
    assert series.time.dtype == np.int64 and series.close.dtype == np.float64
    assert series.time[0] == T0 and series.volume[0] == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.csv"]


def test_epoch_seconds_and_milliseconds(tmp_path, data_dir):
    rows = ["timestamp,open,high,low,close", f"{T0},1.1,1.2,1.0,1.15", f"{T0 + 300},1.15,1.2,1.1,1.12"]
    report = import_csv(write(tmp_path, "\n".join(rows)), "EURUSD", None, data_dir)
    assert report.timeframe is Timeframe.M5 and report.first_time == utc(T0)
    rows_ms = ["timestamp,open,high,low,close", f"{T0 * 1000},1.1,1.2,1.0,1.15", f"{(T0 + 60) * 1000},1.1,1.2,1.0,1.1"]
    report = import_csv(write(tmp_path, "\n".join(rows_ms)), "EURUSD", None, data_dir)
    assert report.timeframe is Timeframe.M1 and report.last_time == utc(T0 + 60)


def test_date_header_uppercase_names_zones_and_no_volume(tmp_path, data_dir):
    text = (
        "Date,OPEN,High,LOW,Close\n"
        "2025-03-03T02:00:00+02:00,1.1,1.2,1.0,1.15\n"  # = 00:00Z
        "2025-03-03T01:00:00Z,1.15,1.2,1.1,1.12\n"
        "2025-03-03 02:00,1.12,1.13,1.11,1.11\n"
    )
    report = import_csv(write(tmp_path, text), "EURUSD", None, data_dir)
    assert report.timeframe is Timeframe.H1 and report.rows == 3
    series = ImportedStore(data_dir).load("EURUSD")
    assert list(series.time - T0) == [0, 3600, 7200]
    assert list(series.volume) == [0, 0, 0]


def test_unsorted_rows_are_sorted(tmp_path, data_dir):
    lines = bars_csv(5).splitlines()
    text = "\n".join([lines[0], *reversed(lines[1:])])
    import_csv(write(tmp_path, text), "EURUSD", "H1", data_dir)
    series = ImportedStore(data_dir).load("EURUSD")
    assert np.all(np.diff(series.time) == 3600)


def test_semicolon_delimiter_and_metatrader_date_time_columns(tmp_path, data_dir):
    text = "Date;Time;Open;High;Low;Close;Volume\n2025.03.03;00:00;1.1;1.2;1.0;1.15;5\n2025.03.03;00:15;1.15;1.2;1.1;1.12;7\n"
    report = import_csv(write(tmp_path, text), "EURUSD", None, data_dir)
    assert report.timeframe is Timeframe.M15 and report.first_time == utc(T0)


# --- bad files ------------------------------------------------------------------------------------------------------


def test_bad_row_names_line_and_column_and_keeps_previous_data(tmp_path, data_dir):
    import_csv(write(tmp_path, bars_csv(10)), "EURUSD", Timeframe.H1, data_dir)
    lines = bars_csv(30, base=1.3).splitlines()
    fields = lines[16].split(",")
    fields[4] = "abc"  # close of file line 17
    lines[16] = ",".join(fields)
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, "\n".join(lines), "bad.csv"), "EURUSD", Timeframe.H1, data_dir)
    assert e.value.message == "line 17: column 'close': 'abc' is not a number"
    series = ImportedStore(data_dir).load("EURUSD")
    assert len(series) == 10 and series.open[0] == pytest.approx(1.2)  # the earlier import is untouched


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2025-03-03 01:00:00,1.1,1.0,1.2,1.1,1", "line 3: column 'high': high 1 is below low 1.2"),
        ("2025-03-03 01:00:00,1.3,1.2,1.0,1.1,1", "line 3: column 'open': open 1.3 is outside the bar's range"),
        ("2025-03-03 01:00:00,1.1,1.2,1.0,0.9,1", "line 3: column 'close': close 0.9 is outside the bar's range"),
        ("2025-03-03 01:00:00,-1.1,1.2,1.0,1.1,1", "line 3: column 'open': price must be positive"),
        ("2025-03-03 01:00:00,1.1,1.2,1.0,1.1,-5", "line 3: column 'volume': -5 is negative"),
        ("yesterday,1.1,1.2,1.0,1.1,1", "line 3: column 'time': 'yesterday' is not a valid time"),
        ("2025-03-03 01:00:00,1.1,,1.0,1.1,1", "line 3: column 'high': missing value"),
        ("2025-03-03 01:00:00,1.1,1.2", "line 3: column 'low': missing value"),
        ("2025-03-03 01:00:00,1.1,1.2,1.0,1.1,1,9", "line 3: 7 fields but the header has 6"),
        ("2025-03-03 00:00:00,1.1,1.2,1.0,1.1,1", "line 3: column 'time': duplicate time 2025-03-03T00:00:00+00:00"),
    ],
)
def test_row_validation_messages(tmp_path, data_dir, row, message):
    text = "time,open,high,low,close,volume\n2025-03-03 00:00:00,1.1,1.2,1.0,1.1,1\n" + row + "\n"
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, text), "EURUSD", Timeframe.H1, data_dir)
    assert e.value.message.startswith(message), e.value.message
    assert ImportedStore(data_dir).symbols() == []


def test_first_problem_in_file_order_is_reported_and_others_listed(tmp_path, data_dir):
    lines = bars_csv(10).splitlines()
    lines[8] = lines[8].replace(",", ",x", 1)  # line 9: bad open
    lines[4] = "not-a-time" + lines[4][19:]  # line 5: bad time
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, "\n".join(lines)), "EURUSD", Timeframe.H1, data_dir)
    assert e.value.message.startswith("line 5: column 'time'")
    assert [v.description[:7] for v in e.value.violations] == ["line 5:", "line 9:"]


def test_blank_lines_are_skipped_and_lines_still_count(tmp_path, data_dir):
    lines = bars_csv(6).splitlines()
    lines[3] = ""  # file line 4 blank
    lines[5] = lines[5].rsplit(",", 2)[0] + ",oops,1"  # file line 6: bad close
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, "\n" + "\n".join(lines)), "EURUSD", Timeframe.H1, data_dir)
    assert e.value.message == "line 7: column 'close': 'oops' is not a number"  # shifted by the leading blank line


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("time,open,high,low,close\n", "no data rows"),
        ("time,open,high,low\n2025-03-03,1,1,1\n", "close"),
        ("open,high,low,close\n1,1,1,1\n", "time column"),
    ],
)
def test_file_level_errors(tmp_path, data_dir, text, fragment):
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, text), "EURUSD", Timeframe.H1, data_dir)
    assert fragment in e.value.message


@pytest.mark.parametrize("symbol", ["EU", "EUR/USD", "X" * 13, ""])
def test_bad_symbol(tmp_path, data_dir, symbol):
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, bars_csv(3)), symbol, Timeframe.H1, data_dir)
    assert e.value.field == "symbol"


def test_timeframe_inference(tmp_path, data_dir):
    # most common spacing wins even with a weekend gap and a missing bar
    times = [T0 + i * 14400 for i in range(10)] + [T0 + 10 * 14400 + 3 * 86400]
    text = "time,open,high,low,close\n" + "".join(f"{t},1.1,1.2,1.0,1.1\n" for t in times)
    assert import_csv(write(tmp_path, text), "EURUSD", None, data_dir).timeframe is Timeframe.H4
    odd = "time,open,high,low,close\n" + "".join(f"{T0 + i * 120},1.1,1.2,1.0,1.1\n" for i in range(5))
    with pytest.raises(InvalidArgument) as e:
        import_csv(write(tmp_path, odd), "EURUSD", None, data_dir)
    assert e.value.field == "timeframe" and "--timeframe" in e.value.message
    with pytest.raises(InvalidArgument) as e:  # declared coarser than the data really is
        import_csv(write(tmp_path, bars_csv(5, step=60)), "EURUSD", Timeframe.H1, data_dir)
    assert "too close for timeframe H1" in e.value.message


def test_reimport_replaces_and_reports_replaced_rows(tmp_path, data_dir):
    import_csv(write(tmp_path, bars_csv(20)), "EURUSD", Timeframe.H1, data_dir)
    report = import_csv(write(tmp_path, bars_csv(5)), "EURUSD", Timeframe.H1, data_dir)
    assert report.replaced_rows == 20 and report.rows == 5
    assert len(ImportedStore(data_dir).load("EURUSD")) == 5


# --- serving imported data ------------------------------------------------------------------------------------------


async def test_imported_data_takes_precedence_over_synthetic(tmp_path, data_dir):
    domain = MarketAnalysisDomain(data_dir)
    before = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, limit=5))
    assert before.series.time[0] == int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
    import_csv(write(tmp_path, bars_csv(48)), "EURUSD", Timeframe.H1, data_dir)
    after = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H1, limit=100))
    assert len(after.series) == 48 and after.series.time[0] == T0  # seen without restarting the domain
    h4 = await domain.get_candles(CandlesQuery("EURUSD", Timeframe.H4, limit=100))
    assert len(h4.series) == 12 and np.all(h4.series.time % 14400 == 0)
    assert h4.series.high[0] == after.series.high[:4].max() and h4.series.volume[0] == after.series.volume[:4].sum()
    with pytest.raises(InvalidArgument) as e:
        await domain.get_candles(CandlesQuery("EURUSD", Timeframe.M5))
    assert e.value.field == "timeframe" and "H1, H4, D1" in e.value.message
    info = {s.symbol: s for s in await domain.list_symbols()}["EURUSD"]
    assert info.source == "imported" and info.first_time == utc(T0) and info.digits == 5


async def test_new_symbol_appears_in_list_symbols(tmp_path, data_dir):
    domain = MarketAnalysisDomain(data_dir)
    assert "XAUUSD" not in {s.symbol for s in await domain.list_symbols()}
    text = bars_csv(30, base=2650.0).replace(".00000", ".00")
    import_csv(write(tmp_path, text), "xauusd", None, data_dir)
    symbols = {s.symbol: s for s in await domain.list_symbols()}
    info = symbols["XAUUSD"]
    assert (info.source, info.base, info.quote, info.first_time) == ("imported", "XAU", "USD", utc(T0))
    assert symbols["GBPUSD"].source == "synthetic"
    assert [s.symbol for s in await domain.list_symbols()] == sorted(symbols)
    page = await domain.get_candles(CandlesQuery("XAUUSD", Timeframe.D1, range=TimeRange(utc(T0), utc(T0 + 86400))))
    assert len(page.series) == 1 and page.series.open[0] == pytest.approx(2650.0)


def test_reader_notices_changes_by_mtime(tmp_path, data_dir):
    store = ImportedStore(data_dir)
    assert store.symbols() == []
    import_csv(write(tmp_path, bars_csv(3)), "EURUSD", Timeframe.H1, data_dir)
    first = store.load("EURUSD")
    assert store.load("EURUSD") is first  # cached
    # A write by another process: only the file changes.
    import sqlite3

    with sqlite3.connect(db_path(data_dir)) as conn:
        conn.execute("DELETE FROM candles WHERE time = ?", (T0,))
    st = os.stat(db_path(data_dir))
    os.utime(db_path(data_dir), ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert len(store.load("EURUSD")) == 2


def test_reader_notices_a_database_that_appears_and_one_that_is_removed(tmp_path, data_dir):
    """The reader asks whether the file exists before it stats it: a database put in place by another process (no
    in-process import to tell it) is read at the next call, and one removed leaves nothing imported."""
    store = ImportedStore(data_dir)
    other = tmp_path / "other"
    other.mkdir()
    import_csv(write(tmp_path, bars_csv(3)), "GBPUSD", Timeframe.H1, other)
    assert store.symbols() == []  # seen after that import: only the file can change what it reads now
    data_dir.mkdir(exist_ok=True)
    os.replace(db_path(other), db_path(data_dir))
    assert store.symbols() == ["GBPUSD"]
    assert len(store.load("GBPUSD")) == 3
    os.unlink(db_path(data_dir))
    assert store.symbols() == []
    assert store.load("GBPUSD") is None
