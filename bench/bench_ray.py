"""Ray launcher benchmark: the local launcher against the Ray launcher, through real servers, in one run.

    python bench/bench_ray.py [--tasks 200] [--fan-out 20] [--sleep 1] [--local-parallel 2] [--quick]

A Ray cluster of --nodes nodes of --cpus-per-node CPUs each (default 2 x 2 = 4 CPUs) is started
on this machine with `ray.cluster_utils.Cluster`, bound to 127.0.0.1, no dashboard. Each side is
a `kfpgrpc serve` subprocess: `--launcher local --max-parallel-tasks N`, or `--launcher ray
--ray-address` the cluster's (whose CPUs then cap what runs at once: each task asks Ray for one).

A "task" is one container task: one iteration of a `dsl.ParallelFor` over a list pipeline
parameter, whose body is one trivial container component (`run_command`, compiled by the kfp
SDK, caching off) that runs `PROGRAM ITEM` as its command. A run's wall time is the server's
record, created_at to finished_at (spec inline; see timed_run). Before the timed runs, each server
runs one untimed warm-up run of as many tasks as it runs at once (Ray starts its worker
processes then); its time is printed too.

(a) --tasks trivial tasks (`true ITEM`), local launcher with --max-parallel-tasks = the cluster's
    CPUs against the Ray launcher. Printed: tasks/s = tasks / wall; wall / task; the bare
    commands' cost = the wall time of running the same --tasks commands from this process
    (subprocess.run, as many at once as the side runs tasks at once), and the per-task overhead
    = (wall - bare commands) / tasks, which is what the server and its launcher add per task,
    amortized over the tasks running at once.
(b) a fan-out of --fan-out tasks of `sleep --sleep`, Ray launcher on the cluster against the
    local launcher with --max-parallel-tasks --local-parallel. Printed: the makespan (the run's
    wall time) against the ideal, ceil(fan-out / slots) x sleep.
Both print the Ray nodes the tasks ran on (from each task's "ran on Ray node" note).

The servers, the Ray nodes and their workers all share this machine's cores. The load average
before and after is printed: other work on the machine slows both sides.
"""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import grpc
import ray
import yaml
from google.protobuf import struct_pb2
from kfp import compiler, dsl
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_execution import TERMINAL  # noqa: E402
from bench.harness import Server  # noqa: E402
from kfpgrpc.v1 import common_pb2, run_pb2, run_pb2_grpc  # noqa: E402

RAY_NODE_NOTE = "ran on Ray node "
POLL_SECONDS = 0.1  # GetRun, until the run has ended


@dsl.container_component
def run_command(program: str, item: str):
    return dsl.ContainerSpec(image="busybox", command=[program, item])


@dsl.pipeline(name="fan-out")
def fan_out(program: str, items: List[str]):
    with dsl.ParallelFor(items) as item:
        run_command(program=program, item=item).set_caching_options(False)


@dataclass
class Side:
    """One server's figures: its label, how many tasks it runs at once, and its timings (s)."""

    label: str
    slots: int
    warm_up: float = 0.0
    trivial: float = 0.0  # wall time of the run of --tasks trivial tasks
    bare: float = 0.0  # the same commands run from this process, `slots` at once
    fan_out: float = 0.0  # wall time of the fan-out run
    trivial_nodes: set[str] = field(default_factory=set)  # Ray nodes the trivial run's tasks ran on
    fan_out_nodes: set[str] = field(default_factory=set)


def bare_commands(program: str, items: List[str], slots: int) -> float:
    """Seconds to run `program ITEM` for each item, `slots` at once, from this process."""
    started = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(lambda item: subprocess.run([program, item], check=True), items))
    return time.perf_counter() - started


async def timed_run(address: str, spec: struct_pb2.Struct, program: str, items: List[str]) -> tuple[float, set[str]]:
    """(the run's wall time in seconds, the Ray nodes its tasks ran on) of one run of `fan_out`
    with `program` over `items`; RuntimeError unless it SUCCEEDED with a task per item.

    Wall time is the server's own record, created_at to finished_at. The end is waited for by
    polling GetRun, not by WatchRun: WatchRun sends the whole run (every task) at each task's
    change, which for hundreds of tasks costs the server more than the tasks do (a run of 100
    trivial tasks, measured: watched, 404 snapshots, 11.3 s and 9.2 s of server CPU; polled,
    1.75 s and 1.2 s), and that is not the launcher's cost."""
    parameters = struct_pb2.Struct()
    parameters.update({"program": program, "items": items})
    async with grpc.aio.insecure_channel(address) as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        run = await runs.CreateRun(run_pb2.CreateRunRequest(run=run_pb2.Run(
            display_name="bench", pipeline_spec=spec, runtime_config=common_pb2.RuntimeConfig(parameters=parameters.fields))))
        while (run := await runs.GetRun(run_pb2.GetRunRequest(run_id=run.run_id))).state not in TERMINAL:
            await asyncio.sleep(POLL_SECONDS)
    ran = [task for task in run.run_details.task_details if task.display_name == "run-command" and task.state == common_pb2.SUCCEEDED]
    if run.state != common_pb2.SUCCEEDED or len(ran) != len(items):  # a run that skipped tasks is not fast
        raise RuntimeError(f"run {run.run_id} ended {common_pb2.RuntimeState.Name(run.state)} with {len(ran)} of "
                           f"{len(items)} tasks succeeded: {run.error.message}")
    notes = [note for task in ran for note in task.notes]
    seconds = (run.finished_at.ToNanoseconds() - run.created_at.ToNanoseconds()) / 1e9
    return seconds, {note.removeprefix(RAY_NODE_NOTE).split()[0] for note in notes if note.startswith(RAY_NODE_NOTE)}


