"""Validation of compiled KFP pipelines (the PipelineSpec IR) when they are uploaded.

The schema comes from the `kfp-pipeline-spec` protos; on top of it we check what the KFP backend
would otherwise only discover when a run starts: references between tasks, components and
executors, dependency cycles, recursive sub-pipelines, parameter types and defaults, and that
conditions and parameter expression selectors compile as CEL.
Only `kfp.pipeline_spec` is imported, never the `kfp` SDK.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from kfpgrpc.bounds import MAX_DAG_DEPTH, MAX_PIPELINE_INPUTS, MAX_TASKS
from kfpgrpc.errors import FieldViolation, InvalidArgument
from kfpgrpc.executor.cel import CelError, compile_condition, compile_selector
from kfpgrpc.kfp_ir import pipeline_spec_pb2


@dataclass(frozen=True)
class PipelineInput:
    """One input parameter of a pipeline (`root.inputDefinitions.parameters`)."""

    name: str
    parameter_type: str
    default: Any
    optional: bool


@dataclass(frozen=True)
class PipelineSpecInfo:
    """What the API needs from a valid pipeline spec; `spec` is the bare PipelineSpec dict."""

    name: str
    description: str
    inputs: dict[str, PipelineInput]
    spec: dict[str, Any]


_MessageT = TypeVar("_MessageT", bound=Message)
# Edges of a graph for cycle search: node -> [(target node, field path of the reference)].
_Edges = Mapping[str, Sequence[tuple[str, str]]]

_SCHEMA_VERSION = re.compile(r"2\.\d+\.\d+")
# Map keys written as `.key` in field paths; any other key is written `["key"]`, JSON-quoted.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
MAX_NAME_BYTES = 255  # a name becomes a file name: NAME_MAX of Linux file systems
_PARAMETER_TYPES = {
    number: name
    for name, number in pipeline_spec_pb2.ParameterType.ParameterTypeEnum.items()
    if number != pipeline_spec_pb2.ParameterType.PARAMETER_TYPE_ENUM_UNSPECIFIED
}
_PARAMETER_TYPE_CHOICES = ", ".join(_PARAMETER_TYPES.values())
# The Value kind a default must have, per parameter type. TASK_FINAL_STATUS and TASK_CONFIG are
# filled in by the backend, so their defaults are not checked.
_DEFAULT_KINDS = {
    "NUMBER_DOUBLE": ("number_value", "a number"),
    "NUMBER_INTEGER": ("number_value", "an integer"),
    "STRING": ("string_value", "a string"),
    "BOOLEAN": ("bool_value", "true or false"),
    "LIST": ("list_value", "a list"),
    "STRUCT": ("struct_value", "an object"),
}
# JSON shapes of scalar fields; every scalar type not listed is an integer type.
_SCALAR_SHAPES = {
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BYTES: "a base64 string",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_FLOAT: "a number",
}
_WELL_KNOWN_SHAPES = {
    "google.protobuf.Struct": "an object",
    "google.protobuf.ListValue": "a list",
    "google.protobuf.Value": "a JSON value",
    "google.protobuf.Duration": 'a duration such as "30s"',
}


def validate_pipeline_spec(spec: object, field: str) -> PipelineSpecInfo:
    """Check a compiled pipeline; raise InvalidArgument naming every bad field under `field`.

    `spec` is the bare PipelineSpec dict or the `{"pipeline_spec": ..., "platform_spec": ...}`
    wrapper the KFP API server stores when a platform spec exists.
    """
    pipeline_spec, spec_field, platform_spec = _unwrap(spec, field)
    violations: list[FieldViolation] = []
    parsed = _parse(pipeline_spec, pipeline_spec_pb2.PipelineSpec, spec_field, violations)
    if platform_spec is not None:
        _parse(platform_spec, pipeline_spec_pb2.PlatformSpec, f"{field}.platform_spec", violations)
    if parsed is not None:
        # ParseDict accepts the proto field name as well as the JSON one.
        deployment_spec = pipeline_spec.get("deploymentSpec", pipeline_spec.get("deployment_spec"))
        violations += _StructureChecker(parsed, spec_field).check(deployment_spec)
    if violations or parsed is None:
        raise InvalidArgument(violations)
    return PipelineSpecInfo(
        name=parsed.pipeline_info.name,
        description=parsed.pipeline_info.description,
        inputs=_inputs(parsed.root),
        spec=pipeline_spec,
    )


def platform_spec_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The kfp-kubernetes PlatformSpec of a stored spec document (`{"pipeline_spec": ...,
    "platform_spec": ...}` when it has one), or {}."""
    if "pipeline_spec" in document:
        return dict(document.get("platform_spec") or {})
    return {}


