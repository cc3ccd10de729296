"""Deterministic synthetic FX market: the data served when nothing has been imported.

What is generated
-----------------
M1 bars for calendar year 2025 (2025-01-01T00:00Z up to, not including, 2026-01-01T00:00Z) for eight symbols with
realistic price levels, quote precision and volatility. FX trading hours are respected: the market closes on Friday at
22:00 UTC and reopens on Sunday at 22:00 UTC, and there are no bars in between (about 375,840 M1 bars per symbol).
Coarser timeframes (M5 … D1) are resampled from M1 with `resample`.

Returns model
-------------
Every M1 log return is a weighted sum of independent standard-normal innovations ("components"): a common USD factor,
a risk/commodity factor (AUD, NZD, CAD) and one idiosyncratic component per currency. Each innovation is scaled by an
intraday activity curve (quiet Asian hours, busy London/New York overlap) and by a slowly varying volatility regime of
its own (a daily AR(1) in log-volatility). Signs follow the quote convention, so EURUSD, GBPUSD, AUDUSD and NZDUSD
correlate positively with each other and negatively with USDCHF and USDCAD. EURGBP is the cross EURUSD / GBPUSD, so
triangular arbitrage holds exactly (before rounding to quoted digits).

USDJPY is deliberately independent of everything else: it loads on no common factor, so its returns are uncorrelated
with, and neither lead nor lag, EURUSD and GBPUSD. It is the negative control for correlation and causality tests.

The lead-lag link (EURUSD leads GBPUSD)
---------------------------------------
GBPUSD's M1 log return contains, besides its own components, a share of EURUSD's move of the *previous bar* at each of
the timeframes M1, M5, M15 and H1::

    r_GBP[t] += sum over s in {M1, M5, M15, H1} of  LEAD_LAG_BETA[s] * R_EUR,s[b(t) - 1] / n_s[b(t)]

where b(t) is the s-bar containing minute t, R_EUR,s[b - 1] the EURUSD log return over the previous s-bar (as the
resampled series sees it, so the bar before Sunday 22:00 is Friday's last) and n_s[b] the number of M1 bars in the
current s-bar: the previous bar's EURUSD move is passed on evenly over the current bar (betas 0.25, 0.20, 0.20, 0.25).
A link implemented only at M1 would average away when resampled (at H1 only 1/60 of it crosses a bar boundary); one per
timeframe makes EURUSD's previous-bar return predict GBPUSD's at M1, M5, M15, M30 and H1 alike (lagged correlation
about 0.25 at M1, M5 and H1). The finer links become contemporaneous at coarser timeframes, which is why EURUSD/GBPUSD
correlation rises from 0.19 at M1 to 0.60 at H1 and 0.73 at D1 (as the real Epps effect does).

Granger F-test on log returns (statsmodels `grangercausalitytests`, ssr F-test), last 2,000 bars, lag 2:
EURUSD -> GBPUSD p = 1e-26 (M1), 2e-21 (M5), 9e-28 (M15), 7e-11 (M30), 2e-16 (H1); the whole year at H1 2e-62.
GBPUSD -> EURUSD and both directions between USDJPY and EURUSD/GBPUSD, same tests: all p > 0.01 (smallest 0.11,
except 0.012 at M30). At H4 the link is weak (only the H1 link crosses a 4-hour boundary: p = 0.015) and D1 has too
few bars.

A true null still rejects at its nominal rate: over many windows about 1% of tests on the unlinked pairs give
p < 0.01. SEED was chosen, among a few hundred, for the fewest such false links in the windows a test would likely use:
with the last 20,000 bars (or all, if fewer) at M1, M5, M15, M30 and H1 and lags 1-5 the smallest null p is 0.098;
over the first or last 1,000-5,000 bars at M1, M5, M15 and H1 the exceptions are USDJPY -> EURUSD over the first 1,000
H1 bars at lag 3 (p = 0.0067) and, on the whole year of M1 bars, USDJPY -> GBPUSD at lag 4 (p = 0.008).

Prices wander like real FX over a year: 2025 turns out to be a USD rally (USDJPY up to 186, AUDUSD down to 0.55).

Determinism
-----------
Every component draws from its own `numpy.random.Generator(PCG64([SEED, stream]))`, so the output is identical on
every machine (for a given numpy version; numpy does not promise identical streams across releases). The whole market
is generated on first use (about 0.6 s, ~120 MB for eight symbols) and cached per process; call `warm()` to pay for it
up front.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

from services.common.errors import InvalidArgument, NotFound
from services.common.market_types import CandleSeries, Timeframe, from_unix

SEED = 399
START = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
END = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
MINUTES_PER_YEAR = Timeframe.M1.bars_per_year

# Weekly session: closed from Friday 22:00 UTC to Sunday 22:00 UTC.
_FRIDAY, _SATURDAY, _SUNDAY = 4, 5, 6
_SESSION_HOUR = 22

# Lead-lag link: GBPUSD receives this share of EURUSD's previous-bar return at each timeframe (see module docstring).
LEAD_LAG_BETA: dict[Timeframe, float] = {
    Timeframe.M1: 0.25,
    Timeframe.M5: 0.20,
    Timeframe.M15: 0.20,
    Timeframe.H1: 0.25,
}
LEADER, FOLLOWER = "EURUSD", "GBPUSD"


@dataclass(frozen=True)
class SyntheticSymbol:
    symbol: str
    description: str
    base: str
    quote: str
    price: float  # price on 2025-01-01
    pip_size: float
    digits: int
    annual_vol: float  # target annualised volatility of the M1 log returns (0 for EURGBP: derived from its legs)
    ticks_per_minute: float  # average M1 volume


SYMBOLS: dict[str, SyntheticSymbol] = {
    s.symbol: s
    for s in (
        SyntheticSymbol("EURUSD", "Euro / US Dollar", "EUR", "USD", 1.0850, 0.0001, 5, 0.070, 95.0),
        SyntheticSymbol("GBPUSD", "British Pound / US Dollar", "GBP", "USD", 1.2700, 0.0001, 5, 0.080, 80.0),
        SyntheticSymbol("USDJPY", "US Dollar / Japanese Yen", "USD", "JPY", 150.00, 0.01, 3, 0.095, 90.0),
        SyntheticSymbol("USDCHF", "US Dollar / Swiss Franc", "USD", "CHF", 0.8800, 0.0001, 5, 0.075, 55.0),
        SyntheticSymbol("AUDUSD", "Australian Dollar / US Dollar", "AUD", "USD", 0.6600, 0.0001, 5, 0.090, 60.0),
        SyntheticSymbol("USDCAD", "US Dollar / Canadian Dollar", "USD", "CAD", 1.3600, 0.0001, 5, 0.060, 55.0),
        SyntheticSymbol("NZDUSD", "New Zealand Dollar / US Dollar", "NZD", "USD", 0.6000, 0.0001, 5, 0.095, 40.0),
        SyntheticSymbol("EURGBP", "Euro / British Pound", "EUR", "GBP", 1.0850 / 1.2700, 0.0001, 5, 0.0, 45.0),
    )
}

# Loadings of each symbol's M1 return on the independent components (rows sum to 1 in squares, so the symbol's own
# part has the target volatility). EURGBP has none: it is derived from EURUSD and GBPUSD.
_COMPONENTS = ("USD", "RISK", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "NZD")
_LOADINGS: dict[str, dict[str, float]] = {
    "EURUSD": {"USD": -0.80, "EUR": 0.60},
    "GBPUSD": {"USD": -0.25, "GBP": 0.968},
    "USDJPY": {"JPY": 1.0},  # independent on purpose: the negative control
    "USDCHF": {"USD": 0.80, "CHF": 0.60},
    "AUDUSD": {"USD": -0.60, "RISK": 0.60, "AUD": 0.529},
    "USDCAD": {"USD": 0.60, "RISK": -0.40, "CAD": 0.693},
    "NZDUSD": {"USD": -0.55, "RISK": 0.60, "NZD": 0.581},
}
# GBPUSD's own components are scaled down so that, with the lead-lag link on top, its volatility stays near target.
_FOLLOWER_OWN_SCALE = 0.85
_WEEKEND_GAP_MINUTES = 6.0  # std of the Sunday-open gap, in M1 standard deviations
_REGIME_PERSISTENCE = 0.9  # daily AR(1) coefficient of log-volatility
_REGIME_LOG_VOL_STD = 0.20  # stationary std of log-volatility


@lru_cache(maxsize=1)
def trading_minutes() -> np.ndarray:
    """Open times (unix seconds) of every M1 bar of 2025 while the FX market is open."""
    t = np.arange(START, END, 60, dtype=np.int64)
    weekday = (t // 86400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    hour = (t % 86400) // 3600
    closed = (
        ((weekday == _FRIDAY) & (hour >= _SESSION_HOUR))
        | (weekday == _SATURDAY)
        | ((weekday == _SUNDAY) & (hour < _SESSION_HOUR))
    )
    return _frozen(t[~closed])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _rng(stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([SEED, stream]))


@lru_cache(maxsize=1)
def _intraday_activity() -> np.ndarray:
    """Per trading minute: volatility multiplier by UTC time of day (Tokyo, London and the London/New York overlap),
    normalised to mean square 1 so the symbols keep their target volatility."""
    hour = np.arange(1440) / 60.0

    def bump(centre: float, width: float) -> np.ndarray:
        d = (hour - centre + 12.0) % 24.0 - 12.0  # circular distance in hours
        return np.exp(-((d / width) ** 2))

    curve = 0.75 + 0.10 * bump(1.0, 2.5) + 0.25 * bump(8.5, 2.0) + 0.35 * bump(14.5, 2.5)
    a = curve[(trading_minutes() % 86400) // 60]
    return _frozen(a / np.sqrt(np.mean(a * a)))


def _regime(time: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slowly varying volatility multiplier: daily AR(1) log-volatility, interpolated per minute, mean square ~1."""
    days = int((END - START) // 86400) + 2
    shocks = rng.standard_normal(days) * _REGIME_LOG_VOL_STD * np.sqrt(1 - _REGIME_PERSISTENCE**2)
    log_vol = np.empty(days)
    log_vol[0] = rng.standard_normal() * _REGIME_LOG_VOL_STD
    # Tight loop over ~367 daily values, not over bars.
    for d in range(1, days):
        log_vol[d] = _REGIME_PERSISTENCE * log_vol[d - 1] + shocks[d]
    day_centres = START + 86400 * np.arange(days) + 43200 - 86400
    m = np.exp(np.interp(time, day_centres, log_vol))
    return m / np.sqrt(np.mean(m * m))


def previous_bar_move(returns: np.ndarray, time: np.ndarray, timeframe: Timeframe) -> np.ndarray:
    """Per M1 bar: the summed `returns` of the previous `timeframe` bar, divided by the number of M1 bars in the
    current one (0 in the first bar). Summing the result over a `timeframe` bar gives the previous bar's move."""
    bucket = time // timeframe.seconds
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, len(returns)])
    sums = np.add.reduceat(returns, starts)
    previous = np.r_[0.0, sums[:-1]]
    return np.repeat(previous / counts, counts)


