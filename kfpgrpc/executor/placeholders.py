"""KFP container-task plumbing for the local executor: parameter typing, the executor input JSON,
placeholder substitution in `command` + `args`, and reading the executor output back.

Formats follow KFP's launcher (and `kfp.local`): the executor input is
`{"inputs": {"parameterValues": {...}, "artifacts": {name: {"artifacts": [RuntimeArtifact]}}},
  "outputs": {"parameters": {name: {"outputFile": path}},
              "artifacts": {name: {"artifacts": [RuntimeArtifact]}}, "outputFile": path}}`
where a RuntimeArtifact is `{"name", "uri", "metadata", "type": {"schemaTitle", "schemaVersion"}}`.
Only the standard library is used here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kfpgrpc import json_values
from kfpgrpc.bounds import MAX_TASK_OUTPUTS_BYTES
from kfpgrpc.confined import Directory, TooLarge, UnsafePath, component_problem, inside
from kfpgrpc.executor.base import ArtifactOutput, TaskResult

# In the task root (its artifact directory), as kfp.local puts it: dsl.get_uri() is beside it.
EXECUTOR_OUTPUT_FILE = "executor_output.json"


class TaskOutputError(Exception):
    """A task exited 0 but its outputs could not be read back."""


# ---------------------------------------------------------------------------------------------
# Parameter types


def cast_parameter(value: Any, parameter_type: str | None) -> Any:
    """Coerce `value` to the declared KFP parameter type where that is unambiguous.

    Values may have gone through google.protobuf.Struct, so integers can arrive as floats (1.0).
    LIST and STRUCT values are left as they are (their element types are not declared).
    """
    if value is None or not parameter_type:
        return value
    if parameter_type in ("NUMBER_INTEGER", "INT"):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    return value
                return int(as_float) if as_float.is_integer() else as_float
        return value
    if parameter_type in ("NUMBER_DOUBLE", "DOUBLE"):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value
    if parameter_type == "BOOLEAN":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value
    return value


def parse_output_parameter(text: str, parameter_type: str | None, path: str) -> Any:
    """A parameter as written to its `outputFile` (dsl.OutputPath): strings are the raw text,
    everything else is JSON (booleans also as true/True). `path` names the file in errors."""
    if parameter_type in ("STRING", None, ""):
        return text
    if parameter_type == "BOOLEAN":
        text = text.strip().lower()
    try:
        return cast_parameter(json.loads(text), parameter_type)
    except (json.JSONDecodeError, RecursionError) as error:
        raise TaskOutputError(f"could not parse output parameter file {path}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Executor input


def runtime_artifact(artifact: ArtifactOutput, schema_version: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": artifact.name,
        "uri": artifact.uri,
        "metadata": dict(artifact.metadata),
        "type": {"schemaTitle": artifact.schema_title},
    }
    if schema_version:
        entry["type"]["schemaVersion"] = schema_version
    return entry


@dataclass(frozen=True)
class PreparedTask:
    """The executor input of one container task and where its outputs will be written."""

    executor_input: dict[str, Any]
    output_parameter_types: dict[str, str]
    output_artifacts: dict[str, ArtifactOutput]  # declared outputs, metadata still empty


def build_executor_input(
    component: Mapping[str, Any],
    parameters: Mapping[str, Any],
    artifacts: Mapping[str, list[ArtifactOutput]],
    artifact_dir: str,
    parameters_dir: str,
) -> PreparedTask:
    """`parameters` and `artifacts` are the resolved, typed inputs (parameters without a value
    are absent). `artifact_dir` is the task root (KFP's driver provisions one per task): output
    artifacts go to `<artifact_dir>/<name>` and the executor output file there too, so that
    `dsl.get_uri(suffix)` (the directory of `outputs.outputFile` + suffix) is the task's; output
    parameter files go to `<parameters_dir>/<name>` (KFP: /tmp/kfp/outputs/<name>). Raises
    UnsafePath for an output name that is not one file name (upload refuses those; this is the
    last line of defence for specs stored before that check)."""
    input_artifact_defs = (component.get("inputDefinitions") or {}).get("artifacts") or {}
    output_defs = component.get("outputDefinitions") or {}
    for kind in ("parameters", "artifacts"):
        for name in output_defs.get(kind) or {}:
            if (problem := component_problem(name)) is not None:
                raise UnsafePath(f"output {kind[:-1]} name: {problem}")
    inputs: dict[str, Any] = {"parameterValues": dict(parameters)}
    if artifacts:
        inputs["artifacts"] = {
            name: {
                "artifacts": [
                    runtime_artifact(
                        artifact,
                        ((input_artifact_defs.get(name) or {}).get("artifactType") or {}).get(
                            "schemaVersion", ""
                        ),
                    )
                    for artifact in values
                ]
            }
            for name, values in artifacts.items()
        }
    output_parameter_types = {
        name: definition.get("parameterType", "")
        for name, definition in (output_defs.get("parameters") or {}).items()
    }
    declared: dict[str, ArtifactOutput] = {}
    output_artifacts: dict[str, Any] = {}
    for name, definition in (output_defs.get("artifacts") or {}).items():
        artifact_type = definition.get("artifactType") or {}
        artifact = ArtifactOutput(
            name=name,
            uri=os.path.join(artifact_dir, name),
            schema_title=artifact_type.get("schemaTitle", "system.Artifact"),
            metadata={},
        )
        declared[name] = artifact
        output_artifacts[name] = {
            "artifacts": [runtime_artifact(artifact, artifact_type.get("schemaVersion", ""))]
        }
    outputs: dict[str, Any] = {
        "parameters": {
            name: {"outputFile": os.path.join(parameters_dir, name)}
            for name in output_parameter_types
        },
        "artifacts": output_artifacts,
        "outputFile": os.path.join(artifact_dir, EXECUTOR_OUTPUT_FILE),
    }
    return PreparedTask(
        executor_input={"inputs": inputs, "outputs": outputs},
        output_parameter_types=output_parameter_types,
        output_artifacts=declared,
    )


# ---------------------------------------------------------------------------------------------
# Placeholders

_PLACEHOLDER = re.compile(r"\{\{\$(?:\.([^{}]*))?\}\}")
_IO_PLACEHOLDER = re.compile(
    r"""^(inputs|outputs)\.(parameters|artifacts)\[\s*(?:'([^']*)'|"([^"]*)")\s*\]"""
    r"""(?:\.([A-Za-z_]+))?$"""
)


