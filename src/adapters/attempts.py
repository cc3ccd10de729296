"""The bounds of one gRPC attempt, and the hedge of a read onto REST.

`AttemptBounds` keeps, per method, the latency of recent successful gRPC calls and derives the attempt bound from it
(see adapters.resilience for the rules). `hedge` races a slow primary against a backup started after a delay: grpcio
does not implement gRPC's own hedging, so the adapter does it, across transports.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.resilience import (ADAPT_FACTOR, ADAPT_FLOOR, ADAPT_MIN_SAMPLES, ATTEMPT_SHARE, HEDGE_FACTOR, HEDGE_MIN_S,
                                 HEDGE_TOKEN_RATIO, HEDGE_TOKENS, Kind)
from transport import grpc_client

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


class _HedgeClock:
    """One timer per event loop for the hedges in flight, instead of a timer per call: on uvloop each `call_later`
    is a libuv timer handle, made, started, stopped and closed per call, about 2 % of a small read. A call registers
    when its hedge is due and leaves the table when it ends; the one timer fires at the earliest due time, starts the
    backups that are due and arms itself for the next. Calls that end first (nearly all) cost a dict entry."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[int, tuple[float, contextvars.Context, Callable[[], None]]] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0

    def add(self, delay: float, fire: Callable[[], None]) -> int:
        """Run `fire` in the caller's current context after `delay` seconds, unless `discard`ed before."""
        key, due = next(self._keys), self._loop.time() + delay
        self._due[key] = (due, contextvars.copy_context(), fire)
        if self._timer is None or due < self._armed_for:
            self._arm(due)
        return key

    def discard(self, key: int) -> None:
        self._due.pop(key, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # In a context of its own: the timer serves every call, and each backup runs in its own call's context.
        self._timer, self._armed_for = self._loop.call_at(when, self._tick, context=contextvars.Context()), when

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time()
        for key in [k for k, (due, _, _) in self._due.items() if due <= now]:
            _, context, fire = self._due.pop(key)
            context.run(fire)
        if self._due:
            self._arm(min(due for due, _, _ in self._due.values()))


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _HedgeClock] = weakref.WeakKeyDictionary()


def _clock(loop: asyncio.AbstractEventLoop) -> _HedgeClock:
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = _HedgeClock(loop)
    return clock


async def hedge(primary: Awaitable[Any], backup: Callable[[], Awaitable[Any]], delay: float,
                is_answer: Callable[[BaseException], bool], on_hedge: Callable[[], None]) -> tuple[str, Any]:
    """Await `primary` (a coroutine, run inline); if it has not finished after `delay` seconds, start `backup()` too.
    The first to finish with an answer (a result, or an error `is_answer` accepts: the service's own verdict) wins
    and the other is stopped. Returns ("primary" | "backup", result); raises the answer error, or the backup's error
    when neither answered. A primary that fails without an answer before the delay raises at once (the caller's
    fallback handles it).

    The common case costs no task and no timer of its own: the primary (a gRPC phase) runs inline in the caller's
    task, the delay is kept by the loop's hedge clock, and only the backup, once the delay has passed, gets a task.
    A backup that answers first stops the primary by cancelling its gRPC call (transport.grpc_client.Interrupt), never
    the caller's task (see Interrupt for why)."""
    loop = asyncio.get_running_loop()
    hold = grpc_client.Interrupt()
    second: asyncio.Task | None = None

    def backup_done(t: asyncio.Task) -> None:
        if not t.cancelled() and (t.exception() is None or is_answer(t.exception())):
            hold.fire()  # the backup answered: stop the primary

    def start_backup() -> None:
        nonlocal second
        on_hedge()
        second = loop.create_task(backup())
        second.add_done_callback(backup_done)

    clock = _clock(loop)
    due = clock.add(delay, start_backup)  # registered before the hold is set: the backup's context lacks it
    token = grpc_client.interrupt.set(hold)
    try:
        try:
            return "primary", await primary  # its answer stands in a tie
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not hold.fired or (task is not None and task.cancelling()):
                raise  # the caller itself was cancelled
            assert second is not None and second.done()
            return "backup", second.result()  # the backup answered (a result, or its answer error)
        except BaseException as exc:
            if second is None or is_answer(exc) or not isinstance(exc, Exception):
                raise
        # The primary failed without an answer after the backup started: the backup's outcome is the call's.
        grpc_client.interrupt.reset(token)
        token = None
        return "backup", await second
    finally:
        clock.discard(due)
        hold.call = None  # the call's task keeps the context that holds `hold`: a cycle per call for the collector
        if token is not None:
            grpc_client.interrupt.reset(token)
        if second is not None and not second.done():
            second.cancel()
