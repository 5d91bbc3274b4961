"""RecurringRunService: protobuf in, core call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2
from google.rpc import code_pb2

from kfpgrpc.api.convert import enum_name, list_request, micros, timestamp, to_message
from kfpgrpc.api.runs import new_run, run_to_proto, runtime_config, set_source
from kfpgrpc.api.sizes import fit_page, fit_values
from kfpgrpc.bounds import cut_error
from kfpgrpc.clock import MICROS_PER_SECOND
from kfpgrpc.core.recurring import Definition, RecurringRuns
from kfpgrpc.domain import ENABLED, RecurringRunView, RunView, Trigger
from kfpgrpc.errors import FieldViolation, InvalidArgument
from kfpgrpc.v1 import common_pb2, recurring_run_pb2_grpc, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as pb

# Fields an update may not name: they are set by the server.
OUTPUT_ONLY = {
    "recurring_run_id", "created_at", "updated_at", "status", "error",
    "next_scheduled_times", "last_scheduled_time", "counters",
}


def trigger_of(message: pb.Trigger, field: str) -> Trigger:
    """`field` names the Trigger message in the request."""
    which = message.WhichOneof("trigger")
    common = {
        "upstream_recurring_run_ids": tuple(message.upstream_recurring_run_ids),
        "on_new_pipeline_version": message.on_new_pipeline_version,
    }
    if which == "cron_schedule":
        cron, cron_field = message.cron_schedule, f"{field}.cron_schedule"
        return Trigger(
            "cron", cron=cron.cron, time_zone=cron.time_zone,
            start_time=micros(cron, "start_time", f"{cron_field}.start_time"),
            end_time=micros(cron, "end_time", f"{cron_field}.end_time"), **common,
        )
    if which == "periodic_schedule":
        periodic, periodic_field = message.periodic_schedule, f"{field}.periodic_schedule"
        return Trigger(
            "periodic", interval_seconds=periodic.interval_second,
            start_time=micros(periodic, "start_time", f"{periodic_field}.start_time"),
            end_time=micros(periodic, "end_time", f"{periodic_field}.end_time"), **common,
        )
    return Trigger(**common)


def trigger_to_proto(trigger: Trigger) -> pb.Trigger:
    message = pb.Trigger(
        upstream_recurring_run_ids=trigger.upstream_recurring_run_ids,
        on_new_pipeline_version=trigger.on_new_pipeline_version,
    )
    bounds = {"start_time": timestamp(trigger.start_time), "end_time": timestamp(trigger.end_time)}
    if trigger.schedule == "cron":
        message.cron_schedule.CopyFrom(pb.CronSchedule(cron=trigger.cron, time_zone=trigger.time_zone, **bounds))
    elif trigger.schedule == "periodic":
        message.periodic_schedule.CopyFrom(pb.PeriodicSchedule(interval_second=trigger.interval_seconds, **bounds))
    return message


async def definition_of(message: pb.RecurringRun, max_spec_bytes: int, field: str = "recurring_run") -> Definition:
    mode = enum_name(pb.RecurringRun.Mode, message.mode, f"{field}.mode")
    return Definition(
        run=await new_run(message, field, max_spec_bytes),
        max_concurrency=message.max_concurrency,
        trigger=trigger_of(message.trigger, f"{field}.trigger"),
        enabled=mode == "ENABLE",
        no_catchup=message.no_catchup,
        overlap_policy=enum_name(pb.OverlapPolicy, message.overlap_policy, f"{field}.overlap_policy") if message.overlap_policy else "",
    )


def recurring_run_to_proto(view: RecurringRunView) -> pb.RecurringRun:
    recurring_run = view.recurring_run
    enabled = recurring_run.status == ENABLED
    message = pb.RecurringRun(
        recurring_run_id=recurring_run.recurring_run_id,
        display_name=recurring_run.display_name,
        description=recurring_run.description,
        runtime_config=runtime_config(recurring_run.parameters, recurring_run.parameters_from, recurring_run.pipeline_root),
        service_account=recurring_run.service_account,
        max_concurrency=recurring_run.max_concurrency,
        trigger=trigger_to_proto(recurring_run.trigger),
        mode=pb.RecurringRun.ENABLE if enabled else pb.RecurringRun.DISABLE,
        created_at=timestamp(recurring_run.created_at),
        updated_at=timestamp(recurring_run.updated_at),
        status=pb.RecurringRun.Status.Value(recurring_run.status),
        error=common_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=cut_error(recurring_run.error)) if recurring_run.error else None,
        no_catchup=recurring_run.no_catchup,
        experiment_id=recurring_run.experiment_id,
        overlap_policy=pb.OverlapPolicy.Value(recurring_run.overlap_policy),
        next_scheduled_times=[timestamp(t) for t in view.next_scheduled_times],
        last_scheduled_time=timestamp(recurring_run.watermark) if recurring_run.ticks_handled else None,
        counters=pb.RecurringRunCounters(
            runs_created=recurring_run.runs_created,
            ticks_skipped=sum(recurring_run.ticks_skipped.values()),
            ticks_queued=view.ticks_queued,
            runs_active=view.runs_active,
            ticks_skipped_by_reason=recurring_run.ticks_skipped,
        ),
        artifacts=[common_pb2.ArtifactSelector(**selector) for selector in recurring_run.artifacts],
    )
    set_source(message, recurring_run.pipeline_id, recurring_run.pipeline_version_id, view.pipeline_spec, recurring_run.inline)
    return fit_values(message, message.runtime_config.parameters)


async def preview_schedule(recurring_runs: RecurringRuns, request: pb.PreviewScheduleRequest) -> pb.PreviewScheduleResponse:
    """PreviewSchedule, for gRPC and REST: the trigger read as CreateRecurringRun reads it,
    with fields named from "trigger"."""
    zone, found = await recurring_runs.preview(
        trigger_of(request.trigger, "trigger"), request.count, micros(request, "after", "after"), request.time_zone,
    )
    return pb.PreviewScheduleResponse(time_zone=zone, fire_times=[
        pb.FireTime(
            time=timestamp(fire.time_us), utc_offset_seconds=fire.utc_offset_us // MICROS_PER_SECOND,
            local_time=fire.local().isoformat(), dst_transition_day=fire.transition_day,
        )
        for fire in found
    ])


def _mask_violations(request: pb.UpdateRecurringRunRequest) -> list[FieldViolation]:
    paths = list(request.update_mask.paths)
    if not paths:
        return [FieldViolation("update_mask", "is required: name the fields to change")]
    violations = []
    for index, path in enumerate(paths):
        top = path.split(".", 1)[0]
        if top in OUTPUT_ONLY:
            violations.append(FieldViolation(f"update_mask.paths[{index}]", f"{path!r} is set by the server"))
    if not request.update_mask.IsValidForDescriptor(pb.RecurringRun.DESCRIPTOR):
        violations.append(FieldViolation("update_mask", f"names a field RecurringRun does not have: {', '.join(paths)}"))
    return violations


async def update_recurring_run(
    recurring_runs: RecurringRuns, request: pb.UpdateRecurringRunRequest, max_spec_bytes: int
) -> pb.RecurringRun:
    """UpdateRecurringRun (gRPC and REST): the mask applied to the stored recurring run, which is
    then replaced with the result. INVALID_ARGUMENT for an empty mask, a path to an output-only
    field or to no field, and whatever the merged definition breaks (naming its field)."""
    recurring_run_id = request.recurring_run.recurring_run_id
    violations = _mask_violations(request)
    if not recurring_run_id:
        violations.insert(0, FieldViolation("recurring_run.recurring_run_id", "is required"))
    if violations:
        raise InvalidArgument(violations)
    merged = await to_message(recurring_run_to_proto, await recurring_runs.get(recurring_run_id))
    request.update_mask.MergeMessage(request.recurring_run, merged, replace_message_field=True, replace_repeated_field=True)
    definition = await definition_of(merged, max_spec_bytes)
    updated = await recurring_runs.update(recurring_run_id, definition, list(request.update_mask.paths))
    if "mode" in request.update_mask.paths and definition.enabled != (updated.recurring_run.status == ENABLED):
        await recurring_runs.set_enabled(recurring_run_id, definition.enabled)
        updated = await recurring_runs.get(recurring_run_id)
    return await to_message(recurring_run_to_proto, updated)


async def trigger_recurring_run(recurring_runs: RecurringRuns, recurring_run_id: str) -> run_pb2.Run:
    """TriggerRecurringRun (gRPC and REST): the run created now, outside the schedule."""
    run = await recurring_runs.trigger(recurring_run_id)
    return run_to_proto(RunView(run, []))


async def backfill_recurring_run(
    recurring_runs: RecurringRuns, request: pb.BackfillRecurringRunRequest
) -> pb.BackfillRecurringRunResponse:
    """BackfillRecurringRun (gRPC and REST): the range's ticks queued, those with a run counted;
    with validate_only nothing is queued and the first ticks it would queue are listed."""
    done = await recurring_runs.backfill(
        request.recurring_run_id, micros(request, "start_time", "start_time"), micros(request, "end_time", "end_time"),
        request.validate_only,
    )
    return pb.BackfillRecurringRunResponse(
        ticks_queued=done.queued, ticks_already_present=done.present, queued_times=[timestamp(t) for t in done.queued_times],
    )


class RecurringRunServicer(recurring_run_pb2_grpc.RecurringRunServiceServicer):
    def __init__(self, recurring_runs: RecurringRuns, max_spec_bytes: int) -> None:
        self._recurring_runs = recurring_runs
        self._max_spec_bytes = max_spec_bytes

    async def CreateRecurringRun(self, request: pb.CreateRecurringRunRequest, context: grpc.aio.ServicerContext) -> pb.RecurringRun:
        view = await self._recurring_runs.create(await definition_of(request.recurring_run, self._max_spec_bytes))
        return await to_message(recurring_run_to_proto, view)

    async def GetRecurringRun(self, request: pb.GetRecurringRunRequest, context: grpc.aio.ServicerContext) -> pb.RecurringRun:
        return await to_message(recurring_run_to_proto, await self._recurring_runs.get(request.recurring_run_id))

    async def ListRecurringRuns(
        self, request: pb.ListRecurringRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRecurringRunsResponse:
        page = await self._recurring_runs.list(request.experiment_id, list_request(request))
        recurring_runs, next_page_token = fit_page(page, recurring_run_to_proto)
        return pb.ListRecurringRunsResponse(
            recurring_runs=recurring_runs, total_size=page.total_size, next_page_token=next_page_token
        )

    async def UpdateRecurringRun(self, request: pb.UpdateRecurringRunRequest, context: grpc.aio.ServicerContext) -> pb.RecurringRun:
        return await update_recurring_run(self._recurring_runs, request, self._max_spec_bytes)

    async def EnableRecurringRun(self, request: pb.EnableRecurringRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._recurring_runs.set_enabled(request.recurring_run_id, True)
        return empty_pb2.Empty()

    async def DisableRecurringRun(self, request: pb.DisableRecurringRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._recurring_runs.set_enabled(request.recurring_run_id, False)
        return empty_pb2.Empty()

    async def DeleteRecurringRun(self, request: pb.DeleteRecurringRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._recurring_runs.delete(request.recurring_run_id, request.delete_runs)
        return empty_pb2.Empty()

    async def TriggerRecurringRun(self, request: pb.TriggerRecurringRunRequest, context: grpc.aio.ServicerContext) -> run_pb2.Run:
        return await trigger_recurring_run(self._recurring_runs, request.recurring_run_id)

    async def BackfillRecurringRun(
        self, request: pb.BackfillRecurringRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.BackfillRecurringRunResponse:
        return await backfill_recurring_run(self._recurring_runs, request)

    async def PreviewSchedule(self, request: pb.PreviewScheduleRequest, context: grpc.aio.ServicerContext) -> pb.PreviewScheduleResponse:
        return await preview_schedule(self._recurring_runs, request)

    async def WatchRecurringRun(
        self, request: pb.WatchRecurringRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RecurringRun]:
        async for view in self._recurring_runs.watch(request.recurring_run_id):
            yield recurring_run_to_proto(view)
