"""Runtime parameters of a run, checked against the pipeline's declared inputs.

Values arrive as google.protobuf.Value converted to Python, so every number is a float; they
leave typed as the pipeline declares them (an integral 3.0 for NUMBER_INTEGER becomes 3).
Unknown names, wrong types and missing required inputs are reported together, each naming
its field; defaults fill in what was not given; a null value counts as not given.
"""

from __future__ import annotations

from typing import Any

from kfpgrpc.errors import FieldViolation, InvalidArgument
from kfpgrpc.pipeline_spec import PipelineInput

# Inputs the backend fills in (an exit handler's task status, a task's config); never user-set.
_SYSTEM_TYPES = {"TASK_FINAL_STATUS", "TASK_CONFIG"}


def resolve_parameters(inputs: dict[str, PipelineInput], given: dict[str, Any], field: str) -> dict[str, Any]:
    """Return the typed values to run with; raise InvalidArgument naming each bad parameter."""
    violations: list[FieldViolation] = []
    resolved: dict[str, Any] = {}
    for name in sorted(set(given) - set(inputs)):
        known = ", ".join(sorted(inputs)) or "none"
        violations.append(FieldViolation(f"{field}.{name}", f"is not an input of the pipeline; its inputs: {known}"))
    for name, declared in inputs.items():
        value = given.get(name)
        if value is None:
            if declared.default is not None:
                resolved[name] = declared.default
            elif not declared.optional and declared.parameter_type not in _SYSTEM_TYPES:
                violations.append(FieldViolation(f"{field}.{name}", f"is required ({declared.parameter_type}, no default)"))
            continue
        try:
            resolved[name] = _typed(value, declared.parameter_type)
        except ValueError as problem:
            violations.append(FieldViolation(f"{field}.{name}", str(problem)))
    if violations:
        raise InvalidArgument(violations)
    return resolved


def _typed(value: Any, parameter_type: str) -> Any:
    if parameter_type in _SYSTEM_TYPES:
        raise ValueError(f"is a {parameter_type} input, set by the executor, not by the run")
    if parameter_type == "NUMBER_INTEGER":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        raise ValueError(f"must be an integer, got {value!r}")
    if parameter_type == "NUMBER_DOUBLE":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"must be a number, got {value!r}")
    expected = {"STRING": (str, "a string"), "BOOLEAN": (bool, "true or false"), "LIST": (list, "a list"), "STRUCT": (dict, "an object")}
    python_type, shape = expected[parameter_type]
    if not isinstance(value, python_type):
        raise ValueError(f"must be {shape}, got {value!r}")
    return value
