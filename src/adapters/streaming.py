"""Server streams through the flags: the caller gets one async iterator of items, whichever transport carries them,
and the stream survives the gRPC path failing under it.

Per stream the flags choose the transport (the same flags and stickiness as unary calls, per method). The gRPC stream
is opened through the caller's circuit breaker. When it breaks — the server is gone (UNAVAILABLE), the path goes
silent past the idle bound (no item and no heartbeat for `idle_factor` heartbeat intervals: blackholed), the method is
not served (UNIMPLEMENTED) or the breaker is open — the stream resumes over REST (SSE) from the last item it
delivered, for the rest of its life; the breaker counts the break, so new streams stay on REST until it closes again.
A server that drains (UNAVAILABLE, reason SHUTTING_DOWN) is not a broken path: the stream reopens on the same
transport first (a load balancer sends it to another replica), and goes to REST only if that fails.
Items already delivered are never delivered again (each carries a per-stream sequence), and a resume asks for the
items right after the last one delivered, so the caller sees no gap and no duplicate. Domain errors (NOT_FOUND,
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) end the stream with the same typed error on either transport.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.breaker import BreakerOpen
from adapters.core import FlaggedCaller, routing_key, transport_failure
from services.common import errors as E
from services.common.market_types import Timeframe
from transport.drain import SHUTTING_DOWN
from transport.metrics import CLIENT_CALLS, CLIENT_CHOICES, CLIENT_FALLBACKS

DEFAULT_IDLE_S = 15.0  # when the server announces no heartbeat interval
OPEN_TIMEOUT_S = 5.0  # a stream that is not established within this is a dead path


@dataclass(frozen=True)
class Failover:
    """One move of a live stream: from which transport to which, why, and after which position."""

    at: float  # unix time
    source: str
    target: str
    reason: str
    resumed_after: str


class QuotePositions:
    """Per symbol, the sequence of the last quote delivered."""

    def __init__(self, after: dict[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(after or {})

    def accept(self, quote: Any) -> bool:
        if quote.sequence <= self.last.get(quote.symbol, -1):
            return False  # already delivered (a resume overlaps): never twice
        self.last[quote.symbol] = quote.sequence
        return True

    def resume(self) -> dict[str, int]:
        return dict(self.last)

    def __str__(self) -> str:
        return ",".join(f"{s}:{n}" for s, n in self.last.items()) or "live"


class CandlePosition:
    """The sequence of the last bar delivered."""

    def __init__(self, after: int = 0) -> None:
        self.last = after

    def accept(self, candle: Any) -> bool:
        if candle.sequence <= self.last:
            return False
        self.last = candle.sequence
        return True

    def resume(self) -> int:
        return self.last

    def __str__(self) -> str:
        return str(self.last) if self.last else "live"


@dataclass
class ResumableStream:
    """An async iterator of a stream's items (`async for quote in stream`); `transport` says which transport carries
    it now and `failovers` what moved it. `aclose()` (or leaving an `async with`) ends it."""

    caller: FlaggedCaller
    method: str
    open_on: Callable[[Any, Any], Any]  # (client, resume position) -> an item stream (transport.*ItemStream)
    position: QuotePositions | CandlePosition
    key: str | None = None
    idle_factor: float = 3.0
    min_idle_s: float = 0.5
    rest_attempts: int = 5  # REST reconnections in a row without an item before the stream fails
    transport: str = ""
    delivered: int = 0
    failovers: list[Failover] = field(default_factory=list)
    on_failover: Callable[[Failover], None] | None = None
    _gen: AsyncIterator[Any] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._gen is None:
            self._gen = self._items()
        return self._gen

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> "ResumableStream":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # --- the loop ---------------------------------------------------------------------------------------------------

    async def _items(self) -> AsyncIterator[Any]:
        c = self.caller
        key = self.key if self.key is not None else routing_key.get()
        transport = "grpc" if c.use_grpc(self.method, key) else "rest"
        CLIENT_CHOICES.labels(c.service, self.method, transport).inc()
        drain_retries, rest_failures, code = 0, 0, "OK"
        try:
            while True:
                stream = None
                try:
                    stream = self.open_on(c.grpc if transport == "grpc" else c.rest, self.position.resume())
                    heartbeat_s = await self._open(stream, transport)
                    self.transport = transport
                    idle_s = max(self.min_idle_s, self.idle_factor * heartbeat_s) if heartbeat_s else DEFAULT_IDLE_S
                    while True:
                        try:
                            async with asyncio.timeout(idle_s):
                                batch = await stream.next()
                        except TimeoutError:
                            raise E.DeadlineExceeded(f"{transport} stream silent for {idle_s:.1f} s (no item, no "
                                                     "heartbeat): the path is dead", reason="STREAM_IDLE") from None
                        rest_failures = drain_retries = 0
                        for item in batch:
                            if self.position.accept(item):
                                self.delivered += 1
                                yield item
                except StopAsyncIteration:
                    return
                except BreakerOpen:
                    failure: E.DomainError = E.Unavailable(f"{c.service}: gRPC circuit open", reason="BREAKER_OPEN")
                except E.DomainError as exc:
                    if not _resumable(exc, transport):
                        raise
                    failure = exc
                finally:
                    if stream is not None:
                        with contextlib.suppress(Exception):
                            await stream.close()
                previous = transport
                transport = await self._next_transport(previous, failure, drain_retries, rest_failures)
                if failure.reason == SHUTTING_DOWN:
                    drain_retries += 1
                if previous == "rest":  # REST failed too: back off before reconnecting
                    rest_failures += 1
                    await asyncio.sleep(min(1.0, 0.05 * 2 ** rest_failures) * (0.5 + random.random()))
        except BaseException as exc:
            code = exc.code if isinstance(exc, E.DomainError) else \
                "CANCELLED" if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) else "INTERNAL"
            raise
        finally:
            CLIENT_CALLS.labels(c.service, self.method, self.transport or "none", code,
                                "true" if self.failovers else "false").inc()

    async def _open(self, stream: Any, transport: str) -> float:
        """Start the stream, bounded; on gRPC through the breaker (an open breaker refuses at once)."""
        async def bounded() -> float:
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    return await stream.open()
            except TimeoutError:
                raise E.DeadlineExceeded(f"{transport} stream not established within {OPEN_TIMEOUT_S:g} s",
                                         reason="STREAM_OPEN_TIMEOUT") from None

        if transport == "grpc" and self.caller.breaker is not None:
            return await self.caller.breaker.call(bounded, slow_s=OPEN_TIMEOUT_S)  # judged by failures, not speed
        return await bounded()

    async def _next_transport(self, transport: str, failure: E.DomainError, drain_retries: int,
                              rest_failures: int) -> str:
        """Where the stream resumes after `failure` on `transport` (or raise it when it may not resume)."""
        c = self.caller
        if failure.reason == SHUTTING_DOWN and drain_retries < 2:
            self._moved(transport, transport, "shutting_down")  # same transport: another replica takes it
            return transport
        if transport == "grpc":
            if failure.reason != "BREAKER_OPEN" and c.breaker is not None:
                await _count_break(c, failure)  # a stream that broke after opening is a failure the breaker judges
            if c.force == "grpc":
                raise failure
            reason = {"BREAKER_OPEN": "breaker_open", "STREAM_IDLE": "idle"}.get(failure.reason or "", "") or \
                ("unimplemented" if isinstance(failure, E.Unimplemented) else
                 "deadline" if isinstance(failure, E.DeadlineExceeded) else "unavailable")
            CLIENT_FALLBACKS.labels(c.service, self.method, reason).inc()
            self._moved("grpc", "rest", reason)
            return "rest"
        if rest_failures + 1 >= self.rest_attempts:
            raise failure
        self._moved("rest", "rest", "reconnect")
        return "rest"

    def _moved(self, source: str, target: str, reason: str) -> None:
        failover = Failover(time.time(), source, target, reason, str(self.position))
        self.failovers.append(failover)
        if self.on_failover is not None:
            self.on_failover(failover)


def _resumable(exc: E.DomainError, transport: str) -> bool:
    if isinstance(exc, (E.Unavailable, E.DeadlineExceeded)):
        return True
    return transport == "grpc" and isinstance(exc, E.Unimplemented)


async def _count_break(caller: FlaggedCaller, failure: E.DomainError) -> None:
    """Tell the breaker (through its public `call`) that a gRPC stream failed."""
    async def failed() -> None:
        raise failure

    if transport_failure(failure):
        with contextlib.suppress(E.DomainError, BreakerOpen):
            await caller.breaker.call(failed, slow_s=math.inf)


class StreamingAdapter:
    """Market Analysis' streams through the flags (built from the same FlaggedCaller as its unary adapter)."""

    def __init__(self, caller: FlaggedCaller) -> None:
        self.caller = caller

    def stream_quotes(self, symbols: list[str], after: dict[str, int] | None = None, *,
                      key: str | None = None, **options: Any) -> ResumableStream:
        """Quotes of `symbols`, live or after the given per-symbol sequences."""
        symbols = [s.strip().upper() for s in symbols]
        return ResumableStream(self.caller, "StreamQuotes", lambda client, pos: client.stream_quotes(symbols, pos),
                               QuotePositions(after), key=key, **options)

    def watch_candles(self, symbol: str, timeframe: Timeframe | str = Timeframe.M1, after: int = 0, *,
                      key: str | None = None, **options: Any) -> ResumableStream:
        """Bars of `symbol` at `timeframe` as they close, from the next one or after sequence `after`."""
        tf = Timeframe.parse(timeframe)
        return ResumableStream(self.caller, "WatchCandles",
                               lambda client, pos: client.watch_candles(symbol.strip().upper(), tf, pos),
                               CandlePosition(after), key=key, **options)
