"""Pipelines and versions: naming rules and spec validation on upload."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kfpgrpc.bounds import MAX_PATH_BYTES, utf8_size
from kfpgrpc.clock import Clock
from kfpgrpc.core.events import Events, pipeline_version_created
from kfpgrpc.core.validation import check, description_violations, id_violations, name_violations, new_id
from kfpgrpc.domain import Page, Pipeline, PipelineVersion
from kfpgrpc.errors import FieldViolation, NotFound
from kfpgrpc.pipeline_spec import validate_pipeline_spec
from kfpgrpc.store import pipelines as store
from kfpgrpc.store.database import Database
from kfpgrpc.store.listing import ListRequest, build_query


@dataclass(frozen=True)
class PipelineVersionFields:
    """What a client says of a new pipeline's first version (CreatePipelineAndVersion)."""

    name: str = ""
    display_name: str = ""
    description: str = ""
    code_source_url: str = ""


class Pipelines:
    def __init__(self, db: Database, clock: Clock, events: Events) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self.version_listeners: list[Callable[[PipelineVersion], None]] = []  # told of every new version
        # Told (pipeline_id, pipeline_version_id) of every deletion once committed; an empty
        # version id: every version of the pipeline.
        self.deletion_listeners: list[Callable[[str, str], None]] = []

    async def create(self, name: str, display_name: str, description: str) -> Pipeline:
        """`name` is the unique key; either name may stand in for the other."""
        pipeline = self._new_pipeline(name, display_name, description)
        await store.insert_pipeline(self._db, pipeline)
        return pipeline

    async def create_with_version(
        self, name: str, display_name: str, description: str, pipeline_spec: dict[str, Any] | None,
        version: PipelineVersionFields | None = None,
    ) -> tuple[Pipeline, PipelineVersion]:
        """A new pipeline and its first version, together or not at all: KFP's UploadPipeline
        (the version named and described as the pipeline) and CreatePipelineAndVersion (the
        version's own fields in `version`, each empty one the pipeline's)."""
        pipeline = self._new_pipeline(name, display_name, description)
        v = version or PipelineVersionFields()
        named = bool(v.name or v.display_name)  # else the version takes both of the pipeline's names
        version_row = await self._new_version(
            pipeline.pipeline_id, v.name if named else pipeline.name, v.display_name if named else pipeline.display_name,
            v.description or description, v.code_source_url, pipeline_spec)
        stored = await self._stored(store.insert_pipeline_and_version(
            self._db, pipeline, version_row, self._events.job(pipeline_version_created(version_row, version_row.created_at))))
        return pipeline, stored

    def _new_pipeline(self, name: str, display_name: str, description: str) -> Pipeline:
        name = name or display_name
        violations = name_violations(name, "pipeline.name")
        violations += name_violations(display_name, "pipeline.display_name", required=False)
        violations += description_violations(description, "pipeline.description")
        check(violations)
        return Pipeline(new_id(), name, display_name or name, description, self._clock.now_us())

    async def get(self, pipeline_id: str) -> Pipeline:
        check(id_violations(pipeline_id, "pipeline_id"))
        return await store.get_pipeline(self._db, pipeline_id)

    async def get_by_name(self, name: str) -> Pipeline:
        check(name_violations(name, "name"))
        return await store.get_pipeline_by_name(self._db, name)

    async def list(self, request: ListRequest) -> Page[Pipeline]:
        return await store.list_pipelines(self._db, build_query(store.PIPELINES, request))

    async def delete(self, pipeline_id: str, cascade: bool) -> None:
        check(id_violations(pipeline_id, "pipeline_id"))
        try:
            await store.delete_pipeline(self._db, pipeline_id, cascade)
        finally:  # also after a failure: whether it committed is not always known
            self._deleted(pipeline_id, "")

    async def create_version(
        self,
        pipeline_id: str,
        name: str,
        display_name: str,
        description: str,
        code_source_url: str,
        pipeline_spec: dict[str, Any] | None,
    ) -> PipelineVersion:
        version = await self._new_version(pipeline_id, name, display_name, description, code_source_url, pipeline_spec)
        return await self._stored(store.insert_version(self._db, version, self._events.job(pipeline_version_created(version, version.created_at))))

    async def _new_version(
        self, pipeline_id: str, name: str, display_name: str, description: str, code_source_url: str, pipeline_spec: dict[str, Any] | None
    ) -> PipelineVersion:
        """A version checked (spec validated) and ready to store."""
        violations = id_violations(pipeline_id, "pipeline_id")
        violations += name_violations(name or display_name, "pipeline_version.name", required=False)
        violations += name_violations(display_name, "pipeline_version.display_name", required=False)
        violations += description_violations(description, "pipeline_version.description")
        if (size := utf8_size(code_source_url)) > MAX_PATH_BYTES:  # every response about the version holds it
            violations.append(FieldViolation("pipeline_version.code_source_url", f"must be at most {MAX_PATH_BYTES} bytes in UTF-8, got {size}"))
        if pipeline_spec is None:
            violations.append(FieldViolation("pipeline_version.pipeline_spec", "is required"))
        check(violations)
        assert pipeline_spec is not None
        # In a worker thread: validating a spec of megabytes takes seconds.
        info = await asyncio.to_thread(validate_pipeline_spec, pipeline_spec, "pipeline_version.pipeline_spec")
        return PipelineVersion(
            pipeline_version_id=new_id(),
            pipeline_id=pipeline_id,
            name=name or display_name,
            display_name=display_name or name,
            description=description or info.description,
            created_at=self._clock.now_us(),
            code_source_url=code_source_url,
            pipeline_spec=pipeline_spec,
        )

    async def _stored(self, insert: Awaitable[PipelineVersion]) -> PipelineVersion:
        """The version `insert` stores, told to the version listeners."""
        stored = await insert
        for listener in self.version_listeners:
            listener(stored)
        return stored

    async def get_version(self, pipeline_id: str, pipeline_version_id: str) -> PipelineVersion:
        """pipeline_id may be empty; when given, the version must belong to it."""
        violations = id_violations(pipeline_version_id, "pipeline_version_id")
        if pipeline_id:
            violations += id_violations(pipeline_id, "pipeline_id")
        check(violations)
        version = await store.get_version(self._db, pipeline_version_id)
        if pipeline_id and version.pipeline_id != pipeline_id:
            raise NotFound("pipeline version", "pipeline_version_id", pipeline_version_id)
        return version

    async def list_versions(self, pipeline_id: str, request: ListRequest) -> Page[PipelineVersion]:
        check(id_violations(pipeline_id, "pipeline_id"))
        query = build_query(store.PIPELINE_VERSIONS, request, scope=[("pipeline_id", pipeline_id)])
        await store.get_pipeline(self._db, pipeline_id)
        return await store.list_versions(self._db, query)

    async def delete_version(self, pipeline_id: str, pipeline_version_id: str) -> None:
        await self.get_version(pipeline_id, pipeline_version_id)
        try:
            await store.delete_version(self._db, pipeline_version_id)
        finally:  # also after a failure: whether it committed is not always known
            self._deleted(pipeline_id, pipeline_version_id)

    def _deleted(self, pipeline_id: str, pipeline_version_id: str) -> None:
        for listener in self.deletion_listeners:
            listener(pipeline_id, pipeline_version_id)
