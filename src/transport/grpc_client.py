"""gRPC client side, written once: every unary call goes through `unary`, which applies the remaining deadline budget,
forwards the request id and trace context (in a CLIENT span) and turns RpcErrors into domain errors."""
from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable
from typing import Any

import grpc

from services.common import errors as E
from transport import context, errors, tracing


class Interrupt:
    """A hold on the gRPC calls made in a context, for a hedge that runs its primary inline in the caller's task:
    `fire()` cancels the call under way (and any started after), and grpc.aio raises CancelledError from it. The
    caller's task is never cancelled: on Python 3.11 a task cancel that meets a call finishing in the same loop turn
    stays pending (Task.uncancel does not withdraw it) and kills the caller's next await."""

    __slots__ = ("call", "fired")

    def __init__(self) -> None:
        self.call = None
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        if self.call is not None:
            self.call.cancel()


interrupt: contextvars.ContextVar[Interrupt | None] = contextvars.ContextVar("fxplat_grpc_interrupt", default=None)


def unary(stub_method, request, *, metadata: tuple[tuple[str, str], ...] = ()) -> Awaitable[Any]:
    """The call of `stub_method(request)` under the remaining budget, as an awaitable. A plain function that returns
    the coroutine to await: the checks run at once and the call adds no coroutine of its own (this is every call)."""
    deadline = context.deadline()
    if deadline is None:
        timeout = context.DEFAULT_BUDGET_S
    elif (timeout := deadline - time.monotonic()) <= 0:
        raise E.DeadlineExceeded("deadline exceeded before the call was sent")
    # The budget travels as gRPC's own deadline (grpc-timeout). The core rounds it up when it encodes it, by little
    # (measured: 2.9999 s arrives as 3.009 s, 29.999 s as 29.999 s): our x-request-timeout-ms header on top, which
    # the server still honours from other clients, cost ~6 % of a small call for those milliseconds.
    if rid := context.request_id.get():
        metadata = (*metadata, (context.REQUEST_ID_HEADER, rid))
    if tracing.enabled():
        return _traced(stub_method, request, timeout, metadata)
    return _invoke(stub_method, request, timeout, metadata)


async def _traced(stub_method, request, timeout: float, metadata: tuple[tuple[str, str], ...]):
    # A multicallable knows its path ('/forex.x.v1.XService/Method') only privately; it names the span.
    name = getattr(stub_method, "_method", b"").decode().lstrip("/")
    with tracing.client_span(name, "grpc") as trace_headers:
        return await _invoke(stub_method, request, timeout, (*metadata, *trace_headers.items()))


async def _invoke(stub_method, request, timeout: float, metadata: tuple[tuple[str, str], ...]):
    call = stub_method(request, timeout=timeout, metadata=metadata)
    if (hold := interrupt.get()) is not None:
        hold.call = call
        if hold.fired:
            call.cancel()
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise errors.from_grpc_error(exc) from None
