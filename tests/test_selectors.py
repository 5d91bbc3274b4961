"""Artifact selectors: the path, the filter language, type conversion, and which artifact a
selector picks among a run's task outputs."""

from __future__ import annotations

from typing import Any

import pytest

from kfpgrpc.selectors import SelectorError, expose, matches, parse_filter, parse_selector

METADATA: dict[str, Any] = {
    "pushed": 1,
    "accuracy": 0.93,
    "name": "model-v7",
    "approved": True,
    "tags": ["golden", "small"],
    "eval": {"f1": 0.88, "split": "test"},
    "blank": "",
    "nothing": None,
    "count_text": "12",
}


@pytest.mark.parametrize(
    ("path", "component", "output", "index", "filter_text"),
    [
        ("Pusher:pushed_model:0[pushed == 1]", "Pusher", "pushed_model", 0, "pushed == 1"),
        ("Pusher:pushed_model", "Pusher", "pushed_model", 0, ""),
        ("Pusher:pushed_model:", "Pusher", "pushed_model", 0, ""),
        ("train-model:model:3", "train-model", "model", 3, ""),
        ("a:b[x > 1]", "a", "b", 0, "x > 1"),
    ],
)
def test_selector_paths_parse(path: str, component: str, output: str, index: int, filter_text: str) -> None:
    selector = parse_selector(path)
    assert (selector.component, selector.output, selector.index, selector.filter_text) == (component, output, index, filter_text)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("Pusher", "must be COMPONENT:OUTPUT[:INDEX][FILTER]"),
        ("", "must be COMPONENT:OUTPUT[:INDEX][FILTER]"),
        ("a:b:c:d", "must be COMPONENT:OUTPUT[:INDEX][FILTER]"),
        ("a:b:x", "the index 'x' must be a whole number"),
        ("a:b:-1", "the index '-1' must be a whole number"),
        ("a:b[pushed ==]", "filter: at column 10: expected a value (a number, a quoted string or a word), found the end of the filter"),
        ("a:b[pushed = 1]", "filter: at column 8: unexpected '='"),
        ("a:b[(x == 1]", "filter: at column 8: expected `)`, found the end of the filter"),
        ("a:b[x == 1 y == 2]", "filter: at column 8: expected `and`, `or` or the end of the filter, found `y`"),
        ("a:b[x is full]", "filter: at column 6: expected `empty`, found `full`"),
        ("a:b[x matches \"(\"]", "filter: at column 11: bad regular expression '(': missing ): ("),
        # RE2 (linear time) has no backreferences or look-around: refused at create time.
        ("a:b[x matches `(a)\\1`]", "filter: at column 11: bad regular expression '(a)\\\\1': invalid escape sequence: \\1 (RE2 syntax"),
        ("a:b[x not matches \"^(?!tmp)\"]", "filter: at column 15: bad regular expression '^(?!tmp)': invalid perl operator: (?!"),
        ("a:b[x matches \"((a{100}){100}){100}\"]", "filter: at column 11: bad regular expression '((a{100}){100}){100}': invalid repetition size"),
        ("a:b[x matches `\\pL{1000}`]", "filter: at column 11: bad regular expression '\\\\pL{1000}': pattern too large"),
        ("a:b[x matches \"" + "(x|y)" * 2000 + "\"]", "must be at most 4096 characters, got 10017"),
        ("a:b[x in (1, 2]", "filter: at column 11: expected `,` or `)`, found the end of the filter"),
        ("a:b[and]", "filter: at column 1: expected a metadata key, a value, `not` or `(`, found `and`"),
        ("a:b[x not == 1]", "filter: at column 3: expected an operator (==, !=, <, <=, >, >=, contains, matches, in, is empty), found `not`"),
        ("a:b[1 == x]", "filter: at column 1: expected a metadata key, found `1`"),
        ("a:b[x == \"open]", "filter: at column 6: unexpected '\"'"),
        ("a:b[name == model-v7]", "filter: at column 14: unexpected '-'"),  # quote words with dashes
    ],
)
def test_bad_selectors_say_what_and_where(path: str, message: str) -> None:
    with pytest.raises(SelectorError) as failure:
        parse_selector(path)
    assert str(failure.value).startswith(message), str(failure.value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # == and != with conversion to the metadata value's type
        ("pushed == 1", True),
        ("pushed == 1.0", True),
        ("pushed == \"1\"", True),
        ("pushed == `1`", True),
        ("pushed != 1", False),
        ("pushed == 2", False),
        ("pushed == yes", False),  # not a number: no match
        ("pushed != yes", True),
        ("approved == true", True),
        ("approved == 1", True),
        ("approved == false", False),
        ("approved == maybe", False),
        ("name == \"model-v7\"", True),
        ("count_text == 12", True),  # a number literal against a string compares as text
        ("count_text == 12.0", True),
        # ordering
        ("accuracy > 0.9", True),
        ("accuracy >= 0.93", True),
        ("accuracy < 0.93", False),
        ("accuracy <= 0.93", True),
        ("name < \"n\"", True),  # strings order as text
        ("accuracy > high", False),  # cannot convert: false
        # nested keys and missing keys
        ("eval.f1 > 0.8", True),
        ("eval.split == test", True),
        ("eval.missing == 1", False),
        ("missing == 1", False),
        ("missing != 1", False),  # a missing key compares false either way
        # contains / in / matches
        ("tags contains golden", True),
        ("tags contains big", False),
        ("tags not contains big", True),
        ("name contains \"v7\"", True),
        ("\"golden\" in tags", True),
        ("\"big\" not in tags", True),
        ("split in eval", True),  # a key of a map
        ("pushed in (0, 1)", True),
        ("pushed in (2, 3)", False),
        ("pushed not in (2, 3)", True),
        ("name matches \"^model-v[0-9]+$\"", True),
        ("name matches \"^tmp\"", False),
        ("name not matches \"^tmp\"", True),
        ("pushed matches \"1\"", False),  # only strings match a pattern
        # emptiness
        ("blank is empty", True),
        ("nothing is empty", True),
        ("missing is empty", True),
        ("name is empty", False),
        ("name is not empty", True),
        ("tags is not empty", True),
        # boolean structure and precedence
        ("pushed == 1 and accuracy > 0.9", True),
        ("pushed == 2 or accuracy > 0.9", True),
        ("pushed == 2 or accuracy > 0.95", False),
        ("not pushed == 2", True),
        ("not (pushed == 1 and accuracy > 0.9)", False),
        ("pushed == 2 and accuracy > 0.9 or approved == true", True),  # and binds tighter than or
        ("pushed == 2 and (accuracy > 0.9 or approved == true)", False),
        ("not not pushed == 1", True),
    ],
)
def test_filters_evaluate_against_metadata(expression: str, expected: bool) -> None:
    assert matches(parse_filter(expression), METADATA) is expected


