"""Task processes: starting a container task's command with its environment, waiting for the
task's own process to exit, and killing everything the task started.

A task ends when its own process (the *leader*, what the container's command started) exits, as
a Kubernetes container ends when its main process exits: whatever it left running is then
SIGKILLed, so children that keep its output pipe open cannot keep it RUNNING. The task's whole
process tree is found, whatever its members do (background children, daemons that `setsid`
away), by one of two Linux mechanisms, chosen at start and logged ("task containment"):

- cgroup: each task runs in a cgroup v2 of its own, `<the server's cgroup>/kfpgrpc-<hash of the
  work root>/task-<n>`, and `cgroup.kill` ends all of it at once. Used where such a cgroup can
  be created and a process moved into it (root, or a delegated subtree such as a systemd unit
  with `Delegate=yes`), with Linux 5.14 or later.
- subreaper: elsewhere, each task runs under `task_init.py`, a small init process that is a
  child subreaper: every process the task orphans is re-parented to it, so it finds and kills
  them all. It dies with the server. The server itself never becomes a subreaper: it would
  adopt the orphans of every process it ever started (the kfpgrpc tests run the server inside
  pytest) and could not tell them from children that other code waits for.

Every task process carries `KFPGRPC_TASK_DIR=<its working directory>` in its environment. At
start, processes a crashed server left behind are found by it (and by their leftover cgroups)
and killed, and its task working directories are removed.

Only the event-loop thread may spawn: the subreaper's PR_SET_PDEATHSIG fires when the thread
that started it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from kfpgrpc.config import TASK_CONTAINMENTS

log = logging.getLogger(__name__)

RUN_ID_ENV = "KFPGRPC_RUN_ID"  # lets users (and tests) find a run's task processes
TASK_DIR_ENV = "KFPGRPC_TASK_DIR"
TASK_LANG = "C.UTF-8"  # what the python images KFP components use set; present in every glibc since 2.35
KILL_WAIT_SECONDS = 10.0  # how long a kill may take before the task's processes are given up on
LEADER_GRACE_SECONDS = 2.0  # after a task's leader exits, for its init to end (it takes milliseconds)
DRAIN_SECONDS = 2.0  # after the kill: how long output still written (by an escaped process) is read
_PR_SET_DUMPABLE = 4  # <linux/prctl.h>
_TASK_INIT = str(Path(__file__).with_name("task_init.py"))
# Moves the shell into the cgroup named by $0, then becomes the task's command (without the PWD
# the shell exported: the task gets exactly its environment).
_ENTER_CGROUP = 'echo 0 > "$0" && unset PWD && exec "$@"'


def task_environment(
    task_dir: Path, path_prefix: str, run_id: str, kfp: Mapping[str, str], container: Mapping[str, str]
) -> dict[str, str]:
    """The whole environment of a task: never the server's own variables (its auth token, cloud
    credentials). PATH is `path_prefix` (where the task's `python3` is) before the server's
    PATH; HOME and TMPDIR are in the task's working directory `task_dir` (see
    `TaskProcesses.new_task_dir`); LANG is C.UTF-8; then the KFP variables `kfp` and the
    container's `env`, which may override any of these; last, the markers KFPGRPC_RUN_ID and
    KFPGRPC_TASK_DIR."""
    return {
        "PATH": path_prefix + os.pathsep + os.environ.get("PATH", os.defpath),
        "HOME": str(task_dir / "home"),
        "TMPDIR": str(task_dir / "tmp"),
        "LANG": TASK_LANG,
        "PYTHONUNBUFFERED": "1",
        **kfp,
        **container,
        RUN_ID_ENV: run_id,
        TASK_DIR_ENV: str(task_dir),
    }


class TaskProcess:
    """One started task. `stdout` carries its merged stdout and stderr; `wait()` returns when its
    leader exits; `kill()` must follow to end what the leader left running, and
    `close_output()` once `stdout` is read (`drain` does both). `status_unknown`, set when
    `wait()` returns, says why the leader's exit status is not known ("" when it is)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.pid = popen.pid
        self.status_unknown = ""
        self.stdout = asyncio.StreamReader()
        self._transport: asyncio.BaseTransport | None = None
        self._popen = popen
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._killed: asyncio.Task[None] | None = None
        self._pidfd = os.pidfd_open(popen.pid)  # readable once the process has exited
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._popen.wait()  # it has exited: this only reaps it
        self._exited.set_result(self._returncode(self._popen.returncode))

    def _returncode(self, popen_returncode: int) -> int:
        return popen_returncode

    async def wait(self) -> int:
        """The leader's exit code, or minus the signal that killed it."""
        return await asyncio.shield(self._exited)

    async def terminate(self, grace: float) -> None:
        """SIGTERM every process of the task, SIGKILL them all after `grace` seconds (at once
        when the leader exits earlier)."""
        if grace > 0 and not self._exited.done():
            self._signal_all(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), grace)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL every process of the task that is still running, and wait until they are gone
        (at most about KILL_WAIT_SECONDS). Safe to call more than once, also concurrently."""
        if self._killed is None:
            self._killed = asyncio.create_task(self._kill())
        await asyncio.shield(self._killed)

    def close_output(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def drain(self, reader: asyncio.Task[None]) -> None:
        """Kill what the task left running; let `reader` (the task reading `stdout`) read what
        its processes wrote to the end, unless one escaped the kill (then the output stops
        after DRAIN_SECONDS); close the output."""
        await self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), timeout=DRAIN_SECONDS)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        self.close_output()

    def _signal_all(self, signum: int) -> None:
        raise NotImplementedError

    async def _kill(self) -> None:
        raise NotImplementedError


class _CgroupTask(TaskProcess):
    def __init__(self, cgroup: Path, popen: subprocess.Popen[bytes]) -> None:
        super().__init__(popen)
        self.cgroup = cgroup

    def _signal_all(self, signum: int) -> None:
        for pid in _cgroup_pids(self.cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    async def _kill(self) -> None:
        await _kill_cgroup(self.cgroup)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), KILL_WAIT_SECONDS)


class _SubreaperTask(TaskProcess):
    """The process started is task_init.py; the leader is its child. Init reports the leader's
    PID and then its wait status on the `status` pipe. The leader is watched too (a pidfd works
    for a process that is not our child): when it has exited and init has not ended
    LEADER_GRACE_SECONDS later (the task stopped it, or it is stuck), init is SIGKILLed, which
    ends the wait, and `kill()` finds the task's processes without it."""

    def __init__(self, task_dir: Path, status: int, popen: subprocess.Popen[bytes]) -> None:
        self.task_dir = task_dir
        self._status = status  # read end of the pipe task_init writes to (non-blocking)
        self._lines = b""  # what it wrote so far
        self._done = False  # init ended by itself, having killed and reaped the tree
        self._leader = 0  # its PID, also its session's id (it calls setsid); 0 until init reports it
        self._leader_fd: int | None = None
        self._overdue: asyncio.TimerHandle | None = None
        self._killed_overdue = False
        super().__init__(popen)
        os.set_blocking(status, False)
        asyncio.get_running_loop().add_reader(status, self._read_status)

    def _read_status(self) -> None:
        """Read what init wrote; watch the leader once its PID is there."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(self._status, 64)
            except BlockingIOError:
                break
            if not data:  # init is gone
                loop.remove_reader(self._status)
                break
            self._lines += data
        lines = self._lines.split(b"\n")
        if len(lines) > 1 and not self._leader:
            self._leader = int(lines[0])
            if not self._exited.done():
                self._watch_leader(self._leader)

    def _watch_leader(self, leader: int) -> None:
        try:
            self._leader_fd = os.pidfd_open(leader)
        except ProcessLookupError:  # already exited and reaped by init
            self._leader_exited()
            return
        if _parent(leader) != self.pid:  # a zombie already, or the PID was reused after init reaped it
            os.close(self._leader_fd)
            self._leader_fd = None
            self._leader_exited()
            return
        asyncio.get_running_loop().add_reader(self._leader_fd, self._leader_exited)

    def _leader_exited(self) -> None:
        self._close_leader()
        if self._overdue is None:
            self._overdue = asyncio.get_running_loop().call_later(LEADER_GRACE_SECONDS, self._init_overdue)

    def _init_overdue(self) -> None:
        if self._exited.done():
            return
        log.warning("task init did not end after its leader", extra={"fields": {"pid": self.pid, "task_dir": str(self.task_dir)}})
        self._killed_overdue = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # works on a stopped process too; _on_exit follows

    def _close_leader(self) -> None:
        if self._leader_fd is not None:
            asyncio.get_running_loop().remove_reader(self._leader_fd)
            os.close(self._leader_fd)
            self._leader_fd = None

    def _returncode(self, popen_returncode: int) -> int:
        self._read_status()  # init wrote before it exited: all of it is in the pipe
        asyncio.get_running_loop().remove_reader(self._status)
        os.close(self._status)
        self._close_leader()
        if self._overdue is not None:
            self._overdue.cancel()
        lines = self._lines.split()
        self._done = popen_returncode == 0 and len(lines) == 2
        if len(lines) == 2:
            return os.waitstatus_to_exitcode(int(lines[1]))
        if self._killed_overdue:
            self.status_unknown = (
                f"the task's process exited, but its init process did not end within {LEADER_GRACE_SECONDS:g} s"
                " (stopped by the task?) and was killed: the task's exit status is unknown"
            )
        return popen_returncode  # init itself was killed (by the task?): see _kill

    def _signal_all(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)  # init passes SIGTERM on to the tree

    async def _kill(self) -> None:
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)  # init SIGKILLs the tree, then exits
                os.kill(self.pid, signal.SIGCONT)  # the task may have stopped it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), KILL_WAIT_SECONDS)
        if not self._exited.done():  # init is stopped or stuck: the net below catches the tree
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await asyncio.shield(self._exited)
        if not self._done:  # init did not kill the tree: find it without init
            task_dir = str(self.task_dir)
            await asyncio.to_thread(_kill_marked, lambda value: value == task_dir, self._leader)


class TaskProcesses:
    """Starts the task processes of one executor (see the module docstring). `await start()`
    before `spawn`, `await stop()` at the end.

    `work_root`: a directory of its own (e.g. `<data dir>/work`) for the tasks' working
    directories; whatever is in it at start is a crashed server's and is removed.
    `containment`: "auto" (a cgroup where possible, else a subreaper), "cgroup" (start fails
    with OSError where none can be made) or "subreaper"."""

    def __init__(self, work_root: Path, containment: str = "auto") -> None:
        if containment not in TASK_CONTAINMENTS:
            raise ValueError(f"containment must be one of {', '.join(TASK_CONTAINMENTS)}, got {containment!r}")
        self.work_root = Path(work_root).absolute()
        self.containment = containment
        self.mechanism = ""  # "cgroup" or "subreaper" once started
        self._cgroups: Path | None = None  # parent of the tasks' cgroups
        self._names = itertools.count(1)

    async def start(self) -> None:
        """Choose the mechanism; kill a crashed server's leftover task processes; empty the work
        root. Raises OSError (containment "cgroup" without a usable cgroup, unwritable work root)."""
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError) as error:
            raise OSError(f"tasks need pidfd_open (Linux 5.3 or later): {error}") from None
        why_not = "subreaper was chosen"
        if self.containment != "subreaper":
            digest = hashlib.sha256(str(self.work_root).encode()).hexdigest()[:16]
            self._cgroups, why_not = await asyncio.to_thread(_usable_cgroup, f"kfpgrpc-{digest}")
        if self._cgroups is None and self.containment == "cgroup":
            raise OSError(f"task containment cgroup: {why_not}")
        self.mechanism = "cgroup" if self._cgroups else "subreaper"
        killed = await self._kill_cgroups()
        killed += await asyncio.to_thread(self._remove_leftovers)
        log.info("task containment", extra={"fields": {
            "mechanism": self.mechanism, "cgroup": str(self._cgroups or ""), "why_not_cgroup": why_not if not self._cgroups else "",
            "leftover_processes_killed": killed,
        }})

    async def _kill_cgroups(self) -> int:
        """Kill and remove the task cgroups left (by a crashed server, at start); how many
        processes they held."""
        if self._cgroups is None:
            return 0
        killed = 0
        for cgroup in [path for path in self._cgroups.iterdir() if path.is_dir()]:
            killed += len(_cgroup_pids(cgroup))
            await _kill_cgroup(cgroup)
        return killed

    def _remove_leftovers(self) -> int:
        root = str(self.work_root) + os.sep
        killed = _kill_marked(lambda value: value.startswith(root))
        if self.work_root.exists():
            for path in self.work_root.iterdir():
                _remove(path)
        self.work_root.mkdir(parents=True, exist_ok=True)
        return killed

    def new_task_dir(self) -> Path:
        """A fresh working directory for one attempt of a task, with `home` and `tmp` in it."""
        task_dir = Path(tempfile.mkdtemp(prefix="task-", dir=self.work_root))
        for name in ("home", "tmp"):
            (task_dir / name).mkdir()
        return task_dir

    async def spawn(self, argv: list[str], env: dict[str, str], task_dir: Path) -> TaskProcess:
        """Start `argv` (a command PATH lookup in `env` finds) in `task_dir` with exactly `env`,
        stdin from /dev/null, stdout and stderr into one pipe, in a session of its own. Raises
        OSError when it cannot be started (then nothing runs)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        reader = asyncio.StreamReader()
        try:
            # Connected first: once the process exists, nothing may await (a cancellation
            # would lose it).
            transport, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), open(read_end, "rb", buffering=0)
            )
        except BaseException:
            os.close(write_end)
            raise
        try:
            task = self._start(argv, env, task_dir, write_end)
        except OSError:
            transport.close()
            raise
        finally:
            os.close(write_end)
        task.stdout, task._transport = reader, transport
        return task

    def _start(self, argv: list[str], env: dict[str, str], task_dir: Path, output: int) -> TaskProcess:
        if self._cgroups is not None:
            cgroup = self._cgroups / f"task-{next(self._names)}"
            cgroup.mkdir()
            try:
                return _CgroupTask(cgroup, _popen(["/bin/sh", "-c", _ENTER_CGROUP, str(cgroup / "cgroup.procs"), *argv], env, task_dir, output))
            except OSError:
                cgroup.rmdir()
                raise
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        try:
            popen = _popen([sys.executable, "-I", "-S", _TASK_INIT, str(os.getpid()), str(status_write), *argv],
                           env, task_dir, output, pass_fds=(status_write,))
        except OSError:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        return _SubreaperTask(task_dir, status_read, popen)

    async def stop(self) -> None:
        """After the last task has been killed: remove the cgroups and the work root's contents."""
        await self._kill_cgroups()
        if self._cgroups is not None:
            with contextlib.suppress(OSError):
                self._cgroups.rmdir()
        await asyncio.to_thread(self._remove_leftovers)


