"""Task environment benchmark: a component with packages_to_install=["numpy"], through our server
and under kfp.local with use_venv=True, in one run.

    python bench/bench_environments.py [--runs 3]

The pipeline is one lightweight component that imports numpy (compiled once, caching off so that
every run runs it). p50/mean/min wall times per run are printed, then the ratios.

- server: `kfpgrpc serve` subprocess whose task interpreter (this one) has kfp but not numpy, so
  the task runs in a task environment (kfpgrpc/executor/environments.py). *First run*: on a fresh
  data directory, so the run includes building the environment (a venv, pip installing numpy,
  the kfp runtime wheel downloaded and unpacked); --runs fresh servers, one first run each.
  *Later runs*: --runs more runs on the last server, which reuse the environment. Timed from just
  before CreateRun to the terminal WatchRun snapshot.
- kfp.local: SubprocessRunner(use_venv=True), in-process. Every task creates a venv with pip,
  upgrades pip, setuptools and wheel in it, then runs the component's `pip install` preamble
  (numpy, then kfp --no-deps): nothing is reused, so every run is a first run.

Both sides install with the machine's pip configuration and pip's cache. One untimed warm-up run
on each side first fills that cache, so no timed run downloads what the other side did not.
kfp.local's upgrades of pip, setuptools and wheel ask the index (pypi.org by default) for every
task; offline they fail and kfp.local goes on with a warning.
"""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

import grpc
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_execution import kfp_local_times, server_run, summary  # noqa: E402
from bench.harness import Server  # noqa: E402
from kfpgrpc.v1 import run_pb2_grpc  # noqa: E402

EXPECTED = sum(range(1, 102))  # numpy_sum(a=1, b=2)


@dsl.component(base_image="python:3.11", packages_to_install=["numpy"])
def numpy_sum(a: int, b: int) -> int:
    import numpy

    return int(numpy.arange(a, 100 + b).sum())


@dsl.pipeline(name="numpy-sum")
def numpy_pipeline(a: int, b: int) -> int:
    return numpy_sum(a=a, b=b).set_caching_options(False).output


async def server_times(tmp: Path, spec: dict, runs: int) -> tuple[list[float], list[float]]:
    """(first runs, later runs): a fresh server per first run, the first server a warm-up."""
    struct = struct_pb2.Struct()
    struct.update(spec)
    first, later = [], []
    for index in range(runs + 1):
        with Server(tmp / f"server-{index}") as server:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = run_pb2_grpc.RunServiceStub(channel)
                elapsed = await server_run(stub, struct)
                if index:
                    first.append(elapsed)
                if index == runs:
                    later = [await server_run(stub, struct) for _ in range(runs)]
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each kind per side, after one warm-up run")
    runs = parser.parse_args().runs
    if importlib.util.find_spec("numpy") is not None:
        sys.exit("this interpreter has numpy: the server would run the task with it and build nothing")
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "numpy-sum.yaml"
        compiler.Compiler().compile(numpy_pipeline, package_path=str(package))
        spec = yaml.safe_load(package.read_text())
        first, later = asyncio.run(server_times(Path(tmp), spec, runs))
        in_process = kfp_local_times(numpy_pipeline, EXPECTED, False, runs, str(Path(tmp) / "kfp-local"), use_venv=True)
    print("packages_to_install=['numpy']")
    print(f"  server, first run (environment built): {summary(first)}")
    print(f"  server, later runs (environment reused): {summary(later)}")
    print(f"  kfp.local use_venv=True, every run:     {summary(in_process)}")
    print(f"  kfp.local / server first run (p50): {statistics.median(in_process) / statistics.median(first):.2f}x")
    print(f"  kfp.local / server later run (p50): {statistics.median(in_process) / statistics.median(later):.2f}x")


if __name__ == "__main__":
    main()
