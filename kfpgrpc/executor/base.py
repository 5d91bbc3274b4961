"""The executor interface: what the run manager needs from something that runs a pipeline.

An executor runs one compiled KFP pipeline spec (the IR dict) at a time per run id, reports every
task state change and the task logs to a `RunObserver`, and returns a `RunOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol


class TaskState(str, Enum):
    """Task and run states, named like KFP's RuntimeState."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class ArtifactOutput:
    """One output artifact of a task. `uri` is the artifact's absolute local path."""

    name: str
    uri: str
    schema_title: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TaskResult:
    """What a succeeded task produced: enough to skip it on retry / resume."""

    output_parameters: dict[str, Any]
    output_artifacts: dict[str, list[ArtifactOutput]]


@dataclass(frozen=True)
class TaskUpdate:
    task_id: str  # unique within the run: the task's path, e.g. "add-twice.add-2"
    display_name: str  # the task name in the spec
    parent_task_id: str  # "" at root
    state: TaskState
    time_us: int  # when this state was entered (microseconds since epoch)
    image: str = ""  # container image from the spec (not pulled)
    exit_code: int | None = None
    error: str = ""  # for FAILED: e.g. "exit code 1" plus the last 20 log lines
    input_parameters: dict[str, Any] = field(default_factory=dict)
    result: TaskResult | None = None  # set with SUCCEEDED


class RunObserver(Protocol):
    async def task_changed(self, update: TaskUpdate) -> None: ...

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        """`lines` in order, without newlines."""
        ...


@dataclass(frozen=True)
class RunOutcome:
    state: TaskState  # SUCCEEDED, FAILED or CANCELED
    error: str


class Executor(Protocol):
    async def execute(
        self,
        run_id: str,
        spec: dict,
        parameters: dict[str, Any],
        previous: dict[str, TaskResult],
        observer: RunObserver,
        artifact_root: Path | None = None,
    ) -> RunOutcome:
        """Run `spec` to the end. Tasks whose id is in `previous` are not run again: their
        results are reused and they are reported SUCCEEDED with that result. Artifacts go
        under `artifact_root / run_id` (default: the executor's own root)."""
        ...

    async def start(self) -> None:
        """Before the first `execute`: stop whatever a previous server process that died left
        running, and remove its leftovers. Raises OSError when the executor cannot work."""
        ...

    async def stop(self) -> None:
        """After the last `execute` has returned (or been cancelled)."""
        ...

    async def unavailable_packages(self, spec: dict) -> list[str]:
        """Why components of `spec` cannot get the Python packages they install (one message per
        component, naming the packages); empty when all can run."""
        ...

    async def terminate(self, run_id: str) -> None:
        """Stop the run: running tasks are killed and reported CANCELED, no new task starts,
        and `execute` returns CANCELED."""
        ...
