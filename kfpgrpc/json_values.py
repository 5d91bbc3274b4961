"""Bounds of the JSON values the server keeps and returns: run parameters, task output
parameters and artifact metadata.

Every response carries them as google.protobuf.Value, so each must be one a Value can hold and
any client can read back:

- a number is a finite double: JSON has no NaN or Infinity, and an integer beyond a double's
  range cannot become a Value at all (KFP's launcher, which reads executor output as protobuf
  JSON, fails such a task too);
- nesting is at most MAX_DEPTH lists and objects deep: each level is two or three levels of
  protobuf messages in a response, and protobuf parsers refuse messages nested over 100 deep.
"""

from __future__ import annotations

import math
import sys
from typing import Any

MAX_DEPTH = 32


def problem(value: Any) -> str:
    """Why `value` (decoded JSON) cannot be kept, as a phrase ("nests deeper than 32 levels");
    "" when it can."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            return f"holds {non_finite_name(item)}, which JSON cannot represent"
        if isinstance(item, int) and abs(item) > sys.float_info.max:
            return "holds an integer beyond the range of a double"
        if isinstance(item, (dict, list)):
            if depth == MAX_DEPTH:
                return f"nests lists and objects deeper than {MAX_DEPTH} levels"
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return ""


def non_finite_name(number: float) -> str:
    """How JavaScript (and Python's json module) spell NaN and the infinities."""
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def protojson_numbers(value: Any) -> Any:
    """`value` (a JSON value) with integral floats as ints, as KFP's Go backend writes a
    google.protobuf.Value (protojson): `[1.0, 2.5]` becomes `[1, 2.5]`, so a task reads 1 where
    KFP would give it 1. Values that went through a Struct have only floats."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [protojson_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: protojson_numbers(item) for key, item in value.items()}
    return value
