"""A circuit breaker for asyncio calls that judges rates, not streaks, and knows slowness (resilience4j's semantics).

A sliding window (the last N calls, or the calls of the last N seconds) holds each finished gRPC phase as failed or
not and slow or not. Once the window holds `min_calls`, the breaker opens when the failure rate or the slow-call rate
reaches its threshold. Open, it refuses calls for `open_s`; then it lets `half_open_calls` trial calls through (every
other caller is refused at once) and, when all of them are back, closes (their rates are under the thresholds) or opens
again.

pybreaker stays as the state machine and listener surface: its CircuitBreaker holds the state (closed / open /
half-open) and when it opened, and its listeners see every transition (the Prometheus gauge hangs on one). Its own
decision logic (consecutive failures, `calling()`) is not used: the window decides and calls `open()` / `half_open()` /
`close()`. That keeps the gauge, the state names and `BreakerOpen` that the rest of the code and the status page know.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pybreaker

from transport.metrics import BREAKER_CALLS, BREAKER_STATE, BREAKER_TRIPS

T = TypeVar("T")
BreakerOpen = pybreaker.CircuitBreakerError
_STATE_VALUE = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


@dataclass(frozen=True)
class BreakerConfig:
    """window: "count" (the last `window_size` calls) or "time" (the calls of the last `window_size` seconds).
    Rates are fractions (0.5 = 50 %). A call is slow when its gRPC phase took at least the method's slow-call threshold
    (see adapters.resilience); slow and failed are counted independently, as resilience4j does."""

    window: str = "count"
    window_size: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_rate: float = 0.5
    open_s: float = 5.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise ValueError(f"breaker window must be 'count' or 'time', not {self.window!r}")
        if self.window_size < 1 or self.min_calls < 1 or self.half_open_calls < 1 or self.open_s < 0:
            raise ValueError("breaker window_size, min_calls and half_open_calls must be >= 1, open_s >= 0")
        if not (0 < self.failure_rate <= 1 and 0 < self.slow_rate <= 1):
            raise ValueError("breaker failure_rate and slow_rate must be in (0, 1]")


class _Window:
    """Outcomes (time, failed, slow) of the latest calls, by count or by age, with running totals (so the happy path,
    a call neither failed nor slow, costs an append and never a scan). `steady`: a count window full of calls that
    neither failed nor were slow, which another such call leaves as it is (so it need not be added)."""

    def __init__(self, config: BreakerConfig) -> None:
        self._by_time = config.window == "time"
        self._size = config.window_size
        self._calls: collections.deque[tuple[float, bool, bool]] = collections.deque()
        self.failed = self.slow = 0
        self.steady = False

    def add(self, now: float, failed: bool, slow: bool) -> None:
        calls = self._calls
        calls.append((now, failed, slow))
        self.failed += failed
        self.slow += slow
        if self._by_time:
            self._expire(now)
        elif len(calls) > self._size:
            _, f, sl = calls.popleft()
            self.failed -= f
            self.slow -= sl
            self.steady = not (self.failed or self.slow)

    def _expire(self, now: float) -> None:
        calls, horizon = self._calls, now - self._size
        while calls and calls[0][0] < horizon:
            _, failed, slow = calls.popleft()
            self.failed -= failed
            self.slow -= slow

    def __len__(self) -> int:
        return len(self._calls)

    def rates(self, now: float) -> tuple[float, float]:
        if self._by_time:
            self._expire(now)
        n = len(self._calls)
        return (self.failed / n, self.slow / n) if n else (0.0, 0.0)

    def clear(self) -> None:
        self._calls.clear()
        self.failed = self.slow = 0
        self.steady = False


class _Gauge(pybreaker.CircuitBreakerListener):
    def __init__(self, service: str, caller: str, target: str, breaker: "AsyncBreaker") -> None:
        self._gauge = BREAKER_STATE.labels(service, caller, target)
        self._gauge.set(0)  # a new breaker starts closed, whatever an earlier one with these labels said
        self._breaker = breaker

    def state_change(self, cb, old_state, new_state) -> None:
        self._gauge.set(_STATE_VALUE[new_state.name])
        self._breaker.closed = new_state.name == pybreaker.STATE_CLOSED


class AsyncBreaker:
    def __init__(self, service: str, target: str, *, is_failure: Callable[[BaseException], bool],
                 config: BreakerConfig = BreakerConfig(), caller: str = "") -> None:
        """`caller` (the calling service) labels the metrics: each caller keeps its own breaker per target."""
        self.config = config
        self._is_failure = is_failure
        # pybreaker's state, mirrored by its listener: the closed check on every call is one attribute, not a
        # property chain through the state storage.
        self.closed = True
        self._cb = pybreaker.CircuitBreaker(name=f"{service}@{target}", reset_timeout=config.open_s,
                                            listeners=[_Gauge(service, caller, target, self)])
        self._window = _Window(config)
        self._trial = _Window(BreakerConfig(window_size=config.half_open_calls))
        self._trials_in_flight = 0
        self._opened_at = 0.0
        self.trials = 0  # trial calls let through, for status and tests
        self.last_trip = ""  # why it last opened: "slow_call_rate 1.00", "failure_rate 0.80", or both
        self.trip_log: collections.deque[str] = collections.deque(maxlen=20)  # the latest reasons, oldest first
        self._counts = {(f, s): BREAKER_CALLS.labels(service, caller, target, "failed" if f else "ok", "slow")
                        for f in (False, True) for s in (False, True) if f or s}
        self._trips = {rate: BREAKER_TRIPS.labels(service, caller, target, rate)
                       for rate in ("failure_rate", "slow_call_rate")}

    @property
    def state(self) -> str:
        return self._cb.current_state

    def snapshot(self) -> dict:
        """What `fxplat status` shows: state, the window's rates and the last reason to open."""
        failure, slow = self._window.rates(time.monotonic())
        return {"state": self.state, "calls": len(self._window), "failure_rate": round(failure, 3),
                "slow_rate": round(slow, 3), "last_trip": self.last_trip, "config": self.config.__dict__}

    def admit(self) -> bool:
        """Whether a call may go now (raises BreakerOpen when not); True when it is a half-open trial. Every admitted
        call must be `settle`d."""
        if self.closed:
            return False
        state = self._cb.current_state
        if state == pybreaker.STATE_CLOSED:
            return False
        if state == pybreaker.STATE_OPEN:
            if time.monotonic() - self._opened_at < self.config.open_s:
                raise BreakerOpen("circuit open")
            self._trial.clear()
            self._cb.half_open()
        if self._trials_in_flight + len(self._trial) >= self.config.half_open_calls:
            raise BreakerOpen("circuit half-open: its trial calls are in flight")
        self._trials_in_flight += 1
        self.trials += 1
        return True

    def settle(self, trial: bool, seconds: float, slow_s: float, failed: bool | None) -> None:
        """Record an admitted call that took `seconds`: failed (a transport failure), slow (took at least `slow_s`);
        `failed=None`: it was cancelled (its caller gave up, or a hedge won), which counts only if already slow."""
        slow = seconds >= slow_s
        if failed is False and not slow and self.closed and self._window.steady:
            return  # a closed breaker's full window of good calls, and one more: nothing changes (nearly every call)
        if trial:
            self._trials_in_flight -= 1
        if failed is not None or slow:
            self._record(trial, bool(failed), slow, time.monotonic())

    def failure(self, exc: BaseException) -> bool | None:
        """What `settle` is told of a call that raised `exc`: None for a cancel (not an Exception)."""
        return self._is_failure(exc) if isinstance(exc, Exception) else None

    async def call(self, fn: Callable[[], Awaitable[T]], slow_s: float) -> T:
        """Run `fn` if the breaker admits it and record its outcome (see `settle`)."""
        trial = self.admit()
        start = time.monotonic()
        failed: bool | None = False
        try:
            return await fn()
        except BaseException as exc:
            failed = self.failure(exc)
            raise
        finally:
            self.settle(trial, time.monotonic() - start, slow_s, failed)

    def _record(self, trial: bool, failed: bool, slow: bool, now: float) -> None:
        if failed or slow:  # the happy path is not counted here: it is every call of fxplat_client_calls_total
            self._counts[failed, slow].inc()
        if trial or not self.closed and self._cb.current_state == pybreaker.STATE_HALF_OPEN:
            if self._cb.current_state != pybreaker.STATE_HALF_OPEN:
                return  # a trial that finished after others had decided
            self._trial.add(now, failed, slow)
            if len(self._trial) >= self.config.half_open_calls:
                if self._over(self._trial, now):
                    self._open(now)
                else:
                    self._window.clear()
                    self._cb.close()
            return
        if not self.closed:
            return  # a call admitted before the breaker opened
        window = self._window
        window.add(now, failed, slow)
        if (window.failed or window.slow) and len(window) >= self.config.min_calls and self._over(window, now):
            self._open(now)

    def _over(self, window: _Window, now: float) -> bool:
        failure, slow = window.rates(now)
        over = ([f"slow_call_rate {slow:.2f}"] if slow >= self.config.slow_rate else []) + \
            ([f"failure_rate {failure:.2f}"] if failure >= self.config.failure_rate else [])
        if over:
            self.last_trip = ", ".join(over)
            self.trip_log.append(self.last_trip)
        return bool(over)

    def _open(self, now: float) -> None:
        self._trips[self.last_trip.split()[0]].inc()
        self._opened_at = now
        self._window.clear()
        self._cb.open()