def task_names(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(task_id, display_name) of every task, those inside sub-pipelines included; a task id is
    the task's path in the DAG, e.g. "outer.train"."""
    components = spec.get("components") or {}
    found: list[tuple[str, str]] = []

    def walk(dag: dict[str, Any], prefix: str) -> None:
        for name, task in (dag.get("tasks") or {}).items():
            task_id = prefix + name
            found.append((task_id, (task.get("taskInfo") or {}).get("name") or name))
            component = components.get((task.get("componentRef") or {}).get("name", "")) or {}
            if component.get("dag"):
                walk(component["dag"], task_id + ".")

    walk((spec.get("root") or {}).get("dag") or {}, "")
    return found


def _unwrap(spec: object, field: str) -> tuple[dict[str, Any], str, object]:
    """The bare pipeline spec, its field path, and the platform spec if `spec` is wrapped."""
    pipeline_spec = _require_spec_object(spec, field)
    if "pipeline_spec" not in pipeline_spec:  # PipelineSpec has no such field: not wrapped
        return pipeline_spec, field, None
    extra_keys = sorted(pipeline_spec.keys() - {"pipeline_spec", "platform_spec"})
    if extra_keys:
        raise InvalidArgument(
            [
                FieldViolation(
                    f"{field}{_key(key)}",
                    "is not allowed next to pipeline_spec; "
                    "a wrapped spec holds only pipeline_spec and platform_spec",
                )
                for key in extra_keys
            ]
        )
    inner_field = f"{field}.pipeline_spec"
    return (
        _require_spec_object(pipeline_spec["pipeline_spec"], inner_field),
        inner_field,
        pipeline_spec.get("platform_spec"),
    )


def _require_spec_object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument.field(
            path, f"must be an object holding a compiled pipeline spec, got {_describe(value)}"
        )
    if not value:
        raise InvalidArgument.field(path, "is required: expected a compiled pipeline spec")
    return value


def _parse(
    value: object, message_class: type[_MessageT], path: str, violations: list[FieldViolation]
) -> _MessageT | None:
    """Parse `value` as `message_class`, rejecting unknown fields; on failure add a violation."""
    try:
        return json_format.ParseDict(value, message_class())
    except json_format.ParseError as error:
        # ParseError's text lacks map keys in some paths; find the bad field ourselves.
        schema_name = message_class.DESCRIPTOR.name
        violations.append(
            _find_schema_violation(value, message_class.DESCRIPTOR, path)
            or FieldViolation(path, f"does not match the {schema_name} schema: {error}")
        )
        return None


def _find_schema_violation(
    value: object, message_type: Descriptor, path: str
) -> FieldViolation | None:
    """The first place where `value` does not fit `message_type`, explained; None if it fits."""
    if not isinstance(value, dict):
        return FieldViolation(path, f"must be an object, got {_describe(value)}")
    fields = {field.json_name: field for field in message_type.fields}
    fields.update(message_type.fields_by_name)
    oneof_keys: dict[str, str] = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(f.json_name for f in message_type.fields))
            return FieldViolation(
                f"{path}{_key(key)}", f"is not a field of {message_type.name}; known fields are {known}"
            )
        if item is None:  # ParseDict treats null as "not set"
            continue
        if field.containing_oneof is not None:
            other_key = oneof_keys.setdefault(field.containing_oneof.name, key)
            if other_key != key:
                return FieldViolation(
                    path, f"sets both {other_key} and {key}; only one of them is allowed"
                )
        violation = _find_field_violation(item, field, f"{path}.{key}")
        if violation is not None:
            return violation
    return None


