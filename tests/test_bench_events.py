"""bench/bench_events.py as a user runs it, on a small scale: this tree's server and the bare
grpc.aio floor (bench/grpc_floor.py), each row twice. No timings are checked: only that every
watcher of every row receives every completion on both servers (the floor too, after the
previous rows' streams were cancelled) and that each row is printed with its samples."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_events.py"
ROW = re.compile(r"^(new|grpc\.aio)\s+(\d+)\s+(\d+)\s+1\s.*\s(\d+)$")


def test_small_run_prints_every_row_with_every_sample() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--watchers", "1,20", "--runs", "3", "--channels", "4", "--rounds", "2",
         "--anchor", "none", "--poll-runs", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = [(m[1], int(m[2]), int(m[3]), int(m[4])) for m in map(ROW.match, done.stdout.splitlines()) if m]
    assert rows == [
        (server, watchers, min(watchers, 4), watchers * 3)
        for watchers in (1, 20) for _ in range(2) for server in ("new", "grpc.aio")
    ], done.stdout
