"""Events benchmark: latency from a run's completion to each WatchEvents watcher receiving its RUN_COMPLETED event.

    python bench/bench_events.py [--watchers 1,100,1000] [--runs 50] [--channels 10]
        [--client-processes 1] [--anchor b22ec75] [--grpc-floor on] [--rounds 2]
        [--poll-intervals 1,5] [--pollers 200] [--poll-runs 3]

Two `kfpgrpc serve` subprocesses (bench/harness.py): this tree's ("new") and the --anchor
commit's (extracted with bench/harness.py checkout; 'none' for this tree alone), up at the
same time, and with --grpc-floor on a third server, "grpc.aio": bench/grpc_floor.py, a bare
grpc.aio server with the WatchEvents method alone, which sends a RUN_COMPLETED stamped on
request to every open stream (no run, database, filter or interceptor: gRPC Python's own
cost of the fan-out, the floor under kfpgrpc's). Each row of part 1 runs --rounds times on
each, interleaved (new, anchor, grpc.aio, new, ...), so that all see the same load of this
shared machine; part 2 runs on the new server only. On the kfpgrpc servers every run is the
"instant-pipeline" of tests/pipelines.py (one busybox container task that exits at once,
compiled by the kfp SDK).

1. Watchers. For each watcher count N, N WatchEvents streams, each filtered on a fresh
   experiment and on RUN_COMPLETED, spread round-robin over min(N, --channels) channels,
   which are split among P client processes: a row for each P of --client-processes up to
   the channel count, so that one can see whether the client side keeps up (the client
   processes' CPU per run is printed next to the server's). Every stream is open (its headers
   received) before the first run. Then --runs runs of that experiment, one at a time: a run
   is created once every watcher has received the previous one's completion (plus one
   warm-up run, not counted); on the grpc.aio floor, a completion is requested instead. Latency = the watcher's time.time_ns() when the event is handed
   to it, minus the event's run_completed.end_time (the run's finished_at, stamped by the
   server's clock on this machine before it commits the run's end with its events). Printed
   per row: p50/p99/max over every (run, watcher) pair; "first" = per completion, the latency
   of the first watcher served (the server's path alone: the commit, the hand-off to the
   watchers, one message sent and decoded); "fan-out" = per completion, last watcher minus
   first (the cost of N messages); the CPU per run of the server process (creation, execution
   and delivery; not the task processes) and of the client processes.
2. Polling, what KFP users do today (the SDK's `wait_for_run_completion` calls GetRun, then
   sleeps its interval, 5 s by default): --pollers pollers per interval of --poll-intervals,
   each starting at a random offset within its interval, poll GetRun of one run whose task
   waits for a gate file; the gate is opened once every poller has made its first call, so
   the completion falls at a uniformly random point of each poller's cycle. Latency = when
   the poller's GetRun returns the terminal state, minus the run's finished_at. Measured over
   --poll-runs runs, printed next to the expectation (a uniform wait: p50 = interval / 2).

At the defaults the script takes about 90 s on 2 cores. The servers' commits are
printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kfpgrpc.v1 import event_pb2, event_pb2_grpc  # noqa: E402

ANCHOR = "b22ec75"  # main before issue 16's event fan-out work: the anchor of docs/benchmarks.md's figures
FLOOR_RUN_SECONDS = 0.008  # a completion requested on the grpc.aio floor waits this long first
REPORT_TIMEOUT = 120  # seconds a completion may take to reach every watcher before the bench gives up


# -- watcher client process (imports only the event stubs) -------------------------------------


async def watch_child(address: str, experiment_id: str, watchers: int, channels: int) -> None:
    """Open `watchers` streams over `channels` channels; print a line once all are open, then
    one line per run once every stream has received its completion, with this process's CPU
    time so far, or a line saying a stream ended (stdin's EOF ends the process)."""
    opened = [grpc.aio.insecure_channel(address) for _ in range(channels)]
    request = event_pb2.WatchEventsRequest(experiment_id=experiment_id, types=[event_pb2.RUN_COMPLETED])
    calls = [event_pb2_grpc.EventServiceStub(opened[index % channels]).WatchEvents(request) for index in range(watchers)]
    await asyncio.gather(*(call.wait_for_connection() for call in calls))
    print(json.dumps({"ready": True}), flush=True)
    latencies_by_run: dict[str, list[int]] = {}

    async def follow(call: grpc.aio.UnaryStreamCall) -> None:
        async for event in call:
            received = time.time_ns() // 1000
            latencies = latencies_by_run.setdefault(event.run_id, [])
            latencies.append(received - event.run_completed.end_time.ToMicroseconds())
            if len(latencies) == watchers:
                print(json.dumps({"run_id": event.run_id, "latencies_us": latencies_by_run.pop(event.run_id),
                                  "cpu_seconds": time.process_time()}), flush=True)

    followers = [asyncio.ensure_future(follow(call)) for call in calls]
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    done, _ = await asyncio.wait([stdin_closed, *followers], return_when=asyncio.FIRST_COMPLETED)
    if stdin_closed not in done:  # a stream ended under a running bench: say so rather than let it wait
        print(json.dumps({"error": f"a watch stream ended: {next(iter(done)).exception()!r}"}), flush=True)
        await stdin_closed
    for call in calls:
        call.cancel()
    await asyncio.gather(*followers, return_exceptions=True)
    for channel in opened:
        await channel.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--watch-child"]:
    address, experiment_id, watchers, channels = sys.argv[2:6]
    asyncio.run(watch_child(address, experiment_id, int(watchers), int(channels)))
    sys.exit(0)


# -- the benchmark -----------------------------------------------------------------------------

from bench.bench_recurring import cpu_seconds, revision, sizes  # noqa: E402
from bench.bench_runs import upload  # noqa: E402
from bench.harness import Latencies, Server, checkout, commit_of  # noqa: E402
from kfpgrpc.v1 import common_pb2, experiment_pb2  # noqa: E402
from kfpgrpc.v1 import run_pb2 as pb  # noqa: E402
from kfpgrpc.v1.pipeline_pb2 import PipelineVersion  # noqa: E402
from tests.pipelines import compile_pipeline, instant_pipeline  # noqa: E402
from tests.support import Stubs, run_of  # noqa: E402

TERMINAL = {common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED}


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal whole shares."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def percentiles(latencies: Latencies) -> str:
    return f"{latencies.ms(0.5):9.1f} {latencies.ms(0.99):9.1f} {latencies.ms(1.0):9.1f}"


async def spawn_watchers(address: str, experiment_id: str, watchers: int, channels: int, processes: int) -> list[asyncio.subprocess.Process]:
    children = []
    for child_watchers, child_channels in zip(shares(watchers, processes), shares(channels, processes)):
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--watch-child", address, experiment_id,
            str(child_watchers), str(child_channels),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        ))
    for child in children:
        await report(child)
    return children


