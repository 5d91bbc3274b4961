"""kfpgrpc's EventService over REST, as a Server-Sent Event stream (kfpgrpc/http/streams.py):
the JSON twin of kfpgrpc/api/events.py's WatchEvents, with its filter and Event conversion.

    GET /apis/v2beta1/events:watch?after_sequence&newest&run_id&recurring_run_id&experiment_id&types&types...
        -> SSE: each event as `id: <sequence>` and `data: <Event JSON>` (no `event:` line, so
           EventSource's onmessage gets it)

`types` are EventType names, one parameter each (`types=RUN_COMPLETED&types=RUN_DELETED`). A
`Last-Event-ID` header, which EventSource sends when it reconnects, takes the place of
`after_sequence` and of `newest` (which is then ignored), so that a reconnected stream goes on at the event after the last one received.
A stream the core ends because it fell behind (RESOURCE_EXHAUSTED) or the server stops
(UNAVAILABLE) sends an `error` event and closes: the client reconnects and loses nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kfpgrpc.api.events import event_filter, event_to_proto
from kfpgrpc.core.events import Events
from kfpgrpc.errors import InvalidArgument
from kfpgrpc.http.endpoints import Endpoint
from kfpgrpc.http.messages import request_message, sse_frame
from kfpgrpc.http.streams import event_stream
from kfpgrpc.v1 import event_pb2 as pb

PATH = "/apis/v2beta1/events:watch"
LAST_EVENT_ID = "Last-Event-ID"
_MAX_SEQUENCE = 2**63 - 1  # after_sequence is an int64


class EventRoutes:
    def __init__(self, events: Events) -> None:
        self._events = events

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", PATH, self.watch_events, "kfpgrpc: events as Server-Sent Events, resumable by Last-Event-ID.",
                     pb.WatchEventsRequest, pb.Event, stream=True),
        ]

    async def watch_events(self, request: Request) -> Response:
        message = request_message(request, pb.WatchEventsRequest())
        last_event_id = request.headers.get(LAST_EVENT_ID)
        if last_event_id is not None:
            # A reconnecting EventSource repeats the first request's query: its `newest` gave
            # the start, the header now says where to go on.
            message.after_sequence = _sequence(last_event_id)
            message.newest = 0
        events = await self._events.watch(message.after_sequence, event_filter(message), message.newest)
        return event_stream(events, lambda event: sse_frame(event_to_proto(event), event_id=str(event.sequence)))


def _sequence(last_event_id: str) -> int:
    """The sequence a Last-Event-ID header names (an event's `id:`, a decimal number)."""
    if not (last_event_id.isascii() and last_event_id.isdigit() and int(last_event_id) <= _MAX_SEQUENCE):
        raise InvalidArgument.field(LAST_EVENT_ID, f"{last_event_id[:40]!r} is not an event sequence")
    return int(last_event_id)
