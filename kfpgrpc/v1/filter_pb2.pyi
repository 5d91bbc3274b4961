import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Filter(_message.Message):
    __slots__ = ("predicates",)
    PREDICATES_FIELD_NUMBER: _ClassVar[int]
    predicates: _containers.RepeatedCompositeFieldContainer[Predicate]
    def __init__(self, predicates: _Optional[_Iterable[_Union[Predicate, _Mapping]]] = ...) -> None: ...

class Predicate(_message.Message):
    __slots__ = ("operation", "key", "int_value", "long_value", "string_value", "timestamp_value", "int_values", "long_values", "string_values")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATION_UNSPECIFIED: _ClassVar[Predicate.Operation]
        EQUALS: _ClassVar[Predicate.Operation]
        NOT_EQUALS: _ClassVar[Predicate.Operation]
        GREATER_THAN: _ClassVar[Predicate.Operation]
        GREATER_THAN_EQUALS: _ClassVar[Predicate.Operation]
        LESS_THAN: _ClassVar[Predicate.Operation]
        LESS_THAN_EQUALS: _ClassVar[Predicate.Operation]
        IN: _ClassVar[Predicate.Operation]
        IS_SUBSTRING: _ClassVar[Predicate.Operation]
    OPERATION_UNSPECIFIED: Predicate.Operation
    EQUALS: Predicate.Operation
    NOT_EQUALS: Predicate.Operation
    GREATER_THAN: Predicate.Operation
    GREATER_THAN_EQUALS: Predicate.Operation
    LESS_THAN: Predicate.Operation
    LESS_THAN_EQUALS: Predicate.Operation
    IN: Predicate.Operation
    IS_SUBSTRING: Predicate.Operation
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    LONG_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    LONG_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    operation: Predicate.Operation
    key: str
    int_value: int
    long_value: int
    string_value: str
    timestamp_value: _timestamp_pb2.Timestamp
    int_values: IntValues
    long_values: LongValues
    string_values: StringValues
    def __init__(self, operation: _Optional[_Union[Predicate.Operation, str]] = ..., key: _Optional[str] = ..., int_value: _Optional[int] = ..., long_value: _Optional[int] = ..., string_value: _Optional[str] = ..., timestamp_value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., int_values: _Optional[_Union[IntValues, _Mapping]] = ..., long_values: _Optional[_Union[LongValues, _Mapping]] = ..., string_values: _Optional[_Union[StringValues, _Mapping]] = ...) -> None: ...

class IntValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class StringValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class LongValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...
