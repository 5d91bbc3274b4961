"""The one place where errors become gRPC statuses.

Domain errors map to the code a client can act on; InvalidArgument carries a
google.rpc.BadRequest detail with one field violation per bad field. Anything else is a bug:
INTERNAL, with the details kept in the server log rather than sent to the client.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kfpgrpc.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

# Details travel in a trailer; clients refuse metadata over 8 KiB by default, so a request
# with very many bad fields gets the first ones and a count of the rest.
MAX_VIOLATIONS = 20
MAX_DESCRIPTION = 300

_CODES: dict[type[DomainError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    OutOfRange: code_pb2.OUT_OF_RANGE,
    Unavailable: code_pb2.UNAVAILABLE,
}


def to_grpc_status(exc: BaseException) -> grpc.Status:
    if isinstance(exc, NotImplementedError):
        return rpc_status.to_status(status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message="not implemented yet"))
    if not isinstance(exc, DomainError):
        return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see the server log"))
    code = next(_CODES[kind] for kind in type(exc).__mro__ if kind in _CODES)  # subclasses map as their base
    status = status_pb2.Status(code=code, message=exc.message)
    if isinstance(exc, InvalidArgument):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field[:MAX_DESCRIPTION], description=v.description[:MAX_DESCRIPTION])
            for v in exc.violations[:MAX_VIOLATIONS]
        ]
        if len(exc.violations) > MAX_VIOLATIONS:
            status.message = f"{len(exc.violations)} invalid fields; the first {MAX_VIOLATIONS} are in the details"
        else:
            status.message = status.message[: MAX_DESCRIPTION * 4]
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=violations))
        status.details.append(detail)
    return rpc_status.to_status(status)
