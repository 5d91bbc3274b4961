"""Runs benchmark: CreateRun throughput, GetRun latency and ListRuns paging through a real server.

    python bench/bench_runs.py [--rows 100000]

1. CreateRun with 1 and 50 concurrent clients (one channel) of an "instant" pipeline: one
   container task running `true`, compiled by the kfp SDK. Acknowledged = committed; the runs
   execute in the background on the same two cores while creation goes on, so the figure
   includes that load. Also printed: how long until every created run had finished.
2. GetRun of finished runs (with their task details) with 1 and 50 clients.
3. ListRuns first-page and deep-page latency with --rows runs in the store (each with two
   tasks), bulk-loaded with sqlite3 while the server is stopped; lists of one experiment use
   the experiment-scoped indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
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
from bench.harness import Server, at_each_concurrency, page_latencies, repeated  # noqa: E402
from kfpgrpc.v1 import common_pb2, experiment_pb2, experiment_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc  # noqa: E402
from kfpgrpc.v1 import run_pb2 as pb  # noqa: E402
from kfpgrpc.v1 import run_pb2_grpc  # noqa: E402


@dsl.container_component
def instant():
    return dsl.ContainerSpec(image="busybox", command=["true"])


@dsl.pipeline(name="instant")
def instant_pipeline():
    instant()


def compiled_instant(directory: Path) -> dict:
    path = directory / "instant.yaml"
    compiler.Compiler().compile(instant_pipeline, package_path=str(path))
    return yaml.safe_load(path.read_text())


async def upload(channel: grpc.aio.Channel, spec: dict) -> pipeline_pb2.PipelineVersion:
    stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
    pipeline = await stub.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="instant")))
    body = struct_pb2.Struct()
    body.update(spec)
    return await stub.CreatePipelineVersion(
        pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=body)
        )
    )


UNFINISHED = json.dumps({"predicates": [{"key": "state", "operation": "IN", "string_values": {"values": ["PENDING", "RUNNING", "CANCELING"]}}]})


async def creates_and_gets(address: str, spec: dict) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        version = await upload(channel, spec)
        reference = common_pb2.PipelineVersionReference(
            pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id
        )
        ids: list[str] = []

        async def create(concurrency: int, index: int) -> None:
            run = pb.Run(display_name=f"c{concurrency}-{index}", pipeline_version_reference=reference)
            ids.append((await stub.CreateRun(pb.CreateRunRequest(run=run))).run_id)

        async def all_finished(started: float) -> None:
            while (await stub.ListRuns(pb.ListRunsRequest(page_size=1, filter=UNFINISHED))).total_size:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            print(f"{'':>15} every run had finished {elapsed:.2f} s after the first create")

        async def get(concurrency: int, index: int) -> None:
            await stub.GetRun(pb.GetRunRequest(run_id=ids[index % len(ids)]))

        await at_each_concurrency("CreateRun", "runs/s", create, {1: 500, 50: 2000}, after=all_finished)
        await at_each_concurrency("GetRun", "reads/s", get, {1: 4000, 50: 4000})


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="runs in the store for the list test")
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        spec = compiled_instant(data)
        with Server(data / "server") as server:
            asyncio.run(creates_and_gets(server.address, spec))
            experiment_ids = asyncio.run(experiments(server.address))
        bulk_load(data / "server" / "kfpgrpc.db", rows, experiment_ids)
        with Server(data / "server") as server:
            asyncio.run(list_latency(server.address, rows, experiment_ids[0]))


if __name__ == "__main__":
    main()
