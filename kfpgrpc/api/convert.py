"""Conversions between protobuf well-known types and the core's plain values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from kfpgrpc.clock import MICROS_PER_SECOND
from kfpgrpc.store.listing import ListRequest


def timestamp(micros: int) -> timestamp_pb2.Timestamp | None:
    """0 (unset) becomes an absent field."""
    if not micros:
        return None
    seconds, rest = divmod(micros, MICROS_PER_SECOND)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def micros(message: Any, field: str) -> int:
    """A Timestamp field in microseconds; 0 when the field is not set."""
    if not message.HasField(field):
        return 0
    stamp = getattr(message, field)
    return stamp.seconds * MICROS_PER_SECOND + stamp.nanos // 1000


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def values(value: dict[str, Any]) -> dict[str, struct_pb2.Value]:
    """A dict of plain values as the values of a proto map<string, google.protobuf.Value>."""
    return dict(struct(value).fields)


def values_to_dict(fields: Mapping[str, struct_pb2.Value]) -> dict[str, Any]:
    return {name: json_format.MessageToDict(value) for name, value in fields.items()}


def list_request(request: Any) -> ListRequest:
    """Every List*Request has these four fields under the same names."""
    return ListRequest(request.page_size, request.page_token, request.sort_by, request.filter)
