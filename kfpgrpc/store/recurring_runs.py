"""Recurring runs and their tick queues in SQLite."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from kfpgrpc.domain import DISABLED, ENABLED, Page, RecurringRun, Trigger
from kfpgrpc.errors import FailedPrecondition
from kfpgrpc.store.database import Database, WriteJob, offloaded
from kfpgrpc.store.listing import Column, Kind, Listing, Query
from kfpgrpc.store.records import JSON, Codec, RecordTable
from kfpgrpc.store.runs import forget_spec_if_unused_within, remember_spec_within

RECURRING_RUNS = Listing(
    table="recurring_runs",
    id_column="recurring_run_id",
    columns={
        "recurring_run_id": Column(Kind.TEXT, sortable=True),
        "display_name": Column(Kind.TEXT, sortable=True),
        "description": Column(Kind.TEXT),
        "created_at": Column(Kind.TIME, sortable=True),
        "updated_at": Column(Kind.TIME, sortable=True),
        "experiment_id": Column(Kind.TEXT),
        # KFP's numbers: 2 is unused, so no name matches it.
        "status": Column(Kind.ENUM, enum_names=("STATUS_UNSPECIFIED", ENABLED, "(unused)", DISABLED)),
    },
    aliases={"id": "recurring_run_id", "name": "display_name"},
)


def _encode_trigger(trigger: Trigger) -> str:
    return JSON.encode(dataclasses.asdict(trigger))


def decode_trigger(text: str) -> Trigger:
    """A trigger as stored (the column's JSON)."""
    fields = json.loads(text)
    fields["upstream_recurring_run_ids"] = tuple(fields["upstream_recurring_run_ids"])
    return Trigger(**fields)


_BOOL = Codec(int, bool)
_TABLE = RecordTable(
    "recurring_runs",
    RecurringRun,
    "recurring run",
    {
        "parameters": JSON,
        "parameters_from": JSON,
        "trigger": Codec(_encode_trigger, decode_trigger),
        "no_catchup": _BOOL,
        "artifacts": JSON,
        "ticks_skipped": JSON,
    },
)


@dataclass(frozen=True)
class QueuedTick:
    scheduled_at: int
    tick_index: int
    kind: str  # "catchup", "backfill" or "overlap"


async def insert(
    db: Database, recurring_run: RecurringRun, spec: dict[str, Any] | None, also: WriteJob[None] | None = None
) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        await _check_references_within(conn, recurring_run)
        if spec is not None:
            await remember_spec_within(conn, recurring_run.spec_hash, spec)
        await _TABLE.insert_within(conn, recurring_run, f"recurring run {recurring_run.recurring_run_id!r} already exists")
        await _also(conn, also)

    await db.write(job)


async def _also(conn: aiosqlite.Connection, also: WriteJob[None] | None) -> None:
    if also is not None:
        await also(conn)


async def replace_definition(
    db: Database,
    previous: RecurringRun,
    updated: RecurringRun,
    spec: dict[str, Any] | None,
    also: WriteJob[None] | None = None,
) -> None:
    """Write an updated recurring run (only the fields that differ), with its new inline spec,
    forgetting the previous spec if nothing uses it any more."""
    changed = [f.name for f in dataclasses.fields(RecurringRun) if getattr(updated, f.name) != getattr(previous, f.name)]

    async def job(conn: aiosqlite.Connection) -> None:
        await _check_references_within(conn, updated)
        if spec is not None:
            await remember_spec_within(conn, updated.spec_hash, spec)
        await save_within(conn, updated, changed)
        if previous.spec_hash and previous.spec_hash != updated.spec_hash:
            await forget_spec_if_unused_within(conn, previous.spec_hash)
        await _also(conn, also)

    await db.write(job)


async def get(db: Database, recurring_run_id: str) -> RecurringRun:
    return await _TABLE.get(db, "recurring_run_id", recurring_run_id)


async def exists(db: Database, recurring_run_id: str) -> bool:
    return await db.fetch_one("SELECT 1 FROM recurring_runs WHERE recurring_run_id = ?", (recurring_run_id,)) is not None


async def list_page(db: Database, query: Query) -> Page[RecurringRun]:
    return await _TABLE.list_page(db, query)


_IN_CHUNK = 500  # ids per `IN (...)` query: well under SQLite's 32,766 variables


async def get_many(db: Database, recurring_run_ids: Sequence[str]) -> list[RecurringRun]:
    """The recurring runs of `recurring_run_ids` that exist, in no particular order: a few
    queries for thousands of ids (the actors woken by one tick)."""
    found = []
    for start in range(0, len(recurring_run_ids), _IN_CHUNK):
        chunk = recurring_run_ids[start : start + _IN_CHUNK]
        rows = await db.fetch_all(
            f"SELECT {_TABLE.select} FROM recurring_runs WHERE recurring_run_id IN ({', '.join('?' * len(chunk))})", chunk
        )
        found += [_TABLE.from_row(row) for row in rows]
    return found


# What the server needs of an enabled recurring run to know when it next wakes and which
# events fire it: (recurring_run_id, watermark, created_at, trigger as stored, pipeline_id,
# pipeline_version_id). The trigger is left as its stored JSON, so that equal triggers are
# decoded and parsed once.
Alarm = tuple[str, int, int, str, str, str]


async def enabled_alarms(db: Database, chunk: int = 2000) -> AsyncIterator[list[Alarm]]:
    """The Alarm of every enabled recurring run, `chunk` at a time, ordered by trigger and
    watermark (read at start for every enabled recurring run: never all held at once)."""
    async with db.reader() as conn:
        async with conn.execute(
            "SELECT recurring_run_id, watermark, created_at, trigger, pipeline_id, pipeline_version_id FROM recurring_runs"
            " WHERE status = ? ORDER BY trigger, watermark",
            (ENABLED,),
        ) as cursor:
            while rows := await cursor.fetchmany(chunk):
                yield [tuple(row) for row in rows]  # type: ignore[misc]


async def fired_by(db: Database) -> list[tuple[str, str, str, str]]:
    """(recurring_run_id, trigger as stored, pipeline_id, pipeline_version_id) of the enabled
    recurring runs that upstream runs or new pipeline versions fire."""
    rows = await db.fetch_all(
        "SELECT recurring_run_id, trigger, pipeline_id, pipeline_version_id FROM recurring_runs WHERE status = ?"
        " AND (json_array_length(trigger, '$.upstream_recurring_run_ids') > 0 OR json_extract(trigger, '$.on_new_pipeline_version'))",
        (ENABLED,),
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def enabled_ids_in_experiment(db: Database, experiment_id: str) -> list[str]:
    rows = await db.fetch_all("SELECT recurring_run_id FROM recurring_runs WHERE status = ? AND experiment_id = ?", (ENABLED, experiment_id))
    return [row[0] for row in rows]


async def enabled_in_archived_experiments(db: Database) -> list[str]:
    rows = await db.fetch_all(
        "SELECT recurring_run_id FROM recurring_runs WHERE status = ? AND experiment_id IN"
        " (SELECT experiment_id FROM experiments WHERE storage_state = 'ARCHIVED')",
        (ENABLED,),
    )
    return [row[0] for row in rows]


async def save_many_within(conn: aiosqlite.Connection, recurring_runs: Sequence[RecurringRun], changes: Sequence[str]) -> None:
    """save_within for many recurring runs, the same fields of each, in one execution (on
    the connection's thread: thousands of rows)."""
    with offloaded(conn):
        await _TABLE.update_many_within(conn, "recurring_run_id", recurring_runs, changes)


async def save_within(conn: aiosqlite.Connection, recurring_run: RecurringRun, changes: Iterable[str]) -> None:
    await _TABLE.update_within(
        conn, "recurring_run_id", recurring_run.recurring_run_id, {name: getattr(recurring_run, name) for name in changes}
    )


async def save(
    db: Database, recurring_run: RecurringRun, changes: Iterable[str], also: WriteJob[None] | None = None
) -> None:
    async def job(conn: aiosqlite.Connection) -> None:
        await save_within(conn, recurring_run, changes)
        await _also(conn, also)

    await db.write(job)


async def delete(db: Database, recurring_run_id: str, also: WriteJob[None] | None = None) -> None:
    """Delete a recurring run and its queue; its runs stay and keep its id. FailedPrecondition
    while others reference it (checked in the same transaction: none can start to)."""

    async def job(conn: aiosqlite.Connection) -> None:
        await check_unreferenced_within(conn, recurring_run_id)
        rows = await conn.execute_fetchall("SELECT spec_hash FROM recurring_runs WHERE recurring_run_id = ?", (recurring_run_id,))
        await conn.execute("DELETE FROM tick_queue WHERE recurring_run_id = ?", (recurring_run_id,))
        await _TABLE.delete_within(conn, "recurring_run_id", recurring_run_id)
        for (spec_hash,) in rows:
            await forget_spec_if_unused_within(conn, spec_hash)
        await _also(conn, also)

    await db.write(job)


# -- the tick queue ---------------------------------------------------------------------------


async def enqueue_within(conn: aiosqlite.Connection, recurring_run_id: str, ticks: Iterable[QueuedTick]) -> int:
    """Queue ticks that have neither a run nor a queue entry; return how many were queued."""
    ticks = list(ticks)
    if not ticks:
        return 0
    before = conn.total_changes
    await conn.executemany(
        "INSERT OR IGNORE INTO tick_queue (recurring_run_id, scheduled_at, tick_index, kind)"
        " SELECT ?, ?, ?, ? WHERE NOT EXISTS"
        " (SELECT 1 FROM runs WHERE recurring_run_id = ? AND scheduled_at = ?)",
        [(recurring_run_id, t.scheduled_at, t.tick_index, t.kind, recurring_run_id, t.scheduled_at) for t in ticks],
    )
    return conn.total_changes - before


async def unqueued_within(conn: aiosqlite.Connection, recurring_run_id: str, ticks: Sequence[int]) -> list[int]:
    """Of `ticks` (ascending), those with neither a run nor a queue entry: what enqueue_within
    would queue."""
    if not ticks:
        return []
    span = (recurring_run_id, ticks[0], ticks[-1])
    rows = await conn.execute_fetchall(
        "SELECT scheduled_at FROM runs WHERE recurring_run_id = ? AND scheduled_at BETWEEN ? AND ?"
        " UNION SELECT scheduled_at FROM tick_queue WHERE recurring_run_id = ? AND scheduled_at BETWEEN ? AND ?",
        span + span,
    )
    present = {row[0] for row in rows}
    return [tick for tick in ticks if tick not in present]


async def dequeue_within(conn: aiosqlite.Connection, recurring_run_id: str, scheduled_at: Sequence[int]) -> None:
    if not scheduled_at:
        return
    await conn.executemany(
        "DELETE FROM tick_queue WHERE recurring_run_id = ? AND scheduled_at = ?",
        [(recurring_run_id, tick) for tick in scheduled_at],
    )


async def drop_queued_within(conn: aiosqlite.Connection, recurring_run_id: str, kind: str) -> list[int]:
    """Remove the queued ticks of one kind; return their times."""
    rows = await conn.execute_fetchall(
        "DELETE FROM tick_queue WHERE recurring_run_id = ? AND kind = ? RETURNING scheduled_at", (recurring_run_id, kind)
    )
    return sorted(row[0] for row in rows)


async def oldest_queued(db: Database, recurring_run_id: str, limit: int) -> list[QueuedTick]:
    rows = await db.fetch_all(
        "SELECT scheduled_at, tick_index, kind FROM tick_queue WHERE recurring_run_id = ? ORDER BY scheduled_at LIMIT ?",
        (recurring_run_id, limit),
    )
    return [QueuedTick(*row) for row in rows]


async def queued_count(db: Database, recurring_run_id: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM tick_queue WHERE recurring_run_id = ?", (recurring_run_id,))
    assert row is not None
    return int(row[0])


async def unfinished_run_ids(db: Database, recurring_run_id: str) -> list[str]:
    rows = await db.fetch_all(
        "SELECT run_id FROM runs WHERE recurring_run_id = ? AND state IN ('PENDING', 'RUNNING', 'CANCELING')"
        " ORDER BY created_at, run_id",
        (recurring_run_id,),
    )
    return [row[0] for row in rows]


async def run_ids(db: Database, recurring_run_id: str) -> list[str]:
    rows = await db.fetch_all("SELECT run_id FROM runs WHERE recurring_run_id = ?", (recurring_run_id,))
    return [row[0] for row in rows]


async def unfinished_runs_by_recurring_run(db: Database) -> dict[str, list[str]]:
    """Every recurring run's unfinished runs, oldest first: one query at start instead of one
    per actor."""
    rows = await db.fetch_all(
        "SELECT recurring_run_id, run_id FROM runs WHERE state IN ('PENDING', 'RUNNING', 'CANCELING')"
        " AND recurring_run_id != '' ORDER BY created_at, run_id"
    )
    found: dict[str, list[str]] = {}
    for recurring_run_id, run_id in rows:
        found.setdefault(recurring_run_id, []).append(run_id)
    return found


async def queued_counts(db: Database) -> dict[str, int]:
    rows = await db.fetch_all("SELECT recurring_run_id, COUNT(*) FROM tick_queue GROUP BY recurring_run_id")
    return {recurring_run_id: count for recurring_run_id, count in rows}


async def with_dependencies(db: Database) -> list[RecurringRun]:
    """The recurring runs that depend on others: upstream triggers or parameters_from."""
    rows = await db.fetch_all(
        f"SELECT {_TABLE.select} FROM recurring_runs"
        " WHERE json_array_length(trigger, '$.upstream_recurring_run_ids') > 0 OR parameters_from != '{}'"
    )
    return [_TABLE.from_row(row) for row in rows]


# The ids a recurring run references: its upstream triggers and its parameters_from.
_REFERENCES = (
    "SELECT r.recurring_run_id AS referrer, upstream.value AS referenced"
    " FROM recurring_runs AS r, json_each(r.trigger, '$.upstream_recurring_run_ids') AS upstream"
    " UNION SELECT r.recurring_run_id, json_extract(source.value, '$.recurring_run_id')"
    " FROM recurring_runs AS r, json_each(r.parameters_from) AS source"
)
_LISTED_DEPENDENTS = 10  # a refusal names this many


async def check_unreferenced_within(conn: aiosqlite.Connection, recurring_run_id: str) -> None:
    """FailedPrecondition naming the other recurring runs that reference this one (a
    reference to itself, an optional parameter from its own previous run, does not count)."""
    rows = await conn.execute_fetchall(
        f"SELECT r.recurring_run_id, r.display_name, COUNT(*) OVER () FROM ({_REFERENCES}) AS refs"
        " JOIN recurring_runs AS r ON r.recurring_run_id = refs.referrer"
        " WHERE refs.referenced = ? AND refs.referrer != ? ORDER BY r.display_name, r.recurring_run_id LIMIT ?",
        (recurring_run_id, recurring_run_id, _LISTED_DEPENDENTS),
    )
    if rows:
        rows = list(rows)
        named = ", ".join(f"{name!r} ({dependent_id})" for dependent_id, name, _ in rows)
        more = rows[0][2] - len(rows)
        raise FailedPrecondition(
            f"recurring run {recurring_run_id!r} is referenced by {named}{f' and {more} more' if more else ''}"
            " (upstream trigger or parameters_from): update or delete those first"
        )


async def _check_references_within(conn: aiosqlite.Connection, recurring_run: RecurringRun) -> None:
    """FailedPrecondition if a recurring run it references is gone: checked (again) where it
    is written, so that a concurrent delete cannot leave the reference dangling."""
    referenced = set(recurring_run.trigger.upstream_recurring_run_ids)
    referenced |= {ref["recurring_run_id"] for ref in recurring_run.parameters_from.values()}
    referenced.discard(recurring_run.recurring_run_id)
    if not referenced:
        return
    rows = await conn.execute_fetchall(
        "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT recurring_run_id FROM recurring_runs)", (json.dumps(sorted(referenced)),)
    )
    if missing := [row[0] for row in rows]:
        raise FailedPrecondition(f"recurring run {missing[0]!r}, which it references, was deleted meanwhile")


async def referenced_ids(db: Database) -> list[str]:
    """The recurring runs that some recurring run (itself included) references."""
    rows = await db.fetch_all(f"SELECT DISTINCT referenced FROM ({_REFERENCES}) WHERE referenced IS NOT NULL")
    return [row[0] for row in rows]
