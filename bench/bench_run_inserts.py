"""What inserting runs costs SQLite, and where: ids, temporary files, triggers, indexes.

    python bench/bench_run_inserts.py [--runs 10000] [--existing 100000] [--rounds 3]

A burst of ticks inserts thousands of runs in one transaction, and every CreateRun one; the
`runs` table as the migrations make it has 13 indexes (the sort orders of ListRuns, the
exactly-once index of ticks) and two triggers per insert (run_counts for ListRuns' total_size,
and the experiment's last run time). Each variant inserts --runs runs (one synthetic finished
run, encoded by the store's own codecs, new ids and names) with one executemany in one
transaction, into its own copy of a store that already holds --existing runs made the same way,
and prints the CPU time of the inserting thread per run (SQLite's work: the statement is
prepared once) and the wall time, each round:

- ids: uuid4 (random, as before issue 16) or the server's new_id() (UUID v7, time-ordered);
  the existing rows have the same kind;
- temp_store: SQLite's default (a file) or MEMORY (the server's setting since issue 16); a
  statement that fires triggers keeps a statement journal there;
- without the triggers, or without the secondary indexes: what they cost.

No server runs: this measures the store alone, with the pragmas the server sets.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kfpgrpc.core.validation import new_id
from kfpgrpc.domain import Run, StateChange
from kfpgrpc.store.database import Database
from kfpgrpc.store.runs import _RUNS

EXPERIMENT = "bench-experiment"


def run_row(run_id: str, index: int) -> list[object]:
    """A finished run of one pipeline as the store encodes it (about 380 bytes)."""
    run = Run(
        run_id=run_id, experiment_id=EXPERIMENT, display_name=f"nightly-{index:08d}", description="", storage_state="AVAILABLE",
        pipeline_id="p" * 36, pipeline_version_id="v" * 36, spec_hash="h" * 64, parameters={"rows": 1000, "table": "events"},
        pipeline_root="", service_account="", created_at=1_780_000_000_000_000 + index, scheduled_at=1_780_000_000_000_000 + index,
        finished_at=1_780_000_001_000_000 + index, state="SUCCEEDED", error="", recurring_run_id="",
        state_history=[StateChange("PENDING", 1), StateChange("RUNNING", 2), StateChange("SUCCEEDED", 3)],
        artifacts=[], output_artifacts=[], revision=3,
    )
    return [_RUNS.encode(name, getattr(run, name)) for name in _RUNS.fields]


INSERT = f"INSERT INTO runs ({_RUNS.select}) VALUES ({', '.join('?' * len(_RUNS.fields))})"


def connect(path: Path, temp_store: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA temp_store = {temp_store}")
    return conn


async def base_store(directory: Path, ids: Callable[[], str], existing: int) -> Path:
    """A store migrated by the server's own code, holding `existing` runs."""
    path = directory / "kfpgrpc.db"
    db = await Database.open(path)
    await db.close()
    conn = connect(path, "MEMORY")
    conn.execute("INSERT INTO experiments (experiment_id, display_name, description, created_at, storage_state) VALUES (?, 'bench', '', 0, 'AVAILABLE')", (EXPERIMENT,))
    conn.execute("BEGIN")
    conn.executemany(INSERT, (run_row(ids(), index) for index in range(existing)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def insert(base: Path, ids: Callable[[], str], runs: int, existing: int, temp_store: str, drop: str) -> tuple[float, float]:
    """(thread CPU, wall) in µs per run, on a copy of `base`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "copy.db"
        shutil.copy(base, path)
        conn = connect(path, temp_store)
        kind = {"triggers": "trigger", "indexes": "index"}.get(drop)
        if kind:
            for (name,) in conn.execute(f"SELECT name FROM sqlite_master WHERE type = '{kind}' AND tbl_name = 'runs' AND sql IS NOT NULL").fetchall():
                conn.execute(f"DROP {kind.upper()} {name}")
        rows = [run_row(ids(), existing + index) for index in range(runs)]
        wall, cpu = time.perf_counter(), time.thread_time()
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        conn.close()
    return 1e6 * cpu / runs, 1e6 * wall / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs inserted in one transaction")
    parser.add_argument("--existing", type=int, default=100_000, help="runs already in the store")
    parser.add_argument("--rounds", type=int, default=3, help="times each variant runs, interleaved")
    args = parser.parse_args()
    kinds: dict[str, Callable[[], str]] = {"uuid4": lambda: str(uuid.uuid4()), "v7": new_id}
    variants = [  # (label, ids, temp_store, dropped)
        ("uuid4 ids, temp_store default (before issue 16)", "uuid4", "DEFAULT", ""),
        ("uuid4 ids, temp_store MEMORY", "uuid4", "MEMORY", ""),
        ("v7 ids, temp_store default", "v7", "DEFAULT", ""),
        ("v7 ids, temp_store MEMORY (the server now)", "v7", "MEMORY", ""),
        ("v7 ids, MEMORY, without the triggers", "v7", "MEMORY", "triggers"),
        ("v7 ids, MEMORY, without the secondary indexes", "v7", "MEMORY", "indexes"),
    ]
    with tempfile.TemporaryDirectory() as directory:
        bases = {}
        for kind, ids in kinds.items():
            (Path(directory) / kind).mkdir()
            bases[kind] = asyncio.run(base_store(Path(directory) / kind, ids, args.existing))
        print(f"{args.runs:,} runs inserted in one transaction into a store of {args.existing:,}; CPU of the inserting thread / wall, µs per run")
        results: dict[str, list[tuple[float, float]]] = {label: [] for label, *_ in variants}
        for _ in range(args.rounds):
            for label, kind, temp_store, drop in variants:
                results[label].append(insert(bases[kind], kinds[kind], args.runs, args.existing, temp_store, drop))
        for label, figures in results.items():
            print(f"{label:50} " + "   ".join(f"{cpu:6.1f} / {wall:6.1f}" for cpu, wall in figures))


if __name__ == "__main__":
    main()