@dataclass(frozen=True)
class RuntimeValues:
    """The values of KFP's runtime placeholders for one task (the `dsl.*_PLACEHOLDER` constants
    of the SDK), by placeholder name: `{{$.pipeline_job_name}}` is `values["pipeline_job_name"]`.
    Names: pipeline_job_name, pipeline_job_resource_name, pipeline_job_uuid, pipeline_task_name,
    pipeline_task_uuid, pipeline_root, pipeline_job_create_time_utc,
    pipeline_job_schedule_time_utc, workspace_path (see `orchestrator` for their values)."""

    values: Mapping[str, str]

    def substitute(self, text: str) -> str:
        """`text` with every runtime placeholder in it replaced (KFP's driver replaces an input
        only when it IS the placeholder; kfp.local also inside longer strings, as here, so that
        `"job-" + dsl.PIPELINE_JOB_ID_PLACEHOLDER` works)."""
        if "{{$." not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            value = self.values.get(match.group(1) or "")
            return match.group(0) if value is None else value

        return _PLACEHOLDER.sub(replace, text)


@dataclass(frozen=True)
class PlaceholderContext:
    """What the placeholders of one container task's command and args resolve to."""

    executor_input: dict[str, Any]
    runtime: RuntimeValues


def _to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _resolve_one(expression: str | None, context: PlaceholderContext) -> str | None:
    """The text for one `{{$...}}` placeholder, or None when it is not one we know."""
    executor_input = context.executor_input
    if expression is None:
        return json.dumps(executor_input)
    if expression in ("outputs.output_file", "outputMetadataUri"):
        return executor_input["outputs"]["outputFile"]
    if expression in context.runtime.values:
        return context.runtime.values[expression]
    match = _IO_PLACEHOLDER.match(expression.strip())
    if match is None:
        return None
    side, kind, quoted1, quoted2, attribute = match.groups()
    name = quoted1 if quoted1 is not None else quoted2
    section = executor_input.get(side) or {}
    if kind == "parameters":
        if side == "inputs":
            if attribute is not None:
                return None
            return _to_text(section.get("parameterValues", {}).get(name))
        if attribute == "output_file":
            parameter = section.get("parameters", {}).get(name)
            return parameter["outputFile"] if parameter else None
        return None
    artifact_list = (section.get("artifacts") or {}).get(name) or {}
    entries = artifact_list.get("artifacts") or []
    if not entries:
        return None
    first = entries[0]
    if attribute in ("path", "uri"):
        return first["uri"]  # local artifacts: the uri is the path
    if attribute == "metadata":
        return json.dumps(first.get("metadata") or {})
    if attribute is None:
        return json.dumps(first)
    return None


