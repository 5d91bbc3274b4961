"""Runs: creation rules, the run state machine, execution through the orchestrator, crash resume,
watching and log streaming.

Every run that is not finished is *active*: it has an `_Execution` in memory that owns its
current state. Each change is committed first, then applied in memory and published to the
run's watchers, so a watcher never sees a state the store could lose. Changes of one run are
serialised by its lock, so watchers see them in commit order.

Server shutdown stops executions without recording anything: their task processes are killed
and the runs stay RUNNING in the store, to be resumed by the next start, exactly like after a
crash. Resuming reuses the results of succeeded tasks and runs the others again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from kfpgrpc.bounds import (
    LOG_BATCH_BYTES,
    LOG_LINE_OVERHEAD,
    MAX_PATH_BYTES,
    cut_error,
    summary,
    utf8_size,
)
from kfpgrpc.clock import Clock
from kfpgrpc.confined import UnsafePath, inside, remove_below
from kfpgrpc.core import events as event
from kfpgrpc.core.broadcast import Broadcast
from kfpgrpc.core.events import Events
from kfpgrpc.core.parameters import resolve_parameters
from kfpgrpc.core.specs import SpecSnapshots, share_defaults
from kfpgrpc.core.validation import (
    check,
    description_violations,
    id_violations,
    name_violations,
    new_id,
)
from kfpgrpc.domain import (
    ARCHIVED,
    AVAILABLE,
    CANCELED,
    CANCELING,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    LogLine,
    Page,
    PipelineVersion,
    Run,
    RunView,
    StateChange,
    TaskDetail,
    evolve,
)
from kfpgrpc.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from kfpgrpc.executor import (
    ArtifactOutput,
    Orchestrator,
    RunContext,
    RunOutcome,
    TaskResult,
    TaskState,
    TaskUpdate,
    object_store,
)
from kfpgrpc.pipeline_spec import (
    PipelineSpecInfo,
    platform_spec_of,
    task_names,
    validate_pipeline_spec,
)
from kfpgrpc.selectors import SelectorError, expose, parse_selector
from kfpgrpc.store import experiments as experiment_store
from kfpgrpc.store import pipelines as pipeline_store
from kfpgrpc.store import recurring_runs as recurring_store
from kfpgrpc.store import runs as store
from kfpgrpc.store.database import Database, WriteJob
from kfpgrpc.store.listing import ListRequest, build_query
from kfpgrpc.store.run_cache import FinishedRuns

log = logging.getLogger(__name__)

LOG_PAGE_LINES = 500
MAX_TAIL_LINES = 100_000  # StreamRunLogsRequest.tail_lines
MAX_SELECTORS = 100  # artifact selectors of a run or a recurring run
_SPEC_CACHE_SIZE = 128
_V = TypeVar("_V")


async def _per_spec(cache: OrderedDict[str, _V], key: str, compute: Callable[[], Awaitable[_V]]) -> _V:
    """`cache[key]`, computed by `compute` (which may raise: nothing is kept then) the first
    time; the _SPEC_CACHE_SIZE most recently used are kept."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = await compute()
        if len(cache) > _SPEC_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


class DependencyUnresolved(FailedPrecondition):
    """A parameter from another recurring run's artifact has no value yet."""


@dataclasses.dataclass(frozen=True)
class NewRun:
    """A CreateRun request, in domain terms."""

    display_name: str
    description: str = ""
    experiment_id: str = ""
    pipeline_id: str = ""  # with pipeline_version_id (empty = latest): run a stored version
    pipeline_version_id: str = ""
    pipeline_spec: dict[str, Any] | None = None  # or run this inline spec
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    # {parameter: {recurring_run_id, output_artifact, optional}}: a value from another
    # recurring run's latest successful run
    parameters_from: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    pipeline_root: str = ""
    service_account: str = ""
    artifacts: list[dict[str, str]] = dataclasses.field(default_factory=list)
    # Set for the runs of a recurring run:
    run_id: str = ""  # chosen in advance ([[RunUUID]] names it)
    recurring_run_id: str = ""
    scheduled_at: int = 0  # the tick; 0 = now


@dataclasses.dataclass
class _Execution:
    run: Run
    tasks: dict[str, TaskDetail]
    document: dict[str, Any]  # the stored spec snapshot, maybe wrapped with a platform spec
    line_numbers: dict[str, int]
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    terminate_requested: bool = False
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def view(self, with_spec: bool = False) -> RunView:
        tasks = sorted(self.tasks.values(), key=lambda t: (t.create_time, t.task_id))
        return RunView(self.run, tasks, self.document if with_spec and self.run.inline else None)


def _resolved_root(root: str) -> str:
    """A pipeline root as compared and used: a directory with its links resolved, a URL as is."""
    return root.rstrip("/") if object_store.is_url(root) else os.path.realpath(root)


