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
- Periodic: ticks at `anchor + k * interval`; the anchor is the start time (k >= 1: the first
  tick is one interval after it), or the creation time when there is none (then the grid also
  extends back before the creation, for backfills).
- start/end bound the ticks, inclusive; 0 means unbounded.
- Time ends at 9999-12-31T23:59:59.999999Z (Timestamp's and datetime's range): a schedule has
  no tick after it, so no computation overflows. Intervals are at most Go's longest duration
  (2562047h47m16.854775807s, about 292 years), as in KFP, whose scheduler computes in Go.
- The minimum interval applies to every kind: a cron expression's closest two ticks, on the
  wall clock, must be at least that far apart. (A DST change can bring a tick that it moves
  closer to its neighbour, by at most the change, on that day.)

croniter (pinned to major 7: its majors change what expressions mean) finds cron matches; this
module adds the DST rule for repeated times, the descriptors it lacks, the bounds, and a fast
walk over many ticks: croniter takes tens of microseconds per tick, so a range of ticks is
computed day by day (which days match, then the day's times) and croniter is asked only about
days next to a UTC-offset change. Expressions are checked in the user's terms first
(`kfpgrpc.cron`): croniter's messages are never shown.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US, to_datetime, to_micros
from kfpgrpc.cron import expression_problem, impossible_date_problem
from kfpgrpc.errors import FieldViolation

NEXT_TIMES = 10  # how many upcoming fire times a recurring run shows
DAY_US = 86_400 * MICROS_PER_SECOND
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
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)
# The walk looks a day or two around its range; these keep it inside what `date` represents.
_FIRST_DAY = date.min.toordinal() + 3
_LAST_DAY = date.max.toordinal() - 3
_GREGORIAN_CYCLE_DAYS = 146_097  # the calendar, weekdays included, repeats every 400 years


class Schedule(Protocol):
    def next_after(self, after_us: int) -> int | None:
        """The first tick strictly after `after_us`, or None when no tick is left."""
        ...

    def between(self, after_us: int, until_us: int) -> Iterator[int]:
        """The ticks in (after_us, until_us], oldest first."""
        ...

    def latest(self, after_us: int, until_us: int) -> int | None:
        """The newest tick in (after_us, until_us], or None when there is none."""
        ...

    def detached(self) -> Schedule:
        """An equal schedule that shares no state with this one, for a worker thread."""
        ...


@dataclass(frozen=True)
class Periodic:
    """Ticks at anchor_us + k * interval_us (µs), k >= 1, or any k when `extends_back`; none
    after end_us (0: no end)."""

    interval_us: int
    anchor_us: int
    end_us: int = 0
    extends_back: bool = False  # no start_time: the grid also has ticks at or before the anchor

    def next_after(self, after_us: int) -> int | None:
        steps = (after_us - self.anchor_us) // self.interval_us + 1
        tick = self.anchor_us + (steps if self.extends_back else max(1, steps)) * self.interval_us
        return None if tick > (self.end_us or MAX_TIME_US) else tick

    def between(self, after_us: int, until_us: int) -> Iterator[int]:
        tick = self.next_after(after_us)
        while tick is not None and tick <= until_us:
            yield tick
            tick = self.next_after(tick)

    def latest(self, after_us: int, until_us: int) -> int | None:
        until_us = min(until_us, self.end_us or MAX_TIME_US, MAX_TIME_US)
        steps = (until_us - self.anchor_us) // self.interval_us
        if not self.extends_back and steps < 1:
            return None
        tick = self.anchor_us + steps * self.interval_us
        return tick if tick > after_us else None

    def detached(self) -> Periodic:
        return self  # it has no state


