"""The input boundary, written once for every service: what a request may weigh and hold before any work is done on it.

- REST: `RequestLimits`, pure ASGI middleware in front of the app, refuses an oversized body (413), header block or
  bearer token (431) from the request head alone: before the body is read, before routing and auth. A body without
  Content-Length (chunked) is counted as it streams and refused the moment it passes the limit.
- gRPC: the server's receive limit refuses oversized messages in the core (RESOURCE_EXHAUSTED); `decode` turns bytes
  that do not parse as the request message into INVALID_ARGUMENT inside the handler, so the failure is counted, logged
  and shaped like every other error (grpc.aio's own deserializer answers UNKNOWN, unlogged).
- Times: `Timestamp` (REST) and `check_timestamp` (gRPC) keep them inside years 1..9999 UTC and refuse numbers posing
  as dates. Other value bounds belong to each domain (one check for both transports); the REST skins publish them in
  OpenAPI (`minimum`, `maxLength`, ...) from the same constants.

Every refusal is a DomainError (RESOURCE_EXHAUSTED / INVALID_ARGUMENT naming the field), so both transports answer it
through the one error table. Sizes come from transport.config (FXPLAT_MAX_*); defaults and reasons: docs/security.md.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import orjson
from google.protobuf.message import DecodeError
from pydantic import AfterValidator, BeforeValidator
from starlette.routing import Match

from services.common import errors as E
from transport import config, errors
from transport.errors import BODY_TOO_LARGE, HEADERS_TOO_LARGE, TOKEN_TOO_LARGE

MALFORMED_REQUEST = "MALFORMED_REQUEST"


# --- REST: sizes, before the body is read ---------------------------------------------------------------------------

class RequestLimits:
    """Pure ASGI middleware: refuses a request whose head says it is too large, and cuts off a streamed body that
    turns out so. Costs a few comparisons per call; allocates nothing on the accepted path with a Content-Length."""

    def __init__(self, app, limits: config.InputLimits | None = None) -> None:
        self.app = app
        self.limits = limits or config.input_limits()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lim = self.limits
        head_bytes, length, chunked = 0, None, False
        for name, value in scope["headers"]:
            head_bytes += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
            if name == b"content-length":
                length = value
            elif name == b"authorization" and len(value) > lim.token_bytes + 7:  # "Bearer "
                return await self._refuse(scope, receive, send, _token_too_large(len(value), lim.token_bytes))
            elif name == b"transfer-encoding":
                chunked = True
        if head_bytes > lim.header_bytes:
            return await self._refuse(scope, receive, send, E.ResourceExhausted(
                f"the request headers are {head_bytes:,} bytes; the limit is {lim.header_bytes:,}",
                field="headers", reason=HEADERS_TOO_LARGE))
        if length is not None:
            size = int(length) if length.isdigit() else lim.body_bytes + 1  # the server refuses a bad length anyway
            if size > lim.body_bytes:
                return await self._refuse(scope, receive, send, _body_too_large(size, lim.body_bytes))
        elif chunked:  # no length announced: count what arrives
            return await self._counted(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _counted(self, scope, receive, send):
        """Read a streamed body up to the limit, then hand it to the app whole (the API takes no streaming uploads)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limits.body_bytes:
                return await self._refuse(scope, receive, send, _body_too_large(None, self.limits.body_bytes))
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, err: E.DomainError) -> None:
        # Named after its route when it has one, so the refusal is counted with the RPC it was aimed at.
        if (route := _route_of(getattr(scope.get("app"), "routes", ()), scope)) is not None:
            scope["route"] = route
        # The connection stays open: the server discards the unread rest of the body as it arrives (no memory),
        # and the client, which most often writes its whole body before reading, gets this answer, not a reset.
        body = orjson.dumps(errors.to_problem(err))
        await send({"type": "http.response.start", "status": errors.http_status(err),
                    "headers": [(b"content-type", errors.PROBLEM_CONTENT_TYPE.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _token_too_large(size: int, limit: int) -> E.ResourceExhausted:
    return E.ResourceExhausted(f"the bearer token is {size:,} bytes; the limit is {limit:,}", field="authorization",
                               reason=TOKEN_TOO_LARGE)


def _route_of(routes, scope):
    """The route that would serve `scope`, looking inside included routers (FastAPI keeps them as one entry each)."""
    for route in routes:
        if (inner := getattr(route, "original_router", None)) is not None:
            if (found := _route_of(inner.routes, scope)) is not None:
                return found
        elif route.matches(scope)[0] == Match.FULL:
            return route
    return None


def _body_too_large(size: int | None, limit: int) -> E.ResourceExhausted:
    said = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    return E.ResourceExhausted(f"the request body is {said}; the limit is {limit:,}", field="body",
                               reason=BODY_TOO_LARGE)


# --- gRPC: the token and the request message ------------------------------------------------------------------------

class TokenSize:
    """The bearer token limit on gRPC (the core refuses any metadata value over 16 KiB by itself): `check` returns the
    `authorization` value, or raises RESOURCE_EXHAUSTED as REST's middleware does."""

    def __init__(self, limits: config.InputLimits | None = None) -> None:
        self.limit = (limits or config.input_limits()).token_bytes + 7  # "Bearer "

    def check(self, authorization: str | None) -> str | None:
        if authorization is not None and len(authorization) > self.limit:
            raise _token_too_large(len(authorization), self.limit - 7)
        return authorization


def decode(request_type, data: bytes):
    """`data` parsed as `request_type`, or INVALID_ARGUMENT saying it is not one."""
    try:
        return request_type.FromString(data)
    except (DecodeError, ValueError, RuntimeError):  # upb raises DecodeError; nesting too deep is a RuntimeError
        raise E.InvalidArgument(f"the request is not a valid {request_type.DESCRIPTOR.full_name} message "
                                f"({len(data):,} bytes)", field="request", reason=MALFORMED_REQUEST) from None


# --- values ----------------------------------------------------------------------------------------------------------

MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799  # google.protobuf.Timestamp's range (years 1..9999)
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def check_timestamp(seconds: int, nanos: int, field: str) -> None:
    """INVALID_ARGUMENT unless (seconds, nanos) is a valid google.protobuf.Timestamp."""
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise E.InvalidArgument(f"{field} must be within years 1..9999 UTC, got {seconds:,} seconds", field=field)
    if not 0 <= nanos <= 999_999_999:
        raise E.InvalidArgument(f"{field}.nanos must be 0..999,999,999, got {nanos:,}", field=field)


def _not_a_number(value: object) -> object:
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("expected an ISO-8601 date-time such as 2025-03-01T00:00:00Z, not a number")
    return value


def _in_range(value: datetime) -> datetime:
    try:
        value.astimezone(timezone.utc) if value.tzinfo else value
    except OverflowError:
        raise ValueError("must be within years 1..9999 in UTC") from None
    return value


# A date-time in a REST request: ISO-8601 only (pydantic alone takes 0.5 as a unix time) and representable in UTC.
Timestamp = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_in_range)]

