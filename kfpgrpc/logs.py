"""Structured logging: one line per record, as logfmt (`text`) or JSON (`json`).

Code logs with `log.info("message", extra={"fields": {...}})`; the fields become keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

_RESERVED = {"ts", "level", "logger", "msg"}


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in getattr(record, "fields", {}).items():
        fields[f"field_{key}" if key in _RESERVED else key] = value
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record), default=str)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _record_fields(record).items())


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text)


def configure(level: str, fmt: str) -> None:
    """`level` applies to kfpgrpc's loggers; libraries (grpc, aiosqlite) log warnings only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("kfpgrpc").setLevel(level.upper())


MAX_HELD_RECORDS = 10_000


class _Held(logging.Handler):
    """Keeps records for later, up to MAX_HELD_RECORDS; past that it passes them on (a start
    that resumes very many runs is not kept in memory)."""

    def __init__(self, targets: list[logging.Handler]) -> None:
        super().__init__()
        self.targets = targets
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < MAX_HELD_RECORDS:
            self.records.append(record)
        else:
            self.write_out()
            self._write(record)

    def write_out(self) -> None:
        """Write the records held so far (not `release`: that is Handler's lock)."""
        records, self.records = self.records, []
        for record in records:
            self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        for target in self.targets:
            if record.levelno >= target.level:
                target.handle(record)


@contextlib.contextmanager
def held(*, drop_on_error: bool) -> Iterator[None]:
    """Hold what is logged inside and write it at the end; when the block raises and
    `drop_on_error`, drop it instead (a failed start says why in one line, alone)."""
    root = logging.getLogger()
    targets = root.handlers[:]
    holder = _Held(targets)
    root.handlers[:] = [holder]
    try:
        yield
    except BaseException:
        if drop_on_error:
            holder.records.clear()
        raise
    finally:
        root.handlers[:] = targets
        holder.write_out()
