"""The SQLite database: one writer task with group commit, and a pool of read connections.

Writes are coroutines `job(conn)` queued to the writer task, which runs every job waiting in
the queue inside one transaction and commits once: an acknowledged write is committed, at the
cost of one fsync per batch instead of one per write. If a job raises, the batch is rolled back
and its jobs are retried one transaction each, so one bad request never fails its neighbours.
Reads use their own connections: in WAL mode they never block the writer nor wait for it.

A batch's statements run on the event loop's thread, not through aiosqlite's thread: a hop
there and back costs about 100 µs, ten times what inserting a row costs SQLite, and a request
writes a few rows. BEGIN, COMMIT and ROLLBACK (which wait for locks and I/O) still go to the
connection's thread, and so does a statement over rows without a bound (see `offloaded`).

Two lanes: requests' writes go before background writes (ticks, task reports, log lines),
so a user's call waits for at most one batch even when schedules flood the writer.
Commit hooks see every transaction's end (the event log appends what a batch staged).

Store faults (the file locked by another process past the busy timeout, a full disk, I/O
errors, the file deleted or replaced under the server) fail the whole batch at once with a
StoreFault, as every job of it would fail alike, and put the database in a *fault* state that
`fault_listeners` hear of (the server's health goes NOT_SERVING). While in it, a probe write
runs every PROBE_INTERVAL_SECONDS; the first commit that succeeds, probe or not, ends it.
*Patient* writes (what a run's execution reports) are not failed by a store fault: they wait,
parked, and run once it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from kfpgrpc.errors import StoreFault, StoreFull, StoreUnavailable, Unavailable
from kfpgrpc.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound=aiosqlite.Connection)
WriteJob = Callable[[aiosqlite.Connection], Awaitable[T]]

MAX_BATCH = 256
BUSY_TIMEOUT_MS = 5000
PROBE_INTERVAL_SECONDS = 2.0
# SQLite primary result codes that say the store, not the request, is at fault.
_LOCKED_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_BROKEN_CODES = {
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM,
}


@dataclass
class _Pending:
    job: WriteJob[Any]
    owner: object = None  # who may expedite it
    patient: bool = False  # waits out store faults
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: bool = False  # in a batch: an expedited write sits in both lanes, the first takes it


class CommitHook(Protocol):
    """Told of each write transaction's end; `before_commit` writes inside the transaction."""

    async def before_commit(self, conn: aiosqlite.Connection) -> None: ...

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...


class _Writer(aiosqlite.Connection):
    """The write connection. While `inline`, its statements run at once on the calling (event
    loop) thread: only the writer task uses it, and only between its hops to the connection's
    thread, so the two threads never use it at once. (It overrides aiosqlite's private
    `_execute`, through which every call goes: aiosqlite is pinned to 0.22.x.)"""

    inline = False

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.inline:
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)


@contextlib.contextmanager
def offloaded(conn: aiosqlite.Connection) -> Iterator[None]:
    """Inside a write job: run the statements of the block on the connection's thread, as a
    statement over rows without a bound (a run's log lines, the runs of an experiment, the
    event log) would stall the event loop while SQLite works through them."""
    assert isinstance(conn, _Writer), "offloaded() is for the connection a write job is given"
    inline, conn.inline = conn.inline, False
    try:
        yield
    finally:
        conn.inline = inline


def _writer(path: Path) -> _Writer:
    # What aiosqlite.connect builds (64: its iter_chunk_size default), usable from both threads.
    return _Writer(partial(sqlite3.connect, str(path), isolation_level=None, check_same_thread=False), 64)


async def _connect(conn: C, *, read_only: bool) -> C:
    """Start `conn`, an unstarted aiosqlite connection, and set it up."""
    try:
        await conn
    except BaseException:
        # aiosqlite stops its thread without waiting for it; the thread then reports to the
        # event loop, which must still be running (aiosqlite is pinned to 0.22.x).
        await asyncio.to_thread(conn._thread.join)
        raise
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")  # reads the header: fails on a non-database
        if read_only:
            await conn.execute("PRAGMA query_only = ON")
        else:
            # The writer's temporary files in memory: a statement that fires triggers (every
            # run INSERT and state UPDATE keeps run_counts) keeps a statement journal, which
            # in a file cost ~45 us per insert (bench/bench_run_inserts.py). Not the readers':
            # their large sorts (arming 100,000 recurring runs in trigger order) would then
            # stay in the process's memory.
            await conn.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        await conn.close()  # its thread would keep the process from exiting
        raise
    return conn


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def store_fault(error: BaseException) -> StoreFault | None:
    """The StoreFault that `error` (raised by a write) amounts to; None for the request's own
    errors (a constraint, a domain rule, a bug). Messages go to clients: no paths, no SQL."""
    if isinstance(error, StoreFault):
        return error
    code = getattr(error, "sqlite_errorcode", -1) & 0xFF if isinstance(error, sqlite3.Error) else -1
    if code == sqlite3.SQLITE_FULL:
        return StoreFull("the disk holding the database is full", "retry once the operator has freed space")
    if code in _LOCKED_CODES:
        return StoreUnavailable(f"the database is locked by another process (waited {BUSY_TIMEOUT_MS // 1000} s)")
    if code in _BROKEN_CODES:
        return StoreUnavailable(f"the database cannot be written ({error})")
    return None


