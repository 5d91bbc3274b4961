"""Schedule maths: the instants at which a recurring run's trigger fires.

Everything is in integer microseconds since the epoch (UTC); cron fields are read in the
schedule's IANA zone. The rules (SPEC §4):

- Cron: 5 fields (`minute hour day-of-month month day-of-week`), 6 fields (seconds first, as
  KFP and robfig/cron), the descriptors `@yearly` `@annually` `@monthly` `@weekly` `@daily`
  `@midnight` `@hourly`, and `@every <Go duration>`, which is a periodic schedule.
- DST: a local time that does not exist fires once, at the first instant after the gap; a
  local time that happens twice fires once, at its first occurrence. Schedules that fire every
  hour or more often (every hour is in the hour field) follow elapsed time instead and fire in
  both passes of a repeated hour.
- Periodic: ticks at `anchor + k * interval`, k >= 1; the anchor is the start time, or the
  creation time when there is none.
- start/end bound the ticks, inclusive; 0 means unbounded.
- Time ends at 9999-12-31T23:59:59.999999Z (Timestamp's and datetime's range): a schedule has
  no tick after it, so no computation overflows. Intervals are at most Go's longest duration
  (2562047h47m16.854775807s, about 292 years), as in KFP, whose scheduler computes in Go.

croniter (pinned to major 7: its majors change what expressions mean) finds cron matches; this
module adds the DST rule for repeated times, the descriptors it lacks and the bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US, to_datetime, to_micros
from kfpgrpc.errors import FieldViolation

NEXT_TIMES = 10  # how many upcoming fire times a recurring run shows
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_GO_UNITS_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
MAX_INTERVAL_US = (2**63 - 1) // 1000  # Go's time.Duration is int64 nanoseconds
MAX_CRON_LENGTH = 1000  # croniter takes ~25 µs per list element, on the event loop
# Cron ticks are searched from a day after the first representable instant (so that a zone's
# offset cannot take a local time before year 1) up to the last; croniter looks up to this many
# years ahead for a match, so a failed search that started this close to the end only means
# that the next tick would fall after it.
_CRON_FIRST_US = MIN_TIME_US + 24 * 3600 * MICROS_PER_SECOND
_CRON_SEARCH_YEARS = 50


class Schedule(Protocol):
    def next_after(self, after_us: int) -> int | None:
        """The first tick strictly after `after_us`, or None when no tick is left."""
        ...


@dataclass(frozen=True)
class Periodic:
    interval_us: int
    anchor_us: int
    end_us: int = 0

    def next_after(self, after_us: int) -> int | None:
        steps = max(1, (after_us - self.anchor_us) // self.interval_us + 1)
        tick = self.anchor_us + steps * self.interval_us
        return None if tick > (self.end_us or MAX_TIME_US) else tick


@dataclass(frozen=True)
class Cron:
    expression: str  # 5 or 6 fields, descriptors expanded
    zone: ZoneInfo
    start_us: int = 0
    end_us: int = 0

    @property
    def _seconds_first(self) -> bool:
        return len(self.expression.split()) == 6

    @cached_property
    def follows_elapsed_time(self) -> bool:
        """Fires every hour of the day: repeated local hours fire twice (elapsed time)."""
        # croniter keeps fields in 5-field order (the seconds last), so hours are always [1].
        hours = self._matches.expanded[1]
        return hours == ["*"] or len(hours) == 24

    @property
    def _matches(self) -> croniter:
        return _parsed(self.expression, self.zone)

    def next_after(self, after_us: int) -> int | None:
        after_us = max(after_us, self.start_us - 1, _CRON_FIRST_US)
        end_us = min(self.end_us or MAX_TIME_US, MAX_TIME_US)
        matches = self._matches
        elapsed = self.follows_elapsed_time
        try:
            matches.set_current(to_datetime(after_us).astimezone(self.zone), force=True)
            while True:
                local: datetime = matches.get_next(datetime)
                tick = to_micros(local)
                if tick > end_us:
                    return None
                if elapsed or not _second_occurrence(local):
                    return tick
        except (OverflowError, ValueError):  # datetime (or croniter) ran past year 9999
            if to_datetime(min(after_us, MAX_TIME_US)).year < 9999 - _CRON_SEARCH_YEARS:
                raise
            return None


def _second_occurrence(local: datetime) -> bool:
    """Whether `local` is the later of two instants with the same wall time (DST fall-back)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


