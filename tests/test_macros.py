"""Macro expansion in run parameters (kfpgrpc/macros.py): every macro, Go layouts against what
Go's time.Format prints, the strftime form, nesting, text that is not a macro, and the
violations reported at create/update time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from kfpgrpc.macros import MacroContext, expand, macro_violations

FIELD = "recurring_run.runtime_config.parameters"
RUN_ID = "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e"


def us(text: str) -> int:
    """An ISO 8601 instant with its offset, in microseconds."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


# A Monday morning tick with microseconds, and the run created half a minute later.
CONTEXT = MacroContext(
    scheduled_time_us=us("2026-05-04T10:07:30.123456+00:00"),
    current_time_us=us("2026-05-04T10:08:01+00:00"),
    index=3,
    run_id=RUN_ID,
)


def at(scheduled: str) -> MacroContext:
    return MacroContext(us(scheduled), CONTEXT.current_time_us, CONTEXT.index, CONTEXT.run_id)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[ScheduledTime]]", "20260504100730"),
        ("[[CurrentTime]]", "20260504100801"),
        ("[[ScheduledTime.2006-01-02]]", "2026-05-04"),
        ("[[CurrentTime.15-04-05]]", "10-08-01"),
        ("{{$.scheduledTime.strftime('%Y-%m-%d')}}", "2026-05-04"),
        ("{{$.currentTime.strftime('%H:%M:%S')}}", "10:08:01"),
        ("[[Index]]", "3"),
        ("[[RunUUID]]", RUN_ID),
    ],
)
def test_every_macro(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


# Expected values are what Go's time.Format prints for the same instant in UTC.
@pytest.mark.parametrize(
    ("scheduled", "layout", "expected"),
    [
        # Go's predefined layouts
        ("2026-05-04T10:07:30.123456+00:00", "2006-01-02T15:04:05Z07:00", "2026-05-04T10:07:30Z"),  # RFC3339
        ("2026-05-04T10:07:30.123456+00:00", "2006-01-02T15:04:05.999999999Z07:00", "2026-05-04T10:07:30.123456Z"),
        ("2026-05-04T10:07:30+00:00", "2006-01-02T15:04:05.999999999Z07:00", "2026-05-04T10:07:30Z"),  # .999: no zeros
        ("2026-05-04T10:07:30+00:00", "3:04PM", "10:07AM"),  # Kitchen
        ("2026-05-04T15:04:05+00:00", "3:04PM", "3:04PM"),
        ("2026-05-04T00:05:00+00:00", "03:04pm", "12:05am"),  # midnight is 12 AM
        ("2026-05-04T12:00:00+00:00", "3PM", "12PM"),  # noon is 12 PM
        ("2026-05-04T10:07:30+00:00", "Mon, 02 Jan 2006 15:04:05 MST", "Mon, 04 May 2026 10:07:30 UTC"),  # RFC1123
        ("2026-05-04T10:07:30+00:00", "Mon, 02 Jan 2006 15:04:05 -0700", "Mon, 04 May 2026 10:07:30 +0000"),
        ("2026-05-04T10:07:30+00:00", "Monday, 02-Jan-06 15:04:05 MST", "Monday, 04-May-26 10:07:30 UTC"),  # RFC850
        ("2026-05-04T10:07:30+00:00", "Mon Jan _2 15:04:05 2006", "Mon May  4 10:07:30 2026"),  # ANSIC
        ("2026-11-14T10:07:30+00:00", "Mon Jan _2 15:04:05 2006", "Sat Nov 14 10:07:30 2026"),
        ("2026-05-04T10:07:30.123456+00:00", "Jan _2 15:04:05.000", "May  4 10:07:30.123"),  # StampMilli
        ("2026-05-04T10:07:30.123456+00:00", "Jan _2 15:04:05.000000000", "May  4 10:07:30.123456000"),  # StampNano
        # numbers without padding, long names, day of year
        ("2026-05-04T10:07:30+00:00", "January 2, 2006", "May 4, 2026"),
        ("2026-09-05T08:07:06+00:00", "1/2/06 3:4:5 pm", "9/5/26 8:7:6 am"),
        ("2026-05-04T10:07:30+00:00", "002|__2", "124|124"),
        ("2026-01-05T10:07:30+00:00", "002|__2", "005|  5"),
        ("2028-12-31T10:07:30+00:00", "2006.002", "2028.366"),  # leap year
        ("2026-05-04T10:07:30+00:00", "Monday Mon", "Monday Mon"),
        ("2026-05-10T10:07:30+00:00", "Monday Mon", "Sunday Sun"),
        # fractional seconds: cut, not rounded; comma or point; trailing zeros kept or dropped
        ("2026-05-04T10:07:30.987654+00:00", "05.0", "30.9"),
        ("2026-05-04T10:07:30.123456+00:00", "05,000", "30,123"),
        ("2026-05-04T10:07:30.120000+00:00", "05.999999", "30.12"),
        ("2026-05-04T10:07:30.123456+00:00", "05.000000", "30.123456"),
        # zones: every time is UTC
        ("2026-05-04T10:07:30+00:00", "MST|Z0700|Z07:00|Z07|Z070000|Z07:00:00", "UTC|Z|Z|Z|Z|Z"),
        ("2026-05-04T10:07:30+00:00", "-0700|-07:00|-07|-070000|-07:00:00", "+0000|+00:00|+00|+000000|+00:00:00"),
        # literal text around and between elements
        ("2026-05-04T10:07:30+00:00", "run-2006-01-02 at 15h", "run-2026-05-04 at 10h"),
        ("2026-05-04T10:07:30+00:00", "year=2006/month=01/day=02", "year=2026/month=05/day=04"),
        ("2026-05-04T10:07:30+00:00", "Month 01, Janet", "Month 05, Janet"),  # Mon, Jan before a lower-case letter
        ("2026-05-04T10:07:30+00:00", "snapshot_2006", "snapshot_2026"),  # "_2006" is "_" then the year
        ("2026-05-04T10:07:30+00:00", "v1-beta", "v5-beta"),  # as in Go, a 1 is the month wherever it stands
    ],
)
def test_go_layouts(scheduled: str, layout: str, expected: str) -> None:
    assert expand(f"[[ScheduledTime.{layout}]]", at(scheduled)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{$.scheduledTime.strftime('%Y-%m-%d')}}", "2026-05-04"),
        ('{{$.scheduledTime.strftime("%Y-%m-%d")}}', "2026-05-04"),
        ("{{ $.scheduledTime.strftime( '%d/%m/%y' ) }}", "04/05/26"),
        ("{{$.scheduledTime.strftime('%Y-%m-%dT%H:%M:%S.%f%z %Z')}}", "2026-05-04T10:07:30.123456+0000 UTC"),
        ("{{$.scheduledTime.strftime('%A %j %G-W%V-%u 100%%')}}", "Monday 124 2026-W19-1 100%"),
        ("{{$.currentTime.strftime(\"it's %I:%M %p\")}}", "it's 10:08 AM"),
        ("{{$.currentTime.strftime('')}}", ""),
    ],
)
def test_strftime_form(text: str, expected: str) -> None:
    assert expand(text, CONTEXT) == expected


