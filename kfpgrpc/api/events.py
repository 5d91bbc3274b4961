"""EventService: protobuf in, core call, protobuf out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc

from kfpgrpc.api.convert import timestamp
from kfpgrpc.api.runs import exposed_artifacts, run_error
from kfpgrpc.api.sizes import fit_metadata
from kfpgrpc.bounds import cut_error, summary
from kfpgrpc.core.events import Events
from kfpgrpc.domain import (
    PIPELINE_VERSION_CREATED,
    RECURRING_RUN_CHANGED,
    RUN_COMPLETED,
    RUN_DELETED,
    RUN_STATE_CHANGED,
    TICK_SKIPPED,
    Event,
    EventFilter,
)
from kfpgrpc.errors import InvalidArgument
from kfpgrpc.v1 import common_pb2, event_pb2_grpc, recurring_run_pb2
from kfpgrpc.v1 import event_pb2 as pb


def _state(name: str) -> int:
    return common_pb2.RuntimeState.Value(name) if name else common_pb2.RUNTIME_STATE_UNSPECIFIED


def _payload(event: Event) -> tuple[str, Any]:
    """The oneof field of `event`'s type and its message."""
    d = event.details or {}
    if event.type == RUN_STATE_CHANGED:
        return "run_state_changed", pb.RunStateChanged(
            state=_state(d["state"]), previous_state=_state(d["previous_state"]), run_name=d["run_name"],
            error=run_error(d["state"], summary(d["error"])),
        )
    if event.type == RUN_COMPLETED:
        return "run_completed", pb.RunCompleted(
            run_name=d["run_name"], recurring_run_name=d["recurring_run_name"], pipeline_name=d["pipeline_name"],
            state=_state(d["state"]), start_time=timestamp(d["start_time"]), end_time=timestamp(d["end_time"]),
            artifacts=exposed_artifacts(d["artifacts"]), error=run_error(d["state"], d["error"]),
        )
    if event.type == RECURRING_RUN_CHANGED:
        return "recurring_run_changed", pb.RecurringRunChanged(
            change=pb.RecurringRunChanged.Change.Value(d["change"]),
            status=recurring_run_pb2.RecurringRun.Status.Value(d["status"]),
            updated_fields=d["updated_fields"], display_name=d["display_name"],
        )
    if event.type == TICK_SKIPPED:
        return "tick_skipped", pb.TickSkipped(
            scheduled_time=timestamp(d["scheduled_time"]), reason=d["reason"], detail=cut_error(d["detail"])
        )
    if event.type == RUN_DELETED:
        return "run_deleted", pb.RunDeleted(reason=d["reason"])
    assert event.type == PIPELINE_VERSION_CREATED, event.type
    return "pipeline_version_created", pb.PipelineVersionCreated(**d)


def event_to_proto(event: Event) -> pb.Event:
    """The Event message, fitted to the response budget (`kfpgrpc.api.sizes`)."""
    field, payload = _payload(event)
    message = pb.Event(
        sequence=event.sequence, time=timestamp(event.time), type=pb.EventType.Value(event.type),
        run_id=event.run_id, recurring_run_id=event.recurring_run_id, experiment_id=event.experiment_id,
    )
    getattr(message, field).CopyFrom(payload)
    return fit_metadata(message, message.run_completed.artifacts)


def event_filter(request: pb.WatchEventsRequest) -> EventFilter:
    types = set()
    for index, value in enumerate(request.types):
        if value == pb.EVENT_TYPE_UNSPECIFIED or value not in pb.EventType.values():
            raise InvalidArgument.field(f"types[{index}]", f"{value} is not an event type")
        types.add(pb.EventType.Name(value))
    return EventFilter(request.run_id, request.recurring_run_id, request.experiment_id, frozenset(types))


ENCODED_CACHE_BYTES = 16 * 1024 * 1024  # serialized events kept for the other watchers of the same event


class EncodedEvents:
    """Serialized Event messages by sequence, the most recent up to `max_bytes` in all (one
    event at least): an event committed once reaches every watcher whose filter matches it, so
    it is converted and serialized once, not once per watcher. A committed event never changes
    and its sequence is never reused, so an entry never goes stale."""

    def __init__(self, max_bytes: int = ENCODED_CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._by_sequence: OrderedDict[int, bytes] = OrderedDict()

    @property
    def held_bytes(self) -> int:
        """The bytes of the encodings kept."""
        return self._bytes

    def __call__(self, event: Event) -> bytes:
        """`event` (committed: its sequence set) as the serialized Event message."""
        encoded = self._by_sequence.get(event.sequence)
        if encoded is None:
            encoded = event_to_proto(event).SerializeToString()
            self._by_sequence[event.sequence] = encoded
            self._bytes += len(encoded)
            while self._bytes > self._max_bytes and len(self._by_sequence) > 1:
                self._bytes -= len(self._by_sequence.popitem(last=False)[1])
        return encoded


class EventServicer(event_pb2_grpc.EventServiceServicer):
    """Yields serialized Event messages: register it with `add_event_service`."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self._encoded = EncodedEvents()

    async def WatchEvents(  # noqa: N802 - gRPC method name
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        stream = await self._events.watch(request.after_sequence, event_filter(request), request.newest)
        # Headers at once: a client waiting for the stream to open need not wait for an event.
        await context.send_initial_metadata(())
        async for event in stream:
            yield self._encoded(event)


def add_event_service(servicer: EventServicer, server: grpc.aio.Server) -> None:
    """The generated `add_EventServiceServicer_to_server`, except that WatchEvents sends the
    bytes its servicer yields as they are (no response serializer: gRPC passes bytes through),
    so that one serialized event is shared by all the streams it goes to."""
    handlers = {
        "WatchEvents": grpc.unary_stream_rpc_method_handler(
            servicer.WatchEvents, request_deserializer=pb.WatchEventsRequest.FromString, response_serializer=None,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("kfpgrpc.v1.EventService", handlers),))
    server.add_registered_method_handlers("kfpgrpc.v1.EventService", handlers)