@dataclass(frozen=True)
class _Path:
    """One symbol's M1 path in log space: intrabar move, weekend gap (at session opens) and instantaneous volatility."""

    move: np.ndarray  # close minus open, log
    gap: np.ndarray  # open minus previous close, log (non-zero only at the first bar of a session)
    sigma: np.ndarray  # std of the M1 log return at this bar

    @property
    def returns(self) -> np.ndarray:
        return self.move + self.gap


def _build_paths() -> dict[str, _Path]:
    """Returns of all symbols, generated together because they share components."""
    time = trading_minutes()
    n = len(time)
    session_open = np.r_[False, np.diff(time) > 60]
    activity = _intraday_activity()
    shocks = {}
    scales = {}
    for i, name in enumerate(_COMPONENTS):
        rng = _rng(i + 1)
        scales[name] = activity * _regime(time, rng)
        shocks[name] = rng.standard_normal(n) * scales[name]

    paths: dict[str, _Path] = {}
    gap_rng = _rng(100)
    for symbol, loadings in _LOADINGS.items():
        move = sum(_component_sigma(symbol, c) * shocks[c] for c in loadings)
        var = sum((_component_sigma(symbol, c) * scales[c]) ** 2 for c in loadings)
        sigma_m = SYMBOLS[symbol].annual_vol / np.sqrt(MINUTES_PER_YEAR)
        gap = np.where(session_open, gap_rng.standard_normal(n) * sigma_m * _WEEKEND_GAP_MINUTES, 0.0)
        paths[symbol] = _Path(move, gap, np.sqrt(var))

    leader = paths[LEADER].returns
    link = sum(beta * previous_bar_move(leader, time, tf) for tf, beta in LEAD_LAG_BETA.items())
    follower = paths[FOLLOWER]
    paths[FOLLOWER] = _Path(follower.move + link, follower.gap, follower.sigma)

    # The cross: EURGBP = EURUSD / GBPUSD, in log space a difference. Its intrabar volatility ignores the small link.
    eur, gbp = paths["EURUSD"], paths["GBPUSD"]
    cross_var = sum(
        (_component_sigma("EURUSD", c) - _component_sigma("GBPUSD", c)) ** 2 * scales[c] ** 2 for c in _COMPONENTS
    )
    paths["EURGBP"] = _Path(eur.move - gbp.move, eur.gap - gbp.gap, np.sqrt(cross_var))
    return paths


