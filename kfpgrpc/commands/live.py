"""The live view of a watched run on a terminal (rich): the run's state and a table of its
tasks, redrawn as snapshots arrive and as durations tick."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kfpgrpc.commands.common import printable, state_name, utc_datetime
from kfpgrpc.commands.watch import outcome
from kfpgrpc.v1 import common_pb2, run_pb2

STATE_STYLES: dict[int, str] = {
    common_pb2.PENDING: "yellow", common_pb2.RUNNING: "cyan", common_pb2.SUCCEEDED: "green",
    common_pb2.FAILED: "bold red", common_pb2.CANCELING: "magenta", common_pb2.CANCELED: "magenta",
    common_pb2.SKIPPED: "dim",
}


def follow_live(snapshots: Iterable[run_pb2.Run]) -> run_pb2.Run:
    """Draw each snapshot until the last, then print the outcome line; return the last snapshot."""
    console = Console()
    view = _RunView()
    with Live(view, console=console, refresh_per_second=4):
        for view.run in snapshots:
            pass
    before, after = outcome(view.run)
    console.print(Text.assemble(printable(before), _state_text(view.run.state), printable(after)), soft_wrap=True)
    return view.run


class _RunView:
    """The run's state and a table of its tasks, rendered afresh (durations tick)."""

    def __init__(self) -> None:
        self.run = run_pb2.Run()

    def __rich__(self) -> RenderableType:
        run, now = self.run, datetime.now(timezone.utc)
        # Names from the server as Text, control characters escaped: never markup, never terminal controls
        header = Text.assemble(("run ", "bold"), printable(f"{run.display_name} ({run.run_id})  "), _state_text(run.state))
        tasks = Table(box=None, pad_edge=False)
        for column in ("TASK", "STATE", "STARTED", "DURATION"):
            tasks.add_column(column)
        for task in run.run_details.task_details:
            started = utc_datetime(task.start_time) if task.HasField("start_time") else None
            ended = utc_datetime(task.end_time) if task.HasField("end_time") else now
            state = _state_text(task.state)
            if task.cached:  # its outputs came from an earlier run: it did not run
                state.append(" (cached)", style="dim")
            tasks.add_row(
                Text(printable(task.task_id)), state,
                started.strftime("%H:%M:%S") if started else "", f"{(ended - started).total_seconds():.1f}s" if started else "",
            )
        return Group(header, tasks)


def _state_text(state: int) -> Text:
    return Text(state_name(state) or "…", style=STATE_STYLES.get(state, ""))
