"""The bounds of one gRPC attempt, and the hedge of a read onto REST.

`AttemptBounds` keeps, per method, the latency of recent successful gRPC calls and derives the attempt bound from it
(see adapters.resilience for the rules). A `Race` hedges a slow primary with a backup started after a delay: grpcio
does not implement gRPC's own hedging, so the adapter does it, across transports.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.resilience import (ADAPT_FACTOR, ADAPT_FLOOR, ADAPT_MIN_SAMPLES, ATTEMPT_SHARE, HEDGE_FACTOR, HEDGE_MIN_S,
                                 HEDGE_TOKEN_RATIO, HEDGE_TOKENS, Kind)
from transport import grpc_client

_SAMPLES = 64  # recent successful calls per method
_EVERY = 16  # re-derive the bound every this many samples (sorting 64 floats is cheap, but not per call)


class Latency:
    """One method's recent successful gRPC attempts and what follows from them: the bound of its next attempt and its
    hedge delay. A caller keeps one per method (AttemptBounds.of) and reaches it without a lookup per call."""

    __slots__ = ("kind", "_samples", "_seen", "attempt_s", "hedge_after_s", "adapted")

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._samples: collections.deque[float] = collections.deque(maxlen=_SAMPLES)
        self._seen = 0
        self.attempt_s, self.hedge_after_s, self.adapted = kind.attempt_s, kind.slow_s, False

    def bound(self, remaining: float | None) -> float:
        """Seconds the next gRPC attempt may take."""
        return self.attempt_s if remaining is None else min(self.attempt_s, max(0.0, remaining) * ATTEMPT_SHARE)

    def observe(self, seconds: float) -> None:
        """A successful attempt's duration."""
        samples = self._samples
        samples.append(seconds)
        self._seen += 1
        if self._seen % _EVERY == 0 and len(samples) >= ADAPT_MIN_SAMPLES:
            ordered = sorted(samples)
            p95, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.95, 0.99))
            kind = self.kind
            self.attempt_s = min(kind.attempt_s, max(ADAPT_FLOOR * kind.slow_s, ADAPT_FACTOR * p99))
            self.hedge_after_s = min(kind.slow_s, max(HEDGE_MIN_S, HEDGE_FACTOR * p95))
            self.adapted = True


class AttemptBounds:
    """A caller's per-method latencies, and the hedge tokens its methods share."""

    def __init__(self) -> None:
        self._methods: dict[str, Latency] = {}
        self._tokens = HEDGE_TOKENS

    def of(self, method: str, kind: Kind) -> Latency:
        latency = self._methods.get(method)
        if latency is None:
            latency = self._methods[method] = Latency(kind)
        return latency

    def hedge_delay(self, latency: Latency) -> float | None:
        """Seconds after which this read may be hedged, or None: no hedge for this call (throttled). Called once per
        call; earns the call's share of a hedge token."""
        self._tokens = min(HEDGE_TOKENS, self._tokens + HEDGE_TOKEN_RATIO)
        return latency.hedge_after_s if self._tokens >= 1.0 else None

    def spend_hedge(self) -> None:
        self._tokens -= 1.0

    # the per-method view of tests and status, by name
    def bound(self, method: str, kind: Kind, remaining: float | None) -> float:
        return self.of(method, kind).bound(remaining)

    def observe(self, method: str, kind: Kind, seconds: float) -> None:
        self.of(method, kind).observe(seconds)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """method -> its adapted attempt bound and hedge delay (methods still on their kind's defaults are absent)."""
        return {m: {"attempt_s": x.attempt_s, "hedge_after_s": x.hedge_after_s}
                for m, x in self._methods.items() if x.adapted}


