"""The synthetic market: determinism, trading hours, OHLC consistency, realism, resampling and the built-in
cross-symbol structure (correlation, the EURUSD -> GBPUSD lead-lag link, USDJPY independence)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.common.errors import InvalidArgument
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis import synthetic

NOMINAL = {
    "EURUSD": 1.08, "GBPUSD": 1.27, "USDJPY": 150.0, "USDCHF": 0.88,
    "AUDUSD": 0.66, "USDCAD": 1.36, "NZDUSD": 0.60, "EURGBP": 0.85,
}


def log_returns(symbol: str, tf: Timeframe) -> np.ndarray:
    return np.diff(np.log(synthetic.candles(symbol, tf).close))


def digest(series: CandleSeries) -> str:
    h = hashlib.sha256()
    for c in CandleSeries.COLUMNS:
        h.update(np.ascontiguousarray(getattr(series, c)).tobytes())
    return h.hexdigest()


# --- determinism --------------------------------------------------------------------------------------------------


def test_regeneration_is_identical():
    fresh = synthetic.generate()
    assert all(fresh[symbol] == synthetic.m1(symbol) for symbol in synthetic.SYMBOLS)


def test_another_process_generates_the_same_data():
    code = (
        "import hashlib, numpy as np\n"
        "from services.market_analysis import synthetic\n"
        "s = synthetic.m1('EURUSD'); h = hashlib.sha256()\n"
        "for c in s.COLUMNS: h.update(np.ascontiguousarray(getattr(s, c)).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == digest(synthetic.m1("EURUSD"))


def test_cached_arrays_are_read_only():
    s = synthetic.candles("EURUSD", Timeframe.H1)
    with pytest.raises(ValueError):
        s.close[0] = 0.0


# --- calendar -----------------------------------------------------------------------------------------------------


def test_covers_2025_in_utc_minutes():
    t = synthetic.m1("EURUSD").time
    assert t.dtype == np.int64
    assert t[0] == int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
    assert t[-1] == int(datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc).timestamp())
    assert np.all(np.diff(t) >= 60) and np.all(t % 60 == 0)
    assert 370_000 < len(t) < 380_000


def test_no_bars_between_friday_2200_and_sunday_2200():
    t = pd.to_datetime(synthetic.m1("EURUSD").time, unit="s", utc=True)
    weekday, hour = t.day_of_week, t.hour
    closed = ((weekday == 4) & (hour >= 22)) | (weekday == 5) | ((weekday == 6) & (hour < 22))
    assert not closed.any()
    gaps = np.flatnonzero(np.diff(synthetic.m1("EURUSD").time) > 60)
    assert len(gaps) == 52  # one per weekend of 2025
    before, after = t[gaps], t[gaps + 1]
    assert set(zip(before.day_of_week, before.hour, before.minute)) == {(4, 21, 59)}
    assert set(zip(after.day_of_week, after.hour, after.minute)) == {(6, 22, 0)}


def test_all_symbols_share_the_calendar():
    t = synthetic.m1("EURUSD").time
    for symbol in synthetic.SYMBOLS:
        assert np.array_equal(synthetic.m1(symbol).time, t)


# --- bars ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", list(NOMINAL))
def test_ohlc_consistent_and_open_is_previous_close(symbol):
    for tf in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
        s = synthetic.candles(symbol, tf)
        assert np.all(s.low <= np.minimum(s.open, s.close)) and np.all(np.maximum(s.open, s.close) <= s.high)
        assert np.all(s.low > 0) and np.all(s.volume > 0)
    m1 = synthetic.m1(symbol)
    within_session = np.diff(m1.time) == 60
    assert np.array_equal(m1.open[1:][within_session], m1.close[:-1][within_session])
    # after the weekend the open gaps a little, never wildly
    jump = np.abs(np.log(m1.open[1:][~within_session] / m1.close[:-1][~within_session]))
    assert 0 < jump.max() < 0.01


@pytest.mark.parametrize("symbol", list(NOMINAL))
def test_price_levels_digits_and_volatility_are_realistic(symbol):
    spec = synthetic.SYMBOLS[symbol]
    m1 = synthetic.m1(symbol)
    assert abs(m1.close[0] / NOMINAL[symbol] - 1) < 0.01
    # a year of random walk at 6-10% volatility: within +-30% of the start (USDJPY reaches +24% in 2025)
    assert 0.7 < m1.close.min() / NOMINAL[symbol] and m1.close.max() / NOMINAL[symbol] < 1.3
    assert np.allclose(m1.close, np.round(m1.close, spec.digits), rtol=0, atol=1e-12)
    assert (spec.pip_size, spec.digits) == ((0.01, 3) if "JPY" in symbol else (0.0001, 5))
    for tf in (Timeframe.M1, Timeframe.H1):
        vol = log_returns(symbol, tf).std() * np.sqrt(tf.bars_per_year)
        assert 0.05 < vol < 0.11, (tf, vol)


def test_volume_has_an_intraday_pattern():
    h1 = synthetic.candles("EURUSD", Timeframe.H1)
    hour = (h1.time % 86400) // 3600
    by_hour = pd.Series(h1.volume).groupby(hour).mean()
    assert by_hour[14] > 1.5 * by_hour[3]  # London/New York overlap busier than late Asia


# --- resampling ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tf", [Timeframe.M5, Timeframe.M15, Timeframe.M30, Timeframe.H1, Timeframe.H4, Timeframe.D1])
def test_timeframes_agree_with_m1(tf):
    m1 = synthetic.m1("USDJPY")
    frame = pd.DataFrame({c: getattr(m1, c) for c in CandleSeries.COLUMNS})
    frame["bucket"] = frame.time - frame.time % tf.seconds
    expected = frame.groupby("bucket").agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", "sum"),
    )
    got = synthetic.candles("USDJPY", tf)
    assert got.timeframe is tf
    assert np.array_equal(got.time, expected.index.to_numpy())
    for c in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(got, c), expected[c].to_numpy()), c


def test_d1_is_aligned_to_midnight_and_weekends_are_absent():
    d1 = synthetic.candles("EURUSD", Timeframe.D1)
    assert np.all(d1.time % 86400 == 0)
    weekday = pd.to_datetime(d1.time, unit="s", utc=True).day_of_week
    assert 5 not in set(weekday)  # Saturday never trades; Sunday has the 22:00-24:00 stub


def test_resample_generic_series_and_rejects_finer_target():
    t = np.array([0, 60, 120, 600, 660], dtype=np.int64) + 1_735_689_600
    s = CandleSeries(
        "X", Timeframe.M1, t, np.array([1.0, 2, 3, 4, 5]), np.array([1.5, 2.5, 3.5, 4.5, 5.5]),
        np.array([0.5, 1.5, 2.5, 3.5, 4.5]), np.array([1.2, 2.2, 3.2, 4.2, 5.2]), np.array([1.0, 1, 1, 2, 2]),
    )
    m5 = synthetic.resample(s, Timeframe.M5)
    assert list(m5.time - t[0]) == [0, 600]  # the empty 5-minute bucket in between is absent
    assert list(m5.open) == [1, 4] and list(m5.high) == [3.5, 5.5] and list(m5.low) == [0.5, 3.5]
    assert list(m5.close) == [3.2, 5.2] and list(m5.volume) == [3, 4]
    assert synthetic.resample(s, Timeframe.M1) is s
    with pytest.raises(InvalidArgument) as e:
        synthetic.resample(m5, Timeframe.M1)
    assert e.value.field == "timeframe"


# --- cross-symbol structure ---------------------------------------------------------------------------------------


def corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_usd_factor_correlations():
    r = {s: log_returns(s, Timeframe.H1) for s in NOMINAL}
    assert corr(r["EURUSD"], r["GBPUSD"]) > 0.4
    assert corr(r["AUDUSD"], r["NZDUSD"]) > 0.4
    assert corr(r["EURUSD"], r["AUDUSD"]) > 0.2
    assert corr(r["EURUSD"], r["USDCHF"]) < -0.4
    assert corr(r["GBPUSD"], r["USDCAD"]) < -0.2


def test_usdjpy_is_uncorrelated_with_eurusd_and_gbpusd():
    for other in ("EURUSD", "GBPUSD"):
        assert abs(corr(log_returns("USDJPY", Timeframe.M1), log_returns(other, Timeframe.M1))) < 0.01
        assert abs(corr(log_returns("USDJPY", Timeframe.H1), log_returns(other, Timeframe.H1))) < 0.05


def test_eurusd_leads_gbpusd_by_one_bar_at_m1():
    e, g = log_returns("EURUSD", Timeframe.M1), log_returns("GBPUSD", Timeframe.M1)
    assert corr(e[:-1], g[1:]) > 0.15  # EURUSD(t-1) -> GBPUSD(t)
    assert abs(corr(g[:-1], e[1:])) < 0.01  # the reverse: nothing


@pytest.mark.parametrize("tf", [Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1])
def test_granger_finds_the_link_and_nothing_else(tf):
    from statsmodels.tsa.stattools import grangercausalitytests

    def p_value(cause: str, effect: str, bars: int = 2000, lag: int = 2) -> float:
        y, x = log_returns(effect, tf)[-bars:], log_returns(cause, tf)[-bars:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = grangercausalitytests(np.column_stack([y, x]), maxlag=[lag])
        return result[lag][0]["ssr_ftest"][1]

    assert p_value("EURUSD", "GBPUSD") < 1e-6
    for cause, effect in [("GBPUSD", "EURUSD"), ("EURUSD", "USDJPY"), ("USDJPY", "EURUSD"), ("USDJPY", "GBPUSD")]:
        assert p_value(cause, effect) > 0.01, (cause, effect)
