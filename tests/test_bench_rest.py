"""bench/bench_rest.py as a user runs it, in its --quick smoke mode: a real server with gRPC and
HTTP, every (operation, clients, protocol) row printed with a request rate. No timings are
checked: only that the benchmark runs and measures what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_rest.py"
ROW = re.compile(r"^(GetRun|ListRuns first 20|ListRuns deep 100)\s+(\d+)\s+(gRPC|REST \(httpx\)|REST \(kfp\.Client\))\s+(\d+)\s")


def test_quick_run_prints_every_row() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = {(m[1], int(m[2]), m[3]): int(m[4]) for m in map(ROW.match, done.stdout.splitlines()) if m}
    expected = {
        (operation, clients, protocol)
        for operation in ("GetRun", "ListRuns first 20", "ListRuns deep 100")
        for clients in (1, 5)
        for protocol in ("gRPC", "REST (httpx)", "REST (kfp.Client)")
        if protocol != "REST (kfp.Client)" or (clients == 1 and operation != "ListRuns deep 100")
    }
    assert set(rows) == expected, done.stdout
    assert all(rate > 0 for rate in rows.values()), done.stdout
    assert re.search(r"^\d+ cores, shared by the clients .* and the server", done.stdout, re.M), done.stdout
