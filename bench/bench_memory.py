"""Memory of queued runs: server RSS with N runs of one spec waiting for admission.

    python bench/bench_memory.py [--runs 300] [--default-mb 1]

The spec has an input whose default value is --default-mb MB of text (its task does not use it:
it sleeps). With --max-parallel-tasks 1 the server executes 2 runs and keeps the others
PENDING in its admission queue. For runs of a stored pipeline version and for runs that carry
the spec inline, it prints the server's RSS after the upload, after N CreateRun calls, and
after a restart on the same store (which resumes every unfinished run). Before issue 11 each
queued run held its own decoded spec (inline runs) and, after a restart, its own copy of the
default too.
"""

# No `from __future__ import annotations`: the kfp SDK reads component annotations as types.
import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Server, rss_mib  # noqa: E402
from kfpgrpc.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc, run_pb2, run_pb2_grpc  # noqa: E402

SETTLE_SECONDS = 5  # after the last call or the restart, before reading RSS


@dsl.container_component
def hold():
    return dsl.ContainerSpec(image="busybox", command=["sleep", "3600"])


@dsl.pipeline(name="big-default")
def big_default(big: str = ""):
    hold()


def spec_with_default(directory: Path, megabytes: float) -> struct_pb2.Struct:
    path = directory / "big.yaml"
    compiler.Compiler().compile(big_default, package_path=str(path))
    spec = yaml.safe_load(path.read_text())
    spec["root"]["inputDefinitions"]["parameters"]["big"]["defaultValue"] = "x" * int(megabytes * 1_000_000)
    message = struct_pb2.Struct()
    message.update(spec)
    return message


async def queue_runs(address: str, spec: struct_pb2.Struct, runs: int, inline: bool) -> None:
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        pipelines, run_stub = pipeline_pb2_grpc.PipelineServiceStub(channel), run_pb2_grpc.RunServiceStub(channel)
        pipeline = await pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name="big")))
        await pipelines.CreatePipelineVersion(pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=spec)))
        uploaded = time.perf_counter()
        for index in range(runs):
            run = run_pb2.Run(display_name=f"queued-{index}")
            if inline:
                run.pipeline_spec.CopyFrom(spec)
            else:
                run.pipeline_version_reference.CopyFrom(common_pb2.PipelineVersionReference(pipeline_id=pipeline.pipeline_id))
            await run_stub.CreateRun(run_pb2.CreateRunRequest(run=run))
        print(f"  {runs} CreateRun calls in {time.perf_counter() - uploaded:.1f} s")


def measure(spec: struct_pb2.Struct, runs: int, inline: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory) / "data"
        with Server(data_dir, "--max-parallel-tasks", "1") as server:
            empty = rss_mib(server.process.pid)
            asyncio.run(queue_runs(server.address, spec, runs, inline))
            time.sleep(SETTLE_SECONDS)
            queued = rss_mib(server.process.pid)
        with Server(data_dir, "--max-parallel-tasks", "1") as server:
            time.sleep(SETTLE_SECONDS)
            resumed = rss_mib(server.process.pid)
    kind = "inline spec" if inline else "pipeline version"
    print(f"  {kind}: empty server {empty:.0f} MiB; {runs} queued runs {queued:.0f} MiB; after a restart {resumed:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--default-mb", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        spec = spec_with_default(Path(directory), args.default_mb)
    print(f"{args.runs} queued runs of a spec with a {args.default_mb:g} MB default value:")
    for inline in (False, True):
        measure(spec, args.runs, inline)


if __name__ == "__main__":
    main()
