"""Macros in the string parameters of runs created by a recurring run (SPEC §4).

The macros, as in KFP's scheduled workflows (`[[...]]`) and KFP-Operator / Cloud Scheduler
(`{{$....}}`); every time is UTC:

- `[[ScheduledTime]]`, `[[CurrentTime]]`: the tick and the run's creation time as
  `%Y%m%d%H%M%S` (Go layout `20060102150405`).
- `[[ScheduledTime.<layout>]]`, `[[CurrentTime.<layout>]]`: the same times in a Go time layout,
  e.g. `[[ScheduledTime.2006-01-02]]`.
- `{{$.scheduledTime.strftime('<format>')}}`, `{{$.currentTime.strftime('<format>')}}`: Python's
  strftime; the format may be in single or double quotes, and spaces may stand inside the braces
  and the parentheses.
- `[[Index]]`: the 1-based index of the tick; `[[RunUUID]]`: the id of the run.

Recognition, one left-to-right pass; substituted text is never scanned again:

- `[[` then a name (a letter, then letters, digits or `_`), an optional `.<layout>` and `]]`; like
  KFP, the layout ends at the first `]]`. Such text with an unknown name (`[[Scheduledtime]]`, or
  `[[ Index ]]` with spaces) is a violation, so that a typo does not silently reach the pipeline.
  Bracketed text that is no name, e.g. the JSON `[[1, 2], [3, 4]]` or `[["a"]]`, is left alone.
- `{{$.` naming `scheduledTime` or `currentTime` in any letter case, or any `{{$.<name>.strftime`,
  is ours: unless it is exactly one of the two strftime forms it is a violation. Other `{{...}}`
  text, e.g. a KFP placeholder such as `{{$.inputs.parameters['x']}}`, is left alone.
- Violations are found at create/update time (`macro_violations`); `expand` leaves a macro it
  cannot render as literal text, as KFP does.

Go layouts follow Go's `time.Format` (Go 1.20+): the layout is read left to right, at each place
the longest element of the reference time `Mon Jan 2 15:04:05 MST 2006` in Go's own order of
tests, and everything else is literal text. Go's quirks are kept, so a layout means here what it
means in KFP: `Month` is literal (`Jan` and `Mon` followed by a lower-case letter are text), `_2006`
is `_` then the year, and the digits 1 to 5 are elements wherever they stand. Zone elements print
UTC: `MST` as `UTC`, `Z07:00` and the other `Z` forms as `Z`, `-0700` as `+0000` and so on.
Fractional seconds (`.000`, `,000`, `.999`...) print the time's microseconds (KFP truncates to whole
seconds; our times keep microseconds), digits 7 to 9 are zero. A layout with no element of the
reference time (`yyyy-MM-dd`, or empty) or with a strftime directive (`%Y`) is a violation: Go would
print that text as it stands, which is never what was meant.

strftime formats may use only the directives Python documents (`%a %A %w %d %b %B %m %y %Y %H %I
%p %M %S %f %z %Z %j %U %W %c %x %X %G %u %V %%`), so that the output does not depend on the C
library (`%-d` is glibc's) and a typo such as `%Q` is reported; a lone trailing `%` is reported too.

`expand` walks lists and dict values; dict keys and values that are not strings stay as they are.
A violation names `<field>.<parameter name>`, also for a string nested inside the parameter.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from kfpgrpc.clock import to_datetime
from kfpgrpc.errors import FieldViolation

DEFAULT_LAYOUT = "20060102150405"  # %Y%m%d%H%M%S, KFP's default for [[ScheduledTime]] and [[CurrentTime]]


@dataclass(frozen=True)
class MacroContext:
    """What the macros stand for in one run created from a tick."""

    scheduled_time_us: int  # the tick
    current_time_us: int  # when the run is created
    index: int  # 1-based tick index
    run_id: str


_Render = Callable[[MacroContext], str]

_BRACKET_TIMES: dict[str, Callable[[MacroContext], int]] = {
    "ScheduledTime": attrgetter("scheduled_time_us"),
    "CurrentTime": attrgetter("current_time_us"),
}
_BRACE_TIMES: dict[str, Callable[[MacroContext], int]] = {
    "scheduledTime": attrgetter("scheduled_time_us"),
    "currentTime": attrgetter("current_time_us"),
}
_PLAIN: dict[str, _Render] = {"Index": lambda context: str(context.index), "RunUUID": attrgetter("run_id")}
_KNOWN = (
    "[[ScheduledTime]], [[CurrentTime]], [[ScheduledTime.<Go layout>]], [[CurrentTime.<Go layout>]], "
    "[[Index]], [[RunUUID]]"
)

_OPENING = re.compile(r"\[\[|\{\{")
_BRACKET_MACRO = re.compile(r"\[\[(?P<name>\s*[A-Za-z]\w*\s*)(?:\.(?P<layout>.*?))?\]\]", re.DOTALL)
_STRFTIME_MACRO = re.compile(
    r"\{\{\s*\$\.(?P<time>scheduledTime|currentTime)\.strftime\("
    r"""\s*(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)")\s*\)\s*\}\}"""
)
_BRACE_CLAIM = re.compile(r"\{\{\s*\$\.(?P<name>\w+)(?P<strftime>\.strftime\b)?")
_SNIPPET_LIMIT = 60  # a malformed {{ with no closing }} would otherwise quote the rest of the string

_STRFTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_STRFTIME_DIRECTIVE = re.compile(r"%(.?)", re.DOTALL)
_STRFTIME_IN_LAYOUT = re.compile(r"%[A-Za-z]")

# Go prints English names whatever the locale; calendar.month_name would follow the locale.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # datetime.weekday() order
_GO_ELEMENTS: dict[str, Callable[[datetime], str]] = {
    "2006": lambda t: f"{t.year:04d}",
    "06": lambda t: f"{t.year % 100:02d}",
    "January": lambda t: _MONTHS[t.month - 1],
    "Jan": lambda t: _MONTHS[t.month - 1][:3],
    "01": lambda t: f"{t.month:02d}",
    "1": lambda t: str(t.month),
    "Monday": lambda t: _WEEKDAYS[t.weekday()],
    "Mon": lambda t: _WEEKDAYS[t.weekday()][:3],
    "02": lambda t: f"{t.day:02d}",
    "_2": lambda t: f"{t.day:2d}",
    "2": lambda t: str(t.day),
    "002": lambda t: f"{t.timetuple().tm_yday:03d}",
    "__2": lambda t: f"{t.timetuple().tm_yday:3d}",
    "15": lambda t: f"{t.hour:02d}",
    "03": lambda t: f"{t.hour % 12 or 12:02d}",  # noon is 12PM, midnight 12AM
    "3": lambda t: str(t.hour % 12 or 12),
    "04": lambda t: f"{t.minute:02d}",
    "4": lambda t: str(t.minute),
    "05": lambda t: f"{t.second:02d}",
    "5": lambda t: str(t.second),
    "PM": lambda t: "PM" if t.hour >= 12 else "AM",
    "pm": lambda t: "pm" if t.hour >= 12 else "am",
}
# Every time is UTC, so the zone elements print constants: the name UTC, Z, or a zero offset.
_GO_ZONES_AT_UTC = {
    "MST": "UTC",
    "Z070000": "Z",
    "Z07:00:00": "Z",
    "Z0700": "Z",
    "Z07:00": "Z",
    "Z07": "Z",
    "-070000": "+000000",
    "-07:00:00": "+00:00:00",
    "-0700": "+0000",
    "-07:00": "+00:00",
    "-07": "+00",
}
_GO_OFFSETS = ("070000", "07:00:00", "0700", "07:00", "07")  # after "-" or "Z", in Go's order: each before its prefixes
_GO_FRACTION = re.compile(r"[.,](?:0+|9+)(?!\d)")  # Go: a run of one digit that no other digit follows


@dataclass(frozen=True)
class _Macro:
    """A macro at text[start:end]: how to render it, or (render None) why it is malformed."""

    start: int
    end: int
    render: _Render | None
    problem: str = ""