async def report(child: asyncio.subprocess.Process) -> dict:
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), REPORT_TIMEOUT)
    if not line:
        raise RuntimeError(f"watcher process exited ({await child.wait()}) without reporting")
    reported = json.loads(line)
    if "error" in reported:
        raise RuntimeError(reported["error"])
    return reported


async def completion(side: Side, experiment_id: str, children: list[asyncio.subprocess.Process], name: str) -> list[dict]:
    """Complete a run in the watched experiment; return each watcher process's report of its completion."""
    run_id = await side.complete(experiment_id, name)
    reports = await asyncio.gather(*(report(child) for child in children))
    if {r["run_id"] for r in reports} != {run_id}:
        raise RuntimeError(f"expected completions of {run_id}, the watchers reported {reports}")
    return reports


async def watcher_latencies(
    side: Side, watchers: int, channels: int, processes: int, runs: int, round_: int
) -> None:
    experiment_id = await side.new_experiment(f"watched-by-{watchers}-from-{processes}-processes-{round_}")
    children = await spawn_watchers(side.address, experiment_id, watchers, channels, processes)
    every, first, fan_out = Latencies([]), Latencies([]), Latencies([])
    try:
        # Not counted: the first run on a fresh experiment, which also proves that every stream delivers.
        reports = await completion(side, experiment_id, children, "warm-up")
        server_cpu, client_cpu = cpu_seconds(side.pid), sum(r["cpu_seconds"] for r in reports)
        for index in range(runs):
            reports = await completion(side, experiment_id, children, f"watched-{index}")
            seconds = sorted(us / 1e6 for r in reports for us in r["latencies_us"])
            every.seconds += seconds
            first.seconds.append(seconds[0])
            fan_out.seconds.append(seconds[-1] - seconds[0])
        server_ms = 1000 * (cpu_seconds(side.pid) - server_cpu) / runs
        client_ms = 1000 * (sum(r["cpu_seconds"] for r in reports) - client_cpu) / runs
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            await child.wait()
    print(f"{side.label:<8} {watchers:>8,} {channels:>8} {len(children):>9}   {percentiles(every)}   {first.ms(0.5):9.1f} {fan_out.ms(0.5):9.1f}"
          f" {fan_out.ms(1.0):9.1f}   {server_ms:9.1f} {client_ms:9.1f} {len(every.seconds):>8,}")


