"""KFP's CEL: the trigger-policy conditions of tasks and the parameter expression selectors of
task inputs, compiled and evaluated as KFP's driver does (backend/src/v2/expression/expression.go,
cel-go, KFP 2.16/2.17).

- A **condition** (`triggerPolicy.condition`, what `dsl.If`/`Elif`/`Else`/`Condition` compile to)
  sees the executor input's `inputs` and `outputs` messages (`ml_pipelines.ExecutorInput.Inputs` /
  `.Outputs`), type-checked against their proto. `inputs.parameter_values` maps each input name
  to a `google.protobuf.Value`, so every number is a double (the SDK wraps integer channels in
  `int(...)`) and a missing key is an evaluation error. The result must be a bool.
- A **selector** (`parameterExpressionSelector`, what `item.a` of a `ParallelFor` over dicts
  compiles to: `parseJson(string_value)["a"]`) sees the *set* field of one `google.protobuf.Value`
  (`string_value`, `number_value`, `bool_value`, `null_value`, `struct_value`, `list_value`) plus
  `string_value` holding any value's text (a string itself; JSON for a list or object).
- Both have `parseJson(string) -> dyn`, which parses JSON as Go does: every number a double.

The engine is cel-expr-python, the CEL team's wrapper of CEL's C++ implementation: the same
grammar, type checker and runtime semantics as cel-go, hence as KFP. The SDK's broken strings
stay broken as on KFP: `'10' > '5'` compares strings, `flag == 1` compiles to `flag == false`, and
a literal with a quote (`'it's'`) does not parse. One deviation: CEL C++ refuses expressions nested
more than 32 levels deep (cel-go: 250); the SDK's conditions nest a few levels.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cel_expr_python import cel
from google.protobuf import descriptor_pool
from google.protobuf.struct_pb2 import ListValue, Struct

from kfpgrpc.json_values import protojson_numbers
from kfpgrpc.kfp_ir import pipeline_spec_pb2

# Longer expressions are refused: compiling takes about 1 ms per 1,000 characters. An
# If/Elif/Else chain of 120 branches compiles to under 10,000 characters.
MAX_EXPRESSION_LENGTH = 10_000
_CACHE_SIZE = 1024  # compiled expressions kept; a pipeline has few distinct ones
_SHOWN_CHARACTERS = 200  # of an expression, in error messages


class CelError(Exception):
    """A condition or selector that does not compile or does not evaluate.

    `problem` is a phrase to follow the expression's name, e.g. "is not valid CEL: at column 37:
    Syntax error: extraneous input 's' expecting <EOF>" or "failed: no such key: 'x'"; the
    message is the expression (shortened) followed by it.
    """

    def __init__(self, expression: str, problem: str) -> None:
        self.expression = expression
        self.problem = problem
        shown = expression if len(expression) <= _SHOWN_CHARACTERS else expression[:_SHOWN_CHARACTERS] + "…"
        super().__init__(f"CEL expression {shown!r} {problem}")


def _parse_json(text: str) -> Any:
    """CEL's `parseJson(string) -> dyn` as KFP defines it (Go's json.Unmarshal into `any`): every
    number is a double; NaN, Infinity and numbers beyond a double are refused."""
    try:
        return json.loads(text, parse_int=float, parse_float=_finite_float, parse_constant=_no_constant)
    except ValueError as error:
        raise ValueError(f"failed to unmarshal JSON: {error}") from None


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of the range of a double")
    return number


def _no_constant(text: str) -> float:
    raise ValueError(f"invalid character {text[0]!r} looking for beginning of value")


_PARSE_JSON = cel.FunctionDecl(
    "parseJson",
    [cel.Overload("parse_json", return_type=cel.Type.DYN, parameters=[cel.Type.STRING], impl=_parse_json)],
)
_CONDITION_ENV = cel.NewEnv(
    descriptor_pool.Default(),
    variables={
        "inputs": cel.Type(pipeline_spec_pb2.ExecutorInput.Inputs.DESCRIPTOR.full_name),
        "outputs": cel.Type(pipeline_spec_pb2.ExecutorInput.Outputs.DESCRIPTOR.full_name),
    },
    functions=[_PARSE_JSON],
)
_SELECTOR_ENV = cel.NewEnv(
    descriptor_pool.Default(),
    variables={
        "string_value": cel.Type.STRING,
        "number_value": cel.Type.DOUBLE,
        "bool_value": cel.Type.BOOL,
        "null_value": cel.Type.NULL,
        "struct_value": cel.Type(Struct.DESCRIPTOR.full_name),
        "list_value": cel.Type(ListValue.DESCRIPTOR.full_name),
    },
    functions=[_PARSE_JSON],
)
# Environments compile from threads (upload validation runs in one); nothing says that is safe.
_COMPILE_LOCK = threading.Lock()
_EMPTY_OUTPUTS = pipeline_spec_pb2.ExecutorInput.Outputs()


@dataclass(frozen=True, eq=False)
class Condition:
    """A compiled `triggerPolicy.condition`."""

    expression: str
    _program: cel.Expression

    def evaluate(self, parameter_values: Mapping[str, Any]) -> bool:
        """Whether the task runs, given its resolved input parameters (name -> JSON value: None,
        bool, int, float, str, list, dict), as KFP's driver evaluates it (`Expr.Condition`):
        values are seen as google.protobuf.Value, numbers as doubles.

        Raises CelError when evaluation fails (a missing input, `int()` of a non-number, a
        comparison CEL has no overload for) or gives anything but a bool.
        """
        inputs = pipeline_spec_pb2.ExecutorInput.Inputs()
        values = Struct()
        values.update(parameter_values)
        inputs.parameter_values.MergeFrom(values.fields)
        result = self._program.eval(data={"inputs": inputs, "outputs": _EMPTY_OUTPUTS})
        value = _result_value(self.expression, result)
        if not isinstance(value, bool):
            raise CelError(self.expression, f"gave {_describe(value)}, not a bool (true or false)")
        return value


@dataclass(frozen=True, eq=False)
class Selector:
    """A compiled `parameterExpressionSelector`."""

    expression: str
    _program: cel.Expression

    def select(self, value: Any) -> Any:
        """The part of `value` (a JSON value) the selector picks, as KFP's driver computes it
        (`Expr.Select`), converted back to a JSON value as a google.protobuf.Value holds it:
        numbers are floats (`item.a` of {"a": 1} is 1.0), bytes become base64 text.

        Raises CelError when evaluation fails (e.g. the key is missing) or the result is null,
        which KFP cannot pass on either, or is no JSON value (a timestamp, a type).
        """
        result = self._program.eval(data=_selector_variables(value))
        return _to_json(self.expression, _result_value(self.expression, result))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_condition(expression: str) -> Condition:
    """Compile a trigger-policy condition (cached). Raises CelError when it is too long, does not
    parse or type-check (an unknown variable or field, an impossible overload), or can never
    give a bool (KFP would fail every run of the task)."""
    program = _compile(_CONDITION_ENV, expression)
    result_type = program.return_type()
    if result_type != cel.Type.BOOL and result_type != cel.Type.DYN:
        raise CelError(expression, f"gives {_type_name(result_type)}, never a bool (true or false)")
    return Condition(expression, program)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_selector(expression: str) -> Selector:
    """Compile a parameter expression selector (cached). Raises CelError as compile_condition."""
    return Selector(expression, _compile(_SELECTOR_ENV, expression))


def select(expression: str, value: Any) -> Any:
    """`compile_selector(expression).select(value)`."""
    return compile_selector(expression).select(value)


def _compile(env: cel.Env, expression: str) -> cel.Expression:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelError(
            expression,
            f"is {len(expression):,} characters long; at most {MAX_EXPRESSION_LENGTH:,} are allowed",
        )
    if not expression.strip():
        raise CelError(expression, "is empty")
    try:
        with _COMPILE_LOCK:
            return env.compile(expression)
    except RuntimeError as error:  # how cel-expr-python reports every compile error
        raise CelError(expression, f"is not valid CEL: {_compile_problem(str(error))}") from None


# cel-cpp's errors: "INVALID_ARGUMENT: ERROR: <input>:1:37: Syntax error: …\n | <expr>\n | ..^"
# (one ERROR per problem, each with a caret display) and a status suffix " [INVALID_ARGUMENT]".
_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_STATUS_SUFFIX = re.compile(r" \[[A-Z_]+\]$")
_LOCATED = re.compile(r"^ERROR: <input>:(-?\d+):(-?\d+): (.*)$")
_IN_CONTAINER = " (in container '')"


def _compile_problem(text: str) -> str:
    """cel-cpp's compile error as one line: each problem with its column, no caret display."""
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", text.strip()))
    problems = []
    for line in text.splitlines():
        located = _LOCATED.match(line)
        if located is None:
            if not line.startswith(" |"):
                problems.append(line)
            continue
        row, column, message = int(located[1]), int(located[2]), located[3].replace(_IN_CONTAINER, "")
        if column < 0:
            problems.append(message)
        else:
            where = f"at column {column}" if row == 1 else f"at line {row}, column {column}"
            problems.append(f"{where}: {message}")
    return "; ".join(problems) or text