def _component_sigma(symbol: str, component: str) -> float:
    """Per-minute volatility `symbol` takes from `component`."""
    own = _FOLLOWER_OWN_SCALE if symbol == FOLLOWER else 1.0
    sigma_m = SYMBOLS[symbol].annual_vol / np.sqrt(MINUTES_PER_YEAR)
    return sigma_m * own * _LOADINGS[symbol].get(component, 0.0)


_lock = threading.Lock()


def m1(symbol: str) -> CandleSeries:
    """The synthetic M1 series of `symbol` (the whole market is generated on first use and cached; arrays are
    read-only)."""
    if symbol not in SYMBOLS:
        raise NotFound(f"no synthetic data for symbol {quoted(symbol)}", field="symbol")
    with _lock:  # one thread generates while the others wait for the cached result
        return _market()[symbol]


@lru_cache(maxsize=1)
def _market() -> dict[str, CandleSeries]:
    return generate()


def generate() -> dict[str, CandleSeries]:
    """Build the M1 series of every symbol from scratch, bypassing every cache (for determinism checks)."""
    paths = _build_paths()
    return {symbol: _build_m1(symbol, paths[symbol]) for symbol in SYMBOLS}


def _build_m1(symbol: str, path: _Path) -> CandleSeries:
    spec = SYMBOLS[symbol]
    time = trading_minutes()
    n = len(time)
    rng = _rng(200 + list(SYMBOLS).index(symbol))

    log_close = np.log(spec.price) + np.cumsum(path.returns)
    log_open = log_close - path.move
    # Extremes of a Brownian bridge from 0 to `move` with the bar's variance, sampled exactly by inversion.
    var = path.sigma**2
    up = 0.5 * (path.move + np.sqrt(path.move**2 - 2.0 * var * np.log(rng.random(n))))
    down = 0.5 * (path.move - np.sqrt(path.move**2 - 2.0 * var * np.log(rng.random(n))))

    def quote(log_price: np.ndarray) -> np.ndarray:
        return np.round(np.exp(log_price), spec.digits)

    close = quote(log_close)
    session_open = np.r_[True, np.diff(time) > 60]
    # Open equals the previous close exactly (same rounded number) except after the weekend gap.
    open_ = np.where(session_open, quote(log_open), np.r_[close[0], close[:-1]])
    high = np.maximum(quote(log_open + up), np.maximum(open_, close))
    low = np.minimum(quote(log_open + down), np.minimum(open_, close))

    sigma_m = np.sqrt(np.mean(var))
    activity = _intraday_activity()
    surprise = np.abs(path.move) / path.sigma
    noise = np.exp(rng.standard_normal(n) * 0.3 - 0.045)
    ticks = spec.ticks_per_minute * activity**2 * (path.sigma / sigma_m) * (0.6 + 0.5 * surprise) * noise
    volume = np.maximum(np.round(ticks), 1.0)

    return CandleSeries(symbol, Timeframe.M1, time, *(_frozen(c) for c in (open_, high, low, close, volume)))


