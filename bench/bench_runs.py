"""Runs benchmark: CreateRun throughput and end-to-end rate, GetRun latency, and ListRuns/GetRun at store scale.

    python bench/bench_runs.py [--rows 1000000] [--anchor REV] [--rounds 2] [--only creates,store]

Both parts run this tree's server and the anchor commit's (--anchor, default ANCHOR: main before
issue 16's store and write changes) in the same run, each side --rounds times, interleaved: the
machine is shared, so only figures of one run compare.

1. creates: CreateRun with 1 and 50 concurrent clients (one channel) of an "instant" pipeline:
   one container task running `true`, compiled by the kfp SDK, cached (the SDK's default: every
   run after the first reuses the first one's task) and uncached (each run starts a task
   process). Acknowledged = committed; the runs execute in the background on the same two
   cores while creation goes on, so the figure includes that load. Also printed: the end-to-end
   rate, until every created run had finished; then GetRun of finished runs (with their task
   details) with 1 and 50 clients.
2. store: --rows runs in one store, each side on its own copy of one filled file. The store is
   filled from one real run: the anchor's server creates and executes it (CreateRun), then
   `fill_copies` copies its rows (run, tasks, log lines) in SQL with new ids and times while no
   server runs. Measured over gRPC, page_size 20, `sort_by=created_at desc` (the UI's order):
   ListRuns first pages and deep pages (from the middle of the list on, following
   next_page_token), unfiltered and with the UI's filters; GetRun of random runs, each read
   once, then again (finished runs read before are kept in memory); the file's bytes per run,
   per table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (  # noqa: E402
    Latencies,
    Server,
    checkout,
    closed_loop,
    commit_of,
    cpu_seconds,
)
from kfpgrpc.store.listing import ListRequest, build_query  # noqa: E402
from kfpgrpc.store.runs import RUNS  # noqa: E402
from kfpgrpc.v1 import (  # noqa: E402
    common_pb2,
    experiment_pb2,
    experiment_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    run_pb2_grpc,
)
from kfpgrpc.v1 import run_pb2 as pb  # noqa: E402


@dsl.container_component
def instant():
    return dsl.ContainerSpec(image="busybox", command=["true"])


@dsl.pipeline(name="instant")
def instant_pipeline():
    instant()


@dsl.pipeline(name="instant-uncached")
def instant_uncached_pipeline():
    instant().set_caching_options(False)


def compiled_instant(directory: Path, caching: bool = True) -> dict:
    """The instant pipeline, compiled. With `caching` (the SDK's default) every run after the
    first reuses the first run's task (no task process); without it each run starts one."""
    path = directory / f"instant-{caching}.yaml"
    compiler.Compiler().compile(instant_pipeline if caching else instant_uncached_pipeline, package_path=str(path))
    return yaml.safe_load(path.read_text())


async def upload(channel: grpc.aio.Channel, spec: dict, name: str = "instant") -> pipeline_pb2.PipelineVersion:
    stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
    pipeline = await stub.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name=name)))
    body = struct_pb2.Struct()
    body.update(spec)
    return await stub.CreatePipelineVersion(
        pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=body)
        )
    )


UNFINISHED = json.dumps({"predicates": [{"key": "state", "operation": "IN", "string_values": {"values": ["PENDING", "RUNNING", "CANCELING"]}}]})


async def creates_and_gets(address: str, specs: dict[str, dict]) -> dict[str, str]:
    """CreateRun of each of `specs` ({name: compiled spec}) at each concurrency of CREATES, with
    the end-to-end rate (until every run has finished), then GetRun: {figure: text}."""
    figures = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        ids: list[str] = []
        for name, spec in specs.items():
            version = await upload(channel, spec, name)
            reference = common_pb2.PipelineVersionReference(
                pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id
            )

            async def create(index: int) -> None:
                run = pb.Run(display_name=f"c{index}", pipeline_version_reference=reference)
                ids.append((await stub.CreateRun(pb.CreateRunRequest(run=run))).run_id)

            for concurrency, total in CREATES.items():
                started = time.perf_counter()
                rate, latencies = await closed_loop(create, total, concurrency)
                figures[f"CreateRun, {name}, {concurrency} clients"] = f"{rate:6.0f} runs/s   {latencies.summary()}"
                while (await stub.ListRuns(pb.ListRunsRequest(page_size=1, filter=UNFINISHED))).total_size:
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
                figures[f"  all finished, {name}, {concurrency} clients"] = (
                    f"{total / elapsed:6.0f} runs/s   end to end: {total:,} runs in {elapsed:.2f} s from the first create"
                )

        async def get(index: int) -> None:
            await stub.GetRun(pb.GetRunRequest(run_id=ids[index % len(ids)]))

        for concurrency, total in GETS.items():
            rate, latencies = await closed_loop(get, total, concurrency)
            figures[f"GetRun, {concurrency} clients"] = f"{rate:6.0f} reads/s  {latencies.summary()}"
    return figures


