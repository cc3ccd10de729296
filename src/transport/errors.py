"""The one error table: domain error <-> gRPC status (with google.rpc details) <-> HTTP problem+json.

Servers translate a raised DomainError through `to_grpc_status` / `to_problem`; clients translate back with
`from_grpc_error` / `from_problem`, so the same exception, with the same fields, reaches the caller whichever transport
carried it. The HTTP statuses follow the canonical google.rpc.Code mapping used by grpc-gateway and Connect.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common import errors as E

log = logging.getLogger("fxplat.errors")

ERROR_DOMAIN = "fxplat"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Mapping:
    error: type[E.DomainError]
    grpc_code: grpc.StatusCode
    http_status: int


TABLE: dict[str, Mapping] = {
    m.error.code: m
    for m in (
        Mapping(E.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400),
        Mapping(E.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, 400),
        Mapping(E.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401),
        Mapping(E.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, 403),
        Mapping(E.NotFound, grpc.StatusCode.NOT_FOUND, 404),
        Mapping(E.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, 409),
        Mapping(E.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        Mapping(E.Internal, grpc.StatusCode.INTERNAL, 500),
        Mapping(E.Unimplemented, grpc.StatusCode.UNIMPLEMENTED, 501),
        Mapping(E.Unavailable, grpc.StatusCode.UNAVAILABLE, 503),
        Mapping(E.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    )
}
_BY_GRPC = {m.grpc_code: m for m in TABLE.values()}
_BY_HTTP = {m.http_status: m for m in TABLE.values() if m.error is not E.FailedPrecondition}
# Wire codes outside the domain hierarchy, folded into the nearest domain error.
_GRPC_ALIASES = {
    grpc.StatusCode.CANCELLED: E.Unavailable,
    grpc.StatusCode.ABORTED: E.Unavailable,
    grpc.StatusCode.OUT_OF_RANGE: E.InvalidArgument,
    grpc.StatusCode.DATA_LOSS: E.Internal,
    grpc.StatusCode.UNKNOWN: E.Internal,
}
_HTTP_ALIASES = {405: E.Unimplemented, 408: E.DeadlineExceeded, 413: E.ResourceExhausted, 422: E.InvalidArgument,
                 431: E.ResourceExhausted, 502: E.Unavailable}
# Refusals by size (transport.limits) are RESOURCE_EXHAUSTED like a spent quota, but HTTP has statuses of their own
# that proxies and client libraries know: 413 Content Too Large (RFC 9110), 431 Header Fields Too Large (RFC 6585).
BODY_TOO_LARGE, HEADERS_TOO_LARGE, TOKEN_TOO_LARGE = "BODY_TOO_LARGE", "HEADERS_TOO_LARGE", "TOKEN_TOO_LARGE"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # UNIMPLEMENTED on a path that exists: HTTP's 405 with Allow
_HTTP_BY_REASON = {BODY_TOO_LARGE: 413, HEADERS_TOO_LARGE: 431, TOKEN_TOO_LARGE: 431, METHOD_NOT_ALLOWED: 405}


def new_request_id() -> str:
    """32 random hex digits (as uuid4().hex, at a quarter of its cost: one per call without an id)."""
    return os.urandom(16).hex()


def internal_error(exc: BaseException, request_id: str) -> E.Internal:
    """Log an unexpected exception with its request id; the caller gets the id, never the trace."""
    log.error("unhandled error, request_id=%s", request_id, exc_info=exc)
    return E.Internal(f"internal error; quote request id {request_id}", metadata={"request_id": request_id})


# --- gRPC -----------------------------------------------------------------------------------------------------------

def to_grpc_status(err: E.DomainError) -> grpc.Status:
    details = []
    if err.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in err.violations
            ]
        )
        details.append(_pack(bad))
    details.append(_pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)))
    code = TABLE[err.code].grpc_code
    status = status_pb2.Status(code=code.value[0], message=err.message, details=details)
    return rpc_status.to_status(status)


def _pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def from_grpc_error(err: grpc.RpcError) -> E.DomainError:
    """Rebuild the domain error from an RpcError, using the rich status details when the server sent them."""
    code = err.code()
    mapping = _BY_GRPC.get(code)
    cls = mapping.error if mapping else _GRPC_ALIASES.get(code, E.Internal)
    message = err.details() or code.name
    violations: list[E.FieldViolation] = []
    reason, metadata = None, {}
    for key, value in err.trailing_metadata() or ():
        if key != rpc_status.GRPC_DETAILS_METADATA_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [E.FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
    return cls(message, violations=violations, reason=reason, metadata=metadata)


# --- REST (RFC 9457 problem details) -----------------------------------------------------------------------------

def http_status(err: E.DomainError) -> int:
    return _HTTP_BY_REASON.get(err.reason) or TABLE[err.code].http_status


def to_problem(err: E.DomainError) -> dict:
    status = http_status(err)
    body = {
        "type": f"urn:fxplat:error:{err.code.lower().replace('_', '-')}",
        "title": err.code,
        "status": status,
        "detail": err.message,
        "code": err.code,
        "reason": err.reason,
    }
    if err.violations:
        body["field_violations"] = [{"field": v.field, "description": v.description} for v in err.violations]
    if err.metadata:
        body["metadata"] = err.metadata
    return body


def error_class_for_http(status: int) -> type[E.DomainError]:
    mapping = _BY_HTTP.get(status)
    return mapping.error if mapping else _HTTP_ALIASES.get(status, E.Unavailable if status >= 500 else E.InvalidArgument)


def from_problem(status: int, body: object) -> E.DomainError:
    """Rebuild the domain error from a problem+json body; tolerate foreign error bodies (proxies, plain text)."""
    if isinstance(body, dict) and body.get("code") in TABLE:
        cls = TABLE[body["code"]].error
        violations = [E.FieldViolation(v.get("field", ""), v.get("description", ""))
                      for v in body.get("field_violations") or ()]
        return cls(str(body.get("detail") or body["code"]), violations=violations, reason=body.get("reason"),
                   metadata={str(k): str(v) for k, v in (body.get("metadata") or {}).items()})
    cls = error_class_for_http(status)
    text = body.get("detail") if isinstance(body, dict) else body
    return cls(f"HTTP {status}: {str(text or '')[:200]}".rstrip(": "))
