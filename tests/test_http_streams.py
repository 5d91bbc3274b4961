"""The Server-Sent Event streams of the REST API (kfpgrpc/http/streams.py) against a real
`kfpgrpc serve` with real runs, read with httpx as any HTTP client reads them: a run watched to
SUCCEEDED, a recurring run watched to its deletion, events filtered and resumed with
Last-Event-ID, a task's log lines followed while it runs, errors before the stream as JSON, the
bearer token, a stop ending every open stream cleanly, and streams dropped by their clients
leaving nothing behind."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from kfpgrpc.errors import Unavailable
from kfpgrpc.http.streams import event_stream
from tests import test_http
from tests.support import ServerProcess
from tests.test_run_streams import Gated

rest = test_http.rest  # the server fixture

HANG = httpx.Timeout(120)  # seconds: only turns a hang into a failure
WAIT = 120
POLL = 0.1
START = "2100-01-01T00:00:00Z"  # a schedule that never fires during a test
RUNS = "/apis/v2beta1/runs"
EVENTS = "/apis/v2beta1/events:watch"
TOKEN = "s3cret-token"


@dataclass
class Frame:
    """One SSE event, or a comment / retry line block, as a browser's EventSource parses it."""

    event: str = ""
    id: str = ""
    data: Any = None  # the parsed JSON of the data line
    retry: str = ""
    comments: list[str] = field(default_factory=list)


def frames(response: httpx.Response) -> Iterator[Frame]:
    """The frames of an event stream, each ended by a blank line (the SSE wire format)."""
    frame, data = Frame(), []
    for line in response.iter_lines():
        if not line:
            if data:
                frame.data = json.loads("\n".join(data))
            yield frame
            frame, data = Frame(), []
        elif line.startswith(":"):
            frame.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                setattr(frame, name, value)


def events_of(response: httpx.Response) -> Iterator[Frame]:
    """The frames that are events (not the opening `retry`, not keep-alive comments)."""
    return (frame for frame in frames(response) if frame.data is not None)


@contextmanager
def stream(url: str, **kwargs: Any) -> Iterator[httpx.Response]:
    """An open event stream; closed (the connection dropped) on leaving."""
    with httpx.stream("GET", url, timeout=HANG, **kwargs) as response:
        yield response


def opened(response: httpx.Response) -> Iterator[Frame]:
    """The stream's events, once its headers and its first line are as the contract says."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    all_frames = frames(response)
    assert next(all_frames).retry == "1000"
    return (frame for frame in all_frames if frame.data is not None)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error answered instead of a stream."""
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(response.read())
    return body


def fields_of(body: dict[str, Any]) -> list[str]:
    return [v["field"] for detail in body["details"] for v in detail.get("field_violations", [])]


