"""Retention: events older than the event retention are pruned, and finished runs older than
the run TTL are deleted with their logs and artifacts (each with a RUN_DELETED event), except
what a recurring run depends on: the latest SUCCEEDED run of every recurring run that a
recurring run references (parameters_from resolves to its artifacts)."""

from __future__ import annotations

import asyncio
import logging

from kfpgrpc.clock import MICROS_PER_SECOND, Clock
from kfpgrpc.core.runs import Runs
from kfpgrpc.errors import DomainError, StoreFault
from kfpgrpc.store import events as event_store
from kfpgrpc.store import recurring_runs as recurring_store
from kfpgrpc.store import runs as run_store
from kfpgrpc.store.database import Database

log = logging.getLogger(__name__)

TTL_BATCH = 200


class Housekeeping:
    """`event_retention_us` and `run_ttl_us`: 0 keeps forever."""

    def __init__(self, db: Database, clock: Clock, runs: Runs, event_retention_us: int, run_ttl_us: int) -> None:
        self._db = db
        self._clock = clock
        self._runs = runs
        self._event_retention_us = event_retention_us
        self._run_ttl_us = run_ttl_us
        self._task: asyncio.Task[None] | None = None
        # Sweeps often enough that nothing outlives its limit by more than a tenth of it.
        limits = [limit for limit in (event_retention_us, run_ttl_us) if limit]
        self._interval_us = min(max(min(limits) // 10, MICROS_PER_SECOND), 60 * MICROS_PER_SECOND) if limits else 0

    def start(self) -> None:
        if self._interval_us:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        due = asyncio.Event()
        while True:
            try:
                await self.sweep()
            except StoreFault as fault:  # logged by the store already; no traceback to add
                log.warning("housekeeping sweep failed; retrying next time", extra={"fields": {"error": fault.reason}})
            except Exception:  # the store is closing, or a bug: try again next time
                log.exception("housekeeping sweep failed")
            alarm = self._clock.wake_at(self._clock.now_us() + self._interval_us, due)
            try:
                await due.wait()
            finally:
                alarm.cancel()
            due.clear()

    async def sweep(self) -> None:
        now = self._clock.now_us()
        if self._event_retention_us:
            await event_store.prune(self._db, now - self._event_retention_us)
        if self._run_ttl_us:
            while True:
                # Read per batch: a reference or a newer success may appear meanwhile.
                depended_on = await run_store.latest_succeeded_ids(self._db, await recurring_store.referenced_ids(self._db))
                expired = await run_store.finished_before(self._db, now - self._run_ttl_us, TTL_BATCH, keep=depended_on)
                deleted = 0
                for run_id in expired:
                    try:
                        await self._runs.delete(run_id, "ttl")
                        deleted += 1
                    except DomainError:  # deleted or being retried meanwhile
                        pass
                if len(expired) < TTL_BATCH or not deleted:
                    return
