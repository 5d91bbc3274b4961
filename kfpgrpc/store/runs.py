"""Runs, their tasks, task logs and the pipeline spec snapshots runs execute, in SQLite."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import aiosqlite

from kfpgrpc.bounds import MAX_LOG_LINE_BYTES, cut_bytes
from kfpgrpc.domain import (
    ARCHIVED,
    AVAILABLE,
    SUCCEEDED,
    LogLine,
    Page,
    Run,
    StateChange,
    TaskDetail,
)
from kfpgrpc.errors import FailedPrecondition, NotFound
from kfpgrpc.store.database import Database, WriteJob, offloaded
from kfpgrpc.store.listing import Column, Counts, Kind, Listing, Query
from kfpgrpc.store.records import JSON, Codec, RecordTable
from kfpgrpc.v1 import common_pb2

RUNTIME_STATE_NAMES = tuple(common_pb2.RuntimeState.keys())
RUNS = Listing(
    table="runs",
    id_column="run_id",
    columns={
        "run_id": Column(Kind.TEXT, sortable=True),
        "display_name": Column(Kind.TEXT, sortable=True),
        "description": Column(Kind.TEXT),
        "created_at": Column(Kind.TIME, sortable=True),
        "scheduled_at": Column(Kind.TIME, sortable=True),
        "finished_at": Column(Kind.TIME, sortable=True),
        "state": Column(Kind.ENUM, enum_names=RUNTIME_STATE_NAMES),
        "storage_state": Column(Kind.ENUM, enum_names=("STORAGE_STATE_UNSPECIFIED", AVAILABLE, ARCHIVED)),
        "experiment_id": Column(Kind.TEXT),
        "recurring_run_id": Column(Kind.TEXT),
    },
    aliases={"id": "run_id", "name": "display_name"},
    counts=Counts("run_counts", frozenset({"experiment_id", "storage_state", "state"}), "runs"),  # schema 6
)


def _encode_history(history: list[StateChange]) -> str:
    return json.dumps([[change.state, change.time, change.error] for change in history], separators=(",", ":"))


def _decode_history(text: str) -> list[StateChange]:
    return [StateChange(state, time, error) for state, time, error in json.loads(text)]


HISTORY = Codec(_encode_history, _decode_history)
_RUNS = RecordTable(
    "runs",
    Run,
    "run",
    {"parameters": JSON, "state_history": HISTORY, "artifacts": JSON, "output_artifacts": JSON},
)
_TASKS = RecordTable(
    "tasks",
    TaskDetail,
    "task",
    {
        "input_parameters": JSON,
        "output_parameters": JSON,
        "output_artifacts": JSON,
        "state_history": HISTORY,
        "notes": JSON,
    },
)
_UNFINISHED = "('PENDING', 'RUNNING', 'CANCELING')"


# iterencode without _one_shot is the pure-Python encoder: same text as json.dumps, but it lets
# go of the GIL as it goes, where the C encoder would hold it (and stall the event loop) for
# the whole of a large spec.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_PIECES_PER_UPDATE = 4096


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 (hex) of the spec's canonical JSON (sorted keys, no spaces). Seconds for a spec of
    megabytes: call it in a worker thread."""
    digest = hashlib.sha256()
    pieces: list[str] = []
    for piece in _CANONICAL_JSON.iterencode(spec):
        pieces.append(piece)
        if len(pieces) == _PIECES_PER_UPDATE:
            digest.update("".join(pieces).encode())
            pieces.clear()
    digest.update("".join(pieces).encode())
    return digest.hexdigest()


async def insert_runs(
    db: Database,
    runs: list[tuple[Run, dict[str, Any]]],
    also: WriteJob[None] | None = None,
    *,
    background: bool = False,
    owner: object = None,
) -> None:
    """Store new runs with their spec snapshots and run `also` in the same transaction. Each
    run's experiment must exist and not be archived."""

    async def job(conn: aiosqlite.Connection) -> None:
        for run, spec in runs:
            await insert_run_within(conn, run, spec)
        if also is not None:
            await also(conn)

    await db.write(job, background=background, owner=owner)


