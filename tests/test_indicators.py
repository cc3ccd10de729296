"""Indicators against hand-computed values and against independent textbook loops written here (never against the
code under test)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.common.market_types import CandleSeries, Timeframe
from services.common import indicators as ind
from services.market_analysis import indicators as requests
from services.market_analysis.models import IndicatorSpec

NaN = math.nan


def assert_series(actual, expected, rel=1e-12, abs_=1e-12):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), (actual, expected)
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(actual[ok], expected[ok], rtol=rel, atol=abs_)


# --- independent reference implementations (explicit loops of the textbook recursions) -----------------------------


def ref_sma(x, n):
    return [NaN if i < n - 1 else sum(x[i - n + 1 : i + 1]) / n for i in range(len(x))]


def ref_ema(x, n, first=0):
    """EMA of x[first:], seeded with the SMA of its first n values."""
    out = [NaN] * len(x)
    alpha = 2 / (n + 1)
    seed_at = first + n - 1
    if seed_at >= len(x):
        return out
    out[seed_at] = sum(x[first : seed_at + 1]) / n
    for i in range(seed_at + 1, len(x)):
        out[i] = alpha * x[i] + (1 - alpha) * out[i - 1]
    return out


def ref_rsi(close, n):
    out = [NaN] * len(close)
    changes = [close[i] - close[i - 1] for i in range(1, len(close))]
    if len(changes) < n:
        return out
    avg_gain = sum(max(c, 0) for c in changes[:n]) / n
    avg_loss = sum(max(-c, 0) for c in changes[:n]) / n
    for i in range(n, len(close)):
        if i > n:
            c = changes[i - 1]
            avg_gain = (avg_gain * (n - 1) + max(c, 0)) / n
            avg_loss = (avg_loss * (n - 1) + max(-c, 0)) / n
        out[i] = 100.0 if avg_loss == 0 else 100 - 100 / (1 + avg_gain / avg_loss)
    return out


def ref_atr(high, low, close, n):
    tr = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, len(high))
    ]
    out = [NaN] * len(tr)
    if len(tr) < n:
        return out
    out[n - 1] = sum(tr[:n]) / n
    for i in range(n, len(tr)):
        out[i] = (out[i - 1] * (n - 1) + tr[i]) / n
    return out


def ref_bollinger(x, n, k):
    middle, upper, lower = [NaN] * len(x), [NaN] * len(x), [NaN] * len(x)
    for i in range(n - 1, len(x)):
        window = x[i - n + 1 : i + 1]
        m = sum(window) / n
        sd = math.sqrt(sum((v - m) ** 2 for v in window) / n)
        middle[i], upper[i], lower[i] = m, m + k * sd, m - k * sd
    return middle, upper, lower


@pytest.fixture(scope="module")
def prices():
    """A reproducible FX-like random walk with consistent OHLC."""
    rng = np.random.default_rng(7)
    close = 1.08 * np.exp(np.cumsum(rng.normal(0, 0.001, 400)))
    open_ = np.r_[1.08, close[:-1]]
    high = np.maximum(open_, close) + rng.uniform(0, 0.0008, 400)
    low = np.minimum(open_, close) - rng.uniform(0, 0.0008, 400)
    return open_, high, low, close


def series_of(open_, high, low, close):
    n = len(close)
    return CandleSeries(
        "TEST", Timeframe.H1, np.arange(n, dtype=np.int64) * 3600, np.asarray(open_, float), np.asarray(high, float),
        np.asarray(low, float), np.asarray(close, float), np.ones(n),
    )


# --- hand-computed values -----------------------------------------------------------------------------------------


def test_sma_by_hand():
    assert_series(ind.sma(np.array([1.0, 2, 3, 4, 5]), 3), [NaN, NaN, 2, 3, 4])


def test_ema_by_hand_seeded_with_sma():
    # alpha = 2/(3+1) = 0.5; seed = (2+4+6)/3 = 4; then 4+.5(8-4)=6, 6+.5(4-6)=5, 5+.5(2-5)=3.5
    assert_series(ind.ema(np.array([2.0, 4, 6, 8, 4, 2]), 3), [NaN, NaN, 4, 6, 5, 3.5])


def test_rsi_by_hand():
    # changes +1 -1 +2 0 -1; first averages over 3 changes: gain 1, loss 1/3 -> RS 3 -> 75 (at index 3)
    # then gain 2/3, loss 2/9 -> 75; then gain 4/9, loss 13/27 -> RS 12/13 -> 48
    assert_series(ind.rsi(np.array([10.0, 11, 10, 12, 12, 11]), 3), [NaN, NaN, NaN, 75, 75, 48])


def test_rsi_is_neutral_when_nothing_moved():
    # gain and loss averages are both 0: RSI is undefined, reported as the neutral 50 (not 100, not a NaN)
    assert_series(ind.rsi(np.array([5.0, 5, 5, 5, 5, 5]), 3), [NaN, NaN, NaN, 50, 50, 50])


def test_rsi_is_100_without_losses():
    assert_series(ind.rsi(np.array([1.0, 2, 3, 4, 5, 6]), 3), [NaN, NaN, NaN, 100, 100, 100])


def test_atr_by_hand():
    high, low, close = np.array([10.0, 11, 12, 11]), np.array([9.0, 10, 10, 9]), np.array([9.5, 10.5, 11, 10])
    # TR = 1, 1.5, 2, 2; ATR(2): (1+1.5)/2 = 1.25, (1.25+2)/2 = 1.625, (1.625+2)/2 = 1.8125
    assert_series(ind.true_range(high, low, close), [1, 1.5, 2, 2])
    assert_series(ind.atr(high, low, close, 2), [NaN, 1.25, 1.625, 1.8125])


def test_bollinger_by_hand_uses_population_std():
    bands = ind.bollinger(np.array([1.0, 2, 3, 5]), 2, 2.0)
    # windows [1,2] [2,3] [3,5]: means 1.5 2.5 4, population std 0.5 0.5 1
    assert_series(bands["middle"], [NaN, 1.5, 2.5, 4])
    assert_series(bands["upper"], [NaN, 2.5, 3.5, 6])
    assert_series(bands["lower"], [NaN, 0.5, 1.5, 2])


def test_macd_by_hand_small_periods():
    x = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    out = ind.macd(x, fast=2, slow=3, signal=2)
    fast = ref_ema(list(x), 2)  # seed 1.5 at 1, alpha 2/3
    slow = ref_ema(list(x), 3)  # seed 2 at 2, alpha 1/2
    line = [f - s for f, s in zip(fast, slow)]
    # For a straight line both EMAs lag by a constant: fast by 0.5, slow by 1, so macd = 0.5 from index 2.
    assert_series(out["macd"], [NaN, NaN, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert_series(out["macd"], line)
    assert_series(out["signal"], [NaN, NaN, NaN, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert_series(out["histogram"], [NaN, NaN, NaN, 0, 0, 0, 0, 0])


# --- against the reference loops on a random walk -------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 14, 50])
def test_sma_ema_match_reference(prices, n):
    close = prices[3]
    assert_series(ind.sma(close, n), ref_sma(list(close), n), rel=1e-10)
    assert_series(ind.ema(close, n), ref_ema(list(close), n), rel=1e-12)


@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_reference(prices, n):
    close = prices[3]
    assert_series(ind.rsi(close, n), ref_rsi(list(close), n), rel=1e-9, abs_=1e-9)


@pytest.mark.parametrize("n", [2, 14])
def test_atr_matches_reference(prices, n):
    _, high, low, close = prices
    assert_series(ind.atr(high, low, close, n), ref_atr(list(high), list(low), list(close), n), rel=1e-12)


@pytest.mark.parametrize(("n", "k"), [(20, 2.0), (5, 1.5)])
def test_bollinger_matches_reference(prices, n, k):
    close = prices[3]
    middle, upper, lower = ref_bollinger(list(close), n, k)
    bands = ind.bollinger(close, n, k)
    assert_series(bands["middle"], middle, rel=1e-10)
    # Rolling std of prices near 1.08 with tiny variance: allow a few ulps of the price scale.
    assert_series(bands["upper"], upper, rel=1e-9)
    assert_series(bands["lower"], lower, rel=1e-9)


def test_macd_matches_reference_and_warm_up(prices):
    close = list(prices[3])
    out = ind.macd(prices[3], 12, 26, 9)
    line = [f - s for f, s in zip(ref_ema(close, 12), ref_ema(close, 26))]
    signal = ref_ema(line, 9, first=25)
    assert_series(out["macd"], line)
    assert_series(out["signal"], signal)
    assert_series(out["histogram"], [m - s for m, s in zip(line, signal)])
    assert np.isnan(out["macd"][:25]).all() and not np.isnan(out["macd"][25])
    assert np.isnan(out["signal"][:33]).all() and not np.isnan(out["signal"][33])


def test_warm_up_lengths(prices):
    _, high, low, close = prices
    assert np.isnan(ind.sma(close, 20)[:19]).all() and not np.isnan(ind.sma(close, 20)[19:]).any()
    assert np.isnan(ind.ema(close, 20)[:19]).all() and not np.isnan(ind.ema(close, 20)[19:]).any()
    assert np.isnan(ind.rsi(close, 14)[:14]).all() and not np.isnan(ind.rsi(close, 14)[14:]).any()
    assert np.isnan(ind.atr(high, low, close, 14)[:13]).all() and not np.isnan(ind.atr(high, low, close, 14)[13:]).any()


def test_period_longer_than_data_is_all_nan():
    x = np.array([1.0, 2, 3])
    for line in (ind.sma(x, 5), ind.ema(x, 5), ind.rsi(x, 5), ind.atr(x, x, x, 5)):
        assert len(line) == 3 and np.isnan(line).all()
    assert len(ind.ema(np.array([]), 3)) == 0


# --- compute() and parameter validation ---------------------------------------------------------------------------


def test_compute_fills_defaults_as_floats_and_lowercases_name(prices):
    out = requests.compute(IndicatorSpec("MACD", {"fast": 5}), series_of(*prices))
    assert out.name == "macd"
    assert out.params == {"fast": 5.0, "slow": 26.0, "signal": 9.0}
    assert all(type(v) is float for v in out.params.values())
    assert set(out.lines) == {"macd", "signal", "histogram"}
    for line in out.lines.values():
        assert line.dtype == np.float64 and line.flags.c_contiguous and len(line) == len(prices[3])


@pytest.mark.parametrize(
    ("name", "lines", "defaults"),
    [
        ("sma", {"value"}, {"period": 20.0}),
        ("ema", {"value"}, {"period": 20.0}),
        ("rsi", {"value"}, {"period": 14.0}),
        ("atr", {"value"}, {"period": 14.0}),
        ("bollinger", {"middle", "upper", "lower"}, {"period": 20.0, "k": 2.0}),
    ],
)
def test_compute_lines_and_defaults(prices, name, lines, defaults):
    out = requests.compute(IndicatorSpec(name), series_of(*prices))
    assert set(out.lines) == lines and out.params == defaults


def test_compute_atr_uses_high_low_close(prices):
    _, high, low, close = prices
    out = requests.compute(IndicatorSpec("atr", {"period": 7}), series_of(*prices))
    assert_series(out.lines["value"], ref_atr(list(high), list(low), list(close), 7))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (IndicatorSpec("vwap"), "indicators[3].name"),
        (IndicatorSpec("sma", {"length": 5}), "indicators[3].params.length"),
        (IndicatorSpec("sma", {"period": 1}), "indicators[3].params.period"),
        (IndicatorSpec("sma", {"period": 10_001}), "indicators[3].params.period"),
        (IndicatorSpec("ema", {"period": 14.5}), "indicators[3].params.period"),
        (IndicatorSpec("rsi", {"period": math.nan}), "indicators[3].params.period"),
        (IndicatorSpec("rsi", {"period": "x"}), "indicators[3].params.period"),
        (IndicatorSpec("bollinger", {"k": 0}), "indicators[3].params.k"),
        (IndicatorSpec("bollinger", {"k": math.inf}), "indicators[3].params.k"),
        (IndicatorSpec("macd", {"fast": 26, "slow": 12}), "indicators[3].params.fast"),
        (IndicatorSpec("macd", {"fast": 12, "slow": 12}), "indicators[3].params.fast"),
        (IndicatorSpec("macd", {"signal": 1}), "indicators[3].params.signal"),
    ],
)
def test_validation_errors_name_the_field(prices, spec, field):
    with pytest.raises(InvalidArgument) as e:
        requests.compute(spec, series_of(*prices), index=3)
    assert e.value.field == field
    assert e.value.message


def test_integral_float_period_is_accepted():
    assert requests.validate(IndicatorSpec("sma", {"period": 14.0}))[1] == {"period": 14.0}
