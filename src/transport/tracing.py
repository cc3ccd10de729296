"""OpenTelemetry tracing, written once for both transports.

The two server wrappers open a SERVER span per incoming call, continuing the caller's trace from the W3C `traceparent`
(an HTTP header, or gRPC metadata under the same name); the two clients open a CLIENT span per outgoing call and send
its `traceparent` on. The span is made current through contextvars, so the tasks a handler fans out with
asyncio.gather inherit it and their calls join the same trace.

Off by default: until `configure` (or `use_provider`) installs a provider, every helper returns at once, no span is
made and no header is read or sent, so a call pays one `is None` test per hop.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common.errors import DomainError

EXPORTER_ENV = "FXPLAT_OTEL_EXPORTER"
EXPORTERS = ("off", "console", "otlp")
# Server-side codes that mean the service failed, not the caller (an INVALID_ARGUMENT is a correct answer).
_SERVER_FAULTS = frozenset({"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "CANCELLED"})

_tracer: trace.Tracer | None = None
_propagator = TraceContextTextMapPropagator()
_NO_HEADERS: contextlib.nullcontext = contextlib.nullcontext(MappingProxyType({}))


def configure(exporter: str | None = None, *, service_name: str = "fxplat") -> TracerProvider | None:
    """Turn tracing on with an exporter: 'console' (spans as JSON on stdout) or 'otlp' (OTLP/HTTP, endpoint from
    OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318); 'off' or empty turns it off. None reads
    $FXPLAT_OTEL_EXPORTER. OTEL_SERVICE_NAME, when set, names the service instead of `service_name`."""
    name = (os.environ.get(EXPORTER_ENV, "") if exporter is None else exporter).strip().lower() or "off"
    if name not in EXPORTERS:
        raise ValueError(f"{EXPORTER_ENV} must be one of {', '.join(EXPORTERS)}, not {name!r}")
    if name == "off":
        use_provider(None)
        return None
    if name == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name})
    provider = TracerProvider(resource=resource)  # flushes and shuts down at interpreter exit
    provider.add_span_processor(BatchSpanProcessor(span_exporter))  # exports off the event loop
    use_provider(provider)
    return provider


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Trace through `provider` from now on (None: tracing off). Tests install one with an in-memory exporter."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("fxplat.transport")


def enabled() -> bool:
    return _tracer is not None


@dataclass
class ServerSpan:
    span: trace.Span
    service: str
    token: object  # restores the context the call started in


def start_server(service: str, method: str, transport: str, carrier: Mapping[str, str],
                 attributes: Mapping[str, str] | None = None) -> ServerSpan | None:
    """Open the SERVER span of an incoming call as a child of the caller's `traceparent` (if any) and make it
    current. `method` may be '' when it is known only later (REST routes): `end_server` then names the span."""
    if _tracer is None:
        return None
    parent = _propagator.extract(carrier)
    span = _tracer.start_span(f"{service}/{method}" if method else service, context=parent, kind=SpanKind.SERVER,
                              attributes={"fxplat.service": service, "fxplat.method": method,
                                          "fxplat.transport": transport, **(attributes or {})})
    return ServerSpan(span, service, otel_context.attach(trace.set_span_in_context(span, parent)))


def end_server(call: ServerSpan | None, code: str, *, method: str = "", http_status: int | None = None) -> None:
    if call is None:
        return
    span = call.span
    if method:
        span.update_name(f"{call.service}/{method}")
        span.set_attribute("fxplat.method", method)
    if http_status is not None:
        span.set_attribute("http.response.status_code", http_status)
    span.set_attribute("fxplat.code", code)
    if code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()
    otel_context.detach(call.token)


def trace_id(call: ServerSpan | None = None) -> str:
    """The trace id (32 hex digits) of `call`, else of the current span; '' when there is none."""
    if _tracer is None:
        return ""
    ctx = (call.span if call is not None else trace.get_current_span()).get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else ""


def client_span(name: str, transport: str,
                attributes: Mapping[str, str] | None = None) -> contextlib.AbstractContextManager[Mapping[str, str]]:
    """A CLIENT span around one outgoing call; yields the headers (`traceparent`) to send with it, none when off.
    A DomainError raised inside records its code on the span."""
    return _NO_HEADERS if _tracer is None else _client_span(_tracer, name, transport, attributes)


@contextlib.contextmanager
def _client_span(tracer: trace.Tracer, name: str, transport: str,
                 attributes: Mapping[str, str] | None) -> Iterator[Mapping[str, str]]:
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT,
                                      attributes={"fxplat.transport": transport, **(attributes or {})},
                                      record_exception=False, set_status_on_exception=False) as span:
        headers: MutableMapping[str, str] = {}
        _propagator.inject(headers)
        code = "CANCELLED"  # until the call returns or raises something else
        try:
            yield headers
            code = "OK"
        except DomainError as exc:
            code = exc.code
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            span.set_attribute("fxplat.code", code)
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))
