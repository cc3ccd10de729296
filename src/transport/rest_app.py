"""REST side, written once: the FastAPI app factory with problem+json errors, request ids and deadline headers."""
from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.common import errors as E
from services.common.market_types import utc
from transport import context, errors, limits, logs, ops, tracing
from transport.metrics import SERVER_IN_FLIGHT, SERVER_LATENCY, SERVER_REQUESTS, updater


class ProblemViolation(BaseModel):
    field: str = Field(description="dotted path of the bad field, e.g. indicators[1].params.period")
    description: str


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is the google.rpc.Code name the gRPC side returns for the same error."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    reason: str
    field_violations: list[ProblemViolation] = []
    metadata: dict[str, str] = {}


# Declared on every router so the OpenAPI document tells consumers what errors look like.
PROBLEM_RESPONSES: dict = {
    status: {"model": Problem, "description": text, "content": {"application/problem+json": {}}}
    for status, text in ((400, "Invalid argument (the bad fields are listed)"), (404, "Not found"),
                         (413, "The request body is larger than the server accepts (FXPLAT_MAX_BODY_BYTES)"),
                         (431, "The headers or the bearer token are larger than the server accepts"),
                         (500, "Internal error (quote the request id)"), (503, "A dependency is unavailable"))
}


# --- request bounds in OpenAPI -----------------------------------------------------------------------------------
# The domain checks every value (one check, one error, for both transports); these publish its bounds in the schema,
# so a consumer or a fuzzer can tell a contract violation from a bug. Published, not enforced here: pydantic would
# answer with its own words where the domain answers with the same error as gRPC.

SYMBOL_SCHEMA = {"minLength": 1, "maxLength": 32, "pattern": "\\S"}
TIMEFRAME_SCHEMA = {"pattern": "^([mM](1|5|15|30)|[hH][14]|[dD]1)$"}  # case-insensitive, as Timeframe.parse takes it


def one_of(words) -> dict:
    """json_schema_extra for a string that must be one of `words`, in any case, spaces around allowed."""
    alternatives = "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w) for w in words)
    return {"pattern": f"^\\s*({alternatives})\\s*$"}


def bounded(low: float | None = None, high: float | None = None, **schema) -> dict:
    """json_schema_extra for a number in [low, high] (either may be open)."""
    return {**({"minimum": low} if low is not None else {}), **({"maximum": high} if high is not None else {}),
            **schema}


class JSONBytes(JSONResponse):
    """application/json from orjson, NaN/inf written as null (JSON has no NaN). Skins return it with bytes they built
    from columns, which FastAPI passes through unvalidated; being a JSONResponse is what makes FastAPI document each
    route's `response_model` in OpenAPI (any other Response class is documented as a bare string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def problem_response(err: E.DomainError, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(errors.to_problem(err)), status_code=errors.http_status(err),
                    media_type=errors.PROBLEM_CONTENT_TYPE, headers=headers)


def _violation_field(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "request"


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette's 405 names only the first route that matched it)."""
    routes = request.app.router.routes
    return ", ".join(m for m in _METHODS
                     if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes))


def _code_of(status: int) -> str:
    return "OK" if status < 400 else errors.error_class_for_http(status).code


_CALL_HEADERS = {h.encode(): h for h in (context.REQUEST_ID_HEADER, context.TIMEOUT_HEADER, "grpc-timeout")}


