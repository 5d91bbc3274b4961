import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RuntimeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNTIME_STATE_UNSPECIFIED: _ClassVar[RuntimeState]
    PENDING: _ClassVar[RuntimeState]
    RUNNING: _ClassVar[RuntimeState]
    SUCCEEDED: _ClassVar[RuntimeState]
    SKIPPED: _ClassVar[RuntimeState]
    FAILED: _ClassVar[RuntimeState]
    CANCELING: _ClassVar[RuntimeState]
    CANCELED: _ClassVar[RuntimeState]
    PAUSED: _ClassVar[RuntimeState]
RUNTIME_STATE_UNSPECIFIED: RuntimeState
PENDING: RuntimeState
RUNNING: RuntimeState
SUCCEEDED: RuntimeState
SKIPPED: RuntimeState
FAILED: RuntimeState
CANCELING: RuntimeState
CANCELED: RuntimeState
PAUSED: RuntimeState

class Status(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class RuntimeStatus(_message.Message):
    __slots__ = ("update_time", "state", "error")
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    update_time: _timestamp_pb2.Timestamp
    state: RuntimeState
    error: Status
    def __init__(self, update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[RuntimeState, str]] = ..., error: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class PipelineVersionReference(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version_id")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version_id: str
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version_id: _Optional[str] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("recurring_run_id", "output_artifact", "optional")
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    output_artifact: str
    optional: bool
    def __init__(self, recurring_run_id: _Optional[str] = ..., output_artifact: _Optional[str] = ..., optional: bool = ...) -> None: ...

class RuntimeConfig(_message.Message):
    __slots__ = ("parameters", "pipeline_root", "parameters_from")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    class ParametersFromEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ArtifactRef
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ROOT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FROM_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.MessageMap[str, _struct_pb2.Value]
    pipeline_root: str
    parameters_from: _containers.MessageMap[str, ArtifactRef]
    def __init__(self, parameters: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., pipeline_root: _Optional[str] = ..., parameters_from: _Optional[_Mapping[str, ArtifactRef]] = ...) -> None: ...

class ArtifactSelector(_message.Message):
    __slots__ = ("name", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ExposedArtifact(_message.Message):
    __slots__ = ("name", "uri", "metadata", "unmatched_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    metadata: _struct_pb2.Struct
    unmatched_reason: str
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unmatched_reason: _Optional[str] = ...) -> None: ...
