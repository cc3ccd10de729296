"""gRPC client side, written once: every unary call goes through `unary`, which applies the remaining deadline budget,
forwards the request id and trace context (in a CLIENT span) and turns RpcErrors into domain errors."""
from __future__ import annotations

import grpc

from services.common import errors as E
from transport import context, errors, tracing


async def unary(stub_method, request, *, metadata: tuple[tuple[str, str], ...] = ()):
    left = context.remaining()
    if left is not None and left <= 0:
        raise E.DeadlineExceeded("deadline exceeded before the call was sent")
    timeout = context.DEFAULT_BUDGET_S if left is None else left
    # The budget also travels as our own header: gRPC rounds its grpc-timeout up (to compress it), so a next hop
    # reading only its deadline could get a little more than was left here.
    md = [*metadata, (context.TIMEOUT_HEADER, context.timeout_header(timeout))]
    if rid := context.request_id.get():
        md.append(("x-request-id", rid))
    # A multicallable knows its path ('/forex.x.v1.XService/Method') only privately; it names the span.
    with tracing.client_span(getattr(stub_method, "_method", b"").decode().lstrip("/"), "grpc") as trace_headers:
        md.extend(trace_headers.items())
        try:
            return await stub_method(request, timeout=timeout, metadata=md)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_grpc_error(exc) from None