_OPERATORS = {
    "_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
    "_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%", "!_": "!", "-_": "-", "_[_]": "[]",
}
_NO_OVERLOAD = re.compile(r"^No matching overloads found : ([^(]+)(?:\((.*)\))?$")
_NO_KEY = re.compile(r"^Key not found in map : (.*)$")
_UNBOUND = re.compile(r'^No value with name "(.*)" found in Activation$')


def _result_value(expression: str, result: cel.Value) -> Any:
    """The plain Python value of an evaluation result; CelError if evaluation failed."""
    if result.type() == cel.Type.ERROR:
        raise CelError(expression, f"failed: {_evaluation_problem(str(result.value()))}")
    return result.plain_value()


def _evaluation_problem(text: str) -> str:
    """cel-cpp's evaluation error in the words of cel-go (what KFP's users see)."""
    text = _STATUS_PREFIX.sub("", text.strip())
    no_overload = _NO_OVERLOAD.match(text)
    if no_overload:
        function = _OPERATORS.get(no_overload[1], no_overload[1])
        arguments = f" applied to ({no_overload[2]})" if no_overload[2] else ""
        return f"no such overload: {function}{arguments}"
    no_key = _NO_KEY.match(text)
    if no_key:
        return f"no such key: {no_key[1]}"
    unbound = _UNBOUND.match(text)
    if unbound:  # a selector's Value field that is not set
        return f"no such attribute: {unbound[1]} (this value does not set it)"
    return text


