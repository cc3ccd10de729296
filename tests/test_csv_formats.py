"""`fxplat data import` meets the CSV files people have: pandas, broker and MetaTrader exports, with no options but the
symbol. Each file is written by the test; the stored bars must be exactly the ones written."""
from __future__ import annotations

import codecs
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fxplat.cli import app
from services.market_analysis.store import ImportedStore

T0 = datetime(2025, 3, 3, tzinfo=timezone.utc)  # a Monday
N = 30


@pytest.fixture
def bars() -> pd.DataFrame:
    """N hourly bars from T0, prices with five decimals, integer volumes."""
    rng = np.random.default_rng(7)
    close = np.round(1.08 + np.cumsum(rng.normal(0, 0.0005, N)), 5)
    open_ = np.r_[1.08, close[:-1]]
    high = np.round(np.maximum(open_, close) + 0.0003, 5)
    low = np.round(np.minimum(open_, close) - 0.0003, 5)
    index = pd.date_range(T0.replace(tzinfo=None), periods=N, freq="h")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.integers(10, 500, N)}, index=index)


def _import(tmp_path, text: str, *extra: str, symbol: str | None = "EURUSD"):
    path = tmp_path / "bars.csv"
    path.write_text(text)
    result = CliRunner().invoke(app, ["data", "import", str(path), *(["--symbol", symbol] if symbol else []),
                                      "--data-dir", str(tmp_path / "data"), *extra])
    return result, ImportedStore(tmp_path / "data")


def _assert_imported(result, store, bars: pd.DataFrame, volume: bool = True):
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"imported {N} H1 bars of EURUSD (2025-03-03 00:00 .. 2025-03-04 05:00 UTC)")
    series = store.load("EURUSD")
    assert list(series.time) == [int(t.timestamp()) for t in bars.index.tz_localize("UTC")]
    for column in ("open", "high", "low", "close"):
        assert series.__getattribute__(column).tolist() == bars[column].tolist(), column
    assert series.volume.tolist() == (bars["volume"].astype(float).tolist() if volume else [0.0] * N)


def _rows(bars: pd.DataFrame, time_format, sep: str = ",", decimal: str = ".", volume: bool = True) -> list[str]:
    out = []
    for t, r in bars.iterrows():
        prices = [f"{r[c]:.5f}".replace(".", decimal) for c in ("open", "high", "low", "close")]
        out.append(sep.join([*time_format(t), *prices, *([str(int(r["volume"]))] if volume else [])]))
    return out


def test_pandas_to_csv_with_a_datetime_index(tmp_path, bars):
    text = bars.to_csv()
    assert text.startswith(",open,high,low,close,volume")  # the unnamed index column
    _assert_imported(*_import(tmp_path, text), bars)


def test_pandas_to_csv_with_a_utc_index_and_tabs(tmp_path, bars):
    text = bars.tz_localize("UTC").to_csv(sep="\t")
    assert "+00:00" in text
    _assert_imported(*_import(tmp_path, text), bars)


def test_semicolons_and_decimal_commas(tmp_path, bars):
    lines = ["Datetime;Open;High;Low;Close;Volume",
             *_rows(bars, lambda t: [f"{t:%Y-%m-%d %H:%M}"], sep=";", decimal=",")]
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_date_and_time_in_two_named_columns(tmp_path, bars):
    lines = ["Date,Time,Open,High,Low,Close,Volume", *_rows(bars, lambda t: [f"{t:%Y-%m-%d}", f"{t:%H:%M:%S}"])]
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_headerless_metatrader4_history_export(tmp_path, bars):
    # MT4 History Center: date, time, open, high, low, close, volume; no header.
    lines = _rows(bars, lambda t: [f"{t:%Y.%m.%d}", f"{t:%H:%M}"])
    _assert_imported(*_import(tmp_path, "\n".join(lines) + "\n"), bars)


def test_headerless_one_time_column_and_no_volume(tmp_path, bars):
    lines = _rows(bars, lambda t: [f"{t:%Y-%m-%dT%H:%M:%SZ}"], volume=False)
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars, volume=False)


def test_headerless_unix_seconds_with_semicolons(tmp_path, bars):
    lines = _rows(bars, lambda t: [str(int(t.tz_localize("UTC").timestamp()))], sep=";")
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_metatrader5_bracketed_header_with_tabs(tmp_path, bars):
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>",
             *[line + "\t0\t12" for line in _rows(bars, lambda t: [f"{t:%Y.%m.%d}", f"{t:%H:%M:%S}"], sep="\t")]]
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_metatrader5_export_without_its_header(tmp_path, bars):
    lines = [line + "\t0\t12" for line in _rows(bars, lambda t: [f"{t:%Y.%m.%d}", f"{t:%H:%M:%S}"], sep="\t")]
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_metatrader4_ticker_and_compact_date_need_no_symbol(tmp_path, bars):
    lines = ["<TICKER>,<DTYYYYMMDD>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>",
             *["EURUSD," + line for line in _rows(bars, lambda t: [f"{t:%Y%m%d}", f"{t:%H%M%S}"])]]
    _assert_imported(*_import(tmp_path, "\n".join(lines), symbol=None), bars)