def _find_field_violation(
    value: object, field: FieldDescriptor, path: str
) -> FieldViolation | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            return FieldViolation(path, f"must be an object, got {_describe(value)}")
        value_field = field.message_type.fields_by_name["value"]
        entries: Iterable[tuple[str, object]] = (
            (f"{path}{_key(key)}", entry) for key, entry in value.items()
        )
    elif field.is_repeated:
        if not isinstance(value, list):
            return FieldViolation(path, f"must be a list, got {_describe(value)}")
        value_field = field
        entries = ((f"{path}[{index}]", entry) for index, entry in enumerate(value))
    else:
        return _find_value_violation(value, field, path)
    for entry_path, entry in entries:
        violation = _find_value_violation(entry, value_field, entry_path)
        if violation is not None:
            return violation
    return None


def _find_value_violation(
    value: object, field: FieldDescriptor, path: str
) -> FieldViolation | None:
    """Check one value of `field` (one element if the field is repeated)."""
    message_type = field.message_type
    if message_type is not None and message_type.full_name not in _WELL_KNOWN_SHAPES:
        return _find_schema_violation(value, message_type, path)
    # Scalars and well-known types: let ParseDict judge this value alone.
    holder = message_factory.GetMessageClass(field.containing_type)()
    try:
        json_format.ParseDict({field.name: [value] if field.is_repeated else value}, holder)
    except json_format.ParseError:
        return FieldViolation(path, f"must be {_field_shape(field)}, got {_describe(value)}")
    return None


def _field_shape(field: FieldDescriptor) -> str:
    if field.enum_type is not None:
        return "one of " + ", ".join(field.enum_type.values_by_name)
    if field.message_type is not None:
        return _WELL_KNOWN_SHAPES[field.message_type.full_name]
    return _SCALAR_SHAPES.get(field.type, "an integer")


