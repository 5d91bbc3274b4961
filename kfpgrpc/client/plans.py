"""Every client operation, written once as a plan (see steps.py) that both flavours drive."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, Unpack

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from kfpgrpc.client.errors import KfpGrpcError
from kfpgrpc.client.messages import (
    REFERENCE_FIELDS,
    PipelineSource,
    RecurringRunChanges,
    RecurringRunOptions,
    TimeValue,
    kfp_filter,
    load_pipeline_spec,
    pipeline_info,
    recurring_run_fields,
    runtime_config,
    struct,
    timestamp,
)
from kfpgrpc.client.steps import Emit, Plan, Step, Stream, offload, resumable, unary
from kfpgrpc.v1 import common_pb2, event_pb2, experiment_pb2, pipeline_pb2, recurring_run_pb2, run_pb2

T = TypeVar("T")
M = TypeVar("M", bound=Message)

EXPERIMENTS = "/kfpgrpc.v1.ExperimentService/"
PIPELINES = "/kfpgrpc.v1.PipelineService/"
RUNS = "/kfpgrpc.v1.RunService/"
RECURRING_RUNS = "/kfpgrpc.v1.RecurringRunService/"
EVENTS = "/kfpgrpc.v1.EventService/"
DEFAULT_PAGE_SIZE = 100
_NAMESAKES_SHOWN = 10  # ids listed when a name is ambiguous
TERMINAL_STATES = frozenset({common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED, common_pb2.SKIPPED})


def _done(path: str, request: Message) -> Plan[None]:
    """An RPC that answers google.protobuf.Empty."""
    yield from unary(path, request, empty_pb2.Empty)


def _unless_not_found(plan: Plan[T]) -> Plan[T | None]:
    try:
        return (yield from plan)
    except KfpGrpcError as error:
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise
        return None


def _not_found(kind: str, name_or_id: str) -> KfpGrpcError:
    return KfpGrpcError(grpc.StatusCode.NOT_FOUND, f"no {kind} named or with id {name_or_id!r}")


def _pages(path: str, request: Any, response_type: type[Any], items: str, limit: int | None) -> Stream[Any]:
    """Every item of a List RPC, page after page (at most `limit`)."""
    request.page_size = request.page_size or DEFAULT_PAGE_SIZE
    remaining = limit
    while remaining is None or remaining > 0:
        if remaining is not None:
            request.page_size = min(request.page_size, remaining)
        page = yield from unary(path, request, response_type)
        found = getattr(page, items)
        for item in found:
            yield Emit(item)
        if remaining is not None:
            remaining -= len(found)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def _changes(kind: type[M]) -> Callable[[M], list[M]]:
    """A resumable() `select` that drops a snapshot equal to the one before it: re-subscribing
    to a watch starts with the current snapshot, which the watcher may have seen."""
    previous: list[M] = []

    def changed(snapshot: M) -> list[M]:
        if previous == [snapshot]:
            return []
        previous[:] = [snapshot]
        return [snapshot]

    return changed


# Experiments


def create_experiment(display_name: str, description: str = "") -> Plan[experiment_pb2.Experiment]:
    """Create an experiment (names are unique: ALREADY_EXISTS otherwise)."""
    experiment = experiment_pb2.Experiment(display_name=display_name, description=description)
    return (yield from unary(EXPERIMENTS + "CreateExperiment", experiment_pb2.CreateExperimentRequest(experiment=experiment), experiment_pb2.Experiment))


def get_experiment(experiment_id: str) -> Plan[experiment_pb2.Experiment]:
    return (yield from unary(EXPERIMENTS + "GetExperiment", experiment_pb2.GetExperimentRequest(experiment_id=experiment_id), experiment_pb2.Experiment))


def find_experiment(name_or_id: str) -> Plan[experiment_pb2.Experiment]:
    """The experiment with this display name, else with this id (NOT_FOUND if neither)."""
    request = experiment_pb2.ListExperimentsRequest(page_size=1, filter=kfp_filter(display_name=name_or_id))
    page = yield from unary(EXPERIMENTS + "ListExperiments", request, experiment_pb2.ListExperimentsResponse)
    if page.experiments:
        return page.experiments[0]
    found = yield from _unless_not_found(get_experiment(name_or_id))
    if found is None:
        raise _not_found("experiment", name_or_id)
    return found


def _experiment_id(experiment: str | None) -> Plan[str]:
    """The id of the experiment named or identified by `experiment` (NOT_FOUND if none); ""
    for None or "" (to CreateRun: the Default experiment; to a list or watch: every one)."""
    return (yield from find_experiment(experiment)).experiment_id if experiment else ""


def list_experiments(filter: str = "", sort_by: str = "", page_size: int = 0, limit: int | None = None) -> Stream[experiment_pb2.Experiment]:
    """Every experiment (or the first `limit`), fetching pages as needed. `filter` is KFP's
    JSON filter (see kfp_filter); `sort_by` is "field" or "field desc"."""
    request = experiment_pb2.ListExperimentsRequest(filter=filter, sort_by=sort_by, page_size=page_size)
    yield from _pages(EXPERIMENTS + "ListExperiments", request, experiment_pb2.ListExperimentsResponse, "experiments", limit)


def archive_experiment(experiment: str) -> Plan[None]:
    """Archive an experiment (name or id) and its runs; disable its recurring runs."""
    experiment_id = yield from _experiment_id(experiment)
    yield from _done(EXPERIMENTS + "ArchiveExperiment", experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment_id))


def unarchive_experiment(experiment: str) -> Plan[None]:
    """Restore an archived experiment (name or id)."""
    experiment_id = yield from _experiment_id(experiment)
    yield from _done(EXPERIMENTS + "UnarchiveExperiment", experiment_pb2.UnarchiveExperimentRequest(experiment_id=experiment_id))


def delete_experiment(experiment: str) -> Plan[None]:
    """Delete an experiment (name or id) that holds no runs."""
    experiment_id = yield from _experiment_id(experiment)
    yield from _done(EXPERIMENTS + "DeleteExperiment", experiment_pb2.DeleteExperimentRequest(experiment_id=experiment_id))


# Pipelines


def create_pipeline(name: str, description: str = "") -> Plan[pipeline_pb2.Pipeline]:
    """Create a pipeline without versions (see upload_pipeline for the usual way)."""
    pipeline = pipeline_pb2.Pipeline(name=name, description=description)
    return (yield from unary(PIPELINES + "CreatePipeline", pipeline_pb2.CreatePipelineRequest(pipeline=pipeline), pipeline_pb2.Pipeline))


def get_pipeline(pipeline_id: str) -> Plan[pipeline_pb2.Pipeline]:
    return (yield from unary(PIPELINES + "GetPipeline", pipeline_pb2.GetPipelineRequest(pipeline_id=pipeline_id), pipeline_pb2.Pipeline))


def get_pipeline_by_name(name: str) -> Plan[pipeline_pb2.Pipeline]:
    return (yield from unary(PIPELINES + "GetPipelineByName", pipeline_pb2.GetPipelineByNameRequest(name=name), pipeline_pb2.Pipeline))


def find_pipeline(name_or_id: str) -> Plan[pipeline_pb2.Pipeline]:
    """The pipeline with this name, else with this id (NOT_FOUND if neither)."""
    found = yield from _unless_not_found(get_pipeline_by_name(name_or_id))
    if found is None:
        found = yield from _unless_not_found(get_pipeline(name_or_id))
    if found is None:
        raise _not_found("pipeline", name_or_id)
    return found


def list_pipelines(filter: str = "", sort_by: str = "", page_size: int = 0, limit: int | None = None) -> Stream[pipeline_pb2.Pipeline]:
    """Every pipeline (or the first `limit`), fetching pages as needed."""
    request = pipeline_pb2.ListPipelinesRequest(filter=filter, sort_by=sort_by, page_size=page_size)
    yield from _pages(PIPELINES + "ListPipelines", request, pipeline_pb2.ListPipelinesResponse, "pipelines", limit)


def delete_pipeline(pipeline_id: str, cascade: bool = False) -> Plan[None]:
    """Delete a pipeline; with versions left, only with `cascade` (which deletes them too)."""
    yield from _done(PIPELINES + "DeletePipeline", pipeline_pb2.DeletePipelineRequest(pipeline_id=pipeline_id, cascade=cascade))


def upload_pipeline(
    source: PipelineSource, name: str = "", version_name: str = "", description: str = ""
) -> Plan[pipeline_pb2.PipelineVersion]:
    """Upload a compiled pipeline as a new version of the pipeline `name` (default: the spec's
    pipelineInfo.name), creating the pipeline when the name is new. `source` is a compiled
    YAML/JSON file, a spec dict, or a @dsl.pipeline function (compiled with the kfp SDK).
    Returns the version; its pipeline_id names the pipeline."""
    spec = yield from offload(functools.partial(load_pipeline_spec, source))
    info = pipeline_info(spec)
    name = name or str(info.get("name", ""))
    if not name:
        raise KfpGrpcError.invalid_argument("name", "the spec has no pipelineInfo.name: give the pipeline a name")
    pipeline = yield from _unless_not_found(get_pipeline_by_name(name))
    created = pipeline is None
    if pipeline is None:
        try:
            pipeline = yield from create_pipeline(name, description or str(info.get("description", "")))
        except KfpGrpcError as error:  # someone created it meanwhile
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
            pipeline, created = (yield from get_pipeline_by_name(name)), False
    version = pipeline_pb2.PipelineVersion(name=version_name, description=description, pipeline_spec=struct(spec))
    request = pipeline_pb2.CreatePipelineVersionRequest(pipeline_id=pipeline.pipeline_id, pipeline_version=version)
    try:
        return (yield from unary(PIPELINES + "CreatePipelineVersion", request, pipeline_pb2.PipelineVersion))
    except KfpGrpcError:
        if created:  # leave no empty pipeline behind a refused spec
            yield from _unless_not_found(delete_pipeline(pipeline.pipeline_id))
        raise


def get_pipeline_version(pipeline_version_id: str, pipeline_id: str = "") -> Plan[pipeline_pb2.PipelineVersion]:
    request = pipeline_pb2.GetPipelineVersionRequest(pipeline_id=pipeline_id, pipeline_version_id=pipeline_version_id)
    return (yield from unary(PIPELINES + "GetPipelineVersion", request, pipeline_pb2.PipelineVersion))


def find_pipeline_version(pipeline_id: str, name_or_id: str) -> Plan[pipeline_pb2.PipelineVersion]:
    """The pipeline's version with this id, else with this name (NOT_FOUND if neither)."""
    found = yield from _unless_not_found(get_pipeline_version(name_or_id, pipeline_id))
    if found is None:
        request = pipeline_pb2.ListPipelineVersionsRequest(pipeline_id=pipeline_id, page_size=1, filter=kfp_filter(name=name_or_id))
        page = yield from unary(PIPELINES + "ListPipelineVersions", request, pipeline_pb2.ListPipelineVersionsResponse)
        if not page.pipeline_versions:
            raise _not_found("pipeline version", name_or_id)
        found = page.pipeline_versions[0]
    return found


