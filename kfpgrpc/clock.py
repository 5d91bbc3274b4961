"""Time source of the server core.

Every timestamp the core writes comes from a Clock, and every timer it sets goes through one,
so that tests can substitute a `VirtualClock` and run days of schedule in milliseconds. Times
are integer microseconds since the Unix epoch, UTC: exact, cheap to compare and to index.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

MICROS_PER_SECOND = 1_000_000


class Alarm(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_us(self) -> int:
        """The current time in microseconds since the Unix epoch."""
        ...

    def wake_at(self, when_us: int, event: asyncio.Event) -> Alarm:
        """Set `event` once the time is `when_us` or later (maybe slightly early: re-check)."""
        ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000

    def wake_at(self, when_us: int, event: asyncio.Event) -> Alarm:
        delay = max(0.0, (when_us - self.now_us()) / MICROS_PER_SECOND)
        return asyncio.get_running_loop().call_later(delay, event.set)


class _VirtualAlarm:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that moves only when told to (`advance`, `set`), waking the alarms it passes."""

    def __init__(self, now_us: int) -> None:
        self._now = now_us
        self._alarms: list[tuple[int, int, asyncio.Event, _VirtualAlarm]] = []
        self._order = itertools.count()

    def now_us(self) -> int:
        return self._now

    def wake_at(self, when_us: int, event: asyncio.Event) -> Alarm:
        alarm = _VirtualAlarm()
        if when_us <= self._now:
            event.set()
        else:
            heapq.heappush(self._alarms, (when_us, next(self._order), event, alarm))
        return alarm

    def set(self, now_us: int) -> None:
        if now_us < self._now:
            raise ValueError("a virtual clock does not go back")
        self._now = now_us
        while self._alarms and self._alarms[0][0] <= now_us:
            _, _, event, alarm = heapq.heappop(self._alarms)
            if not alarm.cancelled:
                event.set()

    def advance(self, seconds: float) -> None:
        self.set(self._now + round(seconds * MICROS_PER_SECOND))


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The times the server can hold: google.protobuf.Timestamp's range, which is also Python's
# datetime range (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z); in microseconds they fit
# SQLite's int64 with room to spare.
MIN_TIME_US = (datetime(1, 1, 1, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)
MAX_TIME_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)


def to_datetime(micros: int) -> datetime:
    """Exact: going through a float would lose microseconds of today's timestamps."""
    return EPOCH + timedelta(microseconds=micros)


def to_micros(moment: datetime) -> int:
    """An aware datetime in microseconds since the epoch, exactly."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def rfc3339(micros: int) -> str:
    """An instant as RFC 3339 text in UTC, as messages show it: 2026-05-04T10:15:00Z."""
    return to_datetime(micros).isoformat().replace("+00:00", "Z")