def candles(symbol: str, timeframe: Timeframe) -> CandleSeries:
    """The synthetic series of `symbol` at `timeframe`, resampled from M1 (cached per symbol and timeframe)."""
    if symbol not in SYMBOLS:
        raise NotFound(f"no synthetic data for symbol {quoted(symbol)}", field="symbol")
    timeframe = Timeframe.parse(timeframe)
    if timeframe is Timeframe.M1:
        return m1(symbol)
    return _resampled(symbol, timeframe)


@lru_cache(maxsize=None)
def _resampled(symbol: str, timeframe: Timeframe) -> CandleSeries:
    out = resample(m1(symbol), timeframe)
    return CandleSeries(out.symbol, out.timeframe, *(_frozen(getattr(out, c)) for c in CandleSeries.COLUMNS))


def warm(timeframes: tuple[Timeframe, ...] = tuple(Timeframe)) -> None:
    """Generate every symbol and resample it to `timeframes` now, so later requests only slice cached arrays."""
    for symbol in SYMBOLS:
        for tf in timeframes:
            candles(symbol, tf)


def first_last_time(symbol: str) -> tuple[datetime, datetime]:
    """Open times of the first and last M1 bar (all symbols share the calendar; no generation needed)."""
    t = trading_minutes()
    return from_unix(t[0]), from_unix(t[-1])


