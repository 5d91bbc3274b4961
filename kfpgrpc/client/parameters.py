"""Pipeline parameters given as text (`kfpgrpc runs create --param NAME=VALUE`), converted to
the types the pipeline declares in `root.inputDefinitions.parameters` (KFP's PipelineSpec),
the way a KFP user means them:

- STRING: the text as it stands (`20261129`, `1.10`, `true`, `null` and the empty text are
  strings);
- NUMBER_INTEGER: a whole number (`5`, `-3`, `5.0`, `1e3`), at most 2**53 in size: a
  parameter travels as a JSON number (a double), which holds no larger integer exactly;
- NUMBER_DOUBLE: a finite number (`0.5`, `.5`, `1e-3`; not `nan` or `inf`);
- BOOLEAN: `true` or `false` in any letter case, `1` or `0`;
- LIST and STRUCT: a JSON array and a JSON object.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from kfpgrpc.client.errors import KfpGrpcError

_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LARGEST_EXACT_INTEGER = 2**53
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
# Inputs the backend fills in (an exit handler's task status, a task's config); never set by a run.
_SYSTEM_TYPES = {"TASK_FINAL_STATUS", "TASK_CONFIG"}
_EXPECTED = {
    "NUMBER_INTEGER": "must be a whole number (NUMBER_INTEGER) from -2**53 to 2**53",
    "NUMBER_DOUBLE": "must be a finite number (NUMBER_DOUBLE)",
    "BOOLEAN": "must be true, false, 1 or 0 (BOOLEAN)",
    "LIST": 'must be a JSON array (LIST), e.g. [1, "a"]',
    "STRUCT": 'must be a JSON object (STRUCT), e.g. {"retries": 3}',
}


def declared_parameters(spec: Mapping[str, Any]) -> dict[str, str]:
    """{name: parameterType} of a compiled pipeline's input parameters, from the spec as a dict
    (the bare PipelineSpec, or the {"pipeline_spec", "platform_spec"} pair of a file with
    Kubernetes settings)."""
    inner = spec.get("pipeline_spec", spec)
    root = inner.get("root", {}) if isinstance(inner, Mapping) else {}
    parameters = root.get("inputDefinitions", {}).get("parameters", {}) if isinstance(root, Mapping) else {}
    return {name: str(definition.get("parameterType", "")) for name, definition in parameters.items() if isinstance(definition, Mapping)}


def typed_parameters(texts: Mapping[str, str], declared: Mapping[str, str]) -> dict[str, Any]:
    """Each text converted to its parameter's declared type (see the module's docstring).
    Raises KfpGrpcError (INVALID_ARGUMENT) naming `parameters.<name>` for a name the pipeline
    does not declare, an input the backend sets, and a text that is not of the type."""
    typed: dict[str, Any] = {}
    for name, text in texts.items():
        if name not in declared:
            inputs = ", ".join(f"{known} ({kind})" for known, kind in sorted(declared.items()) if kind not in _SYSTEM_TYPES) or "none"
            raise KfpGrpcError.invalid_argument(f"parameters.{name}", f"is not an input of the pipeline; its inputs: {inputs}")
        typed[name] = typed_value(name, text, declared[name])
    return typed


def typed_value(name: str, text: str, parameter_type: str) -> Any:
    """`text` as a value of `parameter_type` (a KFP ParameterType name); see typed_parameters."""
    if parameter_type == "STRING":
        return text
    if parameter_type in _SYSTEM_TYPES:
        raise KfpGrpcError.invalid_argument(f"parameters.{name}", f"is a {parameter_type} input, set by the executor, not by a run")
    if parameter_type not in _EXPECTED:
        raise KfpGrpcError.invalid_argument(f"parameters.{name}", f"has the type {parameter_type or '(none)'}, which takes no value from text")
    value = _convert(text.strip(), parameter_type)
    if value is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise KfpGrpcError.invalid_argument(f"parameters.{name}", f"{_EXPECTED[parameter_type]}, got {shown!r}")
    return value


def _convert(text: str, parameter_type: str) -> Any:
    """The value of `text` for a non-string type; None when it has none."""
    if parameter_type == "BOOLEAN":
        return _BOOLEANS.get(text.lower())
    if parameter_type in ("LIST", "STRUCT"):
        value = _json(text)
        return value if isinstance(value, list if parameter_type == "LIST" else dict) else None
    if not _NUMBER.fullmatch(text):
        return None
    if parameter_type == "NUMBER_DOUBLE":
        number = float(text)  # 1e400 is inf
        return number if math.isfinite(number) else None
    if _INTEGER.fullmatch(text):
        if len(text) > len(str(_LARGEST_EXACT_INTEGER)) + 1:
            return None  # also spares int() its limit of 4,300 digits
        number: float = int(text)  # exact: 2**53 + 1 is refused, not rounded to 2**53
    else:
        number = float(text)
        if not (math.isfinite(number) and number.is_integer()):
            return None
    return int(number) if abs(number) <= _LARGEST_EXACT_INTEGER else None


def _json(text: str) -> Any:
    """The JSON value of `text`; None when it is none, or holds NaN or Infinity (Python's json
    reads them; a parameter cannot hold them), or nests too deep for Python's parser."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")
