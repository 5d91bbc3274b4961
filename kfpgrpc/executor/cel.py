"""Placeholder for KFP's CEL (the cel helper's module replaces this)."""

from __future__ import annotations

import json
from typing import Any

import celpy
from celpy import celtypes


class CelError(Exception):
    pass


def _parse_json(text: Any) -> Any:
    return celpy.json_to_cel(json.loads(str(text)))


def _to_json(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.MapType):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [_to_json(v) for v in value]
    return value


def evaluate_condition(expression: str, parameter_values: dict[str, Any]) -> bool:
    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression), functions={"parseJson": _parse_json})
        result = program.evaluate({"inputs": celpy.json_to_cel({"parameter_values": parameter_values})})
    except Exception as error:  # noqa: BLE001
        raise CelError(f"condition {expression!r}: {error}") from None
    if not isinstance(result, celtypes.BoolType):
        raise CelError(f"condition {expression!r} is not a bool: {result!r}")
    return bool(result)


def select(expression: str, value: Any) -> Any:
    env = celpy.Environment()
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        program = env.program(env.compile(expression), functions={"parseJson": _parse_json})
        return _to_json(program.evaluate({"string_value": celtypes.StringType(text)}))
    except Exception as error:  # noqa: BLE001
        raise CelError(f"selector {expression!r}: {error}") from None
