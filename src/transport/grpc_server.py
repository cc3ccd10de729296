"""gRPC server side, written once: method handlers built from a per-service table, error translation, the server itself
with health checking and reflection."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.errors import DomainError
from transport import context, errors
from transport.metrics import SERVER_IN_FLIGHT, SERVER_LATENCY, SERVER_REQUESTS

log = logging.getLogger("fxplat.grpc")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 200k-bar page is ~9 MB; leave room for indicators
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
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


def _serialize(response: Any) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def service_label(full_name: str) -> str:
    """'forex.market_analysis.v1.MarketAnalysisService' -> 'market_analysis' (the metrics' service label)."""
    return full_name.split(".")[1]


def _wrap(service: str, method: GrpcMethod):
    requests = {code: SERVER_REQUESTS.labels(service, method.name, "grpc", code) for code in ("OK", *errors.TABLE)}
    latency = SERVER_LATENCY.labels(service, method.name, "grpc")
    in_flight = SERVER_IN_FLIGHT.labels(service, "grpc")

    async def handler(request, ctx: grpc.aio.ServicerContext):
        rid = dict(ctx.invocation_metadata() or ()).get("x-request-id") or errors.new_request_id()
        rid_token = context.request_id.set(rid)
        start = time.perf_counter()
        in_flight.inc()
        code = "OK"
        try:
            with context.budget(ctx.time_remaining()):
                try:
                    return await method.call(request)
                except DomainError as exc:
                    failure = exc
                except Exception as exc:  # never a traceback to the caller
                    failure = errors.internal_error(exc, rid)
            code = failure.code
            await ctx.abort_with_status(errors.to_grpc_status(failure))
        finally:
            in_flight.dec()
            requests[code].inc()
            latency.observe(time.perf_counter() - start)
            context.request_id.reset(rid_token)

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=method.request_type.FromString, response_serializer=_serialize
    )


def service_handler(full_name: str, methods: Sequence[GrpcMethod]) -> grpc.GenericRpcHandler:
    service = service_label(full_name)
    return grpc.method_handlers_generic_handler(full_name, {m.name: _wrap(service, m) for m in methods})


async def create_server(
    host: str, port: int, services: dict[str, grpc.GenericRpcHandler]
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build and start a grpc.aio server for `services` (full name -> handler) with health and reflection.
    Returns the server, the bound port (useful with port 0) and the health servicer (for graceful shutdown)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(list(services.values()))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port} (in use?)")
    await server.start()
    for name in ["", *services]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer
