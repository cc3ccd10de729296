"""Live quotes and closing bars: the market's bars replayed as a stream, one shared generator per symbol.

The quote path
--------------
Quote `n` of a symbol is a pure function of (seed, symbol, n, the symbol's bars), so any replica computes the same
quote for the same sequence and a stream can resume anywhere from any recent sequence. Each source bar (synthetic M1,
or the finest imported timeframe) yields `per_bar` quotes: bar `(n // per_bar) % len(bars)` of cycle
`n // (per_bar * len(bars))`, step `j = n % per_bar`. Step 0 is the bar's open, step `per_bar - 1` its close, and two
steps in between its extremes (which comes first is decided by the seed), linear in between with a little seeded
noise kept inside [low, high]. So the mids of one bar's quotes span exactly that bar's open, high, low and close: the
stream is consistent with GetCandles, and a ClosedCandle is the very bar GetCandles returns. Bid and ask sit half a
seeded spread (a typical spread per symbol) either side of the mid. A quote's time is market time: its bar's open
time plus `j / per_bar` of the bar. When the data is exhausted the replay starts again from its first bar (a new
cycle: times start over, the sequence keeps counting, and the price jumps as over a weekend).

The clock
---------
The newest sequence at wall time t is `floor((t - epoch) * rate)`, the same on every replica with the same settings.
One clock task per process advances every symbol's feed at once (so quotes of several symbols interleave
deterministically: by sequence, then by requested symbol order) and keeps the recent quotes of each feed in a ring that
every subscriber reads: quotes are computed once per symbol, whoever listens.

Backpressure
------------
A subscriber holds no queue of its own: its buffer is its window on the shared ring, bounded by `lag_bound` quotes per
symbol. A live consumer that falls further behind is conflated: it skips to the latest quote of each symbol (its
sequences jump; `conflated` counts what it skipped). Bars are never skipped: a consumer more than `candle_lag_bound`
closed bars behind is ended with ResourceExhausted. The backlog a resume asks for (at most `resume_window_s` old) is
always delivered in full, never conflated.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.market_types import CandleSeries, Timeframe
from services.market_analysis import synthetic
from services.market_analysis.models import ClosedCandle, Quote

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
# Typical spread in pips; other symbols get DEFAULT_SPREAD_PIPS.
SPREAD_PIPS = {"EURUSD": 0.8, "GBPUSD": 1.0, "USDJPY": 0.9, "USDCHF": 1.2, "AUDUSD": 1.0, "USDCAD": 1.3,
               "NZDUSD": 1.5, "EURGBP": 1.1}
DEFAULT_SPREAD_PIPS = 1.5
CHUNK = 512  # quotes per symbol in one batch handed to a subscriber
_FUTURE_TOLERANCE_S = 5.0  # a resume position this far ahead of our clock (another replica's skew) is accepted


@dataclass(frozen=True)
class QuoteSettings:
    rate: float = 10.0  # quotes per second per symbol
    per_bar: int = 4  # quotes per source bar, >= 4 (open, two extremes, close)
    seed: int = 1
    epoch: float = EPOCH  # unix time of sequence 0
    lag_bound: int = 256  # quotes per symbol a live consumer may lag before it is conflated
    candle_lag_bound: int = 64  # closed bars a consumer may lag before it is ended RESOURCE_EXHAUSTED
    resume_window_s: float = 3600.0  # how old a resume position may be
    max_symbols: int = 20  # per stream
    min_tick_s: float = 0.02  # the clock wakes at most this often (quotes in between are sent together)

    def __post_init__(self) -> None:
        if not (0 < self.rate <= 100_000):
            raise ValueError(f"quote rate must be in (0, 100000] per second, not {self.rate}")
        if not (4 <= self.per_bar <= 3600):
            raise ValueError(f"quotes per bar must be in [4, 3600], not {self.per_bar}")
        if self.lag_bound < 1 or self.candle_lag_bound < 1:
            raise ValueError("lag bounds must be at least 1")

    @property
    def ahead(self) -> int:
        """Quotes per symbol computed in one go ahead of the clock: about a second's worth, 16..4096."""
        return min(4096, max(16, int(self.rate)))

    @property
    def ring(self) -> int:
        """Recent quotes kept per symbol: twice the lag bound, and at least two seconds' worth."""
        return max(2 * self.lag_bound, int(2 * self.rate), CHUNK)


def _mix(*parts: np.ndarray | int) -> np.ndarray:
    """splitmix64 over the parts: a fast, seeded, platform-independent hash to uint64 (vectorised)."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x9E3779B97F4A7C15)
        for p in parts:
            z = h + np.asarray(p).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = z ^ (z >> np.uint64(31))
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    """uint64 hash -> float in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Replay:
    """One symbol's bars as a quote path (see the module docstring): a pure function of the sequence."""

    def __init__(self, symbol: str, series: CandleSeries, *, pip_size: float, digits: int,
                 settings: QuoteSettings) -> None:
        if len(series) == 0:
            raise InvalidArgument(f"{symbol} has no bars to stream", field="symbols")
        self.symbol, self.series, self.settings = symbol, series, settings
        self.k = settings.per_bar
        self.n_bars = len(series)
        self.bar_s = series.timeframe.seconds
        self.digits = digits
        self.half_spread = pip_size * SPREAD_PIPS.get(symbol, DEFAULT_SPREAD_PIPS) / 2
        self.point = 10.0 ** -digits
        self._sym = int(_mix(*symbol.encode()) % np.uint64(1 << 31))
        self._close_cache: dict[Timeframe, tuple[np.ndarray, CandleSeries]] = {}

    def quotes(self, start: int, stop: int) -> list[Quote]:
        """Quotes with sequences start <= n < stop."""
        if stop <= start:
            return []
        n = np.arange(start, stop, dtype=np.int64)
        k, s = self.k, self.series
        bar_abs = n // k
        bar, j = bar_abs % self.n_bars, (n % k).astype(np.float64)
        o, hi, lo, c = s.open[bar], s.high[bar], s.low[bar], s.close[bar]
        h = _mix(self.settings.seed, self._sym, bar_abs)
        high_first = (h & np.uint64(1)).astype(bool)
        # The extremes' steps a < b, both strictly between the open (0) and the close (k - 1).
        a = 1 + ((h >> np.uint64(1)) % np.uint64(max(1, k - 3))).astype(np.int64) if k > 4 else np.ones_like(n)
        b = a + 1 + ((h >> np.uint64(20)) % np.maximum(1, k - 2 - a).astype(np.uint64)).astype(np.int64)
        first, second = np.where(high_first, hi, lo), np.where(high_first, lo, hi)
        mid = np.where(j <= a, o + (first - o) * j / a,
                       np.where(j <= b, first + (second - first) * (j - a) / (b - a),
                                second + (c - second) * (j - b) / np.maximum(1, k - 1 - b)))
        anchor = (j == 0) | (j == a) | (j == b) | (j == k - 1)
        u = _unit(_mix(self.settings.seed, self._sym, n, 1))
        noisy = np.clip(mid + (u - 0.5) * 0.3 * (hi - lo), lo, hi)
        mid = np.where(anchor, mid, np.round(noisy, self.digits))
        half = self.half_spread * (0.8 + 0.4 * _unit(_mix(self.settings.seed, self._sym, n, 2)))
        bid = np.round(np.minimum(mid - half, mid - self.point), self.digits)
        ask = np.round(np.maximum(mid + half, mid + self.point), self.digits)
        t = s.time[bar].astype(np.float64) + j * (self.bar_s / k)
        sym = self.symbol
        return [Quote(sym, seq, tm, bd, ak, md)
                for seq, tm, bd, ak, md in zip(n.tolist(), t.tolist(), bid.tolist(), ask.tolist(), mid.tolist())]

    def _closes(self, timeframe: Timeframe) -> tuple[np.ndarray, CandleSeries]:
        """Indices of the source bars that close a `timeframe` bar, and those bars (resampled from the source)."""
        if timeframe in self._close_cache:
            return self._close_cache[timeframe]
        bars = synthetic.resample(self.series, timeframe)  # InvalidArgument for a timeframe finer than the data
        bucket = self.series.time // timeframe.seconds
        closes = np.r_[np.flatnonzero(bucket[1:] != bucket[:-1]), self.n_bars - 1]
        self._close_cache[timeframe] = closes, bars
        return closes, bars

    def check_timeframe(self, timeframe: Timeframe) -> None:
        self._closes(timeframe)

    def candles(self, timeframe: Timeframe, after: int, upto: int, limit: int) -> list[ClosedCandle]:
        """Bars of `timeframe` closed by quotes after < n <= upto (a bar closes with its last source bar's close
        quote), at most `limit`, oldest first."""
        closes, bars = self._closes(timeframe)
        per_cycle = self.k * self.n_bars
        out: list[ClosedCandle] = []
        cycle = max(0, after + 1) // per_cycle
        while len(out) < limit and cycle * per_cycle <= upto:
            seqs = cycle * per_cycle + closes * self.k + self.k - 1
            lo, hi = np.searchsorted(seqs, after, side="right"), np.searchsorted(seqs, upto, side="right")
            for i in range(lo, min(hi, lo + limit - len(out))):
                out.append(ClosedCandle(self.symbol, timeframe, int(seqs[i]), int(bars.time[i]),
                                        float(bars.open[i]), float(bars.high[i]), float(bars.low[i]),
                                        float(bars.close[i]), float(bars.volume[i])))
            cycle += 1
        return out