def expand(value: Any, context: MacroContext) -> Any:
    """Strings get their macros replaced; lists and dicts are walked recursively (their string
    members expanded); other values are returned as they are. Containers are copied, not changed."""
    if isinstance(value, str):
        return _expand_text(value, context)
    if isinstance(value, list):
        return [expand(item, context) for item in value]
    if isinstance(value, dict):
        return {key: expand(item, context) for key, item in value.items()}
    return value


def macro_violations(parameters: dict[str, Any], field: str) -> list[FieldViolation]:
    """One violation per malformed or unknown macro in every string of every parameter."""
    return [
        FieldViolation(f"{field}.{name}", macro.problem)
        for name, value in parameters.items()
        for text in _strings_in(value)
        for macro in _find_macros(text)
        if macro.render is None
    ]


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)


def _expand_text(text: str, context: MacroContext) -> str:
    pieces: list[str] = []
    position = 0
    for macro in _find_macros(text):
        if macro.render is None:
            continue  # left as literal text, as KFP leaves a macro it cannot resolve
        pieces += [text[position : macro.start], macro.render(context)]
        position = macro.end
    pieces.append(text[position:])
    return "".join(pieces)


def _find_macros(text: str) -> Iterator[_Macro]:
    """Linear in len(text): parameters are the client's and this runs on the event loop."""
    position = 0
    closing = 0  # the first "]]" at or after the last bracket opening seen; -1: none is left
    while opening := _OPENING.search(text, position):
        start = opening.start()
        if text.startswith("[[", start):
            if closing != -1 and closing < start + 2:
                closing = text.find("]]", start + 2)
            macro = _bracket_macro(text, start, closing)
        else:
            macro = _brace_macro(text, start)
        if macro is None:
            position = start + 1  # one character on, so that "[[[Index]]" still finds [[Index]]
            continue
        yield macro
        position = macro.end


def _bracket_macro(text: str, start: int, closing: int) -> _Macro | None:
    """The macro opening at `start`; `closing` is the first "]]" after the opening (-1: none),
    where the layout ends. Matching no further than it keeps "[[a.[[a.[[a." linear."""
    if closing == -1:
        return None
    match = _BRACKET_MACRO.match(text, start, closing + 2)
    if match is None:
        return None
    name, layout, end = match["name"], match["layout"], match.end()
    if name in _BRACKET_TIMES:
        problem = "" if layout is None else _go_layout_problem(layout)
        if problem:
            return _Macro(start, end, None, f"{match[0]}: {problem}")
        time_of, go_layout = _BRACKET_TIMES[name], DEFAULT_LAYOUT if layout is None else layout
        return _Macro(start, end, lambda context: _format_go(to_datetime(time_of(context)), go_layout))
    if name in _PLAIN:
        if layout is None:
            return _Macro(start, end, _PLAIN[name])
        return _Macro(start, end, None, f"{match[0]}: [[{name}]] takes no layout")
    return _Macro(start, end, None, f"unknown macro {match[0]}{_suggestion(name, layout)}; known: {_KNOWN}")


def _suggestion(name: str, layout: str | None) -> str:
    close = difflib.get_close_matches(name.strip(), [*_BRACKET_TIMES, *_PLAIN], n=1)
    if not close:
        return ""
    return f" (did you mean [[{close[0]}{'' if layout is None else '.' + layout}]]?)"


def _brace_macro(text: str, start: int) -> _Macro | None:
    match = _STRFTIME_MACRO.match(text, start)
    if match:
        strftime_format = match["single"] if match["single"] is not None else match["double"]
        problem = _strftime_problem(strftime_format)
        if problem:
            return _Macro(start, match.end(), None, f"{match[0]}: {problem}")
        time_of = _BRACE_TIMES[match["time"]]
        return _Macro(start, match.end(), lambda context: to_datetime(time_of(context)).strftime(strftime_format))
    claim = _BRACE_CLAIM.match(text, start)
    if claim is None or not (claim["strftime"] or claim["name"].lower() in ("scheduledtime", "currenttime")):
        return None  # someone else's {{...}}, e.g. a KFP placeholder
    closing = text.find("}}", start)
    end = len(text) if closing == -1 else closing + 2
    snippet = text[start:end]
    if len(snippet) > _SNIPPET_LIMIT:
        snippet = snippet[:_SNIPPET_LIMIT] + "..."
    return _Macro(
        start,
        end,
        None,
        f"malformed time macro {snippet}; write {{{{$.scheduledTime.strftime('%Y-%m-%d')}}}} "
        "or {{$.currentTime.strftime('...')}}",
    )


