"""Tests of kfpgrpc.pipeline_spec against pipelines compiled by the real kfp SDK."""

import copy
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from kfp import dsl
from kfp.dsl.base_component import BaseComponent
from kfp.pipeline_spec import pipeline_spec_pb2

from kfpgrpc.errors import InvalidArgument
from kfpgrpc.pipeline_spec import PipelineInput, validate_pipeline_spec
from tests.pipelines import ALL_PIPELINES, CEL_PIPELINES, compile_pipeline

Spec = dict[str, Any]

FIELD = "pipeline_version.pipeline_spec"
# Derived so the tests survive kfp-pipeline-spec releases that add parameter types.
ALL_PARAMETER_TYPES = ", ".join(pipeline_spec_pb2.ParameterType.ParameterTypeEnum.keys())
KNOWN_PARAMETER_TYPES = ALL_PARAMETER_TYPES.removeprefix("PARAMETER_TYPE_ENUM_UNSPECIFIED, ")
DELETE = object()  # an `edit` value that removes the key instead of setting it


@pytest.fixture
def add_spec(compiled: dict[str, Spec]) -> Spec:
    return copy.deepcopy(compiled["add-pipeline"])


@pytest.fixture
def nested_spec(compiled: dict[str, Spec]) -> Spec:
    return copy.deepcopy(compiled["nested-pipeline"])


def edit(spec: Spec, dotted_path: str, value: Any) -> None:
    """Set (or, with DELETE, remove) the key at `dotted_path`."""
    *parents, key = dotted_path.split(".")
    node = spec
    for parent in parents:
        node = node[parent]
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


def at(path: str, description: str) -> tuple[str, str]:
    """An expected violation of the field at `path` inside FIELD."""
    return f"{FIELD}.{path}", description


def violations_of(spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        validate_pipeline_spec(spec, FIELD)
    return [(violation.field, violation.description) for violation in caught.value.violations]


# Valid pipelines


@pytest.mark.parametrize("pipeline", ALL_PIPELINES, ids=lambda pipeline: pipeline.name)
def test_compiled_pipeline_is_valid(
    compiled: dict[str, Spec], pipeline: BaseComponent
) -> None:
    spec = compiled[pipeline.name]
    info = validate_pipeline_spec(spec, FIELD)
    assert info.name == pipeline.name
    assert info.spec is spec


def test_add_pipeline_info(add_spec: Spec) -> None:
    info = validate_pipeline_spec(add_spec, FIELD)
    assert info.name == "add-pipeline"
    assert info.description == "Adds a and b, then adds b again."
    assert info.inputs == {
        "a": PipelineInput("a", "NUMBER_INTEGER", 1, optional=True),
        "b": PipelineInput("b", "NUMBER_INTEGER", 2, optional=True),
        "label": PipelineInput("label", "STRING", "sum", optional=True),
        "options": PipelineInput("options", "STRUCT", {"retries": 1}, optional=True),
        "scale": PipelineInput("scale", "NUMBER_DOUBLE", None, optional=True),
        "tags": PipelineInput("tags", "LIST", ["demo"], optional=True),
        "verbose": PipelineInput("verbose", "BOOLEAN", False, optional=True),
    }
    # The IR stores integer defaults as floats (1.0); callers get ints back.
    assert type(info.inputs["a"].default) is int


def test_nested_pipeline_has_a_required_input(nested_spec: Spec) -> None:
    info = validate_pipeline_spec(nested_spec, FIELD)
    assert "dag" in nested_spec["components"]["comp-add-twice"]
    assert info.inputs == {
        "x": PipelineInput("x", "NUMBER_INTEGER", None, optional=False),
        "y": PipelineInput("y", "NUMBER_INTEGER", 5, optional=True),
    }


def test_artifact_and_failing_pipeline_inputs(compiled: dict[str, Spec]) -> None:
    artifact_info = validate_pipeline_spec(compiled["artifact-pipeline"], FIELD)
    assert artifact_info.inputs == {
        "text": PipelineInput("text", "STRING", "hello artifacts", optional=True)
    }
    failing_info = validate_pipeline_spec(compiled["failing-pipeline"], FIELD)
    assert failing_info.inputs == {
        "message": PipelineInput("message", "STRING", "this task always fails", optional=True)
    }


def test_pipeline_without_description_and_inputs(compiled: dict[str, Spec]) -> None:
    spec = copy.deepcopy(compiled["failing-pipeline"])
    edit(spec, "pipelineInfo.description", DELETE)
    edit(spec, "root.inputDefinitions", DELETE)
    edit(
        spec,
        "root.dag.tasks.fail.inputs.parameters.message",
        {"runtimeValue": {"constant": "boom"}},
    )
    info = validate_pipeline_spec(spec, FIELD)
    assert (info.description, info.inputs) == ("", {})


def test_spec_that_went_through_a_struct(add_spec: Spec) -> None:
    """The API receives a google.protobuf.Struct, where every number is a float."""
    struct = struct_pb2.Struct()
    struct.update(add_spec)
    info = validate_pipeline_spec(json_format.MessageToDict(struct), FIELD)
    assert info.inputs == validate_pipeline_spec(add_spec, FIELD).inputs
    assert type(info.inputs["b"].default) is int


def test_integral_float_default_is_an_integer(add_spec: Spec) -> None:
    edit(add_spec, "root.inputDefinitions.parameters.a.defaultValue", 7.0)
    assert validate_pipeline_spec(add_spec, FIELD).inputs["a"].default == 7


def test_null_default_means_optional_without_default(add_spec: Spec) -> None:
    edit(
        add_spec,
        "root.inputDefinitions.parameters.a",
        {"parameterType": "NUMBER_INTEGER", "defaultValue": None},
    )
    inputs = validate_pipeline_spec(add_spec, FIELD).inputs
    assert inputs["a"] == PipelineInput("a", "NUMBER_INTEGER", None, optional=True)


# The wrapped form the KFP API server stores


def test_wrapped_spec_with_platform_spec(add_spec: Spec) -> None:
    node_selector = {"nodeSelector": {"labels": {"gpu": "no"}}}
    platform_spec = {
        "platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-add": node_selector}}}}
    }
    wrapped = {"pipeline_spec": add_spec, "platform_spec": platform_spec}
    info = validate_pipeline_spec(wrapped, FIELD)
    assert info.name == "add-pipeline"
    assert info.spec is add_spec


