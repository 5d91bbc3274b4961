import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kfpgrpc.v1 import common_pb2 as _common_pb2
from kfpgrpc.v1 import recurring_run_pb2 as _recurring_run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    RUN_STATE_CHANGED: _ClassVar[EventType]
    RUN_COMPLETED: _ClassVar[EventType]
    RECURRING_RUN_CHANGED: _ClassVar[EventType]
    TICK_SKIPPED: _ClassVar[EventType]
    RUN_DELETED: _ClassVar[EventType]
    PIPELINE_VERSION_CREATED: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
RUN_STATE_CHANGED: EventType
RUN_COMPLETED: EventType
RECURRING_RUN_CHANGED: EventType
TICK_SKIPPED: EventType
RUN_DELETED: EventType
PIPELINE_VERSION_CREATED: EventType

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "run_id", "recurring_run_id", "experiment_id", "types", "newest")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    run_id: str
    recurring_run_id: str
    experiment_id: str
    types: _containers.RepeatedScalarFieldContainer[EventType]
    newest: int
    def __init__(self, after_sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., recurring_run_id: _Optional[str] = ..., experiment_id: _Optional[str] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., newest: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "time", "type", "run_id", "recurring_run_id", "experiment_id", "run_state_changed", "run_completed", "recurring_run_changed", "tick_skipped", "run_deleted", "pipeline_version_created")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RUN_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    RECURRING_RUN_CHANGED_FIELD_NUMBER: _ClassVar[int]
    TICK_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    RUN_DELETED_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_CREATED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    type: EventType
    run_id: str
    recurring_run_id: str
    experiment_id: str
    run_state_changed: RunStateChanged
    run_completed: RunCompleted
    recurring_run_changed: RecurringRunChanged
    tick_skipped: TickSkipped
    run_deleted: RunDeleted
    pipeline_version_created: PipelineVersionCreated
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[EventType, str]] = ..., run_id: _Optional[str] = ..., recurring_run_id: _Optional[str] = ..., experiment_id: _Optional[str] = ..., run_state_changed: _Optional[_Union[RunStateChanged, _Mapping]] = ..., run_completed: _Optional[_Union[RunCompleted, _Mapping]] = ..., recurring_run_changed: _Optional[_Union[RecurringRunChanged, _Mapping]] = ..., tick_skipped: _Optional[_Union[TickSkipped, _Mapping]] = ..., run_deleted: _Optional[_Union[RunDeleted, _Mapping]] = ..., pipeline_version_created: _Optional[_Union[PipelineVersionCreated, _Mapping]] = ...) -> None: ...

class RunStateChanged(_message.Message):
    __slots__ = ("state", "previous_state", "run_name", "error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.RuntimeState
    previous_state: _common_pb2.RuntimeState
    run_name: str
    error: _common_pb2.Status
    def __init__(self, state: _Optional[_Union[_common_pb2.RuntimeState, str]] = ..., previous_state: _Optional[_Union[_common_pb2.RuntimeState, str]] = ..., run_name: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ...) -> None: ...

class RunCompleted(_message.Message):
    __slots__ = ("run_name", "recurring_run_name", "pipeline_name", "state", "start_time", "end_time", "artifacts", "error")
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    RECURRING_RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    run_name: str
    recurring_run_name: str
    pipeline_name: str
    state: _common_pb2.RuntimeState
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExposedArtifact]
    error: _common_pb2.Status
    def __init__(self, run_name: _Optional[str] = ..., recurring_run_name: _Optional[str] = ..., pipeline_name: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RuntimeState, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ExposedArtifact, _Mapping]]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ...) -> None: ...

class RecurringRunChanged(_message.Message):
    __slots__ = ("change", "status", "updated_fields", "display_name")
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[RecurringRunChanged.Change]
        CREATED: _ClassVar[RecurringRunChanged.Change]
        UPDATED: _ClassVar[RecurringRunChanged.Change]
        ENABLED: _ClassVar[RecurringRunChanged.Change]
        DISABLED: _ClassVar[RecurringRunChanged.Change]
        DELETED: _ClassVar[RecurringRunChanged.Change]
    CHANGE_UNSPECIFIED: RecurringRunChanged.Change
    CREATED: RecurringRunChanged.Change
    UPDATED: RecurringRunChanged.Change
    ENABLED: RecurringRunChanged.Change
    DISABLED: RecurringRunChanged.Change
    DELETED: RecurringRunChanged.Change
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    change: RecurringRunChanged.Change
    status: _recurring_run_pb2.RecurringRun.Status
    updated_fields: _containers.RepeatedScalarFieldContainer[str]
    display_name: str
    def __init__(self, change: _Optional[_Union[RecurringRunChanged.Change, str]] = ..., status: _Optional[_Union[_recurring_run_pb2.RecurringRun.Status, str]] = ..., updated_fields: _Optional[_Iterable[str]] = ..., display_name: _Optional[str] = ...) -> None: ...

class TickSkipped(_message.Message):
    __slots__ = ("scheduled_time", "reason", "detail")
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    scheduled_time: _timestamp_pb2.Timestamp
    reason: str
    detail: str
    def __init__(self, scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RunDeleted(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class PipelineVersionCreated(_message.Message):
    __slots__ = ("pipeline_id", "pipeline_version_id")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    pipeline_version_id: str
    def __init__(self, pipeline_id: _Optional[str] = ..., pipeline_version_id: _Optional[str] = ...) -> None: ...