def resolve_pipeline_version(pipeline: str, version: str | None = None) -> Plan[pipeline_pb2.PipelineVersion]:
    """The version (id or name; None: the latest, as CreateRun picks it) of the pipeline (name
    or id), with its spec; NOT_FOUND if either is missing."""
    found = yield from find_pipeline(pipeline)
    if version:
        return (yield from find_pipeline_version(found.pipeline_id, version))
    request = pipeline_pb2.ListPipelineVersionsRequest(pipeline_id=found.pipeline_id, page_size=1, sort_by="created_at desc")
    page = yield from unary(PIPELINES + "ListPipelineVersions", request, pipeline_pb2.ListPipelineVersionsResponse)
    if not page.pipeline_versions:
        raise KfpGrpcError(grpc.StatusCode.NOT_FOUND, f"pipeline {found.name!r} has no versions")
    return page.pipeline_versions[0]


def list_pipeline_versions(
    pipeline_id: str, filter: str = "", sort_by: str = "", page_size: int = 0, limit: int | None = None
) -> Stream[pipeline_pb2.PipelineVersion]:
    """Every version of a pipeline (or the first `limit`), fetching pages as needed."""
    request = pipeline_pb2.ListPipelineVersionsRequest(pipeline_id=pipeline_id, filter=filter, sort_by=sort_by, page_size=page_size)
    yield from _pages(PIPELINES + "ListPipelineVersions", request, pipeline_pb2.ListPipelineVersionsResponse, "pipeline_versions", limit)


