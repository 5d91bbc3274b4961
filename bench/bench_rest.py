"""REST vs gRPC benchmark: GetRun and ListRuns through KFP's v2beta1 JSON API and through gRPC.

    python bench/bench_rest.py [--runs 2000] [--seconds 4] [--rounds 2] [--quick]

One `kfpgrpc serve` subprocess serves gRPC and HTTP on free ports of 127.0.0.1. --runs
SUCCEEDED runs with two tasks each are bulk-loaded into its SQLite file (bench_runs.py's
loader) while it is stopped, so list pages are full. Then, for each operation

- GetRun of those runs, in turn;
- ListRuns, first page of 20 (default sort, `created_at desc`);
- ListRuns, page of 100 at the middle of the list (a `page_token` from walking there);

each protocol is driven for --seconds in total (a closed loop: a client sends its next
request when its previous one is answered) by 1 and by 50 concurrent clients:

- gRPC: grpc.aio stubs over one channel (HTTP/2, the calls of 50 clients multiplexed);
- REST (httpx): one httpx.AsyncClient per client, HTTP/1.1 with keep-alive (one connection each,
  opened in each slice: see rest_slice);
- REST (kfp.Client): what a KFP user calls, kfp-server-api over urllib3, synchronous (in a
  thread); 1 client, GetRun and the first page only.

The protocols of one operation and client count take turns, --rounds slices of --seconds /
--rounds each, so that a change in the machine's other load falls on all of them alike. The
client load runs in this process and the server in its subprocess, on the same cores; the
CPU time each used per request is printed too. Every response is checked (HTTP status, page
length), so errors do not count as fast answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import kfp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_runs import bulk_load, experiments  # noqa: E402
from bench.harness import Latencies, Server  # noqa: E402
from kfpgrpc.v1 import run_pb2 as pb  # noqa: E402
from kfpgrpc.v1 import run_pb2_grpc  # noqa: E402

RUNS = "/apis/v2beta1/runs"
DEEP_PAGE_SIZE = 100
GRPC, HTTPX, KFP_CLIENT = "gRPC", "REST (httpx)", "REST (kfp.Client)"

AsyncCall = Callable[[int], Awaitable[object]]  # one client's request number `index`
SyncCall = Callable[[int], object]


@dataclass
class Result:
    """One protocol's figures for one operation and client count, summed over its slices."""

    operation: str
    clients: int
    protocol: str
    seconds: float = 0.0
    latencies: Latencies = field(default_factory=lambda: Latencies([]))
    server_cpu: float = 0.0  # seconds of the server process (user + system, all threads)
    client_cpu: float = 0.0  # seconds of this process

    @property
    def rate(self) -> float:
        return len(self.latencies.seconds) / self.seconds

    def cpu_ms(self, seconds: float) -> float:
        return 1000 * seconds / max(1, len(self.latencies.seconds))


class CpuMeter:
    """CPU seconds of the server process (/proc/PID/stat utime + stime) and of this process."""

    def __init__(self, server_pid: int) -> None:
        self._stat = Path(f"/proc/{server_pid}/stat")
        self._tick = os.sysconf("SC_CLK_TCK")

    def now(self) -> tuple[float, float]:
        """(server, this process) CPU seconds so far."""
        # utime and stime are fields 14 and 15; counted after the ")" that ends the command name.
        fields = self._stat.read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / self._tick, time.process_time()


@dataclass
class Targets:
    """What the requests ask for: every run id, the deep page's token and its first row."""

    run_ids: list[str]
    deep_token: str
    deep_row: int


async def for_duration(calls: list[AsyncCall], seconds: float, latencies: list[float]) -> None:
    """Each of `calls` (one per client) in a closed loop until `seconds` have passed (a request
    sent before then is waited for); their latencies appended to `latencies`."""
    deadline = time.perf_counter() + seconds

    async def client(call: AsyncCall, index: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)
            index += len(calls)

    await asyncio.gather(*(client(call, offset) for offset, call in enumerate(calls)))


def sync_for_duration(call: SyncCall, seconds: float, latencies: list[float]) -> None:
    """for_duration() of one client's synchronous calls."""
    deadline, index = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        call(index)
        latencies.append(time.perf_counter() - started)
        index += 1