class _CallContext:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request id, deadline budget, metrics, server span and
    log line for every call.
    The method label is the route's name, which each skin sets to the gRPC method name, so both transports count alike."""

    def __init__(self, app, service: str):
        self.app = app
        self.service = service
        self.in_flight = updater(SERVER_IN_FLIGHT.labels(service, "rest"))
        self._updates: dict[tuple[str, str], tuple] = {}  # (method, code) -> metric updates, bound once

    def _count(self, method: str, code: str, elapsed: float) -> None:
        updates = self._updates.get((method, code))
        if updates is None:  # routes and codes are finite, so this table is too
            updates = self._updates[(method, code)] = (
                updater(SERVER_REQUESTS.labels(self.service, method, "rest", code)),
                updater(SERVER_LATENCY.labels(self.service, method, "rest")))
        updates[0](1)
        updates[1](elapsed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in ops.PATHS:  # probes and scrapes are not calls
            return await self.app(scope, receive, send)
        if ops.refusing(scope):
            return await ops.refuse(scope, receive, send)
        # Only the headers this layer reads are decoded (all of them only when tracing needs the carrier).
        headers = {_CALL_HEADERS[k]: v.decode("latin-1") for k, v in scope["headers"] if k in _CALL_HEADERS}
        rid = headers.get(context.REQUEST_ID_HEADER) or errors.new_request_id()
        seconds = context.parse_timeout_header(headers.get(context.TIMEOUT_HEADER))
        if seconds is None and "grpc-timeout" in headers:
            seconds = context.parse_grpc_timeout(headers["grpc-timeout"])
        token = context.request_id.set(rid)
        span = None
        if tracing.enabled():
            span = tracing.start_server(self.service, "", "rest",  # named once the route is known
                                        {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                                        {"http.request.method": scope["method"], "url.path": scope["path"]})
        status = 500
        started = finished = False
        start = time.perf_counter()

        def finish() -> None:
            """Count, log and end the span of the call, once: before its last byte leaves, so a caller that reads the
            metrics right after the answer sees the call counted."""
            nonlocal finished
            if finished:
                return
            finished = True
            elapsed = time.perf_counter() - start
            self.in_flight(-1)
            route = scope.get("route")
            method, code = getattr(route, "name", "") or scope["path"], _code_of(status)
            stream = scope.get("fxplat.stream", False)  # streams count and log themselves (transport.streams)
            if route is not None and not stream:  # unrouted paths (404s) are not RPCs: a path label would grow
                self._count(method, code, elapsed)
            if not stream:
                logs.call(self.service, method, "rest", code, elapsed, rid, "" if span is None else tracing.trace_id(span))
            if span is not None:
                tracing.end_server(span, code, method=method, http_status=status)

        async def send_recording_status(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()
            await send(message)

        self.in_flight(1)
        limit = None
        try:
            # The caller stops waiting at its deadline, so the work stops too (as grpc.aio cancels a late handler).
            with context.budget(seconds):
                if seconds is None:
                    await self.app(scope, receive, send_recording_status)
                else:
                    async with asyncio.timeout(seconds) as limit:
                        await self.app(scope, receive, send_recording_status)
        except Exception as exc:  # answered here, where the request id is still known; never a traceback
            if started:
                raise
            if isinstance(exc, TimeoutError) and limit is not None and limit.expired():
                err: E.DomainError = E.DeadlineExceeded(
                    f"deadline of {seconds * 1000:.0f} ms exceeded; the call was abandoned")
            else:
                err = errors.internal_error(exc, rid)
            await problem_response(err)(scope, receive, send_recording_status)
        except asyncio.CancelledError:
            # A stopping uvicorn cancels the calls still running when the grace period ends, and would answer a
            # plain 500: the caller gets UNAVAILABLE instead, as from grpc.aio.
            if started or not ops.refusing(scope):
                raise
            asyncio.current_task().uncancel()
            await ops.cut_off(scope, receive, send_recording_status)
        finally:
            finish()
            context.request_id.reset(token)


def _document_400_not_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every operation with parameters, but its validation errors leave as the 400
    problem+json every router declares: drop the 422 and its schemas, so the document lists only real answers."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = build()
            for operations in doc.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi


# No slash redirects: a 307 to another path is not an answer a client of an RPC-shaped API can act on.
# No FastAPI native telemetry: transport.tracing makes the server span (alike on both transports) and
# transport.metrics counts; FastAPI's would double them, and asks the OTel providers on every request even when off.
APP_SETTINGS: dict = {"default_response_class": JSONBytes, "redirect_slashes": False,
                      "telemetry": {"tracing": False, "metrics": False, "logs": False}}


def install_error_handlers(app: FastAPI) -> None:
    """Every error as problem+json: domain errors, validation errors (400, not FastAPI's 422) and Starlette's own."""

    @app.exception_handler(E.DomainError)
    async def _domain(_: Request, exc: E.DomainError) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        violations = [E.FieldViolation(_violation_field(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return problem_response(E.InvalidArgument(f"invalid request: {summary}", violations=violations))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        err = errors.from_problem(exc.status_code, {"detail": exc.detail})
        where = f"{E.quoted(request.method, 16)} {E.quoted(request.url.path)}"
        if exc.status_code == 404:
            err = E.NotFound(f"no such endpoint: {where}", reason="NO_SUCH_ENDPOINT")
        elif exc.status_code == 405:
            allow = _allowed_methods(request)
            err = E.Unimplemented(f"method not allowed: {where}; allowed: {allow}", reason=errors.METHOD_NOT_ALLOWED)
            return problem_response(err, {"allow": allow})
        return problem_response(err, exc.headers)


def create_app(service: str, title: str, description: str, version: str = "1.0.0") -> FastAPI:
    app = FastAPI(title=title, description=description, version=version, **APP_SETTINGS)
    install_error_handlers(app)
    _document_400_not_422(app)
    ops.install(app)
    app.add_middleware(limits.RequestLimits)  # inside _CallContext, so a refusal is logged and counted like any call
    app.add_middleware(_CallContext, service=service)
    return app


# --- JSON conventions shared by every REST skin and client ------------------------------------------------------

_VECTOR_FROM = 512  # numpy's datetime_as_string has a fixed cost that a short page never earns back


def iso_times(unix: np.ndarray | list[int]) -> list[str]:
    """int64 unix seconds -> ISO-8601 UTC strings ('2025-01-02T13:00:00Z'), vectorised for long arrays."""
    if len(unix) < _VECTOR_FROM:
        values = unix.tolist() if isinstance(unix, np.ndarray) else unix
        return [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in values]
    return [s + "Z" for s in np.datetime_as_string(np.asarray(unix, dtype="datetime64[s]"), unit="s").tolist()]


def unix_times(iso: list[str]) -> np.ndarray:
    """ISO-8601 UTC strings -> int64 unix seconds, vectorised (a trailing 'Z' or '+00:00' is accepted)."""
    cleaned = [s[:-1] if s.endswith("Z") else s.removesuffix("+00:00") for s in iso]
    return np.array(cleaned, dtype="datetime64[s]").astype(np.int64)


def iso_time(dt: datetime | None) -> str | None:
    """One datetime -> ISO-8601 UTC: '2025-01-02T13:00:00Z', with '.123456' before the Z if it has microseconds."""
    return None if dt is None else utc(dt).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """ISO-8601 from JSON -> aware datetime (a trailing 'Z' is accepted)."""
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def nullable(values: np.ndarray) -> list[float | None]:
    """float array -> JSON list with NaN as null."""
    return [None if math.isnan(v) else v for v in values.tolist()]


def from_nullable(values: list[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
