import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kfpgrpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pipeline(_message.Message):
    __slots__ = ("pipeline_id", "display_name", "description", "created_at", "error", "name")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    display_name: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    error: _common_pb2.Status
    name: str
    def __init__(self, pipeline_id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class PipelineVersion(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version_id", "display_name", "description", "created_at", "pipeline_spec", "error", "code_source_url", "name")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_SPEC_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CODE_SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version_id: str
    display_name: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    pipeline_spec: _struct_pb2.Struct
    error: _common_pb2.Status
    code_source_url: str
    name: str
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version_id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pipeline_spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., code_source_url: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CreatePipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class CreatePipelineAndVersionRequest(_message.Message):
    __slots__ = ("pipeline", "pipeline_version")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    pipeline_version: PipelineVersion
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., pipeline_version: _Optional[_Union[PipelineVersion, _Mapping]] = ...) -> None: ...

class GetPipelineRequest(_message.Message):
    __slots__ = ("pipeline_id",)
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    def __init__(self, pipeline_id: _Optional[str] = ...) -> None: ...

class GetPipelineByNameRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ("page_token", "page_size", "sort_by", "filter")
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_token: str
    page_size: int
    sort_by: str
    filter: str
    def __init__(self, page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., sort_by: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListPipelinesResponse(_message.Message):
    __slots__ = ("pipelines", "total_size", "next_page_token")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    total_size: int
    next_page_token: str
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ..., total_size: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeletePipelineRequest(_message.Message):
    __slots__ = ("pipeline_id", "cascade")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    cascade: bool
    def __init__(self, pipeline_id: _Optional[str] = ..., cascade: bool = ...) -> None: ...

class CreatePipelineVersionRequest(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version: PipelineVersion
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version: _Optional[_Union[PipelineVersion, _Mapping]] = ...) -> None: ...

class GetPipelineVersionRequest(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version_id")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version_id: str
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version_id: _Optional[str] = ...) -> None: ...

class ListPipelineVersionsRequest(_message.Message):
    __slots__ = ("pipeline_id", "page_token", "page_size", "sort_by", "filter")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    page_token: str
    page_size: int
    sort_by: str
    filter: str
    def __init__(self, pipeline_id: _Optional[str] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., sort_by: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListPipelineVersionsResponse(_message.Message):
    __slots__ = ("pipeline_versions", "total_size", "next_page_token")
    PIPELINE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pipeline_versions: _containers.RepeatedCompositeFieldContainer[PipelineVersion]
    total_size: int
    next_page_token: str
    def __init__(self, pipeline_versions: _Optional[_Iterable[_Union[PipelineVersion, _Mapping]]] = ..., total_size: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeletePipelineVersionRequest(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version_id")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version_id: str
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version_id: _Optional[str] = ...) -> None: ...