def test_pushed_equals_one_matches_ints_floats_and_bools_alike() -> None:
    """KFP metadata arrives as JSON: 1, 1.0 and true are the same flag to a user."""
    pushed = parse_filter("pushed == 1")
    assert [matches(pushed, {"pushed": value}) for value in (1, 1.0, True, 0, 0.0, False, "1", "0")] == [
        True, True, True, False, False, False, True, False,
    ]


def _artifact(name: str, uri: str, **metadata: Any) -> dict[str, Any]:
    return {"name": name, "uri": uri, "schema_title": "system.Model", "metadata": metadata}


TASKS = [
    ("train", [_artifact("model", "/a/model-0", pushed=0), _artifact("model", "/a/model-1", pushed=1)]),
    ("push", [_artifact("pushed_model", "/a/pushed", pushed=1)]),
    ("push", [_artifact("pushed_model", "/b/pushed", pushed=0)]),
]


def test_expose_picks_by_task_output_and_index() -> None:
    assert expose(parse_selector("train:model"), TASKS)[0]["uri"] == "/a/model-0"
    assert expose(parse_selector("train:model:1"), TASKS)[0]["uri"] == "/a/model-1"


def test_expose_applies_the_filter_to_the_artifact_at_the_index() -> None:
    assert expose(parse_selector("train:model:0[pushed == 1]"), TASKS) == (
        None, "filter `pushed == 1` matched none of 1 artifact",
    )
    # Two tasks share a name (e.g. in sub-pipelines): the first whose artifact matches wins.
    assert expose(parse_selector("push:pushed_model[pushed == 0]"), TASKS)[0]["uri"] == "/b/pushed"
    assert expose(parse_selector("push:pushed_model[pushed == 1]"), TASKS)[0]["uri"] == "/a/pushed"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("deploy:model", "no task named 'deploy' ran"),
        ("train:metrics", "task 'train' produced no artifact 'metrics' at index 0"),
        ("train:model:2", "task 'train' produced no artifact 'model' at index 2"),
        ("push:pushed_model[pushed == 5]", "filter `pushed == 5` matched none of 2 artifacts"),
    ],
)
def test_expose_says_why_nothing_matched(path: str, reason: str) -> None:
    assert expose(parse_selector(path), TASKS) == (None, reason)
