"""Schedule maths on its own: cron forms, zones, both DST transition days in two real zones,
leap days, bounds and periodic anchors (kfpgrpc/schedule.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from kfpgrpc.clock import MAX_TIME_US, MIN_TIME_US
from kfpgrpc.errors import FieldViolation
from kfpgrpc.schedule import (
    Cron,
    Periodic,
    Schedule,
    count_ticks,
    cron_schedule,
    next_times,
    parse_go_duration,
    periodic_schedule,
    ticks_between,
)

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
FIELD = "recurring_run.trigger.cron_schedule.cron"


def us(text: str) -> int:
    """An ISO 8601 instant with its offset, in microseconds."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def iso(micros: int, zone: ZoneInfo = UTC) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc).astimezone(zone).isoformat()


def cron(expression: str, zone: ZoneInfo = UTC, start: str = "", end: str = "", min_interval: int = 60) -> Schedule:
    schedule, violations = cron_schedule(
        expression, zone, us(start) if start else 0, us(end) if end else 0, us("2026-01-01T00:00:00+00:00"), min_interval, FIELD
    )
    assert not violations and schedule is not None, violations
    return schedule


def upcoming(schedule: Schedule, after: str, count: int, zone: ZoneInfo = UTC) -> list[str]:
    return [iso(t, zone) for t in next_times(schedule, us(after), count)]


def test_five_fields_and_seconds_first_six_fields() -> None:
    assert upcoming(cron("*/15 * * * *"), "2026-05-04T10:07:30+00:00", 2) == [
        "2026-05-04T10:15:00+00:00", "2026-05-04T10:30:00+00:00"]
    assert upcoming(cron("*/5 * * * * *", min_interval=5), "2026-05-04T10:07:58+00:00", 3) == [
        "2026-05-04T10:08:00+00:00", "2026-05-04T10:08:05+00:00", "2026-05-04T10:08:10+00:00"]
    # Day-of-week 1 = Monday; 2026-05-04 is a Monday.
    assert upcoming(cron("0 30 9 * * 1"), "2026-05-04T09:30:00+00:00", 1) == ["2026-05-11T09:30:00+00:00"]


def test_descriptors() -> None:
    after = "2026-05-04T10:07:00+00:00"  # a Monday
    assert upcoming(cron("@hourly"), after, 1) == ["2026-05-04T11:00:00+00:00"]
    assert upcoming(cron("@daily"), after, 1) == upcoming(cron("@midnight"), after, 1) == ["2026-05-05T00:00:00+00:00"]
    assert upcoming(cron("@weekly"), after, 1) == ["2026-05-10T00:00:00+00:00"]  # Sunday
    assert upcoming(cron("@monthly"), after, 1) == ["2026-06-01T00:00:00+00:00"]
    assert upcoming(cron("@yearly"), after, 1) == upcoming(cron("@annually"), after, 1) == ["2027-01-01T00:00:00+00:00"]


