"""Time source of the server core.

Every timestamp the core writes comes from a Clock, so that tests can substitute a virtual
clock and run hours of schedule in milliseconds. Times are integer microseconds since the Unix
epoch, UTC: exact, cheap to compare and to index in SQLite.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol

MICROS_PER_SECOND = 1_000_000


class Clock(Protocol):
    def now_us(self) -> int:
        """The current time in microseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


def to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / MICROS_PER_SECOND, tz=timezone.utc)
