"""KFP's RunService over REST (kfp-server-api's RunServiceApi): the JSON twin of
kfpgrpc/api/runs.py, calling the same core and its conversions.

    POST   /apis/v2beta1/runs                              body: Run -> Run
    GET    /apis/v2beta1/runs/{run_id}                     -> Run
    GET    /apis/v2beta1/runs?experiment_id&page_token&page_size&sort_by&filter -> ListRunsResponse
    POST   /apis/v2beta1/runs/{run_id}:terminate           -> {}
    POST   /apis/v2beta1/runs/{run_id}:retry               -> {}
    POST   /apis/v2beta1/runs/{run_id}:archive             -> {}
    POST   /apis/v2beta1/runs/{run_id}:unarchive           -> {}
    DELETE /apis/v2beta1/runs/{run_id}                     -> {}
    GET    /apis/v2beta1/runs/{run_id}:watch               -> SSE: `run` events, then `end`
    GET    /apis/v2beta1/runs/{run_id}/logs?task_name&follow&after_line_number&tail_lines&before_line_number -> SSE: `logs` events, then `end`

Paths and shapes are those of KFP's backend/api/v2beta1/run.proto (google.api.http): the Run's
`pipeline_spec` is a JSON object (or `pipeline_version_reference` names a stored version),
`runtime_config.parameters` are JSON values. The deprecated `experiment_id` query parameter
kfp-server-api sends on every call but ListRuns is ignored, as KFP ignores it.

The two streams are kfpgrpc's (KFP has neither), the Server-Sent Event twins of WatchRun and
StreamRunLogs (kfpgrpc/http/streams.py): a `run` event's data is the Run as GET writes it but
with the pipeline spec left out as a list leaves it (`pipeline_spec: {}`), as WatchRun sends it;
a `logs` event's is a StreamRunLogsResponse, `{"lines": [LogLine...]}`.
"""

from __future__ import annotations

from google.protobuf import empty_pb2
from starlette.requests import Request
from starlette.responses import Response

from kfpgrpc.api.convert import list_request
from kfpgrpc.api.runs import log_request, logs_to_proto, new_run, run_to_proto
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.runs import Runs
from kfpgrpc.http.endpoints import Endpoint
from kfpgrpc.http.messages import (
    body_into,
    request_message,
    respond,
    respond_view,
    sse_frame,
)
from kfpgrpc.http.streams import event_stream
from kfpgrpc.v1 import run_pb2 as pb

PREFIX = "/apis/v2beta1/runs"
OneRunRequest = (
    pb.GetRunRequest | pb.TerminateRunRequest | pb.RetryRunRequest | pb.ArchiveRunRequest | pb.UnarchiveRunRequest
    | pb.DeleteRunRequest | pb.WatchRunRequest
)


class RunRoutes:
    def __init__(self, runs: Runs, max_message_bytes: int, max_spec_bytes: int) -> None:
        self._runs = runs
        self._max_message_bytes = max_message_bytes
        self._max_spec_bytes = max_spec_bytes

    def endpoints(self) -> list[Endpoint]:
        one = PREFIX + "/{run_id}"
        return [
            Endpoint("POST", PREFIX, self.create_run, "Create a run.", pb.CreateRunRequest, pb.Run, body="run"),
            Endpoint("GET", PREFIX, self.list_runs, "List runs.", pb.ListRunsRequest, pb.ListRunsResponse),
            Endpoint("POST", one + ":terminate", self.terminate_run, "Terminate a run.", pb.TerminateRunRequest),
            Endpoint("POST", one + ":retry", self.retry_run, "Retry a failed or canceled run.", pb.RetryRunRequest),
            Endpoint("POST", one + ":archive", self.archive_run, "Archive a run.", pb.ArchiveRunRequest),
            Endpoint("POST", one + ":unarchive", self.unarchive_run, "Unarchive a run.", pb.UnarchiveRunRequest),
            # Before `one`, which would match them:
            Endpoint("GET", one + ":watch", self.watch_run, "kfpgrpc: the run's snapshots as Server-Sent Events, until it ends.",
                     pb.WatchRunRequest, pb.Run, stream=True),
            Endpoint("GET", one + "/logs", self.stream_run_logs, "kfpgrpc: the run's task logs as Server-Sent Events.",
                     pb.StreamRunLogsRequest, pb.StreamRunLogsResponse, stream=True),
            Endpoint("GET", one, self.get_run, "Get a run.", pb.GetRunRequest, pb.Run),
            Endpoint("DELETE", one, self.delete_run, "Delete a run.", pb.DeleteRunRequest),
        ]

    async def create_run(self, request: Request) -> Response:
        run = await body_into(request, pb.Run(), "run", self._max_message_bytes)
        return await respond_view(run_to_proto, await self._runs.create(await new_run(run, "run", self._max_spec_bytes)))

    async def get_run(self, request: Request) -> Response:
        return await respond_view(run_to_proto, await self._runs.get(self._run_id(request, pb.GetRunRequest())))

    async def list_runs(self, request: Request) -> Response:
        message = request_message(request, pb.ListRunsRequest())
        page = await self._runs.list(message.experiment_id, list_request(message))
        runs, next_page_token = fit_page(page, run_to_proto)
        return respond(pb.ListRunsResponse(runs=runs, total_size=page.total_size, next_page_token=next_page_token))

    async def terminate_run(self, request: Request) -> Response:
        await self._runs.terminate(self._run_id(request, pb.TerminateRunRequest()))
        return respond(empty_pb2.Empty())

    async def retry_run(self, request: Request) -> Response:
        await self._runs.retry(self._run_id(request, pb.RetryRunRequest()))
        return respond(empty_pb2.Empty())

    async def archive_run(self, request: Request) -> Response:
        await self._runs.set_storage_state(self._run_id(request, pb.ArchiveRunRequest()), archived=True)
        return respond(empty_pb2.Empty())

    async def unarchive_run(self, request: Request) -> Response:
        await self._runs.set_storage_state(self._run_id(request, pb.UnarchiveRunRequest()), archived=False)
        return respond(empty_pb2.Empty())

    async def delete_run(self, request: Request) -> Response:
        await self._runs.delete(self._run_id(request, pb.DeleteRunRequest()))
        return respond(empty_pb2.Empty())

    async def watch_run(self, request: Request) -> Response:
        views = self._runs.watch(self._run_id(request, pb.WatchRunRequest()))
        first = await anext(views)  # the current snapshot: an unknown run is a 404, not a stream
        return event_stream(views, lambda view: sse_frame(run_to_proto(view), event="run"), first=[first])

    async def stream_run_logs(self, request: Request) -> Response:
        message = request_message(request, pb.StreamRunLogsRequest())
        batches = await self._runs.logs(*log_request(message))
        return event_stream(batches, lambda lines: sse_frame(logs_to_proto(lines), event="logs"))

    @staticmethod
    def _run_id(request: Request, message: OneRunRequest) -> str:
        """The run_id of a request about one run, from its path (and query) parameters."""
        return request_message(request, message).run_id