def substitute(text: str, context: PlaceholderContext) -> str:
    """Replace every known `{{$...}}` placeholder in `text`; unknown ones are left as they are."""

    def replace(match: re.Match[str]) -> str:
        resolved = _resolve_one(match.group(1), context)
        return match.group(0) if resolved is None else resolved

    return _PLACEHOLDER.sub(replace, text)


def _provided_inputs(executor_input: Mapping[str, Any]) -> set[str]:
    inputs = executor_input.get("inputs") or {}
    names = {k for k, v in (inputs.get("parameterValues") or {}).items() if v is not None}
    names |= {k for k, v in (inputs.get("artifacts") or {}).items() if v}
    return names


def _resolve_struct(node: Any, provided: set[str]) -> list[Any] | str | None:
    """Resolve a Concat / IfPresent placeholder structure into a string, a (nested) list of
    strings, or None (an IfPresent without a matching branch)."""
    if node is None or isinstance(node, str):
        return node
    if isinstance(node, list):
        return [_resolve_struct(item, provided) for item in node]
    if isinstance(node, dict) and len(node) == 1:
        key, body = next(iter(node.items()))
        if key == "Concat":
            parts = [_resolve_struct(item, provided) for item in body]
            return "".join(_flatten(parts))
        if key == "IfPresent":
            branch = body.get("Then") if body.get("InputName") in provided else body.get("Else")
            return _resolve_struct(branch, provided)
    raise ValueError(f"unsupported placeholder structure: {json.dumps(node)[:200]}")


def _flatten(items: Any) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    flat: list[str] = []
    for item in items:
        flat.extend(_flatten(item))
    return flat


def resolve_command(arguments: list[Any], context: PlaceholderContext) -> list[str]:
    """`command` + `args` with structural (Concat/IfPresent) and `{{$...}}` placeholders resolved."""
    provided = _provided_inputs(context.executor_input)
    resolved: list[str] = []
    for argument in arguments:
        if isinstance(argument, str) and argument.startswith(('{"Concat"', '{"IfPresent"')):
            try:
                structure = json.loads(argument)
            except json.JSONDecodeError:
                structure = argument
            pieces = _flatten(_resolve_struct(structure, provided))
        elif isinstance(argument, (dict, list)):
            pieces = _flatten(_resolve_struct(argument, provided))
        else:
            pieces = [str(argument)]
        resolved.extend(substitute(piece, context) for piece in pieces)
    return resolved


def substitute_inputs(text: str, parameters: Mapping[str, Any]) -> str:
    """`text` with each `{{$.inputs.parameters['x']}}` of an input in `parameters` replaced by
    its value (JSON text for a non-string)."""

    def replace(match: re.Match[str]) -> str:
        io = _IO_PLACEHOLDER.match((match.group(1) or "").strip())
        if io is None or io.group(1) != "inputs" or io.group(2) != "parameters" or io.group(5):
            return match.group(0)
        name = io.group(3) if io.group(3) is not None else io.group(4)
        if name not in parameters:
            return match.group(0)
        return _to_text(parameters[name])

    return _PLACEHOLDER.sub(replace, text) if "{{$" in text else text


def resolve_parameter_self_references(parameters: dict[str, Any]) -> dict[str, Any]:
    """String inputs may refer to other inputs of the same task (f-strings in the DSL compile to
    "{{$.inputs.parameters['pipelinechannel--x']}}-suffix"): substitute those."""
    return {
        name: substitute_inputs(value, parameters) if isinstance(value, str) else value
        for name, value in parameters.items()
    }


# ---------------------------------------------------------------------------------------------
# Executor output


