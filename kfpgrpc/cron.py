"""Cron expressions checked in the user's terms, before croniter sees them.

croniter's own errors quote its internal rewrite of the expression (`[0 * * * * cron_tz=utc]
is not acceptable`), which tells a user neither which field is wrong nor why. This module
checks the grammar that kfpgrpc accepts, field by field, and says what is wrong with which
field and what its range is: `minute must be 0-59, got 61`.

The grammar is robfig/cron's (what KFP uses) with croniter's day extensions: per field a
comma-separated list of `*`, a value, a range `a-b` (croniter also reads a backwards range
such as `FRI-MON` as wrapping around), each optionally with a step `/n`, and `a/n`
(from a to the field's end); `?` is `*` in the day fields; day-of-month also takes `L` (the
last day) and `nW` (the weekday nearest day n); day-of-week takes `d#n` (the n-th d of the
month) and `Ld` (the last d of the month). Hashed and random values (croniter's `H`, `R`) are
not cron and are refused.
"""

from __future__ import annotations

import re
from calendar import month_name
from dataclasses import dataclass

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year
_SHAPES = "a value, a range (a-b), a step (*/n or a-b/n) or a list of them (a,b)"
_ZONE_PREFIX = re.compile(r"(CRON_TZ|TZ)=\S*\s*", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"(\w+)W|W(\w+)", re.ASCII | re.IGNORECASE)
_NTH_WEEKDAY = re.compile(r"(\w+)#(\w+)", re.ASCII)
_LAST_WEEKDAY = re.compile(r"L(\w+)", re.ASCII | re.IGNORECASE)
_SHOWN = 20  # characters of a bad token that a message quotes


@dataclass(frozen=True)
class Field:
    """One cron field: its name in the user's terms, its numeric range and its names."""

    name: str
    low: int
    high: int  # what a user may write; day-of-week also takes 7 for Sunday
    names: tuple[str, ...] = ()  # names[i] is low + i
    stated_high: int = 0  # the range a message states, when narrower than `high`

    @property
    def range(self) -> str:
        text = f"{self.low}-{self.stated_high or self.high}"
        return f"{text} or {self.names[0]}-{self.names[-1]}" if self.names else text


SECOND = Field("second", 0, 59)
MINUTE = Field("minute", 0, 59)
HOUR = Field("hour", 0, 23)
DAY_OF_MONTH = Field("day-of-month", 1, 31)
MONTH = Field("month", 1, 12, MONTHS)
DAY_OF_WEEK = Field("day-of-week", 0, 7, WEEKDAYS, stated_high=6)
FIVE_FIELDS = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
SIX_FIELDS = (SECOND, *FIVE_FIELDS)


def expression_problem(text: str) -> str | None:
    """What is wrong with a 5- or 6-field cron expression (whitespace-separated fields), in
    the user's terms, or None when every field is well formed. Whether any date matches is
    not checked here (see `impossible_date_problem`)."""
    if _ZONE_PREFIX.match(text):
        return "put the time zone in trigger.cron_schedule.time_zone (an IANA name such as Europe/Berlin), not in the expression"
    fields = text.split()
    if len(fields) not in (5, 6):
        return f"needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got {len(fields)}"
    for spec, value in zip(SIX_FIELDS if len(fields) == 6 else FIVE_FIELDS, fields):
        items = value.split(",")
        for item in items:
            if problem := _item_problem(spec, item):
                return problem
        if problem := _mixing_problem(spec, items):
            return problem
    return None


def impossible_date_problem(day_of_month: str, month: str) -> str:
    """Why an expression whose day fields match no date never fires, e.g. day-of-month 30 in
    February. `day_of_month` and `month` are the fields as written."""
    days = _numbers(DAY_OF_MONTH, day_of_month)
    months = _numbers(MONTH, month) or set(range(1, 13))
    if days and all(min(days) > _LONGEST_MONTH[m - 1] for m in months):
        names = [month_name[m] for m in sorted(months)]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        longest = max(_LONGEST_MONTH[m - 1] for m in months)
        return f"never fires: day-of-month {day_of_month} does not occur in {listed} (at most {longest} days)"
    return f"never fires: no date matches day-of-month {day_of_month}, month {month} and day-of-week together"


