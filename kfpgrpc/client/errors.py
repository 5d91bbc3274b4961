"""The client's one exception type."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
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
    def from_rpc_error(cls, error: grpc.RpcError) -> KfpGrpcError:
        call: grpc.Call = error  # type: ignore[assignment]  # every RpcError grpc raises is also a Call
        return cls(call.code(), call.details() or "", _field_violations(call))

    @classmethod
    def invalid_argument(cls, field: str, description: str) -> KfpGrpcError:
        """The error for a request the client refuses, shaped like the server's."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, f"invalid argument: {field}: {description}", {field: description})


def _field_violations(call: grpc.Call) -> dict[str, str]:
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a details trailer that contradicts the status: keep code and message
        return {}
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update({violation.field: violation.description for violation in bad_request.field_violations})
    return found