def delete_pipeline_version(pipeline_version_id: str, pipeline_id: str = "") -> Plan[None]:
    request = pipeline_pb2.DeletePipelineVersionRequest(pipeline_id=pipeline_id, pipeline_version_id=pipeline_version_id)
    yield from _done(PIPELINES + "DeletePipelineVersion", request)


def _pipeline_reference(pipeline: str, version: str | None) -> Plan[tuple[common_pb2.PipelineVersionReference, str]]:
    """The reference to a pipeline (by name or id) and version (id or name; None = latest),
    with the pipeline's name."""
    found = yield from find_pipeline(pipeline)
    reference = common_pb2.PipelineVersionReference(pipeline_id=found.pipeline_id)
    if version:
        reference.pipeline_version_id = (yield from find_pipeline_version(found.pipeline_id, version)).pipeline_version_id
    return reference, found.name


# Runs


def create_run(
    pipeline: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    experiment: str | None = None,
    display_name: str = "",
    description: str = "",
    pipeline_root: str = "",
    service_account: str = "",
) -> Plan[run_pb2.Run]:
    """Start a run of a pipeline (name or id) at `version` (id or name; default: the latest),
    with `parameters` (the pipeline's defaults fill the rest), in `experiment` (name or id;
    default: Default). `display_name` defaults to "<pipeline> <local time>", as in the kfp SDK."""
    reference, pipeline_name = yield from _pipeline_reference(pipeline, version)
    run = run_pb2.Run(
        display_name=display_name or f"{pipeline_name} {datetime.now().strftime('%Y-%m-%d %H-%M-%S')}",
        description=description,
        experiment_id=(yield from _experiment_id(experiment)),
        pipeline_version_reference=reference,
        runtime_config=runtime_config(parameters, pipeline_root),
        service_account=service_account,
    )
    return (yield from unary(RUNS + "CreateRun", run_pb2.CreateRunRequest(run=run), run_pb2.Run))


