"""The client's exception type, and its case for a server that cannot be reached."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class KfpGrpcError(Exception):
    """A failed call, or a request the client refused before sending it.

    `code` is the gRPC status code, `message` the server's message, and `field_violations`
    maps each bad request field (e.g. `run.runtime_config.parameters.a`) to what is wrong
    with it, from the google.rpc.BadRequest detail of an INVALID_ARGUMENT status.
    """

    def __init__(self, code: grpc.StatusCode, message: str, field_violations: Mapping[str, str] | None = None) -> None:
        self.code = code
        self.message = message
        self.field_violations = dict(field_violations or {})
        super().__init__(self.__str__())

    def __str__(self) -> str:
        """`CODE: message`, plus the violations the message does not already spell out."""
        unsaid = [f"{field}: {description}" for field, description in self.field_violations.items()
                  if f"{field}: {description}" not in self.message]
        return "; ".join([f"{self.code.name}: {self.message}", *unsaid])

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, server: str) -> KfpGrpcError:
        """The error of a failed call to `server`: a ServerUnreachable when no kfpgrpc server
        answered it."""
        call: grpc.Call = error  # type: ignore[assignment]  # every RpcError grpc raises is also a Call
        status = _status(call)
        if call.code() == grpc.StatusCode.UNAVAILABLE and status is None:
            return ServerUnreachable(server, call.details() or "")
        return cls(call.code(), call.details() or "", _field_violations(status))

    @classmethod
    def invalid_argument(cls, field: str, description: str) -> KfpGrpcError:
        """The error for a request the client refuses, shaped like the server's."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, f"invalid argument: {field}: {description}", {field: description})


class ServerUnreachable(KfpGrpcError):
    """UNAVAILABLE, and no kfpgrpc server said so: nothing listens at the address, its host
    name is unknown, the connection or its TLS handshake failed, or it dropped. (A kfpgrpc
    server sends every status it chooses with a google.rpc.Status trailer; gRPC's own
    connection errors have none.) `server` is the address tried, `reason` gRPC's words."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(grpc.StatusCode.UNAVAILABLE, f"cannot reach kfpgrpc at {server} ({reason})")


def _status(call: grpc.Call) -> status_pb2.Status | None:
    """The google.rpc.Status trailer of a failed call; None without one."""
    try:
        return rpc_status.from_call(call)
    except ValueError:  # a details trailer that contradicts the status: keep code and message
        return status_pb2.Status()


def _field_violations(status: status_pb2.Status | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update({violation.field: violation.description for violation in bad_request.field_violations})
    return found