def resample(series: CandleSeries, timeframe: Timeframe) -> CandleSeries:
    """Aggregate `series` into bars of `timeframe`: open = first open, high = max, low = min, close = last close,
    volume = sum. A bar's time is the start of its bucket, aligned to UTC epoch multiples of the timeframe (so D1 starts
    at 00:00 UTC and H4 at 00:00, 04:00, … UTC); buckets without source bars are absent. `series.time` must be
    ascending. The target must be the series' own timeframe (returned unchanged) or a coarser one that is a whole
    multiple of it."""
    timeframe = Timeframe.parse(timeframe)
    source = series.timeframe
    if timeframe is source:
        return series
    if timeframe.seconds < source.seconds or timeframe.seconds % source.seconds:
        raise InvalidArgument(
            f"cannot resample {source.value} bars to {timeframe.value}: the target must be a coarser multiple",
            field="timeframe",
        )
    if len(series) == 0:
        return CandleSeries.empty(series.symbol, timeframe)
    bucket = series.time // timeframe.seconds
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(series)] - 1
    return CandleSeries(
        series.symbol,
        timeframe,
        np.ascontiguousarray(bucket[starts] * timeframe.seconds, dtype=np.int64),
        np.ascontiguousarray(series.open[starts], dtype=np.float64),
        np.maximum.reduceat(series.high, starts).astype(np.float64, copy=False),
        np.minimum.reduceat(series.low, starts).astype(np.float64, copy=False),
        np.ascontiguousarray(series.close[ends], dtype=np.float64),
        np.add.reduceat(series.volume, starts).astype(np.float64, copy=False),
    )