def get_run(run_id: str) -> Plan[run_pb2.Run]:
    return (yield from unary(RUNS + "GetRun", run_pb2.GetRunRequest(run_id=run_id), run_pb2.Run))


def list_runs(
    experiment: str | None = None, filter: str = "", sort_by: str = "", page_size: int = 0, limit: int | None = None
) -> Stream[run_pb2.Run]:
    """Every run (or the first `limit`), fetching pages as needed; of one `experiment` (name
    or id; NOT_FOUND when there is none such) when given."""
    experiment_id = yield from _experiment_id(experiment)
    request = run_pb2.ListRunsRequest(experiment_id=experiment_id, filter=filter, sort_by=sort_by, page_size=page_size)
    yield from _pages(RUNS + "ListRuns", request, run_pb2.ListRunsResponse, "runs", limit)


def archive_run(run_id: str) -> Plan[None]:
    yield from _done(RUNS + "ArchiveRun", run_pb2.ArchiveRunRequest(run_id=run_id))


def unarchive_run(run_id: str) -> Plan[None]:
    yield from _done(RUNS + "UnarchiveRun", run_pb2.UnarchiveRunRequest(run_id=run_id))


def delete_run(run_id: str) -> Plan[None]:
    """Delete a run with its logs and artifacts (terminating it first if it is active)."""
    yield from _done(RUNS + "DeleteRun", run_pb2.DeleteRunRequest(run_id=run_id))


