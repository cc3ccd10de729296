"""gRPC server side, written once: method handlers built from a per-service table, error translation, the server itself
with health checking and reflection."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.errors import DomainError
from transport import config, context, drain, errors, grpc_streams, limits, logs, reflection, tracing
from transport.auth import TokenVerifier
from transport.metrics import SERVER_IN_FLIGHT, SERVER_LATENCY, SERVER_REQUESTS, updater
from transport.streams import StreamMethod

log = logging.getLogger("fxplat.grpc")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 200k-bar page is ~9 MB; leave room for indicators
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Accept client keepalive pings every 10 s (the client factory pings every 30 s) instead of GOAWAY too_many_pings.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass(frozen=True)
class GrpcMethod:
    """One RPC: its name, request message class and a coroutine from request message to response (message or bytes
    already serialised, see transport.wire)."""

    name: str
    request_type: type
    call: Callable[[Any], Awaitable[Any]]
    # What a caller's token must carry (see transport.auth); a server with auth refuses to start on a method without.
    scope: str = ""


def _serialize(response: Any) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def service_label(full_name: str) -> str:
    """'forex.market_analysis.v1.MarketAnalysisService' -> 'market_analysis' (the metrics' service label)."""
    return full_name.split(".")[1]


def _wrap(service: str, method: GrpcMethod, auth: TokenVerifier | None, gate: drain.Gate):
    # Metric updates bound once per method (transport.metrics.updater): `.labels()` per call costs a lock and a
    # dict lookup each.
    requests = {code: updater(SERVER_REQUESTS.labels(service, method.name, "grpc", code))
                for code in ("OK", "CANCELLED", *errors.TABLE)}
    latency = updater(SERVER_LATENCY.labels(service, method.name, "grpc"))
    in_flight = updater(SERVER_IN_FLIGHT.labels(service, "grpc"))
    token_size = limits.TokenSize()
    scope, call, name, request_type = method.scope, method.call, method.name, method.request_type
    perf_counter = time.perf_counter

    async def handler(raw: bytes, ctx: grpc.aio.ServicerContext):
        if not gate.open:  # the service is stopping: calls in flight finish, new ones go elsewhere
            await ctx.abort_with_status(errors.to_grpc_status(drain.shutting_down()))
        md = dict(ctx.invocation_metadata() or ())
        rid = md.get(context.REQUEST_ID_HEADER) or errors.new_request_id()
        rid_token = context.request_id.set(rid)
        span = tracing.start_server(service, name, "grpc", md) if tracing.enabled() else None
        start = perf_counter()
        in_flight(1)
        gate.in_flight += 1
        code = "OK"
        try:
            with context.budget(context.tighter(ctx.time_remaining(),
                                                context.parse_timeout_header(md.get(context.TIMEOUT_HEADER)))):
                try:
                    if auth is not None:
                        auth.check(token_size.check(md.get("authorization")), scope)
                    return await call(limits.decode(request_type, raw))  # parsed after auth
                except DomainError as exc:
                    failure = exc
                except Exception as exc:  # never a traceback to the caller
                    failure = errors.internal_error(exc, rid)
            code = failure.code
            # Set, not abort: the status leaves after `finally` has counted and logged the call, so a caller that
            # reads the metrics right after its error sees it counted.
            status = errors.to_grpc_status(failure)
            ctx.set_code(status.code)
            ctx.set_details(status.details)
            ctx.set_trailing_metadata(status.trailing_metadata)
            return None
        except asyncio.CancelledError:
            code = "CANCELLED"  # the caller gave up (cancelled, or its deadline passed): not a success
            raise
        finally:
            elapsed = perf_counter() - start
            in_flight(-1)
            gate.in_flight -= 1
            requests[code](1)
            latency(elapsed)
            if span is None:
                logs.call(service, name, "grpc", code, elapsed, rid, "")
            else:
                logs.call(service, name, "grpc", code, elapsed, rid, tracing.trace_id(span))
                tracing.end_server(span, code)
            context.request_id.reset(rid_token)

    # No request_deserializer: bytes that do not parse must get INVALID_ARGUMENT, counted and logged like any error,
    # not grpc.aio's unlogged UNKNOWN (see transport.limits.decode).
    return grpc.unary_unary_rpc_method_handler(handler, response_serializer=_serialize)


class ServiceHandler(grpc.ServiceRpcHandler):
    """One service's RPC table, and the gate its host closes when it stops (see transport.drain)."""

    def __init__(self, full_name: str, handlers: dict[str, grpc.RpcMethodHandler], gate: drain.Gate) -> None:
        self._name = full_name
        self._handlers = {f"/{full_name}/{name}": handler for name, handler in handlers.items()}
        self.gate = gate

    def service_name(self) -> str:
        return self._name

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)


def service_handler(full_name: str, methods: Sequence[GrpcMethod],
                    auth: TokenVerifier | None = None) -> ServiceHandler:
    """`auth` checks every call's token against its method's scope (None: no checks)."""
    if auth is not None and (unscoped := [m.name for m in methods if not m.scope]):
        raise RuntimeError(f"{full_name}: methods without a scope: {', '.join(unscoped)}")
    service, gate = service_label(full_name), drain.Gate()
    # Server-streaming RPCs (transport.streams.StreamMethod) have their own wrapper: transport.grpc_streams.
    return ServiceHandler(full_name, {m.name: grpc_streams.wrap(service, m, auth, gate) if isinstance(m, StreamMethod)
                                      else _wrap(service, m, auth, gate) for m in methods}, gate)


async def create_server(
    host: str, port: int, services: dict[str, grpc.GenericRpcHandler],
    credentials: grpc.ServerCredentials | None = None, *, reuse_port: bool = False,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build and start a grpc.aio server for `services` (full name -> handler) with health and reflection, over TLS
    when `credentials` are given. Returns the server, the bound port (useful with port 0) and the health servicer
    (for graceful shutdown). `reuse_port`: worker processes share the port (SO_REUSEPORT); grpc sets it by default on
    Linux, which would let a second server take the port silently, so it is off unless asked for."""
    # Requests are small: the core refuses a larger one (RESOURCE_EXHAUSTED) before a handler sees it. Connections
    # end after a configured age (plus time for their calls to finish): clients then reconnect and re-resolve the
    # name, so a replica added under it gets its share without anyone restarting.
    age_ms = int(config.max_connection_age_s() * 1000)
    limits_ = config.input_limits()
    server = grpc.aio.server(options=[*SERVER_OPTIONS,
                                      ("grpc.so_reuseport", int(reuse_port)),
                                      ("grpc.max_receive_message_length", limits_.body_bytes),
                                      # gRPC core rejects metadata between its soft (8 KiB) and hard (16 KiB) default
                                      # limits at random, before any interceptor: one fixed limit, ours, instead.
                                      ("grpc.max_metadata_size", limits_.header_bytes),
                                      ("grpc.absolute_max_metadata_size", limits_.header_bytes),
                                      ("grpc.max_connection_age_ms", age_ms),
                                      ("grpc.max_connection_age_grace_ms", int(config.grace_s() * 1000))])
    server.add_generic_rpc_handlers(list(services.values()))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, list(services), [health.SERVICE_NAME])  # v1 and v1alpha
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 literal is bracketed
    try:
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises "Failed to bind to address" rather than returning 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {address} (address in use, or not available on this host?)")
    await server.start()
    for name in ["", *services]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer
