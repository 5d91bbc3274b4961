"""Artifact selectors: `COMPONENT:OUTPUT[:INDEX][FILTER]` and their filter language (SPEC §5).

COMPONENT is a pipeline task's name, OUTPUT one of its output artifacts, INDEX the element of
that output (default 0; a list output has several). FILTER is a boolean expression on the
artifact's metadata, in the style of HashiCorp go-bexpr (which KFP-Operator uses), plus
ordering comparisons:

    pushed == 1 and (accuracy >= 0.9 or "golden" in tags) and not name matches "^tmp-"

- comparisons `SELECTOR OP VALUE`, OP one of == != < <= > >= contains, `not contains`,
  matches, `not matches` (an RE2 regular expression, searched: linear time in the text, so no
  pattern can stall the server; RE2 has no backreferences or look-around);
- `SELECTOR is empty`, `SELECTOR is not empty` (a missing key is empty);
- `VALUE in SELECTOR`, `VALUE not in SELECTOR` (an element of a list, a substring of a string,
  a key of a map), and `SELECTOR in (VALUE, ...)`, `SELECTOR not in (VALUE, ...)`;
- `and`, `or`, `not`, parentheses; `not` binds tighter than `and`, `and` than `or`.

A SELECTOR is a dotted path into the metadata (`eval.metrics.f1`). A VALUE is a number, a
"double-quoted" or `back-quoted` string, or a bare word. A literal is compared after
conversion to the type of the metadata value it meets (so `pushed == 1` matches 1, 1.0 and
true); a literal that cannot be converted makes the comparison false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import re2

_PATH = re.compile(r"^(?P<component>[^\[\]:]+):(?P<output>[^\[\]:]+)(?::(?P<index>[^\[\]:]*))?(?:\[(?P<filter>.*)\])?$", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]))
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_/]*(?:\.[A-Za-z_][A-Za-z0-9_/]*)*)
    )""",
    re.X,
)
# RE2 instead of `re`: a backtracking engine takes exponential time on patterns like (a+)+$,
# and selectors run on the server's event loop. A smaller memory budget than RE2's default
# 8 MiB bounds each compiled pattern (and its DFA cache): a bigger pattern fails to compile.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is the client's, reported as INVALID_ARGUMENT
_RE2_OPTIONS.max_mem = 1 << 20
# Selectors are parsed at create time and again each time a run ends, on the event loop; KFP
# selectors are a line or two.
MAX_SELECTOR_LENGTH = 4096
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "is", "empty"}
# Parsing and evaluation recurse once per `not` or parenthesis and once per comparison of an
# `and`/`or` chain: these bounds keep both far from Python's recursion limit.
MAX_NESTING = 32
MAX_COMPARISONS = 100
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")


class SelectorError(ValueError):
    """A selector that does not parse; the message says where."""


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, word, op, keyword, end
    text: str
    value: Any
    column: int  # 1-based, within the filter


@dataclass(frozen=True)
class Compare:
    selector: str
    op: str  # ==, !=, <, <=, >, >=, contains, matches, in (SELECTOR in list), has (VALUE in SELECTOR), empty
    literal: Any = None  # a _Token's value, a tuple of them for `in (…)`, a compiled RE2 pattern for `matches`
    negated: bool = False


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Logical:
    op: str  # and, or
    left: Expr
    right: Expr


Expr = Compare | Not | Logical


@dataclass(frozen=True)
class Selector:
    component: str
    output: str
    index: int
    filter_text: str
    filter: Expr | None


def parse_selector(path: str) -> Selector:
    """Parse `COMPONENT:OUTPUT[:INDEX][FILTER]`; raise SelectorError saying what and where."""
    if len(path) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"must be at most {MAX_SELECTOR_LENGTH} characters, got {len(path)}")
    match = _PATH.match(path.strip())
    if match is None:
        raise SelectorError(
            "must be COMPONENT:OUTPUT[:INDEX][FILTER], e.g. `Pusher:pushed_model:0[pushed == 1]`"
            " (COMPONENT and OUTPUT without `:`, `[` or `]`)"
        )
    index_text = match["index"] or "0"
    if not index_text.isdigit():
        raise SelectorError(f"the index {index_text!r} must be a whole number")
    filter_text = match["filter"]
    expression = None
    if filter_text is not None:
        try:
            expression = parse_filter(filter_text)
        except SelectorError as error:
            raise SelectorError(f"filter: {error}") from None
    return Selector(match["component"].strip(), match["output"].strip(), int(index_text), (filter_text or "").strip(), expression)


