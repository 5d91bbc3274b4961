"""KFP's driver, for one task: what it receives, whether it runs, and what a DAG returns.

In KFP each task's driver (backend/src/v2/driver/) resolves the task's inputs from its parent
DAG's inputs and its upstream tasks' outputs, evaluates its trigger-policy condition, counts a
loop's iterations and hands each its item, imports an importer's artifact, and computes the
cache key. These are those rules, as pure functions over the spec and the values at hand; the
orchestrator calls them and owns the state. KFP's sources (kubeflow/pipelines) are cited per
function; docs/api.md "Control flow" records where kfpgrpc deliberately differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from kfpgrpc.executor import cel
from kfpgrpc.executor.base import ArtifactOutput, TaskResult, TaskState
from kfpgrpc.executor.placeholders import (
    RuntimeValues,
    cast_parameter,
    resolve_parameter_self_references,
    substitute_inputs,
)
from kfpgrpc.json_values import protojson_numbers

# PipelineTaskFinalStatus.state as KFP's backend fills it: the state name of the group's
# execution in its metadata store (driver/resolve.go, case TaskFinalStatus).
FINAL_STATUS_STATES = {
    TaskState.SUCCEEDED: "COMPLETE",
    TaskState.FAILED: "FAILED",
    TaskState.CANCELED: "CANCELED",
    TaskState.SKIPPED: "CANCELED",
}
# google.rpc codes of PipelineTaskFinalStatus.error (KFP leaves it empty; kfp.local fills it).
_ERROR_CODES = {TaskState.FAILED: 2, TaskState.CANCELED: 1}  # UNKNOWN, CANCELLED
ALL_UPSTREAM_TASKS_COMPLETED = "ALL_UPSTREAM_TASKS_COMPLETED"


class DriverError(Exception):
    """The task cannot run as specified (an input without a value, a condition that does not
    evaluate, loop items that are not a list): the task FAILS with this message."""


@dataclass(frozen=True)
class Finished:
    """How an upstream task (of the same DAG) ended."""

    task_name: str  # its key in the DAG
    state: TaskState
    result: TaskResult | None  # when SUCCEEDED
    error: str = ""


@dataclass(frozen=True)
class Scope:
    """The inputs of one DAG instance (a sub-pipeline, condition, loop iteration, the root),
    by input name."""

    parameters: Mapping[str, Any]
    artifacts: Mapping[str, list[ArtifactOutput]]


def dependencies(task: Mapping[str, Any]) -> set[str]:
    """The tasks of the same DAG this task waits for: `dependentTasks` and the producers of its
    inputs (argocompiler/dag.go adds both)."""
    deps = set(task.get("dependentTasks") or [])
    inputs = task.get("inputs") or {}
    for parameter in (inputs.get("parameters") or {}).values():
        for key in ("taskOutputParameter", "taskFinalStatus"):
            producer = (parameter.get(key) or {}).get("producerTask")
            if producer:
                deps.add(producer)
    for artifact in (inputs.get("artifacts") or {}).values():
        producer = (artifact.get("taskOutputArtifact") or {}).get("producerTask")
        if producer:
            deps.add(producer)
    return deps


def runs_after_failures(task: Mapping[str, Any]) -> bool:
    """An exit task (dsl.ExitHandler) or `.ignore_upstream_failure()`: it runs once its upstream
    tasks have ended, however they ended."""
    return (task.get("triggerPolicy") or {}).get("strategy") == ALL_UPSTREAM_TASKS_COMPLETED


def resolve_inputs(
    task: Mapping[str, Any],
    component: Mapping[str, Any],
    scope: Scope,
    upstream: Mapping[str, Finished],
    runtime: RuntimeValues,
) -> tuple[dict[str, Any], dict[str, list[ArtifactOutput]]]:
    """The task's input parameters and artifacts (driver/resolve.go resolveInputs).

    Parameters come from the DAG's inputs, an upstream task's outputs, constants (with runtime
    placeholders substituted) or an upstream group's final status; `parameterExpressionSelector`
    then picks from the value. An upstream task that did not succeed gives no value (a task that
    ignores upstream failures then gets the component's default). Absent inputs take their
    `defaultValue`; absent optional inputs stay absent; an absent required input is a
    DriverError. Values are converted to the declared types (a STRING input receives the JSON
    text of a non-string, as KFP's driver does)."""
    inputs = task.get("inputs") or {}
    parameters: dict[str, Any] = {}
    for name, source in (inputs.get("parameters") or {}).items():
        value = _parameter(source, scope, upstream, runtime)
        if value is None:
            continue
        selector = source.get("parameterExpressionSelector")
        if selector:
            try:
                value = cel.select(selector, value)
            except cel.CelError as error:
                raise DriverError(f"input parameter {name!r}: {error}") from None
        parameters[name] = value
    # A loop task's body declares the item, which each iteration gets from the iterator.
    item_input = (task.get("parameterIterator") or task.get("artifactIterator") or {}).get("itemInput")
    definitions = (component.get("inputDefinitions") or {}).get("parameters") or {}
    for name, definition in definitions.items():
        if name in parameters or name == item_input:
            continue
        if definition.get("defaultValue") is not None:
            parameters[name] = definition["defaultValue"]
        elif not definition.get("isOptional") and definition.get("parameterType") != "TASK_FINAL_STATUS":
            raise DriverError(f"input parameter {name!r} has neither a value nor a default value")
    parameters = resolve_parameter_self_references(parameters)
    for name, definition in definitions.items():
        if name in parameters:
            parameters[name] = _typed(parameters[name], definition.get("parameterType"))
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for name, source in (inputs.get("artifacts") or {}).items():
        if "componentInputArtifact" in source:
            found = scope.artifacts.get(source["componentInputArtifact"])
        elif "taskOutputArtifact" in source:
            output = source["taskOutputArtifact"]
            producer = upstream.get(output.get("producerTask", ""))
            result = producer.result if producer is not None else None
            found = result.output_artifacts.get(output.get("outputArtifactKey", "")) if result else None
        else:
            found = None
        if found is not None:
            artifacts[name] = found
    for name, definition in ((component.get("inputDefinitions") or {}).get("artifacts") or {}).items():
        if name not in artifacts and name != item_input and not definition.get("isOptional"):
            raise DriverError(f"input artifact {name!r} has no value")
    return parameters, artifacts


def _parameter(
    source: Mapping[str, Any], scope: Scope, upstream: Mapping[str, Finished], runtime: RuntimeValues
) -> Any:
    """One input parameter's value before selectors and defaults; None when there is none."""
    if "componentInputParameter" in source:
        return scope.parameters.get(source["componentInputParameter"])
    if "taskOutputParameter" in source:
        output = source["taskOutputParameter"]
        producer = upstream.get(output.get("producerTask", ""))
        if producer is None or producer.result is None:
            return None
        return producer.result.output_parameters.get(output.get("outputParameterKey", ""))
    if "runtimeValue" in source:
        value = constant(source["runtimeValue"])
        return runtime.substitute(value) if isinstance(value, str) else value
    if "taskFinalStatus" in source:
        producer = upstream.get(source["taskFinalStatus"].get("producerTask", ""))
        return final_status(producer, runtime.values["pipeline_job_resource_name"]) if producer else None
    return None


def constant(runtime_value: Mapping[str, Any]) -> Any:
    """A `runtimeValue`'s constant (schema 2.0.0 wrote `constantValue: {intValue: ...}`)."""
    if "constant" in runtime_value:
        return runtime_value["constant"]
    old = runtime_value.get("constantValue") or {}
    return next(iter(old.values()), None)


def _typed(value: Any, parameter_type: str | None) -> Any:
    """`value` as the declared type: JSON text for a STRING input given a non-string
    (driver/resolve.go handleParamTypeValidationAndConversion), numbers and booleans cast,
    integral numbers inside lists and structs as ints (as KFP's protojson writes them)."""
    if parameter_type == "STRING" and not isinstance(value, str):
        return json.dumps(protojson_numbers(value), separators=(",", ":"))
    if parameter_type in ("LIST", "STRUCT"):
        return protojson_numbers(value)
    return cast_parameter(value, parameter_type)


def final_status(group: Finished, job_resource_name: str) -> dict[str, Any]:
    """A `dsl.PipelineTaskFinalStatus` input: how the group an exit task guards ended, in the
    JSON KFP's driver passes (camelCase; state names of its metadata store). The error is filled
    (KFP leaves it empty) so that `status.error_message` says what failed."""
    error: dict[str, Any] = {}
    if group.state in _ERROR_CODES:
        error = {"code": _ERROR_CODES[group.state], "message": group.error.splitlines()[0] if group.error else group.state.value}
    return {
        "state": FINAL_STATUS_STATES.get(group.state, group.state.value),
        "error": error,
        "pipelineJobResourceName": job_resource_name,
        "pipelineTaskName": group.task_name,
    }


def condition_holds(task: Mapping[str, Any], parameters: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the task's trigger-policy condition (CEL over `inputs.parameter_values`, as
    driver/dag.go and container.go evaluate it) holds, and the condition; (True, "") without
    one. DriverError when it cannot be evaluated."""
    condition = (task.get("triggerPolicy") or {}).get("condition") or ""
    if not condition:
        return True, ""
    try:
        return cel.compile_condition(condition).evaluate(parameters), condition
    except cel.CelError as error:
        raise DriverError(str(error)) from None


def iteration_items(
    task: Mapping[str, Any], parameters: Mapping[str, Any], artifacts: Mapping[str, list[ArtifactOutput]]
) -> tuple[str, list[Any], bool]:
    """A loop task's (item input name, items, whether the items are artifacts).

    `parameterIterator.items` is `raw` (JSON text) or `inputParameter` (a task input holding a
    list, or a string holding a JSON list: driver/util.go getItems); `artifactIterator.items`
    is `inputArtifact`, a list of artifacts."""
    if "artifactIterator" in task:
        iterator = task["artifactIterator"]
        name = (iterator.get("items") or {}).get("inputArtifact", "")
        return iterator.get("itemInput", ""), list(artifacts.get(name) or []), True
    iterator = task.get("parameterIterator") or {}
    items_spec = iterator.get("items") or {}
    if "raw" in items_spec:
        items = _json_list(items_spec["raw"], "the loop's items")
    else:
        name = items_spec.get("inputParameter", "")
        if name not in parameters:
            raise DriverError(f"the loop's items input {name!r} has no value")
        items = parameters[name]
        if isinstance(items, str):
            items = _json_list(items, f"the loop's items input {name!r}")
    if not isinstance(items, list):
        raise DriverError(f"the loop's items must be a list, got {type(items).__name__}")
    return iterator.get("itemInput", ""), items, False


def _json_list(text: Any, what: str) -> list[Any]:
    try:
        items = json.loads(text)
    except (TypeError, ValueError) as error:
        raise DriverError(f"{what} are not a JSON list: {error}") from None
    if not isinstance(items, list):
        raise DriverError(f"{what} are not a JSON list")
    return items


def dag_outputs(dag: Mapping[str, Any], finished: Mapping[str, Finished]) -> TaskResult:
    """A DAG's outputs from its tasks (driver/resolve.go resolveUpstream*): `valueFromParameter`
    and single artifact selectors take the producer's output; `valueFromOneof` and several
    artifact selectors (dsl.OneOf) take the first producer that SUCCEEDED and has it."""
    outputs = dag.get("outputs") or {}
    parameters: dict[str, Any] = {}
    for name, source in (outputs.get("parameters") or {}).items():
        selectors = (source.get("valueFromOneof") or {}).get("parameterSelectors") or [source.get("valueFromParameter") or {}]
        for selector in selectors:
            result = _succeeded(finished, selector.get("producerSubtask", ""))
            if result is not None and selector.get("outputParameterKey") in result.output_parameters:
                parameters[name] = result.output_parameters[selector["outputParameterKey"]]
                break
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for name, source in (outputs.get("artifacts") or {}).items():
        for selector in source.get("artifactSelectors") or []:
            result = _succeeded(finished, selector.get("producerSubtask", ""))
            if result is not None and selector.get("outputArtifactKey") in result.output_artifacts:
                artifacts[name] = [replace(a, name=name) for a in result.output_artifacts[selector["outputArtifactKey"]]]
                break
    return TaskResult(output_parameters=parameters, output_artifacts=artifacts)


def _succeeded(finished: Mapping[str, Finished], task_name: str) -> TaskResult | None:
    producer = finished.get(task_name)
    return producer.result if producer is not None and producer.state == TaskState.SUCCEEDED else None


def collected(body: Mapping[str, Any], iterations: list[TaskResult]) -> TaskResult:
    """A loop's outputs (dsl.Collected): each output of its body DAG `body`, over the iterations
    in iteration order; parameters as a list (a nested loop's as a list of lists, as kfp.local
    gives them and their List[List[...]] type says; KFP's backend flattens them), artifacts as
    one flat list (an input artifact list cannot nest). Zero iterations collect empty lists."""
    outputs = body.get("outputs") or {}
    parameters: dict[str, list[Any]] = {name: [] for name in outputs.get("parameters") or {}}
    artifacts: dict[str, list[ArtifactOutput]] = {name: [] for name in outputs.get("artifacts") or {}}
    for result in iterations:
        for name, value in result.output_parameters.items():
            parameters.setdefault(name, []).append(value)
        for name, values in result.output_artifacts.items():
            artifacts.setdefault(name, []).extend(values)
    return TaskResult(output_parameters=parameters, output_artifacts=artifacts)


def imported_artifact(
    importer: Mapping[str, Any], component: Mapping[str, Any], parameters: Mapping[str, Any], runtime: RuntimeValues
) -> ArtifactOutput:
    """The artifact a `dsl.importer` task outputs (component/importer_launcher.go): its URI from
    the constant or the named input (here also an upstream task's output, as kfp.local allows),
    `file://` URIs as local paths; its metadata with `{{$.inputs.parameters[...]}}` resolved (as
    kfp.local does; KFP stores them unresolved); its type from `typeSchema`. `reimport` makes no
    difference: artifacts are identified by their URI here."""
    source = importer.get("artifactUri") or {}
    if "runtimeParameter" in source:
        uri = parameters.get(source["runtimeParameter"])
    else:
        uri = source.get("constant")
        if isinstance(uri, Mapping):  # schema 2.0.0: {stringValue: ...}
            uri = next(iter(uri.values()), None)
    if not isinstance(uri, str) or not uri:
        raise DriverError("the importer has no artifact URI")
    uri = runtime.substitute(uri)
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    output = next(iter(((component.get("outputDefinitions") or {}).get("artifacts") or {"artifact": {}})), "artifact")
    return ArtifactOutput(
        name=output,
        uri=uri,
        schema_title=(importer.get("typeSchema") or {}).get("schemaTitle", "system.Artifact"),
        metadata=_with_inputs(dict(importer.get("metadata") or {}), parameters),
    )


def _with_inputs(value: Any, parameters: Mapping[str, Any]) -> Any:
    """`value` with each string that is an input placeholder replaced by that input's value."""
    if isinstance(value, str):
        return substitute_inputs(value, parameters)
    if isinstance(value, Mapping):
        return {key: _with_inputs(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_inputs(item, parameters) for item in value]
    return value


def cache_key(
    task: Mapping[str, Any],
    component: Mapping[str, Any],
    container: Mapping[str, Any],
    parameters: Mapping[str, Any],
    artifacts: Mapping[str, list[ArtifactOutput]],
) -> str:
    """The cache key of a container task (backend/src/v2/cacheutils/cache.go GenerateCacheKey):
    sha256 over its input values, its input artifacts (here their URIs; of a cached copy, the
    original's), its output
    definitions, its image and its command and args as written (placeholders unresolved).
    Environment variables and resources do not count. A `cachingOptions.cacheKey` replaces the
    inputs (KFP after 2.17: component name + key)."""
    outputs = component.get("outputDefinitions") or {}
    custom = (task.get("cachingOptions") or {}).get("cacheKey")
    key: dict[str, Any] = {
        "outputArtifactsSpec": {
            name: ((definition.get("artifactType") or {}).get("schemaTitle", ""))
            for name, definition in (outputs.get("artifacts") or {}).items()
        },
        "outputParametersSpec": {
            name: definition.get("parameterType", "") for name, definition in (outputs.get("parameters") or {}).items()
        },
        "containerSpec": {
            "image": container.get("image", ""),
            "cmdArgs": [*(container.get("command") or []), *(container.get("args") or [])],
        },
    }
    if custom:
        key["cacheKey"] = [(task.get("componentRef") or {}).get("name", ""), custom]
    else:
        key["inputParameterValues"] = dict(parameters)
        key["inputArtifactNames"] = {name: [a.origin or a.uri for a in values] for name, values in artifacts.items()}
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
