"""Tests of kfpgrpc.pipeline_spec against pipelines compiled by the real kfp SDK."""

import copy
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from kfp.dsl.base_component import BaseComponent
from kfp.pipeline_spec import pipeline_spec_pb2

from kfpgrpc.errors import InvalidArgument
from kfpgrpc.pipeline_spec import PipelineInput, validate_pipeline_spec
from tests.pipelines import ALL_PIPELINES

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