def terminate_run(run_id: str) -> Plan[None]:
    """Ask a run to stop: CANCELING, then CANCELED."""
    yield from _done(RUNS + "TerminateRun", run_pb2.TerminateRunRequest(run_id=run_id))


def retry_run(run_id: str) -> Plan[None]:
    """Run again the tasks of a FAILED or CANCELED run that did not succeed."""
    yield from _done(RUNS + "RetryRun", run_pb2.RetryRunRequest(run_id=run_id))


def watch_run(run_id: str, timeout: float | None = None) -> Generator[Step | Emit[run_pb2.Run], Any, run_pb2.Run | None]:
    """Snapshots of a run: the current one, then one per change, ending after a terminal state.
    Reconnects when the connection drops or the server restarts, without repeating a
    snapshot. `timeout` (seconds) bounds the whole watch (DEADLINE_EXCEEDED)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    request = run_pb2.WatchRunRequest(run_id=run_id)
    return (yield from resumable(RUNS + "WatchRun", lambda: request, run_pb2.Run, _changes(run_pb2.Run), deadline))


def wait_for_run(run_id: str, timeout: float | None = None) -> Plan[run_pb2.Run]:
    """The run once it has finished (its state tells how), watched with WatchRun."""
    final = yield from watch_run(run_id, timeout)
    return final if final is not None else (yield from get_run(run_id))


def run_logs(
    run_id: str, task_name: str = "", follow: bool = False, *,
    after_line_number: int = 0, tail_lines: int = 0, before_line_number: int = 0,
) -> Stream[run_pb2.LogLine]:
    """A run's task log lines (of one task, by task_id or name; else all), in capture order.
    With `follow`, goes on until the run has finished. Per task, only the lines after
    `after_line_number`, or its last `tail_lines` (1..100,000), before `before_line_number`
    when set (not with `follow`). Reconnects without repeating a line; a reconnect after a
    tail goes on after the lowest last line number it yielded of any task (a task of which it
    yielded nothing may miss part of its tail)."""
    seen: dict[str, int] = {}

    def unseen(batch: run_pb2.StreamRunLogsResponse) -> Iterable[run_pb2.LogLine]:
        for line in batch.lines:
            if line.line_number > seen.get(line.task_id, 0):
                seen[line.task_id] = line.line_number
                yield line

    def request() -> run_pb2.StreamRunLogsRequest:
        if tail_lines and seen and not before_line_number:
            # a new tail would skip the lines printed while reconnecting
            return run_pb2.StreamRunLogsRequest(
                run_id=run_id, task_name=task_name, follow=follow, after_line_number=min(seen.values()))
        return run_pb2.StreamRunLogsRequest(
            run_id=run_id, task_name=task_name, follow=follow, after_line_number=after_line_number,
            tail_lines=tail_lines, before_line_number=before_line_number)

    yield from resumable(RUNS + "StreamRunLogs", request, run_pb2.StreamRunLogsResponse, lambda batch: list(unseen(batch)))


# Recurring runs


def _schedule_kind(options: Mapping[str, Any]) -> str | None:
    if "cron" in options or "time_zone" in options:
        return "cron_schedule"
    if "interval" in options:
        return "periodic_schedule"
    return None


def _with_references(recurring_run: recurring_run_pb2.RecurringRun, paths: list[str], options: Mapping[str, Any],
                     pipeline: str | None) -> Plan[None]:
    """Resolve the pipeline, version and experiment names of `options` into `recurring_run`."""
    if pipeline is not None:
        reference, _ = yield from _pipeline_reference(pipeline, options.get("version"))
        recurring_run.pipeline_version_reference.CopyFrom(reference)
    if options.get("experiment") is not None:
        recurring_run.experiment_id = yield from _experiment_id(options["experiment"])
    paths.extend(dict.fromkeys(REFERENCE_FIELDS[name] for name in options if name in REFERENCE_FIELDS and options[name] is not None))


def create_recurring_run(pipeline: str, **options: Unpack[RecurringRunOptions]) -> Plan[recurring_run_pb2.RecurringRun]:
    """Create a recurring run of a pipeline (name or id): a `cron` schedule (with `time_zone`)
    or an `interval`; enabled unless `enabled=False`. See RecurringRunOptions for the rest;
    `display_name` defaults to the pipeline's name."""
    schedule = _schedule_kind(options)
    if schedule is None:
        raise KfpGrpcError.invalid_argument("recurring_run.trigger", "give a cron schedule or an interval")
    recurring_run, paths = recurring_run_fields({"enabled": True, **options}, schedule)
    yield from _with_references(recurring_run, paths, options, pipeline)
    if not recurring_run.display_name:
        recurring_run.display_name = (yield from find_pipeline(pipeline)).name
    request = recurring_run_pb2.CreateRecurringRunRequest(recurring_run=recurring_run)
    return (yield from unary(RECURRING_RUNS + "CreateRecurringRun", request, recurring_run_pb2.RecurringRun))


