"""The execution cache, kept in the store: what the orchestrator reuses for a container task
whose cache key matches an earlier SUCCEEDED execution (KFP caching, see
`kfpgrpc.executor.orchestrator`). Entries go with their run: deleting a run (by the user or the
TTL) forgets them, so a cached execution never points at deleted artifacts that way."""

from __future__ import annotations

from kfpgrpc.clock import Clock
from kfpgrpc.core.runs import task_result
from kfpgrpc.executor import CachedExecution, TaskResult
from kfpgrpc.store import runs as store
from kfpgrpc.store.database import Database


class StoredExecutionCache:
    """`kfpgrpc.executor.ExecutionCache` over the `execution_cache` table."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def lookup(self, pipeline_name: str, key: str) -> CachedExecution | None:
        task = await store.cached_execution(self._db, pipeline_name, key)
        if task is None:
            return None
        return CachedExecution(task.run_id, task.task_id, task_result(task))

    async def record(self, pipeline_name: str, key: str, run_id: str, task_id: str, result: TaskResult) -> None:
        await store.record_cached_execution(self._db, pipeline_name, key, self._clock.now_us(), run_id, task_id)
