"""Experiments in SQLite."""

from __future__ import annotations

import aiosqlite

from kfpgrpc.domain import ARCHIVED, AVAILABLE, Experiment, Page
from kfpgrpc.errors import FailedPrecondition
from kfpgrpc.store.database import Database
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
    """Archive an experiment and every run in it."""

    async def job(conn: aiosqlite.Connection) -> None:
        await _TABLE.update_within(conn, "experiment_id", experiment_id, {"storage_state": ARCHIVED})
        await conn.execute("UPDATE runs SET storage_state = ? WHERE experiment_id = ?", (ARCHIVED, experiment_id))

    await db.write(job)


async def unarchive(db: Database, experiment_id: str) -> None:
    """Restore an experiment; its runs stay archived, as in KFP."""
    await _TABLE.update(db, "experiment_id", experiment_id, {"storage_state": AVAILABLE})


async def delete(db: Database, experiment_id: str) -> None:
    """Delete an experiment that has no runs and no recurring runs."""

    async def job(conn: aiosqlite.Connection) -> None:
        for table, what in (("runs", "run(s)"), ("recurring_runs", "recurring run(s)")):
            rows = await conn.execute_fetchall(f"SELECT COUNT(*) FROM {table} WHERE experiment_id = ?", (experiment_id,))
            if count := next(iter(rows))[0]:
                raise FailedPrecondition(f"experiment {experiment_id!r} has {count} {what}; delete them first")
        await _TABLE.delete_within(conn, "experiment_id", experiment_id)

    await db.write(job)
