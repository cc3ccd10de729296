"""Technical indicators shared by every service: pure functions over float64 numpy arrays, with the textbook definitions.

Every function returns arrays as long as its input, aligned bar for bar; bars before an indicator is defined (its
warm-up) are NaN. Inputs are assumed free of NaN.

* SMA(n): mean of the last n values; defined from index n-1.
* EMA(n): alpha = 2/(n+1); seeded with the SMA of the first n values at index n-1, then
  ema[t] = ema[t-1] + alpha * (x[t] - ema[t-1]).
* RSI(n), Wilder: changes d[t] = close[t] - close[t-1]; the first average gain/loss is the simple mean of the first
  n gains/losses (d[1..n]), then avg[t] = (avg[t-1] * (n-1) + x[t]) / n. RSI = 100 - 100 / (1 + gain/loss); 100
  when the average loss is 0 and the gain is not, 50 when neither moved (a flat window is neutral). Defined from index n.
* MACD(fast=12, slow=26, signal=9): macd = EMA(fast) - EMA(slow) (defined from slow-1); signal = EMA(signal) of the
  defined part of macd (defined from slow+signal-2); histogram = macd - signal.
* Bollinger(period=20, k=2): middle = SMA(period); upper/lower = middle ± k * population std (ddof=0) of the same
  window.
* ATR(n=14), Wilder: true range TR[t] = max(high-low, |high-close[t-1]|, |low-close[t-1]|), TR[0] = high-low; the
  first ATR is the mean of TR[0..n-1] at index n-1, then ATR[t] = (ATR[t-1] * (n-1) + TR[t]) / n.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


def _seeded_recursion(x: np.ndarray, n: int, alpha: float, start: int = 0) -> np.ndarray:
    """y[start+n-1] = mean(x[start:start+n]); afterwards y[t] = (1-alpha)*y[t-1] + alpha*x[t]; NaN before.

    This is the EMA/Wilder recursion with the conventional SMA seed. pandas' ewm(adjust=False) computes exactly
    this recursion when its first input is the seed.
    """
    out = _nan(len(x))
    first = start + n - 1
    if first >= len(x):
        return out
    tail = np.array(x[first:], dtype=np.float64)
    tail[0] = np.mean(x[start : first + 1])
    out[first:] = pd.Series(tail).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last n values; NaN for the first n-1."""
    return pd.Series(x, dtype=np.float64).rolling(n).mean().to_numpy()


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first n values at index n-1."""
    return _seeded_recursion(np.asarray(x, dtype=np.float64), n, 2.0 / (n + 1))


def wilder(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/n) of x[start:], seeded with the mean of its first n values."""
    return _seeded_recursion(np.asarray(x, dtype=np.float64), n, 1.0 / n, start)


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI; first defined at index n; 100 when the average loss is 0."""
    close = np.asarray(close, dtype=np.float64)
    change = np.diff(close, prepend=np.nan)  # change[t] = close[t] - close[t-1]; change[0] undefined
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = wilder(gain, n, start=1)
    avg_loss = wilder(loss, n, start=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 * avg_loss / (avg_gain + avg_loss)  # = 100 - 100/(1 + gain/loss), 100 when loss is 0
    return np.where((avg_gain == 0.0) & (avg_loss == 0.0), 50.0, value)  # NaN warm-up stays NaN


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> dict[str, np.ndarray]:
    """MACD line, its signal line (EMA of the defined MACD values) and the histogram."""
    close = np.asarray(close, dtype=np.float64)
    line = ema(close, fast) - ema(close, slow)
    signal_line = _seeded_recursion(line, signal, 2.0 / (signal + 1), start=slow - 1)
    return {"macd": line, "signal": signal_line, "histogram": line - signal_line}


def bollinger(close: np.ndarray, period: int = 20, k: float = 2.0) -> dict[str, np.ndarray]:
    """Bollinger bands: SMA(period) ± k × population standard deviation of the same window."""
    rolling = pd.Series(close, dtype=np.float64).rolling(period)
    middle = rolling.mean().to_numpy()
    std = rolling.std(ddof=0).to_numpy()
    return {"middle": middle, "upper": middle + k * std, "lower": middle - k * std}


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high-low, |high-prev close|, |low-prev close|); the first bar has no previous close: high-low."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    prev_close = np.r_[np.nan, close[:-1]]
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))  # fmax ignores the NaN
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's average true range; first defined at index n-1 (mean of the first n true ranges)."""
    return wilder(true_range(high, low, close), n)
