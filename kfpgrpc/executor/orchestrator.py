"""The orchestrator: runs a compiled KFP pipeline spec, task by task, with KFP's control flow,
handing each container task to a launcher.

It walks the DAGs of the spec as KFP's backend does (the driver decides per task, Argo runs the
DAG; the rules per task are in `driver`):
- A task starts once every task it depends on SUCCEEDED. Fail-fast per DAG (Argo's default,
  which KFP keeps): after a task of a DAG fails, no new task of that DAG starts, running ones
  finish, then the DAG fails, and so its parent DAG stops starting tasks. A task that never
  started is not reported. Exceptions: a task with the trigger strategy
  ALL_UPSTREAM_TASKS_COMPLETED (an exit handler's exit task, `.ignore_upstream_failure()`)
  starts once its upstream tasks have ended, however; an input whose producer did not succeed
  then takes its default.
- A task whose trigger-policy condition is false (If / Elif / Else, Condition) is SKIPPED;
  nothing inside a skipped condition DAG is reported, as in KFP. A DAG whose tasks succeeded or
  were skipped SUCCEEDED; its outputs (dsl.OneOf included) come from `driver.dag_outputs`.
- A loop task (ParallelFor) is a DAG task with an iterator: one iteration per item, each an
  instance of the loop's body DAG, reported as a task "<loop task id>[<index>]" with its
  iteration_index, its body's tasks inside it ("for-loop-2[1].square"). Iterations start in
  index order, at most `iteratorPolicy.parallelismLimit` at once, and fail fast like a DAG.
  The loop's outputs are its iterations' outputs collected (`driver.collected`).
- A container task runs through the launcher, with its retry policy (attempts after a failure,
  `backoffDuration * backoffFactor**attempt` apart, each wait capped at `backoffMaxDuration`;
  RUNNING in between) and the execution cache: a task whose `cachingOptions.enableCache` is set
  reuses the outputs of the newest SUCCEEDED execution with the same cache key
  (`driver.cache_key`) in a pipeline of the same name, if its artifacts still exist (the
  launcher stores them again as this task's: `Launcher.reuse_outputs`), and is reported
  SUCCEEDED with `cached_from_run_id`.
- An importer task outputs its artifact at once (`driver.imported_artifact`).
- Resume and retry: tasks (and DAGs, loops and iterations) in `RunContext.previous` are not run
  again; their results are reused and they are reported SUCCEEDED again (the run manager
  ignores a repeated SUCCEEDED).
- Terminate: running container tasks are cancelled (the launcher stops their processes) and
  reported CANCELED; nothing starts any more, exit tasks included; the run ends CANCELED.
- Bounds: a loop has at most MAX_ITERATIONS items and a run at most MAX_TASKS tasks; past them
  the loop task fails.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kfpgrpc.bounds import DEFAULT_MAX_LOG_BYTES_PER_TASK, MAX_TASKS
from kfpgrpc.clock import Clock, SystemClock, to_datetime
from kfpgrpc.executor import object_store
from kfpgrpc.executor.base import (
    ArtifactOutput,
    RunContext,
    RunObserver,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
)
from kfpgrpc.executor.driver import (
    DriverError,
    Finished,
    Scope,
    cache_key,
    collected,
    condition_holds,
    dag_outputs,
    dependencies,
    imported_artifact,
    iteration_items,
    resolve_inputs,
    runs_after_failures,
)
from kfpgrpc.executor.launcher import (
    ContainerTask,
    Launcher,
    TaskFailed,
    kubernetes_executors,
)
from kfpgrpc.executor.placeholders import RuntimeValues, cast_parameter
from kfpgrpc.executor.task_log import LogVolume, TaskLog

MAX_ITERATIONS = 10_000  # items of one loop
_NOT_RUN = TaskState.PENDING  # a Finished state: the task never started (and is not reported)


@dataclass(frozen=True)
class CachedExecution:
    """An earlier SUCCEEDED execution of a container task, reusable by the cache."""

    run_id: str
    task_id: str
    result: TaskResult


class ExecutionCache(Protocol):
    """Where the cache keeps executions (the run manager's store). `pipeline_name` is the
    pipeline's `pipelineInfo.name`: a cache entry serves pipelines of that name only, as in KFP."""

    async def lookup(self, pipeline_name: str, key: str) -> CachedExecution | None:
        """The newest execution recorded with `key`, or None."""
        ...

    async def record(self, pipeline_name: str, key: str, run_id: str, task_id: str, result: TaskResult) -> None: ...


class _NotStarted(Exception):
    """Raised into the launcher when a task that waited for capacity must not start any more."""


@dataclass
class _Run:
    """One execution of a run."""

    context: RunContext
    observer: RunObserver
    run_dir: str  # <pipeline root>/<run_id>: a resolved local path, or an object-store URL
    pipeline_name: str
    runtime: dict[str, str]  # the runtime placeholder values shared by its tasks
    max_log_bytes_per_task: int
    canceled: bool = False
    leaves: set[asyncio.Task[Any]] = field(default_factory=set)  # container tasks in progress
    log_volumes: dict[str, LogVolume] = field(default_factory=dict)
    tasks: int = 0  # tasks started, for MAX_TASKS

    def runtime_for(self, task_name: str, task_id: str) -> RuntimeValues:
        return RuntimeValues({**self.runtime, "pipeline_task_name": task_name, "pipeline_task_uuid": task_id})

    def log_volume(self, task_id: str) -> LogVolume:
        """The task's log volume in this execution, shared by its attempts."""
        if task_id not in self.log_volumes:
            self.log_volumes[task_id] = LogVolume(self.max_log_bytes_per_task)
        return self.log_volumes[task_id]


@dataclass
class _Dag:
    """One DAG instance being walked: the root, a sub-pipeline, a condition, an iteration."""

    spec: Mapping[str, Any]  # the DagSpec
    scope: Scope
    prefix: str  # task ids of its tasks start with it: "" at root, "<task id>." inside
    parent_task_id: str
    failing: bool = False  # a task of it failed: fail fast
    first_error: str = ""


class Orchestrator:
    """Runs pipeline specs (see the module docstring) through `launcher`. `await start()` first,
    `await stop()` after the last run. `cache`: where cached executions are kept (None: no
    caching)."""

    def __init__(
        self,
        launcher: Launcher,
        clock: Clock | None = None,
        cache: ExecutionCache | None = None,
        max_log_bytes_per_task: int = DEFAULT_MAX_LOG_BYTES_PER_TASK,
    ) -> None:
        self.launcher = launcher
        self.cache = cache
        self.max_log_bytes_per_task = max_log_bytes_per_task
        self._clock = clock or SystemClock()
        self._runs: dict[str, _Run] = {}

    async def start(self) -> None:
        """Raises OSError when the launcher cannot work."""
        await self.launcher.start()

    async def stop(self) -> None:
        """After the last execution has returned or been cancelled."""
        await self.launcher.stop()

    def stop_now(self) -> None:
        """The server is stopping: executions about to be cancelled kill their tasks at once."""
        self.launcher.stop_now()

    async def unsupported(self, spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> list[str]:
        """What in the spec cannot run here, one message each (empty: all can)."""
        return [*unsupported_features(spec), *await self.launcher.unsupported(spec, platform_spec)]

    async def execute(self, context: RunContext, observer: RunObserver) -> RunOutcome:
        """Run `context` to its end (see the module docstring)."""
        if context.run_id in self._runs:
            raise ValueError(f"run {context.run_id!r} is already executing")
        problems = unsupported_features(context.spec)
        if problems:
            return RunOutcome(TaskState.FAILED, "cannot run this pipeline: " + "; ".join(problems))
        root = context.artifact_root or str(self.launcher.artifact_root)
        run_dir = object_store.join(root if object_store.is_url(root) else os.path.realpath(root), context.run_id)
        run = _Run(
            context=context,
            observer=observer,
            run_dir=run_dir,
            pipeline_name=str((context.spec.get("pipelineInfo") or {}).get("name", "")),
            runtime=self._runtime_values(context, run_dir),
            max_log_bytes_per_task=self.max_log_bytes_per_task,
        )
        if _workspace(context.platform_spec):
            if object_store.is_url(run_dir):  # a workspace is a directory tasks share: a PVC on KFP
                return RunOutcome(TaskState.FAILED, f"cannot run this pipeline: its workspace needs a pipeline root on a file system, not {root!r}")
            await asyncio.to_thread(os.makedirs, run.runtime["workspace_path"], exist_ok=True)
        self._runs[context.run_id] = run
        spec_root = context.spec["root"]
        definitions = (spec_root.get("inputDefinitions") or {}).get("parameters") or {}
        parameters = dict(context.parameters)
        for name, definition in definitions.items():
            if name in parameters:
                parameters[name] = cast_parameter(parameters[name], definition.get("parameterType"))
        dag = _Dag(spec=spec_root["dag"], scope=Scope(parameters, {}), prefix="", parent_task_id="")
        try:
            state, _, error = await self._walk(run, dag)
        finally:
            self._runs.pop(context.run_id, None)
        if run.canceled:
            return RunOutcome(TaskState.CANCELED, "the run was terminated")
        if state != TaskState.SUCCEEDED:
            return RunOutcome(TaskState.FAILED, error or "the run failed")
        return RunOutcome(TaskState.SUCCEEDED, "")

    async def terminate(self, run_id: str) -> None:
        """Stop the run: running container tasks are stopped and reported CANCELED, nothing
        starts any more, and `execute` returns CANCELED. Returns once its tasks have stopped."""
        run = self._runs.get(run_id)
        if run is None:
            return
        run.canceled = True
        for leaf in run.leaves:
            leaf.cancel()
        # Called from a report of one of them (a watcher reacting to RUNNING): not awaited.
        others = [leaf for leaf in run.leaves if leaf is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    def _runtime_values(self, context: RunContext, run_dir: str) -> dict[str, str]:
        """The runtime placeholders' values (design: docs/api.md "Control flow")."""
        created = context.created_at_us or self._clock.now_us()
        return {
            "pipeline_job_name": context.display_name or str((context.spec.get("pipelineInfo") or {}).get("name", "")),
            "pipeline_job_resource_name": context.run_id,
            "pipeline_job_uuid": context.run_id,
            "pipeline_root": run_dir,
            "pipeline_job_create_time_utc": _rfc3339(created),
            "pipeline_job_schedule_time_utc": _rfc3339(context.scheduled_at_us or created),
            "workspace_path": object_store.join(run_dir, "workspace"),
        }

    # -- DAGs --------------------------------------------------------------------------------

    async def _walk(self, run: _Run, dag: _Dag) -> tuple[TaskState, TaskResult | None, str]:
        """Run a DAG instance to its end: (SUCCEEDED, its outputs, "") or (FAILED / CANCELED,
        None, the first error). Each finished task costs O(its dependents): a DAG of 20,000
        tasks is not rescanned per task."""
        tasks: Mapping[str, Any] = dag.spec.get("tasks") or {}
        waiting_for = {name: dependencies(task) & tasks.keys() for name, task in tasks.items()}
        dependents: dict[str, list[str]] = {}
        for name, upstream in waiting_for.items():
            for dependency in upstream:
                dependents.setdefault(dependency, []).append(name)
        decidable = sorted(name for name, upstream in waiting_for.items() if not upstream)
        finished: dict[str, Finished] = {}
        running: dict[asyncio.Task[Finished], str] = {}
        try:
            while True:
                for name in decidable:
                    if self._may_start(run, dag, tasks[name], finished):
                        running[asyncio.create_task(self._run_task(run, dag, name, tasks[name], finished))] = name
                    else:
                        finished[name] = Finished(name, _NOT_RUN, None)
                        decidable.extend(self._unblocked(name, dependents, waiting_for, finished))
                decidable = []
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: running[t]):
                    name = running.pop(task)
                    finished[name] = end = task.result()
                    if end.state in (TaskState.FAILED, TaskState.CANCELED) and not dag.failing:
                        dag.failing, dag.first_error = True, end.error
                    decidable.extend(self._unblocked(name, dependents, waiting_for, finished))
        finally:
            await _cancel_all(running)
        if run.canceled:
            return TaskState.CANCELED, None, "the run was terminated"
        if dag.failing:
            return TaskState.FAILED, None, dag.first_error
        return TaskState.SUCCEEDED, dag_outputs(dag.spec, finished), ""

    @staticmethod
    def _unblocked(name: str, dependents: dict[str, list[str]], waiting_for: dict[str, set[str]], finished: Mapping[str, Finished]) -> list[str]:
        """The dependents of `name` whose upstream tasks have now all ended."""
        unblocked = []
        for dependent in dependents.get(name, ()):
            waiting_for[dependent].discard(name)
            if not waiting_for[dependent] and dependent not in finished:
                unblocked.append(dependent)
        return unblocked

    @staticmethod
    def _may_start(run: _Run, dag: _Dag, task: Mapping[str, Any], finished: Mapping[str, Finished]) -> bool:
        """Whether a task whose upstream tasks have all ended starts (see the module docstring)."""
        if run.canceled:
            return False
        ended = [finished[name].state for name in dependencies(task) if name in finished]
        if runs_after_failures(task):
            return _NOT_RUN not in ended
        return not dag.failing and all(state == TaskState.SUCCEEDED for state in ended)

    async def _run_task(self, run: _Run, dag: _Dag, name: str, task: Mapping[str, Any], upstream: Mapping[str, Finished]) -> Finished:
        """Run one task of `dag` (of any kind) to its end."""
        task_id = dag.prefix + name
        spec = run.context.spec
        component = spec["components"][task["componentRef"]["name"]]
        report = _Reporter(run, self._clock, task_id, (task.get("taskInfo") or {}).get("name") or name, dag.parent_task_id)
        previous = run.context.previous.get(task_id)
        if previous is not None:
            await report(TaskState.SUCCEEDED, result=previous)
            return Finished(name, TaskState.SUCCEEDED, previous)
        runtime = run.runtime_for(name, task_id)
        try:
            _count_task(run)
            parameters, artifacts = resolve_inputs(task, component, dag.scope, upstream, runtime)
            holds, condition = condition_holds(task, parameters)
        except DriverError as error:
            return await report.failed(name, str(error))
        report.input_parameters = parameters
        if not holds:
            await report(TaskState.SKIPPED, error=f"condition {condition} was false")
            return Finished(name, TaskState.SKIPPED, None)
        if "parameterIterator" in task or "artifactIterator" in task:
            return await self._run_loop(run, name, task, component, parameters, artifacts, report)
        if component.get("dag"):
            await report(TaskState.RUNNING)
            inner = _Dag(component["dag"], Scope(parameters, artifacts), task_id + ".", task_id)
            state, result, error = await self._walk(run, inner)
            await report(state, result=result, error=error)
            return Finished(name, state, result, error)
        executor = (spec.get("deploymentSpec") or {}).get("executors", {}).get(component.get("executorLabel", "")) or {}
        if "importer" in executor:
            try:
                artifact = imported_artifact(executor["importer"], component, parameters, runtime)
            except DriverError as error:
                return await report.failed(name, str(error))
            if problem := self.launcher.uri_problem(artifact.uri):
                return await report.failed(name, f"importer: {problem}")
            result = TaskResult({}, {artifact.name: [artifact]})
            await report(TaskState.SUCCEEDED, result=result)
            return Finished(name, TaskState.SUCCEEDED, result)
        container = executor.get("container")
        if container is None:
            return await report.failed(name, f"executor {component.get('executorLabel', '')!r} is not a container or an importer")
        return await self._run_container(run, dag, name, task, component, container, parameters, artifacts, runtime, report)

    async def _run_loop(
        self,
        run: _Run,
        name: str,
        task: Mapping[str, Any],
        component: Mapping[str, Any],
        parameters: dict[str, Any],
        artifacts: dict[str, list[ArtifactOutput]],
        report: _Reporter,
    ) -> Finished:
        """A ParallelFor: its iterations, then their outputs collected."""
        try:
            item_input, items, of_artifacts = iteration_items(task, parameters, artifacts)
        except DriverError as error:
            return await report.failed(name, str(error))
        if len(items) > MAX_ITERATIONS:
            return await report.failed(name, f"the loop has {len(items):,} items; a loop may have at most {MAX_ITERATIONS:,}")
        report.iteration_count = len(items)
        await report(TaskState.RUNNING)
        limit = int((task.get("iteratorPolicy") or {}).get("parallelismLimit") or 0) or max(1, len(items))
        loop = _Dag(component["dag"], Scope(parameters, artifacts), "", report.task_id)  # fails fast like a DAG
        results: list[TaskResult | None] = [None] * len(items)
        running: dict[asyncio.Task[Finished], int] = {}
        following = 0
        try:
            while True:
                while following < len(items) and len(running) < limit and not loop.failing and not run.canceled:
                    if of_artifacts:
                        scope = Scope(parameters, {**artifacts, item_input: [items[following]]})
                    else:
                        scope = Scope({**parameters, item_input: items[following]}, artifacts)
                    iteration = self._run_iteration(run, loop, name, following, scope, report.display_name)
                    running[asyncio.create_task(iteration)] = following
                    following += 1
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for iteration_task in sorted(done, key=lambda t: running[t]):
                    index = running.pop(iteration_task)
                    end = iteration_task.result()
                    results[index] = end.result
                    if end.state != TaskState.SUCCEEDED and not loop.failing:
                        loop.failing, loop.first_error = True, end.error
        finally:
            await _cancel_all(running)
        if run.canceled:
            await report(TaskState.CANCELED)
            return Finished(name, TaskState.CANCELED, None, "the run was terminated")
        if loop.failing:
            await report(TaskState.FAILED, error=loop.first_error)
            return Finished(name, TaskState.FAILED, None, loop.first_error)
        result = collected(loop.spec, [r for r in results if r is not None])
        await report(TaskState.SUCCEEDED, result=result)
        return Finished(name, TaskState.SUCCEEDED, result)

    async def _run_iteration(self, run: _Run, loop: _Dag, name: str, index: int, scope: Scope, display_name: str) -> Finished:
        """Iteration `index` of a loop: an instance of its body DAG."""
        task_id = f"{loop.parent_task_id}[{index}]"
        report = _Reporter(run, self._clock, task_id, display_name, loop.parent_task_id, iteration_index=index)
        previous = run.context.previous.get(task_id)
        if previous is not None:
            await report(TaskState.SUCCEEDED, result=previous)
            return Finished(name, TaskState.SUCCEEDED, previous)
        report.input_parameters = dict(scope.parameters)
        await report(TaskState.RUNNING)
        state, result, error = await self._walk(run, _Dag(loop.spec, scope, task_id + ".", task_id))
        await report(state, result=result, error=error)
        return Finished(name, state, result, error)

    # -- container tasks ---------------------------------------------------------------------

    async def _run_container(
        self,
        run: _Run,
        dag: _Dag,
        name: str,
        task: Mapping[str, Any],
        component: Mapping[str, Any],
        container: Mapping[str, Any],
        parameters: dict[str, Any],
        artifacts: dict[str, list[ArtifactOutput]],
        runtime: RuntimeValues,
        report: _Reporter,
    ) -> Finished:
        """A container task: from the cache, or through the launcher with its retries."""
        report.image = container.get("image", "")
        key = ""
        if self.cache is not None and (task.get("cachingOptions") or {}).get("enableCache"):
            key = cache_key(task, component, container, parameters, artifacts)
            cached = await self.cache.lookup(run.pipeline_name, key)
            reused = cached and await self.launcher.reuse_outputs(cached.result, run.run_dir, report.task_id)
            if cached and reused:
                report.cached_from_run_id = cached.run_id
                await run.observer.log_lines(report.task_id, [
                    f"outputs reused from the cache: run {cached.run_id}, task {cached.task_id} ran with the same cache key;"
                    " this task did not run"
                ])
                await report(TaskState.SUCCEEDED, result=reused)
                return Finished(name, TaskState.SUCCEEDED, reused)
        platform = kubernetes_executors(run.context.platform_spec).get(component.get("executorLabel", ""), {})
        deadline = platform.get("activeDeadlineSeconds")
        launched = ContainerTask(
            run_id=run.context.run_id,
            task_id=report.task_id,
            component=component,
            container=container,
            parameters=parameters,
            artifacts=artifacts,
            run_dir=run.run_dir,
            runtime=runtime,
            env=_container_env(container, runtime),
            platform=platform,
            timeout_seconds=float(deadline) if deadline else None,
        )
        leaf = asyncio.create_task(self._attempts(run, dag, name, task, launched, report))
        run.leaves.add(leaf)
        try:
            end = await leaf
        finally:
            run.leaves.discard(leaf)
        if key and end.state == TaskState.SUCCEEDED and end.result is not None and self.cache is not None:
            await self.cache.record(run.pipeline_name, key, run.context.run_id, report.task_id, end.result)
        return end

    async def _attempts(self, run: _Run, dag: _Dag, name: str, task: Mapping[str, Any], launched: ContainerTask, report: _Reporter) -> Finished:
        """The attempts of a container task (its retry policy); CANCELED when terminated."""
        retry = task.get("retryPolicy") or {}
        attempts = 1 + max(0, int(retry.get("maxRetryCount") or 0))
        exit_task = runs_after_failures(task)
        started = False
        attempt = 0

        def may_not_start() -> bool:  # terminated, or fail-fast (exit tasks run regardless)
            return run.canceled or (dag.failing and not exit_task)

        async def on_start(notes: Sequence[str]) -> None:
            nonlocal started
            if may_not_start():
                raise _NotStarted
            report.retries = attempt  # counted once it starts: a dropped retry is not one
            if not started:
                started = True
                report.notes = tuple(notes)
                await report(TaskState.RUNNING)

        def dropped(number: int) -> str:
            return f"attempt {number} of {attempts} not started: another task of its DAG failed"

        failure = TaskFailed("not run")
        try:
            for attempt in range(attempts):
                log = TaskLog(run.observer, report.task_id, run.log_volume(report.task_id))
                try:
                    result = await self.launcher.run(launched, log, on_start)
                except _NotStarted:
                    if not started:
                        return Finished(name, _NOT_RUN, None)
                    if not run.canceled:
                        log.add(dropped(attempt + 1))
                    break
                except TaskFailed as failed:
                    failure = failed
                else:
                    await report(TaskState.SUCCEEDED, result=result, exit_code=0)
                    return Finished(name, TaskState.SUCCEEDED, result)
                finally:
                    await log.flush()
                if attempt + 1 >= attempts:
                    break
                if may_not_start():  # decided before the backoff, when the sibling failed first
                    if not run.canceled:
                        await run.observer.log_lines(report.task_id, [dropped(attempt + 2)])
                    break
                factor = float(retry.get("backoffFactor") or 2.0)
                delay = min(_seconds(retry.get("backoffDuration")) * factor**attempt, _seconds(retry.get("backoffMaxDuration") or 3600))
                reason = failure.error.splitlines()[0]
                await run.observer.log_lines(report.task_id, [f"attempt {attempt + 1} of {attempts} failed ({reason}); retrying in {delay:g}s"])
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if not run.canceled:  # the server is stopping: nothing is reported
                raise
            if not started:
                return Finished(name, _NOT_RUN, None)
            await report(TaskState.CANCELED)
            return Finished(name, TaskState.CANCELED, None, "the run was terminated")
        error = f"task '{report.task_id}' failed: {failure.error}"
        await report(TaskState.FAILED, error=failure.error, exit_code=failure.exit_code)
        return Finished(name, TaskState.FAILED, None, error)


class _Reporter:
    """Reports the states of one task to the run's observer, with what is known of it so far."""

    def __init__(
        self, run: _Run, clock: Clock, task_id: str, display_name: str, parent_task_id: str, iteration_index: int | None = None
    ) -> None:
        self.run = run
        self.clock = clock
        self.task_id = task_id
        self.display_name = display_name
        self.parent_task_id = parent_task_id
        self.iteration_index = iteration_index
        self.iteration_count: int | None = None
        self.input_parameters: dict[str, Any] = {}
        self.image = ""
        self.notes: tuple[str, ...] = ()
        self.cached_from_run_id = ""
        self.retries = 0

    async def __call__(self, state: TaskState, *, result: TaskResult | None = None, error: str = "", exit_code: int | None = None) -> None:
        await self.run.observer.task_changed(TaskUpdate(
            task_id=self.task_id,
            display_name=self.display_name,
            parent_task_id=self.parent_task_id,
            state=state,
            time_us=self.clock.now_us(),
            image=self.image,
            exit_code=exit_code,
            error=error,
            input_parameters=self.input_parameters,
            result=result,
            iteration_index=self.iteration_index,
            iteration_count=self.iteration_count,
            cached_from_run_id=self.cached_from_run_id,
            notes=self.notes,
            retries=self.retries,
        ))

    async def failed(self, name: str, error: str) -> Finished:
        """Report that the task failed before it could run (`error` says why)."""
        await self(TaskState.FAILED, error=error)
        return Finished(name, TaskState.FAILED, None, f"task '{self.task_id}' failed: {error}")


def unsupported_features(spec: Mapping[str, Any]) -> list[str]:
    """What in `spec` no launcher can run, one message each: executors other than containers and
    importers (resolver, customJob), and pipeline input artifacts a run cannot be given (KFP's
    runtime config has parameters only)."""
    found = []
    for label, executor in sorted(((spec.get("deploymentSpec") or {}).get("executors") or {}).items()):
        kind = next((key for key in ("resolver", "customJob") if key in executor), "")
        if kind:
            found.append(f"executor {label!r} is a {kind}, which only Vertex AI runs")
    root_artifacts = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("artifacts") or {}
    required = sorted(name for name, definition in root_artifacts.items() if not definition.get("isOptional"))
    if required:
        found.append(
            f"pipeline input artifact(s) {', '.join(map(repr, required))}: a run can be given parameters only (as in KFP)"
        )
    return found


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` (a DAG's or a loop's children when it ends early) and wait for them."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _count_task(run: _Run) -> None:
    run.tasks += 1
    if run.tasks > MAX_TASKS:
        raise DriverError(f"the run would have more than {MAX_TASKS:,} tasks")


def _workspace(platform_spec: Mapping[str, Any]) -> bool:
    """Whether the pipeline asks for a workspace (dsl.PipelineConfig(workspace=...))."""
    kubernetes = (platform_spec.get("platforms") or {}).get("kubernetes") or {}
    return bool((kubernetes.get("pipelineConfig") or {}).get("workspace"))


def _container_env(container: Mapping[str, Any], runtime: RuntimeValues) -> dict[str, str]:
    """The container's `env` (what `set_env_variable` sets), as strings, placeholders resolved."""
    env = container.get("env") or []
    pairs = env.items() if isinstance(env, Mapping) else [(item["name"], item.get("value", "")) for item in env if "name" in item]
    return {str(name): runtime.substitute(str(value)) for name, value in pairs}


_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*s?\s*")


def _seconds(duration: Any) -> float:
    """"5s", "1.5s", "0s" or a number of seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    if isinstance(duration, str):
        match = _DURATION.fullmatch(duration)
        if match:
            return float(match.group(1))
    return 0.0


def _rfc3339(time_us: int) -> str:
    """RFC 3339 UTC to the second, as KFP's driver gives placeholder times: 2026-11-29T18:25:43Z."""
    return to_datetime(time_us).strftime("%Y-%m-%dT%H:%M:%SZ")