@dataclass(frozen=True)
class Cron:
    """A cron expression read in `zone`, bounded by start_us and end_us (inclusive, µs; 0:
    unbounded), with the DST rules of this module."""

    expression: str  # 5 or 6 fields, descriptors expanded
    zone: ZoneInfo
    start_us: int = 0
    end_us: int = 0
    own_iterator: bool = dataclasses.field(default=False, compare=False)  # see detached()

    @property
    def _seconds_first(self) -> bool:
        return len(self.expression.split()) == 6

    @cached_property
    def follows_elapsed_time(self) -> bool:
        """Fires every hour of the day: repeated local hours fire twice (elapsed time)."""
        # croniter keeps fields in 5-field order (the seconds last), so hours are always [1].
        hours = self._matches.expanded[1]
        return hours == ["*"] or len(hours) == 24

    @cached_property
    def _matches(self) -> croniter:
        return _iterator(self.expression, self.zone) if self.own_iterator else _parsed(self.expression, self.zone)

    def detached(self) -> Cron:
        """A copy with a croniter iterator of its own: the shared one is for the event loop."""
        return dataclasses.replace(self, own_iterator=True)

    @cached_property
    def _time_fields(self) -> tuple[list[int], list[int], list[int]]:
        """The hours, minutes and seconds it fires at, ascending."""
        expanded = self._matches.expanded
        seconds = expanded[5] if self._seconds_first else [0]

        def values(field: list[int | str], count: int) -> list[int]:
            return list(range(count)) if field == ["*"] else sorted(int(v) for v in field)

        return values(expanded[1], 24), values(expanded[0], 60), values(seconds, 60)

    def times_of_day(self, after: int, until: int) -> Iterator[int]:
        """The wall-clock times in (after, until] at which a matching day fires, in
        microseconds after local midnight, ascending. Generated, not stored: an every-second
        cron has 86,400 of them, and every recurring run holds its own Cron."""
        hours, minutes, seconds = self._time_fields
        for hour in hours:
            hour_us = hour * 3600 * MICROS_PER_SECOND
            if hour_us > until:
                return
            if hour_us + 3600 * MICROS_PER_SECOND <= after:
                continue
            for minute in minutes:
                minute_us = hour_us + minute * 60 * MICROS_PER_SECOND
                if minute_us > until:
                    return
                first = bisect_right(seconds, (after - minute_us) // MICROS_PER_SECOND) if after >= minute_us else 0
                for second in itertools.islice(seconds, first, None):
                    time = minute_us + second * MICROS_PER_SECOND
                    if time > until:
                        return
                    yield time

    @cached_property
    def _day_expression(self) -> str:
        """The day fields alone: croniter decides which dates match, with its own rules."""
        return "0 0 " + " ".join(self.expression.split()[-3:])

    def next_after(self, after_us: int) -> int | None:
        """By the day-by-day walk: several times faster than asking croniter; and remembered,
        since the recurring runs sharing a schedule tick together and then ask it for the same
        instant."""
        return _next_after(self, after_us)

    def _croniter_next_after(self, after_us: int) -> int | None:
        if self.start_us:
            after_us = max(after_us, self.start_us - 1)
        after_us = max(after_us, _CRON_FIRST_US)
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

    def between(self, after_us: int, until_us: int) -> Iterator[int]:
        """Day by day: a matching day away from any UTC-offset change fires at its times of
        day; days next to a change (where DST moves or repeats times), and the first and last
        days of time (the walk looks a day beyond its range), are left to croniter."""
        if self.start_us:
            after_us = max(after_us, self.start_us - 1)
        until_us = min(until_us, self.end_us or MAX_TIME_US, MAX_TIME_US)
        walk_from, walk_until = max(after_us, _midnight_us(_FIRST_DAY, 0)), min(until_us, _midnight_us(_LAST_DAY, 0))
        yield from self._one_by_one(after_us, min(until_us, walk_from))
        if walk_from < walk_until:
            yield from self._walk(walk_from, walk_until)
        yield from self._one_by_one(max(after_us, walk_until), until_us)

    def _one_by_one(self, after_us: int, until_us: int) -> Iterator[int]:
        tick = self._croniter_next_after(after_us) if after_us < until_us else None
        while tick is not None and tick <= until_us:
            yield tick
            tick = self._croniter_next_after(tick)

    def _walk(self, after_us: int, until_us: int) -> Iterator[int]:
        midnights = _Midnights(self.zone)
        done = after_us  # every tick up to here was yielded
        first, last = self._local_day(after_us + 1) - 1, self._local_day(until_us) + 1
        for day in _matching_days(self._day_expression, first, last):
            if (offset := midnights.steady_offset(day)) is not None:
                start = _midnight_us(day, offset)
                if start + DAY_US - 1 <= done:
                    continue  # walked tick by tick around an offset change
                stop = min(until_us, start + DAY_US - 1)
                for time in self.times_of_day(done - start, stop - start):
                    yield start + time
            else:
                # An offset change moves ticks by less than a day: the days on either side
                # are walked tick by tick.
                stop = min(until_us, midnights.instant(day + 2) - 1)
                if stop <= done:
                    continue
                yield from self._one_by_one(done, stop)
            done = stop
            if done >= until_us:
                return

    def latest(self, after_us: int, until_us: int) -> int | None:
        """Walks back from the end (or until_us) in windows that grow fourfold: a day, four
        days, sixteen..."""
        until_us = min(until_us, self.end_us or MAX_TIME_US, MAX_TIME_US)
        span = DAY_US
        while until_us > after_us:
            low = max(after_us, until_us - span)
            newest = None
            for newest in self.between(low, until_us):
                pass
            if newest is not None:
                return newest
            until_us, span = low, span * 4
        return None

    @cached_property
    def closest_ticks(self) -> tuple[int, str]:
        """How close (µs) two consecutive ticks come on the wall clock, and where, e.g.
        "at 10:00:00 and 10:00:01". Consecutive times of a day differ in the seconds, or
        go from a minute's last second to the next minute's first, or likewise across hours;
        then from a day's last time to the next matching day's first."""
        hours, minutes, seconds = self._time_fields
        first, last = hours[0] * 3600 + minutes[0] * 60 + seconds[0], hours[-1] * 3600 + minutes[-1] * 60 + seconds[-1]
        found: list[tuple[int, int, int, str]] = []  # (gap s, earlier, later, suffix)
        base = hours[0] * 3600 + minutes[0] * 60
        if (pair := _closest_pair(seconds)) is not None:
            found.append((pair[1] - pair[0], base + pair[0], base + pair[1], ""))
        if (pair := _closest_pair(minutes)) is not None:
            earlier, later = hours[0] * 3600 + pair[0] * 60 + seconds[-1], hours[0] * 3600 + pair[1] * 60 + seconds[0]
            found.append((later - earlier, earlier, later, ""))
        if (pair := _closest_pair(hours)) is not None:
            earlier, later = pair[0] * 3600 + minutes[-1] * 60 + seconds[-1], pair[1] * 3600 + minutes[0] * 60 + seconds[0]
            found.append((later - earlier, earlier, later, ""))
        if not found or 86_400 - (last - first) < min(found)[0]:
            days = _closest_days(self._day_expression)
            found.append((days * 86_400 - (last - first), last, first, " the next day" if days == 1 else f" {days} days later"))
        gap, earlier, later, suffix = min(found)
        return gap * MICROS_PER_SECOND, f"at {_clock_time(earlier)} and {_clock_time(later)}{suffix}"

    def _local_day(self, instant_us: int) -> int:
        """The proleptic Gregorian ordinal of the local date at an instant."""
        return to_datetime(instant_us).astimezone(self.zone).toordinal()


@lru_cache(maxsize=8192)
def _next_after(schedule: Cron, after_us: int) -> int | None:
    return next(schedule.between(after_us, MAX_TIME_US), None)


def _second_occurrence(local: datetime) -> bool:
    """Whether `local` is the later of two instants with the same wall time (DST fall-back)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


@lru_cache(maxsize=4096)
def _parsed(expression: str, zone: ZoneInfo) -> croniter:
    """Parsing is most of croniter's cost, and many schedules share an expression: parse once,
    then move the shared iterator. Safe without locks on the event loop: next_after never
    awaits while using it (a worker thread uses a detached schedule)."""
    return _iterator(expression, zone)


def _iterator(expression: str, zone: ZoneInfo) -> croniter:
    return croniter(expression, datetime.now(zone), second_at_beginning=len(expression.split()) == 6)


def _midnight_us(day: int, offset_us: int) -> int:
    """The instant of the local midnight starting the day with this ordinal, at this offset."""
    return (day - _EPOCH_ORDINAL) * DAY_US - offset_us


class _Midnights:
    """A zone's UTC offsets at local midnights, remembered for one walk. Days are ordinals."""

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        self._offsets: dict[int, int] = {}

    def offset(self, day: int) -> int:
        """The UTC offset (µs) at the local midnight that starts `day` (its first pass, or
        the offset before the change when the midnight falls in a gap)."""
        if (known := self._offsets.get(day)) is None:
            delta = self._zone.utcoffset(datetime.fromordinal(day))
            known = self._offsets[day] = delta // _MICROSECOND if delta is not None else 0
        return known

    def instant(self, day: int) -> int:
        return _midnight_us(day, self.offset(day))

    def steady_offset(self, day: int) -> int | None:
        """The offset all through `day` when it does not change from the day before to the day
        after (every time of `day` exists once, and no tick of a neighbour is moved into it),
        else None. Two changes that cancel out within three days would go unseen; no zone
        has had such."""
        offset = self.offset(day - 1)
        return offset if offset == self.offset(day + 2) else None


def _matching_days(day_expression: str, first: int, last: int) -> Iterator[int]:
    """The ordinals of the days in [first, last] that the day fields match, ascending."""
    start = date.fromordinal(first)
    year, month = start.year, start.month
    while (month_start := date(year, month, 1).toordinal()) <= last:
        for day in _month_days(day_expression, month, *calendar.monthrange(year, month)):
            if first <= (found := month_start + day - 1) <= last:
                yield found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


@lru_cache(maxsize=8192)
def _month_days(day_expression: str, month: int, first_weekday: int, length: int) -> tuple[int, ...]:
    """The days of a month that the day fields match. They depend only on the month, its
    length and the weekday of its first day (Monday = 0), so each combination is computed
    once. Plain fields follow croniter's rule (day-of-month OR day-of-week when both are
    restricted, else both); its extensions (L, W, #) are left to croniter itself."""
    rule = _day_rule(day_expression)
    months, days, weekdays = rule.expanded[3], rule.expanded[2], rule.expanded[4]
    if months != ["*"] and month not in months:
        return ()
    if "l" in days or rule.nth_weekday_of_month or rule.nearest_weekday:
        return _month_days_by_croniter(day_expression, month, first_weekday, length)

    def on_day(day: int) -> bool:
        return days == ["*"] or day in days

    def on_weekday(day: int) -> bool:
        return weekdays == ["*"] or (first_weekday + day) % 7 in weekdays  # cron counts from Sunday = 0

    either = days != ["*"] and weekdays != ["*"]
    return tuple(
        day for day in range(1, length + 1) if (on_day(day) or on_weekday(day) if either else on_day(day) and on_weekday(day))
    )


@lru_cache(maxsize=1024)
def _day_rule(day_expression: str) -> croniter:
    return croniter(day_expression, datetime(2000, 1, 1))


def _month_days_by_croniter(day_expression: str, month: int, first_weekday: int, length: int) -> tuple[int, ...]:
    """Asked about a month of the 2000s with the same length and first weekday."""
    year = _REPRESENTATIVE_YEARS[(month, first_weekday, length)]
    matches = croniter(day_expression, datetime(year, month, 1) - timedelta(seconds=1))
    found: list[int] = []
    try:
        while (moment := matches.get_next(datetime)).month == month and moment.year == year:
            found.append(moment.day)
    except CroniterError:  # croniter gave up searching: nothing more this month
        pass
    return tuple(found)


_REPRESENTATIVE_YEARS = {
    (month, *calendar.monthrange(year, month)): year for year in range(2027, 1999, -1) for month in range(1, 13)
}


@lru_cache(maxsize=1024)
def _closest_days(day_expression: str) -> int:
    """The fewest days between two consecutive matching dates, over a whole Gregorian cycle."""
    first = date(2000, 1, 1).toordinal()
    closest = 2**31
    for earlier, later in itertools.pairwise(_matching_days(day_expression, first, first + _GREGORIAN_CYCLE_DAYS + 366)):
        closest = min(closest, later - earlier)
        if closest == 1:
            break
    return closest


def _closest_pair(values: list[int]) -> tuple[int, int] | None:
    """The two consecutive values (ascending) that are closest, or None for fewer than two."""
    return min(itertools.pairwise(values), key=lambda pair: pair[1] - pair[0], default=None)


def _clock_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def next_times(schedule: Schedule, after_us: int, count: int = NEXT_TIMES) -> list[int]:
    """The first `count` ticks after `after_us` (fewer when the schedule ends)."""
    return list(itertools.islice(schedule.between(after_us, MAX_TIME_US), count))


@dataclass(frozen=True)
class FireTime:
    """A fire time as read in a zone: the instant (µs), the zone's UTC offset then (µs), and
    whether its local day has an offset change (DST: the offsets at its midnight and at the
    next differ, so the day is not 24 h long)."""

    time_us: int
    utc_offset_us: int
    transition_day: bool

    def local(self) -> datetime:
        """The local time, with its offset as tzinfo."""
        return to_datetime(self.time_us).astimezone(_fixed_zone(self.utc_offset_us))


def fire_times(schedule: Schedule, after_us: int, count: int, zone: ZoneInfo) -> list[FireTime]:
    """The next `count` ticks after `after_us` (next_times, as a recurring run's
    next_scheduled_times), read in `zone`. A tick whose local day is the last `date` can
    represent (year 9999 in a zone east of UTC) ends the list: it has no local reading."""
    midnights = _Midnights(zone)
    found = []
    for tick in next_times(schedule, after_us, count):
        try:
            local = to_datetime(tick).astimezone(zone)
            day = local.toordinal()
            transition = midnights.offset(day) != midnights.offset(day + 1)
        except (OverflowError, ValueError):
            break
        offset = local.utcoffset()
        found.append(FireTime(tick, offset // _MICROSECOND if offset is not None else 0, transition))
    return found


@lru_cache(maxsize=64)
def _fixed_zone(offset_us: int) -> timezone:
    return timezone(timedelta(microseconds=offset_us))


def ticks_between(schedule: Schedule, after_us: int, until_us: int, limit: int) -> list[int]:
    """Ticks in (after_us, until_us], oldest first, at most `limit`."""
    return list(itertools.islice(schedule.between(after_us, until_us), limit))


def count_ticks(schedule: Schedule, after_us: int, until_us: int, limit: int) -> int:
    """How many ticks are in (after_us, until_us], counting at most `limit`."""
    return sum(1 for _ in itertools.islice(schedule.between(after_us, until_us), limit))


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
    """A cron (or `@every`) schedule, or the violations of `field` (the expression), in the
    user's terms. `anchor_us` anchors an `@every` without start; `min_interval_seconds` is the
    closest two ticks may come. Parsed once per distinct arguments: thousands of recurring
    runs share a few expressions, and a schedule is immutable, so they share it too."""
    if not expression.lstrip().startswith("@every"):
        anchor_us = 0  # only @every depends on it: the cache holds one entry per cron
    schedule, violations = _cron_schedule(expression, zone, start_us, end_us, anchor_us, min_interval_seconds, field)
    return schedule, list(violations)  # a copy: the cached list is shared


@lru_cache(maxsize=4096)
def _cron_schedule(
    expression: str, zone: ZoneInfo, start_us: int, end_us: int, anchor_us: int, min_interval_seconds: int, field: str
) -> tuple[Schedule | None, list[FieldViolation]]:
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
        return Periodic(interval_us, start_us or anchor_us, end_us, extends_back=not start_us), []
    text = _DESCRIPTORS.get(text, text)
    if text.startswith("@"):
        known = ", ".join([*_DESCRIPTORS, "@every <duration>"])
        return None, [FieldViolation(field, f"unknown descriptor {text.split()[0][:20]!r}; use one of {known}")]
    if problem := expression_problem(text):
        return None, [FieldViolation(field, problem)]
    schedule = Cron(text, zone, start_us, end_us)
    try:
        schedule._croniter_next_after(anchor_us)  # parses, and finds a first match
    except CroniterBadDateError:
        day_of_month, month = text.split()[-3:-1]
        return None, [FieldViolation(field, impossible_date_problem(day_of_month, month))]
    except (CroniterError, ValueError, KeyError):  # croniter's text quotes its rewrite: not shown
        return None, [FieldViolation(field, "is not a valid cron expression; see the cron format in the docs")]
    gap, where = schedule.closest_ticks
    if gap < min_interval_seconds * MICROS_PER_SECOND:
        return None, [FieldViolation(
            field, f"fires {gap / MICROS_PER_SECOND:g}s apart ({where}); ticks must be at least {min_interval_seconds}s apart",
        )]
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
    return Periodic(interval_seconds * MICROS_PER_SECOND, start_us or anchor_us, end_us, extends_back=not start_us), []
