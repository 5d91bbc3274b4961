"""Terminate benchmark: a run with many independent tasks, terminated while its first tasks run.

    python bench/bench_terminate.py [--tasks 20000]

The spec is generated directly as IR (one container component, `--tasks` independent tasks that
each wait for a file that never appears), sent inline to a `kfpgrpc serve` subprocess. Once
the run is RUNNING with its first tasks started, TerminateRun is called and the time until the
CANCELED snapshot arrives on WatchRun is printed, with the time CreateRun took.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Server  # noqa: E402
from tests.pipelines import wide_spec  # noqa: E402
from kfpgrpc.v1 import common_pb2, run_pb2, run_pb2_grpc  # noqa: E402


async def measure(address: str, tasks: int, gate: str) -> None:
    spec = struct_pb2.Struct()
    spec.update(wide_spec(tasks))
    parameters = struct_pb2.Struct()
    parameters.update({"gate": gate})
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        started = time.perf_counter()
        run = await runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
            display_name="wide", pipeline_spec=spec, runtime_config=common_pb2.RuntimeConfig(parameters=parameters.fields),
        )))
        print(f"CreateRun with {tasks:,} tasks: {time.perf_counter() - started:.2f} s")
        watch = runs.WatchRun(run_pb2.WatchRunRequest(run_id=run.run_id))
        async for snapshot in watch:
            if any(t.state == common_pb2.RUNNING for t in snapshot.run_details.task_details):
                break
        started = time.perf_counter()
        await runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=run.run_id))
        async for snapshot in watch:
            if snapshot.state == common_pb2.CANCELED:
                break
        print(f"TerminateRun to CANCELED: {time.perf_counter() - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, Server(Path(directory) / "data", "--max-spec-bytes", str(64 << 20)) as server:  # 20,000 tasks: 3.5 MB
        asyncio.run(measure(server.address, args.tasks, str(Path(directory) / "never")))


if __name__ == "__main__":
    main()
