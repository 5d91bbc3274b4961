"""Storage faults under a running server, made real: another process holding SQLite's write lock
past the busy timeout, a full file system (a small tmpfs in a mount namespace), the database
file moved, replaced or deleted. Writes fail with a clear status and nothing acknowledged is
lost; health is NOT_SERVING while writes fail and SERVING again once they succeed; recurring
run actors survive failed writes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kfpgrpc.clock import VirtualClock
from kfpgrpc.server import SERVICE_NAMES, KfpGrpcServer
from kfpgrpc.v1 import common_pb2, run_pb2
from kfpgrpc.v1 import experiment_pb2 as pb
from kfpgrpc.v1 import recurring_run_pb2 as rpb
from tests.support import ServerProcess, Stubs, eventually, running, state_names, task_processes, upload, watch_to_end
from tests.test_recurring_runs import START, Harness, recurring, us
from tests.test_run_streams import Gated, start_gated

HANG = 90  # only turns a hang into a failure
LOCKED = "the database is locked by another process (waited 5 s); retry later"
Spec = dict[str, Any]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(us(START))


class OutsideWriter:
    """Another process's connection to the database (an operator's sqlite3 shell, a backup
    tool) holding the write lock: the server's writes wait the busy timeout, then fail. Its
    blocking calls run in a thread: the server shares this event loop."""

    def __init__(self, database: Path) -> None:
        self._conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=HANG)

    async def __aenter__(self) -> OutsideWriter:
        await asyncio.to_thread(self._conn.execute, "BEGIN IMMEDIATE")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self._conn.execute, "ROLLBACK")
        self._conn.close()


async def health(channel: grpc.aio.Channel) -> set[str]:
    """The health status names of the server ("") and of each of its services."""
    stub = health_pb2_grpc.HealthStub(channel)
    answers = [await stub.Check(health_pb2.HealthCheckRequest(service=name)) for name in ("", *SERVICE_NAMES)]
    return {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status) for answer in answers}


async def create(stubs: Stubs, name: str, description: str = "") -> pb.Experiment:
    request = pb.CreateExperimentRequest(experiment=pb.Experiment(display_name=name, description=description))
    return await stubs.experiments.CreateExperiment(request)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


async def names(stubs: Stubs) -> set[str]:
    listed = await stubs.experiments.ListExperiments(pb.ListExperimentsRequest(page_size=200))
    assert not listed.next_page_token
    return {e.display_name for e in listed.experiments}


async def test_writes_fail_unavailable_while_another_process_holds_the_lock_and_health_follows(
    server: KfpGrpcServer, channel: grpc.aio.Channel, stubs: Stubs, data_dir: Path
) -> None:
    """Every write waiting in the same batch fails together after one busy timeout (not one
    timeout each), and the server becomes healthy again by itself, without a client's write."""
    assert await health(channel) == {"SERVING"}
    async with OutsideWriter(data_dir / "kfpgrpc.db"):
        errors = await asyncio.wait_for(
            asyncio.gather(*(refused(create(stubs, f"locked-{index}")) for index in range(30))), HANG
        )
        assert {(error.code(), error.details()) for error in errors} == {(grpc.StatusCode.UNAVAILABLE, LOCKED)}
        assert await health(channel) == {"NOT_SERVING"}
        assert await names(stubs) == {"Default"}  # reads go on
    await eventually(lambda: health(channel), lambda statuses: statuses == {"SERVING"}, timeout=HANG)
    await create(stubs, "after")
    assert await names(stubs) == {"Default", "after"}


