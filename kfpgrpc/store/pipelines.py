"""Pipelines and pipeline versions in SQLite."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import aiosqlite

from kfpgrpc.domain import Page, Pipeline, PipelineVersion
from kfpgrpc.errors import AlreadyExists, FailedPrecondition, NotFound
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import Column, Kind, Listing, Query, fetch_page

PIPELINES = Listing(
    table="pipelines",
    id_column="pipeline_id",
    columns={
        "pipeline_id": Column(Kind.TEXT, sortable=True),
        "name": Column(Kind.TEXT, sortable=True),
        "display_name": Column(Kind.TEXT, sortable=True),
        "description": Column(Kind.TEXT),
        "created_at": Column(Kind.TIME, sortable=True),
    },
    aliases={"id": "pipeline_id"},
)
PIPELINE_VERSIONS = Listing(
    table="pipeline_versions",
    id_column="pipeline_version_id",
    columns={
        "pipeline_version_id": Column(Kind.TEXT, sortable=True),
        "name": Column(Kind.TEXT, sortable=True),
        "display_name": Column(Kind.TEXT, sortable=True),
        "description": Column(Kind.TEXT),
        "created_at": Column(Kind.TIME, sortable=True),
    },
    aliases={"id": "pipeline_version_id"},
)
_PIPELINE_FIELDS = [f.name for f in dataclasses.fields(Pipeline)]
_PIPELINE_SELECT = ", ".join(_PIPELINE_FIELDS)
_VERSION_FIELDS = [f.name for f in dataclasses.fields(PipelineVersion)]
_VERSION_SELECT = ", ".join(_VERSION_FIELDS)


def _pipeline(row: sqlite3.Row) -> Pipeline:
    return Pipeline(**{name: row[name] for name in _PIPELINE_FIELDS})


def _version(row: sqlite3.Row) -> PipelineVersion:
    values = {name: row[name] for name in _VERSION_FIELDS}
    values["pipeline_spec"] = json.loads(values["pipeline_spec"])
    return PipelineVersion(**values)


async def insert_pipeline(db: Database, pipeline: Pipeline) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        try:
            await conn.execute(
                f"INSERT INTO pipelines ({_PIPELINE_SELECT}) VALUES ({', '.join('?' * len(_PIPELINE_FIELDS))})",
                dataclasses.astuple(pipeline),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a pipeline named {pipeline.name!r} already exists") from None

    await db.write(job)


async def get_pipeline(db: Database, pipeline_id: str) -> Pipeline:
    row = await db.fetch_one(f"SELECT {_PIPELINE_SELECT} FROM pipelines WHERE pipeline_id = ?", (pipeline_id,))
    if row is None:
        raise NotFound("pipeline", "pipeline_id", pipeline_id)
    return _pipeline(row)


async def get_pipeline_by_name(db: Database, name: str) -> Pipeline:
    row = await db.fetch_one(f"SELECT {_PIPELINE_SELECT} FROM pipelines WHERE name = ?", (name,))
    if row is None:
        raise NotFound("pipeline", "name", name)
    return _pipeline(row)


async def list_pipelines(db: Database, query: Query) -> Page[Pipeline]:
    return await fetch_page(db, query, _PIPELINE_SELECT, _pipeline)


async def delete_pipeline(db: Database, pipeline_id: str, cascade: bool) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        rows = await conn.execute_fetchall(
            "SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,)
        )
        (versions,) = next(iter(rows))
        if versions and not cascade:
            raise FailedPrecondition(
                f"pipeline {pipeline_id!r} has {versions} version(s); delete them first or set cascade"
            )
        await conn.execute("DELETE FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
        cursor = await conn.execute("DELETE FROM pipelines WHERE pipeline_id = ?", (pipeline_id,))
        if cursor.rowcount == 0:
            raise NotFound("pipeline", "pipeline_id", pipeline_id)

    await db.write(job)


async def insert_version(db: Database, version: PipelineVersion) -> PipelineVersion:
    """Insert a version; an empty name becomes "v<N>" (N = the pipeline's version count + 1)."""

    async def job(conn: aiosqlite.Connection) -> PipelineVersion:
        if not await conn.execute_fetchall("SELECT 1 FROM pipelines WHERE pipeline_id = ?", (version.pipeline_id,)):
            raise NotFound("pipeline", "pipeline_id", version.pipeline_id)
        stored = version
        if not version.name:
            rows = await conn.execute_fetchall(
                "SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (version.pipeline_id,)
            )
            name = f"v{next(iter(rows))[0] + 1}"
            stored = dataclasses.replace(version, name=name, display_name=version.display_name or name)
        values = dataclasses.astuple(stored)[:-1] + (json.dumps(stored.pipeline_spec, separators=(",", ":")),)
        try:
            await conn.execute(
                f"INSERT INTO pipeline_versions ({_VERSION_SELECT}) VALUES ({', '.join('?' * len(_VERSION_FIELDS))})",
                values,
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"pipeline {version.pipeline_id!r} already has a version named {stored.name!r}") from None
        return stored

    return await db.write(job)


async def get_version(db: Database, pipeline_version_id: str) -> PipelineVersion:
    row = await db.fetch_one(
        f"SELECT {_VERSION_SELECT} FROM pipeline_versions WHERE pipeline_version_id = ?", (pipeline_version_id,)
    )
    if row is None:
        raise NotFound("pipeline version", "pipeline_version_id", pipeline_version_id)
    return _version(row)


async def latest_version(db: Database, pipeline_id: str) -> PipelineVersion | None:
    row = await db.fetch_one(
        f"SELECT {_VERSION_SELECT} FROM pipeline_versions WHERE pipeline_id = ? "
        "ORDER BY created_at DESC, pipeline_version_id DESC LIMIT 1",
        (pipeline_id,),
    )
    return _version(row) if row else None


async def list_versions(db: Database, query: Query) -> Page[PipelineVersion]:
    return await fetch_page(db, query, _VERSION_SELECT, _version)


async def delete_version(db: Database, pipeline_version_id: str) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        cursor = await conn.execute(
            "DELETE FROM pipeline_versions WHERE pipeline_version_id = ?", (pipeline_version_id,)
        )
        if cursor.rowcount == 0:
            raise NotFound("pipeline version", "pipeline_version_id", pipeline_version_id)

    await db.write(job)