async def targets(address: str, rows: int) -> Targets:
    """Every run id (walking pages of 100) and the token of the page at the middle of the list."""
    deep_row = (rows // 2) // DEEP_PAGE_SIZE * DEEP_PAGE_SIZE
    async with grpc.aio.insecure_channel(address) as channel:
        stub = run_pb2_grpc.RunServiceStub(channel)
        run_ids: list[str] = []
        token, deep_token = "", ""
        while True:
            if len(run_ids) == deep_row:
                deep_token = token
            page = await stub.ListRuns(pb.ListRunsRequest(page_size=DEEP_PAGE_SIZE, page_token=token))
            run_ids += [run.run_id for run in page.runs]
            token = page.next_page_token
            if not token:
                return Targets(run_ids, deep_token, deep_row)


def expect_page(runs: int, size: int) -> None:
    if runs != size:
        raise RuntimeError(f"a page of {runs} runs, not {size}")


def grpc_calls(stub: run_pb2_grpc.RunServiceStub, goal: Targets) -> dict[str, AsyncCall]:
    ids = goal.run_ids

    async def get(index: int) -> None:
        await stub.GetRun(pb.GetRunRequest(run_id=ids[index % len(ids)]))

    async def first(index: int) -> None:
        expect_page(len((await stub.ListRuns(pb.ListRunsRequest(page_size=20))).runs), 20)

    async def deep(index: int) -> None:
        page = await stub.ListRuns(pb.ListRunsRequest(page_size=DEEP_PAGE_SIZE, page_token=goal.deep_token))
        expect_page(len(page.runs), DEEP_PAGE_SIZE)

    return {"GetRun": get, "ListRuns first 20": first, "ListRuns deep 100": deep}


def httpx_calls(client: httpx.AsyncClient, goal: Targets) -> dict[str, AsyncCall]:
    ids = goal.run_ids

    async def get(index: int) -> None:
        (await client.get(f"{RUNS}/{ids[index % len(ids)]}")).raise_for_status()

    async def first(index: int) -> None:
        response = await client.get(RUNS, params={"page_size": 20})
        expect_page(len(response.raise_for_status().json()["runs"]), 20)

    async def deep(index: int) -> None:
        response = await client.get(RUNS, params={"page_size": DEEP_PAGE_SIZE, "page_token": goal.deep_token})
        expect_page(len(response.raise_for_status().json()["runs"]), DEEP_PAGE_SIZE)

    return {"GetRun": get, "ListRuns first 20": first, "ListRuns deep 100": deep}


def kfp_client_calls(user: kfp.Client, goal: Targets) -> dict[str, SyncCall]:
    ids = goal.run_ids
    return {
        "GetRun": lambda index: user.get_run(ids[index % len(ids)]),
        "ListRuns first 20": lambda index: expect_page(len(user.list_runs(page_size=20).runs), 20),
    }


@dataclass
class Meter:
    """Adds a slice's wall time, requests and CPU times to a Result."""

    cpu: CpuMeter

    @contextlib.contextmanager
    def slice(self, result: Result) -> Iterator[list[float]]:
        """Times the block, which appends its latencies to the list it is given."""
        (server_before, client_before), started = self.cpu.now(), time.perf_counter()
        yield result.latencies.seconds
        server_after, client_after = self.cpu.now()
        result.seconds += time.perf_counter() - started
        result.server_cpu += server_after - server_before
        result.client_cpu += client_after - client_before


async def rest_slice(url: str, goal: Targets, operation: str, clients: int, seconds: float, meter: Meter, result: Result) -> None:
    """A timed slice of `operation` over REST from `clients` httpx clients, one connection each,
    made for this slice (before its clock starts; each connects on its first request): uvicorn
    closes a connection idle for 5 s (its timeout_keep_alive), and a request sent on it as it
    closes fails (urllib3, kfp.Client's, retries that; httpx does not)."""
    async with contextlib.AsyncExitStack() as stack:
        rest = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=60))
            for _ in range(clients)
        ]
        with meter.slice(result) as latencies:
            await for_duration([httpx_calls(client, goal)[operation] for client in rest], seconds, latencies)