def in_small_file_system(disk: Path, size: str, filler: str) -> list[str]:
    """A command prefix running the server in a mount namespace of its own where `disk` is a
    tmpfs of `size` holding a file `filler` bytes big (root: `unshare -m`; a user: in a user
    namespace). Skips when the system allows neither."""
    namespaces = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    if shutil.which("unshare") is None or subprocess.run([*namespaces, "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here: a full file system cannot be made without root")
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && head -c "$3" /dev/zero > "$2/filler" && shift 3 && exec "$@"'
    disk.mkdir()
    return [*namespaces, "sh", "-c", script, "sh", size, str(disk), filler]


async def test_a_full_disk_fails_writes_resource_exhausted_until_space_is_freed(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    server = ServerProcess(disk / "data", prefix=in_small_file_system(disk, "1m", "600k"))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            acknowledged = set()
            for index in range(500):
                try:
                    await create(stubs, f"e{index}", "x" * 10_000)
                except grpc.aio.AioRpcError as error:
                    full = error
                    break
                acknowledged.add(f"e{index}")
            else:
                raise AssertionError("the file system never filled up")
            assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert full.details() == "the disk holding the database is full; retry once the operator has freed space"
            assert await health(channel) == {"NOT_SERVING"}
            assert (await refused(create(stubs, "while-full", "x" * 10_000))).code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            # The operator frees space (seen from outside the server's mount namespace).
            Path(f"/proc/{server.process.pid}/root{disk}/filler").unlink()
            await eventually(lambda: health(channel), lambda statuses: statuses == {"SERVING"}, timeout=HANG)
            await create(stubs, "after")
            assert await names(stubs) == acknowledged | {"Default", "after"}
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


async def test_a_moved_replaced_or_deleted_database_file_is_detected_and_refuses_writes(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write into a file that is no longer the data dir's database would be lost: it is
    refused. Moved back, the file takes writes again; replaced, the server refuses writes until
    it is restarted, and what it acknowledged is in the file it had open."""
    database = data_dir / "kfpgrpc.db"
    async with running(data_dir) as (server, stubs), grpc.aio.insecure_channel(server.address) as channel:
        await create(stubs, "before")
        moved = data_dir / "moved.db"
        database.rename(moved)
        error = await refused(create(stubs, "while-moved"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == (
            "the database file was deleted or replaced while the server ran; it refuses writes until the file is"
            " back or the operator restarts it"
        )
        assert await health(channel) == {"NOT_SERVING"}
        assert any(r.getMessage().startswith("the database cannot take writes") for r in caplog.records)
        moved.rename(database)
        await eventually(lambda: health(channel), lambda statuses: statuses == {"SERVING"}, timeout=HANG)
        await create(stubs, "moved-back")

        shutil.copy(database, moved)
        moved.replace(database)  # another file (say, a backup being restored) in its place
        assert (await refused(create(stubs, "while-replaced"))).code() == grpc.StatusCode.UNAVAILABLE
        assert await health(channel) == {"NOT_SERVING"}
    async with running(data_dir) as (_, stubs):
        assert await names(stubs) == {"Default", "before", "moved-back"}
        database.unlink()
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        assert (await refused(create(stubs, "while-deleted"))).code() == grpc.StatusCode.UNAVAILABLE


# -- recurring run actors ------------------------------------------------------------------------


@pytest.fixture
async def version(stubs: Stubs, compiled: dict[str, Spec]) -> Any:
    return await upload(stubs, "instant", compiled["instant-pipeline"])


@pytest.fixture
def harness(stubs: Stubs, clock: VirtualClock) -> Harness:
    return Harness(stubs, clock)


async def test_a_failed_disable_update_or_delete_leaves_the_recurring_run_enabled_and_running(
    harness: Harness, version: Any, data_dir: Path
) -> None:
    """Today's bug: the actor was stopped before the write and never started again, so the
    recurring run stayed ENABLED but fired nothing until a restart (which fired the gap)."""
    created = await harness.create(recurring(version, "quarterly", "*/15 * * * *"))
    rid = created.recurring_run_id
    stub = harness.stubs.recurring_runs
    renamed = rpb.RecurringRun(recurring_run_id=rid, display_name="renamed")
    async with OutsideWriter(data_dir / "kfpgrpc.db"):
        for call in (
            stub.DisableRecurringRun(rpb.DisableRecurringRunRequest(recurring_run_id=rid)),
            stub.UpdateRecurringRun(rpb.UpdateRecurringRunRequest(
                recurring_run=renamed, update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))),
            stub.DeleteRecurringRun(rpb.DeleteRecurringRunRequest(recurring_run_id=rid)),
        ):
            error = await refused(call)
            assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, LOCKED)
    got = await harness.get(rid)
    assert (got.status, got.display_name) == (rpb.RecurringRun.ENABLED, "quarterly")
    await harness.advance_to("2026-05-04T10:15:00+00:00", rid)  # its actor still handles ticks
    assert await harness.ticks(rid, 1) == ["2026-05-04T10:15:00Z"]

    await stub.DisableRecurringRun(rpb.DisableRecurringRunRequest(recurring_run_id=rid))  # retried: it works
    assert (await harness.get(rid)).status == rpb.RecurringRun.DISABLED


async def test_enabling_an_enabled_recurring_run_keeps_its_actor(harness: Harness, version: Any) -> None:
    rid = (await harness.create(recurring(version, "quarterly", "*/15 * * * *"))).recurring_run_id
    await harness.stubs.recurring_runs.EnableRecurringRun(rpb.EnableRecurringRunRequest(recurring_run_id=rid))
    await harness.advance_to("2026-05-04T10:15:00+00:00", rid)
    assert await harness.ticks(rid, 1) == ["2026-05-04T10:15:00Z"]


async def test_an_actor_whose_writes_fail_says_so_retries_with_backoff_and_recovers(
    harness: Harness, version: Any, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The recurring run's `error` says why its ticks are not handled and when the server
    tries again (1 s, then 2 s, ...), each failure is logged, and once the store takes writes
    the due tick gets its run and the error is gone."""
    caplog.set_level(logging.INFO, logger="kfpgrpc.core.recurring")
    rid = (await harness.create(recurring(version, "quarterly", "*/15 * * * *"))).recurring_run_id
    async with OutsideWriter(data_dir / "kfpgrpc.db"):
        harness.clock.set(us("2026-05-04T10:15:00+00:00"))  # a tick is due: its commit waits, then fails
        got = await eventually(lambda: harness.get(rid), lambda got: "again in 2 s" in got.error.message, timeout=HANG)
        assert got.error.message == (
            "ticks cannot be handled now: the database is locked by another process (waited 5 s);"
            " the server tries again in 2 s"
        )
        assert got.status == rpb.RecurringRun.ENABLED
    failures = [r for r in caplog.records if r.getMessage() == "recurring run actor step failed; retrying"]
    assert [r.fields["retry_in_seconds"] for r in failures][:2] == [1.0, 2.0]  # type: ignore[attr-defined]
    assert all(r.fields["recurring_run_id"] == rid for r in failures)  # type: ignore[attr-defined]
    assert await harness.ticks(rid, 1) == ["2026-05-04T10:15:00Z"]
    await eventually(lambda: harness.get(rid), lambda got: not got.HasField("error"), timeout=HANG)


# -- run executions ------------------------------------------------------------------------------


async def test_a_run_waits_out_a_store_fault_and_succeeds(
    channel: grpc.aio.Channel, stubs: Stubs, compiled: dict[str, Spec], data_dir: Path, tmp_path: Path
) -> None:
    """A task that ends while the store refuses writes (its file moved away: each write fails
    at once): its report waits, the run stays RUNNING (not FAILED, nor forgotten by the
    server), and it is recorded once the store takes writes again."""
    gated, database, moved = Gated(tmp_path / "gated"), data_dir / "kfpgrpc.db", data_dir / "moved.db"
    run_id = (await start_gated(stubs, compiled, gated)).run_id
    database.rename(moved)
    gated.open()
    await eventually(lambda: asyncio.sleep(0, task_processes(run_id)), lambda found: not found, timeout=HANG)
    await eventually(lambda: health(channel), lambda statuses: statuses == {"NOT_SERVING"}, timeout=HANG)
    assert (await stubs.runs.GetRun(run_pb2.GetRunRequest(run_id=run_id))).state == common_pb2.RUNNING
    moved.rename(database)
    final = (await watch_to_end(stubs.runs, run_id, HANG))[-1]
    assert final.state == common_pb2.SUCCEEDED
    assert [t.state for t in final.run_details.task_details] == [common_pb2.SUCCEEDED] * 2
    assert state_names(final.state_history) == ["PENDING", "RUNNING", "SUCCEEDED"]


async def test_a_terminate_refused_by_a_store_fault_can_be_retried(
    stubs: Stubs, compiled: dict[str, Spec], data_dir: Path, tmp_path: Path
) -> None:
    run_id = (await start_gated(stubs, compiled, Gated(tmp_path / "gated"))).run_id
    terminate = run_pb2.TerminateRunRequest(run_id=run_id)
    async with OutsideWriter(data_dir / "kfpgrpc.db"):
        error = await refused(stubs.runs.TerminateRun(terminate))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, LOCKED)
    await stubs.runs.TerminateRun(terminate)
    assert (await watch_to_end(stubs.runs, run_id, HANG))[-1].state == common_pb2.CANCELED