CREATES = {1: 500, 50: 2000}
GETS = {1: 4000, 50: 4000}


def bulk_load(database: Path, rows: int, experiment_ids: list[str]) -> None:
    """`rows` SUCCEEDED runs of one inline spec, spread over the experiments, two tasks each."""
    base = time.time_ns() // 1000
    history = json.dumps([["PENDING", base, ""], ["RUNNING", base, ""], ["SUCCEEDED", base, ""]])
    task_history = json.dumps([["RUNNING", base, ""], ["SUCCEEDED", base, ""]])
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT OR IGNORE INTO pipeline_specs VALUES ('bulk', '{}')")
        run_ids = [str(uuid.uuid4()) for _ in range(rows)]
        conn.executemany(
            "INSERT INTO runs (run_id, experiment_id, display_name, description, storage_state, pipeline_id,"
            " pipeline_version_id, spec_hash, parameters, pipeline_root, service_account, created_at, scheduled_at,"
            " finished_at, state, error, recurring_run_id, state_history, artifacts, output_artifacts, revision)"
            " VALUES (?, ?, ?, '', 'AVAILABLE', '', '', 'bulk', '{}', '', '', ?, ?, ?, 'SUCCEEDED', '', '', ?, '[]', '[]', 3)",
            (
                (run_id, experiment_ids[i % len(experiment_ids)], f"bulk-{i:07d}", base + i, base + i, base + i + 1, history)
                for i, run_id in enumerate(run_ids)
            ),
        )
        conn.executemany(
            "INSERT INTO tasks (run_id, task_id, display_name, parent_task_id, state, create_time, start_time, end_time,"
            " image, exit_code, error, input_parameters, output_parameters, output_artifacts, state_history)"
            " VALUES (?, ?, ?, '', 'SUCCEEDED', ?, ?, ?, 'busybox', 0, '', '{}', '{}', '[]', ?)",
            (
                (run_id, name, name, base + i, base + i, base + i + 1, task_history)
                for i, run_id in enumerate(run_ids)
                for name in ("first", "second")
            ),
        )


async def experiments(address: str) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = experiment_pb2_grpc.ExperimentServiceStub(channel)
        ids = []
        for name in ("bench-a", "bench-b"):
            created = await stub.CreateExperiment(
                experiment_pb2.CreateExperimentRequest(experiment=experiment_pb2.Experiment(display_name=name))
            )
            ids.append(created.experiment_id)
        return ids


def sides(anchor: str, into: Path) -> list[tuple[str, Path | None]]:
    """(label, source) of the anchor commit's server and of this tree's."""
    return [(f"anchor {commit_of(anchor)}", checkout(anchor, into)), (f"new {commit_of('HEAD')}+tree", None)]


