"""Runs benchmark: CreateRun throughput, GetRun latency and ListRuns paging through a real server.

    python bench/bench_runs.py [--rows 100000] [--anchor REV] [--rounds 2]

1. CreateRun with 1 and 50 concurrent clients (one channel) of an "instant" pipeline: one
   container task running `true`, compiled by the kfp SDK, cached (the SDK's default: every
   run after the first reuses the first one's task) and uncached (each run starts a task
   process). Acknowledged = committed; the runs execute in the background on the same two
   cores while creation goes on, so the figure includes that load. Also printed: the end-to-end
   rate, until every created run had finished.
2. GetRun of finished runs (with their task details) with 1 and 50 clients.
   1 and 2 run against this tree's server and the anchor commit's (default: where this branch
   left main), `--rounds` times each, interleaved, and are printed side by side: the machine
   is shared, so only figures of one run compare.
3. ListRuns first-page and deep-page latency with --rows runs in the store (each with two
   tasks), bulk-loaded with sqlite3 while the server is stopped; lists of one experiment use
   the experiment-scoped indexes. This tree's server only; --rows 0 skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (  # noqa: E402
    REPO,
    Server,
    checkout,
    closed_loop,
    commit_of,
    page_latencies,
    repeated,
)
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


async def list_latency(address: str, rows: int, experiment_id: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)

        async def list_runs(**fields: object) -> pb.ListRunsResponse:
            return await stub.ListRuns(pb.ListRunsRequest(**fields))

        async def list_experiment_runs(**fields: object) -> pb.ListRunsResponse:
            return await list_runs(experiment_id=experiment_id, **fields)

        for label, call, size in (("all runs", list_runs, rows), ("one experiment", list_experiment_runs, rows // 2)):
            for sort_by in ("created_at desc", "display_name"):
                await page_latencies(f"ListRuns, {label},", call, size, sort_by)
        failed = json.dumps({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]})
        scanned, page = await repeated(lambda: list_runs(page_size=20, filter=failed), 20)
        print(f"ListRuns state=FAILED filter (seeks the state index; {page.total_size} matches): {scanned.summary()}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="runs in the store for the list test (0: no list test)")
    parser.add_argument("--anchor", default="", help="the commit to compare with (default: where this branch left main)")
    parser.add_argument("--rounds", type=int, default=2, help="CreateRun/GetRun rounds per side, interleaved")
    arguments = parser.parse_args()
    anchor = arguments.anchor or merge_base()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        specs = {"cached": compiled_instant(data, caching=True), "uncached": compiled_instant(data, caching=False)}
        figures: dict[str, list[dict[str, str]]] = {}
        for round_ in range(arguments.rounds):
            for label, source in sides(anchor, data / "sources"):
                directory = data / f"server-{round_}-{label.split()[0]}"
                with Server(directory, source=source) as server:
                    figures.setdefault(label, []).append(asyncio.run(creates_and_gets(server.address, specs)))
                print(f"round {round_ + 1}, {label}: done", flush=True)
        print("Instant runs (one container task running `true`), new vs anchor, each round:")
        for key in next(iter(figures.values()))[0]:
            for label, rounds in figures.items():
                for round_, found in enumerate(rounds):
                    print(f"{key:<36} {label:<22} round {round_ + 1}: {found[key]}")
        if arguments.rows:
            rows = arguments.rows
            with Server(data / "server") as server:
                experiment_ids = asyncio.run(experiments(server.address))
            bulk_load(data / "server" / "kfpgrpc.db", rows, experiment_ids)
            with Server(data / "server") as server:
                asyncio.run(list_latency(server.address, rows, experiment_ids[0]))


def merge_base() -> str:
    """Where HEAD left main: the anchor "previous commit" of this branch's changes."""
    return subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    main()
