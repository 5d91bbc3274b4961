"""Shared benchmark plumbing: a real `kfpgrpc serve` subprocess, timing and percentiles."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


class Server:
    """`kfpgrpc serve` on a free port with its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
             "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().removeprefix("listening on ").strip()
        if not self.address:
            raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


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
