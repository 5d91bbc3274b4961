"""Property-based fuzzing of every RPC: requests generated from the protos' descriptors, sent to
a real `kfpgrpc serve`, must never answer INTERNAL or UNKNOWN (a bug, or bytes the server could
not read), nor hang; afterwards health is SERVING and SQLite's integrity check passes.

Strategies follow the request messages' descriptors field by field: any nesting of messages,
enums with numbers they do not define, integers at their type's limits, Timestamps beyond their
range, google.protobuf.Value trees with NaN and Infinity, strings of 8 KB or odd characters, and
repeated fields. Fields whose text has a grammar (ids, filters, sorts, page tokens, cron
expressions, time zones, selectors, update masks) mix well-formed values, real ids of seeded
resources and mutations, so that the calls reach past the first check. Hypothesis is
derandomized and keeps no example database, so CI sees the same examples on every run.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfpgrpc.v1 import (
    common_pb2,
    event_pb2,
    experiment_pb2,
    experiment_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    recurring_run_pb2,
    recurring_run_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
)
from tests.support import struct

EXAMPLES_PER_RPC = 30
EXAMPLES_PER_RICH_RPC = 60  # requests with many fields that combine: creates, updates, lists
UNARY_DEADLINE = 30.0  # only turns a hang into a failure
STREAM_DEADLINE = 0.25  # a watch stays open: read what comes within this, then hang up
STREAM_MESSAGES = 3
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
Field = descriptor.FieldDescriptor
METHODS = [
    method
    for module in (experiment_pb2, pipeline_pb2, run_pb2, recurring_run_pb2, event_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


@dataclass
class Fuzzed:
    """A running `kfpgrpc serve`, a channel to it and the spec it runs."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    channel: grpc.Channel
    spec: dict[str, Any]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _start(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    # The log goes to a file: a pipe nobody reads would fill and block the server.
    process = subprocess.Popen(
        [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log.open("wb"), env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"server did not start: {line!r} {log.read_text()}")
    return process, line.removeprefix("listening on ").strip()


def _seed(channel: grpc.Channel, spec: dict[str, Any], suffix: str) -> dict[str, list[str]]:
    """One of each resource, so that generated ids can name real ones; each RPC's examples get
    their own, as they may delete them."""
    experiments = experiment_pb2_grpc.ExperimentServiceStub(channel)
    pipelines = pipeline_pb2_grpc.PipelineServiceStub(channel)
    runs = run_pb2_grpc.RunServiceStub(channel)
    recurring = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
    experiment = experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(
        experiment=experiment_pb2.Experiment(display_name=f"fuzzed-{suffix}")))
    pipeline = pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name=f"fuzzed-{suffix}")))
    version = pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
        pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))))
    reference = common_pb2.PipelineVersionReference(pipeline_id=pipeline.pipeline_id)
    run = runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
        display_name="fuzzed", pipeline_version_reference=reference, experiment_id=experiment.experiment_id)))
    recurring_run = recurring.CreateRecurringRun(recurring_run_pb2.CreateRecurringRunRequest(
        recurring_run=recurring_run_pb2.RecurringRun(
            display_name="fuzzed", pipeline_version_reference=reference, mode=recurring_run_pb2.RecurringRun.ENABLE,
            trigger=recurring_run_pb2.Trigger(cron_schedule=recurring_run_pb2.CronSchedule(cron="0 3 * * *")),
            artifacts=[common_pb2.ArtifactSelector(name="out", path="noop:out")],
        )))
    return {
        "experiment": [experiment.experiment_id],
        "pipeline": [pipeline.pipeline_id],
        "pipeline_version": [version.pipeline_version_id],
        "run": [run.run_id],
        "recurring_run": [recurring_run.recurring_run_id],
    }


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, compiled: dict[str, dict[str, Any]]) -> Iterator[Fuzzed]:
    directory = tmp_path_factory.mktemp("fuzz")
    log = directory / "server.log"
    process, address = _start(directory / "data", log)
    channel = grpc.insecure_channel(address)
    spec = compiled["instant-pipeline"]  # its task exits at once: generated runs cost little
    try:
        yield Fuzzed(process, directory / "data", log, channel, spec)
    finally:
        channel.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- strategies ------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "x" * 8192, "\x00", "../../etc", "€" * 3000, "%", "{", "\u202e", "a" * 257])
