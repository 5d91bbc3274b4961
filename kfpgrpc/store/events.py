"""The durable event log.

Events are staged by write jobs and appended by the writer just before the batch commits, in
one statement, so an event is committed exactly when the change it reports is. SQLite assigns
the sequences (AUTOINCREMENT: never reused, also after pruning); the single writer makes them
follow commit order. Listeners hear of each committed batch, in sequence order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import aiosqlite

from kfpgrpc.domain import Event, EventFilter, evolve
from kfpgrpc.store.database import Database, offloaded
from kfpgrpc.store.records import JSON

_COLUMNS = "sequence, time, type, run_id, recurring_run_id, experiment_id, details"
_ROWS_PER_INSERT = 500  # 6 values a row, well under SQLite's limit of bound variables
# Rows from which an insert runs on the writer's thread: a hop there costs ~100 us, a row
# (three indexes) 5-10 us of SQLite that the event loop then need not spend (a burst of
# thousands of ticks stages an event per run).
_OFFLOADED_FROM_ROWS = 50


class EventLog:
    """Registers itself as a commit hook of `db`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._staged: list[Event] = []
        self._sequenced: list[Event] = []
        self.listeners: list[Callable[[list[Event]], None]] = []
        db.commit_hooks.append(self)

    def stage(self, *events: Event) -> None:
        """Add events to the transaction of the write job that is running."""
        if not self._db.writing:
            raise RuntimeError("events are staged inside a write job")
        self._staged.extend(events)

    async def before_commit(self, conn: aiosqlite.Connection) -> None:
        staged, self._staged = self._staged, []
        for start in range(0, len(staged), _ROWS_PER_INSERT):
            chunk = staged[start : start + _ROWS_PER_INSERT]
            values: list[Any] = []
            for event in chunk:
                values += [event.time, event.type, event.run_id, event.recurring_run_id, event.experiment_id,
                           JSON.encode(event.details or {})]
            with offloaded(conn) if len(chunk) >= _OFFLOADED_FROM_ROWS else contextlib.nullcontext():
                rows = await conn.execute_fetchall(
                    "INSERT INTO events (time, type, run_id, recurring_run_id, experiment_id, details) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
                    + " RETURNING sequence",
                    values,
                )
            # Rows are inserted in VALUES order with increasing sequences; RETURNING's order is
            # not guaranteed, the sorted sequences are.
            sequences = sorted(row[0] for row in rows)
            self._sequenced += [evolve(e, sequence=s) for e, s in zip(chunk, sequences)]

    def committed(self) -> None:
        sequenced, self._sequenced = self._sequenced, []
        if sequenced:
            for listener in self.listeners:
                listener(sequenced)

    def rolled_back(self) -> None:
        self._staged, self._sequenced = [], []


def _matching(wanted: EventFilter) -> tuple[list[str], list[Any]]:
    """The WHERE terms (AND-ed) and their parameters that select the events `wanted` matches."""
    where: list[str] = []
    params: list[Any] = []
    for column in ("run_id", "recurring_run_id", "experiment_id"):
        if value := getattr(wanted, column):
            where.append(f"{column} = ?")
            params.append(value)
    if wanted.types:
        where.append(f"type IN ({', '.join('?' * len(wanted.types))})")
        params += sorted(wanted.types)
    return where, params


async def events_after(db: Database, after: int, wanted: EventFilter, limit: int) -> list[Event]:
    """Committed events with sequence > after that match, oldest first."""
    where, params = _matching(wanted)
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(['sequence > ?', *where])} ORDER BY sequence LIMIT ?",
        [after, *params, limit],
    )
    return [Event(**{**dict(row), "details": JSON.decode(row["details"])}) for row in rows]


async def before_newest(db: Database, wanted: EventFilter, count: int) -> int:
    """The sequence to read after so as to start with the newest `count` committed events that
    match (0 when fewer match): one less than the count-th newest match's sequence. Read
    newest first by the primary key (or a run's / recurring run's index), `count` rows at most
    when every event matches."""
    where, params = _matching(wanted)
    row = await db.fetch_one(
        f"SELECT sequence FROM events {'WHERE ' + ' AND '.join(where) if where else ''}"
        " ORDER BY sequence DESC LIMIT 1 OFFSET ?",
        [*params, count - 1],
    )
    return 0 if row is None else row[0] - 1


async def sequence_bounds(db: Database) -> tuple[int, int]:
    """(the highest sequence pruned, the highest sequence ever assigned); (0, 0) when empty."""
    row = await db.fetch_one(
        "SELECT (SELECT MIN(sequence) FROM events),"
        " (SELECT seq FROM sqlite_sequence WHERE name = 'events')"
    )
    assert row is not None
    newest = row[1] or 0
    oldest = row[0]
    return (newest if oldest is None else oldest - 1), newest


async def prune(db: Database, before: int) -> int:
    """Delete the events older than `before` (microseconds); return how many."""

    async def job(conn: aiosqlite.Connection) -> int:
        with offloaded(conn):
            cursor = await conn.execute("DELETE FROM events WHERE time < ?", (before,))
        return cursor.rowcount

    return await db.write(job, background=True)