async def poll_until_finished(stubs: Stubs, run_id: str, interval: float) -> float:
    """`wait_for_run_completion`'s loop from a random point of its cycle; return the seconds
    from the run's finish to this poller seeing it."""
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        run = await stubs.runs.GetRun(pb.GetRunRequest(run_id=run_id))
        if run.state in TERMINAL:
            return time.time_ns() / 1e9 - run.finished_at.ToMicroseconds() / 1e6
        await asyncio.sleep(interval)


async def polling_latencies(stubs: Stubs, version: PipelineVersion, intervals: list[int], pollers: int, runs: int, gates: Path) -> None:
    by_interval: dict[int, Latencies] = {interval: Latencies([]) for interval in intervals}
    for index in range(runs):
        gate = gates / f"gate-{index}"
        run = await stubs.runs.CreateRun(pb.CreateRunRequest(run=run_of(version, f"polled-{index}", gate=str(gate))))
        polls = {interval: [asyncio.ensure_future(poll_until_finished(stubs, run.run_id, interval)) for _ in range(pollers)]
                 for interval in intervals}
        await asyncio.sleep(max(intervals))  # every poller has made its first call
        gate.touch()
        for interval, tasks in polls.items():
            by_interval[interval].seconds += await asyncio.gather(*tasks)
    for interval, latencies in by_interval.items():
        print(f"{'GetRun every ' + str(interval) + ' s':<28}   {percentiles(latencies)}   expected (uniform wait):"
              f" p50 {500 * interval:.0f}, p99 {990 * interval:.0f}, max {1000 * interval:.0f} ms  (n={len(latencies.seconds):,})")


@dataclass
class Side:
    """One server under test: this tree's ("new"), the anchor commit's, or the grpc.aio floor."""

    label: str
    address: str
    pid: int
    new_experiment: Callable[[str], Awaitable[str]]  # display name -> experiment id
    complete: Callable[[str, str], Awaitable[str]]  # (experiment id, run name) -> the id of the run that completes


async def kfpgrpc_side(label: str, server: Server, channel: grpc.aio.Channel, spec: dict) -> tuple[Side, Stubs, PipelineVersion]:
    """A kfpgrpc server's side: experiments and runs of the uploaded `spec` are real; also its stubs and the version."""
    stubs, version = Stubs.on(channel), await upload(channel, spec)

    async def new_experiment(name: str) -> str:
        experiment = await stubs.experiments.CreateExperiment(experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(display_name=name)))
        return experiment.experiment_id

    async def complete(experiment_id: str, name: str) -> str:
        message = run_of(version, name)
        message.experiment_id = experiment_id
        return (await stubs.runs.CreateRun(pb.CreateRunRequest(run=message))).run_id

    return Side(label, server.address, server.process.pid, new_experiment, complete), stubs, version


def floor_side(address: str, pid: int, channel: grpc.aio.Channel) -> Side:
    """The grpc.aio floor's side: a "run" completes when asked to (bench/grpc_floor.py)."""
    fire = channel.unary_unary("/floor.Floor/Complete")

    async def new_experiment(name: str) -> str:
        return name  # the floor ignores filters: only this row's watchers are open

    async def complete(experiment_id: str, name: str) -> str:
        # Standing in for the run itself: on kfpgrpc an instant-pipeline run takes about 8 ms
        # from CreateRun to its completion, measured with one watcher.
        await asyncio.sleep(FLOOR_RUN_SECONDS)
        await fire(name.encode())
        return name

    return Side("grpc.aio", address, pid, new_experiment, complete)


