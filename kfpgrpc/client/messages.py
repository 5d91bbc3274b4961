"""Building request messages from plain Python values, checked before anything is sent."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from os import PathLike
from pathlib import Path
from typing import Any, TypedDict

from google.protobuf import struct_pb2, timestamp_pb2

from kfpgrpc.client.errors import KfpGrpcError
from kfpgrpc.spec_files import spec_from_text
from kfpgrpc.v1 import common_pb2, recurring_run_pb2

PipelineSource = str | PathLike[str] | Mapping[str, Any] | Callable[..., Any]
"""A compiled pipeline file (YAML or JSON), a compiled spec as a dict, or a @dsl.pipeline function."""

TimeValue = datetime | str
"""An aware datetime, or an ISO 8601 string; a naive one is read as UTC."""

_FILTER_OPERATIONS = {
    "": "EQUALS", "ne": "NOT_EQUALS", "gt": "GREATER_THAN", "ge": "GREATER_THAN_EQUALS",
    "lt": "LESS_THAN", "le": "LESS_THAN_EQUALS", "in": "IN", "contains": "IS_SUBSTRING",
}


def kfp_filter(**conditions: Any) -> str:
    """KFP's JSON list filter from keyword conditions, AND-ed: `key=value` is EQUALS, and a
    suffix picks another operation: `__ne`, `__gt`, `__ge`, `__lt`, `__le`, `__in` (a list),
    `__contains` (IS_SUBSTRING). Values: strings (enum keys take names such as "RUNNING"),
    integers (Unix seconds for time keys) or datetimes.

    >>> kfp_filter(display_name__contains="nightly", state__in=["RUNNING", "PENDING"])
    """
    predicates = []
    for name, value in conditions.items():
        key, _, suffix = name.partition("__")
        if suffix not in _FILTER_OPERATIONS:
            raise KfpGrpcError.invalid_argument(
                f"filter.{name}", f"unknown operation {suffix!r}; use one of {', '.join(s for s in _FILTER_OPERATIONS if s)}")
        predicate = {"key": key, "operation": _FILTER_OPERATIONS[suffix]}
        predicate.update(_list_filter_value(name, value) if suffix == "in" else _filter_value(name, value))
        predicates.append(predicate)
    return json.dumps({"predicates": predicates})


def _filter_value(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, datetime):
        return {"timestamp_value": timestamp(value).ToJsonString()}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"long_value": value}
    raise KfpGrpcError.invalid_argument(f"filter.{name}", f"must be a string, an integer or a datetime, got {value!r}")


def _list_filter_value(name: str, values: Any) -> dict[str, Any]:
    if isinstance(values, Sequence) and values and not isinstance(values, str):
        if all(isinstance(value, str) for value in values):
            return {"string_values": {"values": list(values)}}
        if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            return {"long_values": {"values": list(values)}}
    raise KfpGrpcError.invalid_argument(f"filter.{name}", f"must be a non-empty list of strings or of integers, got {values!r}")


def timestamp(value: TimeValue, field: str = "time") -> timestamp_pb2.Timestamp:
    """A Timestamp from a datetime or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise KfpGrpcError.invalid_argument(field, f"must be an ISO 8601 time such as 2025-01-31T08:00:00Z, got {value!r}") from None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return message


MAX_INTERVAL_SECONDS = 2**63 - 1  # RecurringRun.Trigger.periodic_schedule.interval_second is an int64


def interval_seconds(value: float | timedelta | str, field: str = "interval") -> int:
    """Whole seconds from a number, a timedelta, or a Go duration such as "1h30m" or "90s"."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            from kfpgrpc.schedule import parse_go_duration  # loads croniter: only for a duration

            try:
                seconds = parse_go_duration(value.strip()) / 1_000_000
            except ValueError:
                raise KfpGrpcError.invalid_argument(field, f"must be seconds or a duration such as 1h30m, got {value!r}") from None
    else:
        seconds = float(value)
    # interval_second is an int64; `not 1 <= seconds` also refuses NaN, and the bound infinity
    if not 1 <= seconds <= MAX_INTERVAL_SECONDS or seconds != int(seconds):
        raise KfpGrpcError.invalid_argument(field, f"must be a whole number of seconds from 1 to {MAX_INTERVAL_SECONDS}, got {value!r}")
    return int(seconds)


def parameter_values(parameters: Mapping[str, Any]) -> dict[str, struct_pb2.Value]:
    """RuntimeConfig.parameters from plain values (numbers, strings, bools, lists, dicts)."""
    values = struct_pb2.Struct()
    try:
        values.update(parameters)
    except (ValueError, TypeError) as exc:
        raise KfpGrpcError.invalid_argument("parameters", f"must map names to JSON values: {exc}") from None
    return dict(values.fields)


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def load_pipeline_spec(source: PipelineSource) -> dict[str, Any]:
    """The compiled spec of `source`. A file with a second YAML document (the platform spec the
    kfp compiler writes for Kubernetes settings) becomes {"pipeline_spec", "platform_spec"}."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, PathLike)):
        return _read_spec_file(Path(source))
    try:
        from kfp import compiler
    except ImportError:
        raise KfpGrpcError.invalid_argument("source", "compiling a pipeline function needs the kfp SDK (pip install kfp)") from None
    with tempfile.TemporaryDirectory(prefix="kfpgrpc-") as directory:
        path = Path(directory) / "pipeline.yaml"
        compiler.Compiler().compile(source, package_path=str(path))
        return _read_spec_file(path)


