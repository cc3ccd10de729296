"""What the two streaming skins (transport.grpc_streams, transport.sse) share: the subscription they drain, the caps on
open streams (per process and per token), the stream metrics and the one log line per stream.

A subscription is any object with `await next(timeout) -> list` (the next batch of items, [] when `timeout` passed
without one: time for a heartbeat) and `close()`; the domain's quote hub makes them.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from services.common import errors as E
from transport import config, logs
from transport.metrics import SERVER_REQUESTS

POLL_S = 0.25  # how often an idle stream looks whether its server is draining

STREAMS_OPEN = Gauge("fxplat_server_streams_open", "Server streams open now.", ["service", "method", "transport"])
STREAM_ITEMS = Counter("fxplat_server_stream_items_total", "Items (quotes, bars) sent on server streams.",
                       ["service", "method", "transport"])
STREAM_HEARTBEATS = Counter("fxplat_server_stream_heartbeats_total", "Heartbeats sent on idle server streams.",
                            ["service", "method", "transport"])
STREAM_CONFLATED = Counter("fxplat_server_stream_conflated_total",
                           "Quotes skipped for consumers that lagged beyond their bound.",
                           ["service", "method", "transport"])


class Subscription(Protocol):
    async def next(self, timeout: float) -> list: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StreamSettings:
    heartbeat_s: float = 5.0  # an idle stream sends a heartbeat this often (proxies and clients see it alive)
    max_streams: int = 1000  # per process
    max_per_token: int = 32  # per bearer token (or per anonymous caller when auth is off)
    coalesce_ms: float = 0.0  # after an item is ready, gather more for this long into the same message (0: send now)

    @classmethod
    def from_config(cls) -> "StreamSettings":
        return cls(**config.stream_settings())


class StreamLimits:
    """Counts open streams; `acquire` refuses one over a cap with RESOURCE_EXHAUSTED."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.open = 0
        self._per_token: Tally[str] = Tally()

    def acquire(self, authorization: str | None) -> Callable[[], None]:
        key = hashlib.sha256((authorization or "").encode()).hexdigest()[:16]  # never keep tokens themselves
        if self.open >= self.settings.max_streams:
            raise E.ResourceExhausted(f"this server already serves {self.open} streams (its cap); try another replica "
                                      "or later", reason="TOO_MANY_STREAMS")
        if self._per_token[key] >= self.settings.max_per_token:
            raise E.ResourceExhausted(f"this token already holds {self._per_token[key]} open streams (the cap per "
                                      "token); close one first", reason="TOO_MANY_STREAMS_PER_TOKEN")
        self.open += 1
        self._per_token[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1
                self._per_token[key] -= 1
                if not self._per_token[key]:
                    del self._per_token[key]

        return release


_limits: StreamLimits | None = None


def limits() -> StreamLimits:
    """The process's stream caps (both transports, every service), from config on first use."""
    global _limits
    if _limits is None:
        _limits = StreamLimits(StreamSettings.from_config())
    return _limits


def use_settings(settings: StreamSettings) -> StreamLimits:
    """Replace the process's stream settings (tests, benchmarks); streams already open keep their slots."""
    global _limits
    _limits = StreamLimits(settings)
    return _limits


@dataclass
class StreamMethod:
    """One server-streaming RPC: `open(request)` validates the request and returns a subscription (raising a
    DomainError before anything is sent); `encode(batch)` makes one response message of a batch."""

    name: str
    request_type: type
    open: Callable[[Any], Awaitable[Subscription]]
    encode: Callable[[list], Any]
    scope: str = ""

    async def call(self, request: Any) -> Any:  # what `fxplat call` would run: a stream is not a unary call
        raise E.InvalidArgument(f"{self.name} is a server stream; use `fxplat watch` or a streaming client",
                                field="method")


class LazyCount:
    """A Prometheus counter fed per message but incremented at most once a second (and at `flush`): a stream sends
    thousands of messages a second, and the counter's lock and checks per message showed in profiles."""

    PERIOD_S = 1.0

    def __init__(self, counter) -> None:
        self._counter, self._pending, self._last = counter, 0, time.monotonic()

    def add(self, n: int) -> None:
        self._pending += n
        if time.monotonic() - self._last >= self.PERIOD_S:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._counter.inc(self._pending)
            self._pending = 0
        self._last = time.monotonic()


COALESCE_MAX_ITEMS = 512  # a coalesced message holds at most this many items


async def next_batch(sub: Subscription, timeout: float, coalesce_s: float) -> list:
    """The subscription's next batch ([] after `timeout` without one). With a coalescing window, the batches that come
    within `coalesce_s` of the first are appended to it (at most COALESCE_MAX_ITEMS items): fewer, larger messages
    for at most that much more latency. A subscription's batches follow each other in order, so the joined batch is
    in order too; nothing is skipped (the subscriber keeps taking, so it never lags into conflation)."""
    batch = await sub.next(timeout)
    if not batch or coalesce_s <= 0:
        return batch
    deadline = time.monotonic() + coalesce_s
    while len(batch) < COALESCE_MAX_ITEMS:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        more = await sub.next(left)
        if not more:
            break
        batch = batch + more
    return batch


def conflated(sub: Any) -> int:
    return getattr(sub, "conflated", 0)


def finish(service: str, method: str, transport: str, code: str, ended: str, items: int, skipped: int,
           seconds: float, request_id: str) -> None:
    """Count a stream that ended and write its one log line: how many items, and how it ended."""
    SERVER_REQUESTS.labels(service, method, transport, code).inc()
    if skipped:
        STREAM_CONFLATED.labels(service, method, transport).inc(skipped)
    if logs.CALLS.isEnabledFor(logging.INFO):
        logs.CALLS.info("%s %s/%s stream %s after %.1f s: %d items, %s", transport, service, method, code, seconds,
                        items, ended, extra={
                            "service": service, "method": method, "transport": transport, "code": code,
                            "duration_ms": round(seconds * 1000, 3), "request_id": request_id, "stream": True,
                            "items": items, "conflated": skipped, "ended": ended})
