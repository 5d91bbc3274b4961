import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kfpgrpc.v1 import common_pb2 as _common_pb2
from kfpgrpc.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    BUFFER_ALL: _ClassVar[OverlapPolicy]
    BUFFER_ONE: _ClassVar[OverlapPolicy]
    SKIP: _ClassVar[OverlapPolicy]
    REPLACE: _ClassVar[OverlapPolicy]
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
BUFFER_ALL: OverlapPolicy
BUFFER_ONE: OverlapPolicy
SKIP: OverlapPolicy
REPLACE: OverlapPolicy

class RecurringRun(_message.Message):
    __slots__ = ("recurring_run_id", "display_name", "description", "pipeline_spec", "pipeline_version_reference", "runtime_config", "service_account", "max_concurrency", "trigger", "mode", "created_at", "updated_at", "status", "error", "no_catchup", "experiment_id", "overlap_policy", "next_scheduled_times", "last_scheduled_time", "counters", "artifacts")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[RecurringRun.Mode]
        ENABLE: _ClassVar[RecurringRun.Mode]
        DISABLE: _ClassVar[RecurringRun.Mode]
    MODE_UNSPECIFIED: RecurringRun.Mode
    ENABLE: RecurringRun.Mode
    DISABLE: RecurringRun.Mode
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[RecurringRun.Status]
        ENABLED: _ClassVar[RecurringRun.Status]
        DISABLED: _ClassVar[RecurringRun.Status]
    STATUS_UNSPECIFIED: RecurringRun.Status
    ENABLED: RecurringRun.Status
    DISABLED: RecurringRun.Status
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_SPEC_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NO_CATCHUP_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_POLICY_FIELD_NUMBER: _ClassVar[int]
    NEXT_SCHEDULED_TIMES_FIELD_NUMBER: _ClassVar[int]
    LAST_SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    display_name: str
    description: str
    pipeline_spec: _struct_pb2.Struct
    pipeline_version_reference: _common_pb2.PipelineVersionReference
    runtime_config: _common_pb2.RuntimeConfig
    service_account: str
    max_concurrency: int
    trigger: Trigger
    mode: RecurringRun.Mode
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    status: RecurringRun.Status
    error: _common_pb2.Status
    no_catchup: bool
    experiment_id: str
    overlap_policy: OverlapPolicy
    next_scheduled_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    last_scheduled_time: _timestamp_pb2.Timestamp
    counters: RecurringRunCounters
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ArtifactSelector]
    def __init__(self, recurring_run_id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., pipeline_spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., pipeline_version_reference: _Optional[_Union[_common_pb2.PipelineVersionReference, _Mapping]] = ..., runtime_config: _Optional[_Union[_common_pb2.RuntimeConfig, _Mapping]] = ..., service_account: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ..., mode: _Optional[_Union[RecurringRun.Mode, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[RecurringRun.Status, str]] = ..., error: _Optional[_Union[_common_pb2.Status, _Mapping]] = ..., no_catchup: bool = ..., experiment_id: _Optional[str] = ..., overlap_policy: _Optional[_Union[OverlapPolicy, str]] = ..., next_scheduled_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., last_scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counters: _Optional[_Union[RecurringRunCounters, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.ArtifactSelector, _Mapping]]] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("cron_schedule", "periodic_schedule", "upstream_recurring_run_ids", "on_new_pipeline_version")
    CRON_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PERIODIC_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_RECURRING_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    ON_NEW_PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    cron_schedule: CronSchedule
    periodic_schedule: PeriodicSchedule
    upstream_recurring_run_ids: _containers.RepeatedScalarFieldContainer[str]
    on_new_pipeline_version: bool
    def __init__(self, cron_schedule: _Optional[_Union[CronSchedule, _Mapping]] = ..., periodic_schedule: _Optional[_Union[PeriodicSchedule, _Mapping]] = ..., upstream_recurring_run_ids: _Optional[_Iterable[str]] = ..., on_new_pipeline_version: bool = ...) -> None: ...

class CronSchedule(_message.Message):
    __slots__ = ("start_time", "end_time", "cron", "time_zone")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    cron: str
    time_zone: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class PeriodicSchedule(_message.Message):
    __slots__ = ("start_time", "end_time", "interval_second")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECOND_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interval_second: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval_second: _Optional[int] = ...) -> None: ...

