"""GetRun of finished runs, which the server keeps in memory (kfpgrpc/store/run_cache.py): each
change of a run after it finished shows in the next GetRun, through a real server. ListRuns
reads the store on every call: it is the reference a GetRun must equal. (A run's log lines are
not part of a Run: StreamRunLogs reads them from the store.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc

from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.store.run_cache import FinishedRuns
from kfpgrpc.v1 import common_pb2, experiment_pb2, run_pb2
from tests.support import (
    Stubs,
    create,
    eventually,
    finished,
    is_running,
    rpc_error,
    run_of,
    serving,
    state_names,
    task,
    upload,
    wait_until,
)

Spec = dict[str, Any]


async def get(stubs: Stubs, run_id: str) -> run_pb2.Run:
    return await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run_id))


async def stored(stubs: Stubs, run_id: str) -> run_pb2.Run:
    """The run as ListRuns reads it from the store (equal to GetRun's, but for an inline
    spec, which a list leaves out)."""
    predicate = {"key": "run_id", "operation": "EQUALS", "string_value": run_id}
    (run,) = (await stubs.runs.ListRuns(run_pb2.ListRunsRequest(filter=json.dumps({"predicates": [predicate]})))).runs
    return run


async def got_twice(stubs: Stubs, run_id: str) -> run_pb2.Run:
    """GetRun twice (the second may be served from memory), each equal to the stored run."""
    first, second, reference = await get(stubs, run_id), await get(stubs, run_id), await stored(stubs, run_id)
    assert first == reference and second == reference
    return second


async def test_get_run_shows_every_change_of_a_finished_run(stubs: Stubs, compiled: dict[str, Spec], tmp_path: Path) -> None:
    counter, gate = tmp_path / "count", tmp_path / "gate"
    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="exp"))
    )
    version = await upload(stubs, "gated", compiled["gated-pipeline"])
    new = run_of(version, counter=str(counter), gate=str(gate))
    new.experiment_id = experiment.experiment_id
    created = await create(stubs, new)
    run_id = created.run_id
    await wait_until(stubs.runs, run_id, is_running("wait-for"))
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=run_id))
    await finished(stubs, created)
    canceled = await got_twice(stubs, run_id)
    assert canceled.state == common_pb2.CANCELED and task(canceled, "wait-for").state == common_pb2.CANCELED

    await stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id=run_id))
    assert (await got_twice(stubs, run_id)).storage_state == run_pb2.Run.ARCHIVED
    await stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=run_id))
    assert (await got_twice(stubs, run_id)).storage_state == run_pb2.Run.AVAILABLE

    # Retried, it executes again (its state and its tasks change), and is terminated again.
    await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=run_id))
    assert (await get(stubs, run_id)).state in (common_pb2.PENDING, common_pb2.RUNNING)
    await wait_until(stubs.runs, run_id, is_running("wait-for"))
    await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=run_id))
    await finished(stubs, created)
    again = await got_twice(stubs, run_id)
    assert state_names(again.state_history) == ["PENDING", "RUNNING", "CANCELING", "CANCELED"] * 2
    assert again.finished_at != canceled.finished_at

    # Retried with its gate open: its last task runs to its output.
    gate.touch()
    await stubs.runs.RetryRun(run_pb2.RetryRunRequest(run_id=run_id))
    await finished(stubs, created)
    succeeded = await got_twice(stubs, run_id)
    assert succeeded.state == common_pb2.SUCCEEDED and task(succeeded, "wait-for").state == common_pb2.SUCCEEDED
    assert not succeeded.error.message and counter.read_text() == "ran\n"  # `record` kept its first result

    await stubs.experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert (await got_twice(stubs, run_id)).storage_state == run_pb2.Run.ARCHIVED

    await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=run_id))
    assert (await rpc_error(get(stubs, run_id))).code() == grpc.StatusCode.NOT_FOUND


async def test_get_run_during_changes_never_shows_an_older_state(stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Readers keep GetRun calls in flight while a finished run is archived and unarchived: a
    read that overlapped a change must not be kept, so every GetRun after a change has
    returned (and after the reads in flight then have ended) shows it."""
    version = await upload(stubs, "add", compiled["add-pipeline"])
    run_id = (await finished(stubs, await create(stubs, run_of(version)))).run_id
    done = False

    async def reader() -> None:
        while not done:
            await get(stubs, run_id)

    readers = [asyncio.create_task(reader()) for _ in range(6)]
    try:
        changes = (
            (lambda: stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id=run_id)), run_pb2.Run.ARCHIVED),
            (lambda: stubs.runs.UnarchiveRun(run_pb2.UnarchiveRunRequest(run_id=run_id)), run_pb2.Run.AVAILABLE),
        )
        for _ in range(40):
            for change, state in changes:
                await change()
                assert (await get(stubs, run_id)).storage_state == state
                await asyncio.sleep(0.02)  # the readers' calls in flight during the change end
                assert [(await get(stubs, run_id)).storage_state for _ in range(3)] == [state] * 3
    finally:
        done = True
        await asyncio.gather(*readers)


