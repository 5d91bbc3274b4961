"""Schedule maths on its own: cron forms, zones, both DST transition days in two real zones,
leap days, bounds and periodic anchors (kfpgrpc/schedule.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from kfpgrpc.schedule import (
    Periodic,
    Schedule,
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
    assert upcoming(cron("*/5 * * * * *"), "2026-05-04T10:07:58+00:00", 3) == [
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
        ("61 * * * *", "not a valid cron expression"),
        ("* * *", "needs 5 fields"),
        ("* * * * * * * *", "needs 5 fields"),
        ("", "needs 5 fields"),
        ("@sometimes", "unknown descriptor"),
        ("@every soon", "@every needs a duration"),
        ("@every 30s", "@every must be at least 60s"),
        ("0 0 31 2 * 1 extra", "needs 5 fields"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, problem: str) -> None:
    schedule, violations = cron_schedule(expression, UTC, 0, 0, 0, 60, FIELD)
    assert schedule is None
    assert [v.field for v in violations] == [FIELD] and problem in violations[0].description


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
