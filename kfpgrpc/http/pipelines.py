"""KFP's PipelineService and PipelineUploadService over REST (kfp-server-api's PipelineServiceApi
and PipelineUploadServiceApi): the JSON twin of kfpgrpc/api/pipelines.py, calling the same core.

    POST   /apis/v2beta1/pipelines                         body: Pipeline -> Pipeline
    POST   /apis/v2beta1/pipelines/create                  body: CreatePipelineAndVersionRequest -> Pipeline
    GET    /apis/v2beta1/pipelines/{pipeline_id}           -> Pipeline
    GET    /apis/v2beta1/pipelines/names/{name}            -> Pipeline
    GET    /apis/v2beta1/pipelines?page_token&page_size&sort_by&filter -> ListPipelinesResponse
    DELETE /apis/v2beta1/pipelines/{pipeline_id}?cascade   -> {}
    POST   /apis/v2beta1/pipelines/{pipeline_id}/versions  body: PipelineVersion -> PipelineVersion
    GET    /apis/v2beta1/pipelines/{pipeline_id}/versions/{pipeline_version_id} -> PipelineVersion
    GET    /apis/v2beta1/pipelines/{pipeline_id}/versions?page_token&... -> ListPipelineVersionsResponse
    DELETE /apis/v2beta1/pipelines/{pipeline_id}/versions/{pipeline_version_id} -> {}
    POST   /apis/v2beta1/pipelines/upload?name&display_name&description  form: uploadfile -> Pipeline
    POST   /apis/v2beta1/pipelines/upload_version?pipelineid&name&display_name&description
           form: uploadfile -> PipelineVersion

Paths and shapes are those of KFP's backend/api/v2beta1/pipeline.proto and its upload server
(backend/src/apiserver/server/pipeline_upload_server.go); `pipeline_spec` is a JSON object.
The upload's file is YAML or JSON, or a .tar.gz or .zip package holding one such file
(kfpgrpc/spec_files.py). An upload makes the pipeline and its first version together, as KFP's.
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from typing import Any

from google.protobuf import empty_pb2, struct_pb2
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kfpgrpc.api.convert import list_request, spec_to_dict, struct
from kfpgrpc.api.pipelines import create_pipeline_and_version, create_version, list_versions, pipeline_to_proto, version_to_proto
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.pipelines import Pipelines
from kfpgrpc.errors import InvalidArgument
from kfpgrpc.http.errors import answers_errors
from kfpgrpc.http.messages import body_into, read_body, request_message, respond, respond_off_loop
from kfpgrpc.spec_files import spec_from_package
from kfpgrpc.v1 import pipeline_pb2 as pb

PREFIX = "/apis/v2beta1/pipelines"
UPLOAD_FIELD = "uploadfile"  # the form part of the pipeline file


class PipelineRoutes:
    def __init__(self, pipelines: Pipelines, max_message_bytes: int, max_spec_bytes: int) -> None:
        self._pipelines = pipelines
        self._max_message_bytes = max_message_bytes
        self._max_spec_bytes = max_spec_bytes

    def routes(self) -> list[Route]:
        one = PREFIX + "/{pipeline_id}"
        versions = one + "/versions"
        version = versions + "/{pipeline_version_id}"
        return [
            Route(PREFIX, answers_errors(self.create_pipeline), methods=["POST"]),
            Route(PREFIX, answers_errors(self.list_pipelines), methods=["GET"]),
            Route(PREFIX + "/create", answers_errors(self.create_pipeline_and_version), methods=["POST"]),
            Route(PREFIX + "/upload", answers_errors(self.upload_pipeline), methods=["POST"]),
            Route(PREFIX + "/upload_version", answers_errors(self.upload_pipeline_version), methods=["POST"]),
            Route(PREFIX + "/names/{name}", answers_errors(self.get_pipeline_by_name), methods=["GET"]),
            Route(one, answers_errors(self.get_pipeline), methods=["GET"]),
            Route(one, answers_errors(self.delete_pipeline), methods=["DELETE"]),
            Route(versions, answers_errors(self.create_pipeline_version), methods=["POST"]),
            Route(versions, answers_errors(self.list_pipeline_versions), methods=["GET"]),
            Route(version, answers_errors(self.get_pipeline_version), methods=["GET"]),
            Route(version, answers_errors(self.delete_pipeline_version), methods=["DELETE"]),
        ]

    async def create_pipeline(self, request: Request) -> Response:
        p = await body_into(request, pb.Pipeline(), "pipeline", self._max_message_bytes)
        return respond(pipeline_to_proto(await self._pipelines.create(p.name, p.display_name, p.description)))

    async def create_pipeline_and_version(self, request: Request) -> Response:
        message = await body_into(request, pb.CreatePipelineAndVersionRequest(), "body", self._max_message_bytes)
        return respond(await create_pipeline_and_version(self._pipelines, message, self._max_spec_bytes))

    async def get_pipeline(self, request: Request) -> Response:
        pipeline_id = request_message(request, pb.GetPipelineRequest()).pipeline_id
        return respond(pipeline_to_proto(await self._pipelines.get(pipeline_id)))

    async def get_pipeline_by_name(self, request: Request) -> Response:
        name = request_message(request, pb.GetPipelineByNameRequest()).name
        return respond(pipeline_to_proto(await self._pipelines.get_by_name(name)))

    async def list_pipelines(self, request: Request) -> Response:
        page = await self._pipelines.list(list_request(request_message(request, pb.ListPipelinesRequest())))
        pipelines, next_page_token = fit_page(page, pipeline_to_proto)
        return respond(pb.ListPipelinesResponse(pipelines=pipelines, total_size=page.total_size, next_page_token=next_page_token))

    async def delete_pipeline(self, request: Request) -> Response:
        message = request_message(request, pb.DeletePipelineRequest())
        await self._pipelines.delete(message.pipeline_id, message.cascade)
        return respond(empty_pb2.Empty())

    async def create_pipeline_version(self, request: Request) -> Response:
        v = await body_into(request, pb.PipelineVersion(), "pipeline_version", self._max_message_bytes)
        pipeline_id = request_message(request, pb.CreatePipelineVersionRequest()).pipeline_id
        return await respond_off_loop(await create_version(self._pipelines, pipeline_id, v, self._max_spec_bytes))

    async def get_pipeline_version(self, request: Request) -> Response:
        message = request_message(request, pb.GetPipelineVersionRequest())
        version = await self._pipelines.get_version(message.pipeline_id, message.pipeline_version_id)
        return await respond_off_loop(await asyncio.to_thread(version_to_proto, version))

    async def list_pipeline_versions(self, request: Request) -> Response:
        return await respond_off_loop(await list_versions(self._pipelines, request_message(request, pb.ListPipelineVersionsRequest())))

    async def delete_pipeline_version(self, request: Request) -> Response:
        message = request_message(request, pb.DeletePipelineVersionRequest())
        await self._pipelines.delete_version(message.pipeline_id, message.pipeline_version_id)
        return respond(empty_pb2.Empty())

    async def upload_pipeline(self, request: Request) -> Response:
        """KFP's UploadPipeline: the pipeline named `name` (else the file's name) with a first
        version of the file's spec."""
        file_name, spec = await self._uploaded_spec(request)
        query = request.query_params
        pipeline, _ = await self._pipelines.create_with_version(
            query.get("name") or file_name, query.get("display_name", ""), query.get("description", ""), spec)
        return respond(pipeline_to_proto(pipeline))

    async def upload_pipeline_version(self, request: Request) -> Response:
        """KFP's UploadPipelineVersion: a version of the file's spec in pipeline `pipelineid`."""
        _, spec = await self._uploaded_spec(request)
        query = request.query_params
        version = await self._pipelines.create_version(
            query.get("pipelineid", ""), query.get("name", ""), query.get("display_name", ""), query.get("description", ""), "", spec)
        return await respond_off_loop(await asyncio.to_thread(version_to_proto, version))

    async def _uploaded_spec(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The file part's name (without extension) and its spec, checked as CreatePipelineVersion
        checks a spec's size (--max-spec-bytes) and numbers. The body is bounded by
        --max-message-bytes, and so is the file a package unpacks to."""
        body = await read_body(request, self._max_message_bytes)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=0)
        except Exception as error:  # Starlette's MultiPartException, or an undecodable body
            raise InvalidArgument.field(UPLOAD_FIELD, f"the request is not a multipart form with the pipeline file: {error}") from None
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise InvalidArgument.field(UPLOAD_FIELD, "is required: the pipeline file (YAML, JSON, .tar.gz or .zip) as this form part")
        data = await upload.read()
        await form.close()
        try:
            spec = await asyncio.to_thread(_spec_struct, data, self._max_message_bytes)
        except (ValueError, TypeError) as error:
            raise InvalidArgument.field(UPLOAD_FIELD, str(error)) from None
        name = PurePosixPath(upload.filename or "").name.split(".")[0]
        return name, await spec_to_dict(spec, UPLOAD_FIELD, self._max_spec_bytes)


def _spec_struct(data: bytes, max_unpacked_bytes: int) -> struct_pb2.Struct:
    return struct(spec_from_package(data, max_unpacked_bytes))
