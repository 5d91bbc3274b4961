"""Recurring runs: one asyncio actor per enabled recurring run.

An actor owns its recurring run's trigger clock, its `max_concurrency` slots and its tick
queue. It sleeps on an alarm until its next tick (or until it is woken: a run of its finished,
a backfill arrived), handles every tick that is due, starts queued ticks as slots free up, and
sleeps again. Nothing polls the database.

Exactly once: a tick's fate (a run, a queue entry or a counted skip) and the move of the
actor's watermark past that tick commit in one transaction, and the store refuses a second run
for the same (recurring run, tick). After a crash, ticks after the watermark are simply due
again; ticks before it were handled.

An idle actor sleeps as a heap entry, not a task: once it has no unfinished run, no queued
tick and nothing fired, it leaves (deadline, id) in the manager's alarm heap and ends. One
timer task wakes the actors whose deadline has come (their rows read in a few queries) or that
a request, an upstream run or a new pipeline version needs. At start the enabled recurring
runs are armed in the background, after the server listens: an actor armed late finds its
due ticks by its watermark, so none is lost.

Which tick goes where (SPEC §4): when an actor wakes, the ticks after its watermark up to now
are due. All but the newest were missed (the server was down, the recurring run disabled, or
the actor slow): they are queued oldest first (catch-up), or with `no_catchup` counted as
skipped. The newest is on time: it starts a run if the queue is empty and a slot is free;
otherwise the overlap policy decides (BUFFER_ALL queues it, BUFFER_ONE queues it in place of
the other ticks the policy had queued, SKIP counts it as skipped, REPLACE terminates the oldest
active run and starts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US, Clock, rfc3339, to_datetime
from kfpgrpc.core import events as event
from kfpgrpc.core.broadcast import Broadcast
from kfpgrpc.core.events import Events
from kfpgrpc.core.runs import DependencyUnresolved, NewRun, Runs
from kfpgrpc.core.validation import check, id_violations, new_id
from kfpgrpc.domain import DISABLED, ENABLED, SUCCEEDED, Page, PipelineVersion, RecurringRun, RecurringRunView, Run, Trigger, evolve
from kfpgrpc.errors import DomainError, FailedPrecondition, FieldViolation, InvalidArgument, NotFound, StoreFault, Unavailable
from kfpgrpc.macros import MacroContext, expand, macro_violations
from kfpgrpc.schedule import (
    NEXT_TIMES,
    FireTime,
    Schedule,
    count_ticks,
    cron_schedule,
    fire_times,
    next_times,
    periodic_schedule,
    ticks_between,
    zone_of,
)
from kfpgrpc.store import experiments as experiment_store
from kfpgrpc.store import recurring_runs as store
from kfpgrpc.store import runs as run_store
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import ListRequest, build_query
from kfpgrpc.store.recurring_runs import QueuedTick

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 100
OVERLAP_POLICIES = ("BUFFER_ALL", "BUFFER_ONE", "SKIP", "REPLACE")
CATCHUP_BATCH = 1000  # missed ticks queued per transaction
MAX_REQUESTED_TICKS = 100_000  # ticks one request may queue: a backfill, or a past start_time
MAX_PREVIEW_TICKS = 1000  # tick times a backfill's validate_only lists
MAX_PREVIEW_TIMES = 100  # fire times PreviewSchedule computes
# A failed step is retried after 1 s, then 2, 4, ... up to a minute (real time: the store or
# a bug is at fault, not the schedule).
RETRY_DELAY_SECONDS = 1.0
MAX_RETRY_DELAY_SECONDS = 60.0
ARMING_CHUNK = 2000  # recurring runs read and armed between two yields to the event loop at start
MAX_TICKS_PER_WRITE = 2000  # actors' tick commits in one write job
WAKE_CHUNK = 500  # sleeping actors woken (rows read and decoded, actors started) at a time
# What a tick's commit changes in its recurring run's row.
_TICK_FIELDS = ("watermark", "ticks_handled", "runs_created", "ticks_skipped", "error", "revision")


@dataclasses.dataclass(frozen=True)
class Backfill:
    """What a backfill queued (or, validate_only, would queue): `queued` ticks, `present`
    ticks of the range left alone, and with validate_only the first MAX_PREVIEW_TICKS of the
    queued ticks' times (µs)."""

    queued: int
    present: int
    queued_times: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Definition:
    """What a user sets on a recurring run (create, or the result of an update): the run each
    tick creates, and when and how ticks create runs."""

    run: NewRun  # display_name is the recurring run's; macros are not expanded yet
    max_concurrency: int = 0  # 0 = 1
    trigger: Trigger = Trigger()
    enabled: bool = False
    no_catchup: bool = False
    overlap_policy: str = ""  # "" = BUFFER_ALL


