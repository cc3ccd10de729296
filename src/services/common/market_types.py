"""Types shared by every service's domain: timeframes, time ranges and the columnar candle series.

Candles are columns of numpy arrays, never a Python object per bar: 100k bars must move between transports and indicators
without per-bar loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

import numpy as np

from services.common.errors import InvalidArgument, quoted


class Timeframe(str, Enum):
    M1 = "M1"
    M5 = "M5"
    M15 = "M15"
    M30 = "M30"
    H1 = "H1"
    H4 = "H4"
    D1 = "D1"

    @property
    def seconds(self) -> int:
        return _TF_SECONDS[self]

    @property
    def bars_per_year(self) -> float:
        """Bars in a trading year (FX trades ~5 days × 52 weeks), used to annualise volatility, Sharpe and Sortino."""
        return 260 * 86400 / self.seconds

    @classmethod
    def parse(cls, value: "str | Timeframe", field: str = "timeframe") -> "Timeframe":
        if isinstance(value, Timeframe):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            raise InvalidArgument(
                f"unknown timeframe {quoted(value)}; expected one of {', '.join(t.value for t in cls)}", field=field
            ) from None


_TF_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.M30: 1800,
    Timeframe.H1: 3600,
    Timeframe.H4: 14400,
    Timeframe.D1: 86400,
}


def utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def to_unix(dt: datetime) -> int:
    return int(utc(dt).timestamp())


def from_unix(ts: int | float) -> datetime:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc)


@dataclass(frozen=True)
class TimeRange:
    """Half-open [start, end) in UTC; either end may be open (None = from the first / to the last available bar)."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None:
            object.__setattr__(self, "start", utc(self.start))
        if self.end is not None:
            object.__setattr__(self, "end", utc(self.end))
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidArgument(
                f"empty or inverted range: start {self.start.isoformat()} is not before end {self.end.isoformat()}",
                field="range",
            )


@dataclass(frozen=True, eq=False)
class CandleSeries:
    """OHLCV bars as columns. `time` is the bar's open time in unix seconds (int64); prices and volume are float64."""

    symbol: str
    timeframe: Timeframe
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    COLUMNS = ("time", "open", "high", "low", "close", "volume")

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def slice(self, start: int, stop: int) -> "CandleSeries":
        # Written out: a page is cut on every GetCandles call, and a generator over COLUMNS costs as much as the cuts.
        return CandleSeries(self.symbol, self.timeframe, self.time[start:stop], self.open[start:stop],
                            self.high[start:stop], self.low[start:stop], self.close[start:stop],
                            self.volume[start:stop])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CandleSeries):
            return NotImplemented
        return (
            self.symbol == other.symbol
            and self.timeframe == other.timeframe
            and all(np.array_equal(getattr(self, c), getattr(other, c), equal_nan=True) for c in self.COLUMNS)
        )

    @classmethod
    def empty(cls, symbol: str, timeframe: Timeframe) -> "CandleSeries":
        z = np.empty(0, dtype=np.float64)
        return cls(symbol, timeframe, np.empty(0, dtype=np.int64), z, z, z, z, z)
