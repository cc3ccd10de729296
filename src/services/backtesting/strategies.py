"""The strategies: parameter checks and target positions, computed vectorised from closes.

`targets(strategy, close, params)` returns, for every bar, the position wanted after seeing that bar's close:
+1 long, -1 short, 0 flat (the engine fills it at the next bar's open).

- sma_cross(fast, slow): long while SMA(fast) > SMA(slow), short while below; an exact tie keeps the previous side.
  Flat until the first cross after the warm-up, then always in the market, reversing on each cross.
- rsi_reversion(period, lower, upper): long when RSI < lower, held until RSI > 50; short when RSI > upper, held
  until RSI < 50. Flat otherwise.
- bollinger_breakout(period, k): long when close > upper band, held until close < middle; short when close < lower
  band, held until close > middle. Flat otherwise.

Indicators come from `services.common.indicators` (SMA; Wilder RSI, 50 on a window that did not move; Bollinger with
the population standard deviation). Warm-up bars are NaN and never trigger anything.
"""
from __future__ import annotations

import math

import numpy as np

from services.backtesting.models import STRATEGY_DEFAULTS
from services.common.errors import InvalidArgument, quoted
from services.common.indicators import bollinger, rsi, sma

RSI_MIDLINE = 50.0


def resolve_params(strategy: str, params: dict[str, float]) -> dict[str, float]:
    """The strategy's parameters with defaults filled in; InvalidArgument naming the offending field."""
    if strategy not in STRATEGY_DEFAULTS:
        raise InvalidArgument(
            f"unknown strategy {quoted(strategy)}; expected one of {', '.join(STRATEGY_DEFAULTS)}", field="strategy")
    defaults = STRATEGY_DEFAULTS[strategy]
    for name, value in params.items():
        if name not in defaults:
            raise InvalidArgument(
                f"{strategy} has no parameter {quoted(name)}; expected {', '.join(defaults)}", field=f"params.{name}")
        if not math.isfinite(value):
            raise InvalidArgument(f"{name} must be a finite number", field=f"params.{name}")
    resolved = {name: float(value) for name, value in {**defaults, **params}.items()}
    _CHECKS[strategy](resolved)
    return resolved


def min_bars(strategy: str, params: dict[str, float]) -> int:
    """Fewest bars on which the strategy can open and close a position: its look-back plus two."""
    return int(params["slow" if strategy == "sma_cross" else "period"]) + 2


def targets(strategy: str, close: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Target position (int8: -1, 0, +1) after each bar's close."""
    return _TARGETS[strategy](close, params).astype(np.int8)


# --- parameter checks -----------------------------------------------------------------------------------------------

def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise InvalidArgument(message, field=f"params.{name}")


def _integer(params: dict[str, float], name: str, minimum: int) -> None:
    value = params[name]
    _require(value.is_integer() and value >= minimum, name, f"{name} must be an integer >= {minimum}, got {value:g}")


def _check_sma_cross(p: dict[str, float]) -> None:
    _integer(p, "fast", 1)
    _integer(p, "slow", 2)
    _require(p["fast"] < p["slow"], "fast", f"fast ({p['fast']:g}) must be less than slow ({p['slow']:g})")


def _check_rsi_reversion(p: dict[str, float]) -> None:
    _integer(p, "period", 2)
    _require(0 < p["lower"] < RSI_MIDLINE, "lower", f"lower must be in (0, 50), got {p['lower']:g}")
    _require(RSI_MIDLINE < p["upper"] < 100, "upper", f"upper must be in (50, 100), got {p['upper']:g}")


def _check_bollinger_breakout(p: dict[str, float]) -> None:
    _integer(p, "period", 2)
    _require(p["k"] > 0, "k", f"k must be positive, got {p['k']:g}")


_CHECKS = {
    "sma_cross": _check_sma_cross,
    "rsi_reversion": _check_rsi_reversion,
    "bollinger_breakout": _check_bollinger_breakout,
}


# --- strategies -----------------------------------------------------------------------------------------------------

def _last_index(mask: np.ndarray) -> np.ndarray:
    """For each bar, the index of the latest bar at or before it where `mask` holds; -1 if none."""
    return np.maximum.accumulate(np.where(mask, np.arange(mask.shape[0]), -1))


def _latched(enter: np.ndarray, leave: np.ndarray) -> np.ndarray:
    """True from a bar where `enter` holds until (not including) the next bar where `leave` holds."""
    return _last_index(enter) > _last_index(leave)


def _sma_cross(close: np.ndarray, p: dict[str, float]) -> np.ndarray:
    gap = sma(close, int(p["fast"])) - sma(close, int(p["slow"]))
    regime = np.sign(_last_index(gap > 0) - _last_index(gap < 0))  # +1 above, -1 below, ties keep the side
    first = int(np.argmax(~np.isnan(gap)))  # first bar with both averages
    crossed = np.logical_or.accumulate((regime != regime[first]) & (np.arange(close.shape[0]) >= first))
    return np.where(crossed, regime, 0)


def _rsi_reversion(close: np.ndarray, p: dict[str, float]) -> np.ndarray:
    r = rsi(close, int(p["period"]))
    long = _latched(r < p["lower"], r > RSI_MIDLINE)
    short = _latched(r > p["upper"], r < RSI_MIDLINE)
    return long.astype(np.int8) - short.astype(np.int8)


def _bollinger_breakout(close: np.ndarray, p: dict[str, float]) -> np.ndarray:
    bands = bollinger(close, int(p["period"]), p["k"])
    middle = bands["middle"]
    long = _latched(close > bands["upper"], close < middle)
    short = _latched(close < bands["lower"], close > middle)
    return long.astype(np.int8) - short.astype(np.int8)


_TARGETS = {
    "sma_cross": _sma_cross,
    "rsi_reversion": _rsi_reversion,
    "bollinger_breakout": _bollinger_breakout,
}