def _read_spec_file(path: Path) -> dict[str, Any]:
    try:
        return spec_from_text(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KfpGrpcError.invalid_argument("source", f"cannot read a compiled pipeline from {path}: {exc}") from None


def pipeline_info(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The spec's pipelineInfo ({name, description}), also inside the platform-spec wrapper."""
    inner = spec.get("pipeline_spec", spec)
    info = inner.get("pipelineInfo") if isinstance(inner, Mapping) else None
    return info if isinstance(info, Mapping) else {}


class RecurringRunOptions(TypedDict, total=False):
    """What a recurring run is made of, beside its pipeline. Times are datetimes or ISO strings."""

    display_name: str
    description: str
    version: str
    """A pipeline version id or name; unset = follow the pipeline's latest version."""
    experiment: str
    """An experiment name or id."""
    parameters: Mapping[str, Any]
    cron: str
    """5 fields (crontab), 6 fields (seconds first), @daily…, or "@every 1h30m"."""
    time_zone: str
    """IANA zone of `cron`."""
    interval: float | timedelta | str
    """A periodic schedule instead of `cron`: seconds, a timedelta or a duration like "1h"."""
    start_time: TimeValue
    end_time: TimeValue
    max_concurrency: int
    no_catchup: bool
    overlap_policy: str | int
    """BUFFER_ALL, BUFFER_ONE, SKIP or REPLACE."""
    enabled: bool
    service_account: str
    pipeline_root: str


class RecurringRunChanges(RecurringRunOptions, total=False):
    """The fields UpdateRecurringRun can change."""

    pipeline: str
    """A pipeline name or id."""


# Option -> (the update_mask path, how to write the value into the RecurringRun). Schedule
# times go to whichever schedule the recurring run has ("{schedule}").
_FIELDS: dict[str, tuple[str, Callable[[recurring_run_pb2.RecurringRun, Any], None]]] = {
    "display_name": ("display_name", lambda r, v: setattr(r, "display_name", v)),
    "description": ("description", lambda r, v: setattr(r, "description", v)),
    "parameters": ("runtime_config.parameters", lambda r, v: r.runtime_config.MergeFrom(runtime_config(v))),
    "pipeline_root": ("runtime_config.pipeline_root", lambda r, v: setattr(r.runtime_config, "pipeline_root", v)),
    "service_account": ("service_account", lambda r, v: setattr(r, "service_account", v)),
    "cron": ("trigger.cron_schedule.cron", lambda r, v: setattr(r.trigger.cron_schedule, "cron", v)),
    "time_zone": ("trigger.cron_schedule.time_zone", lambda r, v: setattr(r.trigger.cron_schedule, "time_zone", v)),
    "interval": ("trigger.periodic_schedule.interval_second",
                 lambda r, v: setattr(r.trigger.periodic_schedule, "interval_second", interval_seconds(v))),
    "start_time": ("trigger.{schedule}.start_time",
                   lambda r, v: getattr(r.trigger, r.trigger.WhichOneof("trigger")).start_time.CopyFrom(timestamp(v, "start_time"))),
    "end_time": ("trigger.{schedule}.end_time",
                 lambda r, v: getattr(r.trigger, r.trigger.WhichOneof("trigger")).end_time.CopyFrom(timestamp(v, "end_time"))),
    "max_concurrency": ("max_concurrency", lambda r, v: setattr(r, "max_concurrency", v)),
    "no_catchup": ("no_catchup", lambda r, v: setattr(r, "no_catchup", v)),
    "overlap_policy": ("overlap_policy", lambda r, v: setattr(r, "overlap_policy", overlap_policy(v))),
    "enabled": ("mode", lambda r, v: setattr(r, "mode", recurring_run_pb2.RecurringRun.ENABLE if v else recurring_run_pb2.RecurringRun.DISABLE)),
}
# Resolved to ids by the caller before recurring_run_fields sees them.
REFERENCE_FIELDS = {"pipeline": "pipeline_version_reference", "version": "pipeline_version_reference", "experiment": "experiment_id"}


def recurring_run_fields(options: Mapping[str, Any], schedule: str) -> tuple[recurring_run_pb2.RecurringRun, list[str]]:
    """A RecurringRun holding `options` and the update_mask paths they set. `schedule` is the
    trigger kind the times belong to ("cron_schedule" or "periodic_schedule")."""
    unknown = set(options) - set(_FIELDS) - set(REFERENCE_FIELDS)
    if unknown:
        raise KfpGrpcError.invalid_argument(sorted(unknown)[0], f"is not a recurring run option; known ones are {', '.join([*_FIELDS, *REFERENCE_FIELDS])}")
    if "cron" in options and "interval" in options:
        raise KfpGrpcError.invalid_argument("interval", "a recurring run has a cron or an interval, not both")
    recurring_run = recurring_run_pb2.RecurringRun()
    getattr(recurring_run.trigger, schedule).SetInParent()  # where start_time and end_time go
    paths: list[str] = []
    for name, value in options.items():
        if name in _FIELDS and value is not None:
            path, write = _FIELDS[name]
            write(recurring_run, value)
            paths.append(path.format(schedule=schedule))
    return recurring_run, paths


def overlap_policy(value: str | int) -> int:
    if isinstance(value, str):
        try:
            return recurring_run_pb2.OverlapPolicy.Value(value.upper())
        except ValueError:
            names = [name for name in recurring_run_pb2.OverlapPolicy.keys() if not name.endswith("UNSPECIFIED")]
            raise KfpGrpcError.invalid_argument("overlap_policy", f"must be one of {', '.join(names)}, got {value!r}") from None
    return value


def runtime_config(parameters: Mapping[str, Any] | None, pipeline_root: str = "") -> common_pb2.RuntimeConfig:
    return common_pb2.RuntimeConfig(parameters=parameter_values(parameters or {}), pipeline_root=pipeline_root)