def _selector_variables(value: Any) -> dict[str, Any]:
    """The CEL variables of a selector for `value`: its google.protobuf.Value field that is set,
    plus `string_value` = its text (KFP's metadata.PbValueToText)."""
    if value is None:
        return {"null_value": None, "string_value": ""}
    if isinstance(value, bool):
        return {"bool_value": value, "string_value": "true" if value else "false"}
    if isinstance(value, (int, float)):
        return {"number_value": float(value), "string_value": _number_text(float(value))}
    if isinstance(value, str):
        return {"string_value": value}
    text = json.dumps(protojson_numbers(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if isinstance(value, dict):
        struct = Struct()
        struct.update(value)
        return {"struct_value": struct, "string_value": text}
    values = ListValue()
    values.extend(value)
    return {"list_value": values, "string_value": text}


def _number_text(number: float) -> str:
    """A number as Go's strconv.FormatFloat(n, 'f', -1, 64): fixed notation, shortest digits."""
    if number.is_integer():
        return str(int(number))
    return format(Decimal(repr(number)), "f")


def _to_json(expression: str, value: Any) -> Any:
    """A selector's result as the JSON value KFP's driver makes of it (structpb.NewValue)."""
    if value is None:
        raise CelError(expression, "gave null, which KFP cannot pass on as a parameter value")
    return _json_value(expression, value)


def _json_value(expression: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_json_value(expression, item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise CelError(expression, "gave a map with keys that are not strings; a JSON object needs string keys")
        return {key: _json_value(expression, item) for key, item in value.items()}
    raise CelError(expression, f"gave {_describe(value)}, which is not a JSON value")


def _describe(value: Any) -> str:
    """A short phrase for a CEL result in error messages."""
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    return f"a {type(value).__name__}"


def _type_name(cel_type: cel.Type) -> str:
    """A CEL type as a phrase: "an int", "a list(dyn)"."""
    name = cel_type.name().lower()
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