class RecurringRuns:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        runs: Runs,
        default_experiment_id: Callable[[], str],
        default_time_zone: str,
        min_interval_seconds: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._runs = runs
        self._default_experiment_id = default_experiment_id
        self._default_time_zone = default_time_zone
        self._min_interval_seconds = min_interval_seconds
        self._actors: dict[str, _Actor] = {}  # awake actors
        # Enabled recurring runs whose actor sleeps: id -> its next tick (µs), None when only
        # an event can wake it. The heap holds (tick, id) of those with a tick; an entry
        # that `_dormant` no longer agrees with is stale and skipped.
        self._dormant: dict[str, int | None] = {}
        self._alarms: list[tuple[int, str]] = []
        self._waking: set[str] = set()  # taken off the heap, their rows being read
        self._reload: set[str] = set()  # asleep after a failed change: woken with their state read
        self._alarm_changed = asyncio.Event()  # the heap's head moved earlier
        # What fires enabled recurring runs, awake or asleep: id -> its upstream recurring
        # runs, and pipeline id -> the recurring runs following its latest version. A
        # finished run or a new version is checked against these few, not every actor.
        self._downstream: dict[str, tuple[str, ...]] = {}
        self._followers: dict[str, set[str]] = {}
        self._following: dict[str, str] = {}  # the other way round
        self._touched: set[str] | None = None  # changed while arming: not armed from the stale list
        self._snapshots: Broadcast[RecurringRunView] = Broadcast()
        self._change_locks: dict[str, _ChangeLock] = {}  # of recurring runs being changed
        self._tasks: set[asyncio.Task[None]] = set()  # the timer, the arming, wake-ups by events
        self._ticks = _TickWriter(self)
        self._stopping = False
        self.armed: asyncio.Task[None] | None = None  # arming at start; done once every enabled one is armed
        runs.finished_listeners.append(self._run_finished)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the actors with work in hand (unfinished runs, queued ticks); arm the others
        in the background (`armed`)."""
        # Earlier versions let a recurring run be enabled in an archived experiment, where
        # every tick fails: such a one is disabled, with its event, instead of started.
        for recurring_run_id in await store.enabled_in_archived_experiments(self._db):
            await self.set_enabled(recurring_run_id, False)
        active = await store.unfinished_runs_by_recurring_run(self._db)
        queued = await store.queued_counts(self._db)
        busy = sorted(set(active) | set(queued))
        for recurring_run in await store.get_many(self._db, busy):
            if recurring_run.status == ENABLED:
                rid = recurring_run.recurring_run_id
                self._start_actor(recurring_run, (active.get(rid, []), queued.get(rid, 0)))
        # What fires recurring runs is known before the server listens, armed or not.
        for rid, trigger_text, pipeline_id, pipeline_version_id in await store.fired_by(self._db):
            self._index(rid, store.decode_trigger(trigger_text), pipeline_id, pipeline_version_id)
        self._touched = set()
        self.armed = self._spawn(self._arm(set(busy)))
        self._spawn(self._timer())

    async def stop(self) -> None:
        self._stopping = True
        self._snapshots.close()
        for task in self._tasks:
            task.cancel()
        actors = list(self._actors.values())
        for actor in actors:
            actor.stop()
        await asyncio.gather(*self._tasks, *(actor.finished() for actor in actors), return_exceptions=True)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _arm(self, skip: set[str]) -> None:
        """Put every enabled recurring run without an actor to sleep until its next tick.
        Rows are read a chunk at a time, ordered by trigger and watermark: equal triggers are
        decoded and parsed once, and a schedule's next tick is computed once for every
        watermark before it (most recurring runs of one cron share their next tick)."""
        # (stored trigger, anchor) -> [its trigger, its schedule, (a watermark, its next tick)]
        schedules: dict[tuple[str, int], list[Any]] = {}
        async for chunk in store.enabled_alarms(self._db, ARMING_CHUNK):
            for rid, watermark, created_at, trigger_text, pipeline_id, pipeline_version_id in chunk:
                if rid in skip or rid in self._actors or self._asleep(rid) or rid in self._change_locks or rid in (self._touched or ()):
                    continue
                if len(schedules) > ARMING_CHUNK:  # periodic ones are each their own: keep few
                    schedules.clear()
                entry = schedules.get((trigger_text, 0)) or schedules.get((trigger_text, created_at))
                if entry is None:
                    trigger = store.decode_trigger(trigger_text)
                    # A periodic schedule (or @every) without a start time is anchored at its creation.
                    anchored = trigger.schedule == "periodic" or trigger.cron.startswith("@every")
                    entry = schedules[(trigger_text, created_at if anchored else 0)] = [
                        trigger, self._stored_schedule(trigger, created_at)[0], None,
                    ]
                trigger, schedule, known = entry
                if schedule is None:
                    deadline = None
                elif known is not None and known[0] <= watermark < known[1]:
                    deadline = known[1]  # no tick between that watermark and this one
                else:
                    deadline = schedule.next_after(watermark)
                    entry[2] = (watermark, deadline) if deadline is not None else None
                self._index(rid, trigger, pipeline_id, pipeline_version_id)
                self._sleep_until(rid, deadline)
            await asyncio.sleep(0)  # requests are served while arming
        self._touched = None
        log.info("recurring runs armed", extra={"fields": {"asleep": len(self._dormant), "awake": len(self._actors)}})

    # -- sleeping actors ---------------------------------------------------------------------

    def _sleep_until(self, recurring_run_id: str, deadline: int | None) -> None:
        """Leave an enabled recurring run asleep until `deadline` (µs; None: until an event)."""
        self._dormant[recurring_run_id] = deadline
        if deadline is None:
            return
        heapq.heappush(self._alarms, (deadline, recurring_run_id))
        if self._alarms[0][1] == recurring_run_id:
            self._alarm_changed.set()
        if len(self._alarms) > 2 * len(self._dormant) + 1024:  # mostly stale: rebuilt
            self._alarms = [(when, rid) for rid, when in self._dormant.items() if when is not None]
            heapq.heapify(self._alarms)

    def _asleep(self, recurring_run_id: str) -> bool:
        return recurring_run_id in self._dormant or recurring_run_id in self._waking

    def _forget(self, recurring_run_id: str) -> None:
        """A change takes the recurring run in hand: it is no longer asleep (its indexes stay:
        a fire during the change waits for it, see `_fire`)."""
        self._dormant.pop(recurring_run_id, None)
        self._waking.discard(recurring_run_id)
        self._reload.discard(recurring_run_id)
        if self._touched is not None:
            self._touched.add(recurring_run_id)

    def _recover(self, recurring_run_id: str) -> None:
        """A change failed (or its caller gave up) while taking the recurring run in hand: its
        actor goes on, or, if it had none or was being stopped, the recurring run is woken at
        once with its state read from the store (nothing is assumed of it)."""
        actor = self._actors.get(recurring_run_id)
        if actor is not None and not actor.stopping:
            actor.urgent = False
            return
        self._reload.add(recurring_run_id)
        self._sleep_until(recurring_run_id, self._clock.now_us())

    def _unindex(self, recurring_run_id: str) -> None:
        self._downstream.pop(recurring_run_id, None)
        followed = self._following.pop(recurring_run_id, None)
        if followed is not None:
            self._followers[followed].discard(recurring_run_id)
            if not self._followers[followed]:
                del self._followers[followed]

    def _index(self, recurring_run_id: str, trigger: Trigger, pipeline_id: str, pipeline_version_id: str) -> None:
        """Index an enabled recurring run by what fires it (replacing what was indexed)."""
        self._unindex(recurring_run_id)
        if trigger.upstream_recurring_run_ids:
            self._downstream[recurring_run_id] = trigger.upstream_recurring_run_ids
        if trigger.on_new_pipeline_version and pipeline_id and not pipeline_version_id:
            self._followers.setdefault(pipeline_id, set()).add(recurring_run_id)
            self._following[recurring_run_id] = pipeline_id

    async def _timer(self) -> None:
        """Wake the sleeping actors whose tick has come; one task for all of them."""
        clock = self._clock
        while True:
            now = clock.now_us()
            due = []
            while self._alarms and self._alarms[0][0] <= now:
                deadline, rid = heapq.heappop(self._alarms)
                if self._dormant.get(rid, -1) == deadline:
                    del self._dormant[rid]
                    due.append(rid)
            if due:
                await self._wake_due(due)
                continue
            self._alarm_changed.clear()
            alarm = clock.wake_at(self._alarms[0][0], self._alarm_changed) if self._alarms else None
            await self._alarm_changed.wait()
            if alarm is not None:
                alarm.cancel()

    async def _wake_due(self, due: list[str]) -> None:
        """Start the actors of `due` (asleep with nothing in hand: no unfinished run, no queued
        tick), their rows read WAKE_CHUNK at a time, with the event loop free between chunks
        (10,000 rows decoded and actors started at once held it for a second). One that a
        change took in hand meanwhile is left to the change. If rows cannot be read, those not
        started yet sleep again, to be tried later."""
        self._waking.update(due)
        for first in range(0, len(due), WAKE_CHUNK):
            chunk = due[first : first + WAKE_CHUNK]
            try:
                recurring_runs = await store.get_many(self._db, chunk)
            except Exception as error:  # noqa: BLE001 - supervision: retried, never dropped
                delay = RETRY_DELAY_SECONDS * MICROS_PER_SECOND
                log.error("cannot read recurring runs to wake; retrying", extra={"fields": {"count": len(due) - first, "error": str(error)}})
                for rid in due[first:]:
                    if rid in self._waking:
                        self._waking.discard(rid)
                        self._sleep_until(rid, self._clock.now_us() + delay)
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                return
            for recurring_run in recurring_runs:
                rid = recurring_run.recurring_run_id
                actor = self._actors.get(rid)
                if rid in self._waking and rid not in self._change_locks and (actor is None or actor.stopping) and recurring_run.status == ENABLED:
                    self._waking.discard(rid)
                    # Asleep with nothing in hand, unless a failed change left it (then read).
                    self._start_actor(recurring_run, None if rid in self._reload else ([], 0))
                    self._reload.discard(rid)
            self._waking.difference_update(chunk)  # deleted or disabled meanwhile

    async def _awake(self, recurring_run_id: str) -> _Actor | None:
        """The recurring run's actor, woken if it sleeps; None when it has none (disabled)."""
        actor = self._actors.get(recurring_run_id)
        if actor is None and self._maybe_enabled(recurring_run_id):
            async with self._paused(recurring_run_id):
                pass  # its actor starts on the way out (after a change in progress, if any)
            actor = self._actors.get(recurring_run_id)
        return actor

    def _maybe_enabled(self, recurring_run_id: str) -> bool:
        """Without an awake actor, whether it may still be an enabled recurring run: asleep,
        in a change, or not armed yet (the store says)."""
        return self._asleep(recurring_run_id) or recurring_run_id in self._change_locks or self._touched is not None

    @contextlib.asynccontextmanager
    async def _locked(self, recurring_run_id: str) -> AsyncIterator[_Actor | None]:
        """The recurring run's awake actor (woken if asleep) with its lock held and its state
        loaded; None when it has no actor (disabled)."""
        while True:
            actor = await self._awake(recurring_run_id)
            if actor is None:
                yield None
                return
            await actor.lock.acquire()
            if not actor.asleep and self._actors.get(recurring_run_id) is actor:
                break
            actor.lock.release()  # it went to sleep, or a change replaced it, while this waited
        try:
            if not actor.loaded:
                await actor.load()
            yield actor
        finally:
            actor.lock.release()

    def _fire(self, recurring_run_id: str, time: int) -> None:
        """A tick outside the schedule (an upstream run, a new pipeline version)."""
        actor = self._actors.get(recurring_run_id)
        if actor is not None:
            actor.fire(time)
        elif self._maybe_enabled(recurring_run_id) and not self._stopping:
            self._spawn(self._fire_asleep(recurring_run_id, time))

    async def _fire_asleep(self, recurring_run_id: str, time: int) -> None:
        """Wake a sleeping actor with a fire; while the store cannot be read, try again after
        1, 2, 4 ... 60 s (as a failed step does): a fire is not dropped."""
        delay = RETRY_DELAY_SECONDS
        while True:
            try:
                async with self._paused(recurring_run_id) as paused:
                    paused.fired.append(time)  # handed to the actor started on the way out
                return
            except NotFound:  # deleted meanwhile
                return
            except DomainError as error:
                log.error("cannot wake a recurring run for a fire; retrying",
                          extra={"fields": {"recurring_run_id": recurring_run_id, "error": str(error), "retry_in_seconds": delay}})
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_RETRY_DELAY_SECONDS)
            if (actor := self._actors.get(recurring_run_id)) is not None:  # woken meanwhile
                actor.fire(time)
                return

    # -- requests ----------------------------------------------------------------------------

    async def create(self, definition: Definition) -> RecurringRunView:
        spec, spec_hash = await self._check(definition, "recurring_run")
        now = self._clock.now_us()
        watermark = await self._first_watermark(definition, now, "recurring_run.trigger")
        recurring_run = RecurringRun(
            recurring_run_id=new_id(),
            **self._defined(definition, spec_hash),
            status=ENABLED if definition.enabled else DISABLED,
            created_at=now,
            updated_at=now,
            error="",
            watermark=watermark,
            ticks_handled=0,
            runs_created=0,
            ticks_skipped={},
            revision=1,
        )
        await store.insert(self._db, recurring_run, spec, self._events.job(event.recurring_run_changed(recurring_run, "CREATED", now)))
        if definition.enabled:
            self._start_actor(recurring_run, ([], 0))  # new: no runs, no queue
        return await self._view(recurring_run, spec)

    async def get(self, recurring_run_id: str, with_spec: bool = True) -> RecurringRunView:
        check(id_violations(recurring_run_id, "recurring_run_id"))
        actor = self._actors.get(recurring_run_id)
        recurring_run = actor.recurring_run if actor else await store.get(self._db, recurring_run_id)
        spec = await run_store.get_spec(self._db, recurring_run.spec_hash) if with_spec and recurring_run.inline else None
        return await self._view(recurring_run, spec)

    async def list(self, experiment_id: str, request: ListRequest) -> Page[RecurringRunView]:
        scope = [("experiment_id", experiment_id)] if experiment_id else []
        page = await store.list_page(self._db, build_query(store.RECURRING_RUNS, request, scope))
        views = []
        for stored in page.items:
            actor = self._actors.get(stored.recurring_run_id)
            views.append(await self._view(actor.recurring_run if actor else stored))
        return evolve(page, items=views)

    async def update(self, recurring_run_id: str, definition: Definition, updated_fields: Sequence[str] = ()) -> RecurringRunView:
        """Replace the definition. A changed trigger applies from now on: ticks of the old one
        that are due are handled first, and the new one never fires for a time before now.
        `updated_fields` (the update mask's paths) goes into the event."""
        check(id_violations(recurring_run_id, "recurring_run_id"))
        spec, spec_hash = await self._check(definition, "recurring_run", recurring_run_id)
        async with self._paused(recurring_run_id) as paused:
            current = paused.current
            now = self._clock.now_us()
            defined = self._defined(definition, spec_hash)
            updated = evolve(
                current,
                **defined,
                watermark=max(current.watermark, now) if defined["trigger"] != current.trigger else current.watermark,
                updated_at=now,
                error="",
                revision=current.revision + 1,
            )
            await store.replace_definition(
                self._db, current, updated, spec,
                self._events.job(event.recurring_run_changed(updated, "UPDATED", now, list(updated_fields))),
            )
            paused.current = updated
        return await self._after_change(updated, spec)

    async def set_enabled(self, recurring_run_id: str, enabled: bool) -> None:
        """Disabling stops new ticks (runs in flight continue); enabling catches up the gap.
        FailedPrecondition: enabling in an archived experiment, which holds no active work."""
        check(id_violations(recurring_run_id, "recurring_run_id"))
        status = ENABLED if enabled else DISABLED
        async with self._paused(recurring_run_id) as paused:
            current = paused.current
            if current.status == status:
                return
            now = self._clock.now_us()
            changed = evolve(current, status=status, updated_at=now, revision=current.revision + 1)
            changed_event = self._events.job(event.recurring_run_changed(changed, status, now))

            async def job(conn: aiosqlite.Connection) -> None:
                if enabled:
                    await experiment_store.check_available_within(conn, current.experiment_id, f"enabling recurring run {recurring_run_id!r}")
                await changed_event(conn)

            await store.save(self._db, changed, ("status", "updated_at", "revision"), job)
            paused.current = changed
        await self._publish(changed)  # a view only if watched: nothing is returned

    async def delete(self, recurring_run_id: str, delete_runs: bool) -> None:
        """Stop the actor and delete the recurring run (and its runs if `delete_runs`).
        FailedPrecondition, listing them, while other recurring runs reference it."""
        check(id_violations(recurring_run_id, "recurring_run_id"))
        async with self._db.reader() as conn:  # refused without disturbing the actor
            await store.check_unreferenced_within(conn, recurring_run_id)
        async with self._paused(recurring_run_id) as paused:
            deleted = evolve(paused.current, status=DISABLED)
            await store.delete(self._db, recurring_run_id, self._events.job(event.recurring_run_changed(deleted, "DELETED", self._clock.now_us())))
            paused.current = None
        self._snapshots.close_key(recurring_run_id)
        if delete_runs:
            for run_id in await store.run_ids(self._db, recurring_run_id):
                await self._runs.delete(run_id, "recurring run deleted")

    async def trigger(self, recurring_run_id: str) -> Run:
        """One run now, outside the schedule; it takes a concurrency slot like any other.
        FailedPrecondition: all slots busy, or an archived experiment."""
        check(id_violations(recurring_run_id, "recurring_run_id"))
        recurring_run = await store.get(self._db, recurring_run_id)
        async with self._db.reader() as conn:  # said first; storing the run checks it again
            await experiment_store.check_available_within(conn, recurring_run.experiment_id, f"triggering recurring run {recurring_run_id!r}")
        async with self._locked(recurring_run_id) as actor:
            if actor is not None:
                return await actor.start_now()
        detached = _Actor(self, recurring_run, self._schedule(recurring_run))
        detached.urgent = True  # it only serves this request
        detached.active = await store.unfinished_run_ids(self._db, recurring_run_id)
        return await detached.start_now()

    async def backfill(self, recurring_run_id: str, start_time: int, end_time: int, validate_only: bool = False) -> Backfill:
        """Queue a run for each tick in [start_time, end_time] that has none; returns the
        ticks queued and those left alone because they have a run or are queued (or, for a
        disabled recurring run, are not yet handled by its schedule). A backfill never
        queues nothing silently: a range without ticks is InvalidArgument, ticks that all
        wait for a disabled schedule FailedPrecondition, and so is an archived experiment.
        `validate_only` checks the same and reports the same counts, plus the first
        MAX_PREVIEW_TICKS ticks it would queue, and changes nothing (the due ticks of the
        schedule are handled first either way: that is the schedule's work, not the
        backfill's)."""
        check(id_violations(recurring_run_id, "recurring_run_id"))
        now = self._clock.now_us()
        violations = []
        if not start_time:
            violations.append(FieldViolation("start_time", "is required"))
        if not end_time:
            violations.append(FieldViolation("end_time", "is required"))
        elif end_time > now:
            violations.append(FieldViolation("end_time", "must not be in the future"))
        if start_time and end_time and end_time < start_time:
            violations.append(FieldViolation("end_time", "must not be before start_time"))
        check(violations)
        async with self._locked(recurring_run_id) as actor:
            if actor is not None:
                await actor.step()  # the due ticks are handled first: none in the range is left to it
            recurring_run = actor.recurring_run if actor else await store.get(self._db, recurring_run_id)
            schedule = self._schedule(recurring_run)
            if schedule is None:
                raise FailedPrecondition(f"recurring run {recurring_run_id!r} has no schedule to backfill")
            in_range = await asyncio.to_thread(ticks_between, schedule.detached(), start_time - 1, end_time, MAX_REQUESTED_TICKS + 1)
            if len(in_range) > MAX_REQUESTED_TICKS:
                raise InvalidArgument.field("start_time", f"the range holds more than {MAX_REQUESTED_TICKS} ticks")
            if not in_range:
                following = schedule.next_after(start_time - 1)
                raise InvalidArgument.field("start_time", "no tick of the schedule falls in the range; " + (
                    f"the first after start_time is at {rfc3339(following)}" if following else "it has no tick after start_time"
                ))
            # Ticks after the watermark are the schedule's to handle: queuing them here would
            # handle them twice.
            handled = [tick for tick in in_range if tick <= recurring_run.watermark]
            if not handled:
                handled_until = rfc3339(recurring_run.watermark)
                raise FailedPrecondition(
                    f"recurring run {recurring_run_id!r} has not reached these ticks yet (its last handled tick is"
                    f" {handled_until}): its schedule runs them once enabled (catch-up, unless no_catchup),"
                    f" or backfill a range up to {handled_until}"
                )
            if validate_only:
                async with self._db.reader() as conn:
                    await experiment_store.check_available_within(conn, recurring_run.experiment_id, f"backfilling recurring run {recurring_run_id!r}")
                    would_queue = await store.unqueued_within(conn, recurring_run_id, handled)
                return Backfill(len(would_queue), len(in_range) - len(would_queue), would_queue[:MAX_PREVIEW_TICKS])
            first_index = recurring_run.ticks_handled + 1
            ticks = [QueuedTick(tick, first_index + offset, "backfill") for offset, tick in enumerate(handled)]
            queued = 0

            async def job(conn: aiosqlite.Connection) -> None:
                nonlocal queued
                await experiment_store.check_available_within(conn, recurring_run.experiment_id, f"backfilling recurring run {recurring_run_id!r}")
                queued = await store.enqueue_within(conn, recurring_run_id, ticks)
                await store.save_within(conn, changed, ("ticks_handled", "revision"))

            changed = evolve(
                recurring_run, ticks_handled=recurring_run.ticks_handled + len(ticks), revision=recurring_run.revision + 1
            )
            await self._db.write(job)
            if actor is not None:
                actor.recurring_run = changed
                actor.queued += queued
                actor.wake.set()
        await self._publish(changed)
        return Backfill(queued, len(in_range) - queued)

    async def preview(self, trigger: Trigger, count: int, after_us: int, time_zone: str) -> tuple[str, list[FireTime]]:
        """PreviewSchedule: the zone name and the next `count` (0 = NEXT_TIMES, at most
        MAX_PREVIEW_TIMES) fire times after `after_us` (0 = now) of `trigger`, parsed and
        checked as create parses and checks it (violations name "trigger..." fields) and
        computed by fire_times' next_times, as next_scheduled_times is. A periodic schedule
        without start_time is anchored at `after_us`, as a created one is at its creation.
        Offsets and DST days are read in the cron's zone, or for a periodic schedule in
        `time_zone` (default the server's); a `time_zone` other than the cron's is
        InvalidArgument. A trigger without a clock has no fire times."""
        violations = []
        if not 0 <= count <= MAX_PREVIEW_TIMES:
            violations.append(FieldViolation("count", f"must be between 1 and {MAX_PREVIEW_TIMES} (0 = {NEXT_TIMES}), got {count}"))
        after_us = after_us or self._clock.now_us()
        trigger = self._with_default_zone(trigger)
        schedule, trigger_violations = self._parse_trigger(trigger, after_us, "trigger")
        violations += trigger_violations
        if trigger.schedule == "cron":
            if time_zone and time_zone != trigger.time_zone:
                violations.append(FieldViolation("time_zone", f"must be empty or the cron's time_zone {trigger.time_zone!r}"))
            zone_name = trigger.time_zone
        else:
            zone_name = time_zone or self._default_time_zone
        zone, zone_violations = zone_of(zone_name, "time_zone")
        if trigger.schedule != "cron":
            violations += zone_violations
        check(violations)
        if schedule is None or zone is None:
            return zone_name, []
        # Sparse cron expressions can take croniter a while per tick: off the event loop.
        return zone_name, await asyncio.to_thread(fire_times, schedule.detached(), after_us, count or NEXT_TIMES, zone)

    async def watch(self, recurring_run_id: str) -> AsyncGenerator[RecurringRunView, None]:
        """The current snapshot, then one per change; ends when the recurring run is deleted."""
        with self._snapshots.subscribe(recurring_run_id) as subscription:
            view = await self.get(recurring_run_id, with_spec=False)
            yield view
            revision = view.recurring_run.revision
            while True:
                received = await subscription.next()
                if received is None:
                    if self._stopping:
                        raise Unavailable("the server is shutting down; watch again to resume")
                    return  # deleted
                if received.recurring_run.revision > revision or received != view:
                    view, revision = received, received.recurring_run.revision
                    yield view

    async def experiment_archiving(self, experiment_id: str) -> None:
        """Archiving an experiment disables its recurring runs first, so that no tick of
        theirs meets the archived experiment."""
        for recurring_run_id in await store.enabled_ids_in_experiment(self._db, experiment_id):
            await self.set_enabled(recurring_run_id, False)

    # -- internals ---------------------------------------------------------------------------

    async def _check(self, definition: Definition, field: str, recurring_run_id: str = "") -> tuple[dict[str, Any] | None, str]:
        """Validate a definition (of `recurring_run_id` when it is an update); return the
        inline spec snapshot and its hash, or (None, "") for a pipeline version reference."""
        violations = []
        if not 0 <= definition.max_concurrency <= MAX_CONCURRENCY:
            violations.append(
                FieldViolation(f"{field}.max_concurrency", f"must be between 1 and {MAX_CONCURRENCY} (0 = 1), got {definition.max_concurrency}")
            )
        if definition.overlap_policy and definition.overlap_policy not in OVERLAP_POLICIES:
            violations.append(FieldViolation(f"{field}.overlap_policy", f"must be one of {', '.join(OVERLAP_POLICIES)}"))
        trigger = self._with_default_zone(definition.trigger)
        _, trigger_violations = self._parse_trigger(trigger, self._clock.now_us(), f"{field}.trigger")
        violations += trigger_violations
        violations += macro_violations(definition.run.parameters, f"{field}.runtime_config.parameters")
        if trigger.on_new_pipeline_version and (not definition.run.pipeline_id or definition.run.pipeline_version_id):
            violations.append(FieldViolation(
                f"{field}.trigger.on_new_pipeline_version",
                "needs a pipeline_version_reference with a pipeline_id and no pipeline_version_id (following the latest version)",
            ))
        # A parameter from the recurring run's own previous run is checked against the new
        # definition's selectors (the stored ones are about to change).
        own = {name: ref for name, ref in definition.run.parameters_from.items() if recurring_run_id and ref["recurring_run_id"] == recurring_run_id}
        check(violations + _own_reference_violations(own, definition.run.artifacts, f"{field}.runtime_config.parameters_from"))
        await self._check_dependencies(definition, field, recurring_run_id)
        if definition.run.experiment_id:
            experiment = await experiment_store.get(self._db, definition.run.experiment_id)
            if experiment.storage_state != "AVAILABLE":
                raise FailedPrecondition(f"experiment {experiment.experiment_id!r} is archived")
        # A sample run checks the pipeline source, the parameters (macros expanded), the
        # pipeline root and the artifact selectors exactly as each tick will; an own
        # previous run's artifact stands in as a string.
        template = evolve(
            definition.run,
            parameters={**definition.run.parameters, **{name: "" for name in own}},
            parameters_from={name: ref for name, ref in definition.run.parameters_from.items() if name not in own},
        )
        sample = self._new_run(template, MacroContext(self._clock.now_us(), self._clock.now_us(), 1, new_id()), 0)
        run, document = await self._runs.prepare(sample, field, resolve=False)
        return (document, run.spec_hash) if run.inline else (None, "")

    async def _check_dependencies(self, definition: Definition, field: str, recurring_run_id: str) -> None:
        """Upstream recurring runs exist (InvalidArgument naming the reference, never a
        NotFound that would read as if this recurring run were missing), and no recurring
        run depends on itself, through triggers or required parameters_from, directly or
        not. An optional parameter from its own previous run is no cycle: it never blocks."""
        upstream_field = f"{field}.trigger.upstream_recurring_run_ids"
        for index, upstream_id in enumerate(definition.trigger.upstream_recurring_run_ids):
            if upstream_id == recurring_run_id:
                raise InvalidArgument.field(f"{upstream_field}[{index}]", "a recurring run cannot trigger itself")
            if upstream_id not in self._actors and not await store.exists(self._db, upstream_id):
                raise InvalidArgument.field(f"{upstream_field}[{index}]", f"no recurring run {upstream_id!r}")
        if not recurring_run_id:
            return  # a new recurring run: nothing depends on it yet
        edges = {r.recurring_run_id: _dependencies(r.trigger, r.parameters_from) for r in await store.with_dependencies(self._db)}
        edges[recurring_run_id] = _dependencies(definition.trigger, definition.run.parameters_from)
        if cycle := _cycle_through(recurring_run_id, edges):
            raise InvalidArgument.field(
                upstream_field if cycle[1] in definition.trigger.upstream_recurring_run_ids else f"{field}.runtime_config.parameters_from",
                "would make a dependency cycle: " + " -> ".join(cycle),
            )

    async def _first_watermark(self, definition: Definition, now: int, field: str) -> int:
        """Where a new recurring run's ticks start. A start_time in the past is honoured as
        KFP does: the ticks from it to now are missed ticks, caught up oldest first (at most
        MAX_REQUESTED_TICKS, else InvalidArgument on the start_time); with no_catchup only
        the latest of them runs (the earlier ones predate the recurring run: not counted)."""
        trigger = self._with_default_zone(definition.trigger)
        schedule, _ = self._parse_trigger(trigger, now, field)
        if schedule is None or not trigger.start_time or trigger.start_time > now:
            return now
        # Years of ticks take a while to walk: off the event loop.
        schedule = schedule.detached()
        if definition.no_catchup:
            latest = await asyncio.to_thread(schedule.latest, trigger.start_time - 1, now)
            return now if latest is None else latest - 1
        if await asyncio.to_thread(count_ticks, schedule, trigger.start_time - 1, now, MAX_REQUESTED_TICKS + 1) > MAX_REQUESTED_TICKS:
            raise InvalidArgument.field(
                f"{field}.{trigger.schedule}_schedule.start_time",
                f"is more than {MAX_REQUESTED_TICKS} ticks ago, too many to catch up:"
                " set no_catchup to run only the latest of them, or a later start_time",
            )
        return trigger.start_time - 1

    def _defined(self, definition: Definition, spec_hash: str) -> dict[str, Any]:
        """The RecurringRun fields a definition sets, defaults applied; `spec_hash` is its
        inline spec's, "" for a pipeline version reference."""
        run = definition.run
        return {
            "display_name": run.display_name,
            "description": run.description,
            "experiment_id": run.experiment_id or self._default_experiment_id(),
            "pipeline_id": run.pipeline_id,
            "pipeline_version_id": run.pipeline_version_id,
            "spec_hash": spec_hash,
            "parameters": run.parameters,
            "parameters_from": run.parameters_from,
            "pipeline_root": run.pipeline_root,
            "service_account": run.service_account,
            "max_concurrency": definition.max_concurrency or 1,
            "trigger": self._with_default_zone(definition.trigger),
            "no_catchup": definition.no_catchup,
            "overlap_policy": definition.overlap_policy or "BUFFER_ALL",
            "artifacts": run.artifacts,
        }

    def _with_default_zone(self, trigger: Trigger) -> Trigger:
        if trigger.schedule == "cron" and not trigger.time_zone:
            return evolve(trigger, time_zone=self._default_time_zone)
        return trigger

    def _parse_trigger(
        self, trigger: Trigger, anchor_us: int, field: str, min_interval_seconds: int | None = None
    ) -> tuple[Schedule | None, list[FieldViolation]]:
        """The trigger's schedule, or the violations of `field` (the trigger). The server's
        minimum interval applies unless `min_interval_seconds` is given."""
        if min_interval_seconds is None:
            min_interval_seconds = self._min_interval_seconds
        violations = []
        for name, time in (("start_time", trigger.start_time), ("end_time", trigger.end_time)):
            if time and not MIN_TIME_US <= time <= MAX_TIME_US:  # stored by a server that did not check
                violations.append(FieldViolation(f"{field}.{trigger.schedule}_schedule.{name}", "must be in the years 1 to 9999"))
        if trigger.end_time and trigger.start_time and trigger.end_time < trigger.start_time:
            violations.append(FieldViolation(f"{field}.{trigger.schedule}_schedule.end_time", "must not be before start_time"))
        if trigger.schedule == "cron":
            zone, zone_violations = zone_of(trigger.time_zone, f"{field}.cron_schedule.time_zone")
            if zone is None:
                return None, violations + zone_violations
            schedule, schedule_violations = cron_schedule(
                trigger.cron, zone, trigger.start_time, trigger.end_time, anchor_us, min_interval_seconds,
                f"{field}.cron_schedule.cron",
            )
        elif trigger.schedule == "periodic":
            schedule, schedule_violations = periodic_schedule(
                trigger.interval_seconds, trigger.start_time, trigger.end_time, anchor_us, min_interval_seconds,
                f"{field}.periodic_schedule.interval_second",
            )
        elif not (trigger.upstream_recurring_run_ids or trigger.on_new_pipeline_version):
            return None, [FieldViolation(field, "set cron_schedule or periodic_schedule")]
        else:
            return None, violations
        return schedule, violations + schedule_violations

    def _schedule(self, recurring_run: RecurringRun) -> Schedule | None:
        """The stored trigger's schedule; None when it has none, or no valid one any more."""
        return self._stored_schedule(recurring_run.trigger, recurring_run.created_at)[0]

    def _stored_schedule(self, trigger: Trigger, created_at: int) -> tuple[Schedule | None, str]:
        """The stored trigger's schedule, and why it has none when it should. It was valid when
        stored, but the zone database may have changed since, or an older server stored it
        unchecked. The minimum interval is a rule for new definitions: raising the flag later
        does not stop stored schedules (1 s is the least the flag ever allowed)."""
        schedule, violations = self._parse_trigger(trigger, created_at, "trigger", min_interval_seconds=1)
        if violations:
            return None, "; ".join(f"{v.field}: {v.description}" for v in violations)
        return schedule, ""

    def _new_run(self, template: NewRun, context: MacroContext, scheduled_at: int) -> NewRun:
        return evolve(
            template,
            parameters={name: expand(value, context) for name, value in template.parameters.items()},
            run_id=context.run_id,
            scheduled_at=scheduled_at,
        )

    def _start_actor(self, recurring_run: RecurringRun, loaded: tuple[list[str], int] | None = None, fired: Sequence[int] = ()) -> None:
        """`loaded`: its unfinished runs and queue length, when already read from the store;
        `fired`: fires its previous actor had not handled yet."""
        if self._stopping:
            return
        actor = _Actor(self, recurring_run, self._schedule(recurring_run))
        if loaded is not None:
            actor.active, actor.queued = loaded
            actor.loaded = True
        actor.fired = list(fired)
        self._actors[recurring_run.recurring_run_id] = actor
        self._index(recurring_run.recurring_run_id, recurring_run.trigger, recurring_run.pipeline_id, recurring_run.pipeline_version_id)
        actor.start()

    def _actor_exited(self, actor: _Actor) -> None:
        if self._actors.get(actor.recurring_run.recurring_run_id) is actor:
            del self._actors[actor.recurring_run.recurring_run_id]

    def _actor_asleep(self, actor: _Actor, deadline: int | None) -> None:
        """An actor with nothing in hand ends; its recurring run sleeps until `deadline`."""
        rid = actor.recurring_run.recurring_run_id
        actor.asleep = True
        if self._actors.get(rid) is actor:
            del self._actors[rid]
            self._sleep_until(rid, deadline)

    def _paused(self, recurring_run_id: str) -> _Paused:
        return _Paused(self, recurring_run_id)

    async def _after_change(self, recurring_run: RecurringRun, spec: dict[str, Any] | None = None) -> RecurringRunView:
        view = await self._view(recurring_run, spec)
        self._snapshots.publish(recurring_run.recurring_run_id, evolve(view, pipeline_spec=None))
        return view

    async def _publish(self, recurring_run: RecurringRun) -> None:
        """Send watchers a snapshot; built only when someone watches."""
        if self._snapshots.watched(recurring_run.recurring_run_id):
            self._snapshots.publish(recurring_run.recurring_run_id, await self._view(recurring_run))

    async def _view(self, recurring_run: RecurringRun, spec: dict[str, Any] | None = None) -> RecurringRunView:
        actor = self._actors.get(recurring_run.recurring_run_id)
        if actor is not None and actor.failure:
            recurring_run = evolve(recurring_run, error=actor.failure)
        if actor is not None and actor.loaded:
            queued, active = actor.queued, len(actor.active)
        else:
            queued = await store.queued_count(self._db, recurring_run.recurring_run_id)
            active = len(await store.unfinished_run_ids(self._db, recurring_run.recurring_run_id))
        schedule, problem = None, ""
        if recurring_run.status == ENABLED:
            if actor is not None and actor.schedule is not None and actor.recurring_run.trigger == recurring_run.trigger:
                schedule = actor.schedule  # parsed once
            else:
                schedule, problem = self._stored_schedule(recurring_run.trigger, recurring_run.created_at)
        upcoming: list[int] = []
        try:
            upcoming = next_times(schedule, recurring_run.watermark) if schedule else []
        except Exception as error:  # noqa: BLE001 - one stored row must not break every list
            log.exception("next scheduled times failed", extra={"fields": {"recurring_run_id": recurring_run.recurring_run_id}})
            problem = f"the next scheduled times cannot be computed: {error}"
        if problem:
            recurring_run = evolve(recurring_run, error=problem)
        return RecurringRunView(recurring_run, upcoming, queued, active, spec)

    def pipeline_version_created(self, version: PipelineVersion) -> None:
        """Fire the recurring runs that follow the pipeline's latest version and ask for it."""
        for recurring_run_id in sorted(self._followers.get(version.pipeline_id, ())):
            self._fire(recurring_run_id, version.created_at)

    def _run_finished(self, run: Run) -> None:
        if run.state == SUCCEEDED and run.recurring_run_id:
            for downstream_id, upstream_ids in list(self._downstream.items()):
                if run.recurring_run_id in upstream_ids:
                    self._fire(downstream_id, run.finished_at)
        actor = self._actors.get(run.recurring_run_id)
        if actor is not None:
            actor.run_finished(run.run_id)
        elif run.recurring_run_id and not self._stopping and self._snapshots.watched(run.recurring_run_id):
            self._spawn(self._publish_stored(run.recurring_run_id))

    async def _publish_stored(self, recurring_run_id: str) -> None:
        try:
            await self._publish(await store.get(self._db, recurring_run_id))
        except DomainError:  # deleted meanwhile
            pass