@dataclass(frozen=True)
class SourceInfo:
    """What the hub needs to replay a symbol: its finest bars and how it is quoted."""

    series: CandleSeries
    pip_size: float
    digits: int


class _Feed:
    """One symbol's shared generator: the recent quotes (a ring over sequences ring_lo..head) of its replay."""

    def __init__(self, replay: Replay, size: int, ahead: int) -> None:
        self.replay, self.size, self.ahead = replay, size, ahead
        self.ring: list[Quote] = []
        self.ring_lo = 0
        self.subscribers = 0
        self._next: list[Quote] = []  # quotes computed ahead of the clock (not yet published), from _next_lo
        self._next_lo = 0

    def _generate(self, start: int, stop: int) -> list[Quote]:
        """Quotes start <= n < stop, computed `ahead` at a time: a tick publishes one or a few quotes per symbol, and
        numpy's cost per call, not per quote, dominated when each tick computed its own (the quotes are the same)."""
        if not (self._next_lo <= start and stop <= self._next_lo + len(self._next)):
            self._next_lo, self._next = start, self.replay.quotes(start, max(stop, start + self.ahead))
        return self._next[start - self._next_lo:stop - self._next_lo]

    def advance(self, head: int, target: int) -> None:
        """Publish the quotes after `head` up to `target`."""
        first = max(head + 1, target - self.size + 1)
        if not self.ring or first != self.ring_lo + len(self.ring):
            self.ring, self.ring_lo = [], first
        self.ring.extend(self._generate(first, target + 1))
        if len(self.ring) > 2 * self.size:  # trim in bulk: amortised O(1) per quote
            drop = len(self.ring) - self.size
            del self.ring[:drop]
            self.ring_lo += drop

    def quotes(self, start: int, stop: int) -> list[Quote]:
        """Quotes start <= n < stop: from the ring when it holds them, else computed (a resume's backlog)."""
        if start >= self.ring_lo and stop <= self.ring_lo + len(self.ring):
            return self.ring[start - self.ring_lo:stop - self.ring_lo]
        return self.replay.quotes(start, stop)


