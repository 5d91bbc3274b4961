"""Files below a directory the server owns, reached without ever following a symbolic link.

Tasks run as the server's user and can replace anything in their run's directory (their own
artifact directory, the run directory, their output files) with a symbolic link. The server must
still never create, empty, delete or read anything outside on a task's behalf, so below a trusted
anchor (an artifact root, a task's work directory) every step is an `openat` with `O_NOFOLLOW`
relative to an open directory descriptor, and trees are removed with `shutil.rmtree(dir_fd=...)`,
which never follows links at any depth. A link a task planted is removed as a link, read as an
error, never followed. Linux (and other POSIX systems with `openat`) only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path


class UnsafePath(ValueError):
    """A name that is not one path component, or a path that crosses a symbolic link or is not
    the kind of file expected. The message says which path and why."""


class TooLarge(UnsafePath):
    """A file larger than the limit it is read with; `size` is its size in bytes."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO a task left in place of a file must not block the server.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def component_problem(name: str) -> str | None:
    """Why `name` cannot be one component of a path (empty, ".", "..", holding "/" or NUL);
    None when it can."""
    if name in ("", ".", ".."):
        return f"{name!r} is not a file name"
    if "/" in name or "\0" in name:
        return f"{name!r} holds a path separator or NUL, so it is not one file name"
    return None


def inside(path: str, directory: str) -> bool:
    """Whether `path`, with every symbolic link and `..` resolved, is `directory` or below it.
    `directory` must be absolute and already resolved: it is taken as it is, so a link that
    replaced it is not followed (what is behind that link is not inside)."""
    return os.path.commonpath([os.path.realpath(path), directory]) == directory


class Directory:
    """An open directory; what is below it is reached through its descriptor only.

    Use as a context manager (or `close()`); every method raises UnsafePath for a bad name, a
    symbolic link or a file of the wrong kind, and OSError for other failures.
    """

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path  # for messages only: never opened again by name

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Directory:
        """Open the anchor `path` itself. It is the server's own (a configured root or a
        directory it just made), so links in `path` are followed; `create` makes it first."""
        if create:
            os.makedirs(path, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), str(path))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def child(self, name: str, create: bool = False) -> Directory:
        """The subdirectory `name` (one component), made first with `create`."""
        path = self._name(name)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=self.fd)
        try:
            return Directory(os.open(name, _DIRECTORY_FLAGS, dir_fd=self.fd), path)
        except OSError as error:
            self._explain(error, name, path, "a directory")
            raise

    def remove(self, name: str) -> None:
        """Remove `name` (one component): a directory with everything below it, a file, or a
        symbolic link itself (never what it points to). Nothing happens if it does not exist."""
        self._name(name)
        try:
            mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            # rmtree checks again that `name` is no link when it opens it, and never follows one below.
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            os.unlink(name, dir_fd=self.fd)

    def read_bytes(self, *names: str, limit: int) -> bytes | None:
        """The content of the regular file at `names` (path components below this directory),
        None when it does not exist. A link, a file of another kind, a file with other hard links
        or more than `limit` bytes (TooLarge, with its size) is UnsafePath."""
        *parents, name = names
        directories: list[Directory] = []
        try:
            current = self
            for parent in parents:
                try:
                    current = current.child(parent)
                except FileNotFoundError:
                    return None
                directories.append(current)
            path = current._name(name)
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=current.fd)
            except FileNotFoundError:
                return None
            except OSError as error:
                current._explain(error, name, path, "a regular file")
                raise
            with os.fdopen(fd, "rb") as file:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode):
                    raise UnsafePath(f"{path} is not a regular file")
                if status.st_nlink > 1:  # a hard link to a file of the server's, made by a task
                    raise UnsafePath(f"{path} has {status.st_nlink} hard links; the server reads only files a task wrote")
                content = file.read(limit + 1)
            if len(content) > limit:
                raise TooLarge(f"{path} is larger than {limit} bytes", max(status.st_size, len(content)))
            return content
        finally:
            for directory in directories:
                directory.close()

    def _name(self, name: str) -> str:
        """The path of `name` for messages, after checking that it is one component."""
        problem = component_problem(name)
        if problem is not None:
            raise UnsafePath(f"{problem} (below {self.path})")
        return os.path.join(self.path, name)

    def _explain(self, error: OSError, name: str, path: str, kind: str) -> None:
        """Raise UnsafePath if `error` (from opening `name` with O_NOFOLLOW) means that `name`
        is a symbolic link or not `kind`."""
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode):
                raise UnsafePath(f"{path} is a symbolic link; the server does not follow links a task made") from None
        if isinstance(error, NotADirectoryError):
            raise UnsafePath(f"{path} is not {kind}") from None


def remove_below(directory: str | Path, name: str) -> None:
    """Remove `name` (one component) below `directory` without following any link under
    `directory` (see Directory.remove); nothing happens when either does not exist."""
    try:
        anchor = Directory.open(directory)
    except FileNotFoundError:
        return
    with anchor:
        anchor.remove(name)
