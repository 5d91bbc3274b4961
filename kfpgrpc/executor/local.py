"""The `local` executor: runs a compiled KFP pipeline spec on this machine, one subprocess per
container task.

Decisions (see also the module docstring of `placeholders`):
- Artifacts live at `<artifact_root>/<run_id>/<task_id>/<output name>`; an artifact's `uri` is that
  absolute local path (no `file://` scheme), which is also its `path` in the task. Before a task
  runs, its artifact directory is emptied (a retried task must not see a failed attempt's files).
- The server never follows a link below the artifact root (`kfpgrpc.confined`): emptying or
  making a task's directory through a link a task planted fails that task; an output file that
  is a link fails it too; an artifact uri a task reports (or its declared path, if the task made
  it a link) must resolve inside `<artifact_root>/<run_id>`, or the task FAILS saying so. Links a
  task makes between files inside the run's directory are its own business.
- After a task fails (or the run is terminated), tasks that have not started are never started
  and nothing is reported for them (no SKIPPED updates). Running tasks are allowed to finish;
  DAG tasks whose children failed are reported FAILED with the child's error.
- `retryPolicy` is supported: a failed container task is run again up to `maxRetryCount` times,
  after `backoffDuration * backoffFactor**attempt` (capped by `backoffMaxDuration`); it stays
  RUNNING between attempts. No retry once the run is failing or terminated.
- Loops, conditions, exit handlers, importers/non-container executors and parameter expression
  selectors are not supported: `unsupported_features(spec)` lists them and `execute` refuses
  such specs with ValueError before running anything.
- Tasks in `previous` are not run: they are reported SUCCEEDED with the given result. DAG tasks
  are always walked again (their children may be in `previous`); their result is recomputed.
- The lightweight-component `pip install` preamble is never run (it would install into the task
  interpreter, by default the server's): it is dropped when the interpreter given as `python`
  already satisfies what it installs (see `packages`), else the task fails without running;
  `unavailable_packages(spec)` lets CreateRun refuse such a spec first.
- Task processes (`process`): a task ends when its own process exits, and then nothing it started
  survives; each gets a working directory of its own under `work_root` (its cwd, with HOME and
  TMPDIR in it) and a minimal environment (`process.task_environment`).
- The first log line of every container task is the argv actually run: "+ <shell-quoted argv>"
  (newlines inside arguments shown as \\n). Log lines, the log volume kept per task and task
  errors are bounded (`task_log`), and so are a task's outputs (`placeholders`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfpgrpc.bounds import DEFAULT_MAX_LOG_BYTES_PER_TASK
from kfpgrpc.clock import Clock, SystemClock, to_datetime
from kfpgrpc.confined import Directory, UnsafePath
from kfpgrpc.executor.base import (
    ArtifactOutput,
    RunObserver,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
)
from kfpgrpc.executor.packages import PreambleError, TaskInterpreter, is_pip_preamble, preamble_requirements
from kfpgrpc.executor.placeholders import (
    PlaceholderContext,
    TaskOutputError,
    build_executor_input,
    cast_parameter,
    read_task_result,
    resolve_command,
    resolve_parameter_self_references,
)
from kfpgrpc.executor.process import TaskProcess, TaskProcesses, task_environment
from kfpgrpc.executor.task_log import LogVolume, TaskLog, error_with_tail



# ---------------------------------------------------------------------------------------------
# Static checks


def _dags(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Every DAG in the spec: ("root", root.dag) and (component name, component.dag)."""
    dags: list[tuple[str, Mapping[str, Any]]] = []
    root_dag = (spec.get("root") or {}).get("dag")
    if root_dag:
        dags.append(("root", root_dag))
    for name, component in sorted((spec.get("components") or {}).items()):
        if isinstance(component, Mapping) and component.get("dag"):
            dags.append((name, component["dag"]))
    return dags