async def test_a_run_deleted_by_its_ttl_is_gone_from_get_run(data_dir: Path, compiled: dict[str, Spec]) -> None:
    with serving(data_dir, "--run-ttl", "4s") as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "add", compiled["add-pipeline"])
            run = await finished(stubs, await create(stubs, run_of(version)))
            assert (await got_twice(stubs, run.run_id)).state == common_pb2.SUCCEEDED

            async def code() -> grpc.StatusCode:
                try:
                    await get(stubs, run.run_id)
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            assert await eventually(code, lambda found: found == grpc.StatusCode.NOT_FOUND, timeout=30) == grpc.StatusCode.NOT_FOUND


async def test_the_cache_stays_within_its_entries_and_bytes(server: KfpGrpcServer, stubs: Stubs, compiled: dict[str, Spec]) -> None:
    """Least recently used runs go first, past either bound; what is read stays right."""
    version = await upload(stubs, "add", compiled["add-pipeline"])
    runs = [await finished(stubs, await create(stubs, run_of(version, f"run-{index}"))) for index in range(3)]
    db = server._db  # noqa: SLF001 - a second cache on the server's store, with small bounds
    assert db is not None
    by_entries = FinishedRuns(db, max_entries=2)
    await by_entries.install()
    for run in [*runs, runs[1]]:
        found, tasks = await by_entries.get(run.run_id)
        assert (found.run_id, found.state, [t.task_id for t in tasks]) == (run.run_id, "SUCCEEDED", [t.task_id for t in run.run_details.task_details])
    assert len(by_entries) == 2
    one_run = by_entries.bytes // 2
    by_bytes = FinishedRuns(db, max_bytes=one_run + one_run // 2)
    await by_bytes.install()
    for run in runs:
        await by_bytes.get(run.run_id)
        assert len(by_bytes) == 1 and 0 < by_bytes.bytes <= one_run + one_run // 2
    # The server's own cache and this one both see a change.
    await stubs.runs.ArchiveRun(run_pb2.ArchiveRunRequest(run_id=runs[2].run_id))
    assert (await by_bytes.get(runs[2].run_id))[0].storage_state == "ARCHIVED"
    assert (await got_twice(stubs, runs[2].run_id)).storage_state == run_pb2.Run.ARCHIVED


async def test_a_change_of_more_runs_than_counted_one_by_one_drops_them_all(
    server: KfpGrpcServer, stubs: Stubs, compiled: dict[str, Spec]
) -> None:
    """ArchiveExperiment of more runs than a cache counts one by one (max_changing): every run
    it kept is read again."""
    experiment = await stubs.experiments.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name="exp"))
    )
    version = await upload(stubs, "add", compiled["add-pipeline"])
    runs = []
    for index in range(2):
        new = run_of(version, f"run-{index}")
        new.experiment_id = experiment.experiment_id
        runs.append(await finished(stubs, await create(stubs, new)))
    db = server._db  # noqa: SLF001 - a second cache on the server's store, counting one run at most
    assert db is not None
    cache = FinishedRuns(db, max_changing=1)
    await cache.install()
    for run in runs:
        assert (await cache.get(run.run_id))[0].storage_state == "AVAILABLE"
    assert len(cache) == 2
    await stubs.experiments.ArchiveExperiment(experiment_pb2.ArchiveExperimentRequest(experiment_id=experiment.experiment_id))
    assert len(cache) == 0
    for run in runs:
        assert (await cache.get(run.run_id))[0].storage_state == "ARCHIVED"
        assert (await got_twice(stubs, run.run_id)).storage_state == run_pb2.Run.ARCHIVED