def test_several_macros_in_one_string() -> None:
    text = "gs://bucket/[[ScheduledTime.2006/01/02]]/[[Index]]-[[RunUUID]]@{{$.currentTime.strftime('%H%M')}} [[Index]]"
    assert expand(text, CONTEXT) == f"gs://bucket/2026/05/04/3-{RUN_ID}@1008 3"


def test_lists_and_dict_values_are_expanded_and_keys_kept() -> None:
    value = {"when": ["[[ScheduledTime.2006]]", {"[[Index]]": "[[Index]]", "n": 7}], "id": "[[RunUUID]]"}
    assert expand(value, CONTEXT) == {"when": ["2026", {"[[Index]]": "3", "n": 7}], "id": RUN_ID}
    assert value["when"][0] == "[[ScheduledTime.2006]]"  # the input is not changed


@pytest.mark.parametrize("value", [0, 3.5, True, False, None, [], {}, [1, None, 2.0]])
def test_non_string_values_are_returned_as_they_are(value: Any) -> None:
    assert expand(value, CONTEXT) == value


@pytest.mark.parametrize(
    "text",
    [
        "plain text",
        "[[1, 2], [3, 4]]",  # JSON in a string parameter
        '[["a", "b"]]',
        "[[Index]",  # never closed
        "{{$.inputs.parameters['x']}}",  # a KFP placeholder, not ours
        "{{ workflow.name }} and {{$}}",
        "{{$.scheduledTime",  # looks like ours but is not closed: a violation (below), kept as text here
        "[[Scheduledtime]]",  # unknown: a violation (below), kept as text here
        "{{$.scheduledTime.strftime('%Q')}}",
    ],
)
def test_text_that_is_no_macro_is_left_alone(text: str) -> None:
    assert expand(text, CONTEXT) == text


def test_one_pass_from_left_to_right() -> None:
    assert expand("[[[Index]]]", CONTEXT) == "[3]"
    # What a macro prints is not scanned again.
    assert expand("{{$.scheduledTime.strftime('[[Index]]')}}", CONTEXT) == "[[Index]]"
    # Like KFP, a layout ends at the first ]].
    assert expand("[[ScheduledTime.2006]]]]", CONTEXT) == "2026]]"


