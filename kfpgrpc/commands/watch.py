"""Following a run to its end: a live task view on a terminal (commands/live.py), plain lines
elsewhere; then, for a run that did not succeed, where to look next."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from kfpgrpc.client import Client
from kfpgrpc.commands.common import (
    INTERRUPTED,
    ctrl_c_interrupts,
    print_json,
    say,
    state_name,
    utc_datetime,
)
from kfpgrpc.v1 import common_pb2, run_pb2


def watch_run(client: Client, run_id: str, output: str) -> int:
    """Follow the run until it ends; 0 if it SUCCEEDED, else 1. JSON output: the final run only.
    Ctrl-C stops watching, not the run: 130, saying how to terminate it."""
    try:
        with ctrl_c_interrupts():
            if output == "json":
                final = client.wait_for_run(run_id)
                print_json(final)
            elif sys.stdout.isatty():
                from kfpgrpc.commands.live import follow_live  # rich is loaded only to draw on a terminal

                final = follow_live(client.watch_run(run_id))
            else:
                final = _plain(client.watch_run(run_id))
    except KeyboardInterrupt:
        say(f"kfpgrpc: stopped watching; the run continues on the server. Stop it with: kfpgrpc runs terminate {run_id}",
              file=sys.stderr)
        return INTERRUPTED
    if final.state == common_pb2.SUCCEEDED:
        return 0
    if output != "json":
        print_failed_tasks(final)
    return 1


def _plain(snapshots: Iterable[run_pb2.Run]) -> run_pb2.Run:
    """One line per state change of the run or of a task."""
    seen: dict[str, int] = {}
    final = run_pb2.Run()
    for final in snapshots:
        if not seen:
            say(f"run {final.display_name} ({final.run_id})", flush=True)
        for key, label, state, note in [("", "run", final.state, "")] + [
            (task.task_id, f"task {task.task_id}", task.state, " (cached)" if task.cached else "")
            for task in final.run_details.task_details
        ]:
            if seen.get(key) != state:
                seen[key] = state
                say(f"{label}: {state_name(state)}{note}", flush=True)
    before, after = outcome(final)
    say(f"{before}{state_name(final.state)}{after}", flush=True)
    return final


def outcome(run: run_pb2.Run) -> tuple[str, str]:
    """The last line of a watch, around the run's final state: ("run NAME ", " after 1.2s: error")."""
    after = ""
    if run.HasField("finished_at") and run.HasField("created_at"):
        after = f" after {(utc_datetime(run.finished_at) - utc_datetime(run.created_at)).total_seconds():.1f}s"
    if run.error.message:
        after += f": {run.error.message.splitlines()[0]}"
    return f"run {run.display_name} ", after


def print_failed_tasks(run: run_pb2.Run) -> None:
    """The error line of the task that failed first and the command that prints its log; the
    count of other failed tasks. A DAG task fails because a task inside it did: only tasks
    without child tasks (containers) are named."""
    failed = sorted((task for task in run.run_details.task_details if task.state == common_pb2.FAILED and not task.child_tasks),
                    key=lambda task: (task.end_time.seconds, task.end_time.nanos))
    if not failed:
        return
    first = failed[0]
    say(f"task {first.task_id} failed: {error_line(first.error.message)}")
    say(f"its log: kfpgrpc runs logs {run.run_id} --task {first.task_id}")
    if len(failed) > 1:
        say(f"{len(failed) - 1} more tasks failed: kfpgrpc runs get {run.run_id}")


def error_line(message: str) -> str:
    """A task error in one line: its first line (how the task ended, e.g. "exit code 1") and,
    when the error carries the end of the task's output, that output's last line (for a Python
    task, the exception)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"