def test_wrapped_spec_without_platform_spec(add_spec: Spec) -> None:
    assert validate_pipeline_spec({"pipeline_spec": add_spec}, FIELD).spec is add_spec


def test_wrapped_spec_errors_point_inside_the_wrapper(add_spec: Spec) -> None:
    del add_spec["root"]
    assert violations_of({"pipeline_spec": add_spec, "platform_spec": {}}) == [
        at("pipeline_spec.root", "is required")
    ]


def test_wrapped_spec_with_bad_platform_spec(add_spec: Spec) -> None:
    wrapped = {"pipeline_spec": add_spec, "platform_spec": {"platform": "kubernetes"}}
    assert violations_of(wrapped) == [
        at("platform_spec.platform", "is not a field of PlatformSpec; known fields are platforms")
    ]


def test_wrapped_spec_with_extra_key(add_spec: Spec) -> None:
    assert violations_of({"pipeline_spec": add_spec, "runtime": {}}) == [
        at(
            "runtime",
            "is not allowed next to pipeline_spec; "
            "a wrapped spec holds only pipeline_spec and platform_spec",
        )
    ]


def test_wrapped_spec_that_is_not_an_object() -> None:
    assert violations_of({"pipeline_spec": "root: {}"}) == [
        at("pipeline_spec", 'must be an object holding a compiled pipeline spec, got "root: {}"')
    ]


# Invalid specs


@pytest.mark.parametrize(
    ("spec", "description"),
    [
        (None, "must be an object holding a compiled pipeline spec, got null"),
        ([], "must be an object holding a compiled pipeline spec, got a list"),
        ("root: {}", 'must be an object holding a compiled pipeline spec, got "root: {}"'),
        (5, "must be an object holding a compiled pipeline spec, got 5"),
        ({}, "is required: expected a compiled pipeline spec"),
    ],
    ids=["none", "list", "string", "number", "empty"],
)
def test_spec_that_is_not_an_object(spec: Any, description: str) -> None:
    assert violations_of(spec) == [(FIELD, description)]


def test_unknown_top_level_field(add_spec: Spec) -> None:
    add_spec["owner"] = "me"
    assert violations_of(add_spec) == [
        at(
            "owner",
            "is not a field of PipelineSpec; known fields are components, defaultPipelineRoot, "
            "deploymentSpec, pipelineInfo, root, schemaVersion, sdkVersion",
        )
    ]