def _describe(value: object) -> str:
    """A short rendering of a JSON value for error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    # Struct and Value hold every number as a double; show 3, not 3.0, as the user wrote it.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _StructureChecker:
    """Checks a parsed PipelineSpec beyond its schema, collecting every violation."""

    def __init__(self, spec: pipeline_spec_pb2.PipelineSpec, path: str) -> None:
        self._spec = spec
        self._path = path
        self._violations: list[FieldViolation] = []
        # None when deploymentSpec is malformed: its violation is reported, references are not.
        self._executors: Mapping[str, Any] | None = None
        # DAG component -> the components its tasks run, for the recursion check.
        self._component_refs: dict[str, list[tuple[str, str]]] = {}

    def check(self, deployment_spec: object) -> list[FieldViolation]:
        self._check_header()
        self._check_deployment_spec(deployment_spec)
        root_refs = self._check_root()
        for name in sorted(self._spec.components):
            self._check_component(name, self._spec.components[name])
        starts = sorted({component for component, _ in root_refs})
        cycles = _find_cycles(self._component_refs, starts)
        for cycle, ref_path in cycles:
            path_text = " -> ".join([cycle[-1], *cycle])
            self._report(
                ref_path, f"makes DAG components recurse: {path_text} (each runs the next)"
            )
        if not cycles:
            self._check_expanded_size(root_refs)
        return self._violations

    def _check_expanded_size(self, root_refs: list[tuple[str, str]]) -> None:
        """A sub-pipeline used twice at each of N levels runs 2**N tasks, and each level is a
        nested walk when the run executes: refuse more than MAX_TASKS tasks once unfolded, or DAGs
        nested deeper than MAX_DAG_DEPTH. Each DAG component is measured once, without recursion."""
        sizes: dict[str, tuple[int, int]] = {}  # component -> (tasks unfolded, DAG depth)
        stack = [component for component, _ in root_refs]
        while stack:
            component = stack[-1]
            refs = self._component_refs.get(component, ())
            pending = [ref for ref, _ in refs if ref not in sizes]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            tasks = sum(1 + sizes[ref][0] for ref, _ in refs)
            depth = 1 + max((sizes[ref][1] for ref, _ in refs), default=0) if component in self._component_refs else 0
            sizes[component] = (min(tasks, MAX_TASKS + 1), depth)
        tasks = sum(1 + sizes[ref][0] for ref, _ in root_refs)
        depth = 1 + max((sizes[ref][1] for ref, _ in root_refs), default=0)
        if tasks > MAX_TASKS:
            self._report(
                "root.dag",
                f"expands to more than {MAX_TASKS:,} tasks once its sub-pipelines are unfolded;"
                " a run may have at most that many",
            )
        if depth > MAX_DAG_DEPTH:
            self._report("root.dag", f"nests DAGs {depth} deep; at most {MAX_DAG_DEPTH} levels are allowed")

    def _report(self, path: str, description: str) -> None:
        self._violations.append(FieldViolation(f"{self._path}.{path}", description))

    def _check_header(self) -> None:
        version = self._spec.schema_version
        if not version:
            self._report("schemaVersion", "is required")
        elif not _SCHEMA_VERSION.fullmatch(version):
            self._report(
                "schemaVersion", f"must be a 2.x schema version such as 2.1.0, got {version!r}"
            )
        if not self._spec.pipeline_info.name.strip():
            self._report("pipelineInfo.name", "is required")

    def _check_deployment_spec(self, deployment_spec: object) -> None:
        if deployment_spec is None:
            self._executors = {}
            return
        parsed = _parse(
            deployment_spec,
            pipeline_spec_pb2.PipelineDeploymentConfig,
            f"{self._path}.deploymentSpec",
            self._violations,
        )
        if parsed is None:
            return
        self._executors = parsed.executors
        for label in sorted(parsed.executors):
            self._check_name(f"deploymentSpec.executors{_key(label)}", label)
            if parsed.executors[label].WhichOneof("spec") is None:
                self._report(
                    f"deploymentSpec.executors{_key(label)}",
                    "must set one of container, importer, resolver, customJob",
                )

    def _check_root(self) -> list[tuple[str, str]]:
        """Check the root component; return the components its tasks run."""
        if not self._spec.HasField("root"):
            self._report("root", "is required")
            return []
        root = self._spec.root
        self._check_parameters("root", root)
        if (count := len(root.input_definitions.parameters)) > MAX_PIPELINE_INPUTS:
            # Each is a run parameter, in every response about the run (kfpgrpc.bounds).
            self._report(
                "root.inputDefinitions.parameters",
                f"declares {count:,} input parameters; a pipeline may have at most {MAX_PIPELINE_INPUTS:,}",
            )
        if not root.HasField("dag"):
            self._report("root.dag", "is required: the root of a pipeline is a DAG of tasks")
            return []
        if not root.dag.tasks:
            self._report("root.dag.tasks", "must contain at least one task")
        return self._check_dag("root.dag", root.dag)

    def _check_component(self, name: str, component: pipeline_spec_pb2.ComponentSpec) -> None:
        path = f"components{_key(name)}"
        self._check_name(path, name)
        self._check_parameters(path, component)
        implementation = component.WhichOneof("implementation")
        if implementation == "dag":
            self._component_refs[name] = self._check_dag(f"{path}.dag", component.dag)
        elif implementation == "executor_label":
            label = component.executor_label
            if self._executors is not None and label not in self._executors:
                self._report(
                    f"{path}.executorLabel",
                    f"refers to executor {label!r}, which is not in deploymentSpec.executors",
                )
        else:
            self._report(path, "must set either dag or executorLabel")

    def _check_dag(self, path: str, dag: pipeline_spec_pb2.DagSpec) -> list[tuple[str, str]]:
        """Check one DAG level; return the (component, field path) of each valid componentRef."""
        tasks = dag.tasks
        component_refs: list[tuple[str, str]] = []
        dependencies: dict[str, list[tuple[str, str]]] = {}
        for task_name in sorted(tasks):
            task = tasks[task_name]
            task_path = f"{path}.tasks{_key(task_name)}"
            self._check_name(task_path, task_name, task=True)
            for name_path, name in _task_input_names(task):
                self._check_name(f"{task_path}.{name_path}", name)
            self._check_expressions(task_path, task)
            ref_path = f"{task_path}.componentRef.name"
            component = task.component_ref.name
            if not component:
                self._report(ref_path, "is required")
            elif component not in self._spec.components:
                self._report(
                    ref_path, f"refers to component {component!r}, which is not in components"
                )
            else:
                component_refs.append((component, ref_path))
            dependencies[task_name] = []
            for index, dependency in enumerate(task.dependent_tasks):
                dependency_path = f"{task_path}.dependentTasks[{index}]"
                if self._check_task_ref(dependency_path, dependency, tasks):
                    dependencies[task_name].append((dependency, dependency_path))
            for producer_path, producer in _task_producers(task):
                self._check_task_ref(f"{task_path}.{producer_path}", producer, tasks)
        for output_path, producer in _dag_output_producers(dag.outputs):
            self._check_task_ref(f"{path}.outputs.{output_path}", producer, tasks)
        for name_path, name in _dag_output_names(dag.outputs):
            self._check_name(f"{path}.outputs.{name_path}", name)
        for cycle, dependency_path in _find_cycles(dependencies, sorted(tasks)):
            path_text = " -> ".join([cycle[-1], *cycle])
            self._report(
                dependency_path,
                f"closes a dependency cycle: {path_text} (each task depends on the next)",
            )
        return component_refs

    def _check_expressions(self, path: str, task: pipeline_spec_pb2.PipelineTaskSpec) -> None:
        """The task's condition and its inputs' selectors must compile: KFP's driver compiles them
        only when the task runs, and fails the run then (the SDK compiles `text == "it's"` to
        CEL that does not parse)."""
        condition = task.trigger_policy.condition
        if condition:  # empty: no condition, as in KFP's driver
            try:
                compile_condition(condition)
            except CelError as error:
                self._report(f"{path}.triggerPolicy.condition", error.problem)
        parameters = task.inputs.parameters
        for name in sorted(parameters):
            selector = parameters[name].parameter_expression_selector
            if selector:
                try:
                    compile_selector(selector)
                except CelError as error:
                    self._report(f"{path}.inputs.parameters{_key(name)}.parameterExpressionSelector", error.problem)

    def _check_task_ref(self, path: str, task_name: str, tasks: Mapping[str, Any]) -> bool:
        if not task_name:
            self._report(path, "is required")
            return False
        if task_name not in tasks:
            self._report(path, f"refers to task {task_name!r}, which is not in the same DAG")
            return False
        return True

    def _check_name(self, path: str, name: str, task: bool = False) -> None:
        problem = _name_problem(name, task)
        if problem is not None:
            self._report(path, problem)

    def _check_parameters(self, path: str, component: pipeline_spec_pb2.ComponentSpec) -> None:
        for side, definitions in (
            ("inputDefinitions", component.input_definitions),
            ("outputDefinitions", component.output_definitions),
        ):
            for kind in ("parameters", "artifacts"):
                for name in sorted(getattr(definitions, kind)):
                    self._check_name(f"{path}.{side}.{kind}{_key(name)}", name)
        outputs = component.output_definitions.parameters
        for name in sorted(outputs):
            self._check_parameter_type(
                f"{path}.outputDefinitions.parameters{_key(name)}", outputs[name].parameter_type
            )
        inputs = component.input_definitions.parameters
        for name in sorted(inputs):
            parameter_path = f"{path}.inputDefinitions.parameters{_key(name)}"
            parameter = inputs[name]
            type_name = self._check_parameter_type(parameter_path, parameter.parameter_type)
            if type_name is not None and parameter.HasField("default_value"):
                self._check_default(
                    f"{parameter_path}.defaultValue", type_name, parameter.default_value
                )

    def _check_parameter_type(self, path: str, parameter_type: int) -> str | None:
        """The parameter type's name, or None after reporting it as missing or unknown."""
        type_name = _PARAMETER_TYPES.get(parameter_type)
        if type_name is None:
            problem = "is required" if parameter_type == 0 else f"is unknown ({parameter_type})"
            self._report(
                f"{path}.parameterType", f"{problem}; must be one of {_PARAMETER_TYPE_CHOICES}"
            )
        return type_name

    def _check_default(self, path: str, type_name: str, default: Value) -> None:
        kind = default.WhichOneof("kind")
        if type_name not in _DEFAULT_KINDS or kind == "null_value":  # null: no default
            return
        expected_kind, shape = _DEFAULT_KINDS[type_name]
        fractional = type_name == "NUMBER_INTEGER" and not default.number_value.is_integer()
        if kind != expected_kind or fractional:
            self._report(
                path,
                f"must be {shape} to match parameterType {type_name}, "
                f"got {_describe(json_format.MessageToDict(default))}",
            )


