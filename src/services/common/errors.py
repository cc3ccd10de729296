"""The one domain error hierarchy.

Domain code raises these; the transport layer maps them to gRPC status codes and HTTP statuses through the single table in
`transport.errors`, and clients map wire errors back to the same classes, so a caller cannot tell which transport failed.
The `code` of each class is the google.rpc.Code name it travels as.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is a dotted path (e.g. `indicators[1].params.period`)."""

    field: str
    description: str


class DomainError(Exception):
    code: str = "INTERNAL"
    # Default machine-readable reason (google.rpc.ErrorInfo.reason); subclasses and raisers may refine it.
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: list[FieldViolation] | tuple[FieldViolation, ...] = (),
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        viols = list(violations)
        if field is not None and not any(v.field == field for v in viols):
            viols.insert(0, FieldViolation(field, message))
        self.violations: list[FieldViolation] = viols
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def field(self) -> str | None:
        return self.violations[0].field if self.violations else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, violations={self.violations!r}, reason={self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self.message == other.message  # type: ignore[attr-defined]
            and self.violations == other.violations  # type: ignore[attr-defined]
            and self.reason == other.reason  # type: ignore[attr-defined]
        )

    __hash__ = Exception.__hash__


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    code = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class Unimplemented(DomainError):
    code = "UNIMPLEMENTED"
    default_reason = "UNIMPLEMENTED"


class Unavailable(DomainError):
    code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    code = "DEADLINE_EXCEEDED"
    default_reason = "DEADLINE_EXCEEDED"


class Internal(DomainError):
    code = "INTERNAL"
    default_reason = "INTERNAL"


ERROR_CLASSES: dict[str, type[DomainError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unimplemented,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}
