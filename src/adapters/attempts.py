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


async def hedge(primary: Awaitable[Any], backup: Callable[[], Awaitable[Any]], delay: float,
                is_answer: Callable[[BaseException], bool], on_hedge: Callable[[], None]) -> tuple[str, Any]:
    """Await `primary` (a coroutine, run inline); if it has not finished after `delay` seconds, start `backup()` too.
    The first to finish with an answer (a result, or an error `is_answer` accepts: the service's own verdict) wins
    and the other is stopped. Returns ("primary" | "backup", result); raises the answer error, or the backup's error when neither answered.
    A primary that fails without an answer before the delay raises at once (the caller's fallback handles it).

    The common case costs no task: the primary (a gRPC phase) runs inline in the caller's task, and only the backup,
    once the delay has passed, gets a task of its own. A backup that answers first stops the primary by cancelling its
    gRPC call (transport.grpc_client.Interrupt), never the caller's task (see Interrupt for why)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
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

    timer = loop.call_later(delay, start_backup)  # scheduled before the hold is set: the backup's context lacks it
    token = grpc_client.interrupt.set(hold)
    try:
        try:
            return "primary", await primary  # its answer stands in a tie
        except asyncio.CancelledError:
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
        timer.cancel()
        hold.call = None  # the call's task keeps the context that holds `hold`: a cycle per call for the collector
        if token is not None:
            grpc_client.interrupt.reset(token)
        if second is not None and not second.done():
            second.cancel()
