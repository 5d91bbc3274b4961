import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kfpgrpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Run(_message.Message):
    __slots__ = ("experiment_id", "run_id", "display_name", "storage_state", "description", "pipeline_spec", "pipeline_version_reference", "runtime_config", "service_account", "created_at", "scheduled_at", "finished_at", "state", "error", "run_details", "recurring_run_id", "state_history", "artifacts", "output_artifacts")
    class StorageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STORAGE_STATE_UNSPECIFIED: _ClassVar[Run.StorageState]
        AVAILABLE: _ClassVar[Run.StorageState]
        ARCHIVED: _ClassVar[Run.StorageState]
    STORAGE_STATE_UNSPECIFIED: Run.StorageState
    AVAILABLE: Run.StorageState
    ARCHIVED: Run.StorageState
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_STATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_SPEC_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RUN_DETAILS_FIELD_NUMBER: _ClassVar[int]
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    run_id: str
    display_name: str
    storage_state: Run.StorageState
    description: str
    pipeline_spec: _struct_pb2.Struct
    pipeline_version_reference: _common_pb2.PipelineVersionReference
    runtime_config: _common_pb2.RuntimeConfig
    service_account: str
    created_at: _timestamp_pb2.Timestamp
    scheduled_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    state: _common_pb2.RuntimeState
    error: _common_pb2.Status
    run_details: RunDetails
    recurring_run_id: str
    state_history: _containers.RepeatedCompositeFieldContainer[_common_pb2.RuntimeStatus]
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactSelector]
    output_artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExposedArtifact]
    def __init__(self, experiment_id: _Optional[str] = ..., run_id: _Optional[str] = ..., display_name: _Optional[str] = ..., storage_state: _Optional[_Union[Run.StorageState, str]] = ..., description: _Optional[str] = ..., pipeline_spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., pipeline_version_reference: _Optional[_Union[_common_pb2.PipelineVersionReference, _Mapping]] = ..., runtime_config: _Optional[_Union[_common_pb2.RuntimeConfig, _Mapping]] = ..., service_account: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.RuntimeState, str]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., run_details: _Optional[_Union[RunDetails, _Mapping]] = ..., recurring_run_id: _Optional[str] = ..., state_history: _Optional[_Iterable[_Union[_common_pb2.RuntimeStatus, _Mapping]]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactSelector, _Mapping]]] = ..., output_artifacts: _Optional[_Iterable[_Union[_common_pb2.ExposedArtifact, _Mapping]]] = ...) -> None: ...

class RunDetails(_message.Message):
    __slots__ = ("task_details", "task_details_omitted")
    TASK_DETAILS_FIELD_NUMBER: _ClassVar[int]
    TASK_DETAILS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    task_details: _containers.RepeatedCompositeFieldContainer[PipelineTaskDetail]
    task_details_omitted: int
    def __init__(self, task_details: _Optional[_Iterable[_Union[PipelineTaskDetail, _Mapping]]] = ..., task_details_omitted: _Optional[int] = ...) -> None: ...

class PipelineTaskDetail(_message.Message):
    __slots__ = ("run_id", "task_id", "display_name", "create_time", "start_time", "end_time", "state", "error", "parent_task_id", "state_history", "child_tasks", "input_parameters", "output_parameters", "output_artifacts", "image", "exit_code", "iteration_index", "iteration_count", "cached", "cached_from_run_id", "notes", "retries")
    class InputParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    class OutputParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    CHILD_TASKS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ITERATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    ITERATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    CACHED_FROM_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    task_id: str
    display_name: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    state: _common_pb2.RuntimeState
    error: _common_pb2.Status
    parent_task_id: str
    state_history: _containers.RepeatedCompositeFieldContainer[_common_pb2.RuntimeStatus]
    child_tasks: _containers.RepeatedCompositeFieldContainer[ChildTask]
    input_parameters: _containers.MessageMap[str, _struct_pb2.Value]
    output_parameters: _containers.MessageMap[str, _struct_pb2.Value]
    output_artifacts: _containers.RepeatedCompositeFieldContainer[TaskArtifact]
    image: str
    exit_code: int
    iteration_index: int
    iteration_count: int
    cached: bool
    cached_from_run_id: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    retries: int
    def __init__(self, run_id: _Optional[str] = ..., task_id: _Optional[str] = ..., display_name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.RuntimeState, str]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., parent_task_id: _Optional[str] = ..., state_history: _Optional[_Iterable[_Union[_common_pb2.RuntimeStatus, _Mapping]]] = ..., child_tasks: _Optional[_Iterable[_Union[ChildTask, _Mapping]]] = ..., input_parameters: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., output_parameters: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., output_artifacts: _Optional[_Iterable[_Union[TaskArtifact, _Mapping]]] = ..., image: _Optional[str] = ..., exit_code: _Optional[int] = ..., iteration_index: _Optional[int] = ..., iteration_count: _Optional[int] = ..., cached: bool = ..., cached_from_run_id: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ..., retries: _Optional[int] = ...) -> None: ...

class ChildTask(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskArtifact(_message.Message):
    __slots__ = ("name", "uri", "schema_title", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_TITLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    schema_title: str
    metadata: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., schema_title: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateRunRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("experiment_id", "page_token", "page_size", "sort_by", "filter")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    page_token: str
    page_size: int
    sort_by: str
    filter: str
    def __init__(self, experiment_id: _Optional[str] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., sort_by: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "total_size", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    total_size: int
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., total_size: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ArchiveRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class UnarchiveRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class DeleteRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class TerminateRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RetryRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class StreamRunLogsRequest(_message.Message):
    __slots__ = ("run_id", "task_name", "follow", "after_line_number", "tail_lines", "before_line_number")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    AFTER_LINE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    BEFORE_LINE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    task_name: str
    follow: bool
    after_line_number: int
    tail_lines: int
    before_line_number: int
    def __init__(self, run_id: _Optional[str] = ..., task_name: _Optional[str] = ..., follow: bool = ..., after_line_number: _Optional[int] = ..., tail_lines: _Optional[int] = ..., before_line_number: _Optional[int] = ...) -> None: ...

class StreamRunLogsResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("task_id", "time", "text", "line_number")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LINE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    time: _timestamp_pb2.Timestamp
    text: str
    line_number: int
    def __init__(self, task_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., text: _Optional[str] = ..., line_number: _Optional[int] = ...) -> None: ...