async def insert_run_within(conn: aiosqlite.Connection, run: Run, spec: dict[str, Any]) -> None:
    # One query checks the experiment and whether the spec is stored (a recurring run's ticks
    # all share one): a spec is encoded only when it is new. The experiment's last run time is
    # kept by a trigger.
    rows = await conn.execute_fetchall(
        "SELECT (SELECT storage_state FROM experiments WHERE experiment_id = ?),"
        " EXISTS (SELECT 1 FROM pipeline_specs WHERE spec_hash = ?)",
        (run.experiment_id, run.spec_hash),
    )
    storage_state, spec_stored = next(iter(rows))
    if storage_state is None:
        raise NotFound("experiment", "experiment_id", run.experiment_id)
    if storage_state == ARCHIVED:
        raise FailedPrecondition(f"experiment {run.experiment_id!r} is archived; unarchive it to add runs")
    if not spec_stored:
        await remember_spec_within(conn, run.spec_hash, spec)
    with offloaded(conn):  # 14 indexes and a trigger: ~100 µs of SQLite, overlapping the loop there
        await _RUNS.insert_within(conn, run, f"run {run.run_id!r} already exists")


_TASK_ORDER = " ORDER BY create_time, task_id"  # a run's tasks as every read shows them


async def insert_many_runs_within(conn: aiosqlite.Connection, runs: Sequence[tuple[Run, dict[str, Any]]]) -> None:
    """insert_run_within for many runs in a few statement executions (the runs of one tick of
    thousands of recurring runs): their experiments checked at once, their specs stored if
    new, the rows inserted by one executemany. Raises as insert_run_within for the first run
    whose experiment is missing or archived, and sqlite3.IntegrityError for a clash."""
    experiments = sorted({run.experiment_id for run, _ in runs})
    rows = await conn.execute_fetchall(
        f"SELECT experiment_id, storage_state FROM experiments WHERE experiment_id IN ({', '.join('?' * len(experiments))})", experiments
    )
    states = {experiment_id: state for experiment_id, state in rows}
    for experiment_id in experiments:
        if experiment_id not in states:
            raise NotFound("experiment", "experiment_id", experiment_id)
        if states[experiment_id] == ARCHIVED:
            raise FailedPrecondition(f"experiment {experiment_id!r} is archived; unarchive it to add runs")
    specs = {run.spec_hash: spec for run, spec in runs}
    rows = await conn.execute_fetchall(
        f"SELECT spec_hash FROM pipeline_specs WHERE spec_hash IN ({', '.join('?' * len(specs))})", list(specs)
    )
    for hash_ in specs.keys() - {row[0] for row in rows}:
        await remember_spec_within(conn, hash_, specs[hash_])
    with offloaded(conn):  # indexes and a trigger per row: on the connection's thread, not the loop
        await _RUNS.insert_many_within(conn, [run for run, _ in runs])


async def get_run(db: Database, run_id: str) -> Run:
    return await _RUNS.get(db, "run_id", run_id)


