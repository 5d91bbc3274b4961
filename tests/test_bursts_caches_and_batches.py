"""Edges of issue 16's performance work, found by a review that tried to break it: UUID v7 ids
(and the web UI's short labels of them), the finished-run cache's memory bound and its
invalidation by rollbacks and offloaded statements, expedited writes in the requests' batches,
chunked wake-ups during a burst (changes and a stop in the middle of it), and
offloaded event inserts."""

from __future__ import annotations

import asyncio
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from google.protobuf import field_mask_pb2

from kfpgrpc.clock import VirtualClock
from kfpgrpc.core import recurring as recurring_module
from kfpgrpc.core.validation import new_id
from kfpgrpc.domain import Run, StateChange, TaskDetail
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.store import runs as run_store
from kfpgrpc.store.database import Database
from kfpgrpc.store.run_cache import FinishedRuns
from kfpgrpc.v1 import common_pb2, run_pb2
from kfpgrpc.v1 import recurring_run_pb2 as pb
from tests.support import Stubs, eventually, upload
from tests.test_recurring_runs import START, Harness, recurring, us

Spec = dict[str, Any]
WEB = Path(__file__).resolve().parent.parent / "kfpgrpc" / "web" / "static"


# -- 1. UUID v7 ids ---------------------------------------------------------------------------


def test_new_ids_are_rfc_9562_version_7_unique_and_unparsed() -> None:
    ids = [new_id() for _ in range(20_000)]  # many in the same millisecond
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    now_ms = time.time_ns() // 1_000_000
    assert abs(int(ids[-1].replace("-", "")[:12], 16) - now_ms) < 5_000


def test_the_web_uis_short_ids_tell_objects_apart() -> None:
    """The web UI labels ids by a short part of them (util.js shortId). With UUID v7 the first
    8 hex digits are the top 32 bits of a millisecond clock, alike for every id made within
    ~65 s (a burst's runs would all read alike on the events page): the label is the random
    end, and no page shortens an id another way."""
    static = sorted(WEB.rglob("*.js"))
    assert not [path.name for path in static if re.search(r"id\.slice\(0, \d+\)", path.read_text())]
    assert "export const shortId = (id) => id.slice(-8);" in (WEB / "util.js").read_text()
    labels = {new_id()[-8:] for _ in range(1000)}  # made within a millisecond or two
    assert len(labels) == 1000


# -- 5. the finished-run cache: memory bound ------------------------------------------------


def _run(run_id: str, parameters: dict[str, Any]) -> Run:
    return Run(
        run_id=run_id, experiment_id="e", display_name="r", description="", storage_state="AVAILABLE",
        pipeline_id="p", pipeline_version_id="v", spec_hash="h", parameters=parameters, pipeline_root="",
        service_account="", created_at=1, scheduled_at=1, finished_at=2, state="SUCCEEDED", error="",
        recurring_run_id="", state_history=[StateChange("SUCCEEDED", 2)], artifacts=[], output_artifacts=[], revision=1,
    )


def _task(run_id: str, index: int, outputs: dict[str, Any]) -> TaskDetail:
    return TaskDetail(
        run_id=run_id, task_id=f"t{index}", display_name=f"t{index}", parent_task_id="", state="SUCCEEDED",
        create_time=index, start_time=index, end_time=index, image="", exit_code=0, error="",
        input_parameters={}, output_parameters=outputs, output_artifacts=[], state_history=[],
    )


async def test_the_cache_bound_holds_for_json_heavy_task_outputs(tmp_path: Path) -> None:
    """A task's outputs may be 1 MiB (MAX_TASK_OUTPUTS_BYTES), from an untrusted pipeline, and
    a list of empty objects decodes to ~24x its text: the cache's estimate of what an entry
    holds is an upper bound even then (a run of 4 such tasks: ~100 MB decoded). With the
    default bound such a run is not kept at all."""
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        run_id = new_id()

        async def job(conn: aiosqlite.Connection) -> None:
            await run_store._RUNS.insert_within(conn, _run(run_id, {}), "clash")  # noqa: SLF001
            for index in range(4):
                outputs = {"out": [{} for _ in range(340_000)]}  # json: 1,020,000 characters
                await run_store.save_task_within(conn, _task(run_id, index, outputs))

        await db.write(job)
        default = FinishedRuns(db)
        await default.install()
        assert len((await default.get(run_id))[1]) == 4 and len(default) == 0 and default.bytes == 0
        roomy = FinishedRuns(db, max_bytes=2**40)
        await roomy.install()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            run, tasks = await roomy.get(run_id)
            assert len(tasks) == 4
            del run, tasks  # what is left is what the cache holds
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(roomy) == 1
        assert held <= roomy.bytes, f"estimated {roomy.bytes:,} bytes, holds {held:,}"
    finally:
        await db.close()