class Database:
    """Owns every connection to one SQLite file; use `await Database.open(path)`.

    `fault` is why writes fail now (None while they succeed); `fault_listeners` are called
    with it on each change."""

    def __init__(self, path: Path, writer: _Writer, readers: list[aiosqlite.Connection]) -> None:
        self.path = path
        # The file this server opened: writes into another one (the path deleted or replaced
        # under a running server) are refused, never acknowledged.
        self._identity = _identity(path)
        self._writer = writer
        self._readers = readers
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in readers:
            self._idle_readers.put_nowait(reader)
        self._requests: deque[_Pending] = deque()
        self._background: deque[_Pending] = deque()
        self._background_of: dict[object, _Pending] = {}  # an owner's latest queued background write
        self._background_turn = False  # the next batch takes background jobs even if requests wait
        self._work = asyncio.Event()
        self._closing = False
        self.writing = False  # a batch's jobs are running
        self.commit_hooks: list[CommitHook] = []
        self.fault: StoreFault | None = None
        self.fault_listeners: list[Callable[[StoreFault | None], None]] = []
        self._parked: deque[_Pending] = deque()  # patient writes waiting for the fault to end
        self._probe: asyncio.Task[None] | None = None
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    @classmethod
    async def open(cls, path: Path, readers: int = 4) -> Database:
        """Open (creating it if missing) and migrate the database at `path`, whose directory
        exists, and check that it takes writes. Raises sqlite3.Error for a file that is not a
        database, corrupt, read-only or locked, and SchemaTooNew."""
        writer = await _connect(_writer(path), read_only=False)
        connections: list[aiosqlite.Connection] = [writer]
        try:
            applied = await _schema_version(connections[0])  # before changing anything in the file
            await connections[0].execute("PRAGMA journal_mode = WAL")
            await _migrate(connections[0], applied)
            # A read-only file opens and reads fine: only a write tells.
            await connections[0].execute("BEGIN IMMEDIATE")
            await _probe(connections[0])
            await connections[0].execute("COMMIT")
            for _ in range(readers):
                connections.append(await _connect(aiosqlite.connect(path, isolation_level=None), read_only=True))
        except BaseException:
            for conn in connections:
                await conn.close()
            raise
        return cls(path, writer, connections[1:])

    async def write(self, job: WriteJob[T], *, background: bool = False, owner: object = None, patient: bool = False) -> T:
        """Run job(conn) in a write transaction; return its result once committed. A
        `background` write waits behind every request's, unless its `owner` expedites it.
        Raises StoreFault when the store cannot take it, except for a `patient` (background)
        write: that one waits until the store takes writes again (Unavailable if the server
        stops first)."""
        if self._closing:
            raise Unavailable("the server is shutting down")
        pending = _Pending(job, owner, patient)
        if patient and self.fault is not None:
            self._parked.append(pending)  # tried once the fault has ended, not against it
        elif background or patient:
            self._background.append(pending)
            if owner is not None:
                self._background_of[owner] = pending
            self._work.set()
        else:
            self._requests.append(pending)
            self._work.set()
        # A caller cancelled before its job ran (a request given up, an actor stopped) leaves
        # its future cancelled: the job is dropped, never run (nor waited for at close), unless
        # it is patient (an execution's report: kept).
        return await pending.future

    def expedite(self, owner: object) -> None:
        """Move `owner`'s queued background write to the requests' lane: a request is waiting
        for it (e.g. to disable a recurring run whose actor is committing a tick). An owner
        awaits each write before the next, so it has at most one queued; found in O(1), not
        by scanning a lane that holds thousands under load."""
        pending = self._background_of.pop(owner, None)
        if pending is not None and not pending.taken:
            self._requests.append(pending)  # also still in the background lane: taken once
            self._work.set()

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle_readers.get()
        try:
            yield conn
        finally:
            self._idle_readers.put_nowait(conn)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read connection inside one read transaction: every query sees the same commit
        (a page and its total count agree even while writes land between them)."""
        async with self.reader() as conn:
            await conn.execute("BEGIN")
            try:
                yield conn
            finally:
                await conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) on a read connection's thread, inside one read transaction: several
        queries in one hop to that thread instead of one hop each (a hop costs about 100 µs and
        a thread wake-up that may wait for a core), seeing one commit. `fn` holds the GIL
        between its queries and a reader throughout: keep it to bounded work."""
        async with self.reader() as conn:
            # aiosqlite's private _execute runs fn on the connection's thread (pinned to 0.22.x,
            # as _Writer).
            return await conn._execute(_in_read_transaction, conn._conn, fn)

    async def fetch_all(self, sql: str, params: tuple[Any, ...] | list[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        async with self.reader() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: tuple[Any, ...] | list[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Commit every queued write, then close all connections."""
        if self._closing:
            return
        self._closing = True
        self._work.set()
        if self._probe is not None:
            self._probe.cancel()
        while self._parked:
            pending = self._parked.popleft()
            if not pending.future.done():
                pending.future.set_exception(Unavailable("the server is shutting down"))
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
            # While requests wait, a batch holds requests only, every other one: a request
            # then waits for at most one batch of background jobs (the one in flight or its
            # own), not for the up to MAX_BATCH behind it in every batch (under overload,
            # thousands of ticks and execution reports). The other batches take background
            # jobs too, so that a stream of requests never starves them.
            lanes = (self._requests,) if self._requests and not self._background_turn else (self._requests, self._background)
            self._background_turn = len(lanes) == 1
            for lane in lanes:
                while lane and len(batch) < MAX_BATCH:
                    pending = lane.popleft()
                    # Expedited and taken already, or cancelled (its caller gave up) unless patient:
                    # what a run's execution reports (log lines, states) is kept even if the
                    # task that sent it is cancelled, as a flush cut short by the end of output.
                    if pending.taken or (pending.future.done() and not pending.patient):
                        continue
                    pending.taken = True
                    if self._background_of.get(pending.owner) is pending:
                        del self._background_of[pending.owner]
                    batch.append(pending)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            self._writer.inline = True
            try:
                self.writing = True
                try:
                    results = [await pending.job(self._writer) for pending in batch]
                finally:
                    self.writing = False
                for hook in self.commit_hooks:
                    await hook.before_commit(self._writer)
            finally:
                self._writer.inline = False
            if _identity(self.path) != self._identity:
                raise StoreUnavailable(
                    "the database file was deleted or replaced while the server ran",
                    "it refuses writes until the file is back or the operator restarts it",
                )
            await self._writer.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - delivered to the waiting caller(s)
            if self._writer.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself
                    await self._writer.execute("ROLLBACK")
            for hook in self.commit_hooks:
                hook.rolled_back()
            fault = store_fault(exc)
            if fault is not None:  # every job of the batch would fail alike: none is retried
                self._set_fault(fault, exc)
                for pending in batch:
                    if pending.patient and not self._closing:
                        self._parked.append(pending)
                    elif not pending.future.done():
                        pending.future.set_exception(fault.fresh())
                return
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for pending in batch:
                await self._commit([pending])
            return
        for hook in self.commit_hooks:
            hook.committed()
        if self.fault is not None:
            self._set_fault(None)
        for pending, result in zip(batch, results):
            if not pending.future.done():
                pending.future.set_result(result)

    def _set_fault(self, fault: StoreFault | None, cause: BaseException | None = None) -> None:
        if (fault and fault.message) == (self.fault and self.fault.message):
            return
        if fault is not None:
            log.error("the database cannot take writes; health is NOT_SERVING until a probe write succeeds",
                      extra={"fields": {"path": str(self.path), "error": str(cause or fault)}})
        else:
            log.info("the database takes writes again", extra={"fields": {"path": str(self.path)}})
            # Parked writes go first, in their order; those whose caller gave up are dropped.
            waiting = [p for p in self._parked if not p.future.done()]
            for pending in waiting:
                pending.taken = False
            self._background.extendleft(reversed(waiting))
            self._parked.clear()
            self._work.set()
        self.fault = fault
        for listener in self.fault_listeners:
            listener(fault)
        if fault is not None and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop(), name="sqlite-probe")

    async def _probe_loop(self) -> None:
        """While writes fail, try a write of one page (the header's user_version, set to what
        it is) now and then: its commit ends the fault state."""
        while self.fault is not None and not self._closing:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            with contextlib.suppress(StoreFault, Unavailable):
                await self.write(_probe, background=True)


def _in_read_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


async def _probe(conn: aiosqlite.Connection) -> None:
    await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


class SchemaTooNew(RuntimeError):
    """The database was written by a newer kfpgrpc (more migrations than this one knows)."""


async def _schema_version(conn: aiosqlite.Connection) -> int:
    """How many migrations the database has; SchemaTooNew when it is newer than this kfpgrpc."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    applied = row[0] if row else 0
    if applied > len(MIGRATIONS):
        raise SchemaTooNew(
            f"database schema version {applied} is newer than this kfpgrpc ({len(MIGRATIONS)}); upgrade kfpgrpc"
        )
    return int(applied)


async def _migrate(conn: aiosqlite.Connection, applied: int) -> None:
    if applied == len(MIGRATIONS):
        return
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for script in MIGRATIONS[applied:]:
            for statement in _statements(script):
                await conn.execute(statement)
        await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        await conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
            await conn.execute("ROLLBACK")
        raise
    log.info("applied schema migrations", extra={"fields": {"from_version": applied, "to_version": len(MIGRATIONS)}})


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