def _strftime_problem(strftime_format: str) -> str:
    for directive in _STRFTIME_DIRECTIVE.finditer(strftime_format):
        if not directive[1]:
            return "the format ends with a lone % (write %% for a literal %)"
        if directive[1] not in _STRFTIME_DIRECTIVES:
            return f"{directive[0]} is not a strftime directive (write %% for a literal %)"
    return ""


def _go_layout_problem(layout: str) -> str:
    if directive := _STRFTIME_IN_LAYOUT.search(layout):
        return (
            f"{directive[0]} is a strftime directive; a Go layout writes the reference time "
            "Mon Jan 2 15:04:05 MST 2006, e.g. 2006-01-02"
        )
    if not any(is_element for _, is_element in _go_layout_pieces(layout)):
        return (
            f"the Go layout {layout!r} has no element of the reference time Mon Jan 2 15:04:05 MST 2006 "
            "(e.g. 2006-01-02), so it would print as literal text"
        )
    return ""


def _format_go(moment: datetime, layout: str) -> str:
    """`moment` (UTC) formatted as Go's `time.Format(layout)` formats it."""
    pieces = _go_layout_pieces(layout)
    return "".join(_render_go_element(piece, moment) if is_element else piece for piece, is_element in pieces)


def _go_layout_pieces(layout: str) -> Iterator[tuple[str, bool]]:
    """The layout split left to right into elements and literal characters: (text, is_element)."""
    position = 0
    while position < len(layout):
        element = _go_element_at(layout, position)
        if element:
            yield element, True
            position += len(element)
        else:
            yield layout[position], False
            position += 1


def _go_element_at(layout: str, position: int) -> str:
    """The element that starts at layout[position], or "" when that character is literal text.

    The tests and their order are those of Go's time.nextStdChunk, so that a layout splits as in Go.
    """
    rest = layout[position:]
    first = rest[0]
    if first == "J" and rest.startswith("Jan"):
        if rest.startswith("January"):
            return "January"
        if not "a" <= rest[3:4] <= "z":  # "Janet" is text
            return "Jan"
    elif first == "M":
        if rest.startswith("Monday"):
            return "Monday"
        if rest.startswith("Mon") and not "a" <= rest[3:4] <= "z":  # "Month" is text
            return "Mon"
        if rest.startswith("MST"):
            return "MST"
    elif first == "0":
        if len(rest) > 1 and rest[1] in "123456":
            return rest[:2]
        if rest.startswith("002"):
            return "002"
    elif first == "1":
        return "15" if rest.startswith("15") else "1"
    elif first == "2":
        return "2006" if rest.startswith("2006") else "2"
    elif first == "_":
        if rest.startswith("_2") and not rest.startswith("_2006"):  # Go: "_2006" is "_" then the year
            return "_2"
        if rest.startswith("__2"):
            return "__2"
    elif first in "345":
        return first
    elif first == "P" and rest.startswith("PM") or first == "p" and rest.startswith("pm"):
        return rest[:2]
    elif first in "-Z":
        for offset in _GO_OFFSETS:
            if rest.startswith(offset, 1):
                return first + offset
    elif first in ".,":
        if fraction := _GO_FRACTION.match(rest):
            return fraction[0]
    return ""


def _render_go_element(element: str, moment: datetime) -> str:
    if element in _GO_ZONES_AT_UTC:
        return _GO_ZONES_AT_UTC[element]
    if element[0] in ".,":
        separator, digits = element[0], len(element) - 1
        fraction = f"{moment.microsecond * 1000:09d}"[:digits]  # nanoseconds, cut (not rounded) as Go does
        if element[1] == "9":
            fraction = fraction.rstrip("0")  # the .999 form drops trailing zeros, and the separator with them
            return separator + fraction if fraction else ""
        return separator + fraction
    return _GO_ELEMENTS[element](moment)
