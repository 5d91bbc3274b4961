"""A bare grpc.aio server with kfpgrpc's WatchEvents method and nothing else: the floor of
bench/bench_events.py's fan-out, what gRPC Python itself costs to send one message on each
of N open streams.

    python bench/grpc_floor.py    # prints "127.0.0.1:PORT", serves until SIGTERM

`/kfpgrpc.v1.EventService/WatchEvents` sends its initial metadata at once, then every event
fired while it is open (the request's filter is ignored). `/floor.Floor/Complete` (request:
a run id as UTF-8 bytes, at most 128; response: empty) stamps a RUN_COMPLETED Event for that
run with end_time = now, serializes it once and wakes every open stream, which yields those
bytes, the way kfpgrpc's WatchEvents does. No database, no run, no filter, no
interceptor: what is left is gRPC's own per-stream send path. The heap is settled as
`kfpgrpc serve` settles it (`kfpgrpc.cli.settle_heap`), so that both collect garbage alike.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kfpgrpc.cli import settle_heap  # noqa: E402
from kfpgrpc.v1 import event_pb2 as pb  # noqa: E402

MAX_RUN_ID_BYTES = 128


async def serve() -> None:
    loop = asyncio.get_running_loop()
    # The latest event and how many there were: the bench fires the next completion once every
    # watcher has the previous one, so a stream is never more than one event behind.
    latest, count = b"", 0
    waiting: set[asyncio.Future[None]] = set()  # one bare future per stream waiting, as kfpgrpc's watchers

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await context.send_initial_metadata(())
        seen = count
        while True:
            if seen == count:
                woken = loop.create_future()
                waiting.add(woken)
                try:
                    await woken
                finally:
                    waiting.discard(woken)
            seen = count
            yield latest

    async def complete(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        nonlocal latest, count
        if len(request) > MAX_RUN_ID_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"run id: at most {MAX_RUN_ID_BYTES} bytes")
        event = pb.Event(sequence=count + 1, type=pb.RUN_COMPLETED, run_id=request.decode(errors="replace"))
        event.run_completed.end_time.FromMicroseconds(time.time_ns() // 1000)
        latest, count = event.SerializeToString(), count + 1
        for woken in waiting:
            woken.set_result(None)  # not done: a stream removes its own future once woken or cancelled
        waiting.clear()
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(
            "kfpgrpc.v1.EventService", {"WatchEvents": grpc.unary_stream_rpc_method_handler(watch)}),
        grpc.method_handlers_generic_handler("floor.Floor", {"Complete": grpc.unary_unary_rpc_method_handler(complete)}),
    ))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settle_heap()
    print(f"127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve())
