"""Recurring runs benchmark: burst, overload, idle cost, start-up and catch-up, against APScheduler 3 and the anchor commit.

    python bench/bench_recurring.py [--lag-sizes 10000] [--ticks 3] [--interval 10]
        [--idle-create 10000] [--idle-sizes 100000] [--idle-seconds 5] [--catchup-ticks 5000]
        [--anchor 1733c27] [--sections lag,idle,apscheduler,catchup]

Every kfpgrpc figure comes from a `kfpgrpc serve` subprocess (a fresh data directory per
size) driven by a grpc.aio client over one channel; client and server share the machine's
cores. Recurring runs run the "instant" pipeline of bench_runs.py (one container task running
`true`) and are created through CreateRecurringRun with --create-concurrency calls in flight.
Where no peer applies (the overload, start-up), the same measure runs in the same run on the
anchor: --anchor (default ANCHOR, main before issue 16's changes) checked out and served with
this environment (bench/harness.py `checkout`), labelled "anchor".

1. Burst and overload. N enabled recurring runs, all with the 6-field cron `*/10 * * * * *`
   (every --interval s, so every tick of every recurring run falls in the same second) and
   max_concurrency 100 (so an on-time tick always starts a run even while earlier runs wait for
   the executor, which runs far fewer than N per 10 s: the overload). So that no tick fires
   while they are being created, all share a cron_schedule.start_time after the expected end
   of creation (estimated from a pilot of 300 creates, then deleted). Measured over --ticks
   ticks after every create has returned (ticks * N runs). For each run: lag = run.created_at
   - run.scheduled_at; created_at is stamped when the server builds the run, before the
   transaction that inserts it. Printed per tick: lag p50/p99/max, and "listed": when the
   client (polling ListRuns every 0.2 s) first counted all N runs of the tick, i.e. when the
   last one was committed. Meanwhile, every 0.1 s, one GetRecurringRun, one ListRuns (20
   newest) and one Disable+Enable of a recurring run kept for probing, one at a time: their
   latencies are printed. Then every recurring run is disabled (--create-concurrency in
   flight; given up after --disable-timeout s) and the server is stopped (SIGKILL if it has
   not exited --disable-timeout s after SIGTERM): both timed. Sizes from --overload-size up
   also run on the anchor.
2. Idle cost and start-up. --idle-create enabled recurring runs whose next tick is far away
   (cron `0 0 1 1 *`) created through the RPC (timed; on the anchor, ANCHOR_IDLE_CREATE), then the server's RSS (VmRSS of
   /proc/<pid>/status; "empty server" is the RSS right after it started) and CPU% of one core
   (utime + stime deltas of /proc/<pid>/stat over --idle-seconds, after 3 s of settling). The
   store is then cloned to each --idle-sizes N (`clone_recurring_runs`: the first row copied
   with new ids and names while no server runs; N calls would take minutes) and a server
   started on it: time until it prints its address, until it logs that every recurring run is
   armed (servers before issue 16 do not log it), until its CPU settles (under 5% over 2 s),
   then idle RSS/CPU. Both on this tree and on the anchor.
3. APScheduler 3 (skipped with a message if `apscheduler` is not importable): the same loads
   on an AsyncIOScheduler with a SQLAlchemyJobStore on a SQLite file, in a subprocess of its
   own (so RSS/CPU compare). Jobs have CronTrigger(second='*/10') and are coroutines that
   return time.time(); an EVENT_JOB_EXECUTED listener records lag = that time minus the
   event's scheduled_run_time (misfire_grace_time=None so late jobs run rather than being
   dropped; misses are counted anyway). The jobs are added before start(), which stores them
   (one job-store transaction each; the time is printed) and wakes the scheduler once. Idle: N
   jobs with CronTrigger.from_crontab('0 0 1 1 *'): APS_IDLE_ADDED added through APScheduler
   (timed), the rest cloned in its job store as kfpgrpc's store is, then a scheduler started on
   the store.
   Note that an APScheduler job does far less than a kfpgrpc tick: a Python coroutine call and
   one job-store UPDATE, versus a persisted run (checked, inserted, its tick recorded exactly
   once) that executes a subprocess. The comparison is with what one would otherwise pick for
   in-process scheduling, not like for like.
4. Catch-up. One recurring run, cron `* * * * * *` (every second), max_concurrency 10,
   created enabled; the server is stopped at once, and while it is down its watermark and
   created_at are moved back by --catchup-ticks seconds in the SQLite file, so that on restart
   that many ticks were missed. Measured from the restart (process spawn): when the missed
   ticks are materialised (counters ticks_queued + runs_created reach --catchup-ticks, via
   GetRecurringRun), when they are drained (ticks_queued = 0, runs_active = 0), and the drain
   rate. Ticks that fall due during the drain are queued behind the missed ones and drained too.

The server's commit is printed first, with a warning at the end if the server code changed
during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANCHOR = "1733c27"  # main before issue 16's changes: the "previous commit" where no peer applies
ANCHOR_IDLE_CREATE = 2000  # recurring runs the anchor creates through the RPC (at ~200/s) before its store is cloned


# -- process usage from /proc -----------------------------------------------------------------


def idle_usage(pid: int, seconds: float) -> tuple[float, float]:
    """(RSS MiB at the end, CPU % of one core) over `seconds`."""
    cpu, started = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return rss_mib(pid), 100 * (cpu_seconds(pid) - cpu) / (time.perf_counter() - started)


def settle(pid: int, limit: float, window: float = 2.0, below_percent: float = 5.0) -> float:
    """Seconds until the process used less than `below_percent` of a core over `window` s."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        _, percent = idle_usage(pid, window)
        if percent < below_percent:
            return time.perf_counter() - started - window
    return float("nan")


