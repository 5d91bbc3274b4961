"""RunService's streams as clients see them: WatchRun fan-out to several and to stalled
watchers, shutdown and resume, and StreamRunLogs with and without follow.

Runs are real (kfp-compiled pipelines executed as subprocesses). gated-pipeline's `wait-for` task
stays RUNNING until the test creates its gate file, which is how these tests control a run's
progress without sleeping; every test that starts a gated run opens the gate (or stops the server)
before it ends, so no task process outlives it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, run_pb2
from tests.stalled_http2 import StalledHttp2Stream
from tests.support import (
    Stubs,
    field_violations,
    run_of,
    state_names,
    task,
    task_processes,
    upload,
    wait_until,
    watch_to_end,
)

STREAM_TIMEOUT = 60  # only to turn a hang into a failure; nothing here is expected to take long

Summary = tuple[str, tuple[tuple[str, str], ...]]


def summary(run: run_pb2.Run) -> Summary:
    """(run state, ((task_id, task state), ...)): what a watcher sees change."""
    name = common_pb2.RuntimeState.Name
    return name(run.state), tuple((t.task_id, name(t.state)) for t in run.run_details.task_details)


def waiting(run: run_pb2.Run) -> bool:
    """gated-pipeline's wait-for task is running: the run holds still until the gate exists."""
    return any(t.task_id == "wait-for" and t.state == common_pb2.RUNNING for t in run.run_details.task_details)


WAITING: Summary = ("RUNNING", (("record", "SUCCEEDED"), ("wait-for", "RUNNING")))
GATE_OPENED: Summary = ("RUNNING", (("record", "SUCCEEDED"), ("wait-for", "SUCCEEDED")))
FINISHED: Summary = ("SUCCEEDED", (("record", "SUCCEEDED"), ("wait-for", "SUCCEEDED")))

# Forward order of states; a watcher must never see a run or a task move backwards in it.
RANK = {
    common_pb2.PENDING: 0,
    common_pb2.RUNNING: 1,
    common_pb2.CANCELING: 2,
    common_pb2.SUCCEEDED: 3,
    common_pb2.FAILED: 3,
    common_pb2.CANCELED: 3,
}


class Gated:
    """Paths of one gated-pipeline run: `counter` gets a line per `record` execution; `wait-for`
    finishes once `gate` exists."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.counter = directory / "counter"
        self.gate = directory / "gate"

    def open(self) -> None:
        self.gate.touch()

    def executions_of_record(self) -> int:
        return len(self.counter.read_text().splitlines()) if self.counter.exists() else 0


async def start_gated(stubs: Stubs, compiled: dict[str, Any], gated: Gated) -> run_pb2.Run:
    """Create a gated-pipeline run and return its snapshot once `wait-for` is RUNNING."""
    version = await upload(stubs, f"gated-{uuid.uuid4().hex[:8]}", compiled["gated-pipeline"])
    run = await stubs.runs.CreateRun(
        run_pb2.CreateRunRequest(run=run_of(version, "gated", counter=str(gated.counter), gate=str(gated.gate)))
    )
    return await wait_until(stubs.runs, run.run_id, waiting, STREAM_TIMEOUT)


async def finished_run(stubs: Stubs, compiled: dict[str, Any], name: str, **parameters: Any) -> run_pb2.Run:
    version = await upload(stubs, f"{name}-{uuid.uuid4().hex[:8]}", compiled[name])
    run = await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run_of(version, name, **parameters)))
    return (await watch_to_end(stubs.runs, run.run_id, STREAM_TIMEOUT))[-1]


async def all_log_lines(stubs: Stubs, run_id: str, task_name: str = "") -> list[run_pb2.LogLine]:
    """Every line of a (non-follow) StreamRunLogs call, in the order received."""
    lines: list[run_pb2.LogLine] = []

    async def collect() -> None:
        async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id, task_name=task_name)):
            lines.extend(response.lines)

    await asyncio.wait_for(collect(), STREAM_TIMEOUT)
    return lines


def by_task(lines: list[run_pb2.LogLine]) -> dict[str, list[run_pb2.LogLine]]:
    found: dict[str, list[run_pb2.LogLine]] = {}
    for line in lines:
        found.setdefault(line.task_id, []).append(line)
    return found


def key(line: run_pb2.LogLine) -> tuple[str, int, str]:
    return line.task_id, line.line_number, line.text


async def expect_error(code: grpc.StatusCode, stream: Any) -> grpc.aio.AioRpcError:
    """Iterate a server stream that must fail with `code` before sending anything."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for item in stream:
            raise AssertionError(f"expected {code.name}, got a message: {item}")
    assert caught.value.code() == code, caught.value
    return caught.value


