"""KFP's RecurringRunService over REST (kfp-server-api's RecurringRunServiceApi): the JSON twin
of kfpgrpc/api/recurring_runs.py, calling the same core and its conversions.

    POST   /apis/v2beta1/recurringruns                                   body: RecurringRun -> RecurringRun
    GET    /apis/v2beta1/recurringruns/{recurring_run_id}                -> RecurringRun
    GET    /apis/v2beta1/recurringruns?experiment_id&page_token&page_size&sort_by&filter
                                                                         -> ListRecurringRunsResponse
    POST   /apis/v2beta1/recurringruns/{recurring_run_id}:enable         -> {}
    POST   /apis/v2beta1/recurringruns/{recurring_run_id}:disable        -> {}
    DELETE /apis/v2beta1/recurringruns/{recurring_run_id}                -> {}
    POST   /apis/v2beta1/recurringruns:previewSchedule                   body: PreviewScheduleRequest
                                                                         -> PreviewScheduleResponse (kfpgrpc's)
    GET    /apis/v2beta1/recurringruns/{recurring_run_id}:watch          -> SSE: `recurring_run` events,
                                                                            `end` once it is deleted

Ours, which KFP lacks (the gRPC calls of the same names, in grpc-gateway's style):

    PATCH  /apis/v2beta1/recurringruns/{recurring_run_id}?update_mask    body: RecurringRun -> RecurringRun
    POST   /apis/v2beta1/recurringruns/{recurring_run_id}:trigger        -> Run
    POST   /apis/v2beta1/recurringruns/{recurring_run_id}:backfill       body: {start_time, end_time}
                                                                         -> BackfillRecurringRunResponse

PATCH's update mask is the `update_mask` query parameter, else the fields the body sets
(messages.body_with_mask).

Paths and shapes are those of KFP's backend/api/v2beta1/recurring_run.proto (google.api.http).
Our additions (overlap_policy, cron_schedule.time_zone, next_scheduled_times,
last_scheduled_time, counters) are in the JSON as in our proto. One name is KFP's rather than ours:
a list's recurring runs are `recurringRuns`, the field's name in KFP's proto. KFP's `propagation_policy` on
delete is ignored (there are no Kubernetes objects to propagate to); our `delete_runs` is honored.

The watch stream is kfpgrpc's, the Server-Sent Event twin of WatchRecurringRun
(kfpgrpc/http/streams.py): a `recurring_run` event's data is the RecurringRun as GET writes it,
with the pipeline spec left out as a list leaves it, as WatchRecurringRun sends it.
"""

from __future__ import annotations

from google.protobuf import empty_pb2, field_mask_pb2
from starlette.requests import Request
from starlette.responses import Response

from kfpgrpc.api.convert import list_request
from kfpgrpc.api.recurring_runs import (
    backfill_recurring_run,
    definition_of,
    preview_schedule,
    recurring_run_to_proto,
    trigger_recurring_run,
    update_recurring_run,
)
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.recurring import RecurringRuns
from kfpgrpc.http.endpoints import Endpoint
from kfpgrpc.http.messages import (
    body_into,
    body_with_mask,
    params_into,
    request_message,
    respond,
    respond_off_loop,
    respond_view,
    sse_frame,
)
from kfpgrpc.http.streams import event_stream
from kfpgrpc.v1 import recurring_run_pb2 as pb
from kfpgrpc.v1 import run_pb2

PREFIX = "/apis/v2beta1/recurringruns"
KFP_NAMES = {"recurring_runs": "recurringRuns"}  # ListRecurringRunsResponse's field by KFP's proto name
OneRecurringRunRequest = (
    pb.GetRecurringRunRequest | pb.EnableRecurringRunRequest | pb.DisableRecurringRunRequest | pb.TriggerRecurringRunRequest
    | pb.WatchRecurringRunRequest
)