class Runs:
    """The run manager (see the module docstring).

    `artifact_root` holds the artifacts of runs without a pipeline_root; a run's pipeline_root
    must be inside it or one of `allowed_pipeline_roots`: absolute directories (links resolved)
    or object-store URLs (`executor.object_store`; only where the launcher takes them).
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        orchestrator: Orchestrator,
        artifact_root: str | Path,
        default_experiment_id: Callable[[], str],
        max_executing: int = 8,
        allowed_pipeline_roots: Sequence[str | Path] = (),
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._orchestrator = orchestrator
        # Resolved once, at start: what a root's links point to later does not widen them.
        self._artifact_root = _resolved_root(str(artifact_root))
        self._allowed_roots = list(dict.fromkeys([self._artifact_root, *(_resolved_root(str(root)) for root in allowed_pipeline_roots)]))
        self._default_experiment_id = default_experiment_id
        self._active: dict[str, _Execution] = {}
        self._claimed: set[str] = set()  # runs a Retry or Delete is working on
        self._workers: set[asyncio.Task[None]] = set()
        # Admission: at most `max_executing` runs are handed to the orchestrator at once; the others
        # wait, PENDING, in creation order. Without it a burst of runs would all commit RUNNING
        # and their task reports, flooding the single writer that every other write waits for.
        self._max_executing = max_executing
        self._executing = 0
        self._admission: deque[_Execution] = deque()
        self._spec_infos: OrderedDict[str, PipelineSpecInfo] = OrderedDict()
        self._unsupported_by_spec: OrderedDict[str, list[str]] = OrderedDict()
        self._specs = SpecSnapshots(db)
        self._finished = FinishedRuns(db)  # GetRun of a finished run: no store read
        self._versions: OrderedDict[str, tuple[PipelineVersion, str]] = OrderedDict()
        self._latest_versions: dict[str, str] = {}  # pipeline id -> its latest version's id
        # Bumped when versions are created or deleted: a read that overlapped one is not cached.
        self._version_changes = 0
        self._snapshots: Broadcast[RunView] = Broadcast()
        self._log_appended: Broadcast[bool] = Broadcast(capacity=1)
        self._stopping = False
        self.finished_listeners: list[Callable[[Run], None]] = []  # told of every run that ends

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the runs a previous server process left unfinished (the launcher has killed the
        task processes it left running, see Executor.start)."""
        await self._finished.install()
        async for stored in store.unfinished_runs(self._db):
            run, document = await self._with_snapshot(stored)
            tasks = (await store.tasks_of(self._db, [run.run_id]))[run.run_id]
            execution = _Execution(
                run, {t.task_id: t for t in tasks}, document, await store.last_line_numbers(self._db, run.run_id)
            )
            log.info("resuming run", extra={"fields": {"run_id": run.run_id, "state": run.state}})
            execution.terminate_requested = run.state == CANCELING
            self._launch(execution)

    async def stop(self) -> None:
        """Stop every execution without recording it (see the module docstring); end streams."""
        self._stopping = True
        self._orchestrator.stop_now()
        self._snapshots.close()
        self._log_appended.close()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # -- requests ----------------------------------------------------------------------------

    async def create(self, new: NewRun) -> RunView:
        run, document = await self.prepare(new)
        await self.insert_and_launch([(run, document)])
        return RunView(run, [], document if run.inline else None)

    async def insert_and_launch(
        self,
        prepared: list[tuple[Run, dict[str, Any]]],
        also: WriteJob[None] | None = None,
        *,
        background: bool = False,
        owner: object = None,
    ) -> None:
        """Store prepared runs (and run `also` in the same transaction), then start them.
        `background` and `owner`: see Database.write."""
        created = self._events.job(*(event.run_state_changed(run, "", run.created_at) for run, _ in prepared))

        async def job(conn: aiosqlite.Connection) -> None:
            await created(conn)
            if also is not None:
                await also(conn)

        await store.insert_runs(self._db, prepared, job, background=background, owner=owner)
        self.launch(prepared)

    async def insert_many_within(self, conn: aiosqlite.Connection, prepared: Sequence[tuple[Run, dict[str, Any]]]) -> None:
        """Inside a write job: store prepared runs (a few statement executions for all of them)
        and stage their creation events; `launch` them once the job has committed. Raises as
        store.insert_many_runs_within."""
        await store.insert_many_runs_within(conn, prepared)
        self._events.log.stage(*(event.run_state_changed(run, "", run.created_at) for run, _ in prepared))

    def launch(self, prepared: Sequence[tuple[Run, dict[str, Any]]]) -> None:
        """Start runs stored by `insert_many_within` (committed)."""
        for run, document in prepared:
            self._launch(_Execution(run, {}, document, {}))

    async def prepare(self, new: NewRun, field: str = "run", resolve: bool = True) -> tuple[Run, dict[str, Any]]:
        """Check a new run and resolve what it will execute; nothing is stored yet. Without
        `resolve`, parameters_from is checked but not resolved (a recurring run's definition)."""
        violations = name_violations(new.display_name, f"{field}.display_name")
        violations += description_violations(new.description, f"{field}.description")
        violations += artifact_selector_violations(new.artifacts, f"{field}.artifacts")
        violations += name_violations(new.service_account, f"{field}.service_account", required=False)
        pipeline_root, root_violations = self._pipeline_root(new.pipeline_root, f"{field}.runtime_config.pipeline_root")
        violations += root_violations
        violations += _parameters_from_violations(new, f"{field}.runtime_config")
        if new.pipeline_spec is None and not new.pipeline_id:
            violations.append(
                FieldViolation(
                    f"{field}.pipeline_version_reference.pipeline_id",
                    "is required: give pipeline_version_reference or an inline pipeline_spec",
                )
            )
        check(violations)
        if new.pipeline_spec is not None:
            document, pipeline_id, version_id = new.pipeline_spec, "", ""
            hash_ = await asyncio.to_thread(store.spec_hash, document)
            info = await self._spec_info(document, f"{field}.pipeline_spec", hash_)
        else:
            version, hash_ = await self._version(new.pipeline_id, new.pipeline_version_id, field)
            document, pipeline_id, version_id = version.pipeline_spec, version.pipeline_id, version.pipeline_version_id
            info = await self._spec_info(document, "pipeline_spec", hash_)
        document = self._specs.share(hash_, document)  # runs of one spec hold one copy
        from_field = f"{field}.runtime_config.parameters_from"
        if resolve:
            dependencies = await self._dependency_values(new.parameters_from, from_field)
        else:
            await self.check_dependencies(new.parameters_from, from_field)
            dependencies = {name: "" for name in new.parameters_from}  # a URI is a string
        given = {**new.parameters, **dependencies}
        parameters = resolve_parameters(info.inputs, given, f"{field}.runtime_config.parameters")
        if unsupported := await self._unsupported(hash_, info, document):
            raise FailedPrecondition("this server cannot run this pipeline: " + "; ".join(unsupported))
        now = self._clock.now_us()
        run = Run(
            run_id=new.run_id or new_id(),
            experiment_id=new.experiment_id or self._default_experiment_id(),
            display_name=new.display_name,
            description=new.description,
            storage_state=AVAILABLE,
            pipeline_id=pipeline_id,
            pipeline_version_id=version_id,
            spec_hash=hash_,
            parameters=parameters,
            pipeline_root=pipeline_root,
            service_account=new.service_account,
            created_at=now,
            scheduled_at=new.scheduled_at or now,
            finished_at=0,
            state=PENDING,
            error="",
            recurring_run_id=new.recurring_run_id,
            state_history=[StateChange(PENDING, now)],
            artifacts=list(new.artifacts),
            output_artifacts=[],
            revision=1,
        )
        return run, document

    async def check_dependencies(self, parameters_from: dict[str, dict[str, Any]], field: str) -> None:
        """Each referenced recurring run exists and exposes the named artifact."""
        for name, ref in sorted(parameters_from.items()):
            ref_field = f"{field}[{name}]"
            try:
                upstream = await recurring_store.get(self._db, ref["recurring_run_id"])
            except NotFound:
                raise InvalidArgument.field(f"{ref_field}.recurring_run_id", f"no recurring run {ref['recurring_run_id']!r}") from None
            exposed = [selector["name"] for selector in upstream.artifacts]
            if ref["output_artifact"] not in exposed:
                raise InvalidArgument.field(
                    f"{ref_field}.output_artifact",
                    f"recurring run {upstream.recurring_run_id!r} exposes no artifact {ref['output_artifact']!r}"
                    f" (it exposes {', '.join(map(repr, exposed)) or 'none'})",
                )

    async def _dependency_values(self, parameters_from: dict[str, dict[str, Any]], field: str) -> dict[str, str]:
        """The URIs `parameters_from` resolves to now; optional ones that do not resolve are left out."""
        await self.check_dependencies(parameters_from, field)
        values = {}
        for name, ref in sorted(parameters_from.items()):
            latest = await store.latest_succeeded(self._db, ref["recurring_run_id"])
            uri = next(
                (a["uri"] for a in (latest.output_artifacts if latest else []) if a["name"] == ref["output_artifact"] and a["uri"]),
                "",
            )
            if uri:
                values[name] = uri
            elif not ref.get("optional"):
                why = "has no succeeded run" if latest is None else f"exposed no {ref['output_artifact']!r} in its latest succeeded run {latest.run_id!r}"
                raise DependencyUnresolved(f"{field}[{name}]: recurring run {ref['recurring_run_id']!r} {why}")
        return values

    def version_created(self, version: PipelineVersion) -> None:
        """Its pipeline has a new latest version."""
        self._version_changes += 1
        self._latest_versions.pop(version.pipeline_id, None)

    def pipeline_deleted(self, pipeline_id: str, pipeline_version_id: str) -> None:
        """A version (an empty `pipeline_version_id`: every version of the pipeline) was
        deleted: runs of it are refused from now on (NOT_FOUND), and its pipeline's latest
        version is read again."""
        self._version_changes += 1
        self._latest_versions.pop(pipeline_id, None)
        for version_id, (version, _) in list(self._versions.items()):
            if version_id == pipeline_version_id or (not pipeline_version_id and version.pipeline_id == pipeline_id):
                del self._versions[version_id]

    async def _version(self, pipeline_id: str, pipeline_version_id: str, field: str) -> tuple[PipelineVersion, str]:
        """The version to run and its spec hash. Versions never change, so they are cached
        with their parsed specs until deleted, as is each pipeline's latest version until a
        version is created or deleted (see `version_created`, `pipeline_deleted`): every tick
        of a recurring run shares one and reads nothing."""
        changes = self._version_changes
        if not pipeline_version_id:
            pipeline_version_id = self._latest_versions.get(pipeline_id, "")
            if not pipeline_version_id:
                pipeline_version_id = await pipeline_store.latest_version_id(self._db, pipeline_id) or ""
                if not pipeline_version_id:
                    await pipeline_store.get_pipeline(self._db, pipeline_id)  # NOT_FOUND for a bad id
                    raise FailedPrecondition(f"pipeline {pipeline_id!r} has no versions; upload one first")
                if changes == self._version_changes:  # else it may not be the latest any more
                    if len(self._latest_versions) >= _SPEC_CACHE_SIZE:
                        self._latest_versions.clear()
                    self._latest_versions[pipeline_id] = pipeline_version_id
        cached = self._versions.get(pipeline_version_id)
        if cached is None:
            owner = await pipeline_store.pipeline_of_version(self._db, pipeline_version_id)
            if owner is None:
                raise NotFound("pipeline version", "pipeline_version_id", pipeline_version_id)
            self._check_owner(owner, pipeline_id, pipeline_version_id, field)
            version = await pipeline_store.get_version(self._db, pipeline_version_id)
            cached = (version, await asyncio.to_thread(store.spec_hash, version.pipeline_spec))
            if changes == self._version_changes:  # else it may be deleted already: not kept
                self._versions[pipeline_version_id] = cached
                if len(self._versions) > _SPEC_CACHE_SIZE:
                    self._versions.popitem(last=False)
        else:
            self._check_owner(cached[0].pipeline_id, pipeline_id, pipeline_version_id, field)
            self._versions.move_to_end(pipeline_version_id)
        return cached

    @staticmethod
    def _check_owner(owner: str, pipeline_id: str, pipeline_version_id: str, field: str) -> None:
        if owner != pipeline_id:
            raise InvalidArgument.field(
                f"{field}.pipeline_version_reference.pipeline_version_id",
                f"version {pipeline_version_id!r} belongs to another pipeline",
            )

    async def spec_snapshot(self, spec_hash: str) -> dict[str, Any]:
        """The stored spec snapshot `spec_hash`, decoded once while runs hold it."""
        return await self._specs.get(spec_hash)

    async def _with_snapshot(self, run: Run) -> tuple[Run, dict[str, Any]]:
        """A run read from the store, with its parameters' default values shared with its spec,
        and its spec snapshot."""
        document = await self._specs.get(run.spec_hash)
        try:
            inputs = (await self._spec_info(document, "pipeline_spec", run.spec_hash)).inputs
        except InvalidArgument:  # the run fails when it executes, saying why
            return run, document
        return evolve(run, parameters=share_defaults(run.parameters, inputs)), document

    async def _unsupported(self, key: str, info: PipelineSpecInfo, document: dict[str, Any]) -> list[str]:
        """What of the spec whose hash is `key` this server cannot run (see
        Orchestrator.unsupported); a walk over the whole spec, so cached like `_spec_info`:
        every tick of a recurring run asks it again."""
        return await _per_spec(self._unsupported_by_spec, key, lambda: self._orchestrator.unsupported(info.spec, platform_spec_of(document)))

    async def _spec_info(self, document: dict[str, Any], field: str, key: str) -> PipelineSpecInfo:
        """Validate a spec whose hash is `key`; what a valid spec yields is cached, as the same
        specs come back for every run of a version or of a recurring run. Validation runs in a
        worker thread: a spec of megabytes takes seconds."""
        return await _per_spec(self._spec_infos, key, lambda: asyncio.to_thread(validate_pipeline_spec, document, field))

    async def get(self, run_id: str, with_spec: bool = True) -> RunView:
        check(id_violations(run_id, "run_id"))
        execution = self._active.get(run_id)
        if execution is not None:
            return execution.view(with_spec)
        run, tasks = await self._finished.get(run_id)
        spec = await self._specs.get(run.spec_hash) if with_spec and run.inline else None
        return RunView(run, tasks, spec)

    async def list(self, experiment_id: str, request: ListRequest) -> Page[RunView]:
        scope = [("experiment_id", experiment_id)] if experiment_id else []
        page = await store.list_runs(self._db, build_query(store.RUNS, request, scope))
        # Snapshot the active runs first: one may finish while the others' tasks are read.
        active = {r.run_id: self._active[r.run_id].view() for r in page.items if r.run_id in self._active}
        tasks = await store.tasks_of(self._db, [r.run_id for r in page.items if r.run_id not in active])
        views = [active.get(r.run_id) or RunView(r, tasks[r.run_id]) for r in page.items]
        return evolve(page, items=views)

    async def set_storage_state(self, run_id: str, archived: bool) -> None:
        """ArchiveRun / UnarchiveRun. FailedPrecondition: unarchiving a run of an archived
        experiment (as KFP: unarchive the experiment first)."""
        check(id_violations(run_id, "run_id"))
        storage_state = ARCHIVED if archived else AVAILABLE
        execution = self._active.get(run_id)
        if not archived:
            run = execution.run if execution is not None else await store.get_run(self._db, run_id)
            async with self._db.reader() as conn:
                await experiment_store.check_available_within(conn, run.experiment_id, f"unarchiving run {run_id!r}")
        if execution is not None:
            await self._change(execution, storage_state=storage_state)
        else:
            await store.set_storage_state(self._db, run_id, storage_state)

    async def experiment_archived(self, experiment_id: str) -> None:
        """The store archived the experiment's runs; bring active runs in memory up to date."""
        for execution in self._active.values():
            if execution.run.experiment_id == experiment_id:
                execution.run = evolve(execution.run, storage_state=ARCHIVED)

    async def terminate(self, run_id: str) -> None:
        check(id_violations(run_id, "run_id"))
        execution = self._active.get(run_id)
        if execution is None:
            run = await store.get_run(self._db, run_id)
            raise FailedPrecondition(f"run {run_id!r} is {run.state}; only an unfinished run can be terminated")
        if execution.terminate_requested:
            return
        execution.terminate_requested = True
        try:
            await self._change(execution, unless_finished=True, state=CANCELING)
        except BaseException:
            execution.terminate_requested = False  # not recorded: a retry must do it all again
            raise
        if execution in self._admission:  # never started: it ends at once, without a slot
            self._admission.remove(execution)
            self._start(execution)
        else:
            # Killing takes up to the grace period; the RPC returns once CANCELING is committed.
            self._spawn(self._orchestrator.terminate(run_id))

    async def retry(self, run_id: str) -> None:
        """Run a FAILED or CANCELED run again, reusing what succeeded. FailedPrecondition for
        other states, and in an archived experiment (which holds no active work)."""
        check(id_violations(run_id, "run_id"))
        with self._claim(run_id):
            if run_id in self._active:
                state = self._active[run_id].run.state
                raise FailedPrecondition(f"run {run_id!r} is {state}; only FAILED or CANCELED runs can be retried")
            run, document = await self._with_snapshot(await store.get_run(self._db, run_id))
            if run.state not in (FAILED, CANCELED):
                raise FailedPrecondition(f"run {run_id!r} is {run.state}; only FAILED or CANCELED runs can be retried")
            self._root_of(run)  # FAILED_PRECONDITION if its root is no longer allowed
            tasks = (await store.tasks_of(self._db, [run_id]))[run_id]
            now = self._clock.now_us()
            retried = evolve(
                run,
                state=PENDING,
                error="",
                finished_at=0,
                state_history=[*run.state_history, StateChange(PENDING, now)],
                output_artifacts=[],
                revision=run.revision + 1,
            )
            state_changed = self._events.job(event.run_state_changed(retried, run.state, now))

            async def job(conn: aiosqlite.Connection) -> None:
                await experiment_store.check_available_within(conn, run.experiment_id, f"retrying run {run_id!r}")
                await state_changed(conn)

            await store.save_run(
                self._db, retried, ("state", "error", "finished_at", "state_history", "output_artifacts", "revision"), also=job,
            )
            line_numbers = await store.last_line_numbers(self._db, run_id)
            self._launch(_Execution(retried, {t.task_id: t for t in tasks}, document, line_numbers))

    async def delete(self, run_id: str, reason: str = "user") -> None:
        """Terminate the run if it is executing, then delete it with its logs and artifacts.
        `reason` goes into the RUN_DELETED event: "user", "ttl" or "recurring run deleted"."""
        check(id_violations(run_id, "run_id"))
        with self._claim(run_id):
            execution = self._active.get(run_id)
            if execution is not None:
                if not execution.terminate_requested:
                    await self.terminate(run_id)
                await execution.done.wait()
            run = await store.get_run(self._db, run_id)
            await store.delete_run(self._db, run_id, self._events.job(event.run_deleted(run, reason, self._clock.now_us())))
        try:
            root = self._root_of(run)
            if object_store.is_url(root):
                await asyncio.to_thread(object_store.remove, object_store.join(root, run_id))
            else:
                await asyncio.to_thread(remove_below, root, run_id)
        except (DomainError, UnsafePath, OSError, object_store.ObjectStoreError) as error:  # the run is gone; its files stay
            log.warning("run artifacts not deleted", extra={"fields": {"run_id": run_id, "error": str(error)}})

    async def watch(self, run_id: str) -> AsyncGenerator[RunView, None]:
        """The current snapshot, then one per change, until a terminal state."""
        with self._snapshots.subscribe(run_id) as subscription:
            view = await self.get(run_id, with_spec=False)
            yield view
            revision = view.run.revision
            while not view.run.finished:
                received = await subscription.next()
                if received is None:
                    raise Unavailable("the server is shutting down; watch again to resume")
                if received.run.revision > revision:
                    view, revision = received, received.run.revision
                    yield view

    async def logs(
        self, run_id: str, task_name: str, follow: bool,
        after_line_number: int = 0, tail_lines: int = 0, before_line_number: int = 0,
    ) -> AsyncGenerator[list[LogLine], None]:
        """Batches of log lines in capture order; with `follow`, until the run has finished.
        Per selected task, only the lines after `after_line_number`, or (`tail_lines`,
        1..MAX_TAIL_LINES) its last `tail_lines` lines, before `before_line_number` when set
        (not with `follow`). The arguments (InvalidArgument naming the field), the run and
        `task_name` (a task id or display name; NotFound) are checked before this returns, so
        that a front end answers those before its stream starts; the stream ends with
        Unavailable at shutdown."""
        if after_line_number < 0:
            raise InvalidArgument.field("after_line_number", "must not be negative")
        if not 0 <= tail_lines <= MAX_TAIL_LINES:
            raise InvalidArgument.field("tail_lines", f"must be 1 to {MAX_TAIL_LINES:,} (0 = every line)")
        if tail_lines and after_line_number:
            raise InvalidArgument.field("tail_lines", "cannot be combined with after_line_number (set one of them)")
        if before_line_number < 0:
            raise InvalidArgument.field("before_line_number", "must not be negative")
        if before_line_number and not tail_lines:
            raise InvalidArgument.field("before_line_number", "needs tail_lines (how many lines before it)")
        if before_line_number and follow:
            raise InvalidArgument.field("before_line_number", "cannot be combined with follow: those lines are stored already")
        view = await self.get(run_id, with_spec=False)
        task_ids = None
        if task_name:
            document = await self._specs.get(view.run.spec_hash)
            spec = (await self._spec_info(document, "pipeline_spec", view.run.spec_hash)).spec
            known = {(t.task_id, t.display_name) for t in view.tasks} | set(task_names(spec))
            # A task id names one task; a display name may be shared by tasks of sub-pipelines.
            task_ids = [task_name] if any(task_id == task_name for task_id, _ in known) else sorted(
                task_id for task_id, display_name in known if display_name == task_name
            )
            if not task_ids:
                raise NotFound("task", "task_name", task_name)
        range_ = store.LogRange()
        if after_line_number or tail_lines:
            range_ = await store.log_range(self._db, run_id, task_ids, after_line_number, tail_lines, before_line_number)
        return self._follow_logs(run_id, task_ids, follow, range_)

    async def _follow_logs(
        self, run_id: str, task_ids: list[str] | None, follow: bool, range_: store.LogRange
    ) -> AsyncGenerator[list[LogLine], None]:
        after = range_.after_sequence
        with self._log_appended.subscribe(run_id) as subscription:
            while True:
                finished = run_id not in self._active  # checked first: no line can follow it
                lines = await store.log_lines_after(self._db, run_id, after, task_ids, LOG_PAGE_LINES, range_)
                if lines:
                    for batch in _batches(lines):
                        yield batch
                    after = lines[-1].sequence
                    if len(lines) == LOG_PAGE_LINES:
                        continue
                if not follow or finished:
                    return
                if await subscription.next() is None:
                    raise Unavailable("the server is shutting down; stream the logs again to resume")

    # -- execution ---------------------------------------------------------------------------

    def _launch(self, execution: _Execution) -> None:
        if self._stopping:  # stays unfinished in the store; the next start resumes it
            return
        self._active[execution.run.run_id] = execution
        self._admission.append(execution)
        self._admit()

    def _admit(self) -> None:
        while self._admission and self._executing < self._max_executing and not self._stopping:
            self._start(self._admission.popleft())

    def _start(self, execution: _Execution) -> None:
        self._executing += 1
        self._spawn(self._execute(execution))

    def _spawn(self, coroutine: Any) -> None:
        worker = asyncio.create_task(coroutine)
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _execute(self, execution: _Execution) -> None:
        run_id = execution.run.run_id
        try:
            if execution.run.state == PENDING and not execution.terminate_requested:
                await self._change(execution, background=True, state=RUNNING)
            if execution.terminate_requested:
                outcome = RunOutcome(TaskState.CANCELED, "")
            else:
                try:
                    info = await self._spec_info(execution.document, "pipeline_spec", execution.run.spec_hash)
                    root = self._root_of(execution.run)
                except DomainError as refused:  # stored before this server's checks: never run
                    outcome = RunOutcome(TaskState.FAILED, refused.message)
                else:
                    previous = {t.task_id: task_result(t) for t in execution.tasks.values() if t.state == SUCCEEDED}
                    run = execution.run
                    context = RunContext(
                        run_id=run_id,
                        spec=info.spec,
                        parameters=run.parameters,
                        previous=previous,
                        platform_spec=platform_spec_of(execution.document),
                        artifact_root=root,
                        display_name=run.display_name,
                        created_at_us=run.created_at,
                        scheduled_at_us=run.scheduled_at,
                    )
                    outcome = await self._orchestrator.execute(context, _Observer(self, execution))
            await self._finish(execution, outcome.state.value, outcome.error)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception as error:  # a bug or a store failure: the run must still end
            log.exception("run execution failed", extra={"fields": {"run_id": run_id}})
            if not self._stopping:
                await self._finish(execution, FAILED, f"internal error: {error}")
        finally:
            self._executing -= 1
            self._admit()
            self._active.pop(run_id, None)
            execution.done.set()
            self._log_appended.publish(run_id, True)  # followers re-check and see the end
            if execution.run.finished:
                for listener in self.finished_listeners:
                    listener(execution.run)

    async def _finish(self, execution: _Execution, state: str, error: str) -> None:
        if state == CANCELED and not error:  # terminated before the orchestrator started
            error = "the run was terminated"
        now = self._clock.now_us()
        # Tasks a crashed attempt left unfinished and this attempt did not reach.
        leftovers = [
            evolve(
                task,
                state=CANCELED,
                end_time=now,
                state_history=[*task.state_history, StateChange(CANCELED, now, "the run ended first")],
            )
            for task in execution.tasks.values()
            if task.state not in TERMINAL_STATES
        ]
        tasks = [*execution.tasks.values(), *leftovers]
        await self._change(
            execution, tasks=leftovers, background=True, state=state, error=error, finished_at=now,
            output_artifacts=_exposed(execution.run.artifacts, tasks),
        )

    async def _change(
        self,
        execution: _Execution,
        tasks: Sequence[TaskDetail] = (),
        unless_finished: bool = False,
        background: bool = False,
        **changes: Any,
    ) -> None:
        """Commit `changes` to the run (and `tasks`) with their events, then apply them in
        memory and publish. With `unless_finished`, a run that has just finished is left alone:
        FAILED_PRECONDITION. `background`: the orchestrator's reports, not a request; they wait
        out store faults (the run waits with them) instead of failing the run."""
        if not background and execution.lock.locked() and self._db.fault is not None:
            raise self._db.fault.fresh()  # a report of this run waits for the store: this would wait behind it
        async with execution.lock:
            run = execution.run
            if unless_finished and run.finished:
                raise FailedPrecondition(f"run {run.run_id!r} is {run.state}; it finished before the request")
            if "error" in changes:
                changes["error"] = cut_error(changes["error"])
            if "state" in changes:
                changes["state_history"] = [
                    *run.state_history,
                    StateChange(changes["state"], self._clock.now_us(), summary(changes.get("error", ""))),
                ]
            changed = evolve(run, **changes, revision=run.revision + 1)
            events = []
            if "state" in changes:
                events.append(event.run_state_changed(changed, run.state, self._clock.now_us()))

            async def stage(conn: aiosqlite.Connection) -> None:
                completed = []
                if changed.finished and "state" in changes:  # names as committed with the end
                    completed.append(event.run_completed(changed, *await store.names_within(conn, changed)))
                await self._events.job(*events, *completed)(conn)

            await store.save_run(
                self._db, changed, [*changes, "revision"], tasks, stage, background=background, patient=background,
            )
            execution.run = changed
            for task in tasks:
                execution.tasks[task.task_id] = task
            if self._snapshots.watched(run.run_id):
                self._snapshots.publish(run.run_id, execution.view())

    async def _task_changed(self, execution: _Execution, update: TaskUpdate) -> None:
        if self._stopping:
            return
        previous = execution.tasks.get(update.task_id)
        task = _apply_update(execution.run.run_id, previous, update)
        if task is not None:
            await self._change(execution, tasks=[task], background=True)

    async def _log_lines(self, execution: _Execution, task_id: str, lines: list[str]) -> None:
        if self._stopping:
            return
        run_id, now = execution.run.run_id, self._clock.now_us()
        first = execution.line_numbers.get(task_id, 0) + 1
        execution.line_numbers[task_id] = first + len(lines) - 1
        await store.append_log_lines(
            self._db, [(run_id, task_id, first + offset, now, text) for offset, text in enumerate(lines)]
        )
        self._log_appended.publish(run_id, True)

    def _pipeline_root(self, pipeline_root: str, field: str) -> tuple[str, list[FieldViolation]]:
        """A new run's pipeline_root as stored ("" = the artifact root), or why it is refused: the
        local executor writes on this machine, and only below an allowed root."""
        if not pipeline_root:
            return "", []
        if (size := utf8_size(pipeline_root)) > MAX_PATH_BYTES:  # PATH_MAX; every Run message holds it
            return "", [FieldViolation(field, f"must be at most {MAX_PATH_BYTES} bytes in UTF-8, got {size}")]
        if object_store.is_url(pipeline_root) and self._allowed(pipeline_root):
            if problem := object_store.problem(pipeline_root):
                return "", [FieldViolation(field, problem)]
            return pipeline_root.rstrip("/"), []
        path = pipeline_root.removeprefix("file://")
        if not os.path.isabs(path) or "\0" in path:
            return "", [FieldViolation(field, (
                f"must be an absolute local path or a file:// URI, or an object-store URL inside an allowed root"
                f" (the Ray launcher's), got {pipeline_root!r}; allowed roots: {self._allowed_text()}"
            ))]
        if not self._allowed(path):
            resolved = os.path.realpath(path)
            resolves = f"; it resolves to {resolved!r}" if resolved != path else ""
            return "", [FieldViolation(field, f"must be inside an allowed pipeline root: {self._allowed_text()}{resolves}")]
        return path, []

    def _root_of(self, run: Run) -> str:
        """The resolved directory (or object-store URL) `run`'s artifacts are under
        (`<it>/<run_id>`); FailedPrecondition if its pipeline_root is not (or no longer) inside an
        allowed root."""
        if not run.pipeline_root:
            return self._artifact_root
        if not self._allowed(run.pipeline_root):
            raise FailedPrecondition(
                f"run {run.run_id!r} has pipeline_root {run.pipeline_root!r}, which is not inside an allowed pipeline root"
                f" ({self._allowed_text()}); the server neither writes nor deletes artifacts there (see --allowed-pipeline-roots)"
            )
        return _resolved_root(run.pipeline_root)

    def _allowed(self, path: str) -> bool:
        if object_store.is_url(path):
            return any(object_store.inside(path, root) for root in self._allowed_roots if object_store.is_url(root))
        return any(inside(path, root) for root in self._allowed_roots if not object_store.is_url(root))

    def _allowed_text(self) -> str:
        return ", ".join(self._allowed_roots)

    def _claim(self, run_id: str) -> _Claim:
        return _Claim(self._claimed, run_id)


