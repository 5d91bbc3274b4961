"""Experiments: creation rules, the Default experiment, archiving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kfpgrpc.clock import Clock
from kfpgrpc.core.validation import check, description_violations, id_violations, name_violations, new_id
from kfpgrpc.domain import DEFAULT_EXPERIMENT_NAME, Experiment, Page
from kfpgrpc.errors import AlreadyExists, FailedPrecondition
from kfpgrpc.store import experiments as store
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import ListRequest, build_query


class Experiments:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.default_experiment_id = ""
        # Told of an experiment about to be archived (its recurring runs are disabled first,
        # so that no tick meets an archived experiment), then of it archived, after its runs
        # were archived in the store.
        self.archiving_listeners: list[Callable[[str], Awaitable[None]]] = []
        self.archive_listeners: list[Callable[[str], Awaitable[None]]] = []

    async def ensure_default(self) -> Experiment:
        """Create the Default experiment on first start; remember its id."""
        existing = await store.find_by_name(self._db, DEFAULT_EXPERIMENT_NAME)
        if existing is None:
            try:
                existing = await self._insert(DEFAULT_EXPERIMENT_NAME, "Runs that name no experiment land here.")
            except AlreadyExists:  # created concurrently
                existing = await store.find_by_name(self._db, DEFAULT_EXPERIMENT_NAME)
                assert existing is not None
        self.default_experiment_id = existing.experiment_id
        return existing

    async def create(self, display_name: str, description: str) -> Experiment:
        check(name_violations(display_name, "experiment.display_name")
              + description_violations(description, "experiment.description"))
        return await self._insert(display_name, description)

    async def _insert(self, display_name: str, description: str) -> Experiment:
        experiment = Experiment(new_id(), display_name, description, self._clock.now_us())
        await store.insert(self._db, experiment)
        return experiment

    async def get(self, experiment_id: str) -> Experiment:
        self._check_id(experiment_id)
        return await store.get(self._db, experiment_id)

    async def list(self, request: ListRequest) -> Page[Experiment]:
        return await store.list_page(self._db, build_query(store.EXPERIMENTS, request))

    async def archive(self, experiment_id: str) -> None:
        """Archive the experiment and its runs, disabling its recurring runs. FailedPrecondition
        for the Default experiment."""
        self._check_id(experiment_id)
        if experiment_id == self.default_experiment_id:
            raise FailedPrecondition("the Default experiment cannot be archived")
        for listener in self.archiving_listeners:
            await listener(experiment_id)
        await store.archive(self._db, experiment_id)
        for listener in self.archive_listeners:
            await listener(experiment_id)

    async def unarchive(self, experiment_id: str) -> None:
        """Restore the experiment only: its runs stay archived and its recurring runs disabled
        (as in KFP); enabling one then catches up what it missed, unless no_catchup."""
        self._check_id(experiment_id)
        await store.unarchive(self._db, experiment_id)

    async def delete(self, experiment_id: str) -> None:
        self._check_id(experiment_id)
        if experiment_id == self.default_experiment_id:
            raise FailedPrecondition("the Default experiment cannot be deleted")
        await store.delete(self._db, experiment_id)

    @staticmethod
    def _check_id(experiment_id: str) -> None:
        check(id_violations(experiment_id, "experiment_id"))