def lag_summary(lags: list[float]) -> str:
    if not lags:
        return "no samples"
    ordered = sorted(lags)

    def at(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return f"p50 {at(0.5):8.1f} ms  p99 {at(0.99):8.1f} ms  max {1000 * ordered[-1]:8.1f} ms  (n={len(ordered):,})"


def first_tick_after(moment: float, interval: int) -> int:
    """The first multiple of `interval` Unix seconds strictly after `moment` (a 6-field
    `*/interval` cron fires on exactly these when interval divides 60)."""
    return (int(moment) // interval + 1) * interval


# -- APScheduler child (runs in its own process, imports nothing of kfpgrpc/grpc/kfp) ---------


async def aps_job() -> float:
    return time.time()


APS_IDLE_ADDED = 2_000  # jobs added through APScheduler for the idle test; more are cloned


def aps_clone_jobs(db: str, n: int) -> None:
    """Bring the job store (its scheduler shut down) to `n` jobs by copying its first one with
    new ids, stored as SQLAlchemyJobStore stores a job: its pickled state, whose id is the
    row's."""
    import pickle

    with sqlite3.connect(db) as conn:
        have = conn.execute("SELECT COUNT(*) FROM apscheduler_jobs").fetchone()[0]
        next_run_time, job_state = conn.execute("SELECT next_run_time, job_state FROM apscheduler_jobs LIMIT 1").fetchone()
        state = pickle.loads(job_state)

        def row(index: int) -> tuple[str, float, bytes]:
            state["id"] = state["name"] = f"job-{index}"
            return state["id"], next_run_time, pickle.dumps(state, pickle.HIGHEST_PROTOCOL)

        conn.executemany("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (?, ?, ?)", (row(i) for i in range(have, n)))


def aps_child(argv: list[str]) -> None:
    """python bench_recurring.py --aps-child lag|idle N DB INTERVAL TICKS TIMEOUT"""
    mode, n, db, interval, ticks, timeout = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4]), float(argv[5])
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    def emit(**fields: object) -> None:
        print(json.dumps(fields), flush=True)

    async def main() -> None:
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")},
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
            timezone="UTC",
        )
        lags: dict[int, list[float]] = {}
        measured: set[int] = set()
        problems = {"missed": 0, "error": 0, "max_instances": 0}
        complete = asyncio.Event()

        def executed(event) -> None:  # type: ignore[no-untyped-def]
            tick = int(event.scheduled_run_time.timestamp())
            if tick in measured:
                lags.setdefault(tick, []).append(event.retval - event.scheduled_run_time.timestamp())
                if all(len(lags.get(t, ())) >= n for t in measured):
                    complete.set()

        def problem(event) -> None:  # type: ignore[no-untyped-def]
            kind = {EVENT_JOB_MISSED: "missed", EVENT_JOB_ERROR: "error", EVENT_JOB_MAX_INSTANCES: "max_instances"}[event.code]
            problems[kind] += 1

        scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
        scheduler.add_listener(problem, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        if mode == "lag":
            trigger = CronTrigger(second=f"*/{interval}", timezone="UTC")
        else:
            trigger = CronTrigger.from_crontab("0 0 1 1 *", timezone="UTC")
        started = time.perf_counter()
        # Added before start(): start() stores them all and wakes the scheduler once (adding
        # to a running scheduler would queue one wakeup, i.e. a job-store scan, per job).
        added = n if mode == "lag" else min(n, APS_IDLE_ADDED)
        for index in range(added):
            scheduler.add_job(aps_job, trigger, id=f"job-{index}", name=f"job-{index}")
        scheduler.start()
        create_seconds = time.perf_counter() - started
        if mode == "idle":
            if n > added:  # cloned as kfpgrpc's store is, then a scheduler started on the store
                scheduler.shutdown(wait=False)
                aps_clone_jobs(db, n)
                scheduler = AsyncIOScheduler(jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")}, timezone="UTC")
                scheduler.start()
            emit(event="ready", create_seconds=create_seconds, added=added)
            await asyncio.Event().wait()
        emit(event="ready", create_seconds=create_seconds, added=added)
        first = first_tick_after(time.time() + 1, interval)
        measured.update(first + k * interval for k in range(ticks))
        try:
            await asyncio.wait_for(complete.wait(), timeout=max(measured) - time.time() + timeout)
        except TimeoutError:
            pass
        emit(event="result", lags={str(t): lags.get(t, []) for t in sorted(measured)}, problems=problems)
        scheduler.shutdown(wait=False)

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["--aps-child"]:
    aps_child(sys.argv[2:])
    sys.exit(0)


# -- the kfpgrpc side -------------------------------------------------------------------------

import grpc  # noqa: E402

sys.path.insert(0, str(REPO))
from bench.bench_runs import compiled_instant, upload  # noqa: E402
from bench.harness import Latencies, Server, checkout, closed_loop, cpu_seconds, rss_mib  # noqa: E402
from kfpgrpc.v1 import common_pb2  # noqa: E402
from kfpgrpc.v1 import recurring_run_pb2 as rr  # noqa: E402
from kfpgrpc.v1 import recurring_run_pb2_grpc, run_pb2, run_pb2_grpc  # noqa: E402

UNFINISHED = json.dumps({"predicates": [{"key": "state", "operation": "IN", "string_values": {"values": ["PENDING", "RUNNING", "CANCELING"]}}]})


SUCCEEDED = json.dumps({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "SUCCEEDED"}]})


