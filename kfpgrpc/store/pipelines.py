"""Pipelines and pipeline versions in SQLite."""

from __future__ import annotations

import aiosqlite

from kfpgrpc.domain import Page, Pipeline, PipelineVersion, evolve
from kfpgrpc.errors import FailedPrecondition, NotFound
from kfpgrpc.store.database import Database, WriteJob, offloaded
from kfpgrpc.store.listing import Column, Kind, Listing, Query
from kfpgrpc.store.records import JSON, RecordTable

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
_PIPELINES = RecordTable("pipelines", Pipeline, "pipeline")
_VERSIONS = RecordTable("pipeline_versions", PipelineVersion, "pipeline version", {"pipeline_spec": JSON})


async def insert_pipeline(db: Database, pipeline: Pipeline) -> None:
    await _PIPELINES.insert(db, pipeline, _name_taken(pipeline))


async def get_pipeline(db: Database, pipeline_id: str) -> Pipeline:
    return await _PIPELINES.get(db, "pipeline_id", pipeline_id)


async def get_pipeline_by_name(db: Database, name: str) -> Pipeline:
    return await _PIPELINES.get(db, "name", name)


async def list_pipelines(db: Database, query: Query) -> Page[Pipeline]:
    return await _PIPELINES.list_page(db, query)


async def delete_pipeline(db: Database, pipeline_id: str, cascade: bool) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        versions = await _version_count(conn, pipeline_id)
        if versions and not cascade:
            raise FailedPrecondition(
                f"pipeline {pipeline_id!r} has {versions} version(s); delete them first or set cascade"
            )
        with offloaded(conn):  # every version's spec
            await conn.execute("DELETE FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
        await _PIPELINES.delete_within(conn, "pipeline_id", pipeline_id)

    await db.write(job)


async def insert_version(db: Database, version: PipelineVersion, also: WriteJob[None] | None = None) -> PipelineVersion:
    """Insert a version (and run `also` in the same transaction); an empty name becomes the
    next free "v<N>"."""
    return await db.write(lambda conn: _insert_version_within(conn, version, also))


async def insert_pipeline_and_version(
    db: Database, pipeline: Pipeline, version: PipelineVersion, also: WriteJob[None] | None = None
) -> PipelineVersion:
    """Insert a new pipeline with its first version in one transaction (and `also` in it)."""

    async def job(conn: aiosqlite.Connection) -> PipelineVersion:
        await _PIPELINES.insert_within(conn, pipeline, _name_taken(pipeline))
        return await _insert_version_within(conn, version, also)

    return await db.write(job)


def _name_taken(pipeline: Pipeline) -> str:
    return f"a pipeline named {pipeline.name!r} already exists"


async def _insert_version_within(conn: aiosqlite.Connection, version: PipelineVersion, also: WriteJob[None] | None) -> PipelineVersion:
    if not await conn.execute_fetchall("SELECT 1 FROM pipelines WHERE pipeline_id = ?", (version.pipeline_id,)):
        raise NotFound("pipeline", "pipeline_id", version.pipeline_id)
    stored = version
    if not version.name:
        name = await _next_default_name(conn, version.pipeline_id)
        stored = evolve(version, name=name, display_name=version.display_name or name)
    conflict = f"pipeline {version.pipeline_id!r} already has a version named {stored.name!r}"
    with offloaded(conn):  # its spec: megabytes, maybe
        await _VERSIONS.insert_within(conn, stored, conflict)
    if also is not None:
        await also(conn)
    return stored


async def _version_count(conn: aiosqlite.Connection, pipeline_id: str) -> int:
    rows = await conn.execute_fetchall("SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
    return int(next(iter(rows))[0])


async def _next_default_name(conn: aiosqlite.Connection, pipeline_id: str) -> str:
    """"v<N>" with N the version count + 1, or the next free N after deletions or custom names."""
    number = await _version_count(conn, pipeline_id) + 1
    while await conn.execute_fetchall(
        "SELECT 1 FROM pipeline_versions WHERE pipeline_id = ? AND name = ?", (pipeline_id, f"v{number}")
    ):
        number += 1
    return f"v{number}"


async def get_version(db: Database, pipeline_version_id: str) -> PipelineVersion:
    return await _VERSIONS.get(db, "pipeline_version_id", pipeline_version_id)


async def latest_version_id(db: Database, pipeline_id: str) -> str | None:
    row = await db.fetch_one(
        "SELECT pipeline_version_id FROM pipeline_versions WHERE pipeline_id = ?"
        " ORDER BY created_at DESC, pipeline_version_id DESC LIMIT 1",
        (pipeline_id,),
    )
    return row[0] if row else None


async def pipeline_of_version(db: Database, pipeline_version_id: str) -> str | None:
    """The pipeline a version belongs to; None when the version does not exist."""
    row = await db.fetch_one("SELECT pipeline_id FROM pipeline_versions WHERE pipeline_version_id = ?", (pipeline_version_id,))
    return row[0] if row else None


async def list_versions(db: Database, query: Query) -> Page[PipelineVersion]:
    return await _VERSIONS.list_page(db, query)


async def delete_version(db: Database, pipeline_version_id: str) -> None:
    await _VERSIONS.delete(db, "pipeline_version_id", pipeline_version_id)