async def eventually(condition: Callable[[], bool], what: str, timeout: float = STREAM_TIMEOUT) -> None:
    """Poll `condition` until it holds (a liveness wait, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


class Watcher:
    """A WatchRun call read by a background task, recording every snapshot and how it ended."""

    def __init__(self, stubs: Stubs, run_id: str) -> None:
        self.snapshots: list[run_pb2.Run] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._call = stubs.runs.WatchRun(run_pb2.WatchRunRequest(run_id=run_id))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for snapshot in self._call:
                self.snapshots.append(snapshot)
        except grpc.aio.AioRpcError as error:
            self.error = error

    async def ended(self) -> Watcher:
        await asyncio.wait_for(asyncio.shield(self._reader), STREAM_TIMEOUT)
        return self

    def cancel(self) -> None:
        self._call.cancel()


def assert_moves_forward(snapshots: list[run_pb2.Run]) -> None:
    """Neither the run nor any task ever goes back to an earlier state; tasks never vanish."""
    for before, after in zip(snapshots, snapshots[1:]):
        assert RANK[after.state] >= RANK[before.state], (summary(before), summary(after))
        later = {t.task_id: t.state for t in after.run_details.task_details}
        for earlier in before.run_details.task_details:
            assert earlier.task_id in later, (summary(before), summary(after))
            assert RANK[later[earlier.task_id]] >= RANK[earlier.state], (summary(before), summary(after))


# -- WatchRun ---------------------------------------------------------------------------------


async def test_watchers_of_one_run_all_see_the_same_snapshots_one_per_change(
    stubs: Stubs, compiled: dict[str, Any], tmp_path: Path
) -> None:
    """Five WatchRun calls opened on a running run each get the current snapshot first, then the
    same snapshots, one per change and none twice, never going backwards, ending with SUCCEEDED,
    after which each stream ends by itself."""
    gated = Gated(tmp_path / "gated")
    current = await start_gated(stubs, compiled, gated)
    at_subscription = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=current.run_id))
    watchers = [Watcher(stubs, current.run_id) for _ in range(5)]
    try:
        await eventually(lambda: all(w.snapshots for w in watchers), "every watcher has its first snapshot")
        gated.open()
        for watcher in watchers:
            await watcher.ended()
    finally:
        gated.open()
        for watcher in watchers:
            watcher.cancel()

    for watcher in watchers:
        assert watcher.error is None, watcher.error
    sequences = [w.snapshots for w in watchers]
    assert [[summary(s) for s in sequence] for sequence in sequences] == [[WAITING, GATE_OPENED, FINISHED]] * 5
    for sequence in sequences[1:]:
        assert sequence == sequences[0]  # identical messages, not just the same states
    first, last = sequences[0][0], sequences[0][-1]
    assert first == at_subscription
    assert last.state == common_pb2.SUCCEEDED
    assert state_names(last.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert_moves_forward(sequences[0])
    for before, after in zip(sequences[0], sequences[0][1:]):
        assert before != after
    assert gated.executions_of_record() == 1


async def test_a_stalled_watcher_blocks_neither_the_run_nor_other_watchers(
    server: KfpGrpcServer, stubs: Stubs, compiled: dict[str, Any], tmp_path: Path
) -> None:
    """A WatchRun call its client never reads, and one whose HTTP/2 window is 0 so the server
    cannot send it anything, hold up nothing: the run finishes and another watcher sees every
    change up to SUCCEEDED. Once the stalled client reads again, it gets its snapshots up to
    SUCCEEDED too."""
    gated = Gated(tmp_path / "gated")
    current = await start_gated(stubs, compiled, gated)
    unread = stubs.runs.WatchRun(run_pb2.WatchRunRequest(run_id=current.run_id))
    stalled = await StalledHttp2Stream.open(
        server.address, "/kfpgrpc.v1.RunService/WatchRun", run_pb2.WatchRunRequest(run_id=current.run_id)
    )
    try:
        await asyncio.wait_for(unread.initial_metadata(), STREAM_TIMEOUT)  # the server has taken it
        await asyncio.wait_for(stalled.headers_received.wait(), STREAM_TIMEOUT)
        reader = Watcher(stubs, current.run_id)
        await eventually(lambda: bool(reader.snapshots), "the reading watcher has its first snapshot")
        gated.open()
        await reader.ended()
        assert reader.error is None, reader.error
        assert [summary(s) for s in reader.snapshots] == [WAITING, GATE_OPENED, FINISHED]
        final = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=current.run_id))
        assert final.state == common_pb2.SUCCEEDED

        assert stalled.messages(run_pb2.Run) == [] and not stalled.ended.is_set()  # it really was stalled
        await stalled.resume()
        await asyncio.wait_for(stalled.ended.wait(), STREAM_TIMEOUT)
        assert not stalled.reset
        assert [summary(s) for s in stalled.messages(run_pb2.Run)] == [WAITING, GATE_OPENED, FINISHED]
    finally:
        gated.open()
        unread.cancel()
        await stalled.close()


async def test_watching_a_finished_run_sends_its_final_snapshot_and_ends(stubs: Stubs, compiled: dict[str, Any]) -> None:
    """WatchRun on a finished run sends exactly one snapshot, the terminal one (what GetRun
    returns), then ends; an unknown run is NOT_FOUND and an empty run_id INVALID_ARGUMENT."""
    finished = await finished_run(stubs, compiled, "add-pipeline")
    assert finished.state == common_pb2.SUCCEEDED

    snapshots = await watch_to_end(stubs.runs, finished.run_id, STREAM_TIMEOUT)
    assert snapshots == [await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=finished.run_id))]

    await expect_error(grpc.StatusCode.NOT_FOUND, stubs.runs.WatchRun(run_pb2.WatchRunRequest(run_id=str(uuid.uuid4()))))
    empty = await expect_error(grpc.StatusCode.INVALID_ARGUMENT, stubs.runs.WatchRun(run_pb2.WatchRunRequest(run_id="")))
    assert "run_id" in field_violations(empty)


async def test_shutdown_ends_streams_with_unavailable_and_the_run_resumes_after_restart(
    data_dir: Path, compiled: dict[str, Any], tmp_path: Path
) -> None:
    """Stopping the server ends open WatchRun and following StreamRunLogs calls with UNAVAILABLE
    (a status a client retries on) and kills the run's task processes. A new server on the same
    data resumes the run without executing its succeeded task again, and it ends SUCCEEDED."""
    gated = Gated(tmp_path / "gated")
    first = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await first.start()
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stubs = Stubs.on(channel)
            current = await start_gated(stubs, compiled, gated)
            run_id = current.run_id
            watchers = [Watcher(stubs, run_id) for _ in range(2)]
            follower = stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id, follow=True))
            followed: list[str] = []

            async def follow() -> grpc.aio.AioRpcError | None:
                try:
                    async for response in follower:
                        followed.extend(line.text for line in response.lines)
                except grpc.aio.AioRpcError as error:
                    return error
                return None

            following = asyncio.create_task(follow())
            await eventually(lambda: all(w.snapshots for w in watchers), "the watchers have their first snapshot")
            await eventually(lambda: f"waiting for {gated.gate}" in followed, "the follower has the waiting line")
            assert task_processes(run_id)  # wait-for is running

            await asyncio.wait_for(first.stop(), STREAM_TIMEOUT)

            for watcher in watchers:
                await watcher.ended()
                assert [summary(s) for s in watcher.snapshots] == [WAITING]
                assert watcher.error is not None and watcher.error.code() == grpc.StatusCode.UNAVAILABLE, watcher.error
                assert "shutting down" in (watcher.error.details() or "")
            log_error = await asyncio.wait_for(following, STREAM_TIMEOUT)
            assert log_error is not None and log_error.code() == grpc.StatusCode.UNAVAILABLE, log_error
            assert "shutting down" in (log_error.details() or "")
            await eventually(lambda: not task_processes(run_id), "the stopped server's task processes are gone")
    finally:
        await first.stop()

    second = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await second.start()
    try:
        async with grpc.aio.insecure_channel(second.address) as channel:
            stubs = Stubs.on(channel)
            resumed = await wait_until(stubs.runs, run_id, waiting, STREAM_TIMEOUT)
            assert task(resumed, "record").state == common_pb2.SUCCEEDED
            gated.open()
            final = (await watch_to_end(stubs.runs, run_id, STREAM_TIMEOUT))[-1]
            assert summary(final) == FINISHED
            assert state_names(final.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]
            assert gated.executions_of_record() == 1

            # Both attempts of wait-for are in its log, numbered on from the first one.
            lines = by_task(await all_log_lines(stubs, run_id))
            for task_id, task_lines in lines.items():
                assert [line.line_number for line in task_lines] == list(range(1, len(task_lines) + 1)), task_id
            waits = [line.text for line in lines["wait-for"] if line.text == f"waiting for {gated.gate}"]
            assert len(waits) == 2
    finally:
        gated.open()
        await second.stop()


# -- StreamRunLogs ----------------------------------------------------------------------------


async def test_logs_of_a_finished_run_cover_every_task_in_order(stubs: Stubs, compiled: dict[str, Any]) -> None:
    """Without follow, StreamRunLogs sends every line of every task and ends: per task numbered
    1..n in order, starting with the "+ argv" line. task_name selects one task by task_id or by
    display name; an unknown task or run is NOT_FOUND."""
    added, nested = await asyncio.gather(
        finished_run(stubs, compiled, "add-pipeline"), finished_run(stubs, compiled, "nested-pipeline", x=1)
    )
    assert added.state == nested.state == common_pb2.SUCCEEDED

    lines = await all_log_lines(stubs, added.run_id)
    tasks = by_task(lines)
    assert sorted(tasks) == ["add", "add-2"]
    for task_id, task_lines in tasks.items():
        assert [line.line_number for line in task_lines] == list(range(1, len(task_lines) + 1)), task_id
        assert task_lines[0].text.startswith("+ "), task_lines[0]
        assert "executor_main" in task_lines[0].text
        assert len(task_lines) > 1  # the component's own output follows the argv
        assert all(line.HasField("time") for line in task_lines)
    # add-2 consumes add's output, so all of add's lines come first.
    order = [line.task_id for line in lines]
    assert order == sorted(order, key=["add", "add-2"].index)
    only_add_2 = await all_log_lines(stubs, added.run_id, "add-2")
    assert [key(line) for line in only_add_2] == [key(line) for line in tasks["add-2"]]

    # nested-pipeline: task_id "add-twice.add-2" has the display name "add-2".
    nested_tasks = by_task(await all_log_lines(stubs, nested.run_id))
    assert sorted(nested_tasks) == ["add", "add-twice.add", "add-twice.add-2"]  # the DAG task prints nothing
    expected = [key(line) for line in nested_tasks["add-twice.add-2"]]
    for task_name in ("add-twice.add-2", "add-2"):
        assert [key(line) for line in await all_log_lines(stubs, nested.run_id, task_name)] == expected, task_name
    # "add" is the task_id of the outer task and the display name of "add-twice.add": the id wins.
    only_outer = [key(line) for line in await all_log_lines(stubs, nested.run_id, "add")]
    assert only_outer == [key(line) for line in nested_tasks["add"]]

    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=added.run_id, task_name="no-such-task")),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND, stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=str(uuid.uuid4())))
    )


async def test_following_logs_streams_lines_live_and_ends_with_the_run(
    stubs: Stubs, compiled: dict[str, Any], tmp_path: Path
) -> None:
    """StreamRunLogs with follow, opened while a task runs, delivers the task's line before the
    task finishes, ends by itself once the run has finished, and has then sent exactly the lines
    a later call without follow returns."""
    gated = Gated(tmp_path / "gated")
    current = await start_gated(stubs, compiled, gated)
    followed: list[run_pb2.LogLine] = []
    waiting_line = f"waiting for {gated.gate}"
    received_while_waiting = False

    async def follow() -> None:
        nonlocal received_while_waiting
        request = run_pb2.StreamRunLogsRequest(run_id=current.run_id, follow=True)
        async for response in stubs.runs.StreamRunLogs(request):
            followed.extend(response.lines)
            if any(line.task_id == "wait-for" and line.text == waiting_line for line in response.lines):
                received_while_waiting = not gated.gate.exists()
                gated.open()

    try:
        await asyncio.wait_for(follow(), STREAM_TIMEOUT)
    finally:
        gated.open()

    assert received_while_waiting, "the stream ended without the waiting line"
    final = await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=current.run_id))
    assert summary(final) == FINISHED
    assert [key(line) for line in followed] == [key(line) for line in await all_log_lines(stubs, current.run_id)]
    assert sorted(by_task(followed)) == ["record", "wait-for"]


async def test_a_failing_task_reports_its_exception_in_log_and_errors(stubs: Stubs, compiled: dict[str, Any]) -> None:
    """When a task raises, its log holds the exception message, and so do the run's and the
    task's error messages."""
    message = "this task always fails"
    failed = await finished_run(stubs, compiled, "failing-pipeline")
    assert failed.state == common_pb2.FAILED

    log = [line.text for line in await all_log_lines(stubs, failed.run_id, "fail")]
    assert log[0].startswith("+ ")
    assert any(message in text for text in log), log
    assert f"RuntimeError: {message}" in log

    assert message in failed.error.message
    failing = task(failed, "fail")
    assert failing.state == common_pb2.FAILED
    assert message in failing.error.message
    assert failing.exit_code == 1


