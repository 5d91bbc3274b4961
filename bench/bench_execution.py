"""Execution benchmark: pipelines end to end, through our server and under kfp.local, in one run.

    python bench/bench_execution.py [--runs 5] [--loop-runs 2]

Scenarios, each timed on both sides after one warm-up run (p50/mean/min wall time per run, then
the ratio kfp.local / server):

- two-task: two chained lightweight components (add, then add on its output), caching off.
- parallel-for-100: `dsl.ParallelFor` over 100 items of a trivial lightweight component, then
  `dsl.Collected` summed by one task; caching off. --loop-runs timed runs.
- cached: the two-task pipeline with caching on (the SDK's default): every timed run is a second
  identical run, whose tasks reuse the first run's outputs (kfp.local: `enable_caching=True`).

Sides:
- server: `kfpgrpc serve` subprocess; CreateRun with the compiled spec inline, then WatchRun until
  the terminal snapshot, timed from just before CreateRun. Includes the gRPC round trips, the
  server's SQLite commits and one subprocess per task; the server drops the components'
  `pip install kfp==...` preamble because its interpreter already has kfp.
- kfp.local: SubprocessRunner(use_venv=False) called in-process, so no server or RPC. Each task
  is still a subprocess, and it runs the compiled command as is (only `python3` is replaced by
  this interpreter), so every task runs the `pip install kfp==...` preamble (a no-op install that
  still costs a pip start-up) before the component.

Both sides run the tasks with this interpreter (the server is spawned with it).
"""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import argparse
import asyncio
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, List

import grpc
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl, local

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Server  # noqa: E402
from kfpgrpc.v1 import common_pb2, run_pb2, run_pb2_grpc  # noqa: E402

TERMINAL = {common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED}


@dsl.component(base_image="python:3.11")
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image="python:3.11")
def total(values: List[int]) -> int:
    return int(sum(values))  # kfp.local passes collected ints as floats (2.17.3): 3.0


@dsl.pipeline(name="add-twice")
def add_twice(a: int, b: int) -> int:
    first = add(a=a, b=b).set_caching_options(False)
    return add(a=first.output, b=b).set_caching_options(False).output


@dsl.pipeline(name="add-twice-cached")
def add_twice_cached(a: int, b: int) -> int:
    first = add(a=a, b=b)
    return add(a=first.output, b=b).output


@dsl.pipeline(name="parallel-for-100")
def parallel_for_100(a: int, b: int) -> int:
    with dsl.ParallelFor(list(range(100))) as item:
        added = add(a=item, b=b).set_caching_options(False)
    return total(values=dsl.Collected(added.output)).set_caching_options(False).output


# name: (pipeline, its output for a=1, b=2, kfp.local caching on)
SCENARIOS = {
    "two-task": (add_twice, 5, False),
    "parallel-for-100": (parallel_for_100, sum(range(100)) + 200, False),
    "cached": (add_twice_cached, 5, True),
}


def summary(seconds: list[float]) -> str:
    return (f"p50 {1000 * statistics.median(seconds):6.0f} ms  mean {1000 * statistics.fmean(seconds):6.0f} ms  "
            f"min {1000 * min(seconds):6.0f} ms  (n={len(seconds)})")


def timed(run_once: Callable[[], None], runs: int) -> list[float]:
    run_once()  # warm-up: first imports and the page cache
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run_once()
        seconds.append(time.perf_counter() - started)
    return seconds


async def server_run(stub: run_pb2_grpc.RunServiceStub, spec: struct_pb2.Struct) -> float:
    started = time.perf_counter()
    run = await stub.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
        display_name="bench", pipeline_spec=spec,
        runtime_config=common_pb2.RuntimeConfig(parameters={
            "a": struct_pb2.Value(number_value=1), "b": struct_pb2.Value(number_value=2)}),
    )))
    async for snapshot in stub.WatchRun(run_pb2.WatchRunRequest(run_id=run.run_id)):
        if snapshot.state in TERMINAL:
            elapsed = time.perf_counter() - started
            if snapshot.state != common_pb2.SUCCEEDED:
                raise RuntimeError(f"run {run.run_id} ended {common_pb2.RuntimeState.Name(snapshot.state)}: "
                                   f"{snapshot.error.message}")
            return elapsed
    raise RuntimeError(f"WatchRun of {run.run_id} ended without a terminal state")


async def server_times(address: str, spec: dict, runs: int) -> list[float] | None:
    struct = struct_pb2.Struct()
    struct.update(spec)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        try:
            await server_run(stub, struct)  # warm-up: also the server's one-off kfp version probe
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            print("server:    skipped, RunService answers UNIMPLEMENTED")
            return None
        return [await server_run(stub, struct) for _ in range(runs)]


def kfp_local_times(
    pipeline: Callable[..., Any], expected: int, caching: bool, runs: int, pipeline_root: str, use_venv: bool = False
) -> list[float]:
    local.init(runner=local.SubprocessRunner(use_venv=use_venv), pipeline_root=pipeline_root, enable_caching=caching)

    def run_once() -> None:
        # kfp.local prints its logs and every task's output to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            result = pipeline(a=1, b=2).output
        assert result == expected, result

    return timed(run_once, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side, after one warm-up run")
    parser.add_argument("--loop-runs", type=int, default=2, help="timed runs of parallel-for-100 per side")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append", help="only these (repeatable)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp) / "server") as server:
        for name in options.scenario or SCENARIOS:
            pipeline, expected, caching = SCENARIOS[name]
            runs = options.loop_runs if name == "parallel-for-100" else options.runs
            package = Path(tmp) / f"{name}.yaml"
            compiler.Compiler().compile(pipeline, package_path=str(package))
            spec = yaml.safe_load(package.read_text())
            served = asyncio.run(server_times(server.address, spec, runs))
            in_process = kfp_local_times(pipeline, expected, caching, runs, str(Path(tmp) / f"kfp-local-{name}"))
            print(f"{name}")
            if served is not None:
                print(f"  server:    {summary(served)}")
            print(f"  kfp.local: {summary(in_process)}")
            if served is not None:
                print(f"  kfp.local / server (p50): {statistics.median(in_process) / statistics.median(served):.2f}x")


if __name__ == "__main__":
    main()
