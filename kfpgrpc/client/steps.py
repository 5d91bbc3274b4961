"""What the client's operations ask their driver to do.

Every operation is written once, as a generator (a *plan*) that yields steps — call this RPC,
open that stream, read from it, back off, run this local function, hand this item to the
caller — and receives each step's result (or has its KfpGrpcError thrown in). The blocking
`Client` and the asyncio `AsyncClient` only differ in how they carry out a step, so request
building, validation, paging, name resolution and stream resumption exist once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message

from kfpgrpc.client.errors import KfpGrpcError

T = TypeVar("T")
M = TypeVar("M", bound=Message)

# A stream that the server ended with one of these is opened again, resuming where it was.
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class Unary:
    """Call a unary RPC; the result is its response."""

    path: str
    request: Message
    response_type: type[Message]


@dataclass(frozen=True)
class OpenStream:
    """Start a server-streaming RPC; the result is a handle for Receive."""

    path: str
    request: Message
    response_type: type[Message]
    timeout: float | None


@dataclass(frozen=True)
class Receive:
    """Read the next message of an open stream; the result is None once it has ended."""

    stream: Any


@dataclass(frozen=True)
class Backoff:
    """Wait before reconnecting attempt number `attempt` (0-based) after `error`; the driver
    raises `error` instead when its ReconnectPolicy gives up. `established`: the watch has
    received a message, so the server was there."""

    error: KfpGrpcError
    attempt: int
    established: bool


@dataclass(frozen=True)
class Offload:
    """Run a blocking local function (read a file, compile a pipeline); the result is its value."""

    function: Callable[[], Any]


@dataclass(frozen=True)
class Emit(Generic[T]):
    """Hand `item` to the caller of an iterating operation."""

    item: T


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The plan returned `value`."""

    value: T


Step: TypeAlias = Unary | OpenStream | Receive | Backoff | Offload
Plan: TypeAlias = Generator[Any, Any, T]
"""An operation returning T (it may emit items along the way, which a unary call ignores)."""
Stream: TypeAlias = Generator[Step | Emit[T], Any, Any]
"""An operation that emits items of type T."""


def unary(path: str, request: Message, response_type: type[M]) -> Plan[M]:
    response: M = yield Unary(path, request, response_type)
    return response


def offload(function: Callable[[], T]) -> Plan[T]:
    value: T = yield Offload(function)
    return value


def resumable(
    path: str,
    request: Callable[[], Message],
    response_type: type[M],
    select: Callable[[M], Iterable[T]],
    deadline: float | None = None,
) -> Generator[Step | Emit[T], Any, T | None]:
    """Emit the items `select` picks from each message of a server stream, reopening the stream
    with a fresh `request()` when the connection drops or the server restarts; `select` is
    where callers drop what they have already seen. Returns the last item emitted.
    `deadline` (time.monotonic) bounds the whole watch: DEADLINE_EXCEEDED after it."""
    last: T | None = None
    attempt, established = 0, False
    while True:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise KfpGrpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while watching")
        stream = yield OpenStream(path, request(), response_type, timeout)
        try:
            while (message := (yield Receive(stream))) is not None:
                attempt, established = 0, True
                for last in select(message):
                    yield Emit(last)
            return last
        except KfpGrpcError as error:
            if error.code not in RECONNECT_CODES:
                raise
            yield Backoff(error, attempt, established)
            attempt += 1


@dataclass(frozen=True)
class ReconnectPolicy:
    """How watch streams reconnect: exponential backoff with jitter from `initial_delay` up to
    `max_delay` seconds, giving up (raising the last error) after `max_attempts` failed
    attempts in a row (None: never). A watch that has not received anything yet fails at
    once (a wrong address should not look like a hang), unless `before_first_message`: then
    it also waits for a server that is not up yet, or sends nothing before it restarts.
    `on_retry(error, attempt)` is called before each wait (attempt 0-based, back to 0 after a
    message arrives): to tell someone why nothing arrives."""

    initial_delay: float = 0.1
    max_delay: float = 2.0
    max_attempts: int | None = 100
    before_first_message: bool = False
    on_retry: Callable[[KfpGrpcError, int], None] | None = None

    def delay(self, step: Backoff) -> float:
        """Seconds to wait before the next attempt; raises step.error to give up."""
        if self.max_attempts is not None and step.attempt >= self.max_attempts:
            raise step.error
        if not (step.established or self.before_first_message):
            raise step.error
        if self.on_retry is not None:
            self.on_retry(step.error, step.attempt)
        return min(self.max_delay, self.initial_delay * 2.0 ** min(step.attempt, 30)) * random.uniform(0.5, 1.0)


class PlanRunner:
    """Drives one plan for a client flavour: `next_step()` returns what to do next (a Step, an
    Emit, or Finished), `send()`/`throw()` report how the step went. Used as a context
    manager, it closes the plan and cancels the stream it has open."""

    def __init__(self, plan: Plan[Any]) -> None:
        self._plan = plan
        self._step: Step | Emit[Any] | None = None
        self._outcome: tuple[Any, KfpGrpcError | None] = (None, None)
        self._stream: Any = None  # plans read one stream at a time: a new one replaces an ended one

    def next_step(self) -> Step | Emit[Any] | Finished[Any]:
        value, error = self._outcome
        self._outcome = (None, None)
        try:
            self._step = self._plan.throw(error) if error else self._plan.send(value)
        except StopIteration as stop:
            return Finished(stop.value)
        return self._step

    def send(self, value: Any) -> None:
        if isinstance(self._step, OpenStream):
            self._stream = value
        self._outcome = (value, None)

    def throw(self, error: KfpGrpcError) -> None:
        self._outcome = (None, error)

    def __enter__(self) -> PlanRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._plan.close()
        if self._stream is not None:
            self._stream.cancel()  # a no-op on a stream that has ended