def get_recurring_run(recurring_run_id: str) -> Plan[recurring_run_pb2.RecurringRun]:
    """A recurring run with its next_scheduled_times and counters."""
    request = recurring_run_pb2.GetRecurringRunRequest(recurring_run_id=recurring_run_id)
    return (yield from unary(RECURRING_RUNS + "GetRecurringRun", request, recurring_run_pb2.RecurringRun))


def find_recurring_run(name_or_id: str) -> Plan[recurring_run_pb2.RecurringRun]:
    """The recurring run with this id, else the only one with this display name (NOT_FOUND if
    none; FAILED_PRECONDITION listing their ids, oldest first, if several share the name)."""
    found = yield from _unless_not_found(get_recurring_run(name_or_id))
    if found is not None:
        return found
    request = recurring_run_pb2.ListRecurringRunsRequest(page_size=_NAMESAKES_SHOWN, filter=kfp_filter(display_name=name_or_id),
                                                         sort_by="created_at")
    page = yield from unary(RECURRING_RUNS + "ListRecurringRuns", request, recurring_run_pb2.ListRecurringRunsResponse)
    if not page.recurring_runs:
        raise _not_found("recurring run", name_or_id)
    if page.total_size > 1:
        ids = ", ".join(r.recurring_run_id for r in page.recurring_runs)
        more = f" and {page.total_size - len(page.recurring_runs)} more" if page.total_size > len(page.recurring_runs) else ""
        raise KfpGrpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"{page.total_size} recurring runs are named {name_or_id!r} ({ids}{more}): use an id")
    return page.recurring_runs[0]


def list_recurring_runs(
    experiment: str | None = None, filter: str = "", sort_by: str = "", page_size: int = 0, limit: int | None = None
) -> Stream[recurring_run_pb2.RecurringRun]:
    """Every recurring run (or the first `limit`); of one `experiment` (name or id; NOT_FOUND
    when there is none such) when given."""
    experiment_id = yield from _experiment_id(experiment)
    request = recurring_run_pb2.ListRecurringRunsRequest(experiment_id=experiment_id, filter=filter, sort_by=sort_by, page_size=page_size)
    yield from _pages(RECURRING_RUNS + "ListRecurringRuns", request, recurring_run_pb2.ListRecurringRunsResponse, "recurring_runs", limit)