def tick_filter(tick: int) -> str:
    return json.dumps({"predicates": [{"key": "scheduled_at", "operation": "EQUALS", "long_value": str(tick)}]})


def stop(server: Server, timeout: float = 60) -> float:
    """SIGTERM and wait (SIGKILL after `timeout` s); return how long it took."""
    started = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"    (server still running {timeout:.0f} s after SIGTERM: killed)")
        server.process.kill()
        server.process.wait()
    return time.perf_counter() - started


async def create_recurring_runs(
    channel: grpc.aio.Channel, reference: common_pb2.PipelineVersionReference, prefix: str, n: int, cron: str,
    max_concurrency: int, concurrency: int, start_time: int = 0, quiet: bool = False, label: str = "kfpgrpc",
) -> tuple[list[str], float]:
    """Create n enabled recurring runs (no tick before `start_time`, Unix seconds, if set);
    return their ids and the seconds it took."""
    stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
    ids: list[str] = []
    schedule = rr.CronSchedule(cron=cron)
    if start_time:
        schedule.start_time.FromSeconds(start_time)

    async def create(index: int) -> None:
        recurring_run = rr.RecurringRun(
            display_name=f"{prefix}-{index}", mode=rr.RecurringRun.ENABLE, pipeline_version_reference=reference,
            trigger=rr.Trigger(cron_schedule=schedule), max_concurrency=max_concurrency,
        )
        created = await stub.CreateRecurringRun(rr.CreateRecurringRunRequest(recurring_run=recurring_run))
        ids.append(created.recurring_run_id)

    started = time.perf_counter()
    rate, latencies = await closed_loop(create, n, concurrency)
    elapsed = time.perf_counter() - started
    if not quiet:
        print(f"    {label:<8} created {n:,} enabled recurring runs in {elapsed:.1f} s ({rate:,.0f}/s, {concurrency} in flight;"
              f" call p50 {latencies.ms(0.5):.1f} ms, p99 {latencies.ms(0.99):.1f} ms)")
    return ids, elapsed


async def pipeline_reference(channel: grpc.aio.Channel, spec: dict) -> common_pb2.PipelineVersionReference:
    version = await upload(channel, spec)
    return common_pb2.PipelineVersionReference(pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id)


