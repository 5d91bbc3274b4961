"""Following a run to its end: a live task view on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime, timezone

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kfpgrpc.client import Client
from kfpgrpc.commands.common import print_json, state_name, utc_datetime
from kfpgrpc.v1 import common_pb2, run_pb2

STATE_STYLES: dict[int, str] = {
    common_pb2.PENDING: "yellow", common_pb2.RUNNING: "cyan", common_pb2.SUCCEEDED: "green",
    common_pb2.FAILED: "bold red", common_pb2.CANCELING: "magenta", common_pb2.CANCELED: "magenta",
    common_pb2.SKIPPED: "dim",
}


def watch_run(client: Client, run_id: str, output: str) -> int:
    """Follow the run until it ends; 0 if it SUCCEEDED, else 1. JSON output: the final run only."""
    if output == "json":
        final = client.wait_for_run(run_id)
        print_json(final)
    elif sys.stdout.isatty():
        final = _live(client.watch_run(run_id))
    else:
        final = _plain(client.watch_run(run_id))
    return 0 if final.state == common_pb2.SUCCEEDED else 1


def _plain(snapshots: Iterable[run_pb2.Run]) -> run_pb2.Run:
    """One line per state change of the run or of a task."""
    seen: dict[str, int] = {}
    final = run_pb2.Run()
    for final in snapshots:
        if not seen:
            print(f"run {final.display_name} ({final.run_id})", flush=True)
        for key, label, state in [("", "run", final.state)] + [
            (task.task_id, f"task {task.task_id}", task.state) for task in final.run_details.task_details
        ]:
            if seen.get(key) != state:
                seen[key] = state
                print(f"{label}: {state_name(state)}", flush=True)
    _print_outcome(final, Console(highlight=False))
    return final


def _live(snapshots: Iterable[run_pb2.Run]) -> run_pb2.Run:
    console = Console()
    view = _RunView()
    with Live(view, console=console, refresh_per_second=4):
        for view.run in snapshots:
            pass
    _print_outcome(view.run, console)
    return view.run


class _RunView:
    """The run's state and a table of its tasks, rendered afresh (durations tick)."""

    def __init__(self) -> None:
        self.run = run_pb2.Run()

    def __rich__(self) -> RenderableType:
        run, now = self.run, datetime.now(timezone.utc)
        header = Text.assemble(("run ", "bold"), f"{run.display_name} ({run.run_id})  ", _state_text(run.state))
        tasks = Table(box=None, pad_edge=False)
        for column in ("TASK", "STATE", "STARTED", "DURATION"):
            tasks.add_column(column)
        for task in run.run_details.task_details:
            started = utc_datetime(task.start_time) if task.HasField("start_time") else None
            ended = utc_datetime(task.end_time) if task.HasField("end_time") else now
            tasks.add_row(
                task.task_id, _state_text(task.state),
                started.strftime("%H:%M:%S") if started else "", f"{(ended - started).total_seconds():.1f}s" if started else "",
            )
        return Group(header, tasks)


def _state_text(state: int) -> Text:
    return Text(state_name(state) or "…", style=STATE_STYLES.get(state, ""))


def _print_outcome(run: run_pb2.Run, console: Console) -> None:
    line = Text.assemble(f"run {run.display_name} ", _state_text(run.state))
    if run.HasField("finished_at") and run.HasField("created_at"):
        line.append(f" after {(utc_datetime(run.finished_at) - utc_datetime(run.created_at)).total_seconds():.1f}s")
    if run.error.message:
        line.append(f": {run.error.message.splitlines()[0]}")
    console.print(line, soft_wrap=True)