def parse_filter(text: str) -> Expr:
    parser = _Parser(_tokens(text))
    expression = parser.expression()
    parser.expect_end()
    return expression


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            tokens.append(_Token("end", "", None, position + 1))
            return tokens
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SelectorError(f"at column {position + 1}: unexpected {text[position]!r}")
        kind = match.lastgroup or ""
        raw = match[kind]
        column = match.start(kind) + 1
        if kind == "number":
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
            kind = "string"
        elif kind == "raw":
            value, kind = raw[1:-1], "string"
        elif kind == "word" and raw in _KEYWORDS:
            value, kind = raw, "keyword"
        else:
            value = raw
        tokens.append(_Token(kind, raw, value, column))
        position = match.end()


def _describe(token: _Token) -> str:
    return "the end of the filter" if token.kind == "end" else f"`{token.text}`"


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0  # of `not` and parentheses around the current token
        self._comparisons = 0

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._at + ahead, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        self._at += 1
        return token

    def _is(self, text: str, ahead: int = 0) -> bool:
        token = self._peek(ahead)
        return token.kind in ("keyword", "op") and token.text == text

    def _fail(self, expected: str) -> SelectorError:
        token = self._peek()
        return SelectorError(f"at column {token.column}: expected {expected}, found {_describe(token)}")

    def expect_end(self) -> None:
        if self._peek().kind != "end":
            raise self._fail("`and`, `or` or the end of the filter")

    def expression(self) -> Expr:
        left = self._conjunction()
        while self._is("or"):
            self._next()
            left = Logical("or", left, self._conjunction())
        return left

    def _conjunction(self) -> Expr:
        left = self._unary()
        while self._is("and"):
            self._next()
            left = Logical("and", left, self._unary())
        return left

    def _unary(self) -> Expr:
        if not (self._is("not") or self._is("(")):
            return self._comparison()
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise SelectorError(f"at column {self._peek().column}: nests `not` and parentheses more than {MAX_NESTING} deep")
        if self._next().text == "not":
            inner: Expr = Not(self._unary())
        else:
            inner = self.expression()
            if not self._is(")"):
                raise self._fail("`)`")
            self._next()
        self._depth -= 1
        return inner

    def _value(self) -> Any:
        token = self._peek()
        if token.kind not in ("number", "string", "word"):
            raise self._fail("a value (a number, a quoted string or a word)")
        self._next()
        return token.value

    def _comparison(self) -> Expr:
        first = self._peek()
        if first.kind not in ("number", "string", "word"):
            raise self._fail("a metadata key, a value, `not` or `(`")
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise SelectorError(f"at column {first.column}: has more than {MAX_COMPARISONS} comparisons")
        self._next()
        negated = self._is("not") and (self._is("in", 1) or self._is("contains", 1) or self._is("matches", 1))
        if negated:
            self._next()
        if self._is("in"):
            self._next()
            if self._is("("):
                return Compare(self._selector(first), "in", self._value_list(), negated)
            target = self._peek()
            if target.kind != "word":
                raise self._fail("a metadata key after `in`")
            self._next()
            return Compare(target.value, "has", first.value, negated)
        selector = self._selector(first)
        if self._is("contains"):
            self._next()
            return Compare(selector, "contains", self._value(), negated)
        if self._is("matches"):
            self._next()
            return Compare(selector, "matches", self._pattern(), negated)
        if self._is("is"):
            self._next()
            empty_negated = self._is("not")
            if empty_negated:
                self._next()
            if not self._is("empty"):
                raise self._fail("`empty`")
            self._next()
            return Compare(selector, "empty", None, empty_negated)
        token = self._peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self._next()
            return Compare(selector, token.text, self._value())
        raise self._fail("an operator (==, !=, <, <=, >, >=, contains, matches, in, is empty)")

    def _pattern(self) -> Any:
        token = self._peek()
        self._value()
        try:
            return re2.compile(str(token.value), _RE2_OPTIONS)
        except re2.error as error:
            reason = error.args[0].decode(errors="replace") if isinstance(error.args[0], bytes) else str(error)
            if reason.startswith(("invalid perl operator", "invalid escape sequence")):
                reason += " (RE2 syntax: no backreferences or look-around; \\z ends the text)"
            raise SelectorError(f"at column {token.column}: bad regular expression {token.value!r}: {reason}") from None

    def _selector(self, token: _Token) -> str:
        if token.kind != "word":
            raise SelectorError(f"at column {token.column}: expected a metadata key, found {_describe(token)}")
        return str(token.value)

    def _value_list(self) -> tuple[Any, ...]:
        self._next()  # (
        values = [self._value()]
        while self._is(","):
            self._next()
            values.append(self._value())
        if not self._is(")"):
            raise self._fail("`,` or `)`")
        self._next()
        return tuple(values)