# -- 1. fire lag ------------------------------------------------------------------------------


async def fire_lag(address: str, pid: int, spec: dict, n: int, args: argparse.Namespace, label: str) -> None:
    interval, ticks = args.interval, args.ticks
    async with grpc.aio.insecure_channel(address) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        reference = await pipeline_reference(channel, spec)
        # No tick may fire while the recurring runs are being created (it would load the server
        # during creation and skew both figures): all get a start_time after the expected end
        # of creation, estimated from a pilot of 300 creates (then deleted).
        stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
        pilot, seconds = await create_recurring_runs(channel, reference, "pilot", 300, "0 0 1 1 *", 1, args.create_concurrency, quiet=True)
        await closed_loop(lambda i: stub.DeleteRecurringRun(rr.DeleteRecurringRunRequest(recurring_run_id=pilot[i])), len(pilot), args.create_concurrency)
        start_time = first_tick_after(time.time() + 1.25 * n * seconds / len(pilot) + 5, interval)
        ids, _ = await create_recurring_runs(
            channel, reference, "lag", n, f"*/{interval} * * * * *", 100, args.create_concurrency, start_time=start_time, label=label
        )
        if time.time() > start_time:
            print(f"    (creation overran the start_time by {time.time() - start_time:.0f} s: ticks fired during creation)")
        first = max(start_time, first_tick_after(time.time() + 1, interval))
        measured = [first + k * interval for k in range(ticks)]
        print(f"    measuring ticks at +0 .. +{interval * (ticks - 1)} s from {time.strftime('%H:%M:%S', time.gmtime(first))} UTC"
              f" (first in {first - time.time():.1f} s)")
        cpu_before, wall_before = cpu_seconds(pid), time.time()
        probing = asyncio.create_task(probe(channel, ids, measured[-1] + interval))
        visible: dict[int, float] = {}
        deadline = measured[-1] + args.lag_timeout
        counts: dict[int, int] = {}
        last_report = time.time()
        while len(visible) < ticks and time.time() < deadline:
            await asyncio.sleep(0.2)
            for tick in measured:
                if tick not in visible and time.time() >= tick:
                    counts[tick] = (await runs.ListRuns(run_pb2.ListRunsRequest(page_size=1, filter=tick_filter(tick)))).total_size
                    if counts[tick] >= n:
                        visible[tick] = time.time() - tick
            if time.time() - last_report > 15:
                last_report = time.time()
                print(f"      … runs of the measured ticks so far: {[counts.get(t, 0) for t in measured]}")
        server_cpu = 100 * (cpu_seconds(pid) - cpu_before) / (time.time() - wall_before)
        probed = await probing
        unfinished = (await runs.ListRuns(run_pb2.ListRunsRequest(page_size=1, filter=UNFINISHED))).total_size
        succeeded = (await runs.ListRuns(run_pb2.ListRunsRequest(page_size=1, filter=SUCCEEDED))).total_size
        all_lags: list[float] = []
        for index, tick in enumerate(measured):
            lags, token = [], ""
            while True:
                page = await runs.ListRuns(run_pb2.ListRunsRequest(page_size=200, filter=tick_filter(tick), page_token=token))
                lags += [(run.created_at.ToMicroseconds() - run.scheduled_at.ToMicroseconds()) / 1e6 for run in page.runs]
                token = page.next_page_token
                if not token:
                    break
            all_lags += lags
            shown = f"all {n:,} listed {visible[tick]:.2f} s after the tick" if tick in visible else f"only {len(lags):,} of {n:,} runs within the timeout"
            print(f"    N={n:<7,} tick {index + 1}: lag {lag_summary(lags)}; {shown}")
        print(f"    N={n:<7,} all ticks: lag {lag_summary(all_lags)}")
        print(f"    server CPU over the ticks: {server_cpu:.0f}% of one core (own process, not its task processes);"
              f" at the end {succeeded:,} runs had succeeded and {unfinished:,} were unfinished (executor backlog)")
        for name, latencies in probed.items():
            print(f"    during the ticks, {name:<16} {latencies.summary()}")
        disabled = 0

        async def disable(index: int) -> None:
            nonlocal disabled
            await stub.DisableRecurringRun(rr.DisableRecurringRunRequest(recurring_run_id=ids[index]))
            disabled += 1

        started = time.perf_counter()
        try:
            _, latencies = await asyncio.wait_for(closed_loop(disable, n, args.create_concurrency), timeout=args.disable_timeout)
            print(f"    disabled all {n:,} in {time.perf_counter() - started:.1f} s ({args.create_concurrency} in flight;"
                  f" call {latencies.summary()})")
        except TimeoutError:
            print(f"    disabled only {disabled:,} of {n:,} in {args.disable_timeout:.0f} s (gave up; the server is stopped instead)")