class _Claim:
    """Keeps two Retry or Delete calls from working on one run at once."""

    def __init__(self, claimed: set[str], run_id: str) -> None:
        self._claimed = claimed
        self._run_id = run_id

    def __enter__(self) -> None:
        if self._run_id in self._claimed:
            raise FailedPrecondition(f"run {self._run_id!r} is being retried or deleted by another call")
        self._claimed.add(self._run_id)

    def __exit__(self, *exc_info: object) -> None:
        self._claimed.discard(self._run_id)


class _Observer:
    """Hands the orchestrator's reports to the run manager."""

    def __init__(self, runs: Runs, execution: _Execution) -> None:
        self._runs = runs
        self._execution = execution

    async def task_changed(self, update: TaskUpdate) -> None:
        await self._runs._task_changed(self._execution, update)

    async def log_lines(self, task_id: str, lines: list[str]) -> None:
        await self._runs._log_lines(self._execution, task_id, lines)


def _apply_update(run_id: str, previous: TaskDetail | None, update: TaskUpdate) -> TaskDetail | None:
    """The task after `update`; None when it changes nothing (a reused result reported again)."""
    state = update.state.value
    if previous is not None and previous.state == state == SUCCEEDED:
        return None
    history = [*(previous.state_history if previous else []), StateChange(state, update.time_us, summary(update.error))]
    finished = state in TERMINAL_STATES
    start_time = update.time_us if state == RUNNING else (previous.start_time if previous else 0)
    result = update.result
    return TaskDetail(
        run_id=run_id,
        task_id=update.task_id,
        display_name=update.display_name,
        parent_task_id=update.parent_task_id,
        state=state,
        create_time=previous.create_time if previous else update.time_us,
        start_time=start_time or (update.time_us if finished else 0),
        end_time=update.time_us if finished else 0,
        image=update.image or (previous.image if previous else ""),
        exit_code=update.exit_code,
        error=cut_error(update.error),
        input_parameters=update.input_parameters or (previous.input_parameters if previous else {}),
        output_parameters=dict(result.output_parameters) if result else {},
        output_artifacts=[
            {"name": a.name, "uri": a.uri, "schema_title": a.schema_title, "metadata": a.metadata}
            | ({"origin": a.origin} if a.origin else {})
            for artifacts in (result.output_artifacts.values() if result else ())
            for a in artifacts
        ],
        state_history=history,
        iteration_index=update.iteration_index if update.iteration_index is not None else (previous.iteration_index if previous else None),
        iteration_count=update.iteration_count if update.iteration_count is not None else (previous.iteration_count if previous else None),
        cached_from_run_id=update.cached_from_run_id,
        notes=list(update.notes) or (previous.notes if previous else []),
        retries=update.retries,
    )


