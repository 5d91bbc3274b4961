"""Catalog benchmark: experiment/pipeline writes and reads through a real server.

    python bench/bench_catalog.py [--rows 100000]

Prints CreatePipeline throughput and GetPipeline latency with 1 and 50 concurrent clients (one
channel), then ListPipelines first-page and deep-page latency with --rows pipelines in the store.
The rows for the list test are bulk-loaded with sqlite3 while the server is stopped, so the
figure measures listing, not loading.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Server, at_each_concurrency, page_latencies, repeated  # noqa: E402
from kfpgrpc.v1 import pipeline_pb2 as pb  # noqa: E402
from kfpgrpc.v1 import pipeline_pb2_grpc  # noqa: E402


async def writes_and_reads(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
        ids: list[str] = []

        async def create(concurrency: int, index: int) -> None:
            pipeline = pb.Pipeline(name=f"c{concurrency}-{index}")
            ids.append((await stub.CreatePipeline(pb.CreatePipelineRequest(pipeline=pipeline))).pipeline_id)

        async def get(concurrency: int, index: int) -> None:
            await stub.GetPipeline(pb.GetPipelineRequest(pipeline_id=ids[index % len(ids)]))

        await at_each_concurrency("CreatePipeline", "writes/s", create, {1: 2000, 50: 2000})
        await at_each_concurrency("GetPipeline", "reads/s", get, {1: 4000, 50: 4000})


def bulk_load(database: Path, rows: int) -> None:
    base = time.time_ns() // 1000
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO pipelines VALUES (?, ?, ?, '', ?)",
            ((str(uuid.uuid4()), f"bulk-{i:07d}", f"Bulk {i}", base + i) for i in range(rows)),
        )


async def list_latency(address: str, rows: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
        async def list_pipelines(**fields: object) -> pb.ListPipelinesResponse:
            return await stub.ListPipelines(pb.ListPipelinesRequest(**fields))

        for sort_by in ("created_at", "name desc"):
            await page_latencies("ListPipelines", list_pipelines, rows, sort_by)
        # A substring filter cannot use an index: its page and its total_size scan the table.
        substring = json.dumps({"predicates": [{"key": "name", "operation": "IS_SUBSTRING", "string_value": "-00999"}]})
        scanned, page = await repeated(lambda: list_pipelines(page_size=20, filter=substring), 50)
        print(f"ListPipelines IS_SUBSTRING filter (full scan, {page.total_size} matches): {scanned.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="pipelines in the store for the list test")
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with Server(data) as server:
            asyncio.run(writes_and_reads(server.address))
        bulk_load(data / "kfpgrpc.db", rows)
        with Server(data) as server:
            asyncio.run(list_latency(server.address, rows))


if __name__ == "__main__":
    main()
