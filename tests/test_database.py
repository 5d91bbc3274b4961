"""The SQLite layer on its own: group commit, failure isolation, migrations, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from kfpgrpc.errors import Unavailable
from kfpgrpc.store.database import Database, offloaded
from kfpgrpc.store.schema import MIGRATIONS


async def insert(db: Database, name: str) -> int:
    async def job(conn: aiosqlite.Connection) -> int:
        await conn.execute(
            "INSERT INTO experiments VALUES (?, ?, '', 0, 'AVAILABLE', 0)", (f"id-{name}", name)
        )
        return conn.total_changes

    return await db.write(job)


async def test_concurrent_writes_share_commits_and_a_failure_fails_only_its_caller(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        names = [f"e{i}" for i in range(200)] + ["e7"]  # the duplicate must fail alone
        results = await asyncio.gather(*(insert(db, n) for n in names), return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        assert len(failures) == 1 and isinstance(failures[0], sqlite3.IntegrityError)
        rows = await db.fetch_all("SELECT display_name FROM experiments")
        assert sorted(r["display_name"] for r in rows) == sorted(set(names))
    finally:
        await db.close()


async def test_close_commits_queued_writes_then_refuses_new_ones(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    queued = [asyncio.create_task(insert(db, f"q{i}")) for i in range(50)]
    await asyncio.sleep(0)  # let every task enqueue its write
    await db.close()
    assert all(task.done() and not task.exception() for task in queued)
    with pytest.raises(Unavailable):
        await insert(db, "late")
    with sqlite3.connect(tmp_path / "db.sqlite") as check:
        assert check.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 50


async def test_migrations_apply_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await Database.open(path)
    await insert(db, "kept")
    await db.close()
    db = await Database.open(path)  # reopening applies nothing and keeps data
    assert [r["display_name"] for r in await db.fetch_all("SELECT display_name FROM experiments")] == ["kept"]
    await db.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this kfpgrpc"):
        await Database.open(path)


async def test_readers_cannot_write(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        with pytest.raises(sqlite3.OperationalError):
            await db.fetch_all("DELETE FROM experiments")
    finally:
        await db.close()


async def test_a_snapshot_sees_one_commit_while_writes_land(tmp_path: Path) -> None:
    """List pages read their items and their total count in one snapshot: a run created
    between the two queries once gave `total_size: 1` with no runs in the page."""
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        await insert(db, "before")
        async with db.snapshot() as conn:
            (first,) = next(iter(await conn.execute_fetchall("SELECT COUNT(*) FROM experiments")))
            await insert(db, "during")
            (second,) = next(iter(await conn.execute_fetchall("SELECT COUNT(*) FROM experiments")))
        assert first == second == 1
        assert len(await db.fetch_all("SELECT * FROM experiments")) == 2
    finally:
        await db.close()


async def held_writer(db: Database, background: bool = False) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """A write that holds the writer until the returned event is set."""
    release = asyncio.Event()

    async def job(conn: aiosqlite.Connection) -> None:
        await release.wait()

    task = asyncio.create_task(db.write(job, background=background))
    await asyncio.sleep(0.05)
    assert db.writing
    return release, task


async def test_a_write_whose_caller_gave_up_before_it_ran_is_dropped(tmp_path: Path) -> None:
    """Cancelled while queued (a request given up, an actor stopped): never run, neither by
    the writer nor at close; a write queued behind it still is."""
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        release, holder = await held_writer(db)
        given_up = asyncio.create_task(insert(db, "given-up"))
        kept = asyncio.create_task(insert(db, "kept"))
        await asyncio.sleep(0.05)
        given_up.cancel()
        release.set()
        await holder
        await kept
        with pytest.raises(asyncio.CancelledError):
            await given_up
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert [row[0] for row in conn.execute("SELECT display_name FROM experiments")] == ["kept"]


async def test_expedite_moves_an_owners_background_write_ahead_of_the_others(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    order: list[str] = []

    def job(name: str):  # noqa: ANN202 - a write job
        async def run(conn: aiosqlite.Connection) -> None:
            order.append(name)

        return run

    try:
        release, holder = await held_writer(db)
        owner = object()
        writes = [asyncio.create_task(db.write(job(f"background-{i}"), background=True)) for i in range(300)]
        mine = asyncio.create_task(db.write(job("owned"), background=True, owner=owner))
        await asyncio.sleep(0.05)
        db.expedite(owner)
        release.set()
        await asyncio.gather(holder, mine, *writes)
    finally:
        await db.close()
    assert order[0] == "owned" and order.count("owned") == 1 and len(order) == 301


async def test_a_request_is_not_committed_with_the_background_writes_queued_behind_it(tmp_path: Path) -> None:
    """A request's write commits in a batch of requests; the background writes queued after it
    (thousands under overload) go in a later batch, and still run while requests keep coming."""
    db = await Database.open(tmp_path / "db.sqlite")
    seen: dict[str, bool] = {}  # background write -> whether the request was committed when it ran

    try:
        release, holder = await held_writer(db, background=True)  # as a tick job in flight
        request = asyncio.create_task(insert(db, "request"))

        def background(name: str):  # noqa: ANN202 - a write job
            async def run(conn: aiosqlite.Connection) -> None:  # a reader sees only what is committed
                seen[name] = await db.fetch_one("SELECT 1 FROM experiments WHERE display_name = 'request'") is not None

            return run

        backgrounds = [asyncio.create_task(db.write(background(f"b{i}"), background=True)) for i in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(holder, request, *backgrounds)

        # Requests that keep arriving (each queues the next before it commits) leave a turn
        # to a background write queued meanwhile.
        chain_done: list[int] = []

        async def chained(index: int) -> None:
            async def job(conn: aiosqlite.Connection) -> None:
                if index < 6:
                    asyncio.get_running_loop().create_task(chained(index + 1))
                    await asyncio.sleep(0.01)

            await db.write(job)
            chain_done.append(index)

        first = asyncio.create_task(chained(0))
        await asyncio.sleep(0.005)
        background_ran_after: list[int] = []

        async def late(conn: aiosqlite.Connection) -> None:
            background_ran_after.append(len(chain_done))

        await db.write(late, background=True)
        await first
        while len(chain_done) < 7:
            await asyncio.sleep(0.01)
    finally:
        await db.close()
    assert seen == {"b0": True, "b1": True, "b2": True}
    assert background_ran_after and background_ran_after[0] < 6


def _run_row(run_id: str, experiment_id: str, storage_state: str, state: str) -> tuple[str, ...]:
    return (run_id, experiment_id, run_id, storage_state, state)


_INSERT_RUN = (
    "INSERT INTO runs (run_id, experiment_id, display_name, description, storage_state, pipeline_id,"
    " pipeline_version_id, spec_hash, parameters, pipeline_root, service_account, created_at, scheduled_at,"
    " finished_at, state, error, recurring_run_id, state_history, artifacts, output_artifacts, revision)"
    " VALUES (?, ?, ?, '', ?, '', '', 'h', '{}', '', '', 1, 1, 0, ?, '', '', '[]', '[]', '[]', 1)"
)


async def _counts(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the run_counts table, the same counted from runs), each sorted."""
    kept = await db.fetch_all("SELECT experiment_id, storage_state, state, runs FROM run_counts ORDER BY 1, 2, 3")
    counted = await db.fetch_all(
        "SELECT experiment_id, storage_state, state, COUNT(*) FROM runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    return [tuple(row) for row in kept], [tuple(row) for row in counted]


async def test_run_counts_are_built_by_their_migration_and_kept_by_every_write(tmp_path: Path) -> None:
    """ListRuns' total_size sums run_counts (schema 6): it must match the runs after the
    migration of a database that already has runs, and after inserts, state and storage state
    changes, moves between experiments and deletes, with no group left at zero."""
    path = tmp_path / "db.sqlite"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:  # schema 5, with runs
        for script in MIGRATIONS[:5]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version = 5")
        raw.executemany(_INSERT_RUN, [
            _run_row(f"r{i}", f"e{i % 2}", "ARCHIVED" if i % 3 == 0 else "AVAILABLE", "FAILED" if i % 4 == 0 else "SUCCEEDED")
            for i in range(20)
        ])
    db = await Database.open(path)
    try:
        kept, counted = await _counts(db)
        assert kept == counted and sum(row[3] for row in kept) == 20

        async def write(*statements: tuple[str, tuple[Any, ...]]) -> None:
            async def job(conn: aiosqlite.Connection) -> None:
                for sql, params in statements:
                    await conn.execute(sql, params)

            await db.write(job)
            kept, counted = await _counts(db)
            assert kept == counted, statements

        await write((_INSERT_RUN, _run_row("new", "e2", "AVAILABLE", "PENDING")))
        await write(("UPDATE runs SET state = 'RUNNING', revision = 2 WHERE run_id = 'new'", ()))
        await write(("UPDATE runs SET state = 'SUCCEEDED', finished_at = 5 WHERE run_id = 'new'", ()))
        await write(("UPDATE runs SET display_name = 'renamed' WHERE run_id = 'r1'", ()))  # no counted column
        await write(("UPDATE runs SET storage_state = 'ARCHIVED' WHERE experiment_id = 'e1'", ()))
        await write(("UPDATE runs SET experiment_id = 'e3' WHERE run_id IN ('r2', 'r4')", ()))
        await write(("DELETE FROM runs WHERE run_id IN ('r0', 'new')", ()), ("DELETE FROM runs WHERE state = 'FAILED'", ()))
        await write((_INSERT_RUN, _run_row("again", "e2", "AVAILABLE", "PENDING")))
        kept, _ = await _counts(db)
        assert ("e2", "AVAILABLE", "PENDING", 1) in kept and all(row[3] > 0 for row in kept)
        await write(("DELETE FROM runs", ()))
        assert await _counts(db) == ([], [])
    finally:
        await db.close()


async def test_offloaded_statements_belong_to_the_job_s_transaction(tmp_path: Path) -> None:
    """A job's statements run on the event loop's thread, those in `offloaded` on the
    connection's: both are in the batch's transaction, so a job that fails after both leaves
    neither, and its neighbours in the batch are committed."""
    db = await Database.open(tmp_path / "db.sqlite")

    async def half_then_fail(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO experiments VALUES ('id-inline', 'inline', '', 0, 'AVAILABLE', 0)")
        with offloaded(conn):
            await conn.execute("INSERT INTO experiments VALUES ('id-offloaded', 'offloaded', '', 0, 'AVAILABLE', 0)")
        raise RuntimeError("after both")

    async def both(conn: aiosqlite.Connection) -> int:
        await conn.execute("INSERT INTO experiments VALUES ('id-a', 'a', '', 0, 'AVAILABLE', 0)")
        with offloaded(conn):
            cursor = await conn.execute("UPDATE experiments SET description = 'offloaded' WHERE experiment_id = 'id-a'")
        return cursor.rowcount

    try:
        results = await asyncio.gather(
            insert(db, "before"), db.write(half_then_fail), db.write(both), insert(db, "after"), return_exceptions=True
        )
        assert isinstance(results[1], RuntimeError) and results[2] == 1
        rows = await db.fetch_all("SELECT display_name, description FROM experiments ORDER BY display_name")
        assert [tuple(row) for row in rows] == [("a", "offloaded"), ("after", ""), ("before", "")]
    finally:
        await db.close()


async def test_a_patient_write_whose_caller_gave_up_still_runs(tmp_path: Path) -> None:
    """What a run's execution reports (a patient write) is kept even if the task that sent it
    is cancelled before it ran (a log flush cut short by the end of the task's output)."""
    db = await Database.open(tmp_path / "db.sqlite")

    async def job(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO experiments VALUES ('id-kept', 'kept', '', 0, 'AVAILABLE', 0)")

    try:
        release, holder = await held_writer(db)
        report = asyncio.create_task(db.write(job, background=True, patient=True))
        await asyncio.sleep(0.05)
        report.cancel()
        release.set()
        await holder
        await asyncio.gather(report, return_exceptions=True)
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert [row[0] for row in conn.execute("SELECT display_name FROM experiments")] == ["kept"]
