"""Experiments in SQLite."""

from __future__ import annotations

import aiosqlite

from kfpgrpc.domain import ARCHIVED, AVAILABLE, ENABLED, Experiment, Page
from kfpgrpc.errors import FailedPrecondition
from kfpgrpc.store.database import Database, offloaded
from kfpgrpc.store.listing import Column, Kind, Listing, Query
from kfpgrpc.store.records import RecordTable

EXPERIMENTS = Listing(
    table="experiments",
    id_column="experiment_id",
    columns={
        "experiment_id": Column(Kind.TEXT, sortable=True),
        "display_name": Column(Kind.TEXT, sortable=True),
        "description": Column(Kind.TEXT),
        "created_at": Column(Kind.TIME, sortable=True),
        "storage_state": Column(Kind.ENUM, enum_names=("STORAGE_STATE_UNSPECIFIED", AVAILABLE, ARCHIVED)),
    },
    aliases={"id": "experiment_id", "name": "display_name"},
)
_TABLE = RecordTable("experiments", Experiment, "experiment")


async def insert(db: Database, experiment: Experiment) -> None:
    await _TABLE.insert(db, experiment, f"an experiment named {experiment.display_name!r} already exists")


async def get(db: Database, experiment_id: str) -> Experiment:
    return await _TABLE.get(db, "experiment_id", experiment_id)


async def find_by_name(db: Database, display_name: str) -> Experiment | None:
    return await _TABLE.find(db, "display_name", display_name)


async def list_page(db: Database, query: Query) -> Page[Experiment]:
    return await _TABLE.list_page(db, query)


async def archive(db: Database, experiment_id: str) -> None:
    """Archive an experiment and every run in it. FailedPrecondition while a recurring run in
    it is enabled (the caller disables them first; this catches one enabled meanwhile)."""

    async def job(conn: aiosqlite.Connection) -> None:
        rows = await conn.execute_fetchall(
            "SELECT recurring_run_id FROM recurring_runs WHERE experiment_id = ? AND status = ? LIMIT 1", (experiment_id, ENABLED)
        )
        if enabled := list(rows):
            raise FailedPrecondition(f"recurring run {enabled[0][0]!r} in experiment {experiment_id!r} was enabled meanwhile; archive again")
        await _TABLE.update_within(conn, "experiment_id", experiment_id, {"storage_state": ARCHIVED})
        with offloaded(conn):
            await conn.execute("UPDATE runs SET storage_state = ? WHERE experiment_id = ?", (ARCHIVED, experiment_id))

    await db.write(job)


async def check_available_within(conn: aiosqlite.Connection, experiment_id: str, action: str) -> None:
    """FailedPrecondition when the experiment is archived: it holds no active work. `action`
    says what was refused, e.g. "enabling recurring run 'x'"."""
    rows = await conn.execute_fetchall("SELECT storage_state FROM experiments WHERE experiment_id = ?", (experiment_id,))
    if any(state == ARCHIVED for (state,) in rows):
        raise FailedPrecondition(f"experiment {experiment_id!r} is archived: unarchive it before {action}")


async def unarchive(db: Database, experiment_id: str) -> None:
    """Restore an experiment; its runs stay archived, as in KFP."""
    await _TABLE.update(db, "experiment_id", experiment_id, {"storage_state": AVAILABLE})


async def delete(db: Database, experiment_id: str) -> None:
    """Delete an experiment that has no runs and no recurring runs."""

    async def job(conn: aiosqlite.Connection) -> None:
        for table, what in (("runs", "run(s)"), ("recurring_runs", "recurring run(s)")):
            with offloaded(conn):
                rows = await conn.execute_fetchall(f"SELECT COUNT(*) FROM {table} WHERE experiment_id = ?", (experiment_id,))
            if count := next(iter(rows))[0]:
                raise FailedPrecondition(f"experiment {experiment_id!r} has {count} {what}; delete them first")
        await _TABLE.delete_within(conn, "experiment_id", experiment_id)

    await db.write(job)
