"""Indicator requests of Market Analysis: validate an `IndicatorSpec` (name, parameters, defaults) and compute it
over a `CandleSeries` with the shared definitions in `services.common.indicators`."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from services.common.errors import InvalidArgument, quoted
from services.common.indicators import atr, bollinger, ema, macd, rsi, sma
from services.common.market_types import CandleSeries
from services.market_analysis.models import INDICATOR_NAMES, IndicatorOutput, IndicatorSpec

MIN_PERIOD = 2
MAX_PERIOD = 10_000


# --- specs -----------------------------------------------------------------------------------------------------------

DEFAULTS: dict[str, dict[str, float]] = {
    "sma": {"period": 20.0},
    "ema": {"period": 20.0},
    "rsi": {"period": 14.0},
    "macd": {"fast": 12.0, "slow": 26.0, "signal": 9.0},
    "bollinger": {"period": 20.0, "k": 2.0},
    "atr": {"period": 14.0},
}
assert tuple(DEFAULTS) == INDICATOR_NAMES


def validate(spec: IndicatorSpec, index: int = 0) -> tuple[str, dict[str, float]]:
    """Check `spec` (the `index`-th of a request, for error field paths) and return its lower-case name and its
    parameters with defaults filled in, all as floats. Integer parameters must be whole numbers in
    [MIN_PERIOD, MAX_PERIOD]; k must be positive and finite; macd needs fast < slow. Periods longer than the data
    are allowed: the output is then all warm-up (NaN)."""
    where = f"indicators[{index}]"
    name = str(spec.name).strip().lower()
    if name not in DEFAULTS:
        raise InvalidArgument(
            f"unknown indicator {quoted(spec.name)}; expected one of {', '.join(INDICATOR_NAMES)}",
            field=f"{where}.name",
        )
    defaults = DEFAULTS[name]
    params = dict(defaults)
    for key, raw in (spec.params or {}).items():
        if key not in defaults:
            raise InvalidArgument(
                f"{name} has no parameter {quoted(key)}; its parameters are {', '.join(defaults)}",
                field=f"{where}.params.{key}",
            )
        params[key] = _number(raw, f"{where}.params.{key}", integer=key != "k")
    if name == "macd" and params["fast"] >= params["slow"]:
        raise InvalidArgument(
            f"macd fast period ({params['fast']:g}) must be shorter than slow period ({params['slow']:g})",
            field=f"{where}.params.fast",
        )
    return name, params


def _number(raw: object, field: str, *, integer: bool) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"{field} must be a number, got {quoted(raw)}", field=field) from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{field} must be finite, got {value}", field=field)
    if not integer:
        if value <= 0:
            raise InvalidArgument(f"{field} must be positive, got {value:g}", field=field)
        return value
    if value != int(value):
        raise InvalidArgument(f"{field} must be a whole number, got {value:g}", field=field)
    if not MIN_PERIOD <= value <= MAX_PERIOD:
        raise InvalidArgument(f"{field} must be between {MIN_PERIOD} and {MAX_PERIOD}, got {value:g}", field=field)
    return value


_RUNNERS: Mapping[str, Callable[[CandleSeries, dict[str, int | float]], dict[str, np.ndarray]]] = {
    "sma": lambda s, p: {"value": sma(s.close, p["period"])},
    "ema": lambda s, p: {"value": ema(s.close, p["period"])},
    "rsi": lambda s, p: {"value": rsi(s.close, p["period"])},
    "macd": lambda s, p: macd(s.close, p["fast"], p["slow"], p["signal"]),
    "bollinger": lambda s, p: bollinger(s.close, p["period"], p["k"]),
    "atr": lambda s, p: {"value": atr(s.high, s.low, s.close, p["period"])},
}


def compute(spec: IndicatorSpec, series: CandleSeries, index: int = 0) -> IndicatorOutput:
    """Validate `spec` (see `validate`) and compute it over `series`; lines are contiguous float64 arrays."""
    name, params = validate(spec, index)
    args = {k: (v if k == "k" else int(v)) for k, v in params.items()}
    lines = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in _RUNNERS[name](series, args).items()}
    return IndicatorOutput(name=name, params=params, lines=lines)
