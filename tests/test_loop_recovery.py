"""A loop interrupted by a crash, a terminate or a failed iteration (kfp-semantics.md §4.2, §13):
the iterations' state is persisted, so a restarted server resumes mid-loop, a terminate stops it,
and RetryRun re-runs only the failed iteration. Each iteration's task appends a line to
`<directory>/marker-<index>` each time it runs. Compiled by this environment's kfp only: the IR
of a loop is the same in every version (§14.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import (
    ServerProcess,
    Stubs,
    create,
    eventually,
    finished,
    inline_run,
    output,
    plain,
    state_names,
    task_processes,
    tasks_of,
    wait_until,
)

Spec = dict[str, Any]
RUNNING, SUCCEEDED, FAILED, CANCELED = common_pb2.RUNNING, common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED


def markers(directory: Path, count: int) -> list[int]:
    """How many times each of iterations 0..count-1 ran (0 = never)."""
    files = [directory / f"marker-{i}" for i in range(count)]
    return [len(file.read_text().splitlines()) if file.exists() else 0 for file in files]


def in_states(wanted: dict[str, int]) -> Callable[[run_pb2.Run], bool]:
    """A WatchRun condition: each task_id of `wanted` is in its state."""
    return lambda run: wanted.items() <= {t.task_id: t.state for t in run.run_details.task_details}.items()


async def test_a_killed_server_resumes_the_loop_without_rerunning_finished_iterations(
    this_kfp: dict[str, Spec], data_dir: Path, tmp_path: Path
) -> None:
    """Issue 12 (the orchestrator persists its state so a crash resumes mid-loop): SIGKILL while
    iteration 2 waits and the others have succeeded; after a restart the interrupted iteration runs
    again (as an interrupted task does, tests/test_runs.py) and the finished ones do not; the
    Collected fan-in after the loop sees every iteration's output, in order."""
    directory, gate = tmp_path / "markers", tmp_path / "gate"
    directory.mkdir()
    mid_loop = {"for-loop-2[0].mark": SUCCEEDED, "for-loop-2[1].mark": SUCCEEDED, "for-loop-2[3].mark": SUCCEEDED,
                "for-loop-2[2].mark": RUNNING}
    server = ServerProcess(data_dir)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            created = await create(stubs, inline_run(this_kfp["cf-gated-loop"], "gated loop", directory=str(directory), gate=str(gate)))
            await wait_until(stubs.runs, created.run_id, in_states(mid_loop))
    finally:
        server.kill()
    assert markers(directory, 4) == [1, 1, 1, 1]

    restarted = ServerProcess(data_dir)
    try:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            stubs = Stubs.on(channel)
            await eventually(lambda: asyncio.sleep(0, markers(directory, 4)), lambda counts: counts[2] == 2)
            gate.touch()
            run = await finished(stubs, created)
    finally:
        restarted.terminate()
    assert run.state == SUCCEEDED, run.error
    assert markers(directory, 4) == [1, 1, 2, 1]
    tasks = tasks_of(run)
    for index in (0, 1, 3):
        assert state_names(tasks[f"for-loop-2[{index}].mark"].state_history) == ["RUNNING", "SUCCEEDED"]
    assert state_names(tasks["for-loop-2[2].mark"].state_history) == ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert [output(tasks[f"for-loop-2[{i}].mark"]) for i in range(4)] == [0, 10, 20, 30]
    assert plain(tasks["sum-ints"].input_parameters) == {"nums": [0, 10, 20, 30]} and output(tasks["sum-ints"]) == 60
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]


async def test_terminate_mid_loop_cancels_the_running_iterations_and_starts_no_other(
    stubs: Stubs, this_kfp: dict[str, Spec], tmp_path: Path
) -> None:
    """KFP (§13.1): terminating stops the run: the running iterations' tasks are killed and
    CANCELED, the iterations not started yet never start (and, never started, are not reported),
    and the run ends CANCELED (kfpgrpc's API distinguishes it; KFP reports FAILED). Two of five
    iterations run at once (parallelism=2), each waiting for a gate that never opens. The loop
    DAG task and its started iterations end CANCELED too."""
    directory = tmp_path / "markers"
    directory.mkdir()
    spec = this_kfp["cf-throttled-loop"]
    created = await create(stubs, inline_run(spec, "throttled loop", directory=str(directory), gate=str(tmp_path / "never")))
    await wait_until(stubs.runs, created.run_id, in_states({"for-loop-2[0].mark": RUNNING, "for-loop-2[1].mark": RUNNING}))
    await eventually(lambda: asyncio.sleep(0, markers(directory, 5)), lambda counts: counts[:2] == [1, 1])
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
    run = await finished(stubs, created)
    assert run.state == CANCELED
    tasks = tasks_of(run)
    for task_id in ("for-loop-2", "for-loop-2[0]", "for-loop-2[1]", "for-loop-2[0].mark", "for-loop-2[1].mark"):
        assert tasks[task_id].state == CANCELED, tasks[task_id]
    assert set(tasks) == {"for-loop-2", "for-loop-2[0]", "for-loop-2[1]", "for-loop-2[0].mark", "for-loop-2[1].mark"}
    assert markers(directory, 5) == [1, 1, 0, 0, 0]
    assert not task_processes(run.run_id)


async def test_retry_reruns_only_the_failed_iteration(stubs: Stubs, this_kfp: dict[str, Spec], tmp_path: Path) -> None:
    """KFP (§4.2 RetryRun): retrying a failed run re-runs the failed iteration's task and what
    never ran after it (the Collected fan-in), and keeps the iterations that succeeded: their
    tasks do not run again."""
    directory, gate = tmp_path / "markers", tmp_path / "gate"
    directory.mkdir()
    failed = await finished(stubs, await create(stubs, inline_run(
        this_kfp["cf-flaky-loop"], "flaky loop", directory=str(directory), gate=str(gate)
    )))
    assert failed.state == FAILED
    tasks = tasks_of(failed)
    assert tasks["for-loop-2[1].mark-or-fail"].state == FAILED and tasks["for-loop-2"].state == FAILED
    assert "sum-ints" not in tasks
    assert markers(directory, 3)[:2] == [1, 1]

    gate.touch()
    await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=failed.run_id))
    run = await finished(stubs, failed)
    assert run.state == SUCCEEDED, run.error
    assert state_names(run.state_history) == ["PENDING", "RUNNING", "FAILED", "PENDING", "RUNNING", "SUCCEEDED"]
    assert markers(directory, 3) == [1, 2, 1]
    tasks = tasks_of(run)
    assert state_names(tasks["for-loop-2[0].mark-or-fail"].state_history) == ["RUNNING", "SUCCEEDED"]
    assert state_names(tasks["for-loop-2[1].mark-or-fail"].state_history) == ["RUNNING", "FAILED", "RUNNING", "SUCCEEDED"]
    assert [output(tasks[f"for-loop-2[{i}].mark-or-fail"]) for i in range(3)] == [0, 10, 20]
    assert output(tasks["sum-ints"]) == 30