def create_run(url: str, spec: dict[str, Any], **parameters: Any) -> str:
    response = httpx.post(url + RUNS, json={"display_name": "streamed", "pipeline_spec": spec, "runtime_config": {"parameters": parameters}})
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def get_run(url: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}{RUNS}/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_for(probe: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := probe()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(POLL)
    return value


def test_a_run_is_watched_to_succeeded_then_end(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    run_id = create_run(rest.http_url, compiled["add-pipeline"], a=3, b=4)
    with stream(f"{rest.http_url}{RUNS}/{run_id}:watch") as response:
        received = list(opened(response))
    *snapshots, end = received
    assert (end.event, end.data) == ("end", {})
    assert {frame.event for frame in snapshots} == {"run"} and all(frame.data["run_id"] == run_id for frame in snapshots)
    states = [frame.data["state"] for frame in snapshots]
    order = ["PENDING", "RUNNING", "SUCCEEDED"]
    assert states == sorted(states, key=order.index) and states[-1] == "SUCCEEDED", states
    assert "RUNNING" in states  # a live watch sees the run between its start and its end
    # The Run as GET writes it, but for the spec, left out as a list leaves it.
    assert snapshots[-1].data == {**get_run(rest.http_url, run_id), "pipeline_spec": {}}

    # A finished run: its final snapshot, then the end.
    with stream(f"{rest.http_url}{RUNS}/{run_id}:watch") as response:
        again = list(opened(response))
    assert [(frame.event, frame.data.get("state")) for frame in again] == [("run", "SUCCEEDED"), ("end", None)]


def test_errors_before_a_stream_are_json_with_their_status(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    url = rest.http_url
    for path in (f"{RUNS}/no-such-run:watch", f"{RUNS}/no-such-run/logs", "/apis/v2beta1/recurringruns/no-such:watch"):
        response = httpx.get(url + path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == 5  # NOT_FOUND

    run_id = create_run(url, compiled["add-pipeline"], a=1, b=2)
    response = httpx.get(f"{url}{RUNS}/{run_id}/logs", params={"task_name": "no-such-task"})
    assert response.status_code == 404 and "task_name" in error_of(response)["message"]
    for params, headers, field_name in [
        ({"types": ["RUN_COMPLETED", "NOT_A_TYPE"]}, {}, "types"),
        ({"after_sequence": "soon"}, {}, "after_sequence"),
        ({"after_sequence": "999999"}, {}, "after_sequence"),  # after the newest event
        ({}, {"Last-Event-ID": "soon"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
    ]:
        response = httpx.get(url + EVENTS, params=params, headers=headers)
        assert response.status_code == 400, (params, headers)
        assert fields_of(error_of(response)) == [field_name]
    response = httpx.get(f"{url}{RUNS}/{run_id}/logs", params={"follow": "maybe"})
    assert response.status_code == 400 and fields_of(error_of(response)) == ["follow"]


def test_a_recurring_run_is_watched_until_it_is_deleted(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    url = rest.http_url
    created = httpx.post(url + "/apis/v2beta1/recurringruns", json={
        "display_name": "hourly", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE",
        "trigger": {"periodic_schedule": {"interval_second": "3600", "start_time": START}}, "overlap_policy": "SKIP",
    })
    assert created.status_code == 200, created.text
    recurring_run_id = created.json()["recurring_run_id"]
    one = f"{url}/apis/v2beta1/recurringruns/{recurring_run_id}"
    with stream(one + ":watch") as response:
        received = opened(response)
        first = next(received)
        assert first.event == "recurring_run"
        # As GET writes it, our fields too, but for the spec (left out as a list leaves it).
        assert first.data == {**httpx.get(one).json(), "pipeline_spec": {}}
        assert first.data["status"] == "ENABLED" and first.data["overlap_policy"] == "SKIP"
        assert httpx.post(one + ":disable").status_code == 200
        assert next(received).data["status"] == "DISABLED"
        assert httpx.delete(one).status_code == 200
        assert [(frame.event, frame.data) for frame in received][-1] == ("end", {})


def run_two(url: str, spec: dict[str, Any]) -> tuple[str, str]:
    """Two runs of `spec`, one after the other, each finished."""
    run_ids = []
    for _ in range(2):
        run_id = create_run(url, spec)
        wait_for(lambda: get_run(url, run_id)["state"] == "SUCCEEDED", f"{run_id} SUCCEEDED")  # noqa: B023 - called at once
        run_ids.append(run_id)
    return run_ids[0], run_ids[1]


def read_until(received: Iterator[Frame], last: Callable[[Frame], bool]) -> list[Frame]:
    frames_read = []
    for frame in received:
        frames_read.append(frame)
        if last(frame):
            return frames_read
    raise AssertionError(f"the stream ended after {frames_read}")


def completed(run_id: str) -> Callable[[Frame], bool]:
    return lambda frame: frame.data["type"] == "RUN_COMPLETED" and frame.data["run_id"] == run_id


def test_events_are_filtered_and_resume_after_last_event_id(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    url = rest.http_url
    first, second = run_two(url, compiled["instant-pipeline"])

    with stream(url + EVENTS) as response:
        everything = read_until(opened(response), completed(second))
    ids = [int(frame.id) for frame in everything]
    assert ids == list(range(1, len(ids) + 1))  # each event once, in order
    assert all(frame.event == "" for frame in everything)  # onmessage's: no `event:` line
    assert all(int(frame.data["sequence"]) == int(frame.id) for frame in everything)
    assert {frame.data["run_id"] for frame in everything if frame.data.get("run_id")} == {first, second}

    # Read a few, drop the connection, reconnect as EventSource does: on at exactly the next one.
    with stream(url + EVENTS) as response:
        received = opened(response)
        head = [next(received) for _ in range(3)]
    with stream(url + EVENTS, params={"after_sequence": "0"}, headers={"Last-Event-ID": head[-1].id}) as response:
        tail = read_until(opened(response), completed(second))
    assert int(tail[0].id) == int(head[-1].id) + 1
    assert [frame.id for frame in head + tail] == [frame.id for frame in everything]
    with stream(url + EVENTS, params={"after_sequence": head[0].id}) as response:
        assert next(opened(response)).id == head[1].id

    # Only the second run's events (the first's come before them), and only RUN_COMPLETED.
    with stream(url + EVENTS, params={"run_id": second}) as response:
        of_second = read_until(opened(response), completed(second))
    assert {frame.data["run_id"] for frame in of_second} == {second}
    assert [frame.id for frame in of_second] == [frame.id for frame in everything if frame.data.get("run_id") == second]
    with stream(url + EVENTS, params={"types": ["RUN_COMPLETED", "RUN_DELETED"]}) as response:
        completions = read_until(opened(response), completed(second))
    assert [(frame.data["type"], frame.data["run_id"]) for frame in completions] == [("RUN_COMPLETED", first), ("RUN_COMPLETED", second)]
    assert completions[0].data["run_completed"]["state"] == "SUCCEEDED"


def test_logs_are_followed_while_the_task_runs(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    url = rest.http_url
    gated = Gated(tmp_path / "gated")  # wait-for prints "waiting for <gate>", then waits for it
    run_id = create_run(url, compiled["gated-pipeline"], counter=str(gated.counter), gate=str(gated.gate))
    try:
        with stream(f"{url}{RUNS}/{run_id}/logs", params={"task_name": "wait-for", "follow": "true"}) as response:
            received = opened(response)
            lines = []
            for frame in received:
                assert frame.event == "logs"
                lines += frame.data["lines"]
                if any(f"waiting for {gated.gate}" in line["text"] for line in lines):
                    break
            # The line came while the task still waits: the run cannot have ended.
            assert get_run(url, run_id)["state"] == "RUNNING"
            assert {line["task_id"] for line in lines} == {"wait-for"}
            gated.open()
            rest_of_it = list(received)
        assert (rest_of_it[-1].event, rest_of_it[-1].data) == ("end", {})
        assert {frame.event for frame in rest_of_it[:-1]} <= {"logs"}
        assert get_run(url, run_id)["state"] == "SUCCEEDED"  # `end` came when the run ended
    finally:
        gated.open()

    # Without follow: the stored lines, then the end.
    with stream(f"{url}{RUNS}/{run_id}/logs") as response:
        stored = list(opened(response))
    assert stored[-1].event == "end" and {frame.event for frame in stored[:-1]} == {"logs"}
    texts = [line["text"] for frame in stored[:-1] for line in frame.data["lines"]]
    assert any(f"waiting for {gated.gate}" in text for text in texts)


def test_streams_need_the_bearer_token(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--auth-token", TOKEN, http=True)
    try:
        response = httpx.get(server.http_url + EVENTS)
        assert response.status_code == 401 and error_of(response)["code"] == 16  # UNAUTHENTICATED
        with stream(server.http_url + EVENTS, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status_code == 200
            assert next(frames(response)).retry == "1000"
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr


def test_a_stop_ends_every_open_stream_with_an_error_event_and_logs_no_error(tmp_path: Path, compiled: dict[str, dict[str, Any]]) -> None:
    """At shutdown the core ends its streams with UNAVAILABLE: each client gets an `error`
    event with the JSON error body, then the stream closes, and the server stops within its
    normal stop, idle connections (kept alive, or half a request head in) closed: uvicorn
    never has to cut a response off at the end of the grace, which it logs as an ERROR with a
    traceback (CI saw it for a web UI page's event stream; tests/test_events.py has the race)."""
    server = ServerProcess(tmp_path / "data", http=True)
    gated = Gated(tmp_path / "gated")
    try:
        url = server.http_url
        run_id = create_run(url, compiled["gated-pipeline"], counter=str(gated.counter), gate=str(gated.gate))
        wait_for(lambda: get_run(url, run_id)["state"] == "RUNNING", "the gated run RUNNING")
        created = httpx.post(url + "/apis/v2beta1/recurringruns", json={
            "display_name": "hourly", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE",
            "trigger": {"periodic_schedule": {"interval_second": "3600", "start_time": START}},
        })
        assert created.status_code == 200, created.text
        paths = [EVENTS, EVENTS + "?newest=1", f"{RUNS}/{run_id}:watch", f"{RUNS}/{run_id}/logs?follow=true",
                 f"/apis/v2beta1/recurringruns/{created.json()['recurring_run_id']}:watch"]
        address = urlsplit(url)
        with ExitStack() as open_streams, httpx.Client(timeout=HANG) as idle, socket.create_connection((address.hostname, address.port)) as half:
            received = [opened(open_streams.enter_context(stream(url + path))) for path in paths]
            assert next(received[0]).data["run_id"] == run_id
            assert next(received[2]).data["state"] == "RUNNING"
            assert next(received[4]).event == "recurring_run"
            assert idle.get(url + "/ui/").status_code == 200  # its connection stays open, idle
            half.settimeout(WAIT)  # only turns a hang into a failure
            half.sendall(b"GET /ui/ HTTP/1.1\r\nHost: x\r\n")
            server.process.send_signal(signal.SIGTERM)
            for path, frames_of_one in zip(paths, received, strict=True):
                last = list(frames_of_one)[-1]
                assert last.event == "error", (path, last)
                assert last.data["code"] == 14 and "shutting down" in last.data["message"], (path, last)  # UNAVAILABLE
                assert last.data["details"] == []
            assert half.recv(1024) == b""  # closed without an answer
        _, stderr = server.process.communicate(timeout=20)
        assert server.process.returncode == 0, stderr
        assert "level=error" not in stderr and "Traceback" not in stderr, stderr
    finally:
        gated.open()
        if server.process.returncode is None:  # the test failed before the server stopped
            server.kill()


async def test_a_stream_its_client_leaves_as_the_core_ends_it_loses_no_error_to_the_log() -> None:
    """A client that leaves (Starlette then cancels the response) just as the core ends the
    stream with an error (at a stop every watch ends UNAVAILABLE at once) leaves the error in
    the task that waited for the next item: unless the stream retrieves it, asyncio logs it
    when the task is collected ("Task exception was never retrieved", an ERROR with a
    traceback; seen at a stop with streams opening and closing)."""

    async def leave_as_it_fails() -> None:
        started, failing = asyncio.Event(), asyncio.Event()

        async def items() -> AsyncGenerator[int, None]:
            """A core stream: it waits for an item, then ends with the stop's error."""
            started.set()
            await failing.wait()
            raise Unavailable("the server is shutting down")
            yield 0  # an async generator, as the core's streams are

        body = event_stream(items(), lambda item: b"").body_iterator
        assert await anext(body) == b"retry: 1000\n\n"  # type: ignore[call-overload]
        sending = asyncio.ensure_future(anext(body))  # type: ignore[call-overload]
        await started.wait()  # the stream waits for the next item
        failing.set()  # the core ends the stream (its task runs first: woken first) ...
        sending.cancel()  # ... as the client leaves, before the stream sees that end
        await asyncio.wait({sending})  # not awaited itself: its CancelledError would keep the task alive
        assert sending.cancelled()

    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: logged.append(context))
    try:
        await leave_as_it_fails()
        gc.collect()  # the task that waited for the item is collected (at once, but for cycles)
        assert not logged, [context["message"] for context in logged]
    finally:
        loop.set_exception_handler(None)


def test_dropped_streams_leave_nothing_behind(tmp_path: Path, compiled: dict[str, dict[str, Any]]) -> None:
    """uvicorn answers 503 once --max-connections requests are in hand: a stream whose handler
    outlived its client would hold its slot for good, so that after one round of dropped
    streams the next round could no longer open. Eight rounds of seven drop 56 streams."""
    slots = 8
    server = ServerProcess(tmp_path / "data", "--max-connections", str(slots), http=True)
    gated = Gated(tmp_path / "gated")
    try:
        url = server.http_url
        run_id = create_run(url, compiled["gated-pipeline"], counter=str(gated.counter), gate=str(gated.gate))
        wait_for(lambda: get_run(url, run_id)["state"] == "RUNNING", "the gated run RUNNING")
        # Each stream waits in the core for what has not happened yet: the gate is shut.
        paths = [f"{RUNS}/{run_id}:watch", EVENTS, f"{RUNS}/{run_id}/logs?follow=true"]

        def open_and_drop(count: int) -> bool:
            """Whether `count` streams could be open at once; all are dropped on return."""
            with httpx.Client(timeout=HANG) as client:
                responses = []
                try:
                    for index in range(count):
                        request = client.build_request("GET", url + paths[index % len(paths)])
                        responses.append(response := client.send(request, stream=True))
                        if response.status_code != 200:
                            assert response.status_code == 503, response.read()
                            return False  # slots still held: by streams not yet ended, or leaked
                        assert next(frames(response)).retry == "1000"
                    return True
                finally:
                    for response in responses:
                        response.close()

        for round_ in range(8):
            # The server notices the dropped connections of the round before and ends their streams.
            wait_for(lambda: open_and_drop(slots - 1), f"round {round_}'s streams open")

        with stream(f"{url}{RUNS}/{run_id}:watch") as response:
            received = opened(response)
            assert next(received).data["state"] == "RUNNING"
            gated.open()
            last, end = list(received)[-2:]
        assert (last.data["state"], end.event) == ("SUCCEEDED", "end")
    finally:
        gated.open()
        code, stderr = server.terminate()
        assert code == 0, stderr


def test_events_start_at_the_newest_and_last_event_id_wins(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """`newest=N` as a query parameter starts with the newest N matching events; a reconnecting
    EventSource repeats that query with `Last-Event-ID`, which wins: the stream goes on after it."""
    url = rest.http_url
    first, second = run_two(url, compiled["instant-pipeline"])
    with stream(url + EVENTS, params={"run_id": second}) as response:
        of_second = read_until(opened(response), completed(second))
    assert len(of_second) == 4  # PENDING, RUNNING, SUCCEEDED, RUN_COMPLETED

    with stream(url + EVENTS, params={"run_id": second, "newest": "2"}) as response:
        received = opened(response)
        assert [next(received).id for _ in range(2)] == [frame.id for frame in of_second[2:]]
    with stream(url + EVENTS, params={"run_id": first, "types": ["RUN_COMPLETED"], "newest": "1"}) as response:
        only = next(opened(response))
        assert (only.data["type"], only.data["run_id"]) == ("RUN_COMPLETED", first)
    with stream(url + EVENTS, params={"run_id": second, "newest": "2"}, headers={"Last-Event-ID": of_second[0].id}) as response:
        received = opened(response)
        assert [next(received).id for _ in range(3)] == [frame.id for frame in of_second[1:]]

    for params, text in [
        ({"newest": "1001"}, "must be 1 to 1,000 (0 = start at after_sequence)"),
        ({"newest": "0x5"}, None),
        ({"newest": "2", "after_sequence": of_second[0].id}, "cannot be combined with after_sequence (set one of them)"),
    ]:
        response = httpx.get(url + EVENTS, params=params)
        assert response.status_code == 400, params
        body = error_of(response)
        assert fields_of(body) == ["newest"], body
        assert text is None or text in body["message"], body


def test_logs_tail_earlier_lines_and_resume(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """tail_lines, before_line_number and after_line_number as query parameters select exactly
    the lines they name; a refused combination is 400 naming the field."""
    url = rest.http_url
    run_id = create_run(url, compiled["nested-pipeline"], x=1)
    wait_for(lambda: get_run(url, run_id)["state"] == "SUCCEEDED", "the run SUCCEEDED")
    logs = f"{url}{RUNS}/{run_id}/logs"

    def lines(**params: str) -> list[tuple[str, int]]:
        with stream(logs, params=params) as response:
            received = list(opened(response))
        assert received[-1].event == "end"
        return [(line["task_id"], int(line["line_number"])) for frame in received[:-1] for line in frame.data["lines"]]

    full = lines()
    count = {task_id: max(n for t, n in full if t == task_id) for task_id, _ in full}
    assert min(count.values()) >= 3
    last = count["add"]
    assert lines(task_name="add", tail_lines="2") == [("add", last - 1), ("add", last)]
    assert lines(task_name="add", tail_lines="2", before_line_number=str(last - 1)) == [("add", n) for n in range(max(1, last - 3), last - 1)]
    assert lines(task_name="add", after_line_number=str(last - 1)) == [("add", last)]
    assert lines(tail_lines="1") == sorted(((t, n) for t, n in full if n == count[t]), key=full.index)
    assert lines(after_line_number="2") == [(t, n) for t, n in full if n > 2]

    for params, field_name in [
        ({"tail_lines": "100001"}, "tail_lines"),
        ({"tail_lines": "many"}, "tail_lines"),
        ({"after_line_number": "-1"}, "after_line_number"),
        ({"before_line_number": "3"}, "before_line_number"),
        ({"tail_lines": "3", "before_line_number": "3", "follow": "true"}, "before_line_number"),
    ]:
        response = httpx.get(logs, params=params)
        assert response.status_code == 400, params
        assert fields_of(error_of(response)) == [field_name], params