def _key(name: str) -> str:
    """The field path segment of the map key `name`: `.name`, or `["name"]` when `name` is not
    plain (a name such as `../x` or `a.b` could not be told from the path around it)."""
    if _PLAIN_KEY.fullmatch(name):
        return f".{name}"
    return f"[{json.dumps(name, ensure_ascii=False)}]"


def _name_problem(name: str, task: bool) -> str | None:
    """Why `name` cannot be a name in a pipeline, None if it can. Task, component, executor,
    parameter and artifact names become file and directory names (a task's artifact directory
    `<run>/<task id>`, its output files `<outputs>/parameters/<name>`, `<task dir>/<artifact>`;
    KFP's backend builds `<pipeline_root>/<pipeline>/<run>/<task>/<output>` alike), so they must
    be one harmless file name. Task names also must not hold "." (it joins the task id
    `outer.inner`). What the kfp SDK compiles (`comp-add`, `for-loop-2`, `pipelinechannel--x`,
    `Output`) always passes; display names (`taskInfo.name`) are not names in this sense."""
    if not name:
        return "must not be empty: names become file and directory names"
    if "/" in name or "\\" in name:
        return 'must not contain "/" or "\\": names become file and directory names'
    if name == "." or ".." in name:
        return 'must not be "." or contain "..": names become file and directory names'
    if task and "." in name:
        return 'must not contain ".": it separates the names in a task id such as outer.inner'
    control = next((char for char in name if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        return f"must not contain control characters (found U+{ord(control):04X}): names become file names"
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_BYTES} bytes in UTF-8, got {size}: names become file names"
    return None


def _task_input_names(task: pipeline_spec_pb2.PipelineTaskSpec) -> Iterator[tuple[str, str]]:
    """(path relative to the task, name) of each input name the task defines or refers to."""
    for kind in ("parameters", "artifacts"):
        inputs = getattr(task.inputs, kind)
        for name in sorted(inputs):
            path = f"inputs.{kind}{_key(name)}"
            yield path, name
            source = inputs[name]
            which = source.WhichOneof("kind")
            if which is None or not which.startswith(("component_input_", "task_output_")):
                continue
            field, value = source.DESCRIPTOR.fields_by_name[which], getattr(source, which)
            if field.message_type is None:  # componentInputParameter/-Artifact: the name itself
                yield f"{path}.{field.json_name}", value
            else:  # taskOutputParameter/-Artifact: the producer's output key
                key = value.DESCRIPTOR.fields_by_name[f"output_{kind[:-1]}_key"]
                yield f"{path}.{field.json_name}.{key.json_name}", getattr(value, key.name)


def _dag_output_names(outputs: pipeline_spec_pb2.DagOutputsSpec) -> Iterator[tuple[str, str]]:
    """(path relative to dag.outputs, name) of each output name a DAG defines or takes."""
    for name in sorted(outputs.parameters):
        path = f"parameters{_key(name)}"
        yield path, name
        parameter = outputs.parameters[name]
        if parameter.HasField("value_from_parameter"):
            yield f"{path}.valueFromParameter.outputParameterKey", parameter.value_from_parameter.output_parameter_key
        for index, selector in enumerate(parameter.value_from_oneof.parameter_selectors):
            yield f"{path}.valueFromOneof.parameterSelectors[{index}].outputParameterKey", selector.output_parameter_key
    for name in sorted(outputs.artifacts):
        path = f"artifacts{_key(name)}"
        yield path, name
        for index, selector in enumerate(outputs.artifacts[name].artifact_selectors):
            yield f"{path}.artifactSelectors[{index}].outputArtifactKey", selector.output_artifact_key


def _task_producers(task: pipeline_spec_pb2.PipelineTaskSpec) -> Iterator[tuple[str, str]]:
    """(path relative to the task, task name) of each sibling task whose output the task reads."""
    parameters = task.inputs.parameters
    for name in sorted(parameters):
        parameter = parameters[name]
        kind = parameter.WhichOneof("kind")
        if kind == "task_output_parameter":
            yield (
                f"inputs.parameters{_key(name)}.taskOutputParameter.producerTask",
                parameter.task_output_parameter.producer_task,
            )
        elif kind == "task_final_status":
            yield (
                f"inputs.parameters{_key(name)}.taskFinalStatus.producerTask",
                parameter.task_final_status.producer_task,
            )
    artifacts = task.inputs.artifacts
    for name in sorted(artifacts):
        if artifacts[name].WhichOneof("kind") == "task_output_artifact":
            yield (
                f"inputs.artifacts{_key(name)}.taskOutputArtifact.producerTask",
                artifacts[name].task_output_artifact.producer_task,
            )


def _dag_output_producers(outputs: pipeline_spec_pb2.DagOutputsSpec) -> Iterator[tuple[str, str]]:
    """(path relative to dag.outputs, task name) of each task a DAG output is taken from."""
    for name in sorted(outputs.parameters):
        parameter = outputs.parameters[name]
        if parameter.HasField("value_from_parameter"):
            yield (
                f"parameters{_key(name)}.valueFromParameter.producerSubtask",
                parameter.value_from_parameter.producer_subtask,
            )
        for index, selector in enumerate(parameter.value_from_oneof.parameter_selectors):
            yield (
                f"parameters{_key(name)}.valueFromOneof.parameterSelectors[{index}].producerSubtask",
                selector.producer_subtask,
            )
    for name in sorted(outputs.artifacts):
        for index, artifact_selector in enumerate(outputs.artifacts[name].artifact_selectors):
            yield (
                f"artifacts{_key(name)}.artifactSelectors[{index}].producerSubtask",
                artifact_selector.producer_subtask,
            )


def _find_cycles(edges: _Edges, starts: Iterable[str]) -> list[tuple[list[str], str]]:
    """Cycles reachable from `starts`, each as (its nodes, path of the edge back to the first).

    Iterative depth-first search, so a DAG with thousands of tasks cannot hit the recursion limit.
    """
    cycles: list[tuple[list[str], str]] = []
    finished: set[str] = set()
    for start in starts:
        if start in finished:
            continue
        stack = [start]
        on_stack = {start}
        pending_edges = [iter(edges.get(start, ()))]
        while pending_edges:
            for target, edge_path in pending_edges[-1]:
                if target in on_stack:
                    cycles.append((stack[stack.index(target) :], edge_path))
                elif target not in finished:
                    stack.append(target)
                    on_stack.add(target)
                    pending_edges.append(iter(edges.get(target, ())))
                    break
            else:
                node = stack.pop()
                on_stack.discard(node)
                finished.add(node)
                pending_edges.pop()
    return cycles


def _inputs(root: pipeline_spec_pb2.ComponentSpec) -> dict[str, PipelineInput]:
    parameters = root.input_definitions.parameters
    inputs: dict[str, PipelineInput] = {}
    for name in sorted(parameters):
        parameter = parameters[name]
        type_name = _PARAMETER_TYPES[parameter.parameter_type]
        has_default = parameter.HasField("default_value")
        default = json_format.MessageToDict(parameter.default_value) if has_default else None
        # JSON (and the Struct our API receives) has only floats; integer defaults are integral.
        if type_name == "NUMBER_INTEGER" and isinstance(default, float):
            default = int(default)
        inputs[name] = PipelineInput(name, type_name, default, parameter.is_optional or has_default)
    return inputs