def update_recurring_run(recurring_run_id: str, **changes: Unpack[RecurringRunChanges]) -> Plan[recurring_run_pb2.RecurringRun]:
    """Change the given fields only (the update_mask is built from the keywords given; None
    means unchanged). A new schedule applies from now on; past ticks are never replayed. A
    `version` without `pipeline` is a version of the pipeline the recurring run has."""
    schedule = _schedule_kind(changes)
    pipeline = changes.get("pipeline")
    # Times belong to the schedule the recurring run has; a version, to the pipeline it has.
    times_only = schedule is None and ("start_time" in changes or "end_time" in changes)
    version_only = pipeline is None and bool(changes.get("version"))
    if times_only or version_only:
        current = yield from get_recurring_run(recurring_run_id)
        schedule = schedule or current.trigger.WhichOneof("trigger")
        if version_only:
            if not current.HasField("pipeline_version_reference"):
                raise KfpGrpcError.invalid_argument("pipeline", "the recurring run has an inline pipeline spec: name the pipeline of the version")
            pipeline = current.pipeline_version_reference.pipeline_id
    recurring_run, paths = recurring_run_fields(
        {name: value for name, value in changes.items() if name != "pipeline"}, schedule or "cron_schedule")
    yield from _with_references(recurring_run, paths, changes, pipeline)
    if not paths:
        raise KfpGrpcError.invalid_argument("update_mask", "name at least one field to change")
    recurring_run.recurring_run_id = recurring_run_id
    request = recurring_run_pb2.UpdateRecurringRunRequest(recurring_run=recurring_run, update_mask=field_mask_pb2.FieldMask(paths=paths))
    return (yield from unary(RECURRING_RUNS + "UpdateRecurringRun", request, recurring_run_pb2.RecurringRun))


def enable_recurring_run(recurring_run_id: str) -> Plan[None]:
    """Enable: ticks missed while disabled follow the catch-up rule."""
    yield from _done(RECURRING_RUNS + "EnableRecurringRun", recurring_run_pb2.EnableRecurringRunRequest(recurring_run_id=recurring_run_id))


def disable_recurring_run(recurring_run_id: str) -> Plan[None]:
    """Disable: no new ticks; runs in flight continue."""
    yield from _done(RECURRING_RUNS + "DisableRecurringRun", recurring_run_pb2.DisableRecurringRunRequest(recurring_run_id=recurring_run_id))


def delete_recurring_run(recurring_run_id: str, delete_runs: bool = False) -> Plan[None]:
    """Delete a recurring run; its runs stay unless `delete_runs`."""
    request = recurring_run_pb2.DeleteRecurringRunRequest(recurring_run_id=recurring_run_id, delete_runs=delete_runs)
    yield from _done(RECURRING_RUNS + "DeleteRecurringRun", request)


def trigger_recurring_run(recurring_run_id: str) -> Plan[run_pb2.Run]:
    """Start one run now, outside the schedule; returns it."""
    request = recurring_run_pb2.TriggerRecurringRunRequest(recurring_run_id=recurring_run_id)
    return (yield from unary(RECURRING_RUNS + "TriggerRecurringRun", request, run_pb2.Run))


def backfill_recurring_run(
    recurring_run_id: str, start_time: TimeValue, end_time: TimeValue, validate_only: bool = False
) -> Plan[recurring_run_pb2.BackfillRecurringRunResponse]:
    """Queue a run for every tick of the schedule in [start_time, end_time] that has none;
    `validate_only` queues nothing and lists (in queued_times, the first 1,000) what it would."""
    request = recurring_run_pb2.BackfillRecurringRunRequest(
        recurring_run_id=recurring_run_id, start_time=timestamp(start_time, "start_time"), end_time=timestamp(end_time, "end_time"),
        validate_only=validate_only)
    return (yield from unary(RECURRING_RUNS + "BackfillRecurringRun", request, recurring_run_pb2.BackfillRecurringRunResponse))


_SCHEDULE_OPTIONS = ("cron", "time_zone", "interval", "start_time", "end_time")


