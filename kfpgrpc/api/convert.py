"""Conversions between protobuf well-known types and the core's plain values.

Input conversions check what the proto types allow but the server cannot hold, naming the
request field: Timestamps outside their documented range (years 1 to 9999, nanos below 10^9),
and NaN or infinite numbers in a google.protobuf.Value, which JSON (our storage, and KFP's
pipeline specs) cannot represent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US
from kfpgrpc.errors import InvalidArgument
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
    message.update(value)
    return message


def struct_to_dict(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A Struct as a dict of plain JSON values; raises InvalidArgument naming the path below
    `field` of a NaN or infinite number (e.g. `pipeline_spec.root.inputDefinitions`)."""
    try:
        return _plain_struct(message)
    except _NonFinite as error:
        raise error.violation(field) from None


def values(value: dict[str, Any]) -> dict[str, struct_pb2.Value]:
    """A dict of plain values as the values of a proto map<string, google.protobuf.Value>."""
    return dict(struct(value).fields)


def values_to_dict(fields: Mapping[str, struct_pb2.Value], field: str) -> dict[str, Any]:
    """A map<string, google.protobuf.Value> as plain values; see struct_to_dict."""
    plain = {}
    for name, value in fields.items():
        try:
            plain[name] = _plain(value)
        except _NonFinite as error:
            raise error.violation(f"{field}.{name}") from None
    return plain


class _NonFinite(Exception):
    """A NaN or infinite number; the path to it is collected while the conversion unwinds, so
    that converting a valid value (a 50 MB spec) builds no paths."""

    def __init__(self, number: float) -> None:
        super().__init__()
        self.number = number
        self.steps: list[str] = []  # innermost first

    def violation(self, field: str) -> InvalidArgument:
        shown = "NaN" if math.isnan(self.number) else ("Infinity" if self.number > 0 else "-Infinity")
        path = field + "".join(reversed(self.steps))
        return InvalidArgument.field(path, f"must be a finite number (JSON has no {shown}), got {shown}")


def _plain(value: struct_pb2.Value) -> Any:
    """Value -> None, float, str, bool, dict or list, as json_format.MessageToDict gives."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise _NonFinite(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _plain_struct(value.struct_value)
    if kind == "list_value":
        items = []
        for index, item in enumerate(value.list_value.values):
            try:
                items.append(_plain(item))
            except _NonFinite as error:
                error.steps.append(f"[{index}]")
                raise
        return items
    return None  # null_value, or unset (which JSON also shows as null)


def _plain_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    plain = {}
    for key, value in message.fields.items():
        try:
            plain[key] = _plain(value)
        except _NonFinite as error:
            error.steps.append(f".{key}")
            raise
    return plain


def list_request(request: Any) -> ListRequest:
    """Every List*Request has these four fields under the same names."""
    return ListRequest(request.page_size, request.page_token, request.sort_by, request.filter)
