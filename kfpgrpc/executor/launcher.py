"""The seam between the orchestrator and where container tasks run (KFP's launcher).

In KFP, a task's *driver* resolves its inputs and decides whether and how it runs; its *launcher*
then runs the user's command in a container, with the executor input, and publishes the outputs.
Here the orchestrator plays the driver for every task (`driver`, `orchestrator`) and hands each
container task, fully resolved, to a `Launcher`: `local.LocalLauncher` runs it as a subprocess
of this machine; another launcher (a cluster) runs it elsewhere, with no change to the
orchestrator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfpgrpc.executor.base import ArtifactOutput, TaskResult
from kfpgrpc.executor.placeholders import RuntimeValues
from kfpgrpc.executor.task_log import TaskLog


class TaskFailed(Exception):
    """One attempt of a container task failed: `error` says why (first line: what failed, then
    the last log lines), `exit_code` is the process's when it ran."""

    def __init__(self, error: str, exit_code: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.exit_code = exit_code


@dataclass(frozen=True)
class ContainerTask:
    """One attempt's worth of a container task, resolved by the orchestrator.

    `component` is its ComponentSpec (input and output definitions); `container` its
    PipelineContainerSpec (image, command, args, env) with the SDK's pip preamble still in the
    command; `parameters` and `artifacts` the resolved inputs; outputs go to `<run_dir>/<task_id>`
    (`run_dir` = the run's directory under its pipeline root: an absolute local path, or an
    object-store URL for launchers that take one, see `object_store`); `runtime` the values of the
    runtime placeholders; `env` what the pipeline sets (`set_env_variable`); `platform` the
    task's kfp-kubernetes executor settings (PlatformSpec), for the launcher to honour or note;
    `timeout_seconds` the kfp-kubernetes `set_timeout` (None: none)."""

    run_id: str
    task_id: str
    component: Mapping[str, Any]
    container: Mapping[str, Any]
    parameters: dict[str, Any]
    artifacts: dict[str, list[ArtifactOutput]]
    run_dir: str
    runtime: RuntimeValues
    env: dict[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: float | None = None


class Launcher(Protocol):
    """Runs container tasks. `await start()` before the first, `await stop()` after the last."""

    artifact_root: str | Path  # the default pipeline root of runs that name none (a directory or a URL)
    parallel_tasks: int  # how many tasks it runs at once (a cluster: its CPUs), once started

    async def start(self) -> None:
        """Stop what a crashed server left running, remove its leftovers. Raises OSError when
        the launcher cannot work."""
        ...

    async def stop(self) -> None: ...

    async def run(
        self, task: ContainerTask, log: TaskLog, on_start: Callable[[Sequence[str]], Awaitable[None]]
    ) -> TaskResult:
        """Run one attempt of `task` to its end and return its outputs; raise TaskFailed.

        `on_start(notes)` is awaited when the task is about to start (it may have waited for
        capacity), with what the user should know about how it runs there (e.g. "image ... was
        not pulled"): if it raises, nothing is started and the exception propagates. Cancelling
        `run` stops the task (SIGTERM, a grace period, SIGKILL; at once after `stop_now`) and
        everything it started before the cancellation propagates."""
        ...

    def stop_now(self) -> None:
        """From now on, a cancelled task is killed without a grace period (server shutdown)."""
        ...

    def uri_problem(self, uri: str) -> str:
        """Why tasks here cannot read an artifact at `uri` (e.g. a gs:// URI on this machine);
        "" when they can."""
        ...

    async def reuse_outputs(self, result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
        """A cached execution's `result` made this task's: its output artifacts stored again
        under `<run_dir>/<task_id>` (runs own their artifacts and a TTL deletes them with the
        run, so a reference into the cached run would break), the same parameters. None when
        an artifact no longer exists (its run was deleted): the task runs."""
        ...

    async def unsupported(self, spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> list[str]:
        """What in `spec` (and its kfp-kubernetes `platform_spec`) this launcher cannot run, one
        message each; empty when all can run."""
        ...


def kubernetes_executors(platform_spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The kfp-kubernetes settings of each executor label in a PlatformSpec."""
    kubernetes = ((platform_spec.get("platforms") or {}).get("kubernetes") or {})
    return dict((kubernetes.get("deploymentSpec") or {}).get("executors") or {})