async def probe(channel: grpc.aio.Channel, ids: list[str], until: float) -> dict[str, Latencies]:
    """What a user does while the schedules flood the server, one call at a time every 0.1 s
    until `until` (Unix s): GetRecurringRun of a random recurring run, ListRuns of its 20
    newest runs, DisableRecurringRun + EnableRecurringRun of one kept for probing (the last)."""
    stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
    runs = run_pb2_grpc.RunServiceStub(channel)
    found: dict[str, list[float]] = {"GetRecurringRun": [], "ListRuns": [], "Disable+Enable": []}
    chosen = random.Random(7)
    calls = {
        "GetRecurringRun": lambda: stub.GetRecurringRun(rr.GetRecurringRunRequest(recurring_run_id=chosen.choice(ids))),
        "ListRuns": lambda: runs.ListRuns(run_pb2.ListRunsRequest(page_size=20, sort_by="created_at desc")),
    }

    async def toggle() -> None:
        await stub.DisableRecurringRun(rr.DisableRecurringRunRequest(recurring_run_id=ids[-1]))
        await stub.EnableRecurringRun(rr.EnableRecurringRunRequest(recurring_run_id=ids[-1]))

    calls["Disable+Enable"] = toggle
    while time.time() < until:
        for name, call in calls.items():
            started = time.perf_counter()
            await call()
            found[name].append(time.perf_counter() - started)
        await asyncio.sleep(0.1)
    return {name: Latencies(seconds) for name, seconds in found.items()}


# -- 2. idle cost -----------------------------------------------------------------------------


async def create_idle(address: str, spec: dict, n: int, concurrency: int, label: str) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        reference = await pipeline_reference(channel, spec)
        _, elapsed = await create_recurring_runs(channel, reference, "idle", n, "0 0 1 1 *", 1, concurrency, label=label)
        return elapsed