def unsupported_features(spec: dict) -> list[str]:
    """Human-readable names of the control flow in `spec` that the local executor cannot run,
    e.g. "loops (ParallelFor) in task 'for-loop-2'". Empty when the spec can run locally."""
    found: list[str] = []

    def add(message: str) -> None:
        if message not in found:
            found.append(message)

    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    for _, dag in _dags(spec):
        for task_name, task in sorted((dag.get("tasks") or {}).items()):
            if task.get("parameterIterator") or task.get("artifactIterator"):
                add(f"loops (ParallelFor) in task '{task_name}'")
            trigger = task.get("triggerPolicy") or {}
            if trigger.get("condition"):
                add(f"conditions (If/Elif/Else) in task '{task_name}'")
            inputs = task.get("inputs") or {}
            parameters = inputs.get("parameters") or {}
            final_status = any("taskFinalStatus" in p for p in parameters.values())
            if trigger.get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED" or final_status:
                guarded = list(task.get("dependentTasks") or [])
                for p in parameters.values():
                    producer = (p.get("taskFinalStatus") or {}).get("producerTask")
                    if producer and producer not in guarded:
                        guarded.append(producer)
                for group in guarded or [task_name]:
                    add(f"exit handlers in task '{group}' (exit task '{task_name}')")
            if any("parameterExpressionSelector" in p for p in parameters.values()):
                add(f"parameter expression selectors in task '{task_name}'")
            component = components.get((task.get("componentRef") or {}).get("name", ""))
            if component and not component.get("dag"):
                executor = executors.get(component.get("executorLabel", "")) or {}
                if executor and "container" not in executor:
                    kind = "importers" if "importer" in executor else "non-container executors"
                    add(f"{kind} in task '{task_name}'")
        for output in ((dag.get("outputs") or {}).get("parameters") or {}).values():
            if "valueFromOneof" in output:
                add("conditions (OneOf outputs) in a sub-DAG")
    return found


def _validate(spec: Mapping[str, Any]) -> None:
    """Raise ValueError for specs that cannot run at all (before anything runs)."""
    unsupported = unsupported_features(dict(spec))
    if unsupported:
        raise ValueError(
            "the local executor does not support " + "; ".join(unsupported)
        )
    if not (spec.get("root") or {}).get("dag"):
        raise ValueError("the pipeline spec has no root DAG")
    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    for where, dag in _dags(spec):
        tasks = dag.get("tasks") or {}
        for task_name, task in tasks.items():
            ref = (task.get("componentRef") or {}).get("name", "")
            component = components.get(ref)
            if component is None:
                raise ValueError(f"task '{task_name}' in {where} refers to unknown component {ref!r}")
            if not component.get("dag"):
                label = component.get("executorLabel", "")
                if "container" not in (executors.get(label) or {}):
                    raise ValueError(f"component {ref!r} has no container executor {label!r}")
            for dependency in _dependencies(task):
                if dependency not in tasks:
                    raise ValueError(
                        f"task '{task_name}' in {where} depends on unknown task '{dependency}'"
                    )


def _dependencies(task: Mapping[str, Any]) -> set[str]:
    deps = set(task.get("dependentTasks") or [])
    inputs = task.get("inputs") or {}
    for parameter in (inputs.get("parameters") or {}).values():
        producer = (parameter.get("taskOutputParameter") or {}).get("producerTask")
        if producer:
            deps.add(producer)
    for artifact in (inputs.get("artifacts") or {}).values():
        producer = (artifact.get("taskOutputArtifact") or {}).get("producerTask")
        if producer:
            deps.add(producer)
    return deps


# ---------------------------------------------------------------------------------------------
# Durations


def _seconds(duration: Any) -> float:
    """"5s", "1.5s", "0s" or a number of seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    if isinstance(duration, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*s?\s*", duration)
        if match:
            return float(match.group(1))
    return 0.0


def _display_argv(argv: list[str]) -> str:
    return "+ " + " ".join(shlex.quote(arg.replace("\r", "\\r").replace("\n", "\\n")) for arg in argv)


# ---------------------------------------------------------------------------------------------
# Run state


class _TaskFailed(Exception):
    def __init__(self, error: str, exit_code: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.exit_code = exit_code


@dataclass
class _Run:
    run_id: str
    spec: Mapping[str, Any]
    previous: Mapping[str, TaskResult]
    observer: RunObserver
    create_time_utc: str
    artifact_root: Path  # this run's artifacts are under artifact_root / run_id
    max_log_bytes_per_task: int
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # failing or terminated
    canceled: bool = False
    first_error: str = ""
    processes: dict[str, TaskProcess] = field(default_factory=dict)
    log_volumes: dict[str, LogVolume] = field(default_factory=dict)

    def log_volume(self, task_id: str) -> LogVolume:
        """The task's log volume in this execution, shared by its attempts."""
        if task_id not in self.log_volumes:
            self.log_volumes[task_id] = LogVolume(self.max_log_bytes_per_task)
        return self.log_volumes[task_id]

    def fail(self, error: str) -> None:
        if not self.first_error:
            self.first_error = error
        self.stopped.set()