class _Paused:
    """A change of a recurring run: its actor is stopped (after handling what is due), the
    body changes the store and sets `current` to the result (None: deleted), and on the way
    out an actor is started for `current` if it is enabled. A body that fails changes
    nothing: the actor goes on as before. One change of a recurring run at a time."""

    def __init__(self, manager: RecurringRuns, recurring_run_id: str) -> None:
        self._manager = manager
        self._id = recurring_run_id
        self._lock = manager._change_locks.setdefault(recurring_run_id, _ChangeLock())
        self.fired: list[int] = []  # fires the actor had not handled, for the actor started after
        self.current: RecurringRun | None = None

    async def __aenter__(self) -> _Paused:
        self._lock.users += 1
        await self._lock.acquire()
        try:
            self.current = await self._stop_actor()
        except BaseException:
            self._manager._recover(self._id)
            self._release()
            raise
        return self

    async def _stop_actor(self) -> RecurringRun:
        self._manager._forget(self._id)
        actor = self._manager._actors.get(self._id)
        if actor is None:
            return await store.get(self._manager._db, self._id)
        actor.urgent = True  # it is stopped after this step: its writes need not go back
        self._manager._db.expedite(actor)
        self._manager._ticks.expedite(actor)
        async with actor.lock:
            try:
                await actor.step()  # due ticks of the old definition are handled, not dropped
            except StoreFault:
                actor.urgent = False
                raise  # the change could not be stored either; the actor goes on
            except Exception:  # a broken actor can still be disabled, updated or deleted
                log.exception("recurring run actor failed before a change", extra={"fields": {"recurring_run_id": self._id}})
            actor.stop()
        await actor.finished()
        self._manager._forget(self._id)  # it may have gone to sleep before it was stopped
        self.fired += actor.fired
        return actor.recurring_run

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.current is not None and self.current.status == ENABLED:
                self._manager._start_actor(self.current, fired=self.fired)
            elif self.current is None or exc_info[0] is None:  # deleted or disabled: nothing fires it
                self._manager._unindex(self._id)
            else:  # the body failed: the recurring run goes on as it was
                self._manager._recover(self._id)
        finally:
            self._release()

    def _release(self) -> None:
        self._lock.release()
        self._lock.users -= 1
        if not self._lock.users:
            del self._manager._change_locks[self._id]


