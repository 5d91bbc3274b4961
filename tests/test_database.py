"""The SQLite layer on its own: group commit, failure isolation, migrations, shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

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