def _batches(lines: list[LogLine]) -> Iterator[list[LogLine]]:
    """`lines` in batches of at most LOG_BATCH_BYTES of text (at least one line each)."""
    batch: list[LogLine] = []
    size = 0
    for line in lines:
        size += utf8_size(line.text) + LOG_LINE_OVERHEAD
        if batch and size > LOG_BATCH_BYTES:
            yield batch
            batch, size = [], utf8_size(line.text) + LOG_LINE_OVERHEAD
        batch.append(line)
    yield batch


def task_result(task: TaskDetail) -> TaskResult:
    """What a SUCCEEDED task produced, as the orchestrator reuses it."""
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for a in task.output_artifacts:
        artifacts.setdefault(a["name"], []).append(
            ArtifactOutput(a["name"], a["uri"], a["schema_title"], a["metadata"], a.get("origin", ""))
        )
    return TaskResult(output_parameters=dict(task.output_parameters), output_artifacts=artifacts)


def artifact_selector_violations(artifacts: list[dict[str, str]], field: str) -> list[FieldViolation]:
    """At most MAX_SELECTORS selectors, of unique names and paths of at most MAX_PATH_BYTES of
    UTF-8 (room for the 100 comparisons a filter may hold) that parse: every Run message repeats
    them, with an exposed artifact each."""
    if len(artifacts) > MAX_SELECTORS:
        return [FieldViolation(field, f"must hold at most {MAX_SELECTORS} selectors, got {len(artifacts)}")]
    violations, seen = [], set()
    for index, selector in enumerate(artifacts):
        name, path = selector.get("name", ""), selector.get("path", "")
        violations += name_violations(name, f"{field}[{index}].name")
        if name in seen:
            violations.append(FieldViolation(f"{field}[{index}].name", f"{name!r} is used by another selector"))
        seen.add(name)
        if (size := utf8_size(path)) > MAX_PATH_BYTES:
            violations.append(FieldViolation(f"{field}[{index}].path", f"must be at most {MAX_PATH_BYTES} bytes in UTF-8, got {size}"))
            continue
        try:
            parse_selector(path)
        except SelectorError as error:
            violations.append(FieldViolation(f"{field}[{index}].path", str(error)))
    return violations


