"""The REST API's endpoints, each declared once as data: the table builds the Starlette routes
(kfpgrpc/http/app.py) and the OpenAPI document served at /openapi.json (kfpgrpc/http/openapi.py).

A route module lists its endpoints in `endpoints()`; an endpoint says what grpc-gateway's
`google.api.http` option says of a method (verb, path, body) plus the messages in and out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import empty_pb2
from google.protobuf.message import Message
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from kfpgrpc.http.errors import Handler, answers_errors

_PATH_PARAMETER = re.compile(r"{([^}:]+)}")
_ID_PARAMETER = re.compile(r"{([^}:]+_id)}")


class _IdConvertor(Convertor[str]):
    """A path segment that is an id the server made (a UUID): never with a `:`, so that a custom
    verb with the wrong method (`GET .../runs/{id}:terminate`) is 405, not a run named
    `{id}:terminate` that is not found."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())


@dataclass(frozen=True)
class Endpoint:
    """One REST endpoint.

    - `method`, `path`: the HTTP method and Starlette's path template; each `{name}` in it is a
      field of `request` (or of its `body` field's message), filled as grpc-gateway fills it.
    - `handler`: the route's coroutine; what it raises is answered by `answers_errors`.
    - `summary`: one line for the document.
    - `request`: the request message. Its fields not in the path and not the body are the query
      parameters (grpc-gateway's rule); None when the request is no message (healthz, uploads).
    - `body`: where the JSON body goes, as grpc-gateway's `body:` says: "*" the whole request
      message, a field name (that field's message), "" no body.
    - `response`: the message the endpoint answers (for a stream: each event's data).
    - `stream`: the answer is `text/event-stream`, each event's data one JSON `response`.
    - `upload`: the multipart form part carrying a file ("uploadfile"), for the pipeline uploads.
    - `query`: query parameters that are no field of `request` (an upload's `name`), by name with
      their description.
    - `renamed`: top-level response fields written under another name (respond's `kfp_names`).
    """

    method: str
    path: str
    handler: Handler
    summary: str
    request: type[Message] | None = None
    response: type[Message] = empty_pb2.Empty
    body: str = ""
    stream: bool = False
    upload: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)

    def route(self) -> Route:
        """The Starlette route; its `..._id` parameters are `id` segments (_IdConvertor)."""
        return Route(_ID_PARAMETER.sub(r"{\1:id}", self.path), answers_errors(self.handler), methods=[self.method])
