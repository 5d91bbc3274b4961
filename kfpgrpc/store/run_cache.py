"""A read-through cache of finished runs with their tasks (what GetRun shows), in memory.

A finished run changes only when a request changes it (archive, unarchive, retry, delete, an
experiment archived with its runs), so a GetRun of one that was read before needs no hop to a
reader thread, no query and no decoding. Nothing stale is ever served: every change of a run's
row or of its tasks' rows, whatever code makes it, is seen where SQLite makes it. Temporary
triggers on the write connection (not part of the schema: only this process's writes fire
them) call back with the run's id from inside the statement; once the transaction ends
(committed or rolled back) the run's entry is dropped and reads that were in flight meanwhile
do not fill it. Between the statement and the end of its transaction the run is read from the
store, which shows what is committed.

Inserted runs fire nothing: a cached run exists, and one deleted fired on its delete. Past
MAX_CHANGING runs changed in one transaction, the whole cache counts as changed.

Bounded by entries and by an upper estimate of their memory, least recently used first out:
TEXT_EXPANSION times the text and blobs of their rows plus ROW_OVERHEAD per row. The estimate
must hold for the worst text, as a task's outputs come from an untrusted pipeline (up to
1 MiB of them): JSON such as `[{},{},...]` decodes to about 24 times its length. A typical
run is over-estimated (one task, 547 bytes of text: estimated 20.7 KB, 3.8 KB decoded), so the
byte bound is set for some 1,500 typical runs.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import aiosqlite

from kfpgrpc.domain import Run, TaskDetail
from kfpgrpc.store import runs as store
from kfpgrpc.store.database import Database

MAX_ENTRIES = 5_000
MAX_BYTES = 32 * 2**20  # estimated, see the module docstring
ROW_OVERHEAD = 1_600  # bytes
TEXT_EXPANSION = 32  # decoded bytes per byte of JSON text, at most (an empty object: 3 bytes -> 72)
# Past this many runs changed in one transaction (ArchiveExperiment of a large experiment),
# every run counts as changed: the ids are not all held.
MAX_CHANGING = 10_000
# (event, table, which row's run_id): every change of a cached entry's rows.
_TRIGGERS = (
    ("UPDATE", "runs", "OLD"),
    ("DELETE", "runs", "OLD"),
    ("INSERT", "tasks", "NEW"),
    ("UPDATE", "tasks", "OLD"),
    ("UPDATE", "tasks", "NEW"),
    ("DELETE", "tasks", "OLD"),
)


@dataclasses.dataclass(frozen=True)
class _Entry:
    run: Run
    tasks: list[TaskDetail]
    size: int


class FinishedRuns:
    """The cache of one Database (see the module docstring); it keeps nothing until `install`ed."""

    def __init__(
        self, db: Database, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, max_changing: int = MAX_CHANGING
    ) -> None:
        self._db = db
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_changing = max_changing
        self._installed = False
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        # Runs the open write transaction changed. Added to from whichever thread runs the
        # statement (the event loop's, or the write connection's for an offloaded one): one
        # set.add, atomic under the GIL; read and replaced on the loop between statements.
        self._changing: set[str] = set()
        self._all_changing = False  # more than max_changing: every run
        self._reads: dict[str, set[object]] = {}  # reads in flight per run: fill if still there

    async def install(self) -> None:
        """Make the write connection report changes of runs; from then on, runs are kept.
        Raises StoreFault when the store takes no writes."""

        function = f"kfpgrpc_run_changed_{id(self):x}"  # one per cache: a Database may have several

        async def job(conn: aiosqlite.Connection) -> None:
            await conn.create_function(function, 1, self._changed)
            for event, table, row in _TRIGGERS:
                await conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS {function}_{event.lower()}_{table}_{row.lower()}"
                    f" AFTER {event} ON main.{table} BEGIN SELECT {function}({row}.run_id); END"
                )

        if self not in self._db.commit_hooks:
            self._db.commit_hooks.append(self)
        await self._db.write(job)
        self._installed = True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The entries' estimated memory (see the module docstring)."""
        return self._bytes

    async def get(self, run_id: str) -> tuple[Run, list[TaskDetail]]:
        """The run and its tasks in creation order, as store.run_with_tasks; kept if finished.
        The task list is shared: do not change it. NotFound when there is no such run."""
        if not self._touched(run_id) and (entry := self._entries.get(run_id)) is not None:
            self._entries.move_to_end(run_id)
            return entry.run, entry.tasks
        read = object()
        self._reads.setdefault(run_id, set()).add(read)
        try:
            run, tasks, stored = await store.run_with_tasks(self._db, run_id)
        finally:
            reads = self._reads.get(run_id)
            fresh = reads is not None and read in reads  # no change of the run ended meanwhile
            if fresh:
                reads.discard(read)
                if not reads:
                    del self._reads[run_id]
        size = TEXT_EXPANSION * stored + ROW_OVERHEAD * (1 + len(tasks))
        if fresh and self._installed and run.finished and not self._touched(run_id) and size <= self._max_bytes:
            self._put(run_id, _Entry(run, tasks, size))
        return run, tasks

    def _put(self, run_id: str, entry: _Entry) -> None:
        self._drop(run_id)
        self._entries[run_id] = entry
        self._bytes += entry.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def _drop(self, run_id: str) -> None:
        entry = self._entries.pop(run_id, None)
        if entry is not None:
            self._bytes -= entry.size

    def _touched(self, run_id: str) -> bool:
        """Changed by the open write transaction."""
        return self._all_changing or run_id in self._changing

    def _changed(self, run_id: str) -> None:
        if self._all_changing:
            return
        self._changing.add(run_id)
        if len(self._changing) > self._max_changing:
            self._all_changing = True
            self._changing = set()

    def _ended(self) -> None:
        """The write transaction ended: its changed runs are read from the store again."""
        if self._all_changing:
            self._entries.clear()
            self._bytes = 0
            self._reads.clear()
            self._all_changing = False
            return
        changed, self._changing = self._changing, set()
        # A change of many runs drops few entries: compared as sets, not one by one.
        for run_id in changed.intersection(self._entries.keys() | self._reads.keys()):
            self._drop(run_id)
            self._reads.pop(run_id, None)

    # CommitHook (see Database.commit_hooks)

    async def before_commit(self, conn: aiosqlite.Connection) -> None:
        pass

    def committed(self) -> None:
        self._ended()

    def rolled_back(self) -> None:
        self._ended()
