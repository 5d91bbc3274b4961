"""The `local` launcher: runs each container task as a subprocess of this machine.

Decisions (see also `placeholders` and `process`):
- Artifacts live at `<pipeline root>/<run_id>/<task_id>/<output name>`; an artifact's `uri` is that
  absolute local path (no `file://` scheme), which is also its `path` in the task. Before a task
  runs, its artifact directory is emptied (a retried task must not see a failed attempt's files).
- The server never follows a link below the artifact root (`kfpgrpc.confined`): emptying or
  making a task's directory through a link a task planted fails that task; an output file that
  is a link fails it too; an artifact uri a task reports (or its declared path, if the task made
  it a link) must resolve inside `<pipeline root>/<run_id>`, or the task FAILS saying so. Links a
  task makes between files inside the run's directory are its own business.
- Images are not pulled: the command runs on this machine, and the task's notes say so.
  kfp-kubernetes settings that only place the pod (node selectors, tolerations, affinity, pod
  labels and annotations, image pull settings) are ignored and noted; what the task depends on
  (volumes, secrets, config maps) is refused (`unsupported`); `set_timeout` is enforced.
- The lightweight-component `pip install` preamble is never run (it would install into the task
  interpreter, by default the server's): it is dropped, and the task runs with the interpreter
  given as `python` when that satisfies what it installs (see `packages`), else in a task
  environment where its installs are made (see `environments`); `unsupported(spec)` lets
  CreateRun refuse a preamble that cannot be read.
- Task processes (`process`): a task ends when its own process exits, and then nothing it started
  survives; each gets a working directory of its own under `work_root` (its cwd, with HOME and
  TMPDIR in it) and a minimal environment (`process.task_environment`).
- At most `max_parallel_tasks` tasks run at once, across all runs.
- The first log line of every attempt is the argv actually run: "+ <shell-quoted argv>"
  (newlines inside arguments shown as \\n).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import shutil
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kfpgrpc.clock import Clock
from kfpgrpc.config import DEFAULT_TASK_ENV_MAX_AGE_US, DEFAULT_TASK_ENV_MAX_BYTES
from kfpgrpc.confined import Directory, UnsafePath
from kfpgrpc.executor.base import ArtifactOutput, TaskResult
from kfpgrpc.executor.environments import TaskEnvironmentError, TaskEnvironments
from kfpgrpc.executor.launcher import ContainerTask, TaskFailed, kubernetes_executors
from kfpgrpc.executor.packages import (
    PipInstall,
    PreambleError,
    is_pip_preamble,
    preamble_installs,
)
from kfpgrpc.executor.placeholders import (
    PlaceholderContext,
    TaskOutputError,
    build_executor_input,
    read_task_result,
    resolve_command,
)
from kfpgrpc.executor.process import TaskProcess, TaskProcesses, task_environment
from kfpgrpc.executor.resources import ResourceError, ResourceRequest
from kfpgrpc.executor.task_log import TaskLog, error_with_tail

# kfp-kubernetes executor settings (PlatformSpec platforms.kubernetes.deploymentSpec.executors):
# those that only say where and how a pod is scheduled, and those a task depends on.
PLACEMENT_SETTINGS = (
    "nodeSelector", "tolerations", "nodeAffinity", "podMetadata", "imagePullPolicy", "imagePullSecret",
)
DEPENDENCY_SETTINGS = {
    "pvcMount": "PVC mounts (kubernetes.mount_pvc)",
    "secretAsEnv": "secrets as environment variables (kubernetes.use_secret_as_env)",
    "secretAsVolume": "secrets as volumes (kubernetes.use_secret_as_volume)",
    "configMapAsEnv": "config maps as environment variables (kubernetes.use_config_map_as_env)",
    "configMapAsVolume": "config maps as volumes (kubernetes.use_config_map_as_volume)",
    "generic_ephemeral_volume": "generic ephemeral volumes (kubernetes.add_ephemeral_volume)",
    "emptyDirMounts": "empty-dir mounts (kubernetes.empty_dir_mount)",
    "fieldPathAsEnv": "pod fields as environment variables (kubernetes.use_field_path_as_env)",
}
# The "dummy images" of kfp-kubernetes' CreatePVC / DeletePVC: KFP's driver acts on Kubernetes
# instead of running them.
KUBERNETES_IMAGES = {"argostub/createpvc": "PVC creation (kubernetes.CreatePVC)", "argostub/deletepvc": "PVC deletion (kubernetes.DeletePVC)"}


class LocalLauncher:
    """Runs container tasks as local subprocesses (see the module docstring). `await start()`
    first, `await stop()` at the end.

    `artifact_root`: default root of the artifacts. `work_root`: a directory of its own for the
    tasks' working directories (emptied at start, see `process.TaskProcesses`). `python`: the
    interpreter the tasks' `python3` and `python` are. `kill_grace_seconds`: between SIGTERM and
    SIGKILL when a task is cancelled. `containment`: see `process.TaskProcesses`. `envs_root`
    (default: beside `work_root`), `env_max_age_us`, `env_max_bytes`, `clock`: see
    `environments.TaskEnvironments`."""

    def __init__(
        self,
        artifact_root: Path,
        work_root: Path,
        max_parallel_tasks: int = 4,
        python: str = sys.executable,
        kill_grace_seconds: float = 3.0,
        containment: str = "auto",
        envs_root: Path | None = None,
        env_max_age_us: int = DEFAULT_TASK_ENV_MAX_AGE_US,
        env_max_bytes: int = DEFAULT_TASK_ENV_MAX_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.artifact_root = Path(artifact_root).absolute()
        self.parallel_tasks = max_parallel_tasks
        self.python = python
        self.kill_grace_seconds = kill_grace_seconds
        self._slots = asyncio.Semaphore(max_parallel_tasks)
        self._processes = TaskProcesses(work_root, containment)
        self._environments = TaskEnvironments(
            envs_root or Path(work_root).absolute().with_name("envs"), python, self._processes,
            env_max_age_us, env_max_bytes, clock,
        )
        self._path_prefix = ""

    async def start(self) -> None:
        """Kill what a crashed server process left running and remove its task directories
        (see `process.TaskProcesses.start`). Raises OSError."""
        await self._processes.start()
        await self._environments.start()  # after the processes: a crashed build's are gone
        self._path_prefix = self._python_on_path()

    async def stop(self) -> None:
        """After the last task has ended: remove what the tasks left in the work root."""
        await self._environments.stop()
        await self._processes.stop()

    def stop_now(self) -> None:
        self.kill_grace_seconds = 0.0

    def uri_problem(self, uri: str) -> str:
        if os.path.isabs(uri):
            return ""
        return (f"{uri!r} is not on this machine: the local launcher reads artifacts at absolute local paths"
                " and file:// URIs only")

    async def reuse_outputs(self, result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
        return await reuse_outputs(result, run_dir, task_id)

    async def unsupported(self, spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> list[str]:
        return unsupported(spec, platform_spec)

    async def run(
        self, task: ContainerTask, log: TaskLog, on_start: Callable[[Sequence[str]], Awaitable[None]]
    ) -> TaskResult:
        async with self._slots:
            await on_start(self._notes(task))
            return await self._run(task, log)

    def _notes(self, task: ContainerTask) -> list[str]:
        """What the user should know about how `task` runs here."""
        notes = []
        image = task.container.get("image", "")
        if image:
            notes.append(f"image {image} was not pulled: the command runs on this machine")
        ignored = [key for key in PLACEMENT_SETTINGS if task.platform.get(key)]
        if ignored:
            notes.append(f"ignored on this machine (Kubernetes scheduling only): {', '.join(ignored)}")
        try:
            asked = ResourceRequest.of(task.container, task.platform, task.parameters).asked
        except ResourceError as error:
            asked = (str(error),)
        if asked:
            notes.append(f"not enforced on this machine: {', '.join(asked)}")
        return notes

    async def _run(self, task: ContainerTask, log: TaskLog) -> TaskResult:
        """One attempt, holding a slot; raises TaskFailed."""
        try:
            # On the loop: a few system calls (a retry's old files aside); a thread hop here
            # would let watchers see the task RUNNING well before its process exists.
            task_root = _empty_artifact_dir(task.run_dir, task.task_id)
        except (UnsafePath, OSError) as error:
            raise TaskFailed(f"could not prepare the task's artifact directory: {error}") from None
        task_dir = self._processes.new_task_dir()
        # Opened before the task starts: its outputs are read through these descriptors only.
        # The parameter files' directory exists, as KFP's launcher makes it (prepareOutputFolders):
        # a container component may write to an OutputPath with a shell redirection.
        parameter_files = Directory.open(str(task_dir / "outputs"), create=True)
        environment = contextlib.AsyncExitStack()  # holds the task environment while the task runs
        try:
            try:
                prepared = build_executor_input(
                    task.component, task.parameters, task.artifacts, task_root.path, parameter_files.path
                )
            except UnsafePath as error:
                raise TaskFailed(f"could not prepare the task's outputs: {error}") from None
            command = list(task.container.get("command") or [])
            try:
                installs = _installs(command)
            except PreambleError as error:  # a run stored before this check: CreateRun refuses it now
                raise TaskFailed(f"runs a pip install the local launcher cannot read ({error})") from None
            if installs:
                command = command[3:]
            try:
                argv = resolve_command(
                    command + list(task.container.get("args") or []), PlaceholderContext(prepared.executor_input, task.runtime)
                )
            except ValueError as error:
                raise TaskFailed(f"could not build the command: {error}") from None
            if not argv:
                raise TaskFailed("the container has no command")
            # What KFP's backend gives every task container (KFP_POD_NAME, KFP_POD_UID), here
            # per attempt.
            kfp = {"KFP_POD_NAME": f"{task.run_id}-{task.task_id}", "KFP_POD_UID": str(uuid.uuid4())}
            log.add(_display_argv(argv))
            path_prefix = self._path_prefix
            if installs:
                try:
                    python = await environment.enter_async_context(self._environments.use(installs, log))
                except TaskEnvironmentError as error:
                    raise TaskFailed(str(error)) from None
                if python is not None:
                    path_prefix = os.path.dirname(python)  # its python3 and python are the environment's
            env = task_environment(task_dir, path_prefix, task.run_id, kfp, task.env)
            try:
                if not _findable(argv[0], env["PATH"], task_dir):
                    raise FileNotFoundError(f"not found on the task's PATH {env['PATH']}")
                process = await self._processes.spawn(argv, env, task_dir)
            except OSError as error:
                log.add(f"could not start {argv[0]!r}: {error}")
                await log.flush()
                raise TaskFailed(f"could not start {argv[0]!r}: {error}") from None
            returncode = await self._wait(process, log, task.timeout_seconds)
            if process.status_unknown:
                raise TaskFailed(error_with_tail(process.status_unknown, log.tail))
            if returncode != 0:
                if returncode < 0:
                    what = f"killed by signal {signal.Signals(-returncode).name}"
                else:
                    what = f"exit code {returncode}"
                raise TaskFailed(error_with_tail(what, log.tail), returncode)
            try:
                return await asyncio.to_thread(read_task_result, prepared, task_root, parameter_files, task.run_dir)
            except TaskOutputError as error:
                raise TaskFailed(error_with_tail(str(error), log.tail), 0) from None
        finally:
            await environment.aclose()
            task_root.close()
            parameter_files.close()
            await asyncio.to_thread(shutil.rmtree, task_dir, ignore_errors=True)

    async def _wait(self, process: TaskProcess, log: TaskLog, timeout: float | None) -> int:
        """The task's own exit status, its output read to the end. Cancelled: the task is
        stopped (SIGTERM, the grace period, SIGKILL) before the cancellation propagates.
        Past `timeout` seconds it is killed: TaskFailed."""
        reader = asyncio.create_task(log.run(process.stdout))
        timed_out = False
        try:
            try:
                returncode = await asyncio.wait_for(process.wait(), timeout)  # its own process, not its pipe
            except TimeoutError:
                timed_out = True
                await process.kill()
                returncode = await process.wait()
            except asyncio.CancelledError:
                await asyncio.shield(process.terminate(self.kill_grace_seconds))
                raise
        finally:
            await asyncio.shield(process.drain(reader))
        if timed_out:
            raise TaskFailed(error_with_tail(f"timed out after {timeout:g}s (kubernetes.set_timeout)", log.tail))
        return returncode

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


async def reuse_outputs(result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
    """`Launcher.reuse_outputs` where `run_dir` is a directory of this machine (maybe a shared
    file system): hard links (copies across file systems) of the cached artifacts in the task's
    artifact directory, instant, and no space is used twice."""
    if not any(result.output_artifacts.values()) and not os.path.lexists(os.path.join(run_dir, task_id)):
        return result  # nothing to link and no earlier attempt's directory to remove: one stat
    # In a worker thread, the directories too: making one takes a millisecond on some file
    # systems, and a cached run makes two (its own and the task's).
    return await asyncio.to_thread(_reuse_outputs, result, run_dir, task_id)


def _reuse_outputs(result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
    try:
        if not any(result.output_artifacts.values()):
            # Nothing to link, so no directory is made (on some file systems the two
            # directories were most of what a cached task cost); an earlier attempt's goes.
            _remove_artifact_dir(run_dir, task_id)
            return result
        task_root = _empty_artifact_dir(run_dir, task_id)
    except (UnsafePath, OSError):
        return None
    with task_root:
        return _link_artifacts(result, task_root)


def unsupported(spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> list[str]:
    """`Launcher.unsupported` for launchers that run the command on a machine without Kubernetes
    (this one, a Ray node): kfp-kubernetes features a task depends on, and components whose `pip
    install` preamble cannot be read (what it installs runs in a task environment); one message
    each."""
    found = []
    for label, config in sorted(kubernetes_executors(platform_spec or {}).items()):
        for key, feature in DEPENDENCY_SETTINGS.items():
            if config.get(key):
                found.append(f"{feature} in executor {label!r}: this machine has no Kubernetes")
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    for name, component in sorted((spec.get("components") or {}).items()):
        container = (executors.get(component.get("executorLabel", "")) or {}).get("container") or {}
        if container.get("image") in KUBERNETES_IMAGES:
            found.append(f"{KUBERNETES_IMAGES[container['image']]} in component {name!r}: this machine has no Kubernetes")
            continue
        try:
            _installs(container.get("command") or [])
        except PreambleError as error:
            found.append(f"component {name!r} runs a pip install the local launcher cannot read ({error})")
    return found


def _empty_artifact_dir(run_dir: str, task_id: str) -> Directory:
    """Make `<run_dir>/<task_id>` an empty directory (a retried task must not see a failed
    attempt's files) and open it, following no link below the artifact root: a task may have
    replaced its directory, or the run's, with a link to a directory of the server's."""
    parent, name = os.path.split(run_dir)
    with Directory.open(parent, create=True) as anchor, anchor.child(name, create=True) as run:
        run.remove(task_id)
        return run.child(task_id, create=True)


def _remove_artifact_dir(run_dir: str, task_id: str) -> None:
    """Remove `<run_dir>/<task_id>` if it exists, following no link below the artifact root."""
    parent, name = os.path.split(run_dir)
    try:
        with Directory.open(parent) as anchor, anchor.child(name) as run:
            run.remove(task_id)
    except FileNotFoundError:
        return


def _link_artifacts(result: TaskResult, task_root: Directory) -> TaskResult | None:
    """`result` with each output artifact linked into `task_root` as `<output name>` (a list:
    `<output name>-<index>`); None if one is gone or cannot be linked. Blocking."""
    artifacts: dict[str, list[ArtifactOutput]] = {}
    try:
        for name, outputs in result.output_artifacts.items():
            artifacts[name] = []
            for index, artifact in enumerate(outputs):
                target = name if len(outputs) == 1 else f"{name}-{index}"
                _link_tree(artifact.uri, task_root.fd, target)
                artifacts[name].append(
                    replace(artifact, uri=os.path.join(task_root.path, target), origin=artifact.origin or artifact.uri)
                )
    except (OSError, RecursionError):
        return None
    return TaskResult(output_parameters=result.output_parameters, output_artifacts=artifacts)


def _link_tree(source: str, dir_fd: int, name: str) -> None:
    """Link `source` (a file, or a directory and all below it) as `name` in the directory
    `dir_fd`. Symbolic links are linked (or recreated) as links, never followed: a task may have
    left one to a file of the server's."""
    if os.path.isdir(source) and not os.path.islink(source):
        os.mkdir(name, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            with os.scandir(source) as entries:
                for entry in entries:
                    _link_tree(entry.path, fd, entry.name)
        finally:
            os.close(fd)
        return
    try:
        os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        if os.path.islink(source):
            os.symlink(os.readlink(source), name, dir_fd=dir_fd)
            return
        reader = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        writer = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        try:
            while os.sendfile(writer, reader, None, 1 << 20):
                pass
        finally:
            os.close(reader)
            os.close(writer)


def _installs(command: Sequence[Any]) -> tuple[PipInstall, ...]:
    """The installs of the command's pip preamble (none without one). Raises PreambleError."""
    return preamble_installs(command[2]) if is_pip_preamble(command) else ()


def _findable(command: str, path: str, cwd: Path) -> bool:
    """Whether exec would find `command` (by PATH lookup, or relative to `cwd`)."""
    if os.sep in command:
        return os.access(cwd / command, os.X_OK)
    return shutil.which(command, path=path) is not None


def _display_argv(argv: list[str]) -> str:
    return "+ " + " ".join(shlex.quote(arg.replace("\r", "\\r").replace("\n", "\\n")) for arg in argv)