@lru_cache(maxsize=4096)
def _parsed(expression: str, zone: ZoneInfo) -> croniter:
    """Parsing is most of croniter's cost, and many schedules share an expression: parse once,
    then move the shared iterator. Safe without locks: next_after never awaits while using it."""
    return croniter(expression, datetime.now(zone), second_at_beginning=len(expression.split()) == 6)


def next_times(schedule: Schedule, after_us: int, count: int = NEXT_TIMES) -> list[int]:
    times: list[int] = []
    while len(times) < count:
        tick = schedule.next_after(times[-1] if times else after_us)
        if tick is None:
            break
        times.append(tick)
    return times


def ticks_between(schedule: Schedule, after_us: int, until_us: int, limit: int) -> list[int]:
    """Ticks in (after_us, until_us], oldest first, at most `limit`."""
    ticks: list[int] = []
    tick = schedule.next_after(after_us)
    while tick is not None and tick <= until_us and len(ticks) < limit:
        ticks.append(tick)
        tick = schedule.next_after(tick)
    return ticks


def parse_go_duration(text: str) -> int:
    """A Go duration ("1h30m", "90s", "1.5h", "0") in microseconds; ValueError if malformed."""
    if text == "0":  # Go's one unitless duration
        return 0
    position, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_UNITS_US[match.group(2)]
        position = match.end()
    shown = repr(text if len(text) <= 40 else text[:40] + "…")
    if not text or position != len(text):
        raise ValueError(f"{shown} is not a Go duration such as 90s, 15m or 1h30m")
    if not total <= MAX_INTERVAL_US:  # also inf, from a number too long for a float
        raise ValueError(f"{shown} is longer than Go's longest duration, 2562047h47m16.854775807s")
    return round(total)


def zone_of(name: str, field: str) -> tuple[ZoneInfo | None, list[FieldViolation]]:
    try:
        return ZoneInfo(name), []
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return None, [FieldViolation(field, f"{name!r} is not an IANA time zone such as Europe/Berlin")]


def cron_schedule(
    expression: str,
    zone: ZoneInfo,
    start_us: int,
    end_us: int,
    anchor_us: int,
    min_interval_seconds: int,
    field: str,
) -> tuple[Schedule | None, list[FieldViolation]]:
    """A cron (or `@every`) schedule, or the violations of `field` (the expression)."""
    if len(expression) > MAX_CRON_LENGTH:
        return None, [FieldViolation(field, f"must be at most {MAX_CRON_LENGTH} characters, got {len(expression)}")]
    text = " ".join(expression.split())
    if text.startswith("@every"):
        try:
            interval_us = parse_go_duration(text.removeprefix("@every").strip())
        except ValueError as error:
            return None, [FieldViolation(field, f"@every needs a duration: {error}")]
        if interval_us < min_interval_seconds * MICROS_PER_SECOND:
            return None, [FieldViolation(field, f"@every must be at least {min_interval_seconds}s")]
        return Periodic(interval_us, start_us or anchor_us, end_us), []
    text = _DESCRIPTORS.get(text, text)
    if text.startswith("@"):
        known = ", ".join([*_DESCRIPTORS, "@every <duration>"])
        return None, [FieldViolation(field, f"unknown descriptor {text!r}; use one of {known}")]
    fields = len(text.split())
    if fields not in (5, 6):
        return None, [
            FieldViolation(
                field,
                f"needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got {fields}",
            )
        ]
    schedule = Cron(text, zone, start_us, end_us)
    try:
        schedule.next_after(anchor_us)  # parses, and finds a first match
    except (CroniterError, ValueError, KeyError) as error:
        return None, [FieldViolation(field, f"{expression!r} is not a valid cron expression: {error}")]
    return schedule, []


def periodic_schedule(
    interval_seconds: int, start_us: int, end_us: int, anchor_us: int, min_interval_seconds: int, field: str
) -> tuple[Schedule | None, list[FieldViolation]]:
    if interval_seconds < min_interval_seconds:
        return None, [FieldViolation(field, f"must be at least {min_interval_seconds}, got {interval_seconds}")]
    if interval_seconds * MICROS_PER_SECOND > MAX_INTERVAL_US:
        return None, [
            FieldViolation(field, f"must be at most {MAX_INTERVAL_US // MICROS_PER_SECOND} (Go's longest duration), got {interval_seconds}")
        ]
    return Periodic(interval_seconds * MICROS_PER_SECOND, start_us or anchor_us, end_us), []