@dataclass
class _Scope:
    """The inputs of the DAG being walked and where its tasks report."""

    prefix: str  # "" at root, "<dag task id>." inside a sub-DAG
    parent_task_id: str
    parameters: dict[str, Any]
    artifacts: dict[str, list[ArtifactOutput]]


class LocalExecutor:
    """Runs pipeline specs as local subprocesses (see the module docstring). `await start()`
    first, `await stop()` at the end.

    `artifact_root`: default root of the artifacts. `work_root`: a directory of its own for the
    tasks' working directories (emptied at start, see `process.TaskProcesses`). `python`: the
    interpreter the tasks' `python3` and `python` are. `kill_grace_seconds`: between SIGTERM and
    SIGKILL on terminate. `containment`: see `process.TaskProcesses`."""

    def __init__(
        self,
        artifact_root: Path,
        work_root: Path,
        max_parallel_tasks: int = 4,
        python: str = sys.executable,
        kill_grace_seconds: float = 3.0,
        clock: Clock | None = None,
        containment: str = "auto",
        max_log_bytes_per_task: int = DEFAULT_MAX_LOG_BYTES_PER_TASK,
    ) -> None:
        self.artifact_root = Path(artifact_root).absolute()
        self.max_log_bytes_per_task = max_log_bytes_per_task
        self._clock = clock or SystemClock()
        self.max_parallel_tasks = max_parallel_tasks
        self.python = python
        self.kill_grace_seconds = kill_grace_seconds
        self._slots = asyncio.Semaphore(max_parallel_tasks)
        self._runs: dict[str, _Run] = {}
        self._processes = TaskProcesses(work_root, containment)
        self._interpreter = TaskInterpreter(python)
        self._path_prefix = ""

    # -- public API ------------------------------------------------------------------------

    async def start(self) -> None:
        """Kill what a crashed server process left running and remove its task directories
        (see `process.TaskProcesses.start`). Raises OSError."""
        await self._processes.start()
        self._path_prefix = self._python_on_path()

    async def stop(self) -> None:
        """After the last run has stopped: remove what the tasks left in the work root."""
        await self._processes.stop()

    async def unavailable_packages(self, spec: dict) -> list[str]:
        """One message per component whose `pip install` preamble asks for packages the task
        interpreter does not have, e.g. "component 'comp-train' needs numpy==1.0.0, kfp==2.16.1".
        Empty when every component can run as is."""
        executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
        found = []
        for name, component in sorted((spec.get("components") or {}).items()):
            container = (executors.get(component.get("executorLabel", "")) or {}).get("container") or {}
            try:
                missing = await self._missing_packages(container.get("command") or [])
            except PreambleError as error:
                found.append(f"component {name!r} runs a pip install the local executor cannot read ({error})")
                continue
            if missing:
                found.append(f"component {name!r} needs {', '.join(missing)}")
        return found

    async def _missing_packages(self, command: list[Any]) -> list[str]:
        """What the command's pip preamble installs that the task interpreter lacks (none when
        it has no preamble). Raises PreambleError."""
        if not is_pip_preamble(command):
            return []
        return await self._interpreter.missing(preamble_requirements(command[2]))

    async def execute(
        self,
        run_id: str,
        spec: dict,
        parameters: dict[str, Any],
        previous: dict[str, TaskResult],
        observer: RunObserver,
        artifact_root: Path | None = None,
    ) -> RunOutcome:
        _validate(spec)
        if run_id in self._runs:
            raise ValueError(f"run {run_id!r} is already executing")
        run = _Run(
            run_id=run_id,
            spec=spec,
            previous=previous,
            observer=observer,
            create_time_utc=to_datetime(self._clock.now_us()).isoformat(),
            # Resolved once: a link a task plants below it later is not followed (see confined).
            artifact_root=Path(os.path.realpath(artifact_root or self.artifact_root)),
            max_log_bytes_per_task=self.max_log_bytes_per_task,
        )
        self._runs[run_id] = run
        root = spec["root"]
        root_parameters = _typed_parameters(
            parameters, (root.get("inputDefinitions") or {}).get("parameters") or {}
        )
        scope = _Scope(prefix="", parent_task_id="", parameters=root_parameters, artifacts={})
        try:
            await self._run_dag(run, root["dag"], scope)
        finally:
            self._runs.pop(run_id, None)
            await self._kill_all(run, grace=0.0)
        if run.canceled:
            return RunOutcome(TaskState.CANCELED, "the run was terminated")
        if run.first_error:
            return RunOutcome(TaskState.FAILED, run.first_error)
        return RunOutcome(TaskState.SUCCEEDED, "")

    async def terminate(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        run.canceled = True
        run.stopped.set()
        await self._kill_all(run, grace=self.kill_grace_seconds)

    # -- DAGs --------------------------------------------------------------------------------

    async def _run_dag(
        self, run: _Run, dag: Mapping[str, Any], scope: _Scope
    ) -> tuple[TaskResult | None, str]:
        """Walk `dag`. Returns (the DAG's outputs, "") when every task succeeded, else
        (None, error of the first task that failed in it, or "" when stopped). Each finished
        task costs O(its dependents): a DAG of 20,000 tasks is not rescanned per task."""
        tasks: Mapping[str, Any] = dag.get("tasks") or {}
        waiting_for = {name: _dependencies(task) for name, task in tasks.items()}
        dependents: dict[str, list[str]] = {}
        for name, dependencies in waiting_for.items():
            for dependency in dependencies:
                dependents.setdefault(dependency, []).append(name)
        ready = sorted(name for name, dependencies in waiting_for.items() if not dependencies)
        results: dict[str, TaskResult] = {}
        finished: asyncio.Queue[tuple[str, asyncio.Task[tuple[TaskResult | None, str]]]] = asyncio.Queue()
        running: set[asyncio.Task[tuple[TaskResult | None, str]]] = set()
        dag_error = ""
        try:
            while True:
                if not run.stopped.is_set():
                    for name in ready:
                        started = asyncio.create_task(self._run_task(run, name, tasks[name], scope, results))
                        started.add_done_callback(functools.partial(_put, finished, name))
                        running.add(started)
                ready = []
                if not running:
                    break
                name, done = await finished.get()
                running.discard(done)
                result, error = done.result()
                if result is not None:
                    results[name] = result
                    for dependent in dependents.get(name, ()):
                        waiting_for[dependent].discard(name)
                        if not waiting_for[dependent]:
                            ready.append(dependent)
                elif error and not dag_error:
                    dag_error = error
        finally:
            for pending in running:
                pending.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if len(results) < len(tasks):
            return None, dag_error
        return _dag_outputs(dag, results), ""

    async def _run_task(
        self,
        run: _Run,
        name: str,
        task: Mapping[str, Any],
        scope: _Scope,
        results: Mapping[str, TaskResult],
    ) -> tuple[TaskResult | None, str]:
        task_id = scope.prefix + name
        display_name = (task.get("taskInfo") or {}).get("name") or name
        component = run.spec["components"][task["componentRef"]["name"]]
        parameters, artifacts = _resolve_inputs(task, component, scope, results)
        base = dict(task_id=task_id, display_name=display_name, parent_task_id=scope.parent_task_id)

        if component.get("dag"):
            await run.observer.task_changed(
                TaskUpdate(**base, state=TaskState.RUNNING, time_us=self._clock.now_us(),
                           input_parameters=parameters)
            )
            inner = _Scope(prefix=task_id + ".", parent_task_id=task_id,
                           parameters=parameters, artifacts=artifacts)
            result, error = await self._run_dag(run, component["dag"], inner)
            if result is not None:
                await run.observer.task_changed(
                    TaskUpdate(**base, state=TaskState.SUCCEEDED, time_us=self._clock.now_us(),
                               input_parameters=parameters, result=result)
                )
                return result, ""
            if run.canceled:
                state, reported = TaskState.CANCELED, ""
            else:
                state, reported = TaskState.FAILED, error or "not run to the end: another task failed"
            await run.observer.task_changed(
                TaskUpdate(**base, state=state, time_us=self._clock.now_us(), error=reported,
                           input_parameters=parameters)
            )
            return None, error

        executor = run.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor["container"]
        image = container.get("image", "")
        if task_id in run.previous:
            result = run.previous[task_id]
            await run.observer.task_changed(
                TaskUpdate(**base, state=TaskState.SUCCEEDED, time_us=self._clock.now_us(), image=image,
                           input_parameters=parameters, result=result)
            )
            return result, ""

        retry = task.get("retryPolicy") or {}
        attempts = 1 + max(0, int(retry.get("maxRetryCount") or 0))
        reported_running = False
        for attempt in range(attempts):
            async with self._slots:
                if run.stopped.is_set():
                    if not reported_running:
                        return None, ""  # never started: nothing reported
                    break
                if not reported_running:
                    reported_running = True
                    await run.observer.task_changed(
                        TaskUpdate(**base, state=TaskState.RUNNING, time_us=self._clock.now_us(),
                                   image=image, input_parameters=parameters)
                    )
                try:
                    result = await self._run_container(
                        run, task_id, display_name, component, container, parameters, artifacts
                    )
                except _TaskFailed as failure:
                    if run.canceled:
                        break
                    last_failure = failure
                else:
                    await run.observer.task_changed(
                        TaskUpdate(**base, state=TaskState.SUCCEEDED, time_us=self._clock.now_us(),
                                   image=image, exit_code=0, input_parameters=parameters,
                                   result=result)
                    )
                    return result, ""
            if attempt + 1 < attempts and not run.stopped.is_set():
                factor = float(retry.get("backoffFactor") or 2.0)
                delay = min(
                    _seconds(retry.get("backoffDuration")) * factor**attempt,
                    _seconds(retry.get("backoffMaxDuration") or 3600),
                )
                reason = last_failure.error.splitlines()[0]
                message = f"attempt {attempt + 1} of {attempts} failed ({reason}); "
                await run.observer.log_lines(task_id, [message + f"retrying in {delay:g}s"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.stopped.wait(), timeout=delay)
                continue
            break
        if run.canceled:
            await run.observer.task_changed(
                TaskUpdate(**base, state=TaskState.CANCELED, time_us=self._clock.now_us(), image=image,
                           input_parameters=parameters)
            )
            return None, ""
        error = f"task '{task_id}' failed: {last_failure.error}"
        run.fail(error)
        await run.observer.task_changed(
            TaskUpdate(**base, state=TaskState.FAILED, time_us=self._clock.now_us(), image=image,
                       exit_code=last_failure.exit_code, error=last_failure.error,
                       input_parameters=parameters)
        )
        return None, error

    # -- container tasks ---------------------------------------------------------------------

    async def _run_container(
        self,
        run: _Run,
        task_id: str,
        display_name: str,
        component: Mapping[str, Any],
        container: Mapping[str, Any],
        parameters: dict[str, Any],
        artifacts: dict[str, list[ArtifactOutput]],
    ) -> TaskResult:
        """Run one attempt of a container task; raises _TaskFailed."""
        run_dir = run.artifact_root / run.run_id
        try:
            # On the loop, as before: a few system calls (a retry's old files aside); a thread hop
            # here would let watchers see the task RUNNING well before its process exists.
            _empty_artifact_dir(run.artifact_root, run.run_id, task_id)
        except (UnsafePath, OSError) as error:
            raise _TaskFailed(f"could not prepare the task's artifact directory: {error}") from None
        task_dir = self._processes.new_task_dir()
        # Opened before the task starts: its outputs are read through this descriptor only.
        outputs = Directory.open(str(task_dir / "outputs"), create=True)
        try:
            try:
                prepared = build_executor_input(
                    component, parameters, artifacts, str(run_dir / task_id), outputs.path
                )
            except UnsafePath as error:
                raise _TaskFailed(f"could not prepare the task's outputs: {error}") from None
            context = PlaceholderContext(
                executor_input=prepared.executor_input,
                pipeline_job_name=str((run.spec.get("pipelineInfo") or {}).get("name", "")),
                pipeline_job_resource_name=run.run_id,
                pipeline_job_uuid=run.run_id,
                pipeline_task_name=display_name,
                pipeline_task_uuid=f"{run.run_id}/{task_id}",
                pipeline_root=str(run_dir),
                create_time_utc=run.create_time_utc,
            )
            command = list(container.get("command") or [])
            try:
                missing = await self._missing_packages(command)
            except PreambleError as error:
                raise _TaskFailed(f"runs a pip install the local executor cannot read ({error}); pip is never run") from None
            if missing:  # a run stored before the packages went away: CreateRun refuses it now
                raise _TaskFailed(f"needs packages not available to the local executor: {', '.join(missing)}; pip is never run")
            if is_pip_preamble(command):
                command = command[3:]
            try:
                argv = resolve_command(command + list(container.get("args") or []), context)
            except ValueError as error:
                raise _TaskFailed(f"could not build the command: {error}") from None
            if not argv:
                raise _TaskFailed("the container has no command")
            # What KFP's backend gives every task container (KFP_POD_NAME, KFP_POD_UID), here
            # per attempt.
            kfp = {"KFP_POD_NAME": f"{run.run_id}-{task_id}", "KFP_POD_UID": str(uuid.uuid4())}
            env = task_environment(task_dir, self._path_prefix, run.run_id, kfp, _container_env(container))
            log = TaskLog(run.observer, task_id, run.log_volume(task_id))
            log.add(_display_argv(argv))
            try:
                if not _findable(argv[0], env["PATH"], task_dir):
                    raise FileNotFoundError(f"not found on the task's PATH {env['PATH']}")
                process = await self._processes.spawn(argv, env, task_dir)
            except OSError as error:
                log.add(f"could not start {argv[0]!r}: {error}")
                await log.flush()
                raise _TaskFailed(f"could not start {argv[0]!r}: {error}") from None
            run.processes[task_id] = process
            if run.canceled:  # terminated while this task was getting ready: _kill_all missed it
                await process.kill()
            reader = asyncio.create_task(log.run(process.stdout))
            try:
                returncode = await process.wait()  # the task's own process, not its pipe
            finally:
                run.processes.pop(task_id, None)
                await process.kill()  # what it left running
                # The pipe's writers are gone: what they wrote is read to the end, unless one
                # escaped the kill (then the output stops here).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), timeout=2.0)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                process.close_output()
            if process.status_unknown:
                raise _TaskFailed(error_with_tail(process.status_unknown, log.tail))
            if returncode != 0:
                if returncode < 0:
                    what = f"killed by signal {signal.Signals(-returncode).name}"
                else:
                    what = f"exit code {returncode}"
                raise _TaskFailed(error_with_tail(what, log.tail), returncode)
            try:
                return await asyncio.to_thread(read_task_result, prepared, outputs, str(run_dir))
            except TaskOutputError as error:
                raise _TaskFailed(error_with_tail(str(error), log.tail), 0) from None
        finally:
            outputs.close()
            await asyncio.to_thread(shutil.rmtree, task_dir, ignore_errors=True)

    def _python_on_path(self) -> str:
        """Directories to put first on the tasks' PATH so that `python3` (and `python`) is
        `self.python`: its own directory, after a directory of links to it where that one's
        `python3` or `python` is another interpreter."""
        directory = os.path.dirname(os.path.abspath(self.python))
        target = os.path.realpath(self.python)
        if all(
            os.path.realpath(os.path.join(directory, name)) == target
            for name in ("python3", "python")
        ):
            return directory
        links = self._processes.work_root / "bin"
        links.mkdir(exist_ok=True)
        for name in ("python3", "python"):
            os.symlink(os.path.abspath(self.python), links / name)
        return str(links) + os.pathsep + directory

    async def _kill_all(self, run: _Run, grace: float) -> None:
        """SIGTERM every running task of the run (all of its processes), SIGKILL what is left
        after `grace`."""
        await asyncio.gather(*(process.terminate(grace) for process in list(run.processes.values())))


def _empty_artifact_dir(root: Path, run_id: str, task_id: str) -> None:
    """Make `<root>/<run_id>/<task_id>` an empty directory (a retried task must not see a failed
    attempt's files), following no link below the artifact root: a task may have replaced its
    directory, or the run's, with a link to a directory of the server's."""
    with Directory.open(root, create=True) as anchor, anchor.child(run_id, create=True) as run_dir:
        run_dir.remove(task_id)
        run_dir.child(task_id, create=True).close()


def _put(queue: asyncio.Queue[tuple[str, asyncio.Task[Any]]], name: str, task: asyncio.Task[Any]) -> None:
    queue.put_nowait((name, task))


def _findable(command: str, path: str, cwd: Path) -> bool:
    """Whether exec would find `command` (by PATH lookup, or relative to `cwd`)."""
    if os.sep in command:
        return os.access(cwd / command, os.X_OK)
    return shutil.which(command, path=path) is not None


def _container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's `env` (what `set_env_variable` sets), as strings."""
    env = container.get("env") or []
    pairs = env.items() if isinstance(env, Mapping) else [(item["name"], item.get("value", "")) for item in env if "name" in item]
    return {str(name): str(value) for name, value in pairs}


# ---------------------------------------------------------------------------------------------
# Inputs and outputs of tasks and DAGs


def _typed_parameters(values: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    typed = dict(values)
    for name, definition in definitions.items():
        if name in typed:
            typed[name] = cast_parameter(typed[name], definition.get("parameterType"))
    return typed


def _constant(spec: Mapping[str, Any]) -> Any:
    if "constant" in spec:
        return spec["constant"]
    old = spec.get("constantValue") or {}  # schema 2.0.0: {"intValue": ...} etc.
    return next(iter(old.values()), None)


def _resolve_inputs(
    task: Mapping[str, Any],
    component: Mapping[str, Any],
    scope: _Scope,
    results: Mapping[str, TaskResult],
) -> tuple[dict[str, Any], dict[str, list[ArtifactOutput]]]:
    inputs = task.get("inputs") or {}
    parameters: dict[str, Any] = {}
    for name, source in (inputs.get("parameters") or {}).items():
        if "componentInputParameter" in source:
            key = source["componentInputParameter"]
            if key in scope.parameters:
                parameters[name] = scope.parameters[key]
        elif "taskOutputParameter" in source:
            output = source["taskOutputParameter"]
            produced = results[output["producerTask"]].output_parameters
            if output["outputParameterKey"] in produced:
                parameters[name] = produced[output["outputParameterKey"]]
        elif "runtimeValue" in source:
            parameters[name] = _constant(source["runtimeValue"])
    definitions = (component.get("inputDefinitions") or {}).get("parameters") or {}
    for name, definition in definitions.items():
        if parameters.get(name) is None and "defaultValue" in definition:
            parameters[name] = definition["defaultValue"]
    parameters = {k: v for k, v in parameters.items() if v is not None}
    parameters = _typed_parameters(resolve_parameter_self_references(parameters), definitions)
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for name, source in (inputs.get("artifacts") or {}).items():
        if "componentInputArtifact" in source:
            key = source["componentInputArtifact"]
            if key in scope.artifacts:
                artifacts[name] = scope.artifacts[key]
        elif "taskOutputArtifact" in source:
            output = source["taskOutputArtifact"]
            produced = results[output["producerTask"]].output_artifacts
            if output["outputArtifactKey"] in produced:
                artifacts[name] = produced[output["outputArtifactKey"]]
    return parameters, artifacts


def _dag_outputs(dag: Mapping[str, Any], results: Mapping[str, TaskResult]) -> TaskResult:
    outputs = dag.get("outputs") or {}
    parameters: dict[str, Any] = {}
    for name, source in (outputs.get("parameters") or {}).items():
        selector = source.get("valueFromParameter") or {}
        producer = results.get(selector.get("producerSubtask", ""))
        if producer is not None and selector.get("outputParameterKey") in producer.output_parameters:
            parameters[name] = producer.output_parameters[selector["outputParameterKey"]]
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for name, source in (outputs.get("artifacts") or {}).items():
        collected: list[ArtifactOutput] = []
        for selector in source.get("artifactSelectors") or []:
            producer = results.get(selector.get("producerSubtask", ""))
            if producer is not None:
                collected.extend(producer.output_artifacts.get(selector.get("outputArtifactKey", ""), []))
        artifacts[name] = collected
    return TaskResult(output_parameters=parameters, output_artifacts=artifacts)
