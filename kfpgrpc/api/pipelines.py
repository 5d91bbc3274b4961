"""PipelineService: protobuf in, core call, protobuf out."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import empty_pb2

from kfpgrpc.api.convert import list_request, spec_to_dict, struct, timestamp
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.pipelines import Pipelines, PipelineVersionFields
from kfpgrpc.domain import Pipeline, PipelineVersion
from kfpgrpc.v1 import pipeline_pb2 as pb
from kfpgrpc.v1 import pipeline_pb2_grpc


def pipeline_to_proto(pipeline: Pipeline) -> pb.Pipeline:
    return pb.Pipeline(
        pipeline_id=pipeline.pipeline_id,
        name=pipeline.name,
        display_name=pipeline.display_name,
        description=pipeline.description,
        created_at=timestamp(pipeline.created_at),
    )


def version_to_proto(version: PipelineVersion) -> pb.PipelineVersion:
    return pb.PipelineVersion(
        pipeline_id=version.pipeline_id,
        pipeline_version_id=version.pipeline_version_id,
        name=version.name,
        display_name=version.display_name,
        description=version.description,
        created_at=timestamp(version.created_at),
        code_source_url=version.code_source_url,
        pipeline_spec=struct(version.pipeline_spec),
    )


async def create_version(
    pipelines: Pipelines, pipeline_id: str, v: pb.PipelineVersion, max_spec_bytes: int
) -> pb.PipelineVersion:
    """CreatePipelineVersion (gRPC and REST): the spec decoded, and the answer encoded, off the loop."""
    spec = None
    if v.HasField("pipeline_spec"):
        spec = await spec_to_dict(v.pipeline_spec, "pipeline_version.pipeline_spec", max_spec_bytes)
    version = await pipelines.create_version(pipeline_id, v.name, v.display_name, v.description, v.code_source_url, spec)
    return await asyncio.to_thread(version_to_proto, version)


async def create_pipeline_and_version(
    pipelines: Pipelines, request: pb.CreatePipelineAndVersionRequest, max_spec_bytes: int
) -> pb.Pipeline:
    """CreatePipelineAndVersion (gRPC and REST): KFP's, with the spec given inline (kfpgrpc does
    not fetch KFP's package_url)."""
    p, v = request.pipeline, request.pipeline_version
    spec = None
    if v.HasField("pipeline_spec"):
        spec = await spec_to_dict(v.pipeline_spec, "pipeline_version.pipeline_spec", max_spec_bytes)
    fields = PipelineVersionFields(v.name, v.display_name, v.description, v.code_source_url)
    pipeline, _ = await pipelines.create_with_version(p.name, p.display_name, p.description, spec, fields)
    return pipeline_to_proto(pipeline)


async def list_versions(pipelines: Pipelines, request: pb.ListPipelineVersionsRequest) -> pb.ListPipelineVersionsResponse:
    """ListPipelineVersions (gRPC and REST)."""
    page = await pipelines.list_versions(request.pipeline_id, list_request(request))
    # Off the loop: a page of versions may hold large specs.
    versions, next_page_token = await asyncio.to_thread(fit_page, page, version_to_proto)
    return pb.ListPipelineVersionsResponse(pipeline_versions=versions, total_size=page.total_size, next_page_token=next_page_token)


class PipelineServicer(pipeline_pb2_grpc.PipelineServiceServicer):
    """Versions carry their spec: it is decoded, and encoded for responses, in a worker thread."""

    def __init__(self, pipelines: Pipelines, max_spec_bytes: int) -> None:
        self._pipelines = pipelines
        self._max_spec_bytes = max_spec_bytes

    async def CreatePipeline(self, request: pb.CreatePipelineRequest, context: grpc.aio.ServicerContext) -> pb.Pipeline:
        p = request.pipeline
        return pipeline_to_proto(await self._pipelines.create(p.name, p.display_name, p.description))

    async def CreatePipelineAndVersion(
        self, request: pb.CreatePipelineAndVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Pipeline:
        return await create_pipeline_and_version(self._pipelines, request, self._max_spec_bytes)

    async def GetPipeline(self, request: pb.GetPipelineRequest, context: grpc.aio.ServicerContext) -> pb.Pipeline:
        return pipeline_to_proto(await self._pipelines.get(request.pipeline_id))

    async def GetPipelineByName(self, request: pb.GetPipelineByNameRequest, context: grpc.aio.ServicerContext) -> pb.Pipeline:
        return pipeline_to_proto(await self._pipelines.get_by_name(request.name))

    async def ListPipelines(self, request: pb.ListPipelinesRequest, context: grpc.aio.ServicerContext) -> pb.ListPipelinesResponse:
        page = await self._pipelines.list(list_request(request))
        pipelines, next_page_token = fit_page(page, pipeline_to_proto)
        return pb.ListPipelinesResponse(pipelines=pipelines, total_size=page.total_size, next_page_token=next_page_token)

    async def DeletePipeline(self, request: pb.DeletePipelineRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._pipelines.delete(request.pipeline_id, request.cascade)
        return empty_pb2.Empty()

    async def CreatePipelineVersion(
        self, request: pb.CreatePipelineVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.PipelineVersion:
        return await create_version(self._pipelines, request.pipeline_id, request.pipeline_version, self._max_spec_bytes)

    async def GetPipelineVersion(
        self, request: pb.GetPipelineVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.PipelineVersion:
        version = await self._pipelines.get_version(request.pipeline_id, request.pipeline_version_id)
        return await asyncio.to_thread(version_to_proto, version)

    async def ListPipelineVersions(
        self, request: pb.ListPipelineVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPipelineVersionsResponse:
        return await list_versions(self._pipelines, request)

    async def DeletePipelineVersion(
        self, request: pb.DeletePipelineVersionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._pipelines.delete_version(request.pipeline_id, request.pipeline_version_id)
        return empty_pb2.Empty()