def preview_schedule(count: int = 0, after: TimeValue | None = None, **schedule: Any) -> Plan[recurring_run_pb2.PreviewScheduleResponse]:
    """The next `count` (default 10, at most 100) fire times after `after` (default now) of a
    schedule given as create_recurring_run takes it (`cron` with `time_zone`, or `interval`;
    `start_time`, `end_time`), computed as the server fires it, each with its UTC offset and
    whether its local day has a DST change. With an `interval`, `time_zone` is the zone they
    are read in."""
    unknown = sorted(set(schedule) - set(_SCHEDULE_OPTIONS))
    if unknown:
        raise KfpGrpcError.invalid_argument(unknown[0], f"is not a schedule option; known ones are {', '.join(_SCHEDULE_OPTIONS)}")
    kind = "periodic_schedule" if "interval" in schedule else _schedule_kind(schedule)
    if kind is None:
        raise KfpGrpcError.invalid_argument("trigger", "give a cron schedule or an interval")
    options = dict(schedule)
    display_zone = options.pop("time_zone", "") if kind == "periodic_schedule" else ""
    recurring_run, _ = recurring_run_fields(options, kind)
    request = recurring_run_pb2.PreviewScheduleRequest(trigger=recurring_run.trigger, count=count, time_zone=display_zone or "")
    if after is not None:
        request.after.CopyFrom(timestamp(after, "after"))
    return (yield from unary(RECURRING_RUNS + "PreviewSchedule", request, recurring_run_pb2.PreviewScheduleResponse))


def watch_recurring_run(recurring_run_id: str) -> Stream[recurring_run_pb2.RecurringRun]:
    """Snapshots of a recurring run: the current one, then one per change, until it is
    deleted. Reconnects when the connection drops, without repeating a snapshot."""
    request = recurring_run_pb2.WatchRecurringRunRequest(recurring_run_id=recurring_run_id)
    yield from resumable(RECURRING_RUNS + "WatchRecurringRun", lambda: request, recurring_run_pb2.RecurringRun, _changes(recurring_run_pb2.RecurringRun))


# Events


def _event_type(kind: event_pb2.EventType | str) -> event_pb2.EventType | str:
    """An EventType, checked when given by name."""
    if isinstance(kind, str) and kind.upper() not in event_pb2.EventType.keys():
        names = [name for name in event_pb2.EventType.keys() if not name.endswith("UNSPECIFIED")]
        raise KfpGrpcError.invalid_argument("types", f"must be event types ({', '.join(names)}), got {kind!r}")
    return kind.upper() if isinstance(kind, str) else kind


def watch_events(
    after_sequence: int = 0,
    *,
    newest: int = 0,
    run_id: str = "",
    recurring_run_id: str = "",
    experiment: str | None = None,
    types: Sequence[event_pb2.EventType | str] = (),
) -> Stream[event_pb2.Event]:
    """The durable event log from after `after_sequence` (0 = the oldest event kept), or from
    the `newest` (1..1,000) events that match, then new events as they happen, for ever.
    Filters are AND-ed; `experiment` is a name or an id (NOT_FOUND when there is none such); `types` are EventType values or names. After a
    dropped connection, a server restart or a RESOURCE_EXHAUSTED (watcher too slow), it
    resumes after the last sequence it emitted: nothing is lost or repeated."""
    last = after_sequence
    type_values = [_event_type(kind) for kind in types]
    experiment_id = yield from _experiment_id(experiment)

    def request() -> event_pb2.WatchEventsRequest:
        return event_pb2.WatchEventsRequest(
            after_sequence=last, newest=newest if last == after_sequence else 0, run_id=run_id, recurring_run_id=recurring_run_id, experiment_id=experiment_id, types=type_values)

    def unseen(event: event_pb2.Event) -> Iterable[event_pb2.Event]:
        nonlocal last
        if event.sequence <= last:
            return []
        last = event.sequence
        return [event]

    yield from resumable(EVENTS + "WatchEvents", request, event_pb2.Event, unseen)