class RecurringRunRoutes:
    def __init__(self, recurring_runs: RecurringRuns, max_message_bytes: int, max_spec_bytes: int) -> None:
        self._recurring_runs = recurring_runs
        self._max_message_bytes = max_message_bytes
        self._max_spec_bytes = max_spec_bytes

    def endpoints(self) -> list[Endpoint]:
        one = PREFIX + "/{recurring_run_id}"
        return [
            Endpoint("POST", PREFIX, self.create_recurring_run, "Create a recurring run.", pb.CreateRecurringRunRequest, pb.RecurringRun,
                     body="recurring_run"),
            Endpoint("GET", PREFIX, self.list_recurring_runs, "List recurring runs.", pb.ListRecurringRunsRequest,
                     pb.ListRecurringRunsResponse, renamed=KFP_NAMES),
            Endpoint("POST", PREFIX + ":previewSchedule", self.preview_schedule,
                     "kfpgrpc: a trigger's next fire times, as a recurring run with it would fire.", pb.PreviewScheduleRequest,
                     pb.PreviewScheduleResponse, body="*"),
            Endpoint("POST", one + ":enable", self.enable_recurring_run, "Enable a recurring run.", pb.EnableRecurringRunRequest),
            Endpoint("POST", one + ":disable", self.disable_recurring_run, "Disable a recurring run.", pb.DisableRecurringRunRequest),
            Endpoint("POST", one + ":trigger", self.trigger_recurring_run, "kfpgrpc: start a run now, outside the schedule.",
                     pb.TriggerRecurringRunRequest, run_pb2.Run),
            Endpoint("POST", one + ":backfill", self.backfill_recurring_run, "kfpgrpc: queue runs for a past range's ticks.",
                     pb.BackfillRecurringRunRequest, pb.BackfillRecurringRunResponse, body="*"),
            # Before `one`, which would match it:
            Endpoint("GET", one + ":watch", self.watch_recurring_run,
                     "kfpgrpc: the recurring run's snapshots as Server-Sent Events, until it is deleted.",
                     pb.WatchRecurringRunRequest, pb.RecurringRun, stream=True),
            Endpoint("PATCH", one, self.update_recurring_run,
                     "kfpgrpc: update a recurring run (update_mask, else the fields the body sets).", pb.UpdateRecurringRunRequest,
                     pb.RecurringRun, body="recurring_run"),
            Endpoint("GET", one, self.get_recurring_run, "Get a recurring run.", pb.GetRecurringRunRequest, pb.RecurringRun),
            Endpoint("DELETE", one, self.delete_recurring_run, "Delete a recurring run (with its runs if delete_runs).",
                     pb.DeleteRecurringRunRequest),
        ]

    async def create_recurring_run(self, request: Request) -> Response:
        recurring_run = await body_into(request, pb.RecurringRun(), "recurring_run", self._max_message_bytes)
        view = await self._recurring_runs.create(await definition_of(recurring_run, self._max_spec_bytes))
        return await respond_view(recurring_run_to_proto, view)

    async def get_recurring_run(self, request: Request) -> Response:
        recurring_run_id = self._recurring_run_id(request, pb.GetRecurringRunRequest())
        return await respond_view(recurring_run_to_proto, await self._recurring_runs.get(recurring_run_id))

    async def list_recurring_runs(self, request: Request) -> Response:
        message = request_message(request, pb.ListRecurringRunsRequest())
        page = await self._recurring_runs.list(message.experiment_id, list_request(message))
        recurring_runs, next_page_token = fit_page(page, recurring_run_to_proto)
        response = pb.ListRecurringRunsResponse(recurring_runs=recurring_runs, total_size=page.total_size, next_page_token=next_page_token)
        return respond(response, kfp_names=KFP_NAMES)

    async def enable_recurring_run(self, request: Request) -> Response:
        await self._recurring_runs.set_enabled(self._recurring_run_id(request, pb.EnableRecurringRunRequest()), True)
        return respond(empty_pb2.Empty())

    async def disable_recurring_run(self, request: Request) -> Response:
        await self._recurring_runs.set_enabled(self._recurring_run_id(request, pb.DisableRecurringRunRequest()), False)
        return respond(empty_pb2.Empty())

    async def update_recurring_run(self, request: Request) -> Response:
        recurring_run, paths = await body_with_mask(request, pb.RecurringRun(), "recurring_run", self._max_message_bytes)
        params_into(recurring_run, request.path_params)  # the path's id over the body's, as grpc-gateway
        message = pb.UpdateRecurringRunRequest(recurring_run=recurring_run, update_mask=field_mask_pb2.FieldMask(paths=paths))
        updated = await update_recurring_run(self._recurring_runs, message, self._max_spec_bytes)
        return await respond_off_loop(updated) if updated.HasField("pipeline_spec") else respond(updated)

    async def trigger_recurring_run(self, request: Request) -> Response:
        recurring_run_id = self._recurring_run_id(request, pb.TriggerRecurringRunRequest())
        return respond(await trigger_recurring_run(self._recurring_runs, recurring_run_id))

    async def backfill_recurring_run(self, request: Request) -> Response:
        message = await body_into(request, pb.BackfillRecurringRunRequest(), "body", self._max_message_bytes)
        return respond(await backfill_recurring_run(self._recurring_runs, params_into(message, request.path_params)))

    async def delete_recurring_run(self, request: Request) -> Response:
        message = request_message(request, pb.DeleteRecurringRunRequest())
        await self._recurring_runs.delete(message.recurring_run_id, message.delete_runs)
        return respond(empty_pb2.Empty())

    async def watch_recurring_run(self, request: Request) -> Response:
        views = self._recurring_runs.watch(self._recurring_run_id(request, pb.WatchRecurringRunRequest()))
        first = await anext(views)  # the current snapshot: an unknown recurring run is a 404, not a stream
        return event_stream(views, lambda view: sse_frame(recurring_run_to_proto(view), event="recurring_run"), first=[first])

    async def preview_schedule(self, request: Request) -> Response:
        message = await body_into(request, pb.PreviewScheduleRequest(), "body", self._max_message_bytes)
        return respond(await preview_schedule(self._recurring_runs, message))

    @staticmethod
    def _recurring_run_id(request: Request, message: OneRecurringRunRequest) -> str:
        """The recurring_run_id of a request about one recurring run, from its path (and query) parameters."""
        return request_message(request, message).recurring_run_id
