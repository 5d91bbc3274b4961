"""RunService: protobuf in, core call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.rpc import code_pb2

from kfpgrpc.api.convert import list_request, spec_to_dict, struct, timestamp, to_message, values, values_to_dict
from kfpgrpc.api.sizes import fit_page, fit_run
from kfpgrpc.bounds import cut_error, summary
from kfpgrpc.core.runs import NewRun, Runs
from kfpgrpc.domain import CANCELED, LogLine, RunView, StateChange, TaskDetail
from kfpgrpc.v1 import common_pb2, run_pb2_grpc
from kfpgrpc.v1 import run_pb2 as pb


def run_error(state: str, message: str) -> common_pb2.Status | None:
    """Errors inside a run or task: CANCELLED for a termination, UNKNOWN for a failure. Cut to
    MAX_ERROR_BYTES here too, for rows stored before errors were bounded."""
    if not message:
        return None
    return common_pb2.Status(code=code_pb2.CANCELLED if state == CANCELED else code_pb2.UNKNOWN, message=cut_error(message))


def exposed_artifacts(artifacts: list[dict[str, Any]]) -> list[common_pb2.ExposedArtifact]:
    return [
        common_pb2.ExposedArtifact(
            name=a["name"], uri=a["uri"], metadata=struct(a["metadata"]), unmatched_reason=a["unmatched_reason"]
        )
        for a in artifacts
    ]


def _history(history: list[StateChange]) -> list[common_pb2.RuntimeStatus]:
    return [
        common_pb2.RuntimeStatus(
            update_time=timestamp(change.time),
            state=common_pb2.RuntimeState.Value(change.state),
            error=run_error(change.state, summary(change.error)),
        )
        for change in history
    ]


def _task_to_proto(task: TaskDetail, children: list[str]) -> pb.PipelineTaskDetail:
    return pb.PipelineTaskDetail(
        run_id=task.run_id,
        task_id=task.task_id,
        display_name=task.display_name,
        create_time=timestamp(task.create_time),
        start_time=timestamp(task.start_time),
        end_time=timestamp(task.end_time),
        state=common_pb2.RuntimeState.Value(task.state),
        error=run_error(task.state, task.error),
        parent_task_id=task.parent_task_id,
        state_history=_history(task.state_history),
        child_tasks=[pb.ChildTask(task_id=child) for child in children],
        input_parameters=values(task.input_parameters),
        output_parameters=values(task.output_parameters),
        output_artifacts=[
            pb.TaskArtifact(
                name=a["name"], uri=a["uri"], schema_title=a["schema_title"], metadata=struct(a["metadata"])
            )
            for a in task.output_artifacts
        ],
        image=task.image,
        exit_code=task.exit_code or 0,
        iteration_index=task.iteration_index,
        iteration_count=task.iteration_count,
        cached=bool(task.cached_from_run_id),
        cached_from_run_id=task.cached_from_run_id,
        notes=task.notes,
        retries=task.retries,
    )


def run_to_proto(view: RunView) -> pb.Run:
    """The Run message, fitted to the response budget (`kfpgrpc.api.sizes`)."""
    run = view.run
    children: dict[str, list[str]] = {}
    for task in view.tasks:
        children.setdefault(task.parent_task_id, []).append(task.task_id)
    message = pb.Run(
        experiment_id=run.experiment_id,
        run_id=run.run_id,
        display_name=run.display_name,
        storage_state=pb.Run.StorageState.Value(run.storage_state),
        description=run.description,
        runtime_config=runtime_config(run.parameters, {}, run.pipeline_root),
        service_account=run.service_account,
        created_at=timestamp(run.created_at),
        scheduled_at=timestamp(run.scheduled_at),
        finished_at=timestamp(run.finished_at),
        state=common_pb2.RuntimeState.Value(run.state),
        error=run_error(run.state, run.error),
        run_details=pb.RunDetails(task_details=[_task_to_proto(t, children.get(t.task_id, [])) for t in view.tasks]),
        recurring_run_id=run.recurring_run_id,
        state_history=_history(run.state_history),
        artifacts=[common_pb2.ArtifactSelector(**selector) for selector in run.artifacts],
        output_artifacts=exposed_artifacts(run.output_artifacts),
    )
    set_source(message, run.pipeline_id, run.pipeline_version_id, view.pipeline_spec, run.inline)
    return fit_run(message)


def log_request(request: pb.StreamRunLogsRequest) -> tuple[str, str, bool, int, int, int]:
    """Runs.logs' arguments from a StreamRunLogsRequest (gRPC's, or REST's from its query)."""
    return (request.run_id, request.task_name, request.follow,
            request.after_line_number, request.tail_lines, request.before_line_number)


