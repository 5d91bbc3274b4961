"""The init process of a task where no cgroup is available (see `kfpgrpc.executor.process`).

    python -I -S task_init.py SERVER_PID STATUS_FD COMMAND [ARG...]

Like tini in a container: it starts COMMAND (the task's *leader*) in a session of its own and is
a child subreaper (PR_SET_CHILD_SUBREAPER), so every process the task orphans, `setsid` or
not, is re-parented to it and stays in its tree. To STATUS_FD it writes two decimal lines: the
leader's PID once it is started (the server watches the leader too, in case the task stops or
kills this init), and the leader's wait status once it has exited; then it SIGKILLs the rest of
the tree, reaps it and exits 0.
Signals: SIGTERM is passed to every process of the tree; SIGHUP SIGKILLs the whole tree. The
server's death sends it SIGHUP (PR_SET_PDEATHSIG), so a crashed server leaves no task behind.

It starts for every task, so it imports only C modules: `_signal` and `_ctypes` rather than
`signal` and `ctypes`, whose Python layers (enum, struct) would double its start-up time.
"""

import _ctypes
import _signal as signal
import os
import sys
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
KILL_DEADLINE_SECONDS = 10.0  # a process stuck in uninterruptible sleep must not keep init forever


def descendants() -> list[int]:
    """Live (not zombie) processes below this one, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()  # after "(command)": state, ppid
        except OSError:  # gone
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, stack = [], [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def signal_tree(signum: int) -> None:
    for pid in descendants():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def report(status_fd: int, number: int) -> None:
    """Write `number` as a line to the server."""
    try:
        os.write(status_fd, f"{number}\n".encode())
    except BrokenPipeError:  # the server is gone: its death's SIGHUP ends the tree
        pass


def reap() -> bool:
    """Reap every child that has exited, without waiting; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


class _Libc:
    _handle = _ctypes.dlopen(None, os.RTLD_NOW)


class _Function(_ctypes.CFuncPtr):
    """A C function returning int, as ctypes.CDLL(None, use_errno=True).<name> is."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO


def main(argv: list[str]) -> int:
    server, status_fd, command = int(argv[1]), int(argv[2]), argv[3:]
    prctl = _Function(("prctl", _Libc))
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 or prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0) != 0:
        os.write(2, f"kfpgrpc task init: prctl failed: {os.strerror(_ctypes.get_errno())}\n".encode())
        return 1
    if os.getppid() != server:  # the server died before PR_SET_PDEATHSIG took effect
        return 1
    handled = {signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)  # no handler may run in the forked child
    leader = os.fork()
    if leader == 0:
        # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored: restore them.
        for signum in (*handled, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.close(status_fd)
        os.setsid()  # `kill 0` in the task must not reach init
        try:
            os.execvp(command[0], command)
        except OSError as error:
            os.write(2, f"could not start {command[0]!r}: {error.strerror}\n".encode())
        os._exit(127)
    report(status_fd, leader)
    signal.signal(signal.SIGTERM, lambda *_: signal_tree(signal.SIGTERM))
    signal.signal(signal.SIGHUP, lambda *_: signal_tree(signal.SIGKILL))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
    while True:
        pid, status = os.waitpid(-1, 0)  # the leader, or an orphan re-parented here
        if pid == leader:
            break
    report(status_fd, status)
    deadline = time.monotonic() + KILL_DEADLINE_SECONDS
    # No child left means no descendant either: each would have been re-parented here.
    while reap() and (rest := descendants()) and time.monotonic() < deadline:
        for pid in rest:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.002)  # SIGKILL is asynchronous: let them die before looking again
    reap()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