def _popen(argv: list[str], env: dict[str, str], cwd: Path, output: int, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
        start_new_session=True, pass_fds=pass_fds,
    )


# ---------------------------------------------------------------------------------------------
# cgroup v2


def _usable_cgroup(name: str) -> tuple[Path | None, str]:
    """(`<this process's cgroup v2>/<name>`, "") when tasks can be contained there, else (None,
    why not). Creates it, and checks by moving a short-lived process into a child cgroup."""
    try:
        own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
        mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        # mountinfo: id parent dev root mountpoint options... - fstype source superoptions
        root, mountpoint = next((m[3], m[4]) for m in mounts if m[m.index("-") + 1] == "cgroup2")
    except StopIteration:
        return None, "no cgroup v2 hierarchy is mounted"
    except OSError as error:
        return None, f"cannot read this process's cgroup: {error}"
    if not own.startswith(root):
        return None, f"this process's cgroup {own} is outside the mounted cgroup v2 hierarchy"
    parent = Path(mountpoint, own[len(root):].lstrip("/"), name)
    probe = parent / f"probe-{os.getpid()}"
    why_not = ""
    try:
        parent.mkdir(exist_ok=True)
        probe.mkdir(exist_ok=True)
        try:
            if not (probe / "cgroup.kill").exists():
                why_not = "cgroup.kill is missing (Linux 5.14 or later is needed)"
            else:
                moved = subprocess.run(["/bin/sh", "-c", 'echo 0 > "$0"', str(probe / "cgroup.procs")],
                                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
                if moved.returncode != 0:
                    why_not = f"cannot move a process into {probe}: {moved.stderr.strip()}"
        finally:
            probe.rmdir()
    except OSError as error:
        why_not = f"cannot create a cgroup under {parent.parent}: {error.strerror}"
    if why_not:
        with contextlib.suppress(OSError):
            parent.rmdir()
        return None, why_not
    return parent, ""


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:  # removed
        return []


def _populated(cgroup: Path) -> bool:
    try:
        return "populated 1" in (cgroup / "cgroup.events").read_text()
    except OSError:  # removed
        return False


async def _kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process in `cgroup`, wait until it is empty, remove it. A cgroup that is
    not empty after KILL_WAIT_SECONDS (a process stuck in the kernel) is logged and left."""
    with contextlib.suppress(FileNotFoundError):
        (cgroup / "cgroup.kill").write_text("1")
    deadline = asyncio.get_running_loop().time() + KILL_WAIT_SECONDS
    while _populated(cgroup):
        if asyncio.get_running_loop().time() > deadline:
            log.warning("task processes survive SIGKILL", extra={"fields": {"cgroup": str(cgroup)}})
            return
        await asyncio.sleep(0.005)
    with contextlib.suppress(OSError):
        cgroup.rmdir()


# ---------------------------------------------------------------------------------------------
# /proc


def _kill_marked(matches: Callable[[str], bool], session: int = 0) -> int:
    """SIGKILL every process of this user whose KFPGRPC_TASK_DIR value `matches`, or that is in
    `session` (a session id; 0: none), again until none is left (they may fork meanwhile).
    Returns how many were killed."""
    prefix = f"{TASK_DIR_ENV}=".encode()
    killed: set[int] = set()
    for _ in range(100):
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if session and _session(int(pid)) == session:  # found even without the marker
                found.append(int(pid))
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as environ:
                    entries = environ.read().split(b"\0")
            except OSError:  # gone, or another user's
                continue
            if any(e.startswith(prefix) and matches(e[len(prefix):].decode(errors="replace")) for e in entries):
                found.append(int(pid))
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)
    return len(killed)


def _stat_field(pid: int, index: int) -> int:
    """Field `index` of /proc/`pid`/stat counted after "(command)" (1: ppid, 3: session), 0
    when the process is gone or a zombie (whose kill would do nothing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # state, ppid, pgrp, session, ...
    except OSError:
        return 0
    return 0 if fields[0] == b"Z" else int(fields[index])


def _parent(pid: int) -> int:
    return _stat_field(pid, 1)


def _session(pid: int) -> int:
    return _stat_field(pid, 3)


def _remove(path: Path) -> None:
    """Remove a file or a directory tree, never following symlinks out of it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0 for this process, the server or a Ray worker that runs tasks (Linux;
    elsewhere, or if it fails, nothing): tasks run as its user, and a dumpable process's
    /proc/<pid>/environ (its auth token, cloud credentials), memory and ptrace are open to every
    process of that user. Root's
    processes bypass this. Its own /proc files stay readable to the process itself; its core
    dumps are off, and children are dumpable again once they exec."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as error:
        log.warning("cannot make this process non-dumpable", extra={"fields": {"error": str(error)}})