async def log_lines(stubs: Stubs, run_id: str, **request: Any) -> list[tuple[str, int, str]]:
    """key() of every line of a (non-follow) StreamRunLogs call with `request`'s fields."""
    lines: list[tuple[str, int, str]] = []

    async def collect() -> None:
        async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id, **request)):
            lines.extend(key(line) for line in response.lines)

    await asyncio.wait_for(collect(), STREAM_TIMEOUT)
    return lines


async def test_logs_from_a_line_number_and_tails(stubs: Stubs, compiled: dict[str, Any]) -> None:
    """after_line_number, tail_lines and before_line_number select, per selected task, exactly
    the lines they name, in capture order across tasks; bad combinations name the field."""
    nested = await finished_run(stubs, compiled, "nested-pipeline", x=1)
    full = [key(line) for line in await all_log_lines(stubs, nested.run_id)]
    count = {task_id: max(n for t, n, _ in full if t == task_id) for task_id, _, _ in full}
    assert sorted(count) == ["add", "add-twice.add", "add-twice.add-2"] and min(count.values()) >= 3

    assert await log_lines(stubs, nested.run_id, after_line_number=1) == [line for line in full if line[1] > 1]
    assert await log_lines(stubs, nested.run_id, task_name="add", after_line_number=2) == [
        line for line in full if line[0] == "add" and line[1] > 2
    ]
    assert await log_lines(stubs, nested.run_id, tail_lines=2) == [line for line in full if line[1] > count[line[0]] - 2]
    # "add-2" is a display name: it selects add-twice.add-2
    assert await log_lines(stubs, nested.run_id, task_name="add-2", tail_lines=1) == [
        line for line in full if line[0] == "add-twice.add-2" and line[1] == count["add-twice.add-2"]
    ]
    assert await log_lines(stubs, nested.run_id, task_name="add", tail_lines=100_000) == [line for line in full if line[0] == "add"]
    assert await log_lines(stubs, nested.run_id, task_name="add", tail_lines=1, before_line_number=3) == [
        line for line in full if line[0] == "add" and line[1] == 2
    ]
    assert await log_lines(stubs, nested.run_id, tail_lines=5, before_line_number=3) == [line for line in full if line[1] < 3]
    assert await log_lines(stubs, nested.run_id, task_name="add", tail_lines=5, before_line_number=1) == []
    assert await log_lines(stubs, nested.run_id, task_name="add", after_line_number=count["add"]) == []

    for request, field, text in [
        ({"tail_lines": 100_001}, "tail_lines", "must be 1 to 100,000 (0 = every line)"),
        ({"tail_lines": -1}, "tail_lines", "must be 1 to 100,000 (0 = every line)"),
        ({"after_line_number": -1}, "after_line_number", "must not be negative"),
        ({"tail_lines": 5, "after_line_number": 2}, "tail_lines", "cannot be combined with after_line_number (set one of them)"),
        ({"before_line_number": 3}, "before_line_number", "needs tail_lines (how many lines before it)"),
        ({"tail_lines": 5, "before_line_number": -3}, "before_line_number", "must not be negative"),
        ({"tail_lines": 5, "before_line_number": 3, "follow": True}, "before_line_number",
         "cannot be combined with follow: those lines are stored already"),
    ]:
        error = await expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=nested.run_id, **request)),
        )
        assert field_violations(error) == {field: text}, request
