"""Conversions between protobuf well-known types and the core's plain values.

Input conversions check what the proto types allow but the server cannot hold, naming the
request field: Timestamps outside their documented range (years 1 to 9999, nanos below 10^9),
NaN or infinite numbers in a google.protobuf.Value, which JSON (our storage, and KFP's pipeline
specs) cannot represent, and parameters nested deeper than kfpgrpc.json_values allows.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US
from kfpgrpc.errors import InvalidArgument
from kfpgrpc.json_values import MAX_DEPTH, non_finite_name
from kfpgrpc.store.listing import ListRequest

_MIN_SECONDS = MIN_TIME_US // MICROS_PER_SECOND
_MAX_SECONDS = MAX_TIME_US // MICROS_PER_SECOND
_NANOS_PER_SECOND = 1_000_000_000


def timestamp(micros: int) -> timestamp_pb2.Timestamp | None:
    """0 (unset) becomes an absent field. A time outside Timestamp's range, which only a row
    written before the range was checked can hold, shows as the nearest end of the range."""
    if not micros:
        return None
    seconds, rest = divmod(min(max(micros, MIN_TIME_US), MAX_TIME_US), MICROS_PER_SECOND)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def micros(message: Any, name: str, field: str) -> int:
    """The Timestamp field `name` of `message` in microseconds (nanos truncated); 0 when it is
    not set. Raises InvalidArgument naming `field` outside google.protobuf.Timestamp's range:
    seconds from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, nanos from 0 to 999,999,999."""
    if not message.HasField(name):
        return 0
    stamp = getattr(message, name)
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS:
        raise InvalidArgument.field(
            field, f"seconds must be between {_MIN_SECONDS} (0001-01-01) and {_MAX_SECONDS} (9999-12-31), got {stamp.seconds}"
        )
    if not 0 <= stamp.nanos < _NANOS_PER_SECOND:
        raise InvalidArgument.field(field, f"nanos must be between 0 and 999999999, got {stamp.nanos}")
    return stamp.seconds * MICROS_PER_SECOND + stamp.nanos // 1000


def enum_name(enum: EnumTypeWrapper, number: int, field: str) -> str:
    """The name of `number` in `enum`. Proto3 enums are open, so any int32 arrives: a number
    the enum does not define raises InvalidArgument naming `field` and the valid values."""
    try:
        return enum.Name(number)
    except ValueError:
        known = ", ".join(f"{name} ({value})" for name, value in enum.items())
        raise InvalidArgument.field(field, f"{number} is not a value of {enum.DESCRIPTOR.name}; one of: {known}") from None


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    try:
        message.update(value)
    except OverflowError:  # an integer beyond a double, stored before task outputs were checked
        message.update(_doubles(value))
    return message


def _doubles(value: Any) -> Any:
    """`value` with each integer beyond a double's range as the infinity of its sign."""
    if isinstance(value, dict):
        return {key: _doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_doubles(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
        return math.inf if value > 0 else -math.inf
    return value


def struct_to_dict(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A Struct (a pipeline spec) as a dict of plain JSON values; raises InvalidArgument naming
    the path below `field` of a NaN or infinite number (e.g. `pipeline_spec.root.x`)."""
    try:
        return _plain_struct(message, _UNBOUNDED)
    except _Refused as error:
        raise error.violation(field) from None


async def spec_to_dict(message: struct_pb2.Struct, field: str, max_bytes: int) -> dict[str, Any]:
    """A pipeline spec from a request, as a dict. Raises InvalidArgument naming `field` when its
    protobuf size is over `max_bytes` (measured before anything is decoded). Decoded in a worker
    thread: a spec of megabytes takes seconds of Python that would stall every other call."""
    size = message.ByteSize()
    if size > max_bytes:
        raise InvalidArgument.field(
            field, f"is {size:,} bytes; this server accepts pipeline specs of at most {max_bytes:,} bytes (--max-spec-bytes)"
        )
    return await asyncio.to_thread(struct_to_dict, message, field)


class CarriesSpec(Protocol):
    """A view that may carry its pipeline spec (RunView, RecurringRunView)."""

    @property
    def pipeline_spec(self) -> dict[str, Any] | None: ...


_View = TypeVar("_View", bound=CarriesSpec)
_Message = TypeVar("_Message")


async def to_message(convert: Callable[[_View], _Message], view: _View) -> _Message:
    """`convert(view)`; in a worker thread when the view carries a pipeline spec, whose Struct
    takes seconds of Python to build when the spec is large."""
    if view.pipeline_spec:
        return await asyncio.to_thread(convert, view)
    return convert(view)


def values(value: dict[str, Any]) -> dict[str, struct_pb2.Value]:
    """A dict of plain values as the values of a proto map<string, google.protobuf.Value>."""
    return dict(struct(value).fields)


def values_to_dict(fields: Mapping[str, struct_pb2.Value], field: str) -> dict[str, Any]:
    """A map<string, google.protobuf.Value> (parameters) as plain values. Raises InvalidArgument
    naming the path below `field` of a value out of json_values' bounds: a NaN or infinite
    number, or nesting deeper than json_values.MAX_DEPTH."""
    plain = {}
    for name, value in fields.items():
        try:
            plain[name] = _plain(value, MAX_DEPTH)
        except _Refused as error:
            raise error.violation(f"{field}.{name}") from None
    return plain


_UNBOUNDED = 1 << 30  # protobuf's parser already refuses requests nested over 100 deep


class _Refused(Exception):
    """A value out of bounds; the path to it is collected while the conversion unwinds, so
    that converting a valid value (a 50 MB spec) builds no paths."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
        self.steps: list[str] = []  # innermost first

    def violation(self, field: str) -> InvalidArgument:
        return InvalidArgument.field(field + "".join(reversed(self.steps)), self.description)


def _plain(value: struct_pb2.Value, depth: int) -> Any:
    """Value -> None, float, str, bool, dict or list, as json_format.MessageToDict gives;
    `depth`: how many levels of lists and objects are still allowed."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            shown = non_finite_name(number)
            raise _Refused(f"must be a finite number (JSON has no {shown}), got {shown}")
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind in ("struct_value", "list_value") and depth == 0:
        raise _Refused(f"must not nest lists and objects deeper than {MAX_DEPTH} levels")
    if kind == "struct_value":
        return _plain_struct(value.struct_value, depth - 1)
    if kind == "list_value":
        items = []
        for index, item in enumerate(value.list_value.values):
            try:
                items.append(_plain(item, depth - 1))
            except _Refused as error:
                error.steps.append(f"[{index}]")
                raise
        return items
    return None  # null_value, or unset (which JSON also shows as null)


def _plain_struct(message: struct_pb2.Struct, depth: int) -> dict[str, Any]:
    plain = {}
    for key, value in message.fields.items():
        try:
            plain[key] = _plain(value, depth)
        except _Refused as error:
            error.steps.append(f".{key}")
            raise
    return plain


def list_request(request: Any) -> ListRequest:
    """Every List*Request has these four fields under the same names."""
    return ListRequest(request.page_size, request.page_token, request.sort_by, request.filter)