def test_expand_depends_on_the_context_only() -> None:
    value = {
        "a": "[[ScheduledTime]] [[CurrentTime.15:04:05.000]] [[Index]] [[RunUUID]]",
        "b": ["{{$.currentTime.strftime('%H%M%S')}}"],
    }
    same = MacroContext(CONTEXT.scheduled_time_us, CONTEXT.current_time_us, CONTEXT.index, CONTEXT.run_id)
    assert expand(value, CONTEXT) == expand(value, same) == expand(value, CONTEXT)
    epoch = MacroContext(scheduled_time_us=0, current_time_us=0, index=1, run_id="r")
    # No wall clock: [[CurrentTime]] is the context's time, here the epoch.
    text = "[[ScheduledTime]] [[CurrentTime]] [[Index]] [[RunUUID]]"
    assert expand(text, epoch) == "19700101000000 19700101000000 1 r"


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("[[Scheduledtime]]", "unknown macro [[Scheduledtime]] (did you mean [[ScheduledTime]]?); known: [[Sched"),
        ("[[currenttime.2006]]", "unknown macro [[currenttime.2006]] (did you mean [[CurrentTime.2006]]?)"),
        ("[[ Index ]]", "unknown macro [[ Index ]] (did you mean [[Index]]?)"),
        ("[[Tomorrow]]", "unknown macro [[Tomorrow]]; known: [[ScheduledTime]], [[CurrentTime]]"),
        ("[[Index.2006]]", "[[Index.2006]]: [[Index]] takes no layout"),
        ("[[RunUUID.x]]", "[[RunUUID.x]]: [[RunUUID]] takes no layout"),
        ("[[ScheduledTime.yyyy-MM-dd]]", "the Go layout 'yyyy-MM-dd' has no element of the reference time"),
        ("[[CurrentTime.]]", "the Go layout '' has no element of the reference time"),
        ("[[ScheduledTime.%Y-%m-%d]]", "[[ScheduledTime.%Y-%m-%d]]: %Y is a strftime directive"),
        ("{{$.scheduledTime.strftime('%Y-%Q')}}", "%Q is not a strftime directive"),
        ("{{$.scheduledTime.strftime('%-d')}}", "%- is not a strftime directive"),
        ("{{$.currentTime.strftime('100%')}}", "the format ends with a lone %"),
        ("{{$.scheduledTime.strftime(%Y)}}", "malformed time macro {{$.scheduledTime.strftime(%Y)}}; write"),
        ("{{$.scheduledTime.strftime('%Y'}}", "malformed time macro {{$.scheduledTime.strftime('%Y'}}"),
        ("{{$.scheduledTime.strftime('%Y\")}}", "malformed time macro"),
        ("{{$.scheduledTime}}", "malformed time macro {{$.scheduledTime}}"),
        ("{{$.ScheduledTime.strftime('%Y')}}", "malformed time macro {{$.ScheduledTime.strftime('%Y')}}"),
        ("{{$.runTime.strftime('%Y')}}", "malformed time macro {{$.runTime.strftime('%Y')}}"),
        ("at {{$.currentTime.strftime('%Y')", "malformed time macro {{$.currentTime.strftime('%Y'); write"),
    ],
)
def test_bad_macros_are_violations_naming_field_and_macro(text: str, description: str) -> None:
    violations = macro_violations({"when": text}, FIELD)
    assert [v.field for v in violations] == [f"{FIELD}.when"]
    assert description in violations[0].description


def test_violations_cover_nested_strings_and_every_bad_macro() -> None:
    parameters = {
        "fine": ["[[Index]]", {"k": "{{$.scheduledTime.strftime('%Y')}}"}, 3, None],
        "nested": {"list": ["x", "[[Indx]]"], "other": {"deep": "[[ScheduledTime.%d]] [[Bad]]"}},
        "number": 2.0,
    }
    violations = macro_violations(parameters, FIELD)
    assert [v.field for v in violations] == [f"{FIELD}.nested"] * 3
    descriptions = [v.description for v in violations]
    assert "[[Indx]]" in descriptions[0] and "%d" in descriptions[1] and "[[Bad]]" in descriptions[2]


def test_a_long_malformed_macro_is_quoted_shortened() -> None:
    (violation,) = macro_violations({"p": "{{$.scheduledTime " + "x" * 500}, FIELD)
    assert violation.description.startswith("malformed time macro {{$.scheduledTime xxx")
    assert len(violation.description) < 200


@pytest.mark.parametrize(
    "value",
    [
        "[[ScheduledTime]] [[CurrentTime.2006-01-02T15:04:05Z07:00]] [[Index]] [[RunUUID]]",
        "{{$.scheduledTime.strftime('%Y')}} {{$.currentTime.strftime(\"%H\")}}",
        "[[1, 2]] {{$.inputs.parameters['x']}} {{ other }}",
        ["[[Index]]", {"k": "[[RunUUID]]"}],
        7,
    ],
)
def test_good_macros_and_other_text_are_no_violations(value: Any) -> None:
    assert macro_violations({"p": value}, FIELD) == []