class QuoteHub:
    """Every symbol's feed in one process, advanced by one clock task that runs while anyone subscribes."""

    def __init__(self, source: Callable[[str], SourceInfo], settings: QuoteSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or QuoteSettings()
        self._source, self._clock = source, clock
        self._feeds: dict[str, _Feed] = {}
        self._subscriptions = 0
        self._task: asyncio.Task | None = None
        self._tick = asyncio.Event()
        self.head = self.sequence_now()

    def sequence_now(self) -> int:
        return math.floor((self._clock() - self.settings.epoch) * self.settings.rate)

    def replay(self, symbol: str) -> Replay:
        """A symbol's replay, not shared (for tests and direct computation)."""
        info = self._source(symbol)
        return Replay(symbol, info.series, pip_size=info.pip_size, digits=info.digits, settings=self.settings)

    async def _feed(self, symbol: str) -> _Feed:
        feed = self._feeds.get(symbol)
        if feed is None:
            replay = await asyncio.to_thread(self.replay, symbol)  # may load or generate data: off the loop
            feed = self._feeds.setdefault(symbol, _Feed(replay, self.settings.ring, self.settings.ahead))
        return feed

    # --- subscribing ------------------------------------------------------------------------------------------------

    async def quotes(self, symbols: list[str], after: dict[str, int] | None = None) -> QuoteSubscription:
        """Subscribe to `symbols`; `after` maps a symbol to the sequence it resumes after (else: the live quote)."""
        symbols = [str(s).strip().upper() for s in symbols]
        after = {str(s).strip().upper(): int(n) for s, n in (after or {}).items()}
        if not symbols:
            raise InvalidArgument("at least one symbol is required", field="symbols")
        if len(symbols) > self.settings.max_symbols:
            raise InvalidArgument(f"at most {self.settings.max_symbols} symbols per stream, got {len(symbols)}",
                                  field="symbols")
        if len(set(symbols)) != len(symbols):
            raise InvalidArgument("symbols must not repeat", field="symbols")
        if stray := sorted(set(after) - set(symbols)):
            raise InvalidArgument(f"resume positions for symbols not requested: {', '.join(stray)}",
                                  field="resume_after")
        self._start_clock()
        for n in after.values():
            self._check_resume(n, "resume_after")
        feeds = [await self._feed(s) for s in symbols]
        return QuoteSubscription(self, feeds, after)

    async def candles(self, symbol: str, timeframe: Timeframe | str, after: int = 0) -> CandleSubscription:
        """Subscribe to `symbol`'s bars of `timeframe` as they close, after sequence `after` (0: the next to close)."""
        timeframe = Timeframe.parse(timeframe)
        symbol = str(symbol).strip().upper()
        self._start_clock()
        if after:
            self._check_resume(after, "resume_after")
        feed = await self._feed(symbol)
        feed.replay.check_timeframe(timeframe)
        return CandleSubscription(self, feed, timeframe, after or self.head)

    def _check_resume(self, n: int, field: str) -> None:
        oldest = self.head - int(self.settings.resume_window_s * self.settings.rate)
        newest = self.head + int(_FUTURE_TOLERANCE_S * self.settings.rate)
        if n < oldest:
            raise InvalidArgument(f"resume position {n} is older than the {self.settings.resume_window_s:g} s a stream "
                                  f"can resume from (oldest {oldest}); start a new stream", field=field)
        if n > newest:
            raise InvalidArgument(f"resume position {n} lies in the future (newest {self.head})", field=field)

    def _attach(self, feeds: list[_Feed]) -> None:
        self._subscriptions += 1
        for f in feeds:
            f.subscribers += 1

    def _detach(self, feeds: list[_Feed]) -> None:
        self._subscriptions -= 1
        for f in feeds:
            f.subscribers -= 1
            if f.subscribers == 0 and self._feeds.get(f.replay.symbol) is f:
                del self._feeds[f.replay.symbol]

    # --- the clock --------------------------------------------------------------------------------------------------

    def _start_clock(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self.head = self.sequence_now()
            self._tick = asyncio.Event()
            self._task = loop.create_task(self._run(), name="quote-clock")

    async def _run(self) -> None:
        interval = max(self.settings.min_tick_s, 1.0 / self.settings.rate)
        idle_ticks = 0
        while idle_ticks < 50:  # stops a while after the last subscriber left; the next one starts it again
            await asyncio.sleep(interval)
            idle_ticks = 0 if self._subscriptions else idle_ticks + 1
            target = self.sequence_now()
            if target <= self.head:
                continue
            for feed in list(self._feeds.values()):
                feed.advance(self.head, target)
            self.head = target
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next tick; False after `timeout` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                await self._tick.wait()
            return True
        except TimeoutError:
            return False


class _Subscription:
    def __init__(self, hub: QuoteHub, feeds: list[_Feed]) -> None:
        self.hub, self._feeds = hub, feeds
        self.backlog_until = hub.head  # sequences up to here were asked for by a resume: never conflated
        self.closed = False
        hub._attach(feeds)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._detach(self._feeds)

    async def next(self, timeout: float) -> list:
        """The next batch, waiting up to `timeout` seconds for one; [] when nothing came (time for a heartbeat)."""
        deadline = time.monotonic() + timeout
        while True:
            batch = self._take()
            if batch:
                return batch
            left = deadline - time.monotonic()
            if left <= 0 or not await self.hub.wait(left):
                return []

    def _take(self) -> list:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class QuoteSubscription(_Subscription):
    """One consumer of quotes: per symbol, the next sequence it gets."""

    def __init__(self, hub: QuoteHub, feeds: list[_Feed], after: dict[str, int]) -> None:
        super().__init__(hub, feeds)
        self.symbols = [f.replay.symbol for f in feeds]
        self.next_seq = {s: after[s] + 1 if s in after else hub.head for s in self.symbols}
        self._order = {s: i for i, s in enumerate(self.symbols)}
        self.conflated = 0  # quotes skipped because this consumer lagged beyond the bound

    def _take(self) -> list[Quote]:
        head, bound = self.hub.head, self.hub.settings.lag_bound
        for s, n in self.next_seq.items():
            if n > self.backlog_until and head - n >= bound:  # a live consumer too far behind: latest quote only
                self.conflated += head - n
                self.next_seq[s] = head
        low = min(self.next_seq.values())
        if low > head:
            return []
        upto = min(head, low + CHUNK - 1)
        out: list[Quote] = []
        for feed in self._feeds:
            s = feed.replay.symbol
            n = self.next_seq[s]
            if n <= upto:
                out.extend(feed.quotes(n, upto + 1))
                self.next_seq[s] = upto + 1
        if len(self._feeds) > 1:
            out.sort(key=lambda q: (q.sequence, self._order[q.symbol]))
        return out


class CandleSubscription(_Subscription):
    """One consumer of closing bars: the sequence of the last bar it got."""

    def __init__(self, hub: QuoteHub, feed: _Feed, timeframe: Timeframe, after: int) -> None:
        super().__init__(hub, [feed])
        self.replay, self.timeframe, self.last = feed.replay, timeframe, after

    def _take(self) -> list[ClosedCandle]:
        bound = self.hub.settings.candle_lag_bound
        live = self.last >= self.backlog_until
        candles = self.replay.candles(self.timeframe, self.last, self.hub.head, CHUNK if not live else bound + 1)
        if live and len(candles) > bound:
            raise ResourceExhausted(
                f"the consumer fell more than {bound} bars behind; bars are never dropped, so the stream ends: "
                f"resume after sequence {self.last}", reason="STREAM_CONSUMER_TOO_SLOW",
                metadata={"resume_after": str(self.last)})
        if candles:
            self.last = candles[-1].sequence
        return candles
