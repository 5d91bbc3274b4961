"""bench/bench_ray.py as a user runs it, in its --quick smoke mode: a real two-node Ray cluster,
a server with each launcher, every row of both tables printed for both sides. No timings are
checked: only that the benchmark runs and measures what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_ray.py"
FIGURE = r"\s+(\S+)\s+(\S+)$"  # a row's two cells: local, then ray


def test_quick_run_prints_both_tables() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout

    def row(label: str) -> list[tuple[str, str]]:
        return re.findall(rf"^  {re.escape(label)}{FIGURE}", out, re.M)

    assert re.search(r"^\(a\) 8 trivial tasks .*\n\s+local, --max-parallel-tasks 4\s+ray, 4 CPUs$", out, re.M), out
    assert re.search(r"^\(b\) fan-out of 6 tasks of `sleep 0.2`\n\s+local, --max-parallel-tasks 2\s+ray, 4 CPUs$", out, re.M), out
    assert row("tasks at once") == [("4", "4"), ("2", "4")], out
    for label in ("wall (s)", "tasks/s = tasks / wall", "bare commands, as many at once (s)", "makespan (s)"):
        (local, on_ray), = row(label)
        assert float(local) > 0 and float(on_ray) > 0, out
    assert row("ideal = ceil(tasks / at once) x sleep (s)") == [("0.60", "0.40")], out
    # The fan-out's tasks ran on Ray, on both nodes of the cluster; the local side has none.
    trivial_nodes, fan_out_nodes = row("Ray nodes the tasks ran on")
    assert trivial_nodes[0] == "-" and trivial_nodes[1] in ("1", "2"), out
    assert fan_out_nodes == ("-", "2"), out