def _item_problem(spec: Field, item: str) -> str | None:
    if not item:
        return f"{spec.name} has an empty item in its list"
    base, slash, step = item.partition("/")
    if slash:
        if not _is_number(step):
            return f"{spec.name} step must be a whole number, got {_shown(step)}"
        if not step.strip("0"):
            return f"{spec.name} step must be at least 1"
    if base == "*" or (base == "?" and spec in (DAY_OF_MONTH, DAY_OF_WEEK)):
        return None
    if not slash and (special := _extension(spec, base)) is not None:
        return special or None
    first, dash, last = base.partition("-")
    if not first and _is_number(last):
        return f"{spec.name} must be {spec.range}, got {_shown(base)}"
    if not first or "-" in last or (dash and not last):
        return f"{spec.name}: {_shown(item)} is not {_SHAPES}"
    return _value_problem(spec, first) or (_value_problem(spec, last) if dash else None)


def _extension(spec: Field, item: str) -> str | None:
    """For a day-field extension (L, nW, d#n, Ld): its problem, or "" when it is a good one;
    None when `item` is not an extension."""
    if spec is DAY_OF_MONTH:
        if item.upper() == "L":
            return ""
        if match := _NEAREST_WEEKDAY.fullmatch(item):
            return _value_problem(spec, match.group(1) or match.group(2)) or ""
    if spec is DAY_OF_WEEK:
        if match := _NTH_WEEKDAY.fullmatch(item):
            if match.group(2) not in ("1", "2", "3", "4", "5"):
                return f"day-of-week {item}: the week number after # must be 1-5"
            return _value_problem(spec, match.group(1)) or ""
        if match := _LAST_WEEKDAY.fullmatch(item):
            return _value_problem(spec, match.group(1)) or ""
    return None


def _mixing_problem(spec: Field, items: list[str]) -> str | None:
    """croniter reads nW, d#n and Ld only in certain company."""
    if spec is DAY_OF_MONTH and len(items) > 1 and any(_NEAREST_WEEKDAY.fullmatch(item) for item in items):
        return "day-of-month nW (the weekday nearest day n) must be the field's only item"
    if spec is DAY_OF_WEEK:
        nth_or_last = [item for item in items if _NTH_WEEKDAY.fullmatch(item) or _LAST_WEEKDAY.fullmatch(item)]
        if nth_or_last and len(nth_or_last) < len(items):
            return "day-of-week cannot mix d#n or Ld items with plain days"
    return None


def _value_problem(spec: Field, value: str) -> str | None:
    if _number(spec, value) is not None:
        return None
    return f"{spec.name} must be {spec.range}, got {_shown(value)}"


def _numbers(spec: Field, text: str) -> set[int]:
    """The plain values and ranges of a field as numbers; empty when it holds anything else
    (a star, a step, an extension), which the caller then does not reason about."""
    found: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        low, high = _number(spec, first), _number(spec, last if dash else first)
        if low is None or high is None or low > high:
            return set()
        found.update(range(low, high + 1))
    return found


def _number(spec: Field, value: str) -> int | None:
    """A value of the field as a number, or None when it is not one of the field's."""
    if _is_number(value) and len(value) <= 3 and spec.low <= int(value) <= spec.high:
        return int(value)
    return spec.low + spec.names.index(value.upper()) if value.upper() in spec.names else None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _shown(token: str) -> str:
    """A token as a message quotes it: numbers plain, text quoted, long ones cut."""
    if _is_number(token) and len(token) <= _SHOWN:
        return token
    return repr(token if len(token) <= _SHOWN else token[:_SHOWN] + "...")