INT_LIMITS = {
    Field.TYPE_INT32: (-(2**31), 2**31 - 1), Field.TYPE_SINT32: (-(2**31), 2**31 - 1), Field.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    Field.TYPE_INT64: (-(2**63), 2**63 - 1), Field.TYPE_SINT64: (-(2**63), 2**63 - 1), Field.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    Field.TYPE_UINT32: (0, 2**32 - 1), Field.TYPE_FIXED32: (0, 2**32 - 1),
    Field.TYPE_UINT64: (0, 2**64 - 1), Field.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-3, 300), st.sampled_from([low, high, low + 1, high - 1]), st.integers(low, high)).filter(
        lambda n: low <= n <= high)


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 2.0**53, -(2.0**63), 1e308]))
NESTED = st.integers(1, 30).map(lambda levels: json.loads("[" * levels + "]" * levels))  # about json_values.MAX_DEPTH
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=20) | ODD_TEXT | NESTED,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
TIMESTAMP_SECONDS = st.one_of(
    integers(-(2**63), 2**63 - 1),
    st.sampled_from([-62135596800, -62135596801, 253402300799, 253402300800, 0, 1, 1_800_000_000]),
    st.integers(1_700_000_000, 1_900_000_000),
)


def time_zones() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Nope/Where"]), ODD_TEXT)


def crons() -> st.SearchStrategy[str]:
    expressions = ["0 3 * * *", "*/5 * * * *", "* * * * * *", "@daily", "@every 1h", "@every 0s", "@every 2562048h",
                   "61 3 * * *", "0 0 30 2 *", "CRON_TZ=UTC 0 3 * * *", "@reboot", "0 0 L * *", "1-5/0 * * * *"]
    return st.one_of(st.sampled_from(expressions), st.text(max_size=30), ODD_TEXT)


def selector_paths() -> st.SearchStrategy[str]:
    filters = ["pushed == 1", "accuracy >= 0.9 and not name matches \"^tmp\"", "(" * 40 + "a == 1" + ")" * 40,
               " and ".join(["a == 1"] * 120), "x in (1, 2", "name matches \"(a+)+$\"", "`raw` in tags"]
    return st.one_of(
        st.builds(lambda c, o, f: f"{c}:{o}[{f}]", st.sampled_from(["noop", "add", "x"]), st.sampled_from(["out", "model"]),
                  st.sampled_from(filters) | st.text(max_size=30)),
        st.text(max_size=40), ODD_TEXT,
    )