@contextlib.contextmanager
def floor_server() -> Iterator[tuple[str, int]]:
    """bench/grpc_floor.py running: its address and process id."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "grpc_floor.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        if not address:
            raise RuntimeError("the grpc.aio floor server did not start")
        yield address, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


async def bench(servers: list[tuple[str, Server]], floor: tuple[str, int] | None, spec: dict, args: argparse.Namespace,
                gates: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        sides, polled = [], None
        for label, server in servers:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.address))
            side, stubs, version = await kfpgrpc_side(label, server, channel, spec)
            sides.append(side)
            polled = polled or (side.label, stubs, version)
        if floor is not None:
            sides.append(floor_side(*floor, await stack.enter_async_context(grpc.aio.insecure_channel(floor[0]))))
        print(f"1. Watchers: {args.runs} runs per row, one at a time; latency = receive time - run_completed.end_time (ms);"
              f" each row {args.rounds}x, the servers interleaved")
        print(f"{'server':<8} {'watchers':>8} {'channels':>8} {'processes':>9}   {'p50':>9} {'p99':>9} {'max':>9}"
              f"   {'first p50':>9} {'fan-out':>9} {'fan-out':>9}   {'server':>9} {'clients':>9} {'samples':>8}")
        print(f"{'':<8} {'':>8} {'':>8} {'':>9}   {'':>9} {'':>9} {'':>9}   {'':>9} {'p50':>9} {'max':>9}   {'CPU/run':>9} {'CPU/run':>9}")
        for watchers in args.watchers:
            channels = min(watchers, args.channels)
            for processes in args.client_processes:
                if processes <= channels:
                    for round_ in range(args.rounds):
                        for side in sides:
                            await watcher_latencies(side, watchers, channels, processes, args.runs, round_)
        if args.poll_runs and polled is not None:
            label, stubs, version = polled
            print(f"2. Polling GetRun ({label} server): {args.pollers} pollers per interval, {args.poll_runs} runs (ms)")
            await polling_latencies(stubs, version, args.poll_intervals, args.pollers, args.poll_runs, gates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=sizes, default=[1, 100, 1000], help="watcher counts, one row each")
    parser.add_argument("--runs", type=int, default=50, help="measured runs per row, after one warm-up run")
    parser.add_argument("--channels", type=int, default=10, help="channels the watchers are spread over (at most one per watcher)")
    parser.add_argument("--client-processes", type=sizes, default=[1],
                        help="client processes sharing the channels; a list gives a row per value (at most one per channel)")
    parser.add_argument("--anchor", default=ANCHOR,
                        help="commit whose server runs the same rows in the same run, interleaved ('none': this tree only)")
    parser.add_argument("--grpc-floor", choices=["on", "off"], default="on",
                        help="also run each row on bench/grpc_floor.py, a bare grpc.aio server: gRPC Python's own cost of the fan-out")
    parser.add_argument("--rounds", type=int, default=2, help="times each row runs on each server, interleaved")
    parser.add_argument("--poll-intervals", type=sizes, default=[1, 5], help="GetRun polling intervals, seconds")
    parser.add_argument("--pollers", type=int, default=200, help="pollers per interval")
    parser.add_argument("--poll-runs", type=int, default=3, help="runs the pollers wait for, one at a time (0: no polling)")
    args = parser.parse_args()
    begun = time.perf_counter()
    print(f"server code: new = {revision()[0]}" + ("" if args.anchor == "none" else f"; anchor = {commit_of(args.anchor)}"))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        spec = compile_pipeline(instant_pipeline, Path(tmp) / "instant.yaml")
        servers = [("new", stack.enter_context(Server(Path(tmp) / "server")))]
        if args.anchor != "none":
            source = checkout(args.anchor, Path(tmp) / "anchor")
            servers.append((commit_of(args.anchor), stack.enter_context(Server(Path(tmp) / "anchor-server", source=source))))
        floor = stack.enter_context(floor_server()) if args.grpc_floor == "on" else None
        asyncio.run(bench(servers, floor, spec, args, Path(tmp)))
    print(f"total {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