MEASURE_SECONDS = 3.0
ANCHOR = "b22ec75"  # main before issue 16's store and write changes (targets 6 and 7)
AVAILABLE = {"key": "storage_state", "operation": "EQUALS", "string_value": "AVAILABLE"}
# (label, experiment-scoped, filter predicates): what the UI's runs list asks (runs.js filterOf:
# "active" runs by default, optionally one state) and what kfp.Client asks (no filter).
LISTS = (
    ("all runs, no filter", False, []),
    ("all runs, storage_state=AVAILABLE (UI default)", False, [AVAILABLE]),
    ("one experiment, storage_state=AVAILABLE", True, [AVAILABLE]),
    ("all runs, AVAILABLE and state=FAILED (UI state filter)", False,
     [AVAILABLE, {"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]),
)
UUID4_SQL = (  # a random version-4 UUID in its text form, as uuid.uuid4() gives the server
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'"
    " || substr('89ab', 1 + abs(random() % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)


def fill_copies(database: Path, rows: int, experiment_ids: list[str], archived_every: int = 9, failed_every: int = 49) -> None:
    """Add `rows` copies of the one run in `database` (no server running): each copy is the
    run's row, its tasks' rows and its log lines' rows as the server wrote them, with a new
    random run id, times moved to one run a second ending before the original, the display
    name run-NNNNNNN, the experiments taken in turn, every `archived_every`-th archived (what
    ArchiveRun changes) and every `failed_every`-th in state FAILED (only that column, so that
    the UI's state filter has matches). Written by SQL in one transaction with no journal; the
    runs', tasks' and log lines' indexes are dropped first and built again from their own SQL
    at the end (sorted builds instead of 10^6 random inserts); the schema's triggers run as
    for any insert. Events are not copied: the server prunes them after a week."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -500000")  # KiB
        (template,) = conn.execute("SELECT * FROM runs").fetchall()
        tasks = conn.execute("SELECT * FROM tasks WHERE run_id = ?", (template["run_id"],)).fetchall()
        lines = conn.execute("SELECT * FROM log_lines WHERE run_id = ?", (template["run_id"],)).fetchall()
        conn.execute("BEGIN")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('runs', 'tasks', 'log_lines')"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        shift = f"(n.n - {rows}) * 1000000"
        run_values = {
            "run_id": UUID4_SQL,
            "experiment_id": f"json_extract(:experiments, '$[' || (n.n % {len(experiment_ids)}) || ']')",
            "display_name": "printf('run-%07d', n.n)",
            "storage_state": f"CASE WHEN n.n % {archived_every} = {archived_every - 1} THEN 'ARCHIVED' ELSE :storage_state END",
            "state": f"CASE WHEN n.n % {failed_every} = {failed_every - 1} THEN 'FAILED' ELSE :state END",
            **{name: f":{name} + {shift}" for name in ("created_at", "scheduled_at", "finished_at")},
        }
        columns = template.keys()
        conn.execute(
            f"WITH RECURSIVE n(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM n WHERE n < {rows - 1})"
            f" INSERT INTO runs ({', '.join(columns)}) SELECT {', '.join(run_values.get(c, ':' + c) for c in columns)} FROM n",
            {**dict(template), "experiments": json.dumps(experiment_ids)},
        )
        # Each copy's task and log rows follow its run's; tasks in run_id order (their key).
        copies = "FROM runs AS r WHERE r.run_id != :original"
        moved = "r.created_at - :original_created_at"
        for table, templates, order, times in (
            ("tasks", tasks, "r.run_id", ("create_time", "start_time", "end_time")),
            ("log_lines", lines, "r.created_at", ("time",)),
        ):
            for row in templates:
                columns = [c for c in row.keys() if c != "sequence"]
                values = ["r.run_id" if c == "run_id" else f":{c} + {moved}" if c in times else f":{c}" for c in columns]
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} {copies} ORDER BY {order}",
                    {**dict(row), "original": template["run_id"], "original_created_at": template["created_at"]},
                )
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")  # as the server leaves it
    finally:
        conn.close()


async def seed(address: str, spec: dict) -> list[str]:
    """Two experiments and one executed run of the instant pipeline in the first; their ids."""
    experiment_ids = await experiments(address)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        version = await upload(channel, spec)
        reference = common_pb2.PipelineVersionReference(
            pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id
        )
        run = pb.Run(display_name="original", experiment_id=experiment_ids[0], pipeline_version_reference=reference)
        created = await stub.CreateRun(pb.CreateRunRequest(run=run))
        while (await stub.GetRun(pb.GetRunRequest(run_id=created.run_id))).state != common_pb2.SUCCEEDED:
            await asyncio.sleep(0.05)
    return experiment_ids


def deep_token(database: Path, experiment_id: str, predicates: list[dict]) -> str:
    """The page token of the middle row of a list (created_at desc), as the server makes it
    (its own build_query/next_page_token): walking there 200 runs a call would take thousands
    of calls."""
    scope = [("experiment_id", experiment_id)] if experiment_id else []
    # Counted, not summed: the store is still the anchor's (it may have no count table).
    counted = dataclasses.replace(RUNS, counts=None)
    query = build_query(counted, ListRequest(sort_by="created_at desc", filter=_filter(predicates)), scope)
    sql, params = query.page_sql("created_at, run_id")
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.row_factory = sqlite3.Row
        (count,) = conn.execute(*query.count_sql()).fetchone()
        row = conn.execute(sql.replace(" LIMIT ?", f" LIMIT 1 OFFSET {count // 2}"), params[:-1]).fetchone()
    return query.next_page_token(row)


def _filter(predicates: list[dict]) -> str:
    return json.dumps({"predicates": predicates}) if predicates else ""


async def timed(call: Callable[[], Awaitable[Any]], samples: int) -> tuple[Latencies, Any]:
    """Up to `samples` sequential calls, fewer if they pass MEASURE_SECONDS; the last result."""
    latencies, result, started = Latencies([]), None, time.perf_counter()
    while len(latencies.seconds) < samples and (not latencies.seconds or time.perf_counter() - started < MEASURE_SECONDS):
        began = time.perf_counter()
        result = await call()
        latencies.seconds.append(time.perf_counter() - began)
    return latencies, result


Measure = tuple[Latencies, int, float]  # latencies, total_size (0: none), server CPU ms per call


async def store_measures(server: Server, experiment_id: str, tokens: dict[str, str], run_ids: list[str], samples: int) -> dict[str, Measure]:
    """{measure: Measure} for each list of LISTS (first and deep page) and GetRun. The server's
    CPU time per call (its process, all threads) is not disturbed by other load on the machine,
    as the latencies are."""
    found: dict[str, Measure] = {}

    async def measure(name: str, call: Callable[[], Awaitable[Any]], times: int) -> None:
        cpu = cpu_seconds(server.process.pid)
        latencies, result = await timed(call, times)
        cpu_ms = 1000 * (cpu_seconds(server.process.pid) - cpu) / len(latencies.seconds)
        found[name] = (latencies, getattr(result, "total_size", 0), cpu_ms)

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        for label, scoped, predicates in LISTS:
            fields = {"page_size": 20, "experiment_id": experiment_id if scoped else ""}
            await measure(
                f"{label}: first page",
                lambda: stub.ListRuns(pb.ListRunsRequest(sort_by="created_at desc", filter=_filter(predicates), **fields)),
                samples,
            )
            token = tokens[label]

            async def deep() -> pb.ListRunsResponse:
                nonlocal token
                page = await stub.ListRuns(pb.ListRunsRequest(page_token=token, **fields))
                token = page.next_page_token or tokens[label]
                return page

            await measure(f"{label}: deep page", deep, samples)
        # Each run read once, then the runs read so far once more: a finished run read before
        # may be served from memory (kfpgrpc/store/run_cache.py), a first read is a store read.
        ids, read = iter(run_ids), []

        def first() -> Awaitable[pb.Run]:
            read.append(next(ids))
            return stub.GetRun(pb.GetRunRequest(run_id=read[-1]))

        await measure("GetRun of a random run, first read (1 client)", first, len(run_ids))
        again = iter(read)
        await measure("GetRun of those runs again (1 client)", lambda: stub.GetRun(pb.GetRunRequest(run_id=next(again))), len(read))
    return found


def size_report(database: Path, runs: int) -> str:
    """The file's bytes per run, and per table (data + its indexes) from the dbstat table."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        tables: dict[str, list[int]] = {}
        for name, data, indexes in conn.execute(
            "SELECT name, SUM(pgsize) FILTER (WHERE name NOT IN (SELECT name FROM sqlite_master WHERE type = 'index')),"
            " SUM(pgsize) FILTER (WHERE name IN (SELECT name FROM sqlite_master WHERE type = 'index')) FROM dbstat GROUP BY name"
        ):
            table = tables.setdefault(owners.get(name, name), [0, 0])
            table[0] += data or 0
            table[1] += indexes or 0
    size = database.stat().st_size
    parts = [f"{size / runs:,.0f} bytes/run ({size / 2**20:,.0f} MiB)"]
    for table, (data, indexes) in sorted(tables.items(), key=lambda item: -sum(item[1])):
        if data + indexes >= size / 1000:
            parts.append(f"{table} {data / runs:,.0f} + indexes {indexes / runs:,.0f}")
    return "; ".join(parts)


def store_scale(rows: int, anchor: str, rounds: int, samples: int, tmp: Path, spec: dict) -> None:
    sides = {f"anchor {anchor}": checkout(anchor, tmp / "src"), f"new {commit_of()}+": None}
    directories = {side: tmp / f"store-{index}" for index, side in enumerate(sides)}
    first_dir, *other_dirs = directories.values()
    with Server(first_dir, source=next(iter(sides.values()))) as server:
        experiment_ids = asyncio.run(seed(server.address, spec))
    database = first_dir / "kfpgrpc.db"
    started = time.perf_counter()
    fill_copies(database, rows, experiment_ids)
    elapsed = time.perf_counter() - started
    print(f"filled {rows:,} runs (+1 created) in {elapsed:.1f} s ({rows / elapsed:,.0f} runs/s)")
    started = time.perf_counter()
    for directory in other_dirs:
        shutil.copytree(first_dir, directory)
    print(f"copied the store for each other side in {time.perf_counter() - started:.1f} s")
    tokens = {
        label: deep_token(database, experiment_ids[0] if scoped else "", predicates)
        for label, scoped, predicates in LISTS
    }
    with contextlib.closing(sqlite3.connect(database)) as conn:
        run_ids = [row[0] for row in conn.execute(f"SELECT run_id FROM runs ORDER BY random() LIMIT {5 * samples}")]
    results: dict[str, list[dict[str, Measure]]] = {side: [] for side in sides}
    for round_ in range(rounds):
        for side, source in sides.items():
            started = time.perf_counter()
            with Server(directories[side], source=source) as server:
                print(f"round {round_ + 1}, {side}: server ready in {time.perf_counter() - started:.1f} s", flush=True)
                results[side].append(asyncio.run(store_measures(server, experiment_ids[0], tokens, run_ids, samples)))
    print(f"\n{rows + 1:,} runs, page_size 20, created_at desc; per round: p50 / p99 ms (calls) server CPU ms/call")
    for measure, (_, total, _) in results[next(iter(sides))][0].items():
        print(f"{measure}" + (f" (total_size {total:,})" if total else ""))
        for side in sides:
            figures = "   ".join(
                f"{latencies.ms(0.5):8.2f} / {latencies.ms(0.99):8.2f} ({len(latencies.seconds):>4}) cpu {cpu_ms:6.2f}"
                for latencies, _, cpu_ms in (found[measure] for found in results[side])
            )
            print(f"    {side:<22} {figures}")
    for side, directory in directories.items():
        database = directory / "kfpgrpc.db"
        print(f"size, {side}: {database.stat().st_size / (rows + 1):,.0f} bytes/run")
    print(f"size, {side}, by table: {size_report(database, rows + 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="runs in the store for the store measures")
    parser.add_argument("--anchor", default=ANCHOR, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="times each side is measured, interleaved")
    parser.add_argument("--samples", type=int, default=200, help="calls per list measure (GetRun: 5x, then those runs again)")
    parser.add_argument("--only", default="creates,store", help="comma-separated parts to run")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        specs = {"cached": compiled_instant(data, caching=True), "uncached": compiled_instant(data, caching=False)}
        if "creates" in parts:
            figures: dict[str, list[dict[str, str]]] = {}
            for round_ in range(args.rounds):
                for label, source in sides(args.anchor, data / "sources"):
                    directory = data / f"server-{round_}-{label.split()[0]}"
                    with Server(directory, source=source) as server:
                        figures.setdefault(label, []).append(asyncio.run(creates_and_gets(server.address, specs)))
                    print(f"round {round_ + 1}, {label}: done", flush=True)
            print("Instant runs (one container task running `true`), new vs anchor, each round:")
            for key in next(iter(figures.values()))[0]:
                for label, rounds in figures.items():
                    for round_, found in enumerate(rounds):
                        print(f"{key:<36} {label:<22} round {round_ + 1}: {found[key]}")
        if "store" in parts:
            store_scale(args.rows, args.anchor, args.rounds, args.samples, data, specs["cached"])


if __name__ == "__main__":
    main()
