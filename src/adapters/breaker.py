"""A circuit breaker for asyncio calls, on pybreaker.

pybreaker has no native asyncio support and its half-open state lets every concurrent caller through. Here the guarded
coroutine runs inside `breaker.calling()` (so pybreaker sees the awaited outcome, not a coroutine object), only
transport failures count, and while a trial is in flight every other caller is refused at once, so a recovering server
sees exactly one trial call.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pybreaker

from transport.metrics import BREAKER_STATE

T = TypeVar("T")
BreakerOpen = pybreaker.CircuitBreakerError
_STATE_VALUE = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class _Gauge(pybreaker.CircuitBreakerListener):
    def __init__(self, service: str, caller: str, target: str) -> None:
        self._gauge = BREAKER_STATE.labels(service, caller, target)
        self._gauge.set(0)  # a new breaker starts closed, whatever an earlier one with these labels said

    def state_change(self, cb, old_state, new_state) -> None:
        self._gauge.set(_STATE_VALUE[new_state.name])


class AsyncBreaker:
    def __init__(self, service: str, target: str, *, is_failure: Callable[[BaseException], bool], fail_max: int = 5,
                 reset_timeout: float = 5.0, caller: str = "") -> None:
        """`caller` (the calling service) labels the state gauge: each caller keeps its own breaker per target."""
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout, name=f"{service}@{target}",
            exclude=[lambda exc: not is_failure(exc)], listeners=[_Gauge(service, caller, target)],
            # The call that trips the breaker ran on gRPC: it must fail with its own error, not as "breaker open"
            # (which tells the adapter gRPC never ran it, so even a write would be replayed over REST).
            throw_new_error_on_trip=False)
        self._trial_in_flight = False
        self.trials = 0  # trial calls let through, for status and tests

    @property
    def state(self) -> str:
        return self._cb.current_state

    def _is_trial(self) -> bool:
        if self._cb.current_state == pybreaker.STATE_HALF_OPEN:
            return True
        if self._cb.current_state == pybreaker.STATE_OPEN:
            opened = self._cb._state_storage.opened_at  # pybreaker's own clock for the reset timeout
            return opened is None or datetime.now(UTC) >= opened + timedelta(seconds=self._cb.reset_timeout)
        return False

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        trial = self._is_trial()
        if trial:
            if self._trial_in_flight:
                raise BreakerOpen("circuit half-open: a trial call is in flight")
            self._trial_in_flight = True
            self.trials += 1
        try:
            with self._cb.calling():
                return await fn()
        finally:
            if trial:
                self._trial_in_flight = False