async def run_with_tasks(db: Database, run_id: str) -> tuple[Run, list[TaskDetail], int]:
    """The run, its tasks in creation order (as tasks_of) and the bytes of text and blobs
    their rows hold (what a cache of them is bounded by), read in one hop and one snapshot.
    NotFound when there is no such run."""

    def read(conn: sqlite3.Connection) -> tuple[sqlite3.Row | None, list[sqlite3.Row]]:
        row = conn.execute(f"SELECT {_RUNS.select} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None, []
        return row, conn.execute(f"SELECT {_TASKS.select} FROM tasks WHERE run_id = ?{_TASK_ORDER}", (run_id,)).fetchall()

    row, task_rows = await db.read(read)
    if row is None:
        raise NotFound("run", "run_id", run_id)
    size = sum(len(value) for r in (row, *task_rows) for value in r if isinstance(value, (str, bytes)))
    return _RUNS.from_row(row), [_TASKS.from_row(r) for r in task_rows], size


async def get_spec(db: Database, hash_: str) -> dict[str, Any]:
    row = await db.fetch_one("SELECT pipeline_spec FROM pipeline_specs WHERE spec_hash = ?", (hash_,))
    if row is None:
        raise NotFound("pipeline spec", "spec_hash", hash_)
    return JSON.decode(row[0])


async def list_runs(db: Database, query: Query) -> Page[Run]:
    return await _RUNS.list_page(db, query)


async def unfinished_runs(db: Database, batch: int = 16) -> AsyncIterator[Run]:
    """The unfinished runs, oldest first, read a few at a time: a run may hold large parameter
    values, which its caller shares among runs (core/specs.py), so decoding every run at once
    would be the peak of memory."""
    rows = await db.fetch_all(f"SELECT run_id FROM runs WHERE state IN {_UNFINISHED} ORDER BY created_at, run_id")
    run_ids = [row[0] for row in rows]
    for start in range(0, len(run_ids), batch):
        chunk = run_ids[start : start + batch]
        rows = await db.fetch_all(f"SELECT {_RUNS.select} FROM runs WHERE run_id IN ({', '.join('?' * len(chunk))})", chunk)
        found = {run.run_id: run for run in map(_RUNS.from_row, rows)}
        for run_id in chunk:
            yield found[run_id]


async def tasks_of(db: Database, run_ids: Iterable[str]) -> dict[str, list[TaskDetail]]:
    """The tasks of each run, by run id, ordered by creation time."""
    ids = list(run_ids)
    found: dict[str, list[TaskDetail]] = {run_id: [] for run_id in ids}
    if not ids:
        return found
    rows = await db.fetch_all(
        f"SELECT {_TASKS.select} FROM tasks WHERE run_id IN ({', '.join('?' * len(ids))}){_TASK_ORDER}",
        ids,
    )
    for row in rows:
        task = _TASKS.from_row(row)
        found[task.run_id].append(task)
    return found


async def save_run(
    db: Database,
    run: Run,
    changes: Iterable[str],
    tasks: Iterable[TaskDetail] = (),
    also: WriteJob[None] | None = None,
    *,
    background: bool = False,
    patient: bool = False,
) -> None:
    """Write the fields `changes` of `run` and the `tasks` (whole), and run `also`, in one
    transaction. `background`, `patient`: see Database.write."""

    async def job(conn: aiosqlite.Connection) -> None:
        await _RUNS.update_within(conn, "run_id", run.run_id, {name: getattr(run, name) for name in changes})
        for task in tasks:
            await save_task_within(conn, task)
        if also is not None:
            await also(conn)

    await db.write(job, background=background, patient=patient)


async def save_task_within(conn: aiosqlite.Connection, task: TaskDetail) -> None:
    values = [_TASKS.encode(name, getattr(task, name)) for name in _TASKS.fields]
    await conn.execute(
        f"INSERT OR REPLACE INTO tasks ({_TASKS.select}) VALUES ({', '.join('?' * len(values))})", values
    )


async def set_storage_state(db: Database, run_id: str, storage_state: str) -> None:
    await _RUNS.update(db, "run_id", run_id, {"storage_state": storage_state})


async def delete_run(db: Database, run_id: str, also: WriteJob[None] | None = None) -> None:
    """Delete a run, its tasks, its log lines and its spec snapshot if no other run uses it;
    run `also` in the same transaction."""

    async def job(conn: aiosqlite.Connection) -> None:
        rows = await conn.execute_fetchall("SELECT spec_hash FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise NotFound("run", "run_id", run_id)
        (hash_,) = next(iter(rows))
        with offloaded(conn):  # a run may have millions of log lines and thousands of tasks
            await conn.execute("DELETE FROM log_lines WHERE run_id = ?", (run_id,))
            await conn.execute("DELETE FROM execution_cache WHERE run_id = ?", (run_id,))
            await conn.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
        await conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        await forget_spec_if_unused_within(conn, hash_)
        if also is not None:
            await also(conn)

    await db.write(job)


async def append_log_lines(db: Database, lines: list[tuple[str, str, int, int, str]]) -> None:
    """Append (run_id, task_id, line_number, time, text) rows; their sequence is assigned here.
    Waits out store faults (a patient write): a task's output is kept, not dropped."""

    async def job(conn: aiosqlite.Connection) -> None:
        await conn.executemany(
            "INSERT INTO log_lines (run_id, task_id, line_number, time, text) VALUES (?, ?, ?, ?, ?)", lines
        )

    await db.write(job, background=True, patient=True)


@dataclasses.dataclass(frozen=True)
class LogRange:
    """Which lines of a run's log a stream reads, besides its tasks: per task, those from
    `first_lines[task_id]` (`first_line` for a task not in it, e.g. one that has printed nothing
    yet) and before `before_line` (0 = no bound); all of them have a sequence after
    `after_sequence` and, when `until_sequence` is set, up to it. The sequence bounds only let
    the read skip the rest of the run's lines by the index (run_id, sequence)."""

    after_sequence: int = 0
    first_line: int = 1
    first_lines: dict[str, int] = dataclasses.field(default_factory=dict)
    before_line: int = 0
    until_sequence: int | None = None


_NO_LINE = 2**63 - 1


async def log_range(
    db: Database, run_id: str, task_ids: list[str] | None, after_line: int, tail: int, before_line: int
) -> LogRange:
    """The range of a stream of lines after line `after_line` of each task, or (`tail` > 0) of
    each task's last `tail` lines before `before_line` (0 = its last line), for the tasks
    `task_ids` (None = every task with lines). Read by the index (run_id, task_id,
    line_number): a few rows per task, and the run's tasks by jumping from one task_id to the
    next (no scan of the log)."""
    before = before_line or _NO_LINE
    params: dict[str, Any] = {"run": run_id, "after": after_line, "before": before, "skip": max(tail - 1, 0)}
    if task_ids is None:
        tasks = (
            "tasks(task_id) AS (SELECT MIN(task_id) FROM log_lines WHERE run_id = :run"
            " UNION ALL SELECT (SELECT MIN(task_id) FROM log_lines WHERE run_id = :run AND task_id > tasks.task_id)"
            " FROM tasks WHERE tasks.task_id IS NOT NULL)"
        )
    else:
        tasks, params["tasks"] = "tasks(task_id) AS (SELECT value FROM json_each(:tasks))", json.dumps(task_ids)
    of_task = "FROM log_lines WHERE run_id = :run AND task_id = tasks.task_id"
    first = (
        # the tail-th line before `before` counting back, or the first line when there are fewer
        f"coalesce((SELECT line_number {of_task} AND line_number < :before ORDER BY line_number DESC LIMIT 1 OFFSET :skip),"
        f" (SELECT MIN(line_number) {of_task}))"
        if tail else ":after + 1"
    )
    of_first = "FROM log_lines WHERE run_id = :run AND task_id = firsts.task_id"
    # Read first: a line stored after it has a higher sequence, one stored before is seen below.
    newest = await db.fetch_one("SELECT MAX(sequence) FROM log_lines WHERE run_id = ?", (run_id,))
    rows = await db.fetch_all(
        f"WITH RECURSIVE {tasks}, firsts(task_id, first) AS (SELECT task_id, {first} FROM tasks WHERE task_id IS NOT NULL)"
        f" SELECT task_id, first,"
        f" (SELECT sequence {of_first} AND line_number >= first AND line_number < :before ORDER BY line_number LIMIT 1),"
        f" (SELECT sequence {of_first} AND line_number < :before ORDER BY line_number DESC LIMIT 1)"
        f" FROM firsts",
        params,
    )
    # Before the first line in range, or (none stored yet) after every line stored.
    starts = [row[2] - 1 for row in rows if row[2] is not None]
    return LogRange(
        after_sequence=min([*starts, (newest[0] if newest else None) or 0]),
        first_line=1 if tail else after_line + 1,
        first_lines={row[0]: row[1] for row in rows if row[1] is not None} if tail else {},
        before_line=before_line,
        until_sequence=max((row[3] for row in rows if row[3] is not None), default=0) if before_line else None,
    )


async def log_lines_after(
    db: Database, run_id: str, after_sequence: int, task_ids: list[str] | None, limit: int,
    range_: LogRange = LogRange(),
) -> list[LogLine]:
    """Up to `limit` lines of a run after `after_sequence` within `range_`, in capture order;
    `task_ids` None = all. Lines stored before lines were bounded are cut to MAX_LOG_LINE_BYTES
    as they are read."""
    sql = ""
    params: list[Any] = []
    if range_.first_lines:
        sql += "WITH firsts(task_id, first) AS MATERIALIZED (SELECT key, value FROM json_each(?)) "
        params.append(json.dumps(range_.first_lines))
    sql += (
        "SELECT sequence, task_id, line_number, time, substr(text, 1, ?), length(CAST(text AS BLOB))"
        f" FROM log_lines{' LEFT JOIN firsts USING (task_id)' if range_.first_lines else ''}"
        " WHERE run_id = ? AND sequence > ?"
    )
    params += [MAX_LOG_LINE_BYTES, run_id, max(after_sequence, range_.after_sequence)]
    if range_.first_lines:
        sql += " AND line_number >= coalesce(firsts.first, ?)"
        params.append(range_.first_line)
    elif range_.first_line > 1:
        sql += " AND line_number >= ?"
        params.append(range_.first_line)
    if range_.before_line:
        sql += " AND line_number < ?"
        params.append(range_.before_line)
    if range_.until_sequence is not None:
        sql += " AND sequence <= ?"
        params.append(range_.until_sequence)
    if task_ids is not None:
        sql += f" AND task_id IN ({', '.join('?' * len(task_ids))})"
        params.extend(task_ids)
    rows = await db.fetch_all(sql + " ORDER BY sequence LIMIT ?", [*params, limit])
    return [
        LogLine(*row[:4], text if size <= MAX_LOG_LINE_BYTES else cut_bytes(text.encode(), MAX_LOG_LINE_BYTES, size))
        for *row, text, size in rows
    ]


async def last_line_numbers(db: Database, run_id: str) -> dict[str, int]:
    """The number of the last log line of each task of a run (to continue after a restart)."""
    rows = await db.fetch_all(
        "SELECT task_id, MAX(line_number) FROM log_lines WHERE run_id = ? GROUP BY task_id", (run_id,)
    )
    return {task_id: number for task_id, number in rows}


async def remember_spec_within(conn: aiosqlite.Connection, hash_: str, spec: dict[str, Any]) -> None:
    """Store a spec snapshot unless one with this hash is already stored."""
    with offloaded(conn):  # megabytes, maybe
        await conn.execute("INSERT OR IGNORE INTO pipeline_specs (spec_hash, pipeline_spec) VALUES (?, ?)", (hash_, JSON.encode(spec)))


async def forget_spec_if_unused_within(conn: aiosqlite.Connection, hash_: str) -> None:
    """Delete a spec snapshot that no run and no recurring run uses any more."""
    await conn.execute(
        "DELETE FROM pipeline_specs WHERE spec_hash = ? AND NOT EXISTS (SELECT 1 FROM runs WHERE spec_hash = ?)"
        " AND NOT EXISTS (SELECT 1 FROM recurring_runs WHERE spec_hash = ?)",
        (hash_, hash_, hash_),
    )


async def finished_before(db: Database, before: int, limit: int, keep: Sequence[str] = ()) -> list[str]:
    """Ids of runs that finished before `before`, oldest first, except those in `keep`."""
    rows = await db.fetch_all(
        "SELECT run_id FROM runs WHERE finished_at > 0 AND finished_at < ?"
        " AND run_id NOT IN (SELECT value FROM json_each(?)) ORDER BY finished_at LIMIT ?",
        (before, json.dumps(list(keep)), limit),
    )
    return [row[0] for row in rows]


async def latest_succeeded_ids(db: Database, recurring_run_ids: Sequence[str]) -> list[str]:
    """For each recurring run, its SUCCEEDED run of the latest tick (what latest_succeeded
    returns), if it has one."""
    rows = await db.fetch_all(
        "SELECT (SELECT run_id FROM runs WHERE recurring_run_id = ids.value AND state = ?"
        " ORDER BY scheduled_at DESC LIMIT 1) AS latest FROM json_each(?) AS ids WHERE latest IS NOT NULL",
        (SUCCEEDED, json.dumps(list(recurring_run_ids))),
    )
    return [row[0] for row in rows]


async def latest_succeeded(db: Database, recurring_run_id: str) -> Run | None:
    """The recurring run's SUCCEEDED run of the latest tick."""
    row = await db.fetch_one(
        f"SELECT {_RUNS.select} FROM runs WHERE recurring_run_id = ? AND state = ?"
        " ORDER BY scheduled_at DESC LIMIT 1",
        (recurring_run_id, SUCCEEDED),
    )
    return _RUNS.from_row(row) if row else None


async def names_within(conn: aiosqlite.Connection, run: Run) -> tuple[str, str]:
    """Inside a write job (no hop to a reader, see Database): (its recurring run's display
    name, its pipeline's name), "" where there is none; an inline spec's pipeline is named by
    its pipelineInfo."""
    rows = await conn.execute_fetchall(
        "SELECT (SELECT display_name FROM recurring_runs WHERE recurring_run_id = ?),"
        " COALESCE((SELECT name FROM pipelines WHERE pipeline_id = ?),"
        " (SELECT COALESCE(json_extract(pipeline_spec, '$.pipelineInfo.name'),"
        " json_extract(pipeline_spec, '$.pipeline_spec.pipelineInfo.name')) FROM pipeline_specs WHERE spec_hash = ?))",
        (run.recurring_run_id, run.pipeline_id, run.spec_hash),
    )
    (row,) = rows
    return row[0] or "", row[1] or ""


async def cached_execution(db: Database, pipeline_name: str, cache_key: str) -> TaskDetail | None:
    """The task of the newest execution cached under (`pipeline_name`, `cache_key`) that is still
    SUCCEEDED, or None."""
    row = await db.fetch_one(
        f"SELECT {', '.join('t.' + name for name in _TASKS.fields)} FROM execution_cache c"
        " JOIN tasks t ON t.run_id = c.run_id AND t.task_id = c.task_id"
        " WHERE c.pipeline_name = ? AND c.cache_key = ? AND t.state = 'SUCCEEDED'"
        " ORDER BY c.created_at DESC LIMIT 1",
        (pipeline_name, cache_key),
    )
    return _TASKS.from_row(row) if row is not None else None


async def record_cached_execution(db: Database, pipeline_name: str, cache_key: str, created_at: int, run_id: str, task_id: str) -> None:
    """Remember a SUCCEEDED execution for the cache (a background write)."""

    async def job(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT OR IGNORE INTO execution_cache (pipeline_name, cache_key, created_at, run_id, task_id) VALUES (?, ?, ?, ?, ?)",
            (pipeline_name, cache_key, created_at, run_id, task_id),
        )

    await db.write(job, background=True)

