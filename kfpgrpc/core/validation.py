"""Checks shared by the core's request handlers; each names the request field it checks."""

from __future__ import annotations

import secrets
import time
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
    """A new id: a UUID version 7 (RFC 9562, section 5.7), 36 characters. Its first 48 bits
    are the Unix time in milliseconds and the other 74 free bits are random, so ids made
    later sort after earlier ones: a row inserted into a table keyed (or indexed) by id goes
    at the end of the index instead of at a random page: with the runs table's indexes, about a
    quarter to a third of an insert's CPU (bench/bench_run_inserts.py). KFP's ids are UUIDs too
    (version 4); clients treat them as opaque. Python 3.14's uuid.uuid7 makes the same."""
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant (RFC 9562)
    return str(uuid.UUID(int=value))


def check(violations: list[FieldViolation]) -> None:
    """Raise InvalidArgument naming every violation, if there is any."""
    if violations:
        raise InvalidArgument(violations)
