"""The OpenAPI 3.1 document of the REST API (served at /openapi.json), generated from the endpoint
table (kfpgrpc/http/endpoints.py) and the protobuf message descriptors: nothing is written twice.

Schemas follow protobuf's JSON mapping as kfpgrpc/http/messages.py writes it
(`json_format.MessageToDict(preserving_proto_field_name=True)`): fields by proto name, enums as
their names, int64s as strings, int32s as numbers, google.protobuf.Timestamp as an RFC 3339
date-time string, Struct and Value free-form (integral numbers in them written as integers),
maps as objects, FieldMask as a comma-separated string. Errors are grpc-gateway's body, the
`google.rpc.Status` of kfpgrpc/http/errors.py. Query parameters follow grpc-gateway's rule: the
request message's fields bound neither by the path nor by the body.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.rpc import status_pb2

from kfpgrpc.http.endpoints import Endpoint

OPENAPI_PATH = "/openapi.json"
PREFIX = "/apis/v2beta1/"
OUR_PACKAGE = "kfpgrpc.v1."

Schema = dict[str, Any]

_INT64 = {"type": "string", "format": "int64"}
_UINT64 = {"type": "string", "format": "uint64"}
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "uint32"}
_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: _INT64, FieldDescriptor.TYPE_SINT64: _INT64, FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64, FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_INT32: _INT32, FieldDescriptor.TYPE_SINT32: _INT32, FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32, FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# google.protobuf's types with a JSON form of their own (protobuf's JSON mapping).
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "any JSON value"},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string", "description": "field paths, comma-separated"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "additionalProperties": True},
}
_WRAPPERS = {f"google.protobuf.{kind}Value" for kind in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")}


class _Schemas:
    """The components/schemas of the document, filled as messages and enums are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def message(self, descriptor: Descriptor) -> Schema:
        """A reference to `descriptor`'s schema (a well-known type's JSON form inline)."""
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        if descriptor.full_name in _WRAPPERS:
            return self.value(descriptor.fields_by_name["value"])
        name = _component_name(descriptor.full_name)
        if name not in self.components:
            self.components[name] = {}  # taken before the fields: a message may contain itself
            self.components[name] = self.object(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def object(self, descriptor: Descriptor, renamed: dict[str, str] | None = None) -> Schema:
        """`descriptor`'s fields as an object schema, top-level fields `renamed` (ours → written)."""
        names = renamed or {}
        properties = {names.get(f.name, f.name): self.field(f) for f in descriptor.fields}
        # No other fields: the server writes none (requests' unknown fields are ignored, not used).
        return {"type": "object", "title": descriptor.name, "properties": properties, "additionalProperties": False}

    def field(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.value(field.message_type.fields_by_name["value"])}
        if field.is_repeated:
            return {"type": "array", "items": self.value(field)}
        return self.value(field)

    def value(self, field: FieldDescriptor) -> Schema:
        """One value of `field` (an item, for a repeated field)."""
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(_SCALARS[field.type])

    def enum(self, descriptor: EnumDescriptor) -> Schema:
        name = _component_name(descriptor.full_name)
        self.components.setdefault(name, {"type": "string", "title": descriptor.name, "enum": [v.name for v in descriptor.values]})
        return {"$ref": f"#/components/schemas/{name}"}


def _component_name(full_name: str) -> str:
    """Our messages by their name within the package (`Run`, `Run.StorageState`), others in full."""
    return full_name.removeprefix(OUR_PACKAGE)


def _tag(path: str) -> str:
    """The resource an endpoint is about: `runs` for /apis/v2beta1/runs/{run_id}:retry."""
    return path.removeprefix(PREFIX).lstrip("/").split("/")[0].split(":")[0].removesuffix(".json")


def _parameters(endpoint: Endpoint, schemas: _Schemas) -> list[Schema]:
    in_path = endpoint.path_parameters
    parameters: list[Schema] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in in_path]
    if endpoint.request is not None and endpoint.body != "*":
        for field in endpoint.request.DESCRIPTOR.fields:
            if field.name in in_path or field.name == endpoint.body:
                continue
            if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
                continue  # grpc-gateway's dotted names for a message's fields: not read here
            parameters.append({"name": field.name, "in": "query", "schema": schemas.field(field)})
    parameters += [{"name": name, "in": "query", "description": text, "schema": {"type": "string"}} for name, text in endpoint.query.items()]
    return parameters


def _request_body(endpoint: Endpoint, schemas: _Schemas) -> Schema | None:
    if endpoint.upload:
        part = {"type": "string", "contentMediaType": "application/octet-stream"}
        form = {"type": "object", "properties": {endpoint.upload: part}, "required": [endpoint.upload]}
        return {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    if not endpoint.body or endpoint.request is None:
        return None
    if endpoint.body == "*":
        schema = schemas.message(endpoint.request.DESCRIPTOR)
    else:
        schema = schemas.message(endpoint.request.DESCRIPTOR.fields_by_name[endpoint.body].message_type)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(endpoint: Endpoint, schemas: _Schemas, open_paths: Collection[str]) -> Schema:
    descriptor = endpoint.response.DESCRIPTOR
    if endpoint.renamed:
        schema = schemas.object(descriptor, dict(endpoint.renamed))
    else:
        schema = schemas.message(descriptor)
    if endpoint.stream:
        content = {"text/event-stream": {
            "schema": {"type": "string", "description": f"Server-sent events; each event's data is one JSON {descriptor.name}."},
            "x-event-data": schema,
        }}
    else:
        content = {"application/json": {"schema": schema}}
    operation: Schema = {
        "operationId": endpoint.handler.__name__,
        "summary": endpoint.summary,
        "tags": [_tag(endpoint.path)],
        "parameters": _parameters(endpoint, schemas),
        "responses": {
            "200": {"description": "OK", "content": content},
            "default": {
                "description": "An error: grpc-gateway's body (the gRPC code, a message, details such as google.rpc.BadRequest).",
                "content": {"application/json": {"schema": schemas.message(status_pb2.Status.DESCRIPTOR)}},
            },
        },
    }
    if (body := _request_body(endpoint, schemas)) is not None:
        operation["requestBody"] = body
    if endpoint.path in open_paths:
        operation["security"] = []  # open even when the server requires a bearer token
    return operation


def openapi_document(endpoints: Sequence[Endpoint], *, bearer: bool, open_paths: Collection[str], version: str) -> Schema:
    """The OpenAPI 3.1 document of `endpoints`. `bearer`: the server requires `Authorization:
    Bearer <token>` (--auth-token) on every path but `open_paths`. Raises ValueError when two
    endpoints share a handler name (the operationId) or a method and path."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Schema]] = {}
    seen: set[str] = set()
    for endpoint in endpoints:
        operation = _operation(endpoint, schemas, open_paths)
        if operation["operationId"] in seen or endpoint.method.lower() in paths.get(endpoint.path, {}):
            raise ValueError(f"{endpoint.method} {endpoint.path}: a second endpoint with that handler name or method and path")
        seen.add(operation["operationId"])
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    document: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "kfpgrpc REST API",
            "version": version,
            "description": "Kubeflow Pipelines' v2beta1 REST API as kfpgrpc serves it, with kfpgrpc's additions.",
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items()))},
    }
    if bearer:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def openapi_json(endpoints: Sequence[Endpoint], *, bearer: bool, open_paths: Collection[str], version: str) -> bytes:
    """openapi_document as the bytes /openapi.json answers."""
    return json.dumps(openapi_document(endpoints, bearer=bearer, open_paths=open_paths, version=version)).encode()