async def one_get(address: str) -> None:
    """A call that proves the server answers (ListRecurringRuns of one)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
        await stub.ListRecurringRuns(rr.ListRecurringRunsRequest(page_size=1))


def clone_recurring_runs(db_path: Path, n: int) -> float:
    """Bring the store (its server stopped) to `n` recurring runs by copying its first one's
    row with new ids and names: rows exactly as CreateRecurringRun stored the original, without
    the minutes that n calls would take. Returns the seconds it took."""
    started = time.perf_counter()
    with sqlite3.connect(db_path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(recurring_runs)")]
        original = conn.execute(f"SELECT {', '.join(columns)} FROM recurring_runs ORDER BY created_at LIMIT 1").fetchone()
        have = conn.execute("SELECT COUNT(*) FROM recurring_runs").fetchone()[0]
        at = {name: index for index, name in enumerate(columns)}

        def row(index: int) -> list[object]:
            values = list(original)
            values[at["recurring_run_id"]] = f"{uuid.UUID(int=index)}"
            values[at["display_name"]] = f"idle-clone-{index}"
            return values

        conn.executemany(
            f"INSERT INTO recurring_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            (row(index) for index in range(have, n)),
        )
    return time.perf_counter() - started


def armed_after(log: Path, started: float, limit: float) -> float:
    """Seconds from `started` until the server logged that every recurring run is armed (nan:
    not within `limit` s, or a server that does not log it)."""
    while time.perf_counter() - started < limit:
        if log.exists() and "recurring runs armed" in log.read_text(errors="replace"):
            return time.perf_counter() - started
        time.sleep(0.05)
    return float("nan")


def restart_cost(label: str, directory: Path, n: int, args: argparse.Namespace, source: Path | None) -> None:
    """Start a server on a store of n enabled recurring runs: when it listens, when every
    actor is armed (from its log; servers before issue 16 do not log it), when its CPU settles,
    then its idle RSS and CPU."""
    log = directory.parent / f"{directory.name}-{label}.log"
    started = time.perf_counter()
    server = Server(directory, source=source, log=log)
    try:
        listening = time.perf_counter() - started
        armed = armed_after(log, started, 60) if source is None else float("nan")
        settled = settle(server.process.pid, limit=300)
        asyncio.run(one_get(server.address))
        rss, cpu = idle_usage(server.process.pid, args.idle_seconds)
        print(f"    {label:<8} N={n:<7,} start: listening after {listening:5.2f} s, every recurring run armed after"
              f" {armed:5.2f} s, CPU settled {settled:5.1f} s later; idle RSS {rss:7.1f} MiB"
              f" ({1024 * rss / n:.2f} KiB per recurring run, server included)  CPU {cpu:5.2f}%")
    finally:
        stop(server)


def idle_cost(data: Path, spec: dict, args: argparse.Namespace, anchor: Path | None) -> None:
    """Create --idle-create recurring runs through the RPC (on this code and on the anchor's),
    measure the idle server; then clone each store to every --idle-sizes N and measure a start
    on it."""
    sides = [("kfpgrpc", None)] + ([("anchor", anchor)] if anchor else [])
    for label, source in sides:
        directory = data / f"idle-{label}"
        server = Server(directory, source=source)
        created = args.idle_create if source is None else min(args.idle_create, ANCHOR_IDLE_CREATE)
        try:
            base_rss = rss_mib(server.process.pid)
            asyncio.run(create_idle(server.address, spec, created, args.create_concurrency, label))
            time.sleep(3)
            rss, cpu = idle_usage(server.process.pid, args.idle_seconds)
            print(f"    {label:<8} N={created:<7,} idle: RSS {rss:7.1f} MiB (empty server: {base_rss:.1f} MiB,"
                  f" {1024 * (rss - base_rss) / created:.2f} KiB per recurring run)  CPU {cpu:5.2f}% of one core"
                  f" over {args.idle_seconds:.0f} s")
        finally:
            stop(server)
    for n in args.idle_sizes:
        for label, source in sides:
            directory = data / f"idle-{label}"
            seconds = clone_recurring_runs(directory / "kfpgrpc.db", n)
            if seconds > 1:
                print(f"    (store cloned to {n:,} recurring runs in {seconds:.1f} s)")
            restart_cost(label, directory, n, args, source)


# -- 3. APScheduler ---------------------------------------------------------------------------


def aps_available() -> bool:
    try:
        import apscheduler  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


def aps_spawn(mode: str, n: int, db: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--aps-child", mode, str(n), str(db), str(args.interval),
         str(args.ticks), str(args.lag_timeout)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def aps_read(child: subprocess.Popen[str]) -> dict:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"the APScheduler child exited ({child.wait()}) without output")
    return json.loads(line)


def aps_lag(data: Path, n: int, args: argparse.Namespace) -> None:
    child = aps_spawn("lag", n, data / f"aps-lag-{n}.sqlite", args)
    try:
        ready = aps_read(child)
        print(f"    N={n:<7,} {n:,} jobs added and stored in {ready['create_seconds']:.1f} s")
        cpu_before, wall_before = cpu_seconds(child.pid), time.time()
        result = aps_read(child)
        cpu = 100 * (cpu_seconds(child.pid) - cpu_before) / (time.time() - wall_before)
        all_lags: list[float] = []
        for index, (tick, lags) in enumerate(result["lags"].items()):
            all_lags += lags
            note = "" if len(lags) >= n else f"; only {len(lags):,} of {n:,} jobs ran within the timeout"
            print(f"    N={n:<7,} tick {index + 1}: lag {lag_summary(lags)}{note}")
        print(f"    N={n:<7,} all ticks: lag {lag_summary(all_lags)}; process CPU {cpu:.0f}% of one core;"
              f" missed/error/max_instances events: {result['problems']}")
    finally:
        child.kill()
        child.wait()


def aps_idle(data: Path, n: int, args: argparse.Namespace) -> None:
    child = aps_spawn("idle", n, data / f"aps-idle-{n}.sqlite", args)
    try:
        ready = aps_read(child)
        time.sleep(3)
        rss, cpu = idle_usage(child.pid, args.idle_seconds)
        cloned = " (the rest cloned in the job store, then a scheduler started on it)" if ready["added"] < n else ""
        print(f"    N={n:<7,} {ready['added']:,} jobs added and stored in {ready['create_seconds']:.1f} s{cloned};"
              f" idle RSS {rss:7.1f} MiB  CPU {cpu:5.2f}% of one core over {args.idle_seconds:.0f} s")
    finally:
        child.kill()
        child.wait()


# -- 4. catch-up ------------------------------------------------------------------------------


async def create_every_second(address: str, spec: dict, max_concurrency: int) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reference = await pipeline_reference(channel, spec)
        stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
        created = await stub.CreateRecurringRun(rr.CreateRecurringRunRequest(recurring_run=rr.RecurringRun(
            display_name="catchup", mode=rr.RecurringRun.ENABLE, pipeline_version_reference=reference,
            trigger=rr.Trigger(cron_schedule=rr.CronSchedule(cron="* * * * * *")), max_concurrency=max_concurrency,
        )))
        return created.recurring_run_id


async def follow_catch_up(address: str, recurring_run_id: str, missed: int, spawned: float, timeout: float) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = recurring_run_pb2_grpc.RecurringRunServiceStub(channel)
        runs = run_pb2_grpc.RunServiceStub(channel)
        materialised = drained = None
        first_created = created_at_materialised = None
        last_report = time.perf_counter()
        counters = None
        while time.perf_counter() - spawned < timeout:
            counters = (await stub.GetRecurringRun(rr.GetRecurringRunRequest(recurring_run_id=recurring_run_id))).counters
            now = time.perf_counter() - spawned
            if first_created is None:
                first_created = counters.runs_created
            if materialised is None and counters.ticks_queued + counters.runs_created >= missed:
                materialised, created_at_materialised = now, counters.runs_created
                print(f"    {missed:,} missed ticks materialised {now:.2f} s after the restart"
                      f" (queued {counters.ticks_queued:,}, runs created {counters.runs_created:,})")
            if materialised is not None and counters.ticks_queued == 0 and counters.runs_active == 0 and counters.runs_created >= missed:
                drained = now
                break
            if time.perf_counter() - last_report > 15:
                last_report = time.perf_counter()
                print(f"      … {now:5.0f} s: runs created {counters.runs_created:,}, queued {counters.ticks_queued:,},"
                      f" active {counters.runs_active}")
            await asyncio.sleep(0.1)
        assert counters is not None and first_created is not None
        if drained is None:
            print(f"    not drained within {timeout:.0f} s: runs created {counters.runs_created:,},"
                  f" queued {counters.ticks_queued:,}, active {counters.runs_active}")
            return
        assert materialised is not None and created_at_materialised is not None
        after_restart = counters.runs_created - first_created
        during_drain = counters.runs_created - created_at_materialised
        print(f"    drained {drained:.1f} s after the restart: {counters.runs_created:,} runs created in all"
              f" ({counters.ticks_skipped} ticks skipped); drain rate {during_drain / (drained - materialised):.0f} runs/s"
              f" ({during_drain:,} runs from materialisation to drained; {after_restart / drained:.0f} runs/s from the restart)")
        listed = (await runs.ListRuns(run_pb2.ListRunsRequest(page_size=1, filter=json.dumps(
            {"predicates": [{"key": "recurring_run_id", "operation": "EQUALS", "string_value": recurring_run_id}]})))).total_size
        failed = (await runs.ListRuns(run_pb2.ListRunsRequest(page_size=1, filter=json.dumps(
            {"predicates": [{"key": "recurring_run_id", "operation": "EQUALS", "string_value": recurring_run_id},
                            {"key": "state", "operation": "NOT_EQUALS", "string_value": "SUCCEEDED"}]})))).total_size
        print(f"    ListRuns: {listed:,} runs of the recurring run (counter says {counters.runs_created:,}), {failed} not SUCCEEDED")


def catch_up(data: Path, spec: dict, args: argparse.Namespace) -> None:
    directory = data / "catchup"
    server = Server(directory)
    try:
        recurring_run_id = asyncio.run(create_every_second(server.address, spec, args.catchup_concurrency))
    finally:
        stop(server)
    shift = args.catchup_ticks * 1_000_000
    with sqlite3.connect(directory / "kfpgrpc.db") as conn:
        before = conn.execute("SELECT runs_created FROM recurring_runs WHERE recurring_run_id = ?", (recurring_run_id,)).fetchone()[0]
        conn.execute("UPDATE recurring_runs SET watermark = watermark - ?, created_at = created_at - ? WHERE recurring_run_id = ?",
                     (shift, shift, recurring_run_id))
    print(f"    recurring run created, server stopped ({before} runs created before the stop);"
          f" watermark moved back {args.catchup_ticks:,} s")
    spawned = time.perf_counter()
    server = Server(directory)
    try:
        print(f"    restarted: listening after {time.perf_counter() - spawned:.2f} s")
        asyncio.run(follow_catch_up(server.address, recurring_run_id, args.catchup_ticks, spawned, args.catchup_timeout))
    finally:
        stop(server)


# -- main -------------------------------------------------------------------------------------


def revision() -> tuple[str, str]:
    """(the repository's commit as shown, an identity of the server code: its tree in that
    commit plus any uncommitted change to it), so that a change to kfpgrpc/ landing during a
    long run is noticed."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.strip()

    diff = git("diff", "HEAD", "--", "kfpgrpc")
    shown = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes to kfpgrpc/" if diff else "")
    return shown, git("rev-parse", "HEAD:kfpgrpc") + str(hash(diff))


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="lag,idle,apscheduler,catchup", help="comma-separated subset to run")
    parser.add_argument("--lag-sizes", type=sizes, default=[10000], help="N for the fire-lag test")
    parser.add_argument("--ticks", type=int, default=3, help="ticks measured per fire-lag size")
    parser.add_argument("--overload-size", type=int, default=10000,
                        help="fire-lag sizes from this one up are also run on the anchor (the overload: no peer applies)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between ticks (a divisor of 60)")
    parser.add_argument("--lag-timeout", type=float, default=30, help="seconds after the last tick to wait for its runs")
    parser.add_argument("--disable-timeout", type=float, default=15,
                        help="seconds allowed for disabling all, and for the server to exit after SIGTERM, per fire-lag size")
    parser.add_argument("--idle-create", type=int, default=10000, help="recurring runs created through the RPC for the idle test")
    parser.add_argument("--idle-sizes", type=sizes, default=[100000], help="N (cloned from those created) for the start-up test")
    parser.add_argument("--anchor", default=ANCHOR,
                        help="the commit to run side by side where no peer applies ('' for none); default: main before issue 16")
    parser.add_argument("--idle-seconds", type=float, default=5)
    parser.add_argument("--create-concurrency", type=int, default=50, help="CreateRecurringRun calls in flight")
    parser.add_argument("--catchup-ticks", type=int, default=5000, help="missed ticks for the catch-up test")
    parser.add_argument("--catchup-concurrency", type=int, default=10, help="max_concurrency of the catch-up recurring run")
    parser.add_argument("--catchup-timeout", type=float, default=600)
    args = parser.parse_args()
    if 60 % args.interval:
        parser.error("--interval must divide 60")
    sections = set(args.sections.split(","))
    begun, (shown, code) = time.perf_counter(), revision()
    print(f"server code: {shown}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        spec = compiled_instant(data)
        anchor = checkout(args.anchor, data / "anchor") if args.anchor else None
        if anchor:
            print(f"anchor: {anchor.name} (a checkout of {args.anchor}, run with this environment)")
        if "lag" in sections:
            print(f"1. Fire lag: N recurring runs, cron */{args.interval} * * * * *, {args.ticks} ticks each")
            for n in args.lag_sizes:
                for label, source in [("kfpgrpc", None)] + ([("anchor", anchor)] if anchor and n >= args.overload_size else []):
                    print(f"  {label}, N={n:,}")
                    server = Server(data / f"lag-{n}-{label}", source=source)
                    try:
                        asyncio.run(fire_lag(server.address, server.process.pid, spec, n, args, label))
                    finally:
                        print(f"    server stopped in {stop(server, args.disable_timeout):.1f} s after SIGTERM")
        if "idle" in sections:
            print("2. Idle cost and start-up: N enabled recurring runs, next tick far away (cron 0 0 1 1 *)")
            idle_cost(data, spec, args, anchor)
        if "apscheduler" in sections:
            print("3. APScheduler 3: AsyncIOScheduler + SQLAlchemyJobStore (SQLite file), own process")
            if not aps_available():
                print("    SKIPPED: apscheduler/sqlalchemy not importable (pip install 'apscheduler>=3.11,<4' sqlalchemy)")
            else:
                for n in args.lag_sizes:
                    aps_lag(data, n, args)
                for n in args.idle_sizes:
                    aps_idle(data, n, args)
        if "catchup" in sections:
            print(f"4. Catch-up: cron * * * * * *, max_concurrency {args.catchup_concurrency}, {args.catchup_ticks:,} missed ticks")
            catch_up(data, spec, args)
    print(f"total {time.perf_counter() - begun:.0f} s")
    now_shown, now_code = revision()
    if now_code != code:
        print(f"WARNING: the server code (kfpgrpc/) changed during the run (now {now_shown}): sections measured different code")


if __name__ == "__main__":
    main()
