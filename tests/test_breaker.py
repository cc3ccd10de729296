"""The breaker's window (adapters.breaker): it opens on the failure rate or the slow-call rate of the last N calls,
counted over every call (also the good calls a steady window does not store again), and lets a limited number of
trial calls through once its open time has passed."""
from __future__ import annotations

import time

import pytest

from adapters.breaker import AsyncBreaker, BreakerConfig, BreakerOpen


def breaker(**config) -> AsyncBreaker:
    return AsyncBreaker("svc", "test", is_failure=lambda exc: True, config=BreakerConfig(**config))


def settle(b: AsyncBreaker, *, failed: bool = False, seconds: float = 0.001, slow_s: float = 1.0) -> None:
    b.settle(b.admit(), seconds, slow_s, failed)


def test_failures_open_it_at_the_rate_of_the_whole_window_also_after_a_long_run_of_good_calls():
    b = breaker(window_size=20, min_calls=10, failure_rate=0.5)
    for _ in range(100):  # the window is full of good calls long before the failures start
        settle(b)
    for n in range(1, 10):
        settle(b, failed=True)
        assert b.closed, f"opened after {n} failures in a window of 20: {b.last_trip}"
    settle(b, failed=True)  # 10 of the last 20
    assert not b.closed and b.last_trip == "failure_rate 0.50"
    with pytest.raises(BreakerOpen):
        b.admit()


def test_good_calls_after_failures_push_them_out_of_the_window():
    b = breaker(window_size=20, min_calls=10, failure_rate=0.5)
    for _ in range(25):
        settle(b)
    for _ in range(9):
        settle(b, failed=True)
    for _ in range(20):  # the 9 failures leave the window
        settle(b)
    for n in range(9):
        settle(b, failed=True)
    assert b.closed  # 9 of 20 again, not 18
    settle(b, failed=True)
    assert not b.closed


def test_slow_calls_open_it_at_the_slow_call_rate():
    b = breaker(window_size=10, min_calls=10, slow_rate=0.5)
    for _ in range(30):
        settle(b)
    for _ in range(4):
        settle(b, seconds=2.0)
    assert b.closed
    settle(b, seconds=2.0)
    assert not b.closed and b.last_trip == "slow_call_rate 0.50"


def test_after_its_open_time_it_admits_only_its_trial_calls_and_closes_when_they_succeed():
    b = breaker(window_size=10, min_calls=5, failure_rate=0.5, open_s=0.05, half_open_calls=2)
    for _ in range(5):
        settle(b, failed=True)
    assert not b.closed
    time.sleep(0.06)
    trials = [b.admit(), b.admit()]
    assert trials == [True, True]
    with pytest.raises(BreakerOpen, match="trial"):
        b.admit()
    for trial in trials:
        b.settle(trial, 0.001, 1.0, False)
    assert b.closed and b.state == "closed"
