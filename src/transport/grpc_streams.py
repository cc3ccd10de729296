"""gRPC server streams, written once: the handler of a server-streaming RPC (auth, caps, heartbeats, drain, metrics,
one log line per stream) around a subscription.

The handler writes each batch as one message and awaits the write, so HTTP/2 flow control holds it while the client
does not read; the subscription meanwhile conflates (see services.market_analysis.quotes), so a stalled consumer
costs the server no memory. An idle stream sends an empty message every heartbeat interval (announced in the
`fxplat-heartbeat-ms` initial metadata): proxies see traffic, and clients can tell silence from a dead path. When the
service drains, every stream ends within `streams.POLL_S` with UNAVAILABLE (reason SHUTTING_DOWN): the client resumes
elsewhere from the last sequence it got.
"""
from __future__ import annotations

import asyncio
import time

import grpc

from services.common.errors import DomainError
from transport import context, drain, errors, streams
from transport import limits as input_limits
from transport.auth import TokenVerifier
from transport.metrics import SERVER_IN_FLIGHT

HEARTBEAT_METADATA = "fxplat-heartbeat-ms"


def wrap(service: str, method: streams.StreamMethod, auth: TokenVerifier | None, gate: drain.Gate):
    """The grpc method handler of one streaming RPC."""
    open_gauge = streams.STREAMS_OPEN.labels(service, method.name, "grpc")
    items_sent = streams.STREAM_ITEMS.labels(service, method.name, "grpc")
    heartbeats = streams.STREAM_HEARTBEATS.labels(service, method.name, "grpc")
    in_flight = SERVER_IN_FLIGHT.labels(service, "grpc")
    token_size = input_limits.TokenSize()

    async def handler(raw: bytes, ctx: grpc.aio.ServicerContext) -> None:
        md = dict(ctx.invocation_metadata() or ())
        rid = md.get(context.REQUEST_ID_HEADER) or errors.new_request_id()
        rid_token = context.request_id.set(rid)
        start = time.perf_counter()
        items, code, ended, sub, release, sent = 0, "OK", "", None, None, None
        in_flight.inc()
        gate.in_flight += 1  # a draining host waits for its streams, which end within POLL_S
        try:
            try:
                if not gate.open:
                    raise drain.shutting_down()
                if auth is not None:
                    auth.check(token_size.check(md.get("authorization")), method.scope)
                request = input_limits.decode(method.request_type, raw)  # parsed after auth, as unary calls are
                limits = streams.limits()
                release = limits.acquire(md.get("authorization"))
                sub = await method.open(request)
                heartbeat_s, coalesce_s = limits.settings.heartbeat_s, limits.settings.coalesce_ms / 1000
                await ctx.send_initial_metadata(((HEARTBEAT_METADATA, str(round(heartbeat_s * 1000))),))
                open_gauge.inc()
                sent = streams.LazyCount(items_sent)
                last_sent = time.monotonic()
                while True:
                    if not gate.open:
                        raise drain.shutting_down()
                    batch = await streams.next_batch(sub, min(streams.POLL_S, heartbeat_s), coalesce_s)
                    if batch:
                        await ctx.write(method.encode(batch))
                        items += len(batch)
                        sent.add(len(batch))
                    elif time.monotonic() - last_sent >= heartbeat_s:
                        await ctx.write(method.encode([]))
                        heartbeats.inc()
                        sent.flush()
                    else:
                        continue
                    last_sent = time.monotonic()
            except DomainError as exc:
                failure = exc
            except Exception as exc:  # never a traceback to the caller
                failure = errors.internal_error(exc, rid)
            code = failure.code
            ended = f"{failure.reason or code}: {failure.message}"
            status = errors.to_grpc_status(failure)
            ctx.set_code(status.code)
            ctx.set_details(status.details)
            ctx.set_trailing_metadata(status.trailing_metadata)
        except asyncio.CancelledError:
            code, ended = "CANCELLED", "the client went away"
            raise
        finally:
            if sent is not None:
                sent.flush()
            if sub is not None:
                sub.close()
                open_gauge.dec()
            if release is not None:
                release()
            in_flight.dec()
            gate.in_flight -= 1
            streams.finish(service, method.name, "grpc", code, ended, items, streams.conflated(sub),
                           time.perf_counter() - start, rid)
            context.request_id.reset(rid_token)

    return grpc.unary_stream_rpc_method_handler(
        handler,  # no request_deserializer: see grpc_server._wrap
        response_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString())


# --- client side ----------------------------------------------------------------------------------------------------

class GrpcItemStream:
    """One server stream as a client reads it: `open()` starts it and returns the server's heartbeat interval (s, 0 if
    unknown); each `next()` is one message decoded to a batch of items ([] is a heartbeat); errors arrive as domain
    errors; `close()` cancels it. No deadline: a stream lives until closed; silence is the reader's to judge."""

    transport = "grpc"

    def __init__(self, stub_method, request, decode, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._stub_method, self._request, self._decode, self._md = stub_method, request, decode, metadata
        self._call = None

    async def open(self) -> float:
        md = list(self._md)
        if rid := context.request_id.get():
            md.append((context.REQUEST_ID_HEADER, rid))
        self._call = self._stub_method(self._request, metadata=md)
        try:
            initial = dict(await self._call.initial_metadata() or ())
        except grpc.aio.AioRpcError as exc:
            raise errors.from_grpc_error(exc) from None
        return int(initial.get(HEARTBEAT_METADATA, 0)) / 1000

    async def next(self) -> list:
        try:
            msg = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise errors.from_grpc_error(exc) from None
        if msg is grpc.aio.EOF:  # a stream that ends with OK has nothing more; one that ends otherwise raised above
            code = await self._call.code()
            if code == grpc.StatusCode.OK:
                raise StopAsyncIteration
            raise errors.from_grpc_error(self._call)  # pragma: no cover - read() raises for these
        return self._decode(msg)

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
