"""What the run manager (kfpgrpc.core.runs) and the orchestrator share: the run to execute, the
reports of its tasks, and its outcome.

The orchestrator (`orchestrator.Orchestrator`) runs one compiled KFP pipeline spec (the IR dict)
at a time per run id, reports every task state change and the task logs to a `RunObserver`, and
returns a `RunOutcome`. It hands each container task to a launcher (`launcher.Launcher`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
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
    """One artifact. `uri` is where it is stored: for the local launcher an absolute local path,
    which is also its `path` in a task."""

    name: str
    uri: str
    schema_title: str
    metadata: dict[str, Any]
    # For outputs reused from the cache and stored again: the URI where the execution that
    # produced them stored them. Cache keys use it, so consumers of a cached artifact are
    # cached too, as on KFP where the cached task keeps the artifact's URI. "" = `uri`.
    origin: str = ""


@dataclass(frozen=True)
class TaskResult:
    """What a succeeded task (or DAG, or loop) produced: enough to skip it on retry / resume.
    A loop's outputs are lists over its iterations (see `orchestrator`)."""

    output_parameters: dict[str, Any]
    output_artifacts: dict[str, list[ArtifactOutput]]


@dataclass(frozen=True)
class TaskUpdate:
    """One state change of a task. `task_id` is unique within the run: the task's path of DAG
    task keys, e.g. "outer.train", with an iteration's index after its loop task:
    "for-loop-2[1].square"."""

    task_id: str
    display_name: str  # taskInfo.name of the task in the spec
    parent_task_id: str  # "" at root
    state: TaskState
    time_us: int  # when this state was entered (microseconds since epoch)
    image: str = ""  # container image from the spec (not pulled)
    exit_code: int | None = None
    error: str = ""  # for FAILED: e.g. "exit code 1" plus the last log lines; SKIPPED: why
    input_parameters: dict[str, Any] = field(default_factory=dict)
    result: TaskResult | None = None  # set with SUCCEEDED
    iteration_index: int | None = None  # an iteration of a loop: its index (from 0)
    iteration_count: int | None = None  # a loop task: how many iterations it has
    cached_from_run_id: str = ""  # SUCCEEDED from the cache: the run whose execution it reused
    notes: tuple[str, ...] = ()  # what the user should know, e.g. "image not pulled"
    retries: int = 0  # attempts after the first


class RunObserver(Protocol):
    async def task_changed(self, update: TaskUpdate) -> None: ...

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        """`lines` in order, without newlines."""
        ...


@dataclass(frozen=True)
class RunContext:
    """A run to execute. `spec` is the bare PipelineSpec dict, `platform_spec` the kfp-kubernetes
    PlatformSpec (`{"platforms": {"kubernetes": ...}}`) or {}. Tasks whose id is in `previous`
    are not run again: their results are reused. Artifacts go under `<artifact_root>/<run_id>`
    (an absolute directory or an object-store URL; None: the launcher's default root). Times are microseconds since the epoch."""

    run_id: str
    spec: Mapping[str, Any]
    parameters: dict[str, Any]
    previous: Mapping[str, TaskResult] = field(default_factory=dict)
    platform_spec: Mapping[str, Any] = field(default_factory=dict)
    artifact_root: str | None = None
    display_name: str = ""
    created_at_us: int = 0
    scheduled_at_us: int = 0  # the tick of a recurring run's run; 0 = created_at_us


@dataclass(frozen=True)
class RunOutcome:
    state: TaskState  # SUCCEEDED, FAILED or CANCELED
    error: str
