"""Runtime parameters against the inputs of pipelines compiled by the kfp SDK."""

from __future__ import annotations

from typing import Any

import pytest

from kfpgrpc.core.parameters import resolve_parameters
from kfpgrpc.errors import InvalidArgument
from kfpgrpc.pipeline_spec import PipelineInput, validate_pipeline_spec

FIELD = "run.runtime_config.parameters"


def inputs_of(spec: dict[str, Any]) -> dict[str, PipelineInput]:
    return validate_pipeline_spec(spec, "spec").inputs


def violations(inputs: dict[str, PipelineInput], given: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as failure:
        resolve_parameters(inputs, given, FIELD)
    return {v.field: v.description for v in failure.value.violations}


def test_defaults_fill_in_and_values_are_typed(compiled: dict[str, dict[str, Any]]) -> None:
    inputs = inputs_of(compiled["add-pipeline"])
    assert resolve_parameters(inputs, {}, FIELD) == {
        "a": 1, "b": 2, "label": "sum", "verbose": False, "tags": ["demo"], "options": {"retries": 1.0},
    }  # `scale` is optional without a default: left out
    given = {"a": 5.0, "b": 7, "scale": 2, "label": "x", "verbose": True, "tags": [], "options": {}}
    resolved = resolve_parameters(inputs, given, FIELD)
    assert resolved == {"a": 5, "b": 7, "scale": 2.0, "label": "x", "verbose": True, "tags": [], "options": {}}
    assert type(resolved["a"]) is int and type(resolved["scale"]) is float
    assert resolve_parameters(inputs, {"scale": None}, FIELD).get("scale") is None  # null = not given


def test_wrong_types_and_unknown_names_are_all_reported(compiled: dict[str, dict[str, Any]]) -> None:
    inputs = inputs_of(compiled["add-pipeline"])
    given = {"a": 1.5, "b": "2", "scale": True, "label": 3.0, "verbose": "yes", "tags": {}, "options": [], "typo": 1}
    assert violations(inputs, given) == {
        f"{FIELD}.a": "must be an integer, got 1.5",
        f"{FIELD}.b": "must be an integer, got '2'",
        f"{FIELD}.scale": "must be a number, got True",
        f"{FIELD}.label": "must be a string, got 3.0",
        f"{FIELD}.verbose": "must be true or false, got 'yes'",
        f"{FIELD}.tags": "must be a list, got {}",
        f"{FIELD}.options": "must be an object, got []",
        f"{FIELD}.typo": "is not an input of the pipeline; its inputs: a, b, label, options, scale, tags, verbose",
    }


def test_a_required_input_without_default_must_be_given(compiled: dict[str, dict[str, Any]]) -> None:
    inputs = inputs_of(compiled["nested-pipeline"])
    assert violations(inputs, {"y": 1}) == {f"{FIELD}.x": "is required (NUMBER_INTEGER, no default)"}
    assert resolve_parameters(inputs, {"x": 3}, FIELD) == {"x": 3, "y": 5}