def logs_to_proto(lines: list[LogLine]) -> pb.StreamRunLogsResponse:
    """One batch of a run's log lines (Runs.logs keeps a batch within the response budget)."""
    return pb.StreamRunLogsResponse(
        lines=[pb.LogLine(task_id=line.task_id, time=timestamp(line.time), text=line.text, line_number=line.line_number) for line in lines]
    )


async def source_fields(message: Any, field: str, max_spec_bytes: int) -> dict[str, Any]:
    """What a Run and a RecurringRun share: the pipeline source, runtime config, service
    account and artifact selectors, as NewRun/Definition keyword arguments. `field` names
    `message` in the request (e.g. "run"), for InvalidArgument; an inline spec over
    `max_spec_bytes` is one."""
    source = message.WhichOneof("pipeline_source")
    reference = message.pipeline_version_reference
    config = message.runtime_config
    by_reference = source == "pipeline_version_reference"
    spec = None
    if source == "pipeline_spec":
        spec = await spec_to_dict(message.pipeline_spec, f"{field}.pipeline_spec", max_spec_bytes)
    return {
        "pipeline_id": reference.pipeline_id if by_reference else "",
        "pipeline_version_id": reference.pipeline_version_id if by_reference else "",
        "pipeline_spec": spec,
        "parameters": values_to_dict(config.parameters, f"{field}.runtime_config.parameters"),
        "parameters_from": {
            name: {"recurring_run_id": ref.recurring_run_id, "output_artifact": ref.output_artifact, "optional": ref.optional}
            for name, ref in config.parameters_from.items()
        },
        "pipeline_root": config.pipeline_root,
        "service_account": message.service_account,
        "artifacts": [{"name": a.name, "path": a.path} for a in message.artifacts],
    }


def runtime_config(parameters: dict[str, Any], parameters_from: dict[str, dict[str, Any]], pipeline_root: str) -> common_pb2.RuntimeConfig:
    return common_pb2.RuntimeConfig(
        parameters=values(parameters),
        pipeline_root=pipeline_root,
        parameters_from={name: common_pb2.ArtifactRef(**ref) for name, ref in parameters_from.items()},
    )


def set_source(message: Any, pipeline_id: str, pipeline_version_id: str, inline_spec: dict[str, Any] | None, inline: bool) -> None:
    """Fill the pipeline_source oneof. An inline source whose spec is not given (lists and
    watch streams) is marked with an empty Struct."""
    if inline:
        message.pipeline_spec.CopyFrom(struct(inline_spec or {}))
    else:
        message.pipeline_version_reference.CopyFrom(
            common_pb2.PipelineVersionReference(pipeline_id=pipeline_id, pipeline_version_id=pipeline_version_id)
        )


async def new_run(run: Any, field: str, max_spec_bytes: int) -> NewRun:
    """A Run message, or the run template a RecurringRun message describes; `field` names it
    in the request (see source_fields)."""
    return NewRun(
        display_name=run.display_name, description=run.description, experiment_id=run.experiment_id,
        **await source_fields(run, field, max_spec_bytes),
    )


class RunServicer(run_pb2_grpc.RunServiceServicer):
    def __init__(self, runs: Runs, max_spec_bytes: int) -> None:
        self._runs = runs
        self._max_spec_bytes = max_spec_bytes

    async def CreateRun(self, request: pb.CreateRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        view = await self._runs.create(await new_run(request.run, "run", self._max_spec_bytes))
        return await to_message(run_to_proto, view)

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        return await to_message(run_to_proto, await self._runs.get(request.run_id))

    async def ListRuns(self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        page = await self._runs.list(request.experiment_id, list_request(request))
        runs, next_page_token = fit_page(page, run_to_proto)
        return pb.ListRunsResponse(runs=runs, total_size=page.total_size, next_page_token=next_page_token)

    async def ArchiveRun(self, request: pb.ArchiveRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._runs.set_storage_state(request.run_id, archived=True)
        return empty_pb2.Empty()

    async def UnarchiveRun(self, request: pb.UnarchiveRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._runs.set_storage_state(request.run_id, archived=False)
        return empty_pb2.Empty()

    async def DeleteRun(self, request: pb.DeleteRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._runs.delete(request.run_id)
        return empty_pb2.Empty()

    async def TerminateRun(self, request: pb.TerminateRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._runs.terminate(request.run_id)
        return empty_pb2.Empty()

    async def RetryRun(self, request: pb.RetryRunRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._runs.retry(request.run_id)
        return empty_pb2.Empty()

    async def WatchRun(self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Run]:
        async for view in self._runs.watch(request.run_id):
            yield run_to_proto(view)

    async def StreamRunLogs(
        self, request: pb.StreamRunLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamRunLogsResponse]:
        async for lines in await self._runs.logs(*log_request(request)):
            yield logs_to_proto(lines)
