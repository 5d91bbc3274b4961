"""Task environments: the Python packages a lightweight component installs, in a virtual
environment built for that package set, never in the server's own environment.

KFP runs a lightweight component in its image after the `pip install` preamble the kfp SDK puts
before its command (`packages`): the component's `packages_to_install` (from its
`pip_index_urls`), then the SDK's own `kfp==<version> --no-deps`, whose runtime the component's
`python3 -m kfp.dsl.executor_main` imports. Here the preamble is dropped, and:

- When the task interpreter satisfies every requirement (`packages.TaskInterpreter`), the task
  runs with it: nothing is built.
- Otherwise the preamble's installs are made, in order and with their own options, into a
  virtual environment of the task interpreter's Python without system site packages (like the
  image: only what is installed), and the task runs with that environment's `python3`.
  Environments are keyed by the interpreter and the installs, built once (concurrent tasks that
  need one wait for the same build) and kept under `<data dir>/envs/<key>/` for later tasks and
  runs.

How an environment is built (measured in docs/benchmarks.md): `python -m venv --without-pip`,
then each install by the server's own pip (`pip --python <environment's python> install`, pip
22.3 or later), so that pip reads the machine's configuration as it would for the server (its
config files and PIP_* variables: index URLs, find-links, constraints, certificates, proxies)
and the server's pip cache. The SDK's `kfp==X --no-deps` is the same in every environment of
kfp X: its wheel is made once into `<data dir>/envs/wheels/` and unpacked by `installer` (a
tenth of a second instead of a pip start-up). The wheel is made from the kfp SDK installed in the
server's environment when that is version X (`wheel_of_installed`: no index needed, so it works
offline), else downloaded
(`pip download`, with that install's index options). The build's processes are task processes (`process.TaskProcesses`: contained, killed
with a crashed server) whose output goes to the log of the task that started the build, bounded
like any task output (`task_log`). They run packages' own build code, so they get only what pip
reads of the server's environment: its PIP_* settings (but PIP_TARGET, PIP_PREFIX, PIP_ROOT and
PIP_USER, which would install elsewhere), PATH, HOME and the XDG directories (pip's config
files and cache), proxies, certificate and netrc locations. Never the server's token, cloud
credentials or PYTHONPATH.

Atomic: an environment is ready once its marker file `kfpgrpc-env.json` exists, written last;
a failed or cancelled build is removed, and at start whatever has no marker (a crash mid-build)
is removed. Pruning removes environments no task is using: those unused for longer than
`max_age_us`, then the least recently used while all of them take more than `max_bytes` (sizes
are measured when built). It runs at start, after every build and periodically.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from kfpgrpc.clock import MICROS_PER_SECOND, Clock, SystemClock
from kfpgrpc.config import DEFAULT_TASK_ENV_MAX_AGE_US, DEFAULT_TASK_ENV_MAX_BYTES
from kfpgrpc.executor.packages import PipInstall, TaskInterpreter, sdk_kfp_version
from kfpgrpc.executor.process import TASK_DIR_ENV, TASK_LANG, TaskProcesses
from kfpgrpc.executor.task_log import TaskLog, error_with_tail

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKER = "kfpgrpc-env.json"  # in an environment's directory: it is ready
LAYOUT = 1  # of environments and their marker; another value is rebuilt
WHEELS = "wheels"  # kfp wheels, by file name
_KEY = re.compile("[0-9a-f]{24}")  # an environment's name
_REDIRECTS = {"PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER"}  # would install elsewhere
# What pip reads of the server's environment besides its PIP_* settings: where its configuration
# and cache are, the network's proxies and certificates, credentials files for indexes.
_FOR_PIP = {
    "PATH", "HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_CACHE_HOME", "NETRC",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    *(name for proxy in ("http_proxy", "https_proxy", "no_proxy", "all_proxy") for name in (proxy, proxy.upper())),
}
_PIP_INSTALL = ("install", "--no-input", "--progress-bar", "off", "--disable-pip-version-check")
# The environment's install scheme, printed by its own python (for `installer`).
_SCHEME = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"


class TaskEnvironmentError(Exception):
    """An environment could not be built; str() is what failed and the last lines of its
    output (bounded like a task's error)."""


@dataclass
class _Environment:
    path: Path
    last_used_us: int
    size: int  # bytes on disk when built
    users: int = 0  # tasks running with it


class TaskEnvironments:
    """The task environments under `root` (see the module docstring) for the task interpreter
    `base_python`. `processes`: the executor's task processes, started before `start()` (which
    must come first, `stop()` last). `max_age_us`, `max_bytes`: pruning limits, 0 = none.
    `pip`: the command that runs the server's pip (22.3 or later)."""

    def __init__(
        self,
        root: Path,
        base_python: str,
        processes: TaskProcesses,
        max_age_us: int = DEFAULT_TASK_ENV_MAX_AGE_US,
        max_bytes: int = DEFAULT_TASK_ENV_MAX_BYTES,
        clock: Clock | None = None,
        pip: Sequence[str] = (sys.executable, "-m", "pip"),
    ) -> None:
        self.root = Path(root).absolute()
        self.base_python = base_python
        self.max_age_us = max_age_us
        self.max_bytes = max_bytes
        self._processes = processes
        self._clock = clock or SystemClock()
        self._pip = list(pip)
        self._interpreter = TaskInterpreter(base_python)
        self._environments: dict[str, _Environment] = {}
        self._builds: dict[str, asyncio.Task[_Environment]] = {}
        self._waiters: dict[str, int] = {}
        self._wheel_locks: dict[str, asyncio.Lock] = {}
        self._scheme: dict[str, str] | None = None  # relative to an environment's directory
        self._pruner: asyncio.Task[None] | None = None
        self._pruning: set[asyncio.Task[list[str]]] = set()  # after builds

    async def start(self) -> None:
        """Remove what is not a ready environment (partial builds of a crashed server), load
        the ready ones, prune. Raises OSError when `root` cannot be made."""
        self._environments = await asyncio.to_thread(self._load)
        await self.prune()
        if self.max_age_us or self.max_bytes:
            self._pruner = asyncio.create_task(self._prune_periodically(), name="task environment pruning")

    async def stop(self) -> None:
        """Cancel the builds in progress (their environments are removed) and the pruning."""
        tasks = [*self._builds.values(), *self._pruning, *([self._pruner] if self._pruner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def use(self, installs: tuple[PipInstall, ...], log: TaskLog) -> AsyncIterator[str | None]:
        """For one task whose preamble makes `installs` (`packages.preamble_installs`): None
        when the task interpreter satisfies them all, else the python of their environment,
        built first if needed (its lines go to `log`). The environment is not pruned until the
        block exits. Raises TaskEnvironmentError when the build fails."""
        needed = tuple(n for i in installs for n in i.needed)
        if not await self._interpreter.missing(needed):
            yield None
            return
        key = await self._key(installs)
        environment = self._environments.get(key)
        if environment is None:
            environment = await self._built(key, installs, log)
        environment.users += 1
        self._touch(environment)
        try:
            yield str(environment.path / "bin" / "python")
        finally:
            environment.users -= 1
            self._touch(environment)

    async def prune(self) -> list[str]:
        """Remove environments no task is using: unused for more than `max_age_us`, then the
        least recently used while all take more than `max_bytes`. Returns the removed keys."""
        now = self._clock.now_us()
        idle = sorted(  # a task that waited for a build is not using it yet
            ((key, env) for key, env in self._environments.items() if not env.users and key not in self._waiters),
            key=lambda item: item[1].last_used_us,
        )
        total = sum(env.size for env in self._environments.values())
        doomed: dict[str, str] = {}
        for key, env in idle:
            if self.max_age_us and now - env.last_used_us > self.max_age_us:
                doomed[key] = "age"
            elif self.max_bytes and total > self.max_bytes:
                doomed[key] = "size"
            else:
                continue
            total -= env.size
        trash = []
        for key, reason in doomed.items():
            env = self._environments.pop(key)
            log.info("task environment removed", extra={"fields": {
                "key": key, "reason": reason, "bytes": env.size, "idle_seconds": (now - env.last_used_us) // MICROS_PER_SECOND,
            }})
            trash.append(self._discard(env.path))
        await _in_thread(_remove_all, trash)
        return list(doomed)

    # -- building ------------------------------------------------------------------------

    async def _built(self, key: str, installs: tuple[PipInstall, ...], log: TaskLog) -> _Environment:
        """The environment `key`, once built by this call or by the one already building it.
        A build whose waiters have all been cancelled is cancelled."""
        build = self._builds.get(key)
        if build is None:
            build = self._builds[key] = asyncio.create_task(self._build(key, installs, log), name=f"build {key}")
            build.add_done_callback(lambda _: self._builds.pop(key, None))
        else:
            log.add(f"task environment {key}: waiting for its build (started by another task)")
            await log.flush()
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            return await asyncio.shield(build)
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:
                del self._waiters[key]
                build.cancel()  # no-op once done

    async def _build(self, key: str, installs: tuple[PipInstall, ...], log: TaskLog) -> _Environment:
        path = self.root / key
        started = time.monotonic()
        log.add(f"task environment {key}: building for {_describe(installs)}")
        await log.flush()
        work = self._processes.new_task_dir()
        try:
            await _in_thread(_remove_all, [path])  # a failed build's, if its removal failed
            python = str(path / "bin" / "python")
            await self._run([self.base_python, "-m", "venv", "--without-pip", str(path)], work, log, key)
            environment = await self._interpreter.marker_environment()
            for pip_install in installs:
                if not pip_install.requirements:
                    continue
                version = sdk_kfp_version(pip_install, environment)
                if not (version and await self._install_kfp(version, pip_install.index_options, path, work, log, key)):
                    no_deps = ["--no-deps"] if pip_install.no_deps else []
                    await self._run([*self._pip, "--python", python, *_PIP_INSTALL, *no_deps,
                                     *pip_install.index_options, *pip_install.requirements], work, log, key)
            size = await _in_thread(_disk_usage, path)
            built = _Environment(path, self._clock.now_us(), size)
            # On the loop, with no await until it is registered: once the marker exists the
            # build is done, whatever is cancelled after.
            _write_marker(path, {"layout": LAYOUT, "python": self.base_python, "installs": [_as_json(i) for i in installs],
                                 "built_at_us": built.last_used_us, "size": size})
            self._environments[key] = built
            self._touch(built)
        except BaseException:
            await _in_thread(_remove_all, [path])
            raise
        finally:
            await _in_thread(shutil.rmtree, work, True)
        log.add(f"task environment {key}: ready in {time.monotonic() - started:.1f} s, {size / 1e6:.1f} MB")
        await log.flush()
        pruning = asyncio.get_running_loop().create_task(self.prune())
        self._pruning.add(pruning)
        pruning.add_done_callback(self._pruning.discard)
        return built

    async def _run(self, argv: list[str], work: Path, log: TaskLog, key: str) -> None:
        """Run one build step as a task process; its output goes to `log`. Raises
        TaskEnvironmentError when it fails."""
        log.add("+ " + shlex.join(_redacted(argument) for argument in argv))
        await log.flush()  # before the step's own lines
        output = TaskLog(log.observer, log.task_id, log.volume)  # a tail of its own, for the error
        try:
            process = await self._processes.spawn(argv, _build_environment(work), work)
        except OSError as error:
            raise TaskEnvironmentError(f"could not build task environment {key}: cannot start {argv[0]!r}: {error}") from None
        reader = asyncio.create_task(output.run(process.stdout))
        try:
            returncode = await process.wait()
        finally:
            await asyncio.shield(process.drain(reader))  # what it left running: at once when cancelled
        step = "pip" if argv[:len(self._pip)] == self._pip else "python -m venv"
        if process.status_unknown or returncode != 0:
            what = process.status_unknown or f"{step} exited with code {returncode}"
            raise TaskEnvironmentError(error_with_tail(f"could not build task environment {key}: {what}", output.tail))

    async def _install_kfp(self, version: str, index_options: tuple[str, ...], path: Path, work: Path, log: TaskLog, key: str) -> bool:
        """The SDK's `kfp==<version> --no-deps`: its wheel unpacked into the environment,
        downloaded first when it is not in the wheel directory yet. False when an earlier
        install put a kfp there (pip replaces it: the wheel cannot)."""
        if self._scheme is None:
            self._scheme = await self._scheme_of(path, work, key)
        scheme = {name: str(path / relative) for name, relative in self._scheme.items()}
        if any(next(Path(scheme[lib]).glob("kfp-*.dist-info"), None) for lib in ("purelib", "platlib")):
            return False
        wheels = self.root / WHEELS
        async with self._wheel_locks.setdefault(version, asyncio.Lock()):
            wheel = _find_wheel(wheels, version) or await _in_thread(wheel_of_installed, "kfp", version, wheels)
            if wheel is None:
                download = _make_download_dir(wheels)
                try:
                    await self._run([*self._pip, "download", "--no-deps", "--only-binary", ":all:", "--no-input",
                                     "--progress-bar", "off", "--disable-pip-version-check", "--dest", str(download),
                                     *index_options, f"kfp=={version}"], work, log, key)
                    wheel = _keep_wheel(download, wheels, version)
                finally:
                    await _in_thread(shutil.rmtree, download, True)
        log.add(f"installing kfp {version} from {wheel}")
        await _in_thread(_install_wheel, wheel, scheme, str(path / "bin" / "python"))
        return True

    async def _scheme_of(self, path: Path, work: Path, key: str) -> dict[str, str]:
        """The install scheme of the environments (as paths relative to one), as its python
        says: the same for every environment of the base python."""
        process = await asyncio.create_subprocess_exec(
            str(path / "bin" / "python"), "-I", "-c", _SCHEME, env=_build_environment(work),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        try:
            paths = json.loads(output)
            scheme = {name: paths[name] for name in ("purelib", "platlib", "scripts", "data")}
            scheme["headers"] = paths["include"]
        except (ValueError, KeyError, TypeError):
            raise TaskEnvironmentError(error_with_tail(
                f"could not build task environment {key}: its python does not tell its install scheme",
                output.decode(errors="replace").splitlines()[-20:])) from None
        return {name: os.path.relpath(value, path) for name, value in scheme.items()}

    # -- bookkeeping ---------------------------------------------------------------------

    async def _key(self, installs: tuple[PipInstall, ...]) -> str:
        """The environment's name: a digest of the base interpreter (its real path and
        version) and the installs."""
        environment = await self._interpreter.marker_environment()
        identity = [LAYOUT, os.path.realpath(self.base_python), environment.get("implementation_name", ""),
                    environment.get("python_full_version", ""), environment.get("platform_machine", ""),
                    [_as_json(i) for i in installs]]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]

    def _touch(self, environment: _Environment) -> None:
        """Record a use: in memory, and as the marker's modification time (for the next start)."""
        environment.last_used_us = now = self._clock.now_us()
        with contextlib.suppress(OSError):
            os.utime(environment.path / MARKER, ns=(now * 1000, now * 1000))

    def _discard(self, path: Path) -> Path:
        """Take an environment out of sight at once (a rename); returns where it is now."""
        trash = self.root / f"trash-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except OSError:
            return path
        return trash

    def _load(self) -> dict[str, _Environment]:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / WHEELS).mkdir(exist_ok=True)
        found: dict[str, _Environment] = {}
        leftovers = [path for path in (self.root / WHEELS).iterdir() if not path.name.endswith(".whl")]
        for path in self.root.iterdir():
            if path.name == WHEELS:
                continue
            try:
                marker = path / MARKER
                if not _KEY.fullmatch(path.name) or path.is_symlink() or not (path / "bin" / "python").exists():
                    raise ValueError("not an environment, or its interpreter is gone")
                recorded = json.loads(marker.read_text())
                if recorded["layout"] != LAYOUT or not isinstance(recorded["size"], int):
                    raise ValueError("another layout")
                found[path.name] = _Environment(path, marker.stat().st_mtime_ns // 1000, recorded["size"])
            except (OSError, ValueError, KeyError, TypeError):
                leftovers.append(path)  # a partial build, a removal cut short, or not ours
        _remove_all(leftovers)
        return found

    async def _prune_periodically(self) -> None:
        """Often enough that nothing outlives `max_age_us` by more than a tenth of it."""
        interval = min(max(self.max_age_us // 10, MICROS_PER_SECOND), 3600 * MICROS_PER_SECOND)
        due = asyncio.Event()
        while True:
            alarm = self._clock.wake_at(self._clock.now_us() + interval, due)
            try:
                await due.wait()
            finally:
                alarm.cancel()
            due.clear()
            await self.prune()


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread. When cancelled, the thread is waited for (it may be
    writing into an environment about to be removed) before CancelledError is raised."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([future])
        raise


def _redacted(argument: str) -> str:
    """An argument with the password of a URL in it replaced (as pip shows index URLs)."""
    return re.sub(r"(://[^/:@\s]+):[^@/\s]*@", r"\1:****@", argument)


def _describe(installs: tuple[PipInstall, ...]) -> str:
    """`pip install a 'b<2', then kfp==2.16.1 --no-deps`: what the preamble installs."""
    return ", then ".join(
        shlex.join([*install.requirements, *(["--no-deps"] if install.no_deps else []), *map(_redacted, install.index_options)])
        for install in installs if install.requirements
    )


def _as_json(install: PipInstall) -> dict[str, object]:
    return {"requirements": list(install.requirements), "index_options": list(install.index_options), "no_deps": install.no_deps}


def _build_environment(work: Path) -> dict[str, str]:
    """The whole environment of a build step (see the module docstring): what pip reads of the
    server's, temporary files in `work`."""
    environment = {
        name: value for name, value in os.environ.items()
        if name in _FOR_PIP or (name.startswith("PIP_") and name not in _REDIRECTS)
    }
    environment.update({
        "LANG": TASK_LANG, "PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1", "TMPDIR": str(work / "tmp"), TASK_DIR_ENV: str(work),
    })
    return environment


def _find_wheel(wheels: Path, version: str) -> Path | None:
    return next(iter(sorted(wheels.glob(f"kfp-{version}-*.whl"))), None)


def _make_download_dir(wheels: Path) -> Path:
    download = wheels / f"download-{uuid.uuid4().hex}"
    download.mkdir()
    return download


def _keep_wheel(download: Path, wheels: Path, version: str) -> Path:
    """Move the wheel pip downloaded into the wheel directory (atomic: a crash leaves no
    partial wheel there)."""
    wheel = _find_wheel(download, version)
    if wheel is None:
        raise TaskEnvironmentError(f"pip downloaded no wheel of kfp {version}")
    kept = wheels / wheel.name
    os.replace(wheel, kept)
    return kept


def wheel_of_installed(project: str, version: str, directory: Path) -> Path | None:
    """A wheel of `project` `version` made from its installed files in the server's own
    environment (where users often install the kfp SDK that compiles their pipelines), written
    to `directory` as `<project>-<version>-py3-none-any.whl`; None when that version is not
    installed or is not a pure-Python install. No index is asked, so task environments get the
    kfp runtime offline. The wheel holds what pip installed (RECORD, less byte-code and pip's
    own files), with a new RECORD of their hashes."""
    try:
        distribution = importlib.metadata.distribution(project)
    except importlib.metadata.PackageNotFoundError:
        return None
    metadata_dir = f"{project}-{version}.dist-info"
    files = [str(path) for path in distribution.files or ()]
    wheel_file = next((name for name in files if name == f"{metadata_dir}/WHEEL"), None)
    if distribution.version != version or wheel_file is None:
        return None
    if "Root-Is-Purelib: true" not in (distribution.read_text("WHEEL") or ""):
        return None
    skipped = {f"{metadata_dir}/{name}" for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    name = f"{project}-{version}-py3-none-any.whl"
    partial = directory / f".{name}.{uuid.uuid4().hex}"
    record = []
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as wheel:
            for member in files:
                if member.startswith("..") or "__pycache__" in member or member in skipped:
                    continue  # scripts outside site-packages, byte-code, pip's own files
                data = Path(distribution.locate_file(member)).read_bytes()
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                wheel.writestr(member, data)
                record.append(f"{member},sha256={digest},{len(data)}")
            record.append(f"{metadata_dir}/RECORD,,")
            wheel.writestr(f"{metadata_dir}/RECORD", "\n".join(record) + "\n")
        return Path(shutil.move(partial, directory / name))
    except OSError:
        return None
    finally:
        partial.unlink(missing_ok=True)


def _install_wheel(wheel: Path, scheme: dict[str, str], python: str) -> None:
    destination = SchemeDictionaryDestination(scheme, interpreter=python, script_kind="posix")
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"kfpgrpc\n"})


def _write_marker(path: Path, recorded: dict[str, object]) -> None:
    """Write the marker last and atomically: the environment is ready once it exists."""
    partial = path / f".{MARKER}.partial"
    partial.write_text(json.dumps(recorded, indent=1))
    os.replace(partial, path / MARKER)


def _disk_usage(path: Path) -> int:
    """Bytes on disk of the tree at `path` (as `du`), links not followed."""
    total = 0
    pending = [str(path)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return total


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
