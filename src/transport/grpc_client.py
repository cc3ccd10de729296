"""gRPC client side, written once: every unary call goes through `unary`, which applies the remaining deadline budget,
forwards the request id and turns RpcErrors into domain errors."""
from __future__ import annotations

import grpc

from services.common import errors as E
from transport import context, errors


async def unary(stub_method, request, *, metadata: tuple[tuple[str, str], ...] = ()):
    left = context.remaining()
    if left is not None and left <= 0:
        raise E.DeadlineExceeded("deadline exceeded before the call was sent")
    md = list(metadata)
    if rid := context.request_id.get():
        md.append(("x-request-id", rid))
    try:
        return await stub_method(request, timeout=context.DEFAULT_BUDGET_S if left is None else left, metadata=md)
    except grpc.aio.AioRpcError as exc:
        raise errors.from_grpc_error(exc) from None