class RecurringRunCounters(_message.Message):
    __slots__ = ("runs_created", "ticks_skipped", "ticks_queued", "runs_active", "ticks_skipped_by_reason")
    class TicksSkippedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUNS_CREATED_FIELD_NUMBER: _ClassVar[int]
    TICKS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TICKS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TICKS_SKIPPED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    runs_created: int
    ticks_skipped: int
    ticks_queued: int
    runs_active: int
    ticks_skipped_by_reason: _containers.ScalarMap[str, int]
    def __init__(self, runs_created: _Optional[int] = ..., ticks_skipped: _Optional[int] = ..., ticks_queued: _Optional[int] = ..., runs_active: _Optional[int] = ..., ticks_skipped_by_reason: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CreateRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run",)
    RECURRING_RUN_FIELD_NUMBER: _ClassVar[int]
    recurring_run: RecurringRun
    def __init__(self, recurring_run: _Optional[_Union[RecurringRun, _Mapping]] = ...) -> None: ...

class GetRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id",)
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    def __init__(self, recurring_run_id: _Optional[str] = ...) -> None: ...

class ListRecurringRunsRequest(_message.Message):
    __slots__ = ("page_token", "page_size", "sort_by", "filter", "experiment_id")
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    page_token: str
    page_size: int
    sort_by: str
    filter: str
    experiment_id: str
    def __init__(self, page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., sort_by: _Optional[str] = ..., filter: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class ListRecurringRunsResponse(_message.Message):
    __slots__ = ("recurring_runs", "total_size", "next_page_token")
    RECURRING_RUNS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    recurring_runs: _containers.RepeatedCompositeFieldContainer[RecurringRun]
    total_size: int
    next_page_token: str
    def __init__(self, recurring_runs: _Optional[_Iterable[_Union[RecurringRun, _Mapping]]] = ..., total_size: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run", "update_mask")
    RECURRING_RUN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    recurring_run: RecurringRun
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, recurring_run: _Optional[_Union[RecurringRun, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class EnableRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id",)
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    def __init__(self, recurring_run_id: _Optional[str] = ...) -> None: ...

class DisableRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id",)
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    def __init__(self, recurring_run_id: _Optional[str] = ...) -> None: ...

class DeleteRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id", "delete_runs")
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_RUNS_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    delete_runs: bool
    def __init__(self, recurring_run_id: _Optional[str] = ..., delete_runs: bool = ...) -> None: ...

class TriggerRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id",)
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    def __init__(self, recurring_run_id: _Optional[str] = ...) -> None: ...

class BackfillRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id", "start_time", "end_time", "validate_only")
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    validate_only: bool
    def __init__(self, recurring_run_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., validate_only: bool = ...) -> None: ...

class BackfillRecurringRunResponse(_message.Message):
    __slots__ = ("ticks_queued", "ticks_already_present", "queued_times")
    TICKS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    TICKS_ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TIMES_FIELD_NUMBER: _ClassVar[int]
    ticks_queued: int
    ticks_already_present: int
    queued_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    def __init__(self, ticks_queued: _Optional[int] = ..., ticks_already_present: _Optional[int] = ..., queued_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ...) -> None: ...

class WatchRecurringRunRequest(_message.Message):
    __slots__ = ("recurring_run_id",)
    RECURRING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    recurring_run_id: str
    def __init__(self, recurring_run_id: _Optional[str] = ...) -> None: ...

class PreviewScheduleRequest(_message.Message):
    __slots__ = ("trigger", "count", "after", "time_zone")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    count: int
    after: _timestamp_pb2.Timestamp
    time_zone: str
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ..., count: _Optional[int] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class PreviewScheduleResponse(_message.Message):
    __slots__ = ("fire_times", "time_zone")
    FIRE_TIMES_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    fire_times: _containers.RepeatedCompositeFieldContainer[FireTime]
    time_zone: str
    def __init__(self, fire_times: _Optional[_Iterable[_Union[FireTime, _Mapping]]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class FireTime(_message.Message):
    __slots__ = ("time", "utc_offset_seconds", "local_time", "dst_transition_day")
    TIME_FIELD_NUMBER: _ClassVar[int]
    UTC_OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_TIME_FIELD_NUMBER: _ClassVar[int]
    DST_TRANSITION_DAY_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    utc_offset_seconds: int
    local_time: str
    dst_transition_day: bool
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., utc_offset_seconds: _Optional[int] = ..., local_time: _Optional[str] = ..., dst_transition_day: bool = ...) -> None: ...