class Race(grpc_client.Interrupt):
    """One hedged read in flight: its primary (a gRPC phase) runs inline in the caller's task; if it has not finished
    after `delay` seconds, `backup()` starts too, and the first to finish with an answer (a result, or an error
    `is_answer` accepts: the service's own verdict) wins. grpcio does not implement gRPC's own hedging, so the adapter
    does it, across transports. Use:

        race = Race(backup, is_answer, on_hedge, delay)
        try:
            result, winner = await primary, "primary"  # its answer stands in a tie
        except BaseException as exc:
            result, winner = await race.after(exc), "backup"  # the backup's outcome, or `exc` raised again
        finally:
            race.end()

    The common case costs no task, no timer and no coroutine of its own: the delay is kept by the loop's hedge clock,
    and only the backup, once due, gets a task. A backup that answers first stops the primary by cancelling its gRPC
    call (the hold, transport.grpc_client.Interrupt), never the caller's task (see Interrupt for why)."""

    __slots__ = ("due", "ended", "second", "_backup", "_is_answer", "_on_hedge", "_context", "_token")

    def __init__(self, backup: Callable[[], Awaitable[Any]], is_answer: Callable[[BaseException], bool],
                 on_hedge: Callable[[], None], delay: float) -> None:
        self.call, self.fired = None, False  # Interrupt's
        self.ended = False
        self._backup, self._is_answer, self._on_hedge = backup, is_answer, on_hedge
        self._context = contextvars.copy_context()  # the call's context, for the backup (before the hold is set)
        self.second: asyncio.Task | None = None
        loop = asyncio.get_running_loop()
        clock = _latest
        if clock is None or clock.loop is not loop:
            clock = _clock_of(loop)
        self.due = time.monotonic() + delay  # the clock that every call reads already, not the loop's
        clock.add(self)
        self._token: contextvars.Token | None = grpc_client.interrupt.set(self)

    async def after(self, exc: BaseException) -> Any:
        """The call's outcome once its primary raised `exc`: the backup's, when the backup answered first (the
        primary's call was cancelled for it) or when the primary failed without an answer after the backup had
        started; otherwise `exc` again (the caller's own cancel, an answer error, a failure before any backup)."""
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if not self.fired or (task is not None and task.cancelling()):
                raise exc  # the caller itself was cancelled
            assert self.second is not None and self.second.done()
            return self.second.result()  # the backup answered (a result, or its answer error)
        if self.second is None or self._is_answer(exc) or not isinstance(exc, Exception):
            raise exc
        # The primary failed without an answer after the backup started: the backup's outcome is the call's.
        self._release_hold()
        return await self.second

    def end(self) -> None:
        """The call is over: leave the clock (at its next tick), drop the hold, stop a backup still running."""
        self.ended = True
        self.call = self._backup = self._context = None  # a finished race waits for the tick: it keeps nothing
        self._release_hold()
        if self.second is not None and not self.second.done():
            self.second.cancel()

    def _release_hold(self) -> None:
        if self._token is not None:
            grpc_client.interrupt.reset(self._token)
            self._token = None

    def start_backup(self) -> None:
        """The clock's callback: start the backup in the call's own context."""
        assert self._context is not None
        self._context.run(self._start)

    def _start(self) -> None:
        self._on_hedge()
        assert self._backup is not None
        self.second = asyncio.get_running_loop().create_task(self._backup())
        self.second.add_done_callback(self._backup_done)

    def _backup_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and (task.exception() is None or self._is_answer(task.exception())):
            self.fire()  # the backup answered: stop the primary


class _HedgeClock:
    """One timer per event loop for the hedges in flight, instead of a timer per call: on uvloop each `call_later`
    is a libuv timer handle, made, started, stopped and closed per call. A race joins the clock's list when it starts
    and is not removed when it ends (a list append per call, nothing more): the one timer fires at the earliest due
    time, drops the races that ended, starts the backups that are due and arms itself for the next. Under load it
    fires about once per hedge delay and finds nearly every race ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.races: list[Race] = []  # joined since the last tick, ended ones included
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0

    def add(self, race: Race) -> None:
        self.races.append(race)
        if self._timer is None or race.due < self._armed_for:
            self._arm(race.due)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # In a context of its own: the timer serves every call, and each backup runs in its own call's context.
        self._timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._tick, context=contextvars.Context())
        self._armed_for = when

    def _tick(self) -> None:
        self._timer = None
        now, waiting = time.monotonic(), []
        for race in self.races:
            if race.ended:
                continue
            if race.due <= now:
                race.start_backup()
            else:
                waiting.append(race)
        self.races = waiting
        if waiting:
            self._arm(min(race.due for race in waiting))


# A thread runs one event loop at a time: its clock is found without a lookup keyed by the loop (a weak dictionary
# costs a weakref per call, and its clock would keep the loop alive). A clock left behind by another loop of the same
# thread lives on in that loop's timer until its races are done.
_thread = threading.local()
# The clock found last, of whichever thread: nearly always the one asked for, and a module global is found at less
# cost than a thread-local attribute on a call's cold path (measured in the call: ~3 µs vs ~0.4 µs).
_latest: _HedgeClock | None = None


def _clock_of(loop: asyncio.AbstractEventLoop) -> _HedgeClock:
    global _latest
    clock = getattr(_thread, "clock", None)
    if clock is None or clock.loop is not loop:
        clock = _thread.clock = _HedgeClock(loop)
    _latest = clock
    return clock


def clock() -> _HedgeClock | None:
    """This thread's hedge clock (None before its first hedged read), for tests and status."""
    return getattr(_thread, "clock", None)