def test_unknown_field_of_a_task(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add-2.timeout", "1h")
    [(field, description)] = violations_of(add_spec)
    assert field == f"{FIELD}.root.dag.tasks.add-2.timeout"
    assert description.startswith("is not a field of PipelineTaskSpec; known fields are ")
    assert "componentRef, dependentTasks" in description


@pytest.mark.parametrize(
    ("path", "value", "bad_path", "description"),
    [
        ("pipelineInfo.name", 5, "pipelineInfo.name", "must be a string, got 5"),
        ("pipelineInfo", "add", "pipelineInfo", 'must be an object, got "add"'),
        ("components", [], "components", "must be an object, got a list"),
        (
            "root.dag.tasks.add-2.dependentTasks",
            "add",
            "root.dag.tasks.add-2.dependentTasks",
            'must be a list, got "add"',
        ),
        (
            "root.dag.tasks.add.cachingOptions.enableCache",
            "yes",
            "root.dag.tasks.add.cachingOptions.enableCache",
            'must be true or false, got "yes"',
        ),
        (
            "root.dag.tasks.add.retryPolicy",
            {"backoffDuration": "soon"},
            "root.dag.tasks.add.retryPolicy.backoffDuration",
            'must be a duration such as "30s", got "soon"',
        ),
        (
            "root.inputDefinitions.parameters.a.parameterType",
            "INT",
            "root.inputDefinitions.parameters.a.parameterType",
            f'must be one of {ALL_PARAMETER_TYPES}, got "INT"',
        ),
        ("deploymentSpec", "exec-add", "deploymentSpec", 'must be an object, got "exec-add"'),
    ],
    ids=["string", "message", "map", "list", "bool", "duration", "enum", "struct"],
)
def test_field_of_the_wrong_type(
    add_spec: Spec, path: str, value: Any, bad_path: str, description: str
) -> None:
    edit(add_spec, path, value)
    assert violations_of(add_spec) == [at(bad_path, description)]


def test_null_in_a_list(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add-2.dependentTasks", ["add", None])
    assert violations_of(add_spec) == [
        at("root.dag.tasks.add-2.dependentTasks[1]", "must be a string, got null")
    ]


def test_both_implementations_of_a_component(add_spec: Spec) -> None:
    edit(add_spec, "components.comp-add.dag", {"tasks": {}})
    assert violations_of(add_spec) == [
        at("components.comp-add", "sets both executorLabel and dag; only one of them is allowed")
    ]


@pytest.mark.parametrize(
    ("value", "description"),
    [
        (DELETE, "is required"),
        ("", "is required"),
        ("1.0.0", "must be a 2.x schema version such as 2.1.0, got '1.0.0'"),
        ("2.1", "must be a 2.x schema version such as 2.1.0, got '2.1'"),
    ],
    ids=["missing", "empty", "v1", "two-parts"],
)
def test_bad_schema_version(add_spec: Spec, value: Any, description: str) -> None:
    edit(add_spec, "schemaVersion", value)
    assert violations_of(add_spec) == [at("schemaVersion", description)]


@pytest.mark.parametrize(("path", "value"), [("pipelineInfo", DELETE), ("pipelineInfo.name", " ")])
def test_missing_pipeline_name(add_spec: Spec, path: str, value: Any) -> None:
    edit(add_spec, path, value)
    assert violations_of(add_spec) == [at("pipelineInfo.name", "is required")]


def test_missing_root(add_spec: Spec) -> None:
    del add_spec["root"]
    assert violations_of(add_spec) == [at("root", "is required")]


def test_root_that_is_not_a_dag(add_spec: Spec) -> None:
    edit(add_spec, "root", {"executorLabel": "exec-add"})
    assert violations_of(add_spec) == [
        at("root.dag", "is required: the root of a pipeline is a DAG of tasks")
    ]


def test_root_without_tasks(add_spec: Spec) -> None:
    edit(add_spec, "root.dag", {"tasks": {}})
    assert violations_of(add_spec) == [at("root.dag.tasks", "must contain at least one task")]


def test_component_without_implementation(add_spec: Spec) -> None:
    edit(add_spec, "components.comp-add.executorLabel", DELETE)
    assert violations_of(add_spec) == [
        at("components.comp-add", "must set either dag or executorLabel")
    ]


def test_dangling_component_ref(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add.componentRef.name", "comp-missing")
    assert violations_of(add_spec) == [
        at(
            "root.dag.tasks.add.componentRef.name",
            "refers to component 'comp-missing', which is not in components",
        )
    ]


def test_dangling_component_ref_in_a_sub_pipeline(nested_spec: Spec) -> None:
    edit(nested_spec, "components.comp-add-twice.dag.tasks.add-2.componentRef.name", "comp-gone")
    assert violations_of(nested_spec) == [
        at(
            "components.comp-add-twice.dag.tasks.add-2.componentRef.name",
            "refers to component 'comp-gone', which is not in components",
        )
    ]


def test_missing_component_ref(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add.componentRef", DELETE)
    assert violations_of(add_spec) == [at("root.dag.tasks.add.componentRef.name", "is required")]


def test_missing_executor(add_spec: Spec) -> None:
    edit(add_spec, "deploymentSpec.executors.exec-add", DELETE)
    assert violations_of(add_spec) == [
        at(
            "components.comp-add.executorLabel",
            "refers to executor 'exec-add', which is not in deploymentSpec.executors",
        )
    ]


def test_missing_deployment_spec(add_spec: Spec) -> None:
    del add_spec["deploymentSpec"]
    assert violations_of(add_spec) == [
        at(
            f"components.{component}.executorLabel",
            f"refers to executor '{executor}', which is not in deploymentSpec.executors",
        )
        for component, executor in [("comp-add", "exec-add"), ("comp-add-2", "exec-add-2")]
    ]


def test_executor_without_spec(add_spec: Spec) -> None:
    edit(add_spec, "deploymentSpec.executors.exec-add", {})
    assert violations_of(add_spec) == [
        at(
            "deploymentSpec.executors.exec-add",
            "must set one of container, importer, resolver, customJob",
        )
    ]


def test_executor_of_the_wrong_schema(add_spec: Spec) -> None:
    edit(add_spec, "deploymentSpec.executors.exec-add.container.image", 3)
    assert violations_of(add_spec) == [
        at("deploymentSpec.executors.exec-add.container.image", "must be a string, got 3")
    ]


def test_dependency_on_an_unknown_task(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add-2.dependentTasks", ["add", "train"])
    assert violations_of(add_spec) == [
        at(
            "root.dag.tasks.add-2.dependentTasks[1]",
            "refers to task 'train', which is not in the same DAG",
        )
    ]


def test_input_from_an_unknown_task(add_spec: Spec) -> None:
    producer = "root.dag.tasks.add-2.inputs.parameters.a.taskOutputParameter.producerTask"
    edit(add_spec, producer, "ghost")
    assert violations_of(add_spec) == [
        at(producer, "refers to task 'ghost', which is not in the same DAG")
    ]


def test_artifact_from_an_unnamed_task(compiled: dict[str, Spec]) -> None:
    spec = copy.deepcopy(compiled["artifact-pipeline"])
    producer = (
        "root.dag.tasks.read-dataset.inputs.artifacts.dataset.taskOutputArtifact.producerTask"
    )
    edit(spec, producer, "")
    assert violations_of(spec) == [at(producer, "is required")]


def test_output_from_an_unknown_task(add_spec: Spec) -> None:
    producer = "root.dag.outputs.parameters.Output.valueFromParameter.producerSubtask"
    edit(add_spec, producer, "add-3")
    assert violations_of(add_spec) == [
        at(producer, "refers to task 'add-3', which is not in the same DAG")
    ]


def test_dependency_cycle(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add.dependentTasks", ["add-2"])
    assert violations_of(add_spec) == [
        at(
            "root.dag.tasks.add-2.dependentTasks[0]",
            "closes a dependency cycle: add-2 -> add -> add-2 (each task depends on the next)",
        )
    ]


def test_task_that_depends_on_itself(add_spec: Spec) -> None:
    edit(add_spec, "root.dag.tasks.add.dependentTasks", ["add"])
    assert violations_of(add_spec) == [
        at(
            "root.dag.tasks.add.dependentTasks[0]",
            "closes a dependency cycle: add -> add (each task depends on the next)",
        )
    ]


def test_dependency_cycle_in_a_sub_pipeline(nested_spec: Spec) -> None:
    edit(nested_spec, "components.comp-add-twice.dag.tasks.add.dependentTasks", ["add-2"])
    assert violations_of(nested_spec) == [
        at(
            "components.comp-add-twice.dag.tasks.add-2.dependentTasks[0]",
            "closes a dependency cycle: add-2 -> add -> add-2 (each task depends on the next)",
        )
    ]


def test_recursive_sub_pipelines(nested_spec: Spec) -> None:
    components = nested_spec["components"]
    components["comp-loop"] = copy.deepcopy(components["comp-add-twice"])
    edit(components, "comp-add-twice.dag.tasks.add.componentRef.name", "comp-loop")
    edit(components, "comp-loop.dag.tasks.add.componentRef.name", "comp-add-twice")
    assert violations_of(nested_spec) == [
        at(
            "components.comp-loop.dag.tasks.add.componentRef.name",
            "makes DAG components recurse: "
            "comp-loop -> comp-add-twice -> comp-loop (each runs the next)",
        )
    ]


def test_unreachable_recursive_component_is_allowed(nested_spec: Spec) -> None:
    components = nested_spec["components"]
    components["comp-unused"] = copy.deepcopy(components["comp-add-twice"])
    edit(components, "comp-unused.dag.tasks.add.componentRef.name", "comp-unused")
    validate_pipeline_spec(nested_spec, FIELD)


@pytest.mark.parametrize(
    ("parameter", "default", "description"),
    [
        ("a", "one", 'must be an integer to match parameterType NUMBER_INTEGER, got "one"'),
        ("a", 1.5, "must be an integer to match parameterType NUMBER_INTEGER, got 1.5"),
        ("scale", "big", 'must be a number to match parameterType NUMBER_DOUBLE, got "big"'),
        ("label", 3, "must be a string to match parameterType STRING, got 3"),
        ("verbose", "true", 'must be true or false to match parameterType BOOLEAN, got "true"'),
        ("tags", {"x": 1}, "must be a list to match parameterType LIST, got an object"),
        ("options", [1], "must be an object to match parameterType STRUCT, got a list"),
    ],
    ids=["int-string", "int-fraction", "double", "string", "boolean", "list", "struct"],
)
def test_default_of_the_wrong_type(
    add_spec: Spec, parameter: str, default: Any, description: str
) -> None:
    default_path = f"root.inputDefinitions.parameters.{parameter}.defaultValue"
    edit(add_spec, default_path, default)
    assert violations_of(add_spec) == [at(default_path, description)]


@pytest.mark.parametrize(
    ("parameter_path", "value", "problem"),
    [
        ("root.inputDefinitions.parameters.a", 99, "is unknown (99)"),
        ("root.inputDefinitions.parameters.a", DELETE, "is required"),
        (
            "components.comp-add.outputDefinitions.parameters.Output",
            "PARAMETER_TYPE_ENUM_UNSPECIFIED",
            "is required",
        ),
    ],
    ids=["unknown-number", "missing", "unspecified-output"],
)
def test_bad_parameter_type(add_spec: Spec, parameter_path: str, value: Any, problem: str) -> None:
    edit(add_spec, f"{parameter_path}.parameterType", value)
    assert violations_of(add_spec) == [
        at(f"{parameter_path}.parameterType", f"{problem}; must be one of {KNOWN_PARAMETER_TYPES}")
    ]


def test_all_structural_violations_are_reported(add_spec: Spec) -> None:
    edit(add_spec, "schemaVersion", "3.0.0")
    edit(add_spec, "root.inputDefinitions.parameters.label.defaultValue", False)
    edit(add_spec, "root.dag.tasks.add.componentRef.name", "comp-missing")
    edit(add_spec, "root.dag.tasks.add.dependentTasks", ["add-2", "nope"])
    edit(add_spec, "deploymentSpec.executors.exec-add-2", DELETE)
    assert violations_of(add_spec) == [
        at("schemaVersion", "must be a 2.x schema version such as 2.1.0, got '3.0.0'"),
        at(
            "root.inputDefinitions.parameters.label.defaultValue",
            "must be a string to match parameterType STRING, got false",
        ),
        at(
            "root.dag.tasks.add.componentRef.name",
            "refers to component 'comp-missing', which is not in components",
        ),
        at(
            "root.dag.tasks.add.dependentTasks[1]",
            "refers to task 'nope', which is not in the same DAG",
        ),
        at(
            "root.dag.tasks.add-2.dependentTasks[0]",
            "closes a dependency cycle: add-2 -> add -> add-2 (each task depends on the next)",
        ),
        at(
            "components.comp-add-2.executorLabel",
            "refers to executor 'exec-add-2', which is not in deploymentSpec.executors",
        ),
    ]


def test_error_message_summarizes_the_violations(add_spec: Spec) -> None:
    del add_spec["root"]
    with pytest.raises(InvalidArgument) as caught:
        validate_pipeline_spec(add_spec, FIELD)
    assert caught.value.message == f"invalid argument: {FIELD}.root: is required"


# Names are not paths: every name that becomes a file or directory name is one harmless file
# name. A hand-made spec uses each kind of name once, referenced everywhere a real spec does.

NAME_KINDS = ("task", "component", "executor", "input_parameter", "output_parameter", "input_artifact", "output_artifact")
SAFE_NAMES = dict(zip(NAME_KINDS, ("t", "comp-t", "exec-t", "p", "o", "ia", "oa"), strict=True))
BAD_NAMES = [
    "../x", "..", ".", "", "/etc/hostname", "a/b", "a\\b", "..\\x", "a..b", "x\0y", "tab\there",
    "new\nline", "\x7f", "\x85", "x" * 256, "é" * 128,
]


def named_spec(**names: str) -> Spec:
    """A valid pipeline whose names are SAFE_NAMES, overridden by `names`."""
    n = {**SAFE_NAMES, **names}
    string = {"parameterType": "STRING"}
    artifact = {"artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}
    return {
        "schemaVersion": "2.1.0",
        "pipelineInfo": {"name": "names"},
        "root": {
            "inputDefinitions": {"parameters": {n["input_parameter"]: string}},
            "outputDefinitions": {"parameters": {n["output_parameter"]: string}},
            "dag": {
                "outputs": {"parameters": {n["output_parameter"]: {
                    "valueFromParameter": {"producerSubtask": "second", "outputParameterKey": n["output_parameter"]}
                }}},
                "tasks": {
                    n["task"]: {
                        "taskInfo": {"name": "First step — Étape 1"},  # display names may be anything
                        "componentRef": {"name": n["component"]},
                        "inputs": {"parameters": {n["input_parameter"]: {"componentInputParameter": n["input_parameter"]}}},
                    },
                    "second": {
                        "taskInfo": {"name": "second"},
                        "componentRef": {"name": n["component"]},
                        "dependentTasks": [n["task"]],
                        "inputs": {
                            "parameters": {n["input_parameter"]: {"taskOutputParameter": {
                                "producerTask": n["task"], "outputParameterKey": n["output_parameter"]
                            }}},
                            "artifacts": {n["input_artifact"]: {"taskOutputArtifact": {
                                "producerTask": n["task"], "outputArtifactKey": n["output_artifact"]
                            }}},
                        },
                    },
                },
            },
        },
        "components": {n["component"]: {
            "executorLabel": n["executor"],
            "inputDefinitions": {"parameters": {n["input_parameter"]: string}, "artifacts": {n["input_artifact"]: artifact}},
            "outputDefinitions": {"parameters": {n["output_parameter"]: string}, "artifacts": {n["output_artifact"]: artifact}},
        }},
        "deploymentSpec": {"executors": {n["executor"]: {"container": {"image": "busybox", "command": ["true"]}}}},
    }


def key_of(name: str) -> str:
    """How a field path writes the map key `name`: `.name` when plain, else `["name"]`."""
    return "." + name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else "[" + json.dumps(name, ensure_ascii=False) + "]"


def name_fields(kind: str, name: str) -> set[str]:
    """The fields where a name of `kind` is defined or used, which a bad `name` makes bad."""
    key, tasks, component = key_of(name), "root.dag.tasks", "components.comp-t"
    fields = {
        "task": {f"{tasks}{key}"},
        "component": {f"components{key}"},
        "executor": {f"deploymentSpec.executors{key}"},
        "input_parameter": {
            f"root.inputDefinitions.parameters{key}",
            f"{component}.inputDefinitions.parameters{key}",
            f"{tasks}.t.inputs.parameters{key}",
            f"{tasks}.t.inputs.parameters{key}.componentInputParameter",
            f"{tasks}.second.inputs.parameters{key}",
        },
        "output_parameter": {
            f"root.outputDefinitions.parameters{key}",
            f"{component}.outputDefinitions.parameters{key}",
            f"{tasks}.second.inputs.parameters.p.taskOutputParameter.outputParameterKey",
            f"root.dag.outputs.parameters{key}",
            f"root.dag.outputs.parameters{key}.valueFromParameter.outputParameterKey",
        },
        "input_artifact": {f"{component}.inputDefinitions.artifacts{key}", f"{tasks}.second.inputs.artifacts{key}"},
        "output_artifact": {
            f"{component}.outputDefinitions.artifacts{key}",
            f"{tasks}.second.inputs.artifacts.ia.taskOutputArtifact.outputArtifactKey",
        },
    }[kind]
    return {f"{FIELD}.{field}" for field in fields}


# An empty task or component name also leaves the references to it empty: "is required" there.
EMPTY_REFERENCES = {
    "task": {
        f"{FIELD}.root.dag.tasks.second.dependentTasks[0]",
        f"{FIELD}.root.dag.tasks.second.inputs.parameters.p.taskOutputParameter.producerTask",
        f"{FIELD}.root.dag.tasks.second.inputs.artifacts.ia.taskOutputArtifact.producerTask",
    },
    "component": {f"{FIELD}.root.dag.tasks.t.componentRef.name", f"{FIELD}.root.dag.tasks.second.componentRef.name"},
}


def assert_refused_naming_its_fields(kind: str, name: str) -> None:
    violations = dict(violations_of(named_spec(**{kind: name})))
    expected = name_fields(kind, name)
    assert set(violations) == expected | (EMPTY_REFERENCES.get(kind, set()) if not name else set()), name
    assert all("name" in violations[field] for field in expected), violations


def test_the_named_spec_is_valid() -> None:
    validate_pipeline_spec(named_spec(), FIELD)


@pytest.mark.parametrize("kind", NAME_KINDS)
@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_name_that_is_a_path_is_refused_where_it_is_defined_and_used(kind: str, name: str) -> None:
    assert_refused_naming_its_fields(kind, name)


def test_the_issue_examples_name_their_fields() -> None:
    assert [field for field, _ in violations_of(named_spec(task="../x"))] == [f"{FIELD}.root.dag.tasks[\"../x\"]"]
    spec = named_spec()
    outputs = spec["components"]["comp-t"]["outputDefinitions"]["parameters"]
    outputs["/etc/hostname"] = outputs.pop("o")
    assert violations_of(spec) == [
        at('components.comp-t.outputDefinitions.parameters["/etc/hostname"]',
           'must not contain "/" or "\\": names become file and directory names'),
    ]


def test_a_task_name_holds_no_dot_it_joins_task_ids() -> None:
    assert violations_of(named_spec(task="outer.inner")) == [
        at('root.dag.tasks["outer.inner"]', 'must not contain ".": it separates the names in a task id such as outer.inner'),
    ]
    validate_pipeline_spec(named_spec(component="comp.v1", input_parameter="a.b"), FIELD)  # only task names


def test_names_in_sub_pipelines_are_checked(nested_spec: Spec) -> None:
    inner = nested_spec["components"]["comp-add-twice"]["dag"]["tasks"]
    inner["../../victim"] = inner.pop("add")
    fields = [field for field, _ in violations_of(nested_spec)]
    assert f'{FIELD}.components.comp-add-twice.dag.tasks["../../victim"]' in fields


def test_random_names_are_accepted_only_when_they_are_one_harmless_file_name() -> None:
    """A seeded fuzz over every kind of name: an accepted name is one path component that
    stays in its directory; a refused one is refused naming its own fields only."""
    rng = random.Random(11)
    accepted = 0
    alphabet = ["a", "Z", "0", "-", "_", " ", ".", "/", "\\", "\0", "\n", "\x1b", "\x9f", "é", "語", "\u202e"]
    for _ in range(600):
        kind = rng.choice(NAME_KINDS)
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        if name in {"second", "p", "ia"} or name in SAFE_NAMES.values():
            continue  # would collide with the spec's other names
        if not safe(name, kind):
            assert_refused_naming_its_fields(kind, name)
        else:
            validate_pipeline_spec(named_spec(**{kind: name}), FIELD)
            accepted += 1
    assert accepted > 50  # the fuzz reaches both sides


def safe(name: str, kind: str) -> bool:
    """The contract, stated independently: one file name that stays in its directory, no `..`,
    no control characters, at most 255 bytes; a task name without "." (it joins task ids)."""
    stays = bool(name) and os.path.dirname(os.path.normpath(os.path.join("/run/dir", name))) == "/run/dir"
    return (
        stays and "/" not in name and "\\" not in name and ".." not in name and len(name.encode()) <= 255
        and not any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name)
        and (kind != "task" or "." not in name)
    )


def test_sdk_pipelines_with_free_display_names_are_valid(tmp_path: Path) -> None:
    @dsl.component(base_image="python:3.11")
    def step_one(text: str) -> str:
        return text

    @dsl.pipeline(name="display-names", description="Pipeline with display names a user would write")
    def display_names(text: str = "x") -> str:
        first = step_one(text=text).set_display_name("Étape 1 / prepare data: a..b")
        return step_one(text=first.output).set_display_name("训练 模型 \\ train").output

    spec = compile_pipeline(display_names, tmp_path / "display-names.yaml")
    assert validate_pipeline_spec(spec, FIELD).name == "display-names"


# Conditions and parameter expression selectors must compile as CEL (kfpgrpc.executor.cel).


@pytest.mark.parametrize("pipeline", CEL_PIPELINES, ids=lambda pipeline: pipeline.name)
def test_sdk_conditions_and_selectors_are_valid(compiled_cel: dict[str, Spec], pipeline: BaseComponent) -> None:
    assert validate_pipeline_spec(compiled_cel[pipeline.name], FIELD).name == pipeline.name


def test_conditions_the_sdk_compiles_to_broken_cel_are_refused(compiled_cel: dict[str, Spec]) -> None:
    # n.output == 'abc' and text == "it's": KFP's driver would fail the run when it gets there.
    assert violations_of(compiled_cel["condition-quirks"]) == [
        at(
            "root.dag.tasks.condition-1.triggerPolicy.condition",
            "is not valid CEL: at column 31: Syntax error: mismatched input 'pipelinechannel' expecting <EOF>",
        ),
        at(
            "root.dag.tasks.condition-2.triggerPolicy.condition",
            "is not valid CEL: at column 57: Syntax error: extraneous input 's' expecting <EOF>;"
            " at column 58: Syntax error: token recognition error at: '''",
        ),
    ]


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("inputs.parameter_values['pipelinechannel--text'] == ", "is not valid CEL: at column 53: Syntax error: mismatched input '<EOF>' expecting"),
        ("text == 'heads'", "is not valid CEL: at column 1: undeclared reference to 'text'"),
        ("size(inputs.parameter_values)", "gives an int, never a bool (true or false)"),
        ("true && " * 1250 + "true", "is 10,004 characters long; at most 10,000 are allowed"),
    ],
    ids=["syntax", "undeclared", "not-bool", "too-long"],
)
def test_condition_that_does_not_compile_is_refused(compiled_cel: dict[str, Spec], condition: str, problem: str) -> None:
    spec = copy.deepcopy(compiled_cel["conditions"])
    path = "components.comp-condition-branches-1.dag.tasks.condition-3.triggerPolicy.condition"
    edit(spec, path, condition)
    ((field, description),) = violations_of(spec)
    assert field == f"{FIELD}.{path}"
    assert description.startswith(problem)


def test_selector_that_does_not_compile_is_refused(compiled_cel: dict[str, Spec]) -> None:
    spec = copy.deepcopy(compiled_cel["item-fields"])
    path = "components.comp-for-loop-2.dag.tasks.add.inputs.parameters.b.parameterExpressionSelector"
    edit(spec, path, 'parseJson(string_value)["b"')
    edit(spec, "components.comp-for-loop-2.dag.tasks.condition-3.inputs.parameters", {
        "pipelinechannel--loop-item-param-1-subvar-a": {
            "componentInputParameter": "pipelinechannel--loop-item-param-1",
            "parameterExpressionSelector": "item.a",
        }
    })
    selector_path = "components.comp-for-loop-2.dag.tasks.condition-3.inputs.parameters.pipelinechannel--loop-item-param-1-subvar-a.parameterExpressionSelector"
    assert violations_of(spec) == [
        at(path, "is not valid CEL: at column 28: Syntax error: missing ']' at '<EOF>'"),
        at(selector_path, "is not valid CEL: at column 5: undeclared reference to 'item.a'"),
    ]
