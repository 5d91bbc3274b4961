"""KFP's CEL (kfpgrpc.executor.cel) over every condition and selector the kfp SDK compiles.

The conditions and selectors are taken from real pipelines compiled by the SDK
(tests/pipelines.py: CEL_PIPELINES and condition-quirks); the expected results follow CEL's
semantics as KFP's driver applies them (backend/src/v2/expression/expression.go): each input is
a google.protobuf.Value, so numbers are doubles, `int()` truncates, strings compare by code
point, and `==` between different types is false.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kfpgrpc.executor.cel import (
    MAX_EXPRESSION_LENGTH,
    CelError,
    compile_condition,
    compile_selector,
    select,
)

Spec = dict[str, Any]

INT = "int(inputs.parameter_values['pipelinechannel--make-int-Output'])"
TEXT = "inputs.parameter_values['pipelinechannel--text']"
N = "pipelinechannel--make-int-Output"
T = "pipelinechannel--text"


def no_key(name: str) -> str:
    return f'failed: no such key: "{name}"'


# Each condition the SDK compiles for CEL_PIPELINES -> [(parameter values, result)]; a result
# that is a string is the problem of the CelError raised.
CONDITIONS: dict[str, list[tuple[dict[str, Any], bool | str]]] = {
    # dsl.If(n.output > 5): int(7.0) > 5; int() truncates towards zero.
    f"{INT} > 5": [
        ({N: 7}, True), ({N: 6}, True), ({N: 5}, False), ({N: -7}, False), ({N: 5.9}, False),
        ({N: 6.0}, True), ({N: "7"}, True),  # int() of a string parses it
        ({N: "seven"}, "failed: cannot convert string to int"),
        ({N: None}, "failed: no such overload: int applied to (null_type)"),
        ({}, no_key(N)),
    ],
    # dsl.Elif(n.output == 5): the negation of the If, and its own comparison.
    f"!({INT} > 5) && {INT} == 5": [({N: 7}, False), ({N: 5}, True), ({N: 5.5}, True), ({N: 4}, False)],
    # dsl.Else(): the negations of both.
    f"!({INT} > 5) && !({INT} == 5)": [({N: 7}, False), ({N: 5}, False), ({N: 4}, True), ({N: -1}, True)],
    # dsl.If(text == 'heads') and dsl.Condition(text == 'heads'): case-sensitive string equality.
    f"{TEXT} == 'heads'": [
        ({T: "heads"}, True), ({T: "tails"}, False), ({T: "Heads"}, False), ({T: ""}, False),
        ({T: 1}, False),  # a number equals no string
        ({T: "heads", "pipelinechannel--other": [1]}, True),  # other inputs do not matter
    ],
    f"!({TEXT} == 'heads')": [({T: "heads"}, False), ({T: "tails"}, True)],
    f"!({TEXT} == 'heads') && {TEXT} == 'tails'": [({T: "tails"}, True), ({T: "heads"}, False), ({T: "edge"}, False)],
    f"!({TEXT} == 'heads') && !({TEXT} == 'tails')": [({T: "edge"}, True), ({T: "heads"}, False), ({T: "tails"}, False)],
    # n.output >= threshold: both channels are NUMBER_INTEGER, both wrapped in int().
    f"{INT} >= int(inputs.parameter_values['pipelinechannel--threshold'])": [
        ({N: 7, "pipelinechannel--threshold": 5}, True),
        ({N: 5, "pipelinechannel--threshold": 5}, True),
        ({N: 4, "pipelinechannel--threshold": 5}, False),
        ({N: 7}, no_key("pipelinechannel--threshold")),
    ],
    # f.output < ratio: two NUMBER_DOUBLE channels, compared as doubles.
    "inputs.parameter_values['pipelinechannel--make-float-Output'] < inputs.parameter_values['pipelinechannel--ratio']": [
        ({"pipelinechannel--make-float-Output": 0.25, "pipelinechannel--ratio": 0.5}, True),
        ({"pipelinechannel--make-float-Output": 0.5, "pipelinechannel--ratio": 0.5}, False),
        ({"pipelinechannel--make-float-Output": 0.75, "pipelinechannel--ratio": 0.5}, False),
        ({"pipelinechannel--make-float-Output": 0, "pipelinechannel--ratio": 1}, True),
        (
            {"pipelinechannel--make-float-Output": "0.25", "pipelinechannel--ratio": 0.5},
            "failed: no such overload: < applied to (string, double)",
        ),
    ],
    "inputs.parameter_values['pipelinechannel--make-bool-Output'] == true": [
        ({"pipelinechannel--make-bool-Output": True}, True),
        ({"pipelinechannel--make-bool-Output": False}, False),
        ({"pipelinechannel--make-bool-Output": "true"}, False),  # a string is not a bool
    ],
    # flag == False, and flag == 1, which the SDK inverts to the same string.
    "inputs.parameter_values['pipelinechannel--flag'] == false": [
        ({"pipelinechannel--flag": True}, False),
        ({"pipelinechannel--flag": False}, True),
        ({"pipelinechannel--flag": 0}, False),  # 0 is not false in CEL
    ],
    "inputs.parameter_values['pipelinechannel--make-str-Output'] != 'y'": [
        ({"pipelinechannel--make-str-Output": "x"}, True),
        ({"pipelinechannel--make-str-Output": "y"}, False),
        ({"pipelinechannel--make-str-Output": "Y"}, True),
    ],
    # the nested dsl.If(n.output > 1) inside dsl.Condition
    f"{INT} > 1": [({N: 7}, True), ({N: 1}, False), ({N: 1.99}, False)],
    # s.output > 5 with a STRING channel: the SDK quotes the literal, so strings are compared.
    "inputs.parameter_values['pipelinechannel--make-str-Output'] > '5'": [
        ({"pipelinechannel--make-str-Output": "10"}, False),  # '1' < '5'
        ({"pipelinechannel--make-str-Output": "6"}, True),
        ({"pipelinechannel--make-str-Output": "5"}, False),
        ({"pipelinechannel--make-str-Output": "50"}, True),
        ({"pipelinechannel--make-str-Output": "é"}, True),  # code point order
        (
            {"pipelinechannel--make-str-Output": 10},
            "failed: no such overload: > applied to (double, string)",
        ),
    ],
    # n.output < f (an int channel and a float channel): the int is cast to a double.
    f"double({INT}) < inputs.parameter_values['pipelinechannel--f']": [
        ({N: 3, "pipelinechannel--f": 1.5}, False),
        ({N: 1, "pipelinechannel--f": 1.5}, True),
        ({N: 1.9, "pipelinechannel--f": 1.5}, True),  # int(1.9) is 1
    ],
    f"double({INT}) != 2.5": [({N: 3}, True), ({N: 2}, True), ({N: 2.5}, True)],
    # dsl.If(item.a > 1) inside a loop over dicts: the item's field, selected before.
    "int(inputs.parameter_values['pipelinechannel--loop-item-param-1-subvar-a']) > 1": [
        ({"pipelinechannel--loop-item-param-1-subvar-a": 1.0}, False),
        ({"pipelinechannel--loop-item-param-1-subvar-a": 2.0}, True),
    ],
}

# What the SDK compiles that is not CEL (KFP's driver fails the run): (condition, problem).
BROKEN_CONDITIONS = {
    # n.output == 'abc' (an int channel and a string literal): the cast is quoted as text.
    f"'{INT}' == 'abc'": "is not valid CEL: at column 31: Syntax error: mismatched input 'pipelinechannel' expecting <EOF>",
    # text == "it's": the quote is not escaped.
    f"{TEXT} == 'it's'": (
        "is not valid CEL: at column 57: Syntax error: extraneous input 's' expecting <EOF>;"
        " at column 58: Syntax error: token recognition error at: '''"
    ),
}

# Each selector the SDK compiles for CEL_PIPELINES -> [(value, selected)]; a string result
# starting with "failed" or "gave" is the problem of the CelError raised.
SELECTORS: dict[str, list[tuple[Any, Any]]] = {
    # item.a of a dict item (raw items, or a list parameter/output: a dict or its JSON text)
    'parseJson(string_value)["a"]': [
        ({"a": 1, "b": 10}, 1.0),  # numbers come back as doubles, as in a protobuf Value
        ({"a": 2.5}, 2.5),
        ({"a": "x"}, "x"),
        ({"a": True}, True),
        ({"a": {"b": {"c": [1, "two", None, False]}}}, {"b": {"c": [1.0, "two", None, False]}}),
        ({"a": [3, {"d": 4}]}, [3.0, {"d": 4.0}]),
        ('{"a": 7, "z": 0}', 7.0),  # a string holding JSON is parsed the same way
        ({"b": 1}, 'failed: no such key: "a"'),
        ({"a": None}, "gave null, which KFP cannot pass on as a parameter value"),
        ([1, 2], "failed: Index error: expected integer type, got string"),
        ("not json", "failed: failed to unmarshal JSON: Expecting value: line 1 column 1 (char 0)"),
        ('{"a": NaN}', "failed: failed to unmarshal JSON: invalid character 'N' looking for beginning of value"),
        ('{"a": 1e999}', "failed: failed to unmarshal JSON: number 1e999 is out of the range of a double"),
    ],
    'parseJson(string_value)["b"]': [({"a": 1, "b": 10}, 10.0), ({"a": 2, "b": 20}, 20.0)],
    'parseJson(string_value)["city"]': [({"city": "Lyon"}, "Lyon"), ({"city": "Zürich"}, "Zürich")],
    # a loop over a field of the outer loop's item
    'parseJson(string_value)["xs"]': [({"xs": ["p", "q"]}, ["p", "q"]), ({"xs": []}, []), ({"xs": [1]}, [1.0])],
}

# Selectors KFP's driver accepts beyond what the SDK emits: the Value's fields and its text.
OTHER_SELECTORS: list[tuple[str, Any, Any]] = [
    ("string_value", "text", "text"),
    ("string_value", 5, "5"),
    ("string_value", 2.5, "2.5"),
    ("string_value", 1e-7, "0.0000001"),  # Go's FormatFloat(v, 'f', -1, 64)
    ("string_value", True, "true"),
    ("string_value", None, ""),
    ("string_value", [1, {"b": 2.5, "a": None}], '[1,{"a":null,"b":2.5}]'),
    ("number_value", 3, 3.0),
    ("number_value * 2.0", 1.5, 3.0),
    ("number_value", "3", 'failed: no such attribute: number_value (this value does not set it)'),
    ("bool_value", False, False),
    ("struct_value.a.b", {"a": {"b": "deep"}}, "deep"),
    ("struct_value['a']", {"a": 1}, 1.0),
    ("list_value[1]", ["p", "q"], "q"),
    ("size(list_value)", ["p", "q"], 2.0),
    ("parseJson(string_value)", "[1, 2]", [1.0, 2.0]),
    ("parseJson(string_value)[0]", [["x"]], ["x"]),
    ("b'ab'", "anything", "YWI="),  # bytes become base64 text, as structpb.NewValue does
    ("timestamp('2026-01-01T00:00:00Z')", "x", "gave a datetime, which is not a JSON value"),
    ("{1: 2}", "x", "gave a map with keys that are not strings; a JSON object needs string keys"),
]


def expressions(spec: Spec) -> Iterator[tuple[str, str, str]]:
    """(kind, task path, expression) of every condition and selector of a compiled spec."""
    dags = [("root", spec["root"]["dag"])]
    dags += [(name, component["dag"]) for name, component in spec["components"].items() if "dag" in component]
    for owner, dag in dags:
        for task_name, task in dag["tasks"].items():
            path = f"{owner}.{task_name}"
            if "condition" in task.get("triggerPolicy", {}):
                yield "condition", path, task["triggerPolicy"]["condition"]
            for name, parameter in task.get("inputs", {}).get("parameters", {}).items():
                if "parameterExpressionSelector" in parameter:
                    yield "selector", f"{path}.{name}", parameter["parameterExpressionSelector"]


@pytest.fixture(scope="module")
def emitted(compiled_cel: dict[str, Spec]) -> dict[str, set[str]]:
    """The conditions and selectors the SDK compiled for CEL_PIPELINES and for condition-quirks."""
    found: dict[str, set[str]] = {"condition": set(), "selector": set(), "broken": set()}
    for name, spec in compiled_cel.items():
        for kind, _, expression in expressions(spec):
            found["broken" if name == "condition-quirks" else kind].add(expression)
    return found


def test_every_condition_the_sdk_compiles_has_cases(emitted: dict[str, set[str]]) -> None:
    # A new SDK that compiles conditions differently fails here until its strings have cases.
    assert emitted["condition"] == set(CONDITIONS)
    assert emitted["broken"] == set(BROKEN_CONDITIONS)


def test_every_selector_the_sdk_compiles_has_cases(emitted: dict[str, set[str]]) -> None:
    assert emitted["selector"] == set(SELECTORS)


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [(condition, values, expected) for condition, cases in CONDITIONS.items() for values, expected in cases],
)
def test_condition(condition: str, values: dict[str, Any], expected: bool | str) -> None:
    compiled = compile_condition(condition)
    if isinstance(expected, bool):
        assert compiled.evaluate(values) is expected
    else:
        with pytest.raises(CelError) as caught:
            compiled.evaluate(values)
        assert caught.value.problem == expected
        assert str(caught.value) == f"CEL expression {condition!r} {expected}"


@pytest.mark.parametrize("condition", sorted(BROKEN_CONDITIONS))
def test_the_sdks_broken_conditions_do_not_compile(condition: str) -> None:
    with pytest.raises(CelError) as caught:
        compile_condition(condition)
    assert caught.value.problem == BROKEN_CONDITIONS[condition]
    assert caught.value.expression == condition


@pytest.mark.parametrize(
    ("selector", "value", "expected"),
    [(selector, value, expected) for selector, cases in SELECTORS.items() for value, expected in cases]
    + OTHER_SELECTORS,
)
def test_selector(selector: str, value: Any, expected: Any) -> None:
    if isinstance(expected, str) and expected.startswith(("failed", "gave")):
        with pytest.raises(CelError) as caught:
            select(selector, value)
        assert caught.value.problem == expected
    else:
        selected = select(selector, value)
        assert selected == expected
        assert _types(selected) == _types(expected)  # 1.0, not 1: a Value holds doubles


def _types(value: Any) -> Any:
    """`value` with each leaf replaced by its type, to compare 1.0 with 1 strictly."""
    if isinstance(value, list):
        return [_types(item) for item in value]
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    return type(value)


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("1 == 1 ||", "is not valid CEL: at column 10: Syntax error: mismatched input '<EOF>' expecting"),
        ("inputs.parameter_values['x'] = 1", "is not valid CEL: at column 30: Syntax error: token recognition error at: '= '"),
        ("x == 1", "is not valid CEL: at column 1: undeclared reference to 'x'"),
        (
            "inputs.parameter_value['x'] == 1",
            "is not valid CEL: at column 7: undefined field 'parameter_value' not found in struct 'ml_pipelines.ExecutorInput.Inputs'",
        ),
        ("int(true) > 1", "is not valid CEL: at column 4: found no matching overload for 'int' applied to '(bool)'"),
        ("inputs.parameter_values['x'] > 'a' + 1", "is not valid CEL: at column 36: found no matching overload for '_+_' applied to '(string, int)'"),
        ("1 + 1", "gives an int, never a bool (true or false)"),
        ("'yes'", "gives a string, never a bool (true or false)"),
        ("", "is empty"),
        ("  ", "is empty"),
        ("(" * 33 + "true" + ")" * 33, "is not valid CEL: Expression recursion limit exceeded. limit: 32"),
        ("true || " * 1250 + "true", f"is 10,004 characters long; at most {MAX_EXPRESSION_LENGTH:,} are allowed"),
    ],
    ids=lambda text: text[:40],
)
def test_condition_that_does_not_compile(condition: str, problem: str) -> None:
    with pytest.raises(CelError) as caught:
        compile_condition(condition)
    assert caught.value.problem.startswith(problem)
    assert str(caught.value).startswith("CEL expression ")


@pytest.mark.parametrize(
    ("condition", "values", "problem"),
    [
        # The result must be a bool, as KFP's driver requires ("return type is not bool").
        ("inputs.parameter_values['x']", {"x": "yes"}, 'gave the string "yes", not a bool (true or false)'),
        ("inputs.parameter_values['x']", {"x": 1}, "gave the number 1.0, not a bool (true or false)"),
        ("inputs.parameter_values['x']", {"x": None}, "gave null, not a bool (true or false)"),
        ("inputs.parameter_values['x']", {"x": [True]}, "gave a list, not a bool (true or false)"),
        ("!inputs.parameter_values['x']", {"x": "yes"}, "failed: no such overload: !"),
        ("parseJson(inputs.parameter_values['x']).ok", {"x": 3}, "failed: no such overload: parseJson applied to (double)"),
        ("parseJson(inputs.parameter_values['x']).ok", {"x": "{"}, "failed: failed to unmarshal JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("parseJson(inputs.parameter_values['x']).ok", {"x": '{"ok": 1}'}, "gave the number 1.0, not a bool (true or false)"),
    ],
)
def test_condition_that_does_not_evaluate_to_a_bool(condition: str, values: dict[str, Any], problem: str) -> None:
    with pytest.raises(CelError) as caught:
        compile_condition(condition).evaluate(values)
    assert caught.value.problem == problem


def test_conditions_see_the_executor_inputs_like_kfps_driver() -> None:
    # `inputs` and `outputs` are the ExecutorInput's messages; parameter_values holds Values.
    assert compile_condition("inputs.parameter_values['x'] == 7").evaluate({"x": 7}) is True
    assert compile_condition("inputs.parameter_values['x'] == 7.0").evaluate({"x": 7}) is True
    assert compile_condition("type(inputs.parameter_values['x']) == double").evaluate({"x": 7}) is True
    assert compile_condition("size(inputs.parameter_values) == 2").evaluate({"x": 1, "y": 2}) is True
    assert compile_condition("'y' in inputs.parameter_values").evaluate({"x": 1}) is False
    assert compile_condition("inputs.parameter_values['x'].a == 'b'").evaluate({"x": {"a": "b"}}) is True
    assert compile_condition("inputs.parameter_values['x'][1] == 2").evaluate({"x": [1, 2]}) is True
    assert compile_condition("inputs.parameter_values['x'] == null").evaluate({"x": None}) is True
    assert compile_condition("size(outputs.parameters) == 0 && outputs.output_file == ''").evaluate({}) is True
    assert compile_condition("parseJson(inputs.parameter_values['x']).a == 1").evaluate({"x": '{"a": 1}'}) is True
    # Logical operators are commutative about errors, as in CEL: one side decides.
    assert compile_condition("inputs.parameter_values['missing'] == 1 || true").evaluate({}) is True
    assert compile_condition("false && inputs.parameter_values['missing'] == 1").evaluate({}) is False


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ('parseJson(string_value)["a"', "is not valid CEL: at column 28: Syntax error: missing ']' at '<EOF>'"),
        ("item.a", "is not valid CEL: at column 5: undeclared reference to 'item.a'"),
        ("parseJson(number_value)", "is not valid CEL: at column 10: found no matching overload for 'parseJson' applied to '(double)'"),
    ],
)
def test_selector_that_does_not_compile(selector: str, problem: str) -> None:
    with pytest.raises(CelError) as caught:
        compile_selector(selector)
    assert caught.value.problem == problem


def test_compiled_expressions_are_cached() -> None:
    assert compile_condition(f"{INT} > 5") is compile_condition(f"{INT} > 5")
    assert compile_selector('parseJson(string_value)["a"]') is compile_selector('parseJson(string_value)["a"]')


def test_a_long_expression_is_shortened_in_the_message() -> None:
    condition = "inputs.parameter_values['x'] == '" + "a" * 500 + "'"
    with pytest.raises(CelError) as caught:
        compile_condition(condition).evaluate({})
    assert str(caught.value) == f"CEL expression {condition[:200] + '…'!r} failed: no such key: \"x\""