def read_task_result(prepared: PreparedTask, task_root: Directory, parameter_files: Directory, run_dir: str) -> TaskResult:
    """Read back a finished task's outputs: the executor output file (parameter values and artifact
    metadata), plus parameters written only to their `outputFile`s.

    `task_root` (holding the executor output file) and `parameter_files` are the directories
    given to build_executor_input, opened before the task started: files are read through them
    without following links (a task may have replaced one with a link to a file of
    the server's). `run_dir` is the run's artifact directory, resolved: every artifact uri must
    resolve inside it. Raises TaskOutputError saying what is wrong. Blocking: call off the loop.
    """
    budget = _OutputBudget()
    text = budget.read("the executor output file", task_root, EXECUTOR_OUTPUT_FILE)
    try:
        parsed = json.loads(text) if text is not None else {}
    except (json.JSONDecodeError, RecursionError) as error:
        raise TaskOutputError(f"could not read the executor output file: {error}") from None
    executor_output = _json_object(parsed, "the executor output file")
    values = executor_output.get("parameterValues") or executor_output.get("parameters") or {}
    values = _json_object(values, "parameterValues in the executor output file")
    parameters: dict[str, Any] = {}
    missing: list[str] = []
    for name, parameter_type in prepared.output_parameter_types.items():
        if name in values:
            parameters[name] = cast_parameter(values[name], parameter_type)
            continue
        text = budget.read(f"output parameter file {name!r}", parameter_files, name)
        if text is None:
            missing.append(name)
        else:
            path = prepared.executor_input["outputs"]["parameters"][name]["outputFile"]
            parameters[name] = parse_output_parameter(text, parameter_type, path)
    if missing:
        raise TaskOutputError(
            "output parameter(s) not produced: " + ", ".join(repr(name) for name in missing)
        )
    written = _json_object(executor_output.get("artifacts") or {}, "artifacts in the executor output file")
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for name, declared in prepared.output_artifacts.items():
        entries = _json_object(written.get(name) or {}, f"artifacts[{name!r}]").get("artifacts") or []
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise TaskOutputError(f"artifacts[{name!r}].artifacts in the executor output file must be a list of objects")
        artifacts[name] = [
            ArtifactOutput(
                name=name,
                uri=_confined_uri(name, entry.get("uri") or declared.uri, run_dir),
                schema_title=declared.schema_title,
                metadata=_json_object(entry.get("metadata") or {}, f"artifacts[{name!r}] metadata"),
            )
            for entry in entries or [{}]
        ]
    # What the run keeps must fit a google.protobuf.Value, or no response could carry the run.
    kept = [(f"output parameter {name!r}", value) for name, value in parameters.items()]
    kept += [(f"the metadata of output artifact {a.name!r}", a.metadata) for entries in artifacts.values() for a in entries]
    for what, value in kept:
        if problem := json_values.problem(value):
            raise TaskOutputError(f"{what} {problem}")
    return TaskResult(output_parameters=parameters, output_artifacts=artifacts)


class _OutputBudget:
    """Reads a task's output files, at most MAX_TASK_OUTPUTS_BYTES for its executor output file
    and output parameter files together. Output parameters and artifact metadata are for small
    values, as in KFP: they travel in every message about the run. Large data belongs in an
    output artifact's file."""

    def __init__(self) -> None:
        self._left = MAX_TASK_OUTPUTS_BYTES

    def read(self, what: str, directory: Directory, *names: str) -> str | None:
        """The text of an output file below `directory` (never more than what is left of the
        budget is read); None when the task did not write it."""
        try:
            content = directory.read_bytes(*names, limit=self._left)
        except TooLarge as error:
            raise TaskOutputError(
                f"{what} is {error.size:,} bytes; a task's output parameters and artifact metadata may take"
                f" at most {MAX_TASK_OUTPUTS_BYTES:,} bytes together (write large data to an output artifact)"
            ) from None
        except (UnsafePath, OSError) as error:
            raise TaskOutputError(f"could not read an output file: {error}") from None
        if content is None:
            return None
        self._left -= len(content)
        return content.decode("utf-8", errors="replace")


def _json_object(value: Any, what: str) -> dict[str, Any]:
    """`value`, a parsed JSON value (null = absent), as an object; else TaskOutputError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaskOutputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _confined_uri(name: str, uri: Any, run_dir: str) -> str:
    """The local path of output artifact `name`'s `uri`: an absolute path (or file:// URI) that
    resolves, links followed, inside `run_dir`."""
    path = uri.removeprefix("file://") if isinstance(uri, str) else ""
    if not os.path.isabs(path) or "\0" in path or not inside(path, run_dir):
        raise TaskOutputError(
            f"output artifact {name!r} has uri {uri!r}, which is outside the run's artifact directory"
            f" {run_dir}; the local executor keeps every artifact of a run there"
        )
    return path