class _ChangeLock(asyncio.Lock):
    """A recurring run's change lock, counting the changes holding or awaiting it."""

    users = 0


class _Actor:
    def __init__(self, manager: RecurringRuns, recurring_run: RecurringRun, schedule: Schedule | None) -> None:
        self.manager = manager
        self.recurring_run = recurring_run
        self.schedule = schedule
        self.active: list[str] = []  # unfinished runs, oldest first
        self.queued = 0
        self.loaded = False
        self.lock = asyncio.Lock()  # one change at a time: the actor's steps and API calls
        self.wake = asyncio.Event()
        self.fired: list[int] = []  # times an upstream run or a new pipeline version fired it
        self.last_failure = ""  # why the latest tick that should have made a run did not
        self.failure = ""  # while its steps fail: why, shown as the recurring run's error
        self.failures = 0  # steps failed in a row
        self.urgent = False  # a request waits on this actor: its writes go in the requests' lane
        self.asleep = False  # it ended with nothing in hand: its recurring run sleeps in the heap
        self.stopping = False  # stopped by a change or the server's stop
        self._task: asyncio.Task[None] | None = None
        self._inline_spec: tuple[str, dict[str, Any]] | None = None  # (hash, spec)
        self._next: tuple[int, int | None] | None = None  # (after, the schedule's first tick after it)

    # -- supervision -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._task.add_done_callback(self._exited)

    def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()

    async def finished(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _exited(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # _loop handles Exception: never expected
            log.error("recurring run actor ended", exc_info=task.exception(),
                      extra={"fields": {"recurring_run_id": self.recurring_run.recurring_run_id}})
        self.manager._actor_exited(self)

    def fire(self, time: int) -> None:
        """A tick outside the schedule, handled by the loop like an on-time tick."""
        self.fired.append(time)
        self.wake.set()

    def run_finished(self, run_id: str) -> None:
        """A slot is free: wake up to start a queued tick; watchers see the new count."""
        if run_id in self.active:
            self.active.remove(run_id)
        self.wake.set()
        if self.manager._snapshots.watched(self.recurring_run.recurring_run_id):  # runs finish often
            asyncio.get_running_loop().create_task(self.manager._publish(self.recurring_run))

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Step, then wait for the next tick or a wake-up; until stopped, or until it has
        nothing in hand (no unfinished run, queued tick or fire): then it ends and its
        recurring run sleeps in the manager's heap. A step that fails (the store refuses
        writes, or a bug) never ends the actor: see `_failed`."""
        clock = self.manager._clock
        while True:
            try:
                async with self.lock:
                    # Loaded under the lock: a request that takes the lock loads the actor too
                    # and then changes its counters (a backfill's queue); a load of the loop's
                    # own finishing after that commit would count the queue twice.
                    if not self.loaded:
                        await self.load()
                    await self.step()
                    deadline = self.next_tick(self.recurring_run.watermark)
                    if not (self.active or self.queued or self.fired or self.failures or self.urgent):
                        self.manager._actor_asleep(self, deadline)
                        return
            except Exception as error:  # noqa: BLE001 - supervision
                await self._failed(error)
                continue
            if self.failures:
                await self._recovered()
            alarm = clock.wake_at(deadline, self.wake) if deadline is not None else None
            await self.wake.wait()
            self.wake.clear()
            if alarm is not None:
                alarm.cancel()

    async def load(self) -> None:
        """Its unfinished runs and queue length, from the store; after a failure, the
        recurring run too (a bug may have struck between a commit and its use in memory)."""
        db, recurring_run_id = self.manager._db, self.recurring_run.recurring_run_id
        if self.failures:
            self.recurring_run = await store.get(db, recurring_run_id)
        self.active = await store.unfinished_run_ids(db, recurring_run_id)
        self.queued = await store.queued_count(db, recurring_run_id)
        self.loaded = True

    async def _failed(self, error: Exception) -> None:
        """A step failed (its commits so far stand; the failed one changed nothing). Say so
        (a log line, the recurring run's `error`), wait 1, 2, 4 ... 60 s, and go on from what
        the store holds."""
        self.failures += 1
        delay = min(RETRY_DELAY_SECONDS * 2 ** (self.failures - 1), MAX_RETRY_DELAY_SECONDS)
        reason = error.reason if isinstance(error, StoreFault) else "an internal error (see the server log)"
        self.failure = f"ticks cannot be handled now: {reason}; the server tries again in {delay:g} s"
        self.loaded = False
        log.error(
            "recurring run actor step failed; retrying", exc_info=None if isinstance(error, StoreFault) else error,
            extra={"fields": {"recurring_run_id": self.recurring_run.recurring_run_id, "error": str(error),
                              "failures": self.failures, "retry_in_seconds": delay}},
        )
        await self._publish_quietly()
        await asyncio.sleep(delay)

    async def _recovered(self) -> None:
        log.info("recurring run actor recovered", extra={"fields": {"recurring_run_id": self.recurring_run.recurring_run_id}})
        self.failures, self.failure = 0, ""
        await self._publish_quietly()

    async def _publish_quietly(self) -> None:
        """Tell watchers; a failure to build the snapshot must not stop the actor."""
        try:
            await self.manager._publish(self.recurring_run)
        except Exception:  # noqa: BLE001 - logged; the next change publishes again
            log.exception("cannot publish a recurring run snapshot")

    async def step(self) -> None:
        """Handle every due tick, then start queued ticks while slots are free."""
        if not self.loaded:
            return
        now = self.manager._clock.now_us()
        while self.schedule is not None:
            first = self.next_tick(self.recurring_run.watermark)
            if first is None or first > now:
                break
            following = self.next_tick(first)
            if following is None or following > now:
                due = [first]  # on time, the common case: no walk over a range
            else:  # one more than a batch: whether the batch's last tick is the newest due
                due = ticks_between(self.schedule, self.recurring_run.watermark, now, CATCHUP_BATCH + 1)
            on_time = due[-1] if len(due) <= CATCHUP_BATCH else None
            await self._missed(due[:-1] if on_time is not None else due[:CATCHUP_BATCH])
            await self._drain()
            if on_time is not None:
                await self._on_time(on_time)
        while self.fired:
            # After the schedule's due ticks; a tick time of its own, as one run per tick.
            # Taken off the list once handled: a failed commit leaves it for the next step.
            await self._drain()
            await self._on_time(max(self.fired[0], self.recurring_run.watermark + 1))
            self.fired.pop(0)
        await self._drain()

    def next_tick(self, after: int) -> int | None:
        """The schedule's first tick after `after` (µs); the latest answer is remembered, as a
        step asks for the tick after its watermark, after that tick, and then its deadline."""
        if self.schedule is None:
            return None
        if self._next is None or self._next[0] != after:
            self._next = (after, self.schedule.next_after(after))
        return self._next[1]

    async def _missed(self, ticks: list[int]) -> None:
        if not ticks:
            return
        recurring_run = self.recurring_run
        first = recurring_run.ticks_handled + 1
        skipped: list[_Skip] = []
        queue: list[QueuedTick] = []
        start: list[tuple[int, int]] = []
        if recurring_run.no_catchup:
            skipped = [_Skip(tick, "no_catchup") for tick in ticks]
        else:
            # As queuing them and draining the queue at once would: the oldest start while
            # slots are free and nothing is queued before them, the rest wait in the queue.
            free = 0 if self.queued else max(0, recurring_run.max_concurrency - len(self.active))
            start = [(tick, first + offset) for offset, tick in enumerate(ticks[:free])]
            queue = [QueuedTick(tick, first + offset, "catchup") for offset, tick in enumerate(ticks) if offset >= free]
        await self._commit(watermark=ticks[-1], handled=len(ticks), start=start, queue=queue, skipped=skipped)

    async def _on_time(self, tick: int) -> None:
        recurring_run = self.recurring_run
        index = recurring_run.ticks_handled + 1
        policy = recurring_run.overlap_policy
        if not self.queued and len(self.active) < recurring_run.max_concurrency:
            await self._commit(watermark=tick, handled=1, start=[(tick, index)])
        elif policy == "SKIP":
            await self._commit(watermark=tick, handled=1, skipped=[_Skip(tick, "overlap_skip", "all concurrency slots were busy")])
        elif policy == "REPLACE":
            replaced = self.active[: len(self.active) - recurring_run.max_concurrency + 1]
            await self._commit(watermark=tick, handled=1, start=[(tick, index)])
            for run_id in replaced:
                self.active.remove(run_id)
                try:
                    await self.manager._runs.terminate(run_id)
                except DomainError:  # it has just finished
                    pass
        else:
            queue = [QueuedTick(tick, index, "overlap")]
            await self._commit(watermark=tick, handled=1, queue=queue, drop_overlap=policy == "BUFFER_ONE")

    async def _drain(self) -> None:
        while self.queued and len(self.active) < self.recurring_run.max_concurrency:
            free = self.recurring_run.max_concurrency - len(self.active)
            entries = await store.oldest_queued(self.manager._db, self.recurring_run.recurring_run_id, free)
            if not entries:
                self.queued = 0
                return
            await self._commit(start=[(e.scheduled_at, e.tick_index) for e in entries], dequeue=[e.scheduled_at for e in entries])

    async def start_now(self) -> Run:
        """TriggerRecurringRun: a run at this instant, if a slot is free."""
        recurring_run = self.recurring_run
        if len(self.active) >= recurring_run.max_concurrency:
            raise FailedPrecondition(
                f"all {recurring_run.max_concurrency} concurrency slots of recurring run {recurring_run.recurring_run_id!r} are busy"
            )
        started = await self._commit(handled=1, start=[(self.manager._clock.now_us(), recurring_run.ticks_handled + 1)])
        if not started:
            raise FailedPrecondition(self.last_failure)
        return started[0]

    async def _commit(
        self,
        *,
        watermark: int = 0,
        handled: int = 0,
        start: Sequence[tuple[int, int]] = (),
        queue: Sequence[QueuedTick] = (),
        dequeue: Sequence[int] = (),
        skipped: Sequence[_Skip] = (),
        drop_overlap: bool = False,
    ) -> list[Run]:
        """One transaction: the runs to start, queue changes, counters, skip events and the
        watermark."""
        manager, recurring_run = self.manager, self.recurring_run
        skips = list(skipped)
        prepared, error = [], ""
        for tick, index in start:
            context = MacroContext(tick, manager._clock.now_us(), index, new_id())
            template = run_template(
                recurring_run, await self._spec(), f"{recurring_run.display_name}-{to_datetime(tick):%Y%m%d%H%M%S}",
                recurring_run.recurring_run_id,
            )
            try:
                prepared.append(await manager._runs.prepare(manager._new_run(template, context, tick), "recurring_run"))
            except DependencyUnresolved as unresolved:
                skips.append(_Skip(tick, "dependency unresolved", unresolved.message))
                self.last_failure = unresolved.message
            except DomainError as failure:
                skips.append(_Skip(tick, "run creation failed", failure.message))
                error = self.last_failure = failure.message
        dropped: list[int] = []
        queued = 0
        decided = list(skips)  # before the job: a retried job (its batch rolled back) starts again

        async def job(conn: aiosqlite.Connection) -> None:
            nonlocal dropped, queued
            skips[:] = decided
            if drop_overlap:
                dropped = await store.drop_queued_within(conn, recurring_run.recurring_run_id, "overlap")
                skips.extend(_Skip(tick, "overlap_buffer_one", "a newer tick took its place in the queue") for tick in dropped)
            # A tick that already has a run or a queue entry is not queued twice.
            queued = await store.enqueue_within(conn, recurring_run.recurring_run_id, queue)
            await store.dequeue_within(conn, recurring_run.recurring_run_id, dequeue)
            updated = changed()
            await store.save_within(conn, updated, _TICK_FIELDS)
            now = manager._clock.now_us()
            manager._events.log.stage(*(event.tick_skipped(updated, s.tick, s.reason, s.detail, now) for s in skips))

        def changed() -> RecurringRun:
            totals = Counter(recurring_run.ticks_skipped)
            totals.update(s.reason for s in skips)
            return evolve(
                recurring_run,
                watermark=max(recurring_run.watermark, watermark),
                ticks_handled=recurring_run.ticks_handled + handled,
                runs_created=recurring_run.runs_created + len(prepared),
                ticks_skipped=dict(totals),
                error=error or recurring_run.error,
                revision=recurring_run.revision + 1,
            )

        if not (queue or dequeue or drop_overlap or self.urgent):  # the common case: shared with other actors' ticks
            updated = changed()
            await manager._ticks.commit(self, prepared, updated, skips)
        else:
            await manager._runs.insert_and_launch(prepared, job, background=not self.urgent, owner=self)
            updated = changed()  # with the ticks the job dropped
        self.recurring_run = updated
        self.active += [run.run_id for run, _ in prepared]
        self.queued += queued - len(dequeue) - len(dropped)
        await manager._publish(self.recurring_run)
        return [run for run, _ in prepared]

    async def _spec(self) -> dict[str, Any] | None:
        """The inline spec, read once: every tick's run shares it."""
        spec_hash = self.recurring_run.spec_hash
        if not spec_hash:
            return None
        if self._inline_spec is None or self._inline_spec[0] != spec_hash:
            self._inline_spec = (spec_hash, await self.manager._runs.spec_snapshot(spec_hash))
        return self._inline_spec[1]


@dataclasses.dataclass
class _TickCommit:
    """What one actor's step commits: runs to insert and start, its recurring run's new row
    (watermark, counters) and its skipped ticks."""

    actor: _Actor
    prepared: list[tuple[Run, dict[str, Any]]]
    updated: RecurringRun
    skips: list[_Skip]
    future: asyncio.Future[None]


class _TickWriter:
    """Commits the ticks of many actors in one write job: a burst of thousands of recurring
    runs due in the same second costs a few statement executions per job (runs inserted by one
    executemany, recurring runs updated by another) instead of a few per tick, each a hop to
    the writer thread. One job is in flight at a time; the commits that arrive meanwhile go in
    the next. If a job fails, its commits are retried one job each, so that one that cannot
    be stored (an archived experiment, a tick already run) fails alone. Exactly once is
    unchanged: a tick's run and its recurring run's watermark commit together, and the store
    refuses a second run for a (recurring run, tick)."""

    def __init__(self, manager: RecurringRuns) -> None:
        self._manager = manager
        self._waiting: dict[_Actor, _TickCommit] = {}  # an actor awaits its commit: one each
        self._writing = False

    async def commit(self, actor: _Actor, prepared: list[tuple[Run, dict[str, Any]]], updated: RecurringRun, skips: list[_Skip]) -> None:
        """Return once committed; raise what storing it alone raises."""
        part = _TickCommit(actor, prepared, updated, skips, asyncio.get_running_loop().create_future())
        self._waiting[actor] = part
        if not self._writing:
            self._writing = True
            self._manager._spawn(self._write())
        await part.future  # cancelled (the actor stopped) before its job ran: dropped

    def expedite(self, actor: _Actor) -> None:
        """A request waits for this actor: its commit, if not in a job yet, goes alone in the
        requests' lane."""
        part = self._waiting.pop(actor, None)
        if part is not None:
            self._manager._spawn(self._commit([part], background=False))

    async def _write(self) -> None:
        try:
            while self._waiting:
                parts = []
                for actor in list(itertools.islice(self._waiting, MAX_TICKS_PER_WRITE)):
                    part = self._waiting.pop(actor)
                    if not part.future.done():
                        parts.append(part)
                if parts:
                    await self._commit(parts)
        finally:
            self._writing = False

    async def _commit(self, parts: list[_TickCommit], background: bool = True) -> None:
        manager = self._manager
        prepared = [run for part in parts for run in part.prepared]

        async def job(conn: aiosqlite.Connection) -> None:
            if prepared:
                await manager._runs.insert_many_within(conn, prepared)
            await store.save_many_within(conn, [part.updated for part in parts], _TICK_FIELDS)
            now = manager._clock.now_us()
            manager._events.log.stage(*(event.tick_skipped(part.updated, s.tick, s.reason, s.detail, now) for part in parts for s in part.skips))

        try:
            await manager._db.write(job, background=background)
        except Exception as error:  # noqa: BLE001 - handed to the actors that wait
            if len(parts) > 1 and not isinstance(error, StoreFault):
                for part in parts:
                    await self._commit([part], background)
            else:
                for part in parts:
                    if not part.future.done():
                        part.future.set_exception(error)
            return
        try:
            manager._runs.launch(prepared)
        finally:  # committed: the actors go on whatever happens here
            for part in parts:
                if not part.future.done():
                    part.future.set_result(None)


@dataclasses.dataclass(frozen=True)
class _Skip:
    """A tick that creates no run."""

    tick: int
    reason: str  # counted in ticks_skipped
    detail: str = ""


def run_template(recurring_run: RecurringRun, spec: dict[str, Any] | None, display_name: str = "", recurring_run_id: str = "") -> NewRun:
    """The run a tick of a stored recurring run creates (its inline spec passed in), before
    macros; named `display_name` (default: the recurring run's) and marked as a run of
    `recurring_run_id` if given."""
    return NewRun(
        display_name=display_name or recurring_run.display_name,
        recurring_run_id=recurring_run_id,
        description=recurring_run.description,
        experiment_id=recurring_run.experiment_id,
        pipeline_id=recurring_run.pipeline_id,
        pipeline_version_id=recurring_run.pipeline_version_id,
        pipeline_spec=spec,
        parameters=recurring_run.parameters,
        pipeline_root=recurring_run.pipeline_root,
        service_account=recurring_run.service_account,
        parameters_from=recurring_run.parameters_from,
        artifacts=recurring_run.artifacts,
    )


def _dependencies(trigger: Trigger, parameters_from: dict[str, dict[str, Any]]) -> set[str]:
    """What a recurring run waits for: its upstream triggers and its required parameters_from
    (an optional one never blocks a tick, so it cannot close a cycle)."""
    required = {ref["recurring_run_id"] for ref in parameters_from.values() if not ref.get("optional")}
    return set(trigger.upstream_recurring_run_ids) | required


def _own_reference_violations(own: dict[str, dict[str, Any]], artifacts: list[dict[str, str]], field: str) -> list[FieldViolation]:
    """A parameter from the recurring run's own previous run (incremental training) must be
    optional, since its first run has no previous run, and name one of its own selectors."""
    violations = []
    exposed = [selector["name"] for selector in artifacts]
    for name, ref in sorted(own.items()):
        if not ref.get("optional"):
            violations.append(FieldViolation(
                f"{field}[{name}].optional", "must be true for a parameter from this recurring run's own previous run: its first run has none",
            ))
        if ref["output_artifact"] not in exposed:
            violations.append(FieldViolation(
                f"{field}[{name}].output_artifact",
                f"this recurring run exposes no artifact {ref['output_artifact']!r} (it exposes {', '.join(map(repr, exposed)) or 'none'})",
            ))
    return violations


def _cycle_through(start: str, edges: dict[str, set[str]]) -> list[str]:
    """A path start -> ... -> start along `edges`, or [] when there is none."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for upstream in sorted(edges.get(node, ())):
            if upstream == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if upstream not in parents:
                parents[upstream] = node
                frontier.append(upstream)
    return []
