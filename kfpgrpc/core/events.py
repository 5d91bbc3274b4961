"""The event stream: what each event says, and WatchEvents.

A watcher first reads the stored log after its `after_sequence` (or its `newest` matches), then follows the events
committed since, which the log hands to every watcher's own bounded buffer: publishing never
waits for a watcher. A watcher whose buffer overflows (it stopped reading, or reads slower
than events come) is ended with RESOURCE_EXHAUSTED naming the sequence to resume after; one
that overflows while still reading the stored log just reads on from the store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import aiosqlite

from kfpgrpc.bounds import cut_error, summary
from kfpgrpc.domain import (
    PIPELINE_VERSION_CREATED,
    RECURRING_RUN_CHANGED,
    RUN_COMPLETED,
    RUN_DELETED,
    RUN_STATE_CHANGED,
    TICK_SKIPPED,
    Event,
    EventFilter,
    PipelineVersion,
    RecurringRun,
    Run,
)
from kfpgrpc.errors import InvalidArgument, OutOfRange, ResourceExhausted, Unavailable
from kfpgrpc.store import events as store
from kfpgrpc.store.database import Database, WriteJob
from kfpgrpc.store.events import EventLog

WATCH_PAGE = 500
MAX_NEWEST = 1_000  # WatchEventsRequest.newest: a view's start, not a way to read the log
DEFAULT_WATCHER_CAPACITY = 10_000  # events buffered per watcher before it is cut off


class _Watcher:
    """One stream's buffer of live events, already filtered (`Events` matches each distinct
    filter once per committed batch and hands the matches to every watcher with that filter).
    Made on the event loop that reads it."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # Kept rather than looked up per wait: asyncio.get_running_loop() makes a getpid()
        # system call, once per event per watcher (2% of the loop thread at 1,000 watchers).
        self._loop = asyncio.get_running_loop()
        self._items: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False

    def offer(self, matched: list[Event]) -> None:
        if self.overflowed:
            return
        self._items.extend(matched)
        if len(self._items) > self._capacity:
            self.overflowed = True
            self._items.clear()
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def reset(self) -> None:
        self.overflowed = False
        self._items.clear()

    def _wake(self) -> None:
        # A bare future rather than an asyncio.Event: one wake-up per batch for each of
        # possibly thousands of watchers, so the cheapest hand-off counts.
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Event | None:
        """The next buffered event; None after an overflow or once closed."""
        while not self._items:
            if self.closed or self.overflowed:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class Events:
    def __init__(self, db: Database, watcher_capacity: int = DEFAULT_WATCHER_CAPACITY) -> None:
        self._db = db
        self.log = EventLog(db)
        self.log.listeners.append(self._committed)
        self._watcher_capacity = watcher_capacity
        # Grouped by filter: each distinct filter is matched once per committed batch.
        self._watchers: dict[EventFilter, set[_Watcher]] = {}
        self._closed = False

    def job(self, *events: Event) -> WriteJob[None]:
        """A write job that stages `events`: pass it as a store call's `also`."""

        async def stage(conn: aiosqlite.Connection) -> None:
            self.log.stage(*events)

        return stage

    def close(self) -> None:
        """End every watch stream, present and future (server shutdown): also one that watch()
        returned before and that starts after (see _follow)."""
        self._closed = True
        for group in self._watchers.values():
            for watcher in group:
                watcher.close()

    async def watch(self, after: int, wanted: EventFilter, newest: int = 0) -> AsyncGenerator[Event, None]:
        """The events after sequence `after` that `wanted` matches, stored ones first, then each
        as it is committed; with `newest` (1..MAX_NEWEST, `after` then 0) the newest `newest`
        stored matches first instead. The arguments are checked before this returns
        (InvalidArgument: `after` negative or after the newest event, `newest` out of range or
        with `after`; OutOfRange: removed by retention; Unavailable: shutting down), so that a
        front end answers those before its stream starts; the stream ends with
        ResourceExhausted when it falls behind, Unavailable at shutdown (each naming the
        sequence to resume after)."""
        if after < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        if not 0 <= newest <= MAX_NEWEST:
            raise InvalidArgument.field("newest", f"must be 1 to {MAX_NEWEST:,} (0 = start at after_sequence)")
        if newest and after:
            raise InvalidArgument.field("newest", "cannot be combined with after_sequence (set one of them)")
        pruned, newest_sequence = await store.sequence_bounds(self._db)
        if after > newest_sequence:
            raise InvalidArgument.field("after_sequence", f"is after the newest event, {newest_sequence}")
        if 0 < after < pruned:
            raise OutOfRange(
                f"events up to {pruned} were removed by retention; resume with after_sequence={pruned}"
                " (or 0) to read from the oldest retained event"
            )
        if self._closed:
            raise Unavailable("the server is shutting down")
        if newest:
            # Events committed after this read are read from the store or the buffer as usual.
            after = await store.before_newest(self._db, wanted, newest)
        return self._follow(after, wanted)

    async def _follow(self, after: int, wanted: EventFilter) -> AsyncGenerator[Event, None]:
        watcher = _Watcher(self._watcher_capacity)
        if self._closed:
            # The stop came after watch() returned, before this body ran (at the first anext: an
            # HTTP event stream gets there once its first bytes are sent). close() did not see
            # this watcher; left open it would follow for ever and hold the server's stop.
            watcher.close()
        group = self._watchers.setdefault(wanted, set())
        group.add(watcher)
        try:
            last = after
            while True:  # the stored log, up to the newest committed event
                page = await store.events_after(self._db, last, wanted, WATCH_PAGE)
                for event in page:
                    yield event
                    last = event.sequence
                if len(page) < WATCH_PAGE:
                    if not watcher.overflowed:
                        break
                    watcher.reset()  # the store has what the buffer dropped
            while True:
                event = await watcher.next()
                if event is None:
                    if watcher.overflowed:
                        raise ResourceExhausted(
                            f"this watcher fell more than {self._watcher_capacity} events behind;"
                            f" resume with after_sequence={last}"
                        )
                    raise Unavailable(f"the server is shutting down; resume with after_sequence={last}")
                if event.sequence > last:
                    yield event
                    last = event.sequence
        finally:
            group.discard(watcher)
            if not group:
                del self._watchers[wanted]

    def _committed(self, events: list[Event]) -> None:
        for wanted, group in self._watchers.items():
            matched = [event for event in events if wanted.matches(event)]
            if matched:
                for watcher in group:
                    watcher.offer(matched)