def test_every_is_periodic_from_the_start_time_or_creation() -> None:
    every = cron("@every 1h30m", start="2026-05-04T10:00:00+00:00")
    assert upcoming(every, "2026-05-04T10:00:00+00:00", 2) == ["2026-05-04T11:30:00+00:00", "2026-05-04T13:00:00+00:00"]
    anchored_at_creation = cron("@every 90s")
    assert upcoming(anchored_at_creation, "2026-01-01T00:00:00+00:00", 1) == ["2026-01-01T00:01:30+00:00"]
    assert upcoming(cron("@every 2s", min_interval=1), "2026-01-01T00:00:01+00:00", 1) == ["2026-01-01T00:00:02+00:00"]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * *", "needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got 3"),
        ("* * * * * * * *", "needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got 8"),
        ("", "needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got 0"),
        ("0 0 31 2 * 1 extra", "needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got 7"),
        ("@sometimes", "unknown descriptor '@sometimes'; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>"),
        ("@every soon", "@every needs a duration: 'soon' is not a Go duration such as 90s, 15m or 1h30m"),
        ("@every", "@every needs a duration: '' is not a Go duration such as 90s, 15m or 1h30m"),
        ("@every 30s", "@every must be at least 60s"),
        # A zone prefix (robfig/cron's CRON_TZ=, Go's TZ=) belongs in the time_zone field.
        ("CRON_TZ=Europe/Berlin 0 3 * * *", "put the time zone in trigger.cron_schedule.time_zone (an IANA name such as Europe/Berlin), not in the expression"),
        ("TZ=UTC 0 3 * * *", "put the time zone in trigger.cron_schedule.time_zone (an IANA name such as Europe/Berlin), not in the expression"),
        ("cron_tz=UTC @daily", "put the time zone in trigger.cron_schedule.time_zone (an IANA name such as Europe/Berlin), not in the expression"),
        # Each field with its name and range.
        ("61 3 * * *", "minute must be 0-59, got 61"),
        ("0 24 * * *", "hour must be 0-23, got 24"),
        ("0 0 0 * *", "day-of-month must be 1-31, got 0"),
        ("0 0 32 * *", "day-of-month must be 1-31, got 32"),
        ("0 0 * 13 *", "month must be 1-12 or JAN-DEC, got 13"),
        ("0 0 * JANUARY *", "month must be 1-12 or JAN-DEC, got 'JANUARY'"),
        ("0 0 * * 8", "day-of-week must be 0-6 or SUN-SAT, got 8"),
        ("0 0 * * MON-FUN", "day-of-week must be 0-6 or SUN-SAT, got 'FUN'"),
        ("60 0 0 * * *", "second must be 0-59, got 60"),
        ("0 0 1 1 * 2030", "day-of-week must be 0-6 or SUN-SAT, got 2030"),  # no year field: 6 fields start with seconds
        ("0 0 10-70 * *", "day-of-month must be 1-31, got 70"),
        ("0 0 -1 * *", "day-of-month must be 1-31, got '-1'"),
        ("*/0 * * * *", "minute step must be at least 1"),
        ("*/x * * * *", "minute step must be a whole number, got 'x'"),
        ("1,,2 * * * *", "minute has an empty item in its list"),
        ("1-2-3 * * * *", "minute: '1-2-3' is not a value, a range (a-b), a step (*/n or a-b/n) or a list of them (a,b)"),
        ("H * * * *", "minute must be 0-59, got 'H'"),  # croniter's hashed and random values are not cron
        ("R * * * *", "minute must be 0-59, got 'R'"),
        ("0 0 * * 1#6", "day-of-week 1#6: the week number after # must be 1-5"),
        ("0 0 * * SUN#1,MON", "day-of-week cannot mix d#n or Ld items with plain days"),
        ("0 0 1W,15 * *", "day-of-month nW (the weekday nearest day n) must be the field's only item"),
        ("9" * 500 + " * * * *", "minute must be 0-59, got '99999999999999999999...'"),
        # Dates that never come.
        ("0 0 30 2 *", "never fires: day-of-month 30 does not occur in February (at most 29 days)"),
        ("0 0 31 4,6,9,11 *", "never fires: day-of-month 31 does not occur in April, June, September and November (at most 30 days)"),
        ("0 0 0 30-31 FEB *", "never fires: day-of-month 30-31 does not occur in February (at most 29 days)"),
    ],
)
def test_bad_expressions_say_what_is_wrong_in_the_users_terms(expression: str, problem: str) -> None:
    schedule, violations = cron_schedule(expression, UTC, 0, 0, 0, 60, FIELD)
    assert schedule is None
    assert violations == [FieldViolation(FIELD, problem)]


@pytest.mark.parametrize(
    "expression",
    ["0 0 L * *", "0 0 15W * *", "0 0 * * 1#2", "0 0 * * MON#1", "0 0 * * L5", "0 0 ? * 1", "0 0 * * 7", "5-1 * * * *",
     "0 0 * * FRI-MON", "0 0 * jan-mar mon-fri", "0 0 30 2 1", "0 0 29 2 *", "*/100 * * * *", "0 0 1-7 * MON"],
)
def test_croniter_extensions_and_rare_dates_are_accepted(expression: str) -> None:
    cron(expression)


