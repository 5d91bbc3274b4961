"""Checks shared by the core's request handlers; each names the request field it checks."""

from __future__ import annotations

import uuid

from kfpgrpc.errors import FieldViolation, InvalidArgument

MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 10_000


def name_violations(value: str, field: str, *, required: bool = True) -> list[FieldViolation]:
    if not value.strip():
        return [FieldViolation(field, "is required")] if required else []
    if value != value.strip():
        return [FieldViolation(field, "must not start or end with white space")]
    if len(value) > MAX_NAME_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}")]
    return []


def description_violations(value: str, field: str) -> list[FieldViolation]:
    if len(value) > MAX_DESCRIPTION_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_DESCRIPTION_LENGTH} characters, got {len(value)}")]
    return []


def id_violations(value: str, field: str) -> list[FieldViolation]:
    """An id is required; an id that names nothing is NOT_FOUND, as in KFP, not bad input."""
    return [] if value else [FieldViolation(field, "is required")]


def new_id() -> str:
    return str(uuid.uuid4())


def check(violations: list[FieldViolation]) -> None:
    """Raise InvalidArgument naming every violation, if there is any."""
    if violations:
        raise InvalidArgument(violations)
