"""Market summary of a window of bars: trend, volatility, regime, support and resistance.

Definitions (all over the bars of the window, in order; weekend gaps are ignored, i.e. bars are equally spaced):

* change_pct = (last close / first close - 1) × 100.
* Trend: ordinary least squares of log(close) on the bar index. trend_strength = R² of that fit (0 = no linear
  trend, 1 = a perfectly straight line). trend = UP or DOWN by the sign of the slope when R² >= 0.30, otherwise
  SIDEWAYS.
* atr = last value of ATR(14) (Wilder), in price units.
* realized_volatility = sample standard deviation of the log close-to-close returns × sqrt(bars per year of the
  timeframe, `Timeframe.bars_per_year`).
* Regime, first rule that matches:
    1. TRENDING when R² >= 0.60 (a clear directional move);
    2. VOLATILE when the recent volatility (std of the last 10% of the returns, at least 10 of them) is >= 1.25 × the
       whole window's;
    3. QUIET when it is <= 0.8 × the whole window's;
    4. RANGING otherwise.
* Support and resistance: swing points are bars whose high (low) is the highest (lowest) of the 3 bars on each side;
  the window's highest high and lowest low are added. The levels are sorted and grouped so that neighbouring levels
  closer than 0.5 × ATR fall into one cluster, whose level is its mean. Clusters below the last close are support,
  above it resistance, nearest first, at most 3 each (rounded to the symbol's quoted digits when known).

A window needs at least 30 bars.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from services.common.errors import InvalidArgument
from services.common.market_types import CandleSeries, from_unix
from services.common.indicators import atr as atr_line
from services.market_analysis.models import MarketSummary, Regime, TrendDirection

# The thresholds of the module docstring.
MIN_BARS = 30
ATR_PERIOD = 14
TREND_MIN_R2 = 0.30
TRENDING_MIN_R2 = 0.60
RECENT_FRACTION = 0.1
VOLATILE_RATIO = 1.25
QUIET_RATIO = 0.8
SWING_RADIUS = 3
CLUSTER_ATR = 0.5
MAX_LEVELS = 3


def summarize(series: CandleSeries, digits: int | None = None) -> MarketSummary:
    """Summarise every bar of `series` (see the module docstring for the definitions). With `digits`, support and
    resistance levels are rounded to that many decimals (the symbol's quote precision)."""
    n = len(series)
    if n < MIN_BARS:
        raise InvalidArgument(
            f"a market summary needs at least {MIN_BARS} bars; the range holds {n} {series.timeframe.value} bars "
            "- widen the range or use a shorter timeframe",
            field="range",
        )
    close = series.close
    log_returns = np.diff(np.log(close))
    slope, r2 = linear_trend(np.log(close))
    if r2 < TREND_MIN_R2 or slope == 0:
        trend = TrendDirection.SIDEWAYS
    else:
        trend = TrendDirection.UP if slope > 0 else TrendDirection.DOWN
    atr_value = float(atr_line(series.high, series.low, close, ATR_PERIOD)[-1])
    support, resistance = support_resistance(series.high, series.low, float(close[-1]), atr_value, digits)
    return MarketSummary(
        symbol=series.symbol,
        timeframe=series.timeframe,
        as_of=from_unix(series.time[-1]),
        bars=n,
        last_price=float(close[-1]),
        change_pct=float((close[-1] / close[0] - 1.0) * 100.0),
        trend=trend,
        trend_strength=r2,
        atr=atr_value,
        realized_volatility=float(np.std(log_returns, ddof=1) * np.sqrt(series.timeframe.bars_per_year)),
        regime=regime(r2, log_returns),
        support=support,
        resistance=resistance,
    )


def linear_trend(y: np.ndarray) -> tuple[float, float]:
    """Slope per bar and R² of the least-squares line through y against its index (R² is 0 for a flat series)."""
    x = np.arange(len(y), dtype=np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(xc @ xc), float(yc @ yc), float(xc @ yc)
    if syy == 0.0:
        return 0.0, 0.0
    return sxy / sxx, min(1.0, sxy * sxy / (sxx * syy))


def regime(r2: float, log_returns: np.ndarray) -> Regime:
    """Regime label from the trend R² and recent versus whole-window volatility (see the module docstring)."""
    if r2 >= TRENDING_MIN_R2:
        return Regime.TRENDING
    overall = float(np.std(log_returns))
    recent = float(np.std(log_returns[-max(10, int(len(log_returns) * RECENT_FRACTION)) :]))
    if overall > 0 and recent >= VOLATILE_RATIO * overall:
        return Regime.VOLATILE
    if overall == 0 or recent <= QUIET_RATIO * overall:
        return Regime.QUIET
    return Regime.RANGING


def swing_levels(high: np.ndarray, low: np.ndarray, radius: int = SWING_RADIUS) -> np.ndarray:
    """Prices of swing highs and lows (extreme within `radius` bars each side) plus the window's extremes."""
    width = 2 * radius + 1
    levels = [np.array([high.max(), low.min()])]
    if len(high) >= width:
        centre = slice(radius, len(high) - radius)
        levels.append(high[centre][high[centre] == sliding_window_view(high, width).max(axis=1)])
        levels.append(low[centre][low[centre] == sliding_window_view(low, width).min(axis=1)])
    return np.concatenate(levels)


def cluster_levels(levels: np.ndarray, tolerance: float) -> np.ndarray:
    """Group sorted levels whose neighbours are within `tolerance` and return each group's mean, ascending."""
    levels = np.sort(levels)
    starts = np.flatnonzero(np.r_[True, np.diff(levels) > tolerance])
    counts = np.diff(np.r_[starts, len(levels)])
    return np.add.reduceat(levels, starts) / counts


def support_resistance(
    high: np.ndarray, low: np.ndarray, price: float, atr_value: float, digits: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Clustered swing levels below and above `price`, nearest first, at most MAX_LEVELS each."""
    tolerance = CLUSTER_ATR * atr_value if np.isfinite(atr_value) else 0.0
    clusters = cluster_levels(swing_levels(high, low), tolerance)
    if digits is not None:
        clusters = np.unique(np.round(clusters, digits))
    below = clusters[clusters < price][::-1][:MAX_LEVELS]
    above = clusters[clusters > price][:MAX_LEVELS]
    return tuple(float(v) for v in below), tuple(float(v) for v in above)
