"""Server-Sent Event streams (text/event-stream, kfpgrpc's addition to KFP's REST API): the
HTTP twin of the gRPC server streams, for browsers' EventSource and any HTTP client.

A stream is an ordinary Starlette StreamingResponse. The route calls the core before it
returns one, so that an error found then (unknown id, bad parameter) is the ordinary JSON error
response with its HTTP status. The stream then sends:

    retry: 1000                         first: EventSource waits 1 s before it reconnects
    event: <name> / id: <n> / data: <JSON>   one event per item (message_json's JSON, one line)
    : keep-alive                        a comment after KEEP_ALIVE_SECONDS without an event, so
                                        that proxies and browsers keep an idle stream open
    event: end / data: {}               when the stream is complete: EventSource clients close
                                        on it rather than reconnect
    event: error / data: <error JSON>   when the core ends the stream with an error (the body
                                        errors.py answers it with); the stream then closes

A client that disconnects ends the stream at once: Starlette cancels the response when the
server reports the disconnect, and the core's iterator is cancelled or closed with it, which
drops its subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TypeVar

from starlette.responses import StreamingResponse

from kfpgrpc.http.errors import error_body
from kfpgrpc.http.messages import sse_frame

T = TypeVar("T")

KEEP_ALIVE_SECONDS = 15.0  # of silence before a `: keep-alive` comment
RETRY_MILLISECONDS = 1000  # EventSource's wait before it reconnects
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on as it comes, not a buffer's worth
}
_RETRY = f"retry: {RETRY_MILLISECONDS}\n\n".encode()
_KEEP_ALIVE = b": keep-alive\n\n"
_END = sse_frame({}, event="end")
_DONE = object()


def event_stream(items: AsyncGenerator[T, None], frame: Callable[[T], bytes], first: Sequence[T] = ()) -> StreamingResponse:
    """The 200 response streaming `first`, then `items`, each as `frame(item)` (sse_frame), then
    `end`; or `error` when `items` raises."""
    return StreamingResponse(_frames(items, frame, first), headers=HEADERS)


async def _next(items: AsyncGenerator[T, None]) -> T | object:
    return await anext(items, _DONE)


async def _frames(items: AsyncGenerator[T, None], frame: Callable[[T], bytes], first: Sequence[T]) -> AsyncIterator[bytes]:
    yield _RETRY
    pending: asyncio.Task[T | object] | None = None
    try:
        for item in first:
            yield frame(item)
        while True:
            # The next item in a task of its own, so that waiting for it can be interrupted by a
            # keep-alive without cancelling it (which would end `items`).
            pending = asyncio.ensure_future(_next(items))
            while not (await asyncio.wait({pending}, timeout=KEEP_ALIVE_SECONDS))[0]:
                yield _KEEP_ALIVE
            item = pending.result()
            pending = None
            if item is _DONE:
                yield _END
                return
            yield frame(item)  # type: ignore[arg-type]
    except Exception as error:
        yield sse_frame(error_body(error), event="error")
    finally:
        if pending is not None and not pending.done():
            pending.cancel()  # the client left while `items` waited: end it there
        else:
            if pending is not None and not pending.cancelled():
                # The client left just as `items` ended with an error (every watch does at a
                # stop): nobody will send it. Retrieved, else asyncio logs it as lost (an ERROR).
                pending.exception()
            await items.aclose()
