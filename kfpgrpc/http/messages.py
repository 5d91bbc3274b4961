"""Requests and responses as KFP's REST gateway reads and writes them, into and out of the
generated protobuf messages: proto field names, enum names, RFC 3339 times (protobuf's JSON
mapping, `google.protobuf.json_format`).

A request message is filled as grpc-gateway fills it: the JSON body into the field the route
names (or the whole message), then path parameters and query parameters by field name. Fields
KFP has and kfpgrpc does not (`namespace`) are ignored, as KFP's gateway ignores unknown ones.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse

from kfpgrpc.api.convert import CarriesSpec, to_message
from kfpgrpc.errors import FieldViolation, InvalidArgument, ResourceExhausted
from kfpgrpc.json_values import protojson_numbers

M = TypeVar("M", bound=Message)
V = TypeVar("V", bound=CarriesSpec)
T = TypeVar("T")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body; ResourceExhausted when it is over `max_bytes` (--max-message-bytes),
    read no further."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ResourceExhausted(f"the request body is over {max_bytes:,} bytes (--max-message-bytes)")
    return bytes(body)


# Bodies over this many bytes are parsed in a worker thread: json_format.Parse of megabytes
# takes seconds of Python that would stall every other call, gRPC's included (the gRPC side
# decodes its messages off the loop too).
OFF_LOOP_BODY_BYTES = 65_536


async def body_into(request: Request, message: M, field: str, max_bytes: int) -> M:
    """`message` with the request's JSON body merged in. Raises ResourceExhausted for a body over
    `max_bytes` (--max-message-bytes, read no further), InvalidArgument naming `field` (the
    request field the body is) for a body that is not JSON of that message. A body over
    OFF_LOOP_BODY_BYTES is parsed in a worker thread."""
    body = await read_body(request, max_bytes)
    return await _off_loop_if_large(body, _parse_body, body, message, field)


async def body_with_mask(request: Request, message: M, field: str, max_bytes: int) -> tuple[M, list[str]]:
    """A PATCH as grpc-gateway reads one whose request message has `body: "<field>"` and a
    google.protobuf.FieldMask `update_mask`: `message` with the JSON body merged in (as
    body_into, same errors), and the update mask's paths. The mask is the `update_mask` query
    parameter's comma-separated proto field paths (`?update_mask=trigger,max_concurrency`, or
    the parameter repeated) when given; else the paths of the fields the body sets, as
    grpc-gateway infers them (runtime.FieldMaskFromRequestBody): an object of a message field is
    followed to its leaves; lists, maps, empty objects and google.protobuf types (Timestamp,
    Struct, Value: grpc-gateway goes into a Struct's keys, we stop at the field) are leaves. A key
    that is no field is left out, as the body's unknown fields are ignored."""
    body = await read_body(request, max_bytes)
    given = [path.strip() for value in request.query_params.getlist("update_mask") for path in value.split(",")]

    def parse() -> tuple[M, list[str]]:
        _parse_body(body, message, field)
        if given:
            return message, [path for path in given if path]
        return message, _set_paths(json.loads(body or b"{}"), message.DESCRIPTOR, "")

    return await _off_loop_if_large(body, parse)


async def _off_loop_if_large(body: bytes, parse: Callable[..., T], *args: Any) -> T:
    """`parse(*args)`, in a worker thread when `body` is over OFF_LOOP_BODY_BYTES."""
    if len(body) > OFF_LOOP_BODY_BYTES:
        return await asyncio.to_thread(parse, *args)
    return parse(*args)


def _parse_body(body: bytes, message: M, field: str) -> M:
    """`message` with the JSON `body` merged in (unknown fields ignored, as KFP's gateway does);
    InvalidArgument naming `field` for a body that is not JSON of the message, and naming each
    enum field given a name its enum lacks (`field.mode`; "body" is the whole request)."""
    try:
        json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise InvalidArgument.field(field, f"not a JSON {message.DESCRIPTOR.name}: {error}") from None
    if _has_enums(message.DESCRIPTOR) and (
        violations := _unknown_enum_names(json.loads(body or b"{}"), message.DESCRIPTOR, "" if field == "body" else field + ".")
    ):
        raise InvalidArgument(violations)
    return message


def _followed(field: FieldDescriptor) -> bool:
    """A message field whose JSON is walked for enums: not a map, not a google.protobuf type."""
    nested = field.message_type
    return nested is not None and not nested.GetOptions().map_entry and not nested.full_name.startswith("google.protobuf.")


@functools.lru_cache(maxsize=None)
def _has_enums(descriptor: Descriptor) -> bool:
    """Whether a message has an enum field, itself or in a message field it holds."""
    seen, pending = {descriptor}, [descriptor]
    while pending:
        for field in pending.pop().fields:
            if field.enum_type is not None:
                return True
            if _followed(field) and field.message_type not in seen:
                seen.add(field.message_type)
                pending.append(field.message_type)
    return False


def _unknown_enum_names(document: object, descriptor: Descriptor, prefix: str) -> list[FieldViolation]:
    """The enum fields of a JSON object of message `descriptor` given a name their enum does not
    define: json_format with ignore_unknown_fields drops such a value without a word, so that a
    misspelled `"mode": "ENABEL"` would create a recurring run disabled. (A number the enum
    lacks is kept, proto3 enums being open, and refused by the core's checks.)"""
    if not isinstance(document, dict):
        return []
    violations = []
    for key, value in document.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is None:
            continue
        values = value if field.is_repeated and isinstance(value, list) else [value]
        if field.enum_type is not None:
            known = field.enum_type.values_by_name
            violations += [
                FieldViolation(prefix + field.name, f"unknown {field.enum_type.name} name {name[:100]!r}; one of {', '.join(known)}")
                for name in values if isinstance(name, str) and name not in known
            ]
        elif _followed(field):
            for nested in values:
                violations += _unknown_enum_names(nested, field.message_type, prefix + field.name + ".")
    return violations


def _set_paths(document: object, descriptor: Descriptor, prefix: str) -> list[str]:
    """The field paths a JSON object of message `descriptor` sets, for body_with_mask."""
    if not isinstance(document, dict):
        return []
    paths = []
    for key, value in document.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is None:
            continue
        path = prefix + field.name
        nested = field.message_type
        if (nested is not None and not field.is_repeated and isinstance(value, dict) and value
                and not nested.full_name.startswith("google.protobuf.")):
            paths += _set_paths(value, nested, path + ".")
        else:
            paths.append(path)
    return paths


def params_into(message: M, params: Mapping[str, str | Sequence[str]]) -> M:
    """`message` with path or query parameters set by field name ("page_size=20"; a repeated
    field's values as a list, enum values by name); each value that does not parse as its field
    is a violation naming that field."""
    violations = []
    fields = message.DESCRIPTOR.fields
    known = {field.name for field in fields} | {field.json_name for field in fields}
    for name, value in params.items():
        if name not in known:  # KFP's fields that kfpgrpc lacks (namespace), ignored as KFP's gateway does
            continue
        try:
            # Not ignore_unknown_fields: that would also drop an unknown enum name (types=BOGUS) unsaid.
            json_format.ParseDict({name: _scalar(message, name, value)}, message)
        except json_format.ParseError as error:
            violations.append(FieldViolation(name, str(error)))
    if violations:
        raise InvalidArgument(violations)
    return message


# grpc-gateway reads a bool parameter as Go's strconv.ParseBool does.
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def _scalar(message: Message, name: str, value: str | Sequence[str]) -> object:
    """`value` as JSON of the field `name`: a string (or list of strings), but a bool for a bool
    field ("true")."""
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if isinstance(value, str) and field is not None and field.type == FieldDescriptor.TYPE_BOOL:
        return _BOOLS.get(value.lower(), value)
    return value


def request_message(request: Request, message: M) -> M:
    """`message` from the request's path and query parameters (a GET's or DELETE's request).
    A repeated field takes every value of its parameter (`types=A&types=B`), as grpc-gateway's;
    another field its last."""
    fields = message.DESCRIPTOR.fields_by_name
    query: dict[str, str | Sequence[str]] = {
        name: request.query_params.getlist(name) if name in fields and fields[name].label == FieldDescriptor.LABEL_REPEATED else value
        for name, value in request.query_params.items()
    }
    return params_into(params_into(message, query), request.path_params)


def message_json(message: Message, kfp_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`message` as KFP's JSON object: fields with their default value are left out, as KFP does,
    and integral numbers of google.protobuf.Values are written as integers (`3`, not `3.0`), as
    KFP's Go gateway (protojson) writes them, so kfp.Client reads back the ints it sent.
    `kfp_names` renames top-level fields whose name in KFP's proto differs from ours
    (ListRecurringRunsResponse's `recurringRuns`, which kfp-server-api reads by that name)."""
    body = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for ours, kfps in (kfp_names or {}).items():
        if ours in body:
            body[kfps] = body.pop(ours)
    return protojson_numbers(body)


def respond(message: Message, kfp_names: Mapping[str, str] | None = None) -> JSONResponse:
    """`message` as KFP's JSON (message_json) in a 200 response."""
    return JSONResponse(message_json(message, kfp_names))


def sse_frame(data: Message | Mapping[str, Any], event: str = "", event_id: str = "") -> bytes:
    """One Server-Sent Event: `event: <event>` and `id: <event_id>` lines when given, then
    `data: <JSON>` (a message as message_json writes it, or a JSON object as it is: an error
    body, `{}`) on one line, and the blank line that ends the event. JSON escapes newlines,
    so the data is always one line; `event` and `event_id` are ours, never a client's."""
    body = message_json(data) if isinstance(data, Message) else data
    # As Starlette's JSONResponse writes JSON.
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {text}\n\n".encode()


async def respond_off_loop(message: Message) -> JSONResponse:
    """respond() in a worker thread: a pipeline spec may take seconds to write as JSON."""
    return await asyncio.to_thread(respond, message)


async def respond_view(convert: Callable[[V], Message], view: V) -> JSONResponse:
    """The message `convert` makes of `view` (a RunView, a RecurringRunView), built and written
    off the loop when the view carries a pipeline spec (api.convert.to_message)."""
    message = await to_message(convert, view)
    return await respond_off_loop(message) if view.pipeline_spec else respond(message)