async def test_the_cache_is_dropped_by_a_rolled_back_batch_and_by_an_offloaded_change(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        cache = FinishedRuns(db)
        await cache.install()
        run_id = new_id()

        async def insert(conn: aiosqlite.Connection) -> None:
            await run_store._RUNS.insert_within(conn, _run(run_id, {"a": 1}), "clash")  # noqa: SLF001

        await db.write(insert)
        assert (await cache.get(run_id))[0].parameters == {"a": 1} and len(cache) == 1

        async def fails(conn: aiosqlite.Connection) -> None:
            await conn.execute("UPDATE runs SET error = 'x' WHERE run_id = ?", (run_id,))
            raise RuntimeError("the job fails after its change")

        with pytest.raises(RuntimeError):
            await db.write(fails)
        assert len(cache) == 0  # dropped, conservatively
        assert (await cache.get(run_id))[0].error == ""

        from kfpgrpc.store.database import offloaded

        async def offloaded_change(conn: aiosqlite.Connection) -> None:
            with offloaded(conn):
                await conn.execute("UPDATE runs SET error = 'y' WHERE run_id = ?", (run_id,))

        await db.write(offloaded_change)
        assert (await cache.get(run_id))[0].error == "y"
        # A read started while the change's transaction is open is not kept.
        release = asyncio.Event()

        async def slow(conn: aiosqlite.Connection) -> None:
            await conn.execute("UPDATE runs SET error = 'z' WHERE run_id = ?", (run_id,))
            await release.wait()

        writing = asyncio.create_task(db.write(slow))
        await asyncio.sleep(0.05)
        assert (await cache.get(run_id))[0].error == "y"  # the committed state
        release.set()
        await writing
        assert (await cache.get(run_id))[0].error == "z"
        assert (await cache.get(run_id))[0].error == "z"
    finally:
        await db.close()


# -- 2. write batching ------------------------------------------------------------------------


async def test_an_expedited_write_goes_in_the_requests_batch_while_background_writes_wait(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    order: list[str] = []

    def recorder(name: str):  # noqa: ANN202
        async def job(conn: aiosqlite.Connection) -> None:
            order.append(name)

        return job

    try:
        release = asyncio.Event()

        async def hold(conn: aiosqlite.Connection) -> None:
            await release.wait()

        holder = asyncio.create_task(db.write(hold, background=True))
        await asyncio.sleep(0.05)
        owner = object()
        others = [asyncio.create_task(db.write(recorder(f"b{i}"), background=True)) for i in range(300)]
        owned = asyncio.create_task(db.write(recorder("owned"), background=True, owner=owner))
        request = asyncio.create_task(db.write(recorder("request")))
        await asyncio.sleep(0.01)
        db.expedite(owner)
        db.expedite(owner)  # twice: still once
        release.set()
        await asyncio.gather(holder, *others, owned, request)
        assert order[:2] == ["request", "owned"] and order.count("owned") == 1 and len(order) == 302
        # Cancelled background writes are dropped; a patient one is kept.
        order.clear()
        release = asyncio.Event()
        holder = asyncio.create_task(db.write(hold, background=True))
        await asyncio.sleep(0.05)
        dropped = asyncio.create_task(db.write(recorder("dropped"), background=True))
        kept = asyncio.create_task(db.write(recorder("kept"), patient=True))
        await asyncio.sleep(0.01)
        dropped.cancel()
        kept.cancel()
        release.set()
        await holder
        await asyncio.sleep(0.1)
        assert order == ["kept"]
    finally:
        await db.close()


# -- 4. chunked wake-ups ------------------------------------------------------------------------


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(us(START))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wake chunks small enough that a dozen recurring runs make a burst of several."""
    monkeypatch.setattr(recurring_module, "WAKE_CHUNK", 3)


async def test_a_burst_with_changes_during_it_loses_no_tick(
    small_chunks: None, server: KfpGrpcServer, stubs: Stubs, clock: VirtualClock, compiled: dict[str, Spec]
) -> None:
    harness = Harness(stubs, clock)
    version = await upload(stubs, "instant", compiled["instant-pipeline"])
    manager = server._recurring_runs  # noqa: SLF001
    assert manager is not None
    made = [await harness.create(recurring(version, f"r{i}", "*/15 * * * *")) for i in range(10)]
    ids = [m.recurring_run_id for m in made]
    clock.set(us("2026-05-04T10:15:00+00:00"))  # every one due at once
    # Changes during the burst: disables, a trigger, an update of the schedule.
    disabled = ids[:3]
    await asyncio.gather(
        *(stubs.recurring_runs.DisableRecurringRun(pb.DisableRecurringRunRequest(recurring_run_id=i)) for i in disabled),
        stubs.recurring_runs.TriggerRecurringRun(pb.TriggerRecurringRunRequest(recurring_run_id=ids[5])),
        return_exceptions=True,
    )
    updated = await harness.get(ids[6])
    updated.trigger.cron_schedule.cron = "*/30 * * * *"
    await stubs.recurring_runs.UpdateRecurringRun(
        pb.UpdateRecurringRunRequest(recurring_run=updated, update_mask=field_mask_pb2.FieldMask(paths=["trigger"]))
    )
    for rid in ids:
        await eventually(lambda rid=rid: harness.get(rid), lambda got: not got.next_scheduled_times or got.next_scheduled_times[0].ToMicroseconds() > us("2026-05-04T10:15:00+00:00"))
    clock.set(us("2026-05-04T10:30:00+00:00"))
    for rid in ids:
        await eventually(lambda rid=rid: harness.get(rid), lambda got: not got.next_scheduled_times or got.next_scheduled_times[0].ToMicroseconds() > us("2026-05-04T10:30:00+00:00"))

    async def settled() -> list[run_pb2.Run]:
        return await harness.runs()

    runs = await eventually(settled, lambda found: all(r.state == common_pb2.SUCCEEDED for r in found) and len(found) >= 1, timeout=60)
    by_id: dict[str, list[str]] = {}
    for run in runs:
        by_id.setdefault(run.recurring_run_id, []).append(run.scheduled_at.ToJsonString())
    for rid in ids:
        ticks = sorted(by_id.get(rid, []))
        assert len(ticks) == len(set(ticks)), (rid, ticks)  # none twice
        if rid in disabled:
            assert all(t <= "2026-05-04T10:15:00Z" for t in ticks), ticks  # not after its disable
        elif rid == ids[5]:
            assert "2026-05-04T10:15:00Z" in ticks and "2026-05-04T10:30:00Z" in ticks and len(ticks) >= 2
        else:
            assert ticks == ["2026-05-04T10:15:00Z", "2026-05-04T10:30:00Z"], (rid, ticks)
        counters = (await harness.get(rid)).counters
        assert counters.runs_created == len(ticks)


async def test_a_server_stopped_during_a_burst_loses_no_tick(
    small_chunks: None, data_dir: Path, compiled: dict[str, Spec]
) -> None:
    from tests.test_recurring_runs import served

    clock = VirtualClock(us(START))
    async with served(data_dir, clock) as harness:
        version = await upload(harness.stubs, "instant", compiled["instant-pipeline"])
        ids = [(await harness.create(recurring(version, f"s{i}", "*/15 * * * *"))).recurring_run_id for i in range(8)]
    clock.set(us("2026-05-04T10:15:00+00:00"))
    from kfpgrpc.config import ServerConfig

    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir), clock)
    await server.start()
    manager = server._recurring_runs  # noqa: SLF001
    assert manager is not None
    await asyncio.sleep(0.05)  # the burst under way
    await server.stop()
    # Restarted, every tick is handled once.
    async with served(data_dir, clock) as harness:
        for rid in ids:
            assert await harness.ticks(rid, 1) == ["2026-05-04T10:15:00Z"]


# -- 7. event inserts offloaded from 50 rows ---------------------------------------------------


async def test_offloaded_event_inserts_keep_staging_order_and_roll_back(tmp_path: Path) -> None:
    from kfpgrpc.domain import Event
    from kfpgrpc.store.events import EventLog

    db = await Database.open(tmp_path / "db.sqlite")
    try:
        log = EventLog(db)
        heard: list[list[Event]] = []
        log.listeners.append(heard.append)

        def events(prefix: str, count: int) -> list[Event]:
            return [Event(0, index, "RUN_STATE_CHANGED", run_id=f"{prefix}{index}") for index in range(count)]

        def staging(staged: list[Event], fail: bool = False):  # noqa: ANN202
            async def job(conn: aiosqlite.Connection) -> None:
                log.stage(*staged)
                if fail:
                    raise RuntimeError("rolled back")

            return job

        await asyncio.gather(db.write(staging(events("a", 1_049))), db.write(staging(events("b", 49))), db.write(staging(events("c", 50))))
        with pytest.raises(RuntimeError):
            await db.write(staging(events("x", 120), fail=True))
        await db.write(staging(events("d", 60)))
        flat = [e for batch in heard for e in batch]
        assert [e.run_id[0] for e in flat] == ["a"] * 1_049 + ["b"] * 49 + ["c"] * 50 + ["d"] * 60
        assert [e.sequence for e in flat] == list(range(1, len(flat) + 1))
        rows = await db.fetch_all("SELECT sequence, run_id FROM events ORDER BY sequence")
        assert [(r[0], r[1]) for r in rows] == [(e.sequence, e.run_id) for e in flat]
    finally:
        await db.close()