def _exposed(selectors: list[dict[str, str]], tasks: list[TaskDetail]) -> list[dict[str, Any]]:
    """Each selector's artifact among the run's task outputs, or why there is none."""
    outputs = [(t.display_name, t.output_artifacts) for t in sorted(tasks, key=lambda t: (t.create_time, t.task_id))]
    exposed = []
    for selector in selectors:
        try:
            artifact, reason = expose(parse_selector(selector["path"]), outputs)
        except SelectorError as error:  # stored before a rule that now refuses it (e.g. RE2 syntax)
            artifact, reason = None, f"the selector no longer parses: {error}"
        exposed.append({
            "name": selector["name"],
            "uri": artifact["uri"] if artifact else "",
            "metadata": artifact.get("metadata") or {} if artifact else {},
            "unmatched_reason": reason,
        })
    return exposed


def _parameters_from_violations(new: NewRun, field: str) -> list[FieldViolation]:
    violations = []
    for name, ref in sorted(new.parameters_from.items()):
        if name in new.parameters:
            violations.append(FieldViolation(f"{field}.parameters_from[{name}]", "is also given in parameters; give one"))
        if not ref.get("recurring_run_id"):
            violations.append(FieldViolation(f"{field}.parameters_from[{name}].recurring_run_id", "is required"))
        if not ref.get("output_artifact"):
            violations.append(FieldViolation(f"{field}.parameters_from[{name}].output_artifact", "is required"))
    return violations
