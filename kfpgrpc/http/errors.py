"""Errors as KFP's REST gateway answers them: the status of kfpgrpc/api/status.py (the one place
errors become statuses) as JSON, with the HTTP status that goes with its gRPC code.

Body (grpc-gateway's, proto field names):
`{"code": 3, "message": "invalid argument: sort_by: ...", "details": [{"@type":
"type.googleapis.com/google.rpc.BadRequest", "field_violations": [{"field": "sort_by",
"description": "..."}]}]}`; `details` is `[]` when there are none.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from kfpgrpc.api.status import to_status

log = logging.getLogger("kfpgrpc.http")

# grpc-gateway's runtime.HTTPStatusFromCode, with FAILED_PRECONDITION as 412 (grpc-gateway v1's,
# which KFP's REST API answered; v2 says 400): a code missing here is a 500.
_HTTP_STATUS = {
    code_pb2.CANCELLED: 499,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 412,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.UNAVAILABLE: 503,
}

# Starlette's own refusals (no route, wrong method), as the gateway codes them.
_ROUTING_CODES = {404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED}


def _body(status: status_pb2.Status) -> dict[str, Any]:
    """`status` as the gateway's JSON object."""
    body: dict[str, Any] = json_format.MessageToDict(status, preserving_proto_field_name=True)
    body.setdefault("code", status.code)  # MessageToDict leaves out zero values
    body.setdefault("message", "")
    body.setdefault("details", [])
    return body


def status_response(status: status_pb2.Status, http_status: int | None = None) -> JSONResponse:
    """`status` as the gateway's JSON; the HTTP status goes with its code unless given."""
    return JSONResponse(_body(status), status_code=http_status or _HTTP_STATUS.get(status.code, 500))


def _status(exc: BaseException) -> status_pb2.Status:
    """A DomainError's status; anything else is a bug, INTERNAL, with the traceback logged (as
    the gRPC side does)."""
    status = to_status(exc)
    if status.code == code_pb2.INTERNAL:
        log.error("internal error", exc_info=exc)
    return status


def error_response(exc: BaseException) -> JSONResponse:
    """The answer to `exc` raised by a handler (see _status)."""
    return status_response(_status(exc))


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body error_response would answer `exc` with: what a stream that has started
    sends as its `error` event."""
    return _body(_status(exc))


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's refusals (404 no such path, 405 wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    code = _ROUTING_CODES.get(exc.status_code, code_pb2.UNKNOWN)
    return status_response(status_pb2.Status(code=code, message=exc.detail), exc.status_code)


Handler = Callable[[Request], Awaitable[Response]]


def answers_errors(handler: Handler) -> Handler:
    """`handler`, answering what it raises as `error_response` does (a bug is logged once,
    here, rather than again by Starlette and uvicorn). A client that hung up before its body was
    read is no error of ours: the request is cancelled, logged at debug level, and the answer
    (499, CANCELLED, as grpc-gateway's) goes nowhere."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ClientDisconnect:
            log.debug("request cancelled: the client disconnected", extra={"fields": {"path": request.url.path}})
            return Response(status_code=_HTTP_STATUS[code_pb2.CANCELLED])
        except Exception as exc:
            return error_response(exc)

    return wrapped