@pytest.mark.parametrize(("tickers", "symbol", "message"), [
    (None, None, "the file does not name its symbol: pass it (--symbol EURUSD)"),
    ("EURUSD", "GBPUSD", "the file's bars are EURUSD, not GBPUSD"),
    ("mixed", None, "line 3: column 'symbol': GBPUSD, but line 2 says EURUSD; import one symbol per file"),
])
def test_the_symbol_from_the_file_or_the_option_must_agree(tmp_path, bars, tickers, symbol, message):
    rows = _rows(bars, lambda t: [f"{t:%Y-%m-%d %H:%M}"])
    if tickers is None:
        lines = ["time,open,high,low,close,volume", *rows]
    else:
        names = ["EURUSD", "GBPUSD"] if tickers == "mixed" else [tickers] * 2
        lines = ["symbol,time,open,high,low,close,volume", *[f"{names[min(i, 1)]},{r}" for i, r in enumerate(rows)]]
    result, store = _import(tmp_path, "\n".join(lines), symbol=symbol)
    assert result.exit_code == 2 and message in result.output, result.output
    assert store.symbols() == []


def test_dukascopy_gmt_time_day_first(tmp_path, bars):
    lines = ["Gmt time,Open,High,Low,Close,Volume", *_rows(bars, lambda t: [f"{t:%d.%m.%Y %H:%M:%S}.000"])]
    _assert_imported(*_import(tmp_path, "\n".join(lines)), bars)


def test_month_first_dates_settled_by_a_day_above_twelve(tmp_path, bars):
    later = bars.set_axis(bars.index + pd.Timedelta(days=10))  # 13-14 March: 03/13/2025 can only be month first
    lines = ["time,open,high,low,close,volume", *_rows(later, lambda t: [f"{t:%m/%d/%Y %H:%M}"])]
    result, store = _import(tmp_path, "\n".join(lines))
    assert result.exit_code == 0, result.output
    assert store.load("EURUSD").time[0] == int(later.index[0].tz_localize("UTC").timestamp())


def _import_bytes(tmp_path, raw: bytes):
    path = tmp_path / "bars.csv"
    path.write_bytes(raw)
    result = CliRunner().invoke(app, ["data", "import", str(path), "--symbol", "EURUSD", "--data-dir",
                                      str(tmp_path / "data")])
    return result, ImportedStore(tmp_path / "data")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_unicode_text_with_a_byte_order_mark(tmp_path, bars, encoding):
    """Excel's "Unicode text" is UTF-16 with its BOM, tab-separated; here with MetaTrader 5's columns."""
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>",
             *(row + "\t0\t12" for row in _rows(bars, lambda t: [f"{t:%Y.%m.%d}", f"{t:%H:%M:%S}"], sep="\t"))]
    raw = "\r\n".join(lines).encode(encoding)
    if encoding == "utf-16-be":
        raw = codecs.BOM_UTF16_BE + raw
    _assert_imported(*_import_bytes(tmp_path, raw), bars)


def test_windows_1252_text(tmp_path, bars):
    """A file a Windows tool wrote in its own code page: the bars are ASCII, a label in an ignored column is not."""
    lines = ["time;open;high;low;close;volume;Bemerkung", *(row + ";Schlusskurs \u20ac" for row in _rows(
        bars, lambda t: [f"{t:%d.%m.%Y %H:%M}"], sep=";", decimal=","))]
    _assert_imported(*_import_bytes(tmp_path, "\r\n".join(lines).encode("cp1252")), bars)


# --- what the file cannot say, or says wrong: one error naming line and column, nothing stored -----------------------

@pytest.mark.parametrize(("make", "message"), [
    (lambda b: ["time,open,high,low,close,volume", *_rows(b, lambda t: [f"{t:%m/%d/%Y %H:%M}"])],
     "line 2: column 'time': '03/03/2025 00:00' could be day/month or month/day, and no date in the file settles it"),
    (lambda b: [*_rows(b, lambda t: [f"{t:%Y.%m.%d}", f"{t:%H:%M}"])[:4], "2025.03.03,04:00,1.08,1.09,x,1.08,5"],
     "line 5: column 'low': 'x' is not a number"),
    (lambda b: ["EURUSD,H1,1.5,0.1,Broker,UTC", *_rows(b, lambda t: [f"{t:%Y-%m-%d %H:%M}"])],
     "line 1: neither a header"),
    (lambda b: [line + ",7" for line in _rows(b, lambda t: [f"{t:%Y-%m-%d %H:%M}"])],
     "line 1: 7 columns and no header"),
    (lambda b: [",open,high,low,close", "2025-03-03 00:00,1.1,1.2,1.0"],
     "line 2: column 'close': missing value"),
    (lambda b: ["time,open,high,low,close,Close", *_rows(b, lambda t: [f"{t:%Y-%m-%d %H:%M}"], volume=False)],
     "line 1: columns 5 and 6 are both named 'close'"),
    (lambda b: ["time,open,high,low,last", *_rows(b, lambda t: [f"{t:%Y-%m-%d %H:%M}"], volume=False)],
     "line 1: the header lacks required column(s): close"),
])
def test_ambiguous_or_broken_files_are_refused_whole(tmp_path, bars, make, message):
    result, store = _import(tmp_path, "\n".join(make(bars)))
    assert result.exit_code == 2
    assert message in result.output, result.output
    assert store.symbols() == []


def test_bytes_that_are_no_text_are_refused_by_line(tmp_path, bars):
    lines = ["time,open,high,low,close", *_rows(bars, lambda t: [f"{t:%Y-%m-%d %H:%M}"], volume=False)[:3]]
    raw = "\n".join(lines).encode() + b"\n2025-03-03 03:00,1.08\x81,1.09,1.07,1.08\n"  # 0x81: in no code page tried
    result, store = _import_bytes(tmp_path, raw)
    assert result.exit_code == 2
    assert "line 5: byte 22 (0x81) is not text" in result.output, result.output
    assert store.symbols() == []
