"""The one domain error hierarchy.

Domain code raises these; the transport layer maps them to gRPC status codes and HTTP statuses through the single table in
`transport.errors`, and clients map wire errors back to the same classes, so a caller cannot tell which transport failed.
The `code` of each class is the google.rpc.Code name it travels as.
"""
from __future__ import annotations

from dataclasses import dataclass

QUOTE_CHARS = 64  # user input quoted in an error message is cut to this many characters
MESSAGE_CHARS = 1024  # and no message, field path or description is longer than this, whatever it holds
MAX_VIOLATIONS = 20  # a 10,000-item list of bad values is named by its first 20


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` as an error message quotes user input: repr'd and cut to `limit` characters, with the full length said.
    Every error that echoes a request's value goes through here, so a 10 MB symbol cannot become a 10 MB status
    message or gRPC trailer (which clients refuse, or worse, drop their connection over)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = repr(text[:limit])[:-1] if isinstance(value, str) else text[:limit]
    return f"{cut}...{cut[0] if isinstance(value, str) else ''} ({len(text):,} characters)"


def _capped(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else f"{text[:MESSAGE_CHARS]}... ({len(text):,} characters)"


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
        message = _capped(message)  # the last guard: a message built from unquoted input still leaves small
        super().__init__(message)
        self.message = message
        viols = [v if len(v.field) + len(v.description) <= MESSAGE_CHARS
                 else FieldViolation(_capped(v.field), _capped(v.description)) for v in violations][:MAX_VIOLATIONS]
        if field is not None:
            field = _capped(field)
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
