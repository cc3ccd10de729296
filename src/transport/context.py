"""Per-call context carried in contextvars: the deadline budget and the request id.

Servers set it from the incoming call (gRPC deadline, REST timeout header); clients and adapters read it to give
outgoing calls what remains of the budget.
"""
from __future__ import annotations

import contextvars
import time

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("fxplat_deadline", default=None)
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("fxplat_request_id", default="")

TIMEOUT_HEADER = "x-request-timeout-ms"
REQUEST_ID_HEADER = "x-request-id"  # HTTP header and gRPC metadata key alike
# Budget of a call whose caller set none: even then, a call must not hang forever on a wedged peer.
DEFAULT_BUDGET_S = 30.0


def remaining() -> float | None:
    """Seconds left in the current call's budget, or None when the call has no deadline."""
    d = _deadline.get()
    return None if d is None else d - time.monotonic()


class budget:
    """Run a block under a deadline of `seconds` from now, never extending an outer, tighter one (None: no change).
    A class rather than a @contextmanager generator: it is entered on every call both servers serve."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float | None) -> None:
        self._seconds, self._token = seconds, None

    def __enter__(self) -> None:
        if self._seconds is not None:
            new = time.monotonic() + self._seconds
            outer = _deadline.get()
            self._token = _deadline.set(new if outer is None or new < outer else outer)

    def __exit__(self, *exc) -> None:
        if self._token is not None:
            _deadline.reset(self._token)


# The deadline of the current call (time.monotonic() seconds) or None; `run_until(at)` makes `at` the deadline of
# what runs next in this context until `restore(token)`, for code that computed it itself, never later than the one
# it was given (`budget` is the block form). The ContextVar's own methods: adapters call them on every call.
deadline = _deadline.get
run_until = _deadline.set
restore = _deadline.reset


def timeout_header(seconds: float) -> str:
    """The budget as sent to the next hop: whole milliseconds, rounded down so a hop never gets more than is left."""
    return str(max(1, int(seconds * 1000)))


def parse_timeout_header(value: str | None) -> float | None:
    try:
        return None if value is None else float(value) / 1000.0
    except ValueError:
        return None


def tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def parse_grpc_timeout(value: str) -> float | None:
    """Parse a gRPC-style timeout header ('100m', '5S', '250u') into seconds."""
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    try:
        return int(value[:-1]) * units[value[-1]]
    except (KeyError, ValueError, IndexError):
        return None
