"""Shared benchmark plumbing: a real `kfpgrpc serve` subprocess, timing and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Server:
    """`kfpgrpc serve` on a free port with its own data directory, allowing schedules a
    second apart (the benchmarks use seconds cron). With `http`, KFP's REST API too, on a free
    port of 127.0.0.1 (`http_url`, "http://127.0.0.1:PORT"); else `http_url` is ""."""

    def __init__(
        self, data_dir: Path, *extra_args: str, http: bool = False, source: Path | None = None, log: Path | None = None
    ) -> None:
        """`source`: a checkout whose kfpgrpc serves (see `checkout`); default this one.
        `log`: a file that gets the server's log at level info (default: warnings to stderr)."""
        http_listen = "127.0.0.1:0" if http else "off"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source), *filter(None, [env.get("PYTHONPATH")])])
        with log.open("a") if log else contextlib.nullcontext() as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--http-listen", http_listen,
                 "--data-dir", str(data_dir), "--log-level", "info" if log else "warning", "--min-interval-seconds", "1",
                 *extra_args],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=source,
            )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().removeprefix("listening on ").strip()
        if not self.address:
            raise RuntimeError("server did not start")
        self.http_url = self.process.stdout.readline().removeprefix("listening for HTTP on ").strip() if http else ""
        if http and not self.http_url:
            raise RuntimeError("the HTTP server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


REPO = Path(__file__).resolve().parent.parent


def commit_of(revision: str = "HEAD") -> str:
    """The short commit id of `revision` in this repository."""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", revision], capture_output=True, text=True, check=True).stdout.strip()


def checkout(revision: str, into: Path) -> Path:
    """The source tree of `revision` (e.g. "HEAD~1", the anchor "previous commit" of a
    benchmark) extracted into `into`/<commit>, for `Server(source=...)`: its kfpgrpc package
    runs with this environment's dependencies. The generated protobuf modules are part of the
    tree, so nothing is built."""
    target = into / commit_of(revision)
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def rss_mib(pid: int) -> float:
    """The resident set size of process `pid` (VmRSS of /proc/<pid>/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` itself, all its threads (not its children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of stat(5)


@dataclass
class Latencies:
    seconds: list[float]

    def ms(self, quantile: float) -> float:
        ordered = sorted(self.seconds)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def summary(self) -> str:
        return (f"p50 {self.ms(0.50):.2f} ms  p99 {self.ms(0.99):.2f} ms  "
                f"mean {1000 * statistics.fmean(self.seconds):.2f} ms  (n={len(self.seconds)})")


async def closed_loop(call: Callable[[int], Awaitable[object]], total: int, concurrency: int) -> tuple[float, Latencies]:
    """Run `total` calls from `concurrency` workers; return (calls per second, latencies)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for index in counter:
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started), Latencies(latencies)


async def at_each_concurrency(
    label: str,
    unit: str,
    call: Callable[[int, int], Awaitable[object]],
    totals: dict[int, int],
    after: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """For each {concurrency: total calls}, run `call(concurrency, index)` in a closed loop and
    print the rate and latencies; `after(start time)` runs once each level is done."""
    for concurrency, total in totals.items():
        started = time.perf_counter()
        rate, latencies = await closed_loop(lambda index: call(concurrency, index), total, concurrency)
        print(f"{label:<15} {concurrency:>2} clients: {rate:7.0f} {unit:<8} {latencies.summary()}")
        if after is not None:
            await after(started)


async def repeated(call: Callable[[], Awaitable[Any]], times: int) -> tuple[Latencies, Any]:
    """Time `times` sequential calls; return their latencies and the last result."""
    latencies, result = Latencies([]), None
    for _ in range(times):
        started = time.perf_counter()
        result = await call()
        latencies.seconds.append(time.perf_counter() - started)
    return latencies, result


async def page_latencies(label: str, list_call: Callable[..., Awaitable[Any]], rows: int, sort_by: str, samples: int = 200) -> None:
    """Print the latencies of the first page of 20 and of pages from the middle of the list on,
    reached by walking there with pages of 200. `list_call(**fields)` sends a List request."""
    first, page = await repeated(lambda: list_call(page_size=20, sort_by=sort_by), samples)
    token, walked = page.next_page_token, 20
    while walked < rows // 2:
        page = await list_call(page_size=200, page_token=token)
        token, walked = page.next_page_token, walked + 200
    deep = Latencies([])
    for _ in range(samples):
        started = time.perf_counter()
        page = await list_call(page_size=20, page_token=token)
        deep.seconds.append(time.perf_counter() - started)
        token = page.next_page_token
    where = f"{label} sort_by={sort_by!r}"
    print(f"{where:<50} first page: {first.summary()}")
    print(f"{where:<50} page at row {walked:,}: {deep.summary()}  (total_size={page.total_size:,})")
