"""The SQLite database: one writer task with group commit, and a pool of read connections.

Writes are coroutines `job(conn)` queued to the writer task, which runs every job waiting in
the queue inside one transaction and commits once: an acknowledged write is committed, at the
cost of one fsync per batch instead of one per write. If a job raises, the batch is rolled back
and its jobs are retried one transaction each, so one bad request never fails its neighbours.
Reads use their own connections: in WAL mode they never block the writer nor wait for it.

Two lanes: requests' writes go before background writes (ticks, task reports, log lines),
so a user's call waits for at most one batch even when schedules flood the writer.
Commit hooks see every transaction's end (the event log appends what a batch staged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from kfpgrpc.errors import Unavailable
from kfpgrpc.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteJob = Callable[[aiosqlite.Connection], Awaitable[T]]

MAX_BATCH = 256
BUSY_TIMEOUT_MS = 5000


@dataclass
class _Pending:
    job: WriteJob[Any]
    owner: object = None  # who may expedite it
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class CommitHook(Protocol):
    """Told of each write transaction's end; `before_commit` writes inside the transaction."""

    async def before_commit(self, conn: aiosqlite.Connection) -> None: ...

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...


async def _connect(path: Path, *, read_only: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA synchronous = NORMAL")
    if read_only:
        await conn.execute("PRAGMA query_only = ON")
    return conn


class Database:
    """Owns every connection to one SQLite file; use `await Database.open(path)`."""

    def __init__(self, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self._writer = writer
        self._readers = readers
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in readers:
            self._idle_readers.put_nowait(reader)
        self._requests: deque[_Pending] = deque()
        self._background: deque[_Pending] = deque()
        self._work = asyncio.Event()
        self._closing = False
        self.writing = False  # a batch's jobs are running
        self.commit_hooks: list[CommitHook] = []
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    @classmethod
    async def open(cls, path: Path, readers: int = 4) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path, read_only=False)
        try:
            await writer.execute("PRAGMA journal_mode = WAL")
            await _migrate(writer)
            reader_conns = [await _connect(path, read_only=True) for _ in range(readers)]
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader_conns)

    async def write(self, job: WriteJob[T], *, background: bool = False, owner: object = None) -> T:
        """Run job(conn) in a write transaction; return its result once committed. A
        `background` write waits behind every request's, unless its `owner` expedites it."""
        if self._closing:
            raise Unavailable("the server is shutting down")
        pending = _Pending(job, owner)
        (self._background if background else self._requests).append(pending)
        self._work.set()
        return await pending.future

    def expedite(self, owner: object) -> None:
        """Move `owner`'s queued background writes to the requests' lane: a request is waiting
        for them (e.g. to disable a recurring run whose actor is committing a tick)."""
        mine = [pending for pending in self._background if pending.owner is owner]
        for pending in mine:
            self._background.remove(pending)
        self._requests.extend(mine)

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle_readers.get()
        try:
            yield conn
        finally:
            self._idle_readers.put_nowait(conn)

    async def fetch_all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        async with self.reader() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Commit every queued write, then close all connections."""
        if self._closing:
            return
        self._closing = True
        self._work.set()
        await self._writer_task
        for conn in [self._writer, *self._readers]:
            await conn.close()

    async def _write_loop(self) -> None:
        while True:
            if not (self._requests or self._background):
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            batch: list[_Pending] = []
            for lane in (self._requests, self._background):
                while lane and len(batch) < MAX_BATCH:
                    batch.append(lane.popleft())
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            self.writing = True
            try:
                results = [await pending.job(self._writer) for pending in batch]
            finally:
                self.writing = False
            for hook in self.commit_hooks:
                await hook.before_commit(self._writer)
            await self._writer.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - delivered to the waiting caller(s)
            if self._writer.in_transaction:
                await self._writer.execute("ROLLBACK")
            for hook in self.commit_hooks:
                hook.rolled_back()
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for pending in batch:
                await self._commit([pending])
            return
        for hook in self.commit_hooks:
            hook.committed()
        for pending, result in zip(batch, results):
            if not pending.future.done():
                pending.future.set_result(result)


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    applied = row[0] if row else 0
    if applied > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {applied} is newer than this kfpgrpc ({len(MIGRATIONS)}); upgrade kfpgrpc"
        )
    if applied == len(MIGRATIONS):
        return
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for version, script in enumerate(MIGRATIONS[applied:], start=applied + 1):
            for statement in _statements(script):
                await conn.execute(statement)
            log.info("applied schema migration", extra={"fields": {"version": version}})
        await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction); a
    trigger's body holds semicolons, so pieces are joined until SQLite deems them complete."""
    statements, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
