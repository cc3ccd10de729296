"""The bounds of one gRPC attempt, and the hedge of a read onto REST.

`AttemptBounds` keeps, per method, the latency of recent successful gRPC calls and derives the attempt bound from it
(see adapters.resilience for the rules). `hedge` races a slow primary against a backup started after a delay: grpcio
does not implement gRPC's own hedging, so the adapter does it, across transports.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.resilience import (ADAPT_FACTOR, ADAPT_FLOOR, ADAPT_MIN_SAMPLES, ATTEMPT_SHARE, HEDGE_FACTOR, HEDGE_MIN_S,
                                 HEDGE_TOKEN_RATIO, HEDGE_TOKENS, Kind)

_SAMPLES = 64  # recent successful calls per method
_EVERY = 16  # re-derive the bound every this many samples (sorting 64 floats is cheap, but not per call)


class AttemptBounds:
    def __init__(self) -> None:
        self._samples: dict[str, collections.deque[float]] = {}
        self._seen: dict[str, int] = {}
        self._adapted: dict[str, float] = {}
        self._hedge_after: dict[str, float] = {}
        self._tokens = HEDGE_TOKENS

    def hedge_delay(self, method: str, kind: Kind) -> float | None:
        """Seconds after which this read may be hedged, or None: no hedge for this call (throttled). Called once per
        call; earns the call's share of a hedge token."""
        self._tokens = min(HEDGE_TOKENS, self._tokens + HEDGE_TOKEN_RATIO)
        if self._tokens < 1.0:
            return None
        return self._hedge_after.get(method, kind.slow_s)

    def spend_hedge(self) -> None:
        self._tokens -= 1.0

    def bound(self, method: str, kind: Kind, remaining: float | None) -> float:
        """Seconds the next gRPC attempt of `method` may take."""
        b = self._adapted.get(method, kind.attempt_s)
        return b if remaining is None else min(b, max(0.0, remaining) * ATTEMPT_SHARE)

    def observe(self, method: str, kind: Kind, seconds: float) -> None:
        """A successful attempt's duration."""
        samples = self._samples.get(method)
        if samples is None:
            samples = self._samples[method] = collections.deque(maxlen=_SAMPLES)
        samples.append(seconds)
        seen = self._seen[method] = self._seen.get(method, 0) + 1
        if seen % _EVERY == 0 and len(samples) >= ADAPT_MIN_SAMPLES:
            ordered = sorted(samples)
            p95, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.95, 0.99))
            self._adapted[method] = min(kind.attempt_s, max(ADAPT_FLOOR * kind.slow_s, ADAPT_FACTOR * p99))
            self._hedge_after[method] = min(kind.slow_s, max(HEDGE_MIN_S, HEDGE_FACTOR * p95))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """method -> its adapted attempt bound and hedge delay (methods still on their kind's defaults are absent)."""
        return {m: {"attempt_s": b, "hedge_after_s": self._hedge_after[m]} for m, b in self._adapted.items()}


async def hedge(primary: Callable[[], Awaitable[Any]], backup: Callable[[], Awaitable[Any]], delay: float,
                is_answer: Callable[[BaseException], bool], on_hedge: Callable[[], None]) -> tuple[str, Any]:
    """Await `primary()`; if it has not finished after `delay` seconds, start `backup()` too. The first to finish with
    an answer (a result, or an error `is_answer` accepts: the service's own verdict) wins and the other is cancelled.
    Returns ("primary" | "backup", result); raises the answer error, or the backup's error when neither answered.
    A primary that fails without an answer before the delay raises at once (the caller's fallback handles it).

    The primary runs in the caller's own task, with only a timer beside it (no task, no wait set): most calls answer
    before the delay, and this is their whole cost. A winning backup interrupts the primary by cancelling that task."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    second: asyncio.Task | None = None
    won = False

    def backup_done(task: asyncio.Task) -> None:
        nonlocal won
        if not task.cancelled() and (task.exception() is None or is_answer(task.exception())) and not won:
            won = True
            me.cancel()  # the backup answered: stop awaiting the primary

    def fire() -> None:
        nonlocal second
        on_hedge()
        second = loop.create_task(backup())
        second.add_done_callback(backup_done)

    timer = loop.call_later(delay, fire)
    try:
        result = await primary()
    except asyncio.CancelledError:
        if not won:
            raise  # the caller itself was cancelled
        me.uncancel()
        assert second is not None
        return "backup", second.result()
    except Exception as exc:
        if second is None or is_answer(exc):
            raise
        if won:  # the backup's answer arrived while the primary failed: it wins
            me.uncancel()
            return "backup", second.result()
        second.remove_done_callback(backup_done)
        return "backup", await second  # the primary failed without an answer: the backup's outcome is the call's
    finally:
        timer.cancel()
    if won:  # both finished in the same loop turn: the primary's answer stands, the pending cancel is withdrawn
        me.uncancel()
    if second is not None and not second.done():
        second.cancel()
    return "primary", result