def measure(side: Side, address: str, spec: struct_pb2.Struct, options: argparse.Namespace, trivial: bool, fan: bool) -> None:
    """On `side`'s server: a warm-up run, then the trivial run and the bare commands (`trivial`)
    and the fan-out run (`fan`)."""
    side.warm_up, _ = asyncio.run(timed_run(address, spec, "true", [str(i) for i in range(side.slots)]))
    if trivial:
        items = [str(i) for i in range(options.tasks)]
        side.trivial, side.trivial_nodes = asyncio.run(timed_run(address, spec, "true", items))
        side.bare = bare_commands("true", items, side.slots)
    if fan:
        side.fan_out, side.fan_out_nodes = asyncio.run(timed_run(address, spec, "sleep", [f"{options.sleep:g}"] * options.fan_out))


def table(title: str, sides: List[Side], rows: List[tuple[str, Callable[[Side], object]]]) -> None:
    """Print `rows` of (label, function of a Side giving its cell) with one column per side."""
    print(title)
    print(f"  {'':<44}" + "".join(f"{side.label:>32}" for side in sides))
    for label, cell in rows:
        print(f"  {label:<44}" + "".join(f"{cell(side):>32}" for side in sides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="trivial tasks of (a)")
    parser.add_argument("--fan-out", type=int, default=20, help="tasks of (b)")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each task of (b) sleeps")
    parser.add_argument("--local-parallel", type=int, default=2, help="--max-parallel-tasks of the local side of (b)")
    parser.add_argument("--nodes", type=int, default=2, help="nodes of the Ray cluster")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 trivial tasks, a fan-out of 6 x 0.2 s")
    options = parser.parse_args()
    if options.quick:
        options.tasks, options.fan_out, options.sleep = 8, 6, 0.2
    cpus = options.nodes * options.cpus_per_node
    print(f"{len(os.sched_getaffinity(0))} cores, shared by every server, Ray node and task. "
          f"Load average before: {os.getloadavg()[0]:.2f}. Ray {ray.__version__}, cluster of "
          f"{options.nodes} nodes x {options.cpus_per_node} CPUs on 127.0.0.1.")
    local_a = Side(f"local, --max-parallel-tasks {cpus}", cpus)
    local_b = Side(f"local, --max-parallel-tasks {options.local_parallel}", options.local_parallel)
    on_ray = Side(f"ray, {cpus} CPUs", cpus)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "fan-out.yaml"
        compiler.Compiler().compile(fan_out, package_path=str(package))
        spec = struct_pb2.Struct()
        spec.update(yaml.safe_load(package.read_text()))
        cluster = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": options.cpus_per_node, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        try:
            for _ in range(options.nodes - 1):
                cluster.add_node(num_cpus=options.cpus_per_node, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
            with Server(Path(tmp) / "ray", "--launcher", "ray", "--ray-address", cluster.address) as server:
                measure(on_ray, server.address, spec, options, trivial=True, fan=True)
        finally:
            cluster.shutdown()
        for side, trivial in ((local_a, True), (local_b, False)):
            with Server(Path(tmp) / f"local-{'a' if trivial else 'b'}", "--max-parallel-tasks", str(side.slots)) as server:
                measure(side, server.address, spec, options, trivial=trivial, fan=not trivial)
    print(f"Load average after: {os.getloadavg()[0]:.2f}.")
    print("A task: one container task, a dsl.ParallelFor iteration running `PROGRAM ITEM`. Wall: the run's created_at\n"
          "to finished_at. Bare: the same commands run from this process (subprocess.run), as many at once as the side runs.\n"
          "Overhead / task: what the server and its launcher add per task, amortized over the tasks running at once.")
    table(f"(a) {options.tasks} trivial tasks (`true ITEM`)", [local_a, on_ray], [
        ("tasks at once", lambda s: s.slots),
        ("warm-up run of as many tasks (s)", lambda s: f"{s.warm_up:.2f}"),
        ("wall (s)", lambda s: f"{s.trivial:.2f}"),
        ("tasks/s = tasks / wall", lambda s: f"{options.tasks / s.trivial:.1f}"),
        ("wall / task (ms)", lambda s: f"{1000 * s.trivial / options.tasks:.1f}"),
        ("bare commands, as many at once (s)", lambda s: f"{s.bare:.2f}"),
        ("overhead / task = (wall - bare) / tasks (ms)", lambda s: f"{1000 * (s.trivial - s.bare) / options.tasks:.1f}"),
        ("Ray nodes the tasks ran on", lambda s: len(s.trivial_nodes) or "-"),
    ])
    ideal = {side.label: math.ceil(options.fan_out / side.slots) * options.sleep for side in (local_b, on_ray)}
    table(f"(b) fan-out of {options.fan_out} tasks of `sleep {options.sleep:g}`", [local_b, on_ray], [
        ("tasks at once", lambda s: s.slots),
        ("makespan (s)", lambda s: f"{s.fan_out:.2f}"),
        ("ideal = ceil(tasks / at once) x sleep (s)", lambda s: f"{ideal[s.label]:.2f}"),
        ("makespan - ideal (s)", lambda s: f"{s.fan_out - ideal[s.label]:.2f}"),
        ("Ray nodes the tasks ran on", lambda s: len(s.fan_out_nodes) or "-"),
    ])


if __name__ == "__main__":
    main()