# -- what each event says ------------------------------------------------------------------


def _run_event(type_: str, run: Run, time: int, details: dict[str, Any]) -> Event:
    return Event(0, time, type_, run.run_id, run.recurring_run_id, run.experiment_id, details)


def run_state_changed(run: Run, previous_state: str, time: int) -> Event:
    """Its error is the reason in the run's state history entry (a summary line); RUN_COMPLETED
    carries the whole error."""
    return _run_event(
        RUN_STATE_CHANGED, run, time,
        {"state": run.state, "previous_state": previous_state, "run_name": run.display_name, "error": summary(run.error)},
    )


def run_completed(run: Run, recurring_run_name: str, pipeline_name: str) -> Event:
    started = next((change.time for change in run.state_history if change.state == "RUNNING"), run.created_at)
    return _run_event(
        RUN_COMPLETED, run, run.finished_at,
        {
            "run_name": run.display_name,
            "recurring_run_name": recurring_run_name,
            "pipeline_name": pipeline_name,
            "state": run.state,
            "start_time": started,
            "end_time": run.finished_at,
            "artifacts": run.output_artifacts,
            "error": run.error,
        },
    )


def run_deleted(run: Run, reason: str, time: int) -> Event:
    return _run_event(RUN_DELETED, run, time, {"reason": reason})


def recurring_run_changed(recurring_run: RecurringRun, change: str, time: int, updated_fields: Sequence[str] = ()) -> Event:
    """`updated_fields`: the update mask's paths, each once (a mask may repeat a path without
    end; the fields of a RecurringRun are few)."""
    return Event(
        0, time, RECURRING_RUN_CHANGED, "", recurring_run.recurring_run_id, recurring_run.experiment_id,
        {
            "change": change,
            "status": recurring_run.status,
            "updated_fields": list(dict.fromkeys(updated_fields)),
            "display_name": recurring_run.display_name,
        },
    )


def tick_skipped(recurring_run: RecurringRun, scheduled_time: int, reason: str, detail: str, time: int) -> Event:
    """`detail` is cut to MAX_ERROR_BYTES: it may be a long error (every violation of a run
    that could not be created), and a schedule repeats it on every tick."""
    return Event(
        0, time, TICK_SKIPPED, "", recurring_run.recurring_run_id, recurring_run.experiment_id,
        {"scheduled_time": scheduled_time, "reason": reason, "detail": cut_error(detail)},
    )


def pipeline_version_created(version: PipelineVersion, time: int) -> Event:
    return Event(
        0, time, PIPELINE_VERSION_CREATED, details={
            "pipeline_id": version.pipeline_id, "pipeline_version_id": version.pipeline_version_id,
        },
    )