# -- evaluation ------------------------------------------------------------------------------

_MISSING = object()


def _lookup(metadata: dict[str, Any], selector: str) -> Any:
    value: Any = metadata
    for key in selector.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _convert(literal: Any, like: Any) -> Any:
    """The literal as the type of `like`; _MISSING when it cannot be converted."""
    try:
        if isinstance(like, bool):
            text = str(literal).lower()
            if text in ("true", "1", "1.0"):
                return True
            if text in ("false", "0", "0.0"):
                return False
            return _MISSING
        if isinstance(like, (int, float)):
            return float(literal)
        if isinstance(like, str):
            return literal if isinstance(literal, str) else _number_text(literal)
    except (TypeError, ValueError):
        return _MISSING
    return literal


def _number_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _compare(op: str, actual: Any, literal: Any) -> bool:
    if actual is _MISSING or isinstance(actual, (dict, list)) and op not in ("==", "!="):
        return False
    expected = _convert(literal, actual)
    if expected is _MISSING:
        return op == "!="
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        actual = float(actual)
    if op == "==":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    try:
        return bool({"<": actual < expected, "<=": actual <= expected, ">": actual > expected, ">=": actual >= expected}[op])
    except TypeError:
        return False


def _contains(container: Any, literal: Any) -> bool:
    if isinstance(container, str):
        return str(literal) in container
    if isinstance(container, list):
        return any(_compare("==", element, literal) for element in container)
    if isinstance(container, dict):
        return str(literal) in container
    return False


def matches(expression: Expr, metadata: dict[str, Any]) -> bool:
    if isinstance(expression, Logical):
        if expression.op == "and":
            return matches(expression.left, metadata) and matches(expression.right, metadata)
        return matches(expression.left, metadata) or matches(expression.right, metadata)
    if isinstance(expression, Not):
        return not matches(expression.operand, metadata)
    actual = _lookup(metadata, expression.selector)
    op = expression.op
    if op == "empty":
        result = actual is _MISSING or actual in (None, "", [], {})
    elif op in ("contains", "has"):
        result = actual is not _MISSING and _contains(actual, expression.literal)
    elif op == "matches":
        result = isinstance(actual, str) and expression.literal.search(actual) is not None
    elif op == "in":
        result = any(_compare("==", actual, literal) for literal in expression.literal)
    else:
        result = _compare(op, actual, expression.literal)
    return result != expression.negated


def expose(selector: Selector, tasks: list[tuple[str, list[dict[str, Any]]]]) -> tuple[dict[str, Any] | None, str]:
    """Evaluate a selector against (task name, output artifacts) of a run's tasks, in creation
    order: the first artifact it selects, or None and why nothing was selected."""
    named = [artifacts for name, artifacts in tasks if name == selector.component]
    if not named:
        return None, f"no task named {selector.component!r} ran"
    candidates = []
    for artifacts in named:
        elements = [a for a in artifacts if a["name"] == selector.output]
        if len(elements) > selector.index and elements[selector.index].get("uri"):
            candidates.append(elements[selector.index])
    if not candidates:
        return None, f"task {selector.component!r} produced no artifact {selector.output!r} at index {selector.index}"
    if selector.filter is None:
        return candidates[0], ""
    for candidate in candidates:
        if matches(selector.filter, candidate.get("metadata") or {}):
            return candidate, ""
    count = f"{len(candidates)} artifact" + ("s" if len(candidates) > 1 else "")
    return None, f"filter `{selector.filter_text}` matched none of {count}"