def filters() -> st.SearchStrategy[str]:
    keys = st.sampled_from(["display_name", "name", "created_at", "finished_at", "state", "storage_state", "status", "id",
                            "experiment_id", "description", "nope"])
    operations = st.one_of(st.sampled_from(["EQUALS", "NOT_EQUALS", "GREATER_THAN", "LESS_THAN_EQUALS", "IN", "IS_SUBSTRING"]),
                           integers(-(2**31), 2**31 - 1))
    values = st.one_of(
        st.builds(lambda v: {"string_value": v}, st.text(max_size=10) | ODD_TEXT),
        st.builds(lambda v: {"long_value": str(v)}, integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: {"int_value": v}, integers(-(2**31), 2**31 - 1)),
        st.builds(lambda v: {"timestamp_value": v}, st.sampled_from(["2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])),
        st.builds(lambda v: {"string_values": {"values": v}}, st.lists(st.text(max_size=5), max_size=600)),
        st.builds(lambda v: {"long_values": {"values": [str(n) for n in v]}}, st.lists(integers(-(2**63), 2**63 - 1), max_size=600)),
    )
    predicate = st.builds(lambda k, o, v: {"key": k, "operation": o, **v}, keys, operations, values)
    well_formed = st.builds(lambda p: json.dumps({"predicates": p}), st.lists(predicate, max_size=120))
    return st.one_of(well_formed, st.text(max_size=30), ODD_TEXT, st.just("[" * 10_000))


def page_tokens() -> st.SearchStrategy[str]:
    shapes = st.fixed_dictionaries({
        "list": st.sampled_from(["runs", "experiments", "pipelines", "recurring_runs", "x"]),
        "sort": st.sampled_from(["created_at", "display_name", "description", "run_id", "nope"]),
        "desc": st.booleans() | st.integers(0, 1),
        "filter": st.just("") | st.text(max_size=10),
        "scope": st.just([]) | st.lists(st.lists(st.text(max_size=5), max_size=3), max_size=2),
        "after": st.lists(JSON_VALUES, max_size=3) | JSON_VALUES,
    })
    encoded = shapes.map(lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).decode())
    return st.one_of(encoded, st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()), st.text(max_size=30), ODD_TEXT)


def _mutated(spec: dict[str, Any], path: list[int], value: Any) -> dict[str, Any]:
    """`spec` with one value replaced by `value`: the one reached by taking, at each level, the
    key numbered by the next element of `path` (modulo the number of keys), as far as it leads."""
    mutated = copy.deepcopy(spec)
    node: dict[str, Any] = mutated
    for step in path:
        key = sorted(node)[step % len(node)]
        if not isinstance(node[key], dict) or not node[key]:
            break
        node = node[key]
    else:
        key = "x"
    node[key] = value
    return mutated


def valid_request(message_type: descriptor.Descriptor, ids: dict[str, list[str]], spec: dict[str, Any]) -> Any:
    """A request that succeeds (or nearly): mutations of it reach past the first checks."""
    request = message_factory.GetMessageClass(message_type)()
    for field in message_type.fields:
        kind = field.name.removesuffix("_id")
        if field.type == Field.TYPE_STRING and not field.is_repeated and kind in ids:
            setattr(request, field.name, ids[kind][0])
    reference = common_pb2.PipelineVersionReference(pipeline_id=ids["pipeline"][0])
    trigger = recurring_run_pb2.Trigger(cron_schedule=recurring_run_pb2.CronSchedule(cron="0 3 * * *"))
    name = message_type.name
    if name == "CreateExperimentRequest":
        request.experiment.display_name = "fuzzed-experiment"
    elif name == "CreatePipelineRequest":
        request.pipeline.name = "fuzzed-pipeline"
    elif name == "CreatePipelineVersionRequest":
        request.pipeline_version.pipeline_spec.CopyFrom(struct(spec))
    elif name == "CreateRunRequest":
        request.run.CopyFrom(run_pb2.Run(display_name="fuzzed-run", pipeline_version_reference=reference))
    elif name == "CreateRecurringRunRequest":
        request.recurring_run.CopyFrom(recurring_run_pb2.RecurringRun(
            display_name="fuzzed-recurring-run", pipeline_version_reference=reference, trigger=trigger,
            mode=recurring_run_pb2.RecurringRun.ENABLE))
    elif name == "UpdateRecurringRunRequest":
        request.recurring_run.recurring_run_id = ids["recurring_run"][0]
        request.update_mask.paths.append("description")
    elif name == "BackfillRecurringRunRequest":
        request.start_time.FromSeconds(1_700_000_000)
        request.end_time.FromSeconds(1_700_864_000)
    return request


def _set(message: Any, field: Field, value: Any) -> None:
    """Set `field` of `message` to a generated value, whatever the field's kind."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        target.clear()
        for key, item in value.items():
            if field.message_type.fields_by_name["value"].message_type is not None:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        del getattr(message, field.name)[:]
        getattr(message, field.name).extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _with(base: Any, path: tuple[Field, ...], value: Any) -> Any:
    """A copy of `base` with the field at `path` set to `value` (its oneof siblings cleared)."""
    changed = type(base)()
    changed.CopyFrom(base)
    target = changed
    for field in path[:-1]:
        target = getattr(target, field.name)
    _set(target, path[-1], value)
    return changed


def _merged(base: Any, changes: Any) -> Any:
    merged = type(base)()
    merged.CopyFrom(base)
    merged.MergeFrom(changes)
    return merged


class Strategies:
    """A strategy per request message, from its descriptor; `ids` and `spec` seed the values."""

    def __init__(self, ids: dict[str, list[str]], spec: dict[str, Any]) -> None:
        self._ids = ids
        self._spec = spec

    def request(self, message_type: descriptor.Descriptor) -> st.SearchStrategy[Any]:
        """A valid request; one with a single field generated, which reaches the checks behind
        the others; one with many fields generated; or one generated entirely."""
        valid = valid_request(message_type, self._ids, self._spec)
        generated = self.message(message_type)
        one_field = st.sampled_from(self._leaves(message_type)).flatmap(
            lambda path: self._leaf(path[-1]).map(lambda value: _with(valid, path, value)))
        return st.one_of(st.just(valid), one_field, generated.map(lambda changes: _merged(valid, changes)), generated)

    def _leaves(self, message_type: descriptor.Descriptor, depth: int = 0) -> list[tuple[Field, ...]]:
        """Paths to every field that is set as a whole: scalars, repeated and map fields,
        well-known types, and messages nested deeper than a few levels."""
        paths: list[tuple[Field, ...]] = []
        for field in message_type.fields:
            nested = field.message_type
            if nested is None or field.is_repeated or self._well_known(nested) is not None or field.name == "pipeline_spec" or depth == 4:
                paths.append((field,))
            else:
                paths += [(field, *path) for path in self._leaves(nested, depth + 1)]
        return paths

    def _leaf(self, field: Field) -> st.SearchStrategy[Any]:
        return self._repeated(field, 0) if field.is_repeated else self._field(field, 0)

    def message(self, message_type: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
        cls = message_factory.GetMessageClass(message_type)
        special = self._well_known(message_type)
        if special is not None:
            return special
        if depth > 4:
            return st.just(cls())
        fields = {f.name: self._repeated(f, depth) if f.is_repeated else self._field(f, depth) for f in message_type.fields}
        return st.fixed_dictionaries({}, optional=fields).map(lambda values: self._build(cls, values))

    @staticmethod
    def _build(cls: Any, values: dict[str, Any]) -> Any:
        message = cls()
        for name, value in values.items():
            _set(message, cls.DESCRIPTOR.fields_by_name[name], value)
        return message

    def _repeated(self, field: Field, depth: int) -> st.SearchStrategy[Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = self._field(field.message_type.fields_by_name["key"], depth)
            value = self._field(field.message_type.fields_by_name["value"], depth + 1)
            return st.dictionaries(key, value, max_size=4)
        return st.lists(self._field(field, depth + 1), max_size=3)

    def _field(self, field: Field, depth: int) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            if field.name == "pipeline_spec":
                return self._specs()
            return self.message(field.message_type, depth + 1)
        if field.enum_type is not None:
            return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), integers(-(2**31), 2**31 - 1))
        if field.type == Field.TYPE_BOOL:
            return st.booleans()
        if field.type in (Field.TYPE_DOUBLE, Field.TYPE_FLOAT):
            return st.floats(width=32 if field.type == Field.TYPE_FLOAT else 64)
        if field.type in INT_LIMITS:
            return integers(*INT_LIMITS[field.type])
        if field.type == Field.TYPE_BYTES:
            return st.binary(max_size=20)
        return self._text(field)

    def _text(self, field: Field) -> st.SearchStrategy[str]:
        name = field.name
        if name.endswith("_id") or name in ("upstream_recurring_run_ids", "recurring_run_id"):
            kind = name.removesuffix("_ids").removesuffix("_id").removeprefix("upstream_")
            real = self._ids.get(kind, [])
            return st.one_of(st.sampled_from(real) if real else st.nothing(), st.just(""), st.text(max_size=20), ODD_TEXT)
        grammars = {
            "filter": filters(), "page_token": page_tokens(), "cron": crons(), "time_zone": time_zones(), "path": selector_paths(),
            "sort_by": st.one_of(st.sampled_from(["created_at desc", "name", "display_name ASC", "description", "x y z"]), ODD_TEXT),
            "paths": st.sampled_from(["description", "trigger", "trigger.cron_schedule.cron", "mode", "max_concurrency",
                                      "runtime_config.parameters", "overlap_policy", "status", "nope", "artifacts"]),
            "task_name": st.sampled_from(["noop", ""]) | ODD_TEXT,
            "pipeline_root": st.sampled_from(["", "/tmp", "file:///tmp/x", "s3://bucket", "relative"]) | ODD_TEXT,
        }
        return grammars.get(name, st.one_of(st.text(max_size=30), ODD_TEXT))

    def _well_known(self, message_type: descriptor.Descriptor) -> st.SearchStrategy[Any] | None:
        name = message_type.full_name
        cls = message_factory.GetMessageClass(message_type)
        if name == "google.protobuf.Timestamp":
            return st.builds(lambda s, n: cls(seconds=s, nanos=n), TIMESTAMP_SECONDS,
                             st.one_of(st.just(0), integers(-(2**31), 2**31 - 1), st.integers(0, 999_999_999)))
        if name == "google.protobuf.Value":
            return JSON_VALUES.map(lambda value: _value(cls, value))
        if name == "google.protobuf.Struct":
            return st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5).map(lambda value: _struct(cls, value))
        if name == "google.protobuf.Any":
            return st.just(cls())
        return None

    def _specs(self) -> st.SearchStrategy[Any]:
        mutated = st.builds(_mutated, st.just(self._spec), st.lists(st.integers(0, 50), max_size=8), JSON_VALUES)
        plain = st.one_of(st.just(self._spec), mutated, st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
        return plain.map(lambda value: _struct(struct_pb2.Struct, value))


def _value(cls: Any, value: Any) -> Any:
    message = cls()
    if value is None:
        message.null_value = 0
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, list):
        message.list_value.SetInParent()  # also when empty
        message.list_value.values.extend(_value(cls, item) for item in value)
    else:
        message.struct_value.SetInParent()
        for key, item in value.items():
            message.struct_value.fields[key].CopyFrom(_value(cls, item))
    return message


def _struct(cls: Any, value: dict[str, Any]) -> Any:
    message = cls()
    for key, item in value.items():
        message.fields[key].CopyFrom(_value(struct_pb2.Value, item))
    return message


# -- the test --------------------------------------------------------------------------------------


def _call(fuzzed: Fuzzed, method: descriptor.MethodDescriptor, request: Any) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    serialize, deserialize = type(request).SerializeToString, response_class.FromString
    try:
        if method.server_streaming:
            stream = fuzzed.channel.unary_stream(path, serialize, deserialize)(request, timeout=STREAM_DEADLINE)
            try:
                for count, _ in enumerate(stream, 1):
                    if count >= STREAM_MESSAGES:
                        break
            finally:
                stream.cancel()
        else:
            fuzzed.channel.unary_unary(path, serialize, deserialize)(request, timeout=UNARY_DEADLINE)
    except grpc.RpcError as error:
        code = error.code()
        if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED) and method.server_streaming:
            return  # we hung up, or the watch stayed open: both are fine
        assert code not in NEVER and code != grpc.StatusCode.DEADLINE_EXCEEDED, (
            f"{method.name} answered {code.name}: {error.details()}\nrequest: {str(request)[:3000]}\nserver log:\n{fuzzed.log_tail()}"
        )
        # RESOURCE_EXHAUSTED here would be the client refusing an oversized status trailer.
        assert code != grpc.StatusCode.RESOURCE_EXHAUSTED, f"{method.name}: {error.details()}"


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_no_generated_request_gets_internal_or_unknown(fuzzed: Fuzzed, method: descriptor.MethodDescriptor) -> None:
    strategies = Strategies(_seed(fuzzed.channel, fuzzed.spec, method.name), fuzzed.spec)

    rich = method.name.startswith(("Create", "Update", "List", "Backfill"))
    @settings(max_examples=EXAMPLES_PER_RICH_RPC if rich else EXAMPLES_PER_RPC, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=strategies.request(method.input_type))
    def call(request: Any) -> None:
        _call(fuzzed, method, request)

    call()
    health = health_pb2_grpc.HealthStub(fuzzed.channel).Check(health_pb2.HealthCheckRequest(), timeout=UNARY_DEADLINE)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert fuzzed.process.poll() is None, fuzzed.log_tail()
    with sqlite3.connect(fuzzed.data_dir / "kfpgrpc.db") as database:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database.close()
