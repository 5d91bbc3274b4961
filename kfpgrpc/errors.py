"""Domain errors raised by the core and the store.

They carry no gRPC types: the API layer maps each class to one status code in one place
(`kfpgrpc.api.status`), so the core stays usable outside gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: a dotted proto path (e.g. `experiment.display_name`) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base class: a failure a client can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request is malformed; `violations` names every bad field."""

    def __init__(self, violations: list[FieldViolation] | FieldViolation, message: str = "") -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or f"invalid argument: {summary}")

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))


class NotFound(DomainError):
    MAX_SHOWN = 100  # characters of the value shown: an 8 KB id need not come back in full

    def __init__(self, kind: str, key: str, value: str) -> None:
        shown = repr(value) if len(value) <= self.MAX_SHOWN else f"{value[:self.MAX_SHOWN]!r}… ({len(value)} characters)"
        super().__init__(f"{kind} with {key} {shown} not found")


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class ResourceExhausted(DomainError):
    """A limit was hit, e.g. a watcher fell too far behind."""


class OutOfRange(DomainError):
    """The request asks for what is no longer (or not yet) there."""


class Unavailable(DomainError):
    """The server is shutting down or a dependency is not ready."""


class StoreFault(DomainError):
    """The database cannot take writes now (locked by another process past the busy timeout,
    disk full, I/O error, file deleted or replaced). Not the request's fault: the same write
    may succeed later. Health is NOT_SERVING while writes fail this way. `reason` says what is
    wrong, the message adds what to do."""

    def __init__(self, reason: str, advice: str = "retry later") -> None:
        super().__init__(f"{reason}; {advice}")
        self.reason = reason
        self.advice = advice

    def fresh(self) -> StoreFault:
        """The same fault, as a new exception to raise to another caller."""
        return type(self)(self.reason, self.advice)


class StoreUnavailable(StoreFault, Unavailable):
    """A store fault other than a full disk: UNAVAILABLE, retry later."""


class StoreFull(StoreFault, ResourceExhausted):
    """The disk holding the database is full: RESOURCE_EXHAUSTED."""


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    """Authenticated, but this request may not be made so (the web UI's cookie on a
    cross-origin state change)."""
