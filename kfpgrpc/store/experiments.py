"""Experiments in SQLite."""

from __future__ import annotations

import dataclasses
import sqlite3

import aiosqlite

from kfpgrpc.domain import ARCHIVED, AVAILABLE, Experiment, Page
from kfpgrpc.errors import AlreadyExists, NotFound
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import Column, Kind, Listing, Query, fetch_page

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
_FIELDS = [f.name for f in dataclasses.fields(Experiment)]
_SELECT = ", ".join(_FIELDS)


def _from_row(row: sqlite3.Row) -> Experiment:
    return Experiment(**{name: row[name] for name in _FIELDS})


async def insert(db: Database, experiment: Experiment) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        try:
            await conn.execute(
                f"INSERT INTO experiments ({_SELECT}) VALUES ({', '.join('?' * len(_FIELDS))})",
                dataclasses.astuple(experiment),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"an experiment named {experiment.display_name!r} already exists") from None

    await db.write(job)


async def get(db: Database, experiment_id: str) -> Experiment:
    row = await db.fetch_one(f"SELECT {_SELECT} FROM experiments WHERE experiment_id = ?", (experiment_id,))
    if row is None:
        raise NotFound("experiment", "experiment_id", experiment_id)
    return _from_row(row)


async def find_by_name(db: Database, display_name: str) -> Experiment | None:
    row = await db.fetch_one(f"SELECT {_SELECT} FROM experiments WHERE display_name = ?", (display_name,))
    return _from_row(row) if row else None


async def list_page(db: Database, query: Query) -> Page[Experiment]:
    return await fetch_page(db, query, _SELECT, _from_row)


async def set_storage_state(db: Database, experiment_id: str, storage_state: str) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        cursor = await conn.execute(
            "UPDATE experiments SET storage_state = ? WHERE experiment_id = ?", (storage_state, experiment_id)
        )
        if cursor.rowcount == 0:
            raise NotFound("experiment", "experiment_id", experiment_id)

    await db.write(job)


async def delete(db: Database, experiment_id: str) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        cursor = await conn.execute("DELETE FROM experiments WHERE experiment_id = ?", (experiment_id,))
        if cursor.rowcount == 0:
            raise NotFound("experiment", "experiment_id", experiment_id)

    await db.write(job)