@pytest.mark.parametrize(
    ("expression", "min_interval", "problem"),
    [
        ("* * * * * *", 60, "fires 1s apart (at 00:00:00 and 00:00:01); ticks must be at least 60s apart"),
        # Two ticks a second apart once a minute: sampling a few ticks would miss it.
        ("0,1 * * * * *", 60, "fires 1s apart (at 00:00:00 and 00:00:01); ticks must be at least 60s apart"),
        ("0 0,1 3 * * *", 120, "fires 60s apart (at 03:00:00 and 03:01:00); ticks must be at least 120s apart"),
        ("*/30 * * * * *", 60, "fires 30s apart (at 00:00:00 and 00:00:30); ticks must be at least 60s apart"),
        ("*/5 * * * *", 600, "fires 300s apart (at 00:00:00 and 00:05:00); ticks must be at least 600s apart"),
        ("0 59 23 * * *", 86_401, "fires 86400s apart (at 23:59:00 and 23:59:00 the next day); ticks must be at least 86401s apart"),
        # The closest ticks can be a day's last and the next day's first.
        ("0 0,59 0,23 * * *", 120, "fires 60s apart (at 23:59:00 and 00:00:00 the next day); ticks must be at least 120s apart"),
    ],
)
def test_the_minimum_interval_holds_for_cron_too(expression: str, min_interval: int, problem: str) -> None:
    schedule, violations = cron_schedule(expression, UTC, 0, 0, 0, min_interval, FIELD)
    assert (schedule, violations) == (None, [FieldViolation(FIELD, problem)])


@pytest.mark.parametrize(
    ("expression", "min_interval"),
    [("0 * * * * *", 60), ("*/30 * * * * *", 30), ("0,1 * * * * *", 1), ("0 0,59 0,23 * * 1", 120),
     ("0 0,59 0,23 1,15 * *", 3540), ("*/5 * * * *", 300), ("0 0 * * 1", 7 * 86_400)],
)
def test_schedules_as_sparse_as_the_minimum_interval_pass(expression: str, min_interval: int) -> None:
    cron(expression, min_interval=min_interval)


def test_cron_fields_are_read_in_the_schedule_zone() -> None:
    nine_in_berlin = cron("0 9 * * *", BERLIN)
    assert upcoming(nine_in_berlin, "2026-01-10T00:00:00+00:00", 1) == ["2026-01-10T08:00:00+00:00"]  # CET
    assert upcoming(nine_in_berlin, "2026-07-10T00:00:00+00:00", 1) == ["2026-07-10T07:00:00+00:00"]  # CEST


# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # Spring forward: a time in the gap fires once, at the first instant after it, then as usual.
        (NEW_YORK, "30 2 * * *", "2026-03-07T12:00:00-05:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        (BERLIN, "30 2 * * *", "2026-03-28T12:00:00+01:00",
         ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        # Fall back: a repeated time fires once, at its first occurrence.
        (NEW_YORK, "30 1 * * *", "2026-10-31T12:00:00-04:00",
         ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        (BERLIN, "30 2 * * *", "2026-10-24T12:00:00+02:00",
         ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        (BERLIN, "0 15 2 * * *", "2026-10-25T01:00:00+02:00",  # seconds-first form, same rule
         ["2026-10-25T02:15:00+02:00", "2026-10-26T02:15:00+01:00"]),
        # Hourly or finer follows elapsed time: both passes of the repeated hour fire.
        (NEW_YORK, "0 * * * *", "2026-11-01T00:30:00-04:00",
         ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
        (BERLIN, "*/30 * * * *", "2026-10-25T01:45:00+02:00",
         ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
          "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]),
        # ...and skips the hour that does not exist.
        (BERLIN, "*/30 * * * *", "2026-03-29T01:15:00+01:00",
         ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]),
    ],
)
def test_dst_transition_days(zone: ZoneInfo, expression: str, after: str, expected: list[str]) -> None:
    assert upcoming(cron(expression, zone), after, len(expected), zone) == expected


def test_leap_days() -> None:
    leap = cron("0 0 29 2 *")
    assert upcoming(leap, "2026-01-01T00:00:00+00:00", 2) == ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    month_ends = cron("0 12 28-29 2 *")
    assert upcoming(month_ends, "2027-02-27T00:00:00+00:00", 2) == ["2027-02-28T12:00:00+00:00", "2028-02-28T12:00:00+00:00"]
    yearly_periodic = Periodic(366 * 86_400_000_000, us("2028-01-01T00:00:00+00:00"))
    assert upcoming(yearly_periodic, "2028-01-01T00:00:00+00:00", 1) == ["2029-01-01T00:00:00+00:00"]


def test_start_and_end_bound_the_ticks_inclusively() -> None:
    bounded = cron("0 * * * *", start="2026-05-04T10:00:00+00:00", end="2026-05-04T12:00:00+00:00")
    assert upcoming(bounded, "2026-05-01T00:00:00+00:00", 10) == [
        "2026-05-04T10:00:00+00:00", "2026-05-04T11:00:00+00:00", "2026-05-04T12:00:00+00:00"]
    assert bounded.next_after(us("2026-05-04T12:00:00+00:00")) is None


def test_periodic_ticks_are_anchor_plus_whole_intervals() -> None:
    schedule, violations = periodic_schedule(
        60, us("2026-05-04T10:00:00+00:00"), us("2026-05-04T10:03:00+00:00"), 0, 60, "interval_second"
    )
    assert not violations and schedule is not None
    assert upcoming(schedule, "2026-05-04T09:00:00+00:00", 1) == ["2026-05-04T10:01:00+00:00"]  # k >= 1
    assert upcoming(schedule, "2026-05-04T10:01:59+00:00", 5) == ["2026-05-04T10:02:00+00:00", "2026-05-04T10:03:00+00:00"]
    assert iso(schedule.next_after(us("2026-05-04T10:01:00+00:00")) or 0) == "2026-05-04T10:02:00+00:00"
    too_fast, violations = periodic_schedule(30, 0, 0, 0, 60, "interval_second")
    assert too_fast is None and violations[0].description == "must be at least 60, got 30"


def test_ticks_between_is_half_open_and_limited() -> None:
    hourly = cron("0 * * * *")
    ticks = ticks_between(hourly, us("2026-05-04T10:00:00+00:00"), us("2026-05-04T13:00:00+00:00"), limit=100)
    assert [iso(t) for t in ticks] == ["2026-05-04T11:00:00+00:00", "2026-05-04T12:00:00+00:00", "2026-05-04T13:00:00+00:00"]
    assert len(ticks_between(hourly, 0, us("2026-05-04T13:00:00+00:00"), limit=5)) == 5


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("1.5h", 5400), ("2h0m30s", 7230), ("1500ms", 1.5)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == seconds * 1_000_000


@pytest.mark.parametrize("text", ["", "5", "1x", "h", "1h 30m", "-5m"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def enumerated(schedule: Schedule, after: int, until: int) -> list[int]:
    """Ticks one next_after at a time: what the fast walk must reproduce."""
    ticks: list[int] = []
    while (tick := schedule.next_after(ticks[-1] if ticks else after)) is not None and tick <= until:
        ticks.append(tick)
    return ticks


# Days around UTC-offset changes: DST both ways, changes at midnight (Havana, Santiago),
# a 30-minute change (Lord Howe) and a whole day skipped (Apia, 2011-12-30; croniter is slow
# there, so fewer expressions).
CHANGES = [
    ("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("America/Havana", "2026-03-08"), ("America/Havana", "2026-11-01"),
    ("America/Santiago", "2026-04-05"), ("America/Santiago", "2026-09-06"),
    ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
    ("UTC", "2026-03-08"),
]
EXPRESSIONS = ["*/30 * * * *", "15,45 * * * *", "15,45 0-3,22-23 * * *", "30 2 * * *", "0 0 * * *", "0 30 1 * * *",
               "30 */20 * * * *", "0 0 1,2 * * *", "59 23 * * 0,1,6", "0 0 * * 0-7"]


@pytest.mark.parametrize(
    ("zone", "day", "expression"),
    [(zone, day, expression) for zone, day in CHANGES for expression in EXPRESSIONS]
    + [("Pacific/Apia", "2011-12-30", expression) for expression in ("15,45 0-3,22-23 * * *", "0 0 * * *", "59 23 * * 0,1,6")],
)
def test_the_fast_walk_over_ticks_agrees_with_next_after(zone: str, day: str, expression: str) -> None:
    """Ranges are walked day by day (croniter only next to an offset change): the same ticks
    as asking croniter one tick at a time."""
    schedule = cron(expression, ZoneInfo(zone), min_interval=1)
    middle = us(f"{day}T12:00:00+00:00")
    after, until = middle - 3 * 86_400_000_000 + 1234, middle + 3 * 86_400_000_000
    expected = enumerated(schedule, after, until)
    assert list(schedule.between(after, until)) == expected
    assert schedule.latest(after, until) == expected[-1]
    assert ticks_between(schedule, after, until, 7) == expected[:7]
    for cut in expected[::29]:  # every bound falls somewhere: on a tick, next to one
        assert list(schedule.between(cut - 1, cut + 3_600_000_000)) == [t for t in expected if cut - 1 < t <= cut + 3_600_000_000]
        assert schedule.latest(after, cut) == cut


@pytest.mark.parametrize(
    ("expression", "zone", "start", "end"),
    [
        ("0 0 L * *", UTC, "", ""), ("0 0 15W * *", BERLIN, "", ""), ("0 0 * * 1#5", NEW_YORK, "", ""), ("0 0 * * L5", UTC, "", ""),
        ("0 0 29 2 *", UTC, "", ""), ("0 0 13 * 5", BERLIN, "", ""), ("30 2 * * *", NEW_YORK, "2025-06-01T00:00:00+00:00", "2027-06-01T00:00:00+00:00"),
    ],
)
def test_the_walk_agrees_over_years_with_day_extensions_and_bounds(expression: str, zone: ZoneInfo, start: str, end: str) -> None:
    schedule = cron(expression, zone, start, end)
    after, until = us("2024-01-01T00:00:00+00:00"), us("2028-12-31T00:00:00+00:00")
    expected = enumerated(schedule, after, until)
    assert list(schedule.between(after, until)) == expected and expected
    assert schedule.latest(after, until) == expected[-1]


def test_the_walk_reaches_back_centuries_and_counts_with_a_limit() -> None:
    daily = cron("0 0 * * *", BERLIN)
    after, until = us("1600-01-01T00:00:00+00:00"), us("2026-05-04T10:00:00+00:00")
    assert count_ticks(daily, after, until, 100_001) == 100_001
    days = (date(2026, 5, 4) - date(1900, 1, 2)).days + 1  # Berlin's 1900-01-01 began before 00:00 UTC
    assert count_ticks(daily, us("1900-01-01T00:00:00+00:00"), until, 100_001) == days
    assert iso(daily.latest(after, until) or 0, BERLIN) == "2026-05-04T00:00:00+02:00"
    first = next(daily.between(after, until))
    assert iso(first, BERLIN) == "1600-01-02T00:00:00+00:53:28"  # Berlin's local mean time before zones


def test_periodic_without_a_start_extends_back_before_its_anchor() -> None:
    """Its anchor is the creation time; backfills reach before it on the same grid."""
    anchor = us("2026-05-04T10:07:00+00:00")
    created_at, violations = periodic_schedule(3600, 0, 0, anchor, 60, "interval_second")
    assert not violations and created_at is not None
    ticks = ticks_between(created_at, us("2026-05-04T05:00:00+00:00"), anchor - 1, 10)
    assert [iso(t) for t in ticks] == [f"2026-05-04T{h:02d}:07:00+00:00" for h in range(5, 10)]
    assert iso(created_at.next_after(anchor) or 0) == "2026-05-04T11:07:00+00:00"
    started, _ = periodic_schedule(3600, anchor, 0, anchor, 60, "interval_second")
    assert started is not None and ticks_between(started, 0, anchor + 3600_000_000, 10) == [anchor + 3600_000_000]
    assert started.latest(0, anchor + 3599_000_000) is None


@pytest.mark.parametrize(
    "expression",
    ["0,1 * * * * *", "*/7 */5 * * * *", "0 0,59 0,23 * * *", "10,20 5 3,17 * * *", "0 0 * * 1,2", "30 59 23 * * 1,2",
     "0 0 12 * * 1,3", "45 */20 9-17 * * MON-FRI", "0 0 1,2 * * *", "5 4 * * *"],
)
def test_the_closest_ticks_are_found_without_enumerating(expression: str) -> None:
    schedule = cron(expression, min_interval=1)
    assert isinstance(schedule, Cron)
    ticks = ticks_between(schedule, us("2026-01-01T00:00:00+00:00"), us("2026-01-22T00:00:00+00:00"), 10**6)
    assert schedule.closest_ticks[0] == min(b - a for a, b in zip(ticks, ticks[1:]))


@pytest.mark.parametrize("zone", [UTC, BERLIN, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Pago_Pago")])
def test_the_walk_agrees_at_the_ends_of_time(zone: ZoneInfo) -> None:
    """The day walk looks a day beyond its range: the first and last days go tick by tick.
    (Whole seconds: croniter's float timestamps lose microseconds near year 9999.)"""
    schedule = cron("0 */6 * * *", zone)
    day = 86_400_000_000
    for after, until in [(MIN_TIME_US, MIN_TIME_US + 8 * day), (MAX_TIME_US + 1 - 8 * day - 3_600_000_000, MAX_TIME_US)]:
        expected = enumerated(schedule, after, until)
        assert list(schedule.between(after, until)) == expected and len(expected) >= 20
        assert schedule.latest(after, until) == expected[-1]
