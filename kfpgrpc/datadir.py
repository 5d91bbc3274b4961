"""The data directory: one server at a time, and nothing left behind by a start that fails.

A server holds an exclusive lock on its data directory for its whole life: an flock on the
directory itself, so no lock file has to be created (or, racily, deleted). A second server on
the same directory fails at once instead of killing the first's tasks as orphans and firing
every schedule twice. The lock goes with the process (a crash releases it) and task processes
do not inherit it (the descriptor is close-on-exec).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class DataDirError(Exception):
    """The data directory cannot be used; str() is one line for the operator."""


class DataDir:
    """A locked data directory; `DataDir.open(path, own)`, then `close()`."""

    def __init__(self, path: Path, fd: int, created_dirs: list[Path], absent: list[Path]) -> None:
        self.path = path
        self._fd = fd
        self._created_dirs = created_dirs
        self._absent = absent

    @classmethod
    def open(cls, path: Path, own: list[Path]) -> DataDir:
        """Create `path` (and missing parents) if needed and lock it. `own` lists what the
        server may create in it (files and directories): those missing now are removed by
        `discard()`. Raises DataDirError: not a directory, cannot be created, or in use (the
        message names the holder's PID when /proc/locks tells it)."""
        path = path.absolute()
        if path.exists() and not path.is_dir():
            raise DataDirError(f"data dir {path} is not a directory")
        created_dirs = [parent for parent in (path, *path.parents) if not parent.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise DataDirError(f"cannot create data dir {path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _lock_holder(fd) if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirError(f"cannot lock data dir {path}: {error.strerror}") from None
            by = f" (pid {holder})" if holder else ""
            raise DataDirError(
                f"data dir {path} is in use by another kfpgrpc server{by}; stop it or choose another --data-dir"
            ) from None
        # Checked under the lock: no other server creates anything here meanwhile.
        absent = [item for item in own if not os.path.lexists(item)]
        return cls(path, fd, created_dirs, absent)

    def discard(self) -> None:
        """After a failed start: remove what the start created (files it may create, listed
        at open, and the directories it made), so that a failed start leaves nothing behind.
        Directories are removed only when empty: nothing else is ever deleted."""
        for item in self._absent:
            try:
                if item.is_dir() and not item.is_symlink():
                    item.rmdir()
                else:
                    item.unlink()
            except OSError:  # never created, or not empty
                pass
        for directory in self._created_dirs:  # deepest first
            try:
                directory.rmdir()
            except OSError:
                break

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _lock_holder(fd: int) -> int | None:
    """The PID holding an flock on the file open as `fd`, from Linux's /proc/locks."""
    stat = os.fstat(fd)
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; blocked waiters start "->".
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None