async def measure(server: Server, goal: Targets, seconds: float, rounds: int, client_counts: list[int]) -> list[Result]:
    """Every (operation, clients, protocol), printed as each (operation, clients) is done."""
    meter = Meter(CpuMeter(server.process.pid))
    results: list[Result] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # kfp.Client's "This client only works with ..."
        by_kfp_client = kfp_client_calls(kfp.Client(host=server.http_url), goal)  # it calls healthz: connected
    async with grpc.aio.insecure_channel(server.address) as channel:
        by_grpc = grpc_calls(run_pb2_grpc.RunServiceStub(channel), goal)
        for operation, call in by_grpc.items():  # warm-up: each path taken once by each protocol
            await call(0)
            await rest_slice(server.http_url, goal, operation, 1, 0.001, meter, Result(operation, 1, HTTPX))
            if operation in by_kfp_client:
                await asyncio.to_thread(by_kfp_client[operation], 0)
        for operation in by_grpc:
            for clients in client_counts:
                cell = {protocol: Result(operation, clients, protocol) for protocol in (GRPC, HTTPX)}
                if clients == 1 and operation in by_kfp_client:
                    cell[KFP_CLIENT] = Result(operation, clients, KFP_CLIENT)
                for _ in range(rounds):
                    for protocol, result in cell.items():
                        if protocol == HTTPX:
                            await rest_slice(server.http_url, goal, operation, clients, seconds / rounds, meter, result)
                            continue
                        with meter.slice(result) as latencies:
                            if protocol == GRPC:
                                await for_duration([by_grpc[operation]] * clients, seconds / rounds, latencies)
                            else:
                                await asyncio.to_thread(sync_for_duration, by_kfp_client[operation], seconds / rounds, latencies)
                for result in cell.values():
                    print_row(result, cell[GRPC])
                results += cell.values()
    return results


HEADER = (f"{'operation':<18} {'clients':>7}  {'protocol':<18} {'req/s':>6} {'vs gRPC':>7} {'p50 ms':>7} {'p99 ms':>7} {'n':>6}"
          f"  {'server CPU ms/req':>17} {'client CPU ms/req':>17}")


def print_row(result: Result, grpc_result: Result) -> None:
    """A row of the table; a REST row with its rate as a multiple of gRPC's."""
    ratio = f"{result.rate / grpc_result.rate:.2f}×" if result is not grpc_result else ""
    print(f"{result.operation:<18} {result.clients:>7}  {result.protocol:<18} {result.rate:>6.0f} {ratio:>7} "
          f"{result.latencies.ms(0.50):>7.2f} {result.latencies.ms(0.99):>7.2f} {len(result.latencies.seconds):>6}"
          f"  {result.cpu_ms(result.server_cpu):>17.2f} {result.cpu_ms(result.client_cpu):>17.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs in the store (two tasks each)")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each protocol is driven per row")
    parser.add_argument("--rounds", type=int, default=2, help="the slices those seconds are taken in, protocols in turn")
    parser.add_argument("--clients", type=int, default=50, help="the concurrent clients of the second level")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 runs, 0.3 s per row in 1 round, 1 and 5 clients")
    args = parser.parse_args()
    runs, seconds, rounds, client_counts = (300, 0.3, 1, [1, 5]) if args.quick else (args.runs, args.seconds, args.rounds, [1, args.clients])
    if runs < 2 * DEEP_PAGE_SIZE:
        parser.error(f"--runs must be at least {2 * DEEP_PAGE_SIZE} (a deep page of {DEEP_PAGE_SIZE})")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "server"
        with Server(data) as server:  # creates the schema and two experiments
            experiment_ids = asyncio.run(experiments(server.address))
        bulk_load(data / "kfpgrpc.db", runs, experiment_ids)
        with Server(data, http=True) as server:
            goal = asyncio.run(targets(server.address, runs))
            print(f"{runs:,} runs, two tasks each. Deep page: rows {goal.deep_row:,}-{goal.deep_row + DEEP_PAGE_SIZE - 1:,}. "
                  f"{seconds:g} s per row in {rounds} slice(s), protocols in turn, after a warm-up.")
            print(f"{len(os.sched_getaffinity(0))} cores, shared by the clients (this process: one event loop, a thread "
                  f"for kfp.Client) and the server (a subprocess). Load average before: {os.getloadavg()[0]:.2f}.")
            print(HEADER)
            asyncio.run(measure(server, goal, seconds, rounds, client_counts))
            print(f"Load average after: {os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
