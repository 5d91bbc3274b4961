"""A container task's log: its merged stdout/stderr read into bounded lines, stored through the
run observer in batches, and the last lines kept for the task's error.

Bounds (`kfpgrpc.bounds`): a line longer than MAX_LOG_LINE_BYTES is cut with a marker, and no
more than that of a line is ever held in memory, however long the line or the output without
a newline. A task stores at most its log volume limit (`--max-log-bytes-per-task`; a line
costs its bytes plus LOG_LINE_OVERHEAD) per execution of its run, retries included. Past it
the task keeps running; one line says that the log is truncated, and one line at the end of
each attempt how much was not stored. The error's tail still comes from the last lines the
task printed, stored or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from kfpgrpc.bounds import (
    LOG_LINE_OVERHEAD,
    MAX_ERROR_LINE_BYTES,
    MAX_LOG_LINE_BYTES,
    cut,
    cut_bytes,
    cut_error,
    utf8_size,
)
from kfpgrpc.executor.base import RunObserver

LOG_BATCH_LINES = 50  # lines buffered before they are stored (or after LOG_FLUSH_SECONDS)
LOG_FLUSH_SECONDS = 0.1
ERROR_LOG_TAIL = 20  # last lines of a failed task shown in its error
READ_CHUNK = 65536


@dataclass
class LogVolume:
    """How much of one task's log is stored, across the attempts of one execution of its run."""

    limit: int  # bytes; see the module docstring
    stored: int = 0
    truncated: bool = False  # the limit was reached and said so


TRACEBACK = "Traceback (most recent call last):"


def error_with_tail(what: str, tail: deque[str]) -> str:
    """A task's error: `what` failed (the first line) and its last log lines (each cut to
    MAX_ERROR_LINE_BYTES), as many as fit in MAX_ERROR_BYTES, the last ones first. When those
    lines hold a Python traceback, they start at it: what a lightweight component printed
    before (the kfp executor logs its whole executor input) would only cut into it."""
    lines = list(tail)
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(TRACEBACK)), 0)
    return cut_error("\n".join([what, *lines[start:]]))


class TaskLog:
    """One attempt of a container task: `add` our own lines, `run` reads the process's output
    to its end; lines are sent to the observer in batches, at least every LOG_FLUSH_SECONDS.
    `tail` holds the last ERROR_LOG_TAIL lines, cut for `error_with_tail`."""

    def __init__(self, observer: RunObserver, task_id: str, volume: LogVolume) -> None:
        self.observer = observer
        self.task_id = task_id
        self.volume = volume
        self.tail: deque[str] = deque(maxlen=ERROR_LOG_TAIL)
        self._buffer: list[str] = []
        self._lock = asyncio.Lock()
        self._line = bytearray()  # the start of the line being read, at most MAX_LOG_LINE_BYTES
        self._line_size = 0  # its whole size so far
        self._dropped_bytes = 0  # of this attempt's output, not stored (past the volume limit)
        self._dropped_lines = 0

    def add(self, line: str) -> None:
        """Log a line of our own (the command run, why it could not start); stored with the
        next batch, or by `flush`."""
        self._take(cut(line, MAX_LOG_LINE_BYTES), cut(line, MAX_ERROR_LINE_BYTES), len(line.encode()))

    async def flush(self) -> None:
        async with self._lock:
            if self._buffer:
                lines, self._buffer = self._buffer, []
                await self.observer.log_lines(self.task_id, lines)

    async def run(self, stdout: asyncio.StreamReader) -> None:
        """Read `stdout` to its end (or until cancelled); then say what was not stored."""
        ticker = asyncio.create_task(self._ticker())
        try:
            while chunk := await stdout.read(READ_CHUNK):
                self._split(chunk)
                if len(self._buffer) >= LOG_BATCH_LINES:
                    await self.flush()
            if self._line_size:
                self._line_done(bytes(self._line), self._line_size)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if self._dropped_lines:
                self._buffer.append(
                    f"log truncated: {self._dropped_bytes:,} further bytes ({self._dropped_lines:,} lines)"
                    " not stored"
                )
            await self.flush()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            await self.flush()

    def _split(self, chunk: bytes) -> None:
        end = chunk.find(b"\n")
        if end == -1:  # the current line goes on
            self._extend(chunk)
            return
        self._extend(chunk[:end])
        self._line_done(bytes(self._line), self._line_size)
        self._line.clear()
        self._line_size = 0
        start = end + 1
        if self.volume.truncated:
            start = self._skip(chunk, start)
        *complete, rest = chunk[start:].split(b"\n")  # in C: most lines are short
        for line in complete:
            self._line_done(line, len(line))
        self._extend(rest)

    def _skip(self, chunk: bytes, start: int) -> int:
        """Past the volume limit only the last lines matter (for the error): count the complete
        lines from `start` but the last ERROR_LOG_TAIL as dropped, without looking at each, and
        return where those last ones start. Keeps a task that prints without end cheap."""
        end = len(chunk)
        for _ in range(ERROR_LOG_TAIL + 1):
            end = chunk.rfind(b"\n", start, end)
            if end == -1:
                return start
        lines = chunk.count(b"\n", start, end + 1)
        self._dropped_lines += lines
        self._dropped_bytes += end + 1 - start - lines
        return end + 1

    def _extend(self, piece: bytes) -> None:
        """More of the current line: keep at most MAX_LOG_LINE_BYTES of it, count the rest."""
        room = MAX_LOG_LINE_BYTES - len(self._line)
        if room > 0:
            self._line += piece[:room]
        self._line_size += len(piece)

    def _line_done(self, data: bytes, size: int) -> None:
        """A line is complete: `data` is its start (all of it when `size` is its length)."""
        if size == len(data) and data.endswith(b"\r"):  # a CRLF line end
            data, size = data[:-1], size - 1
        if size <= MAX_ERROR_LINE_BYTES:
            text = data.decode("utf-8", errors="replace")
            self._take(text, text, size)
        else:
            self._take(cut_bytes(data, MAX_LOG_LINE_BYTES, size), cut_bytes(data, MAX_ERROR_LINE_BYTES, size), size)

    def _take(self, line: str, tail: str, size: int) -> None:
        """Store `line` (`size` bytes as printed) unless the volume limit is reached; keep it
        as `tail` (cut shorter) for the error."""
        self.tail.append(tail)
        volume = self.volume
        cost = utf8_size(line) + LOG_LINE_OVERHEAD
        if not volume.truncated and volume.stored + cost <= volume.limit:
            volume.stored += cost
            self._buffer.append(line)
            return
        if not volume.truncated:
            volume.truncated = True
            self._buffer.append(
                f"log truncated: this task's log reached {volume.limit:,} bytes (--max-log-bytes-per-task);"
                " further lines are not stored, its error still shows its last lines"
            )
        self._dropped_bytes += size
        self._dropped_lines += 1
