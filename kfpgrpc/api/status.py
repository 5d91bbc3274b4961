"""The one place where errors become statuses (google.rpc.Status), for gRPC and for HTTP.

Domain errors map to the code a client can act on; InvalidArgument carries a
google.rpc.BadRequest detail with one field violation per bad field. Anything else is a bug:
INTERNAL, with the details kept in the server log rather than sent to the client.
`to_grpc_status` sends it as gRPC trailers; kfpgrpc/http/errors.py as KFP's REST gateway does.
"""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kfpgrpc.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

# A status travels in trailers: its message in grpc-message (percent-encoded, so up to three
# bytes per byte) and again, with the details, in grpc-status-details-bin (base64). gRPC clients
# refuse trailers over 8 KiB by default, so the message is cut and a request with many bad
# fields gets the first ones that fit, with a count of the rest: an 8 KB id or field name in a
# request must not turn its answer into a RESOURCE_EXHAUSTED of the client's own.
MAX_VIOLATIONS = 20
MAX_DESCRIPTION = 300  # characters of each violation's field and description
MAX_MESSAGE = 1200  # characters (and UTF-8 bytes) of the message
TRAILER_BUDGET = 7000  # bytes of both trailers; the rest of 8 KiB is left to other headers

_CODES: dict[type[DomainError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    OutOfRange: code_pb2.OUT_OF_RANGE,
    Unavailable: code_pb2.UNAVAILABLE,
}


def to_grpc_status(exc: BaseException) -> grpc.Status:
    return rpc_status.to_status(to_status(exc))


def to_status(exc: BaseException) -> status_pb2.Status:
    """The status that answers `exc`: its code, its message, and for InvalidArgument the
    BadRequest detail (cut to fit gRPC trailers; HTTP shows the same, so both agree)."""
    if isinstance(exc, NotImplementedError):
        return status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message="not implemented yet")
    if not isinstance(exc, DomainError):
        return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see the server log")
    code = next(_CODES[kind] for kind in type(exc).__mro__ if kind in _CODES)  # subclasses map as their base
    status = status_pb2.Status(code=code, message=_cut(exc.message, MAX_MESSAGE))
    if isinstance(exc, InvalidArgument):
        shown = [
            error_details_pb2.BadRequest.FieldViolation(field=_cut(v.field, MAX_DESCRIPTION), description=_cut(v.description, MAX_DESCRIPTION))
            for v in exc.violations[:MAX_VIOLATIONS]
        ]
        detail = status.details.add()
        detail.Pack(error_details_pb2.BadRequest(field_violations=shown))
        while len(shown) < len(exc.violations) or _trailer_size(status) > TRAILER_BUDGET:
            status.message = f"{len(exc.violations)} invalid fields; the first {len(shown)} are in the details"
            if _trailer_size(status) <= TRAILER_BUDGET or len(shown) == 1:
                break
            shown.pop()
            detail.Pack(error_details_pb2.BadRequest(field_violations=shown))
    return status


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters and `limit` bytes of UTF-8."""
    return text[:limit].encode()[:limit].decode(errors="ignore")


def _trailer_size(status: status_pb2.Status) -> int:
    """Bytes of grpc-message (percent-encoded as gRPC does) and grpc-status-details-bin."""
    message = sum(1 if 0x20 <= byte <= 0x7E and byte != 0x25 else 3 for byte in status.message.encode())
    return message + 4 * -(-status.ByteSize() // 3)
