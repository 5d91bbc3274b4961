"""Server interceptors: bearer-token authentication, and error mapping with an access log.

Both only wrap kfpgrpc's own services; health and reflection stay open and untouched, as
Kubernetes probes and grpcurl expect.

An unauthenticated call is refused before its request is read: grpc.aio reads (and buffers)
a unary request in full before it calls the handler, so the refusal is a request-*streaming*
handler that never reads. Request bytes that do not decode as the method's message are
INVALID_ARGUMENT, not the UNKNOWN (and a logged traceback) that grpc.aio gives them.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError

from kfpgrpc.api.status import to_grpc_status
from kfpgrpc.errors import DomainError, InvalidArgument, Unauthenticated

log = logging.getLogger("kfpgrpc.rpc")

OWN_SERVICES_PREFIX = "/kfpgrpc.v1."


def _rebuild(
    handler: grpc.RpcMethodHandler,
    unary: Callable[..., Any],
    stream: Callable[..., Any],
    deserializer: Callable[[bytes], Any],
) -> grpc.RpcMethodHandler:
    """Wrap a unary-request handler with `deserializer`, keeping its arity and serializer."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), deserializer, handler.response_serializer)
    return handler  # kfpgrpc has no client-streaming RPCs


class _Malformed:
    """Stands for a request whose bytes did not decode; the handler refuses it."""

    def __init__(self, message_name: str) -> None:
        self.error = InvalidArgument([], f"the request is not a valid {message_name} message")


@functools.cache
def _request_message_name(method: str) -> str:
    """`kfpgrpc.v1.GetRunRequest` for `/kfpgrpc.v1.RunService/GetRun`."""
    service, _, name = method.strip("/").rpartition("/")
    return str(descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).input_type.full_name)


def _tolerant(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    """`deserializer`, giving a _Malformed instead of raising: an exception there would be
    UNKNOWN with a traceback in the log, for each such request."""
    message_name = _request_message_name(method)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _Malformed(message_name)

    return deserialize


def _decoded(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise request.error
    return request


class _OwnServicesInterceptor(grpc.aio.ServerInterceptor):
    """Applies `wrap` to the handlers of kfpgrpc's services and leaves the others alone."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(OWN_SERVICES_PREFIX):
            return handler
        return self.wrap(handler, details)

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class ErrorMappingInterceptor(_OwnServicesInterceptor):
    """Turns exceptions into statuses (kfpgrpc.api.status) and logs every call."""

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method

        def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with _mapped_errors(method, context):
                    return await behavior(_decoded(request), context)

            return wrapper

        def stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with _mapped_errors(method, context):
                    async for response in behavior(_decoded(request), context):
                        yield response

            return wrapper

        return _rebuild(handler, unary, stream, _tolerant(handler.request_deserializer, method))


@contextlib.asynccontextmanager
async def _mapped_errors(method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Abort the call with the status of any exception raised inside; log the call."""
    started = time.perf_counter()
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure gets a status
        if not isinstance(exc, (DomainError, NotImplementedError)):
            log.exception("unexpected error", extra={"fields": {"method": method}})
        await context.abort_with_status(to_grpc_status(exc))
    finally:
        _log_call(method, context, started)


def _log_call(method: str, context: grpc.aio.ServicerContext, started: float) -> None:
    code = context.code() or grpc.StatusCode.OK
    level = logging.DEBUG if code == grpc.StatusCode.OK else logging.INFO
    if log.isEnabledFor(level):
        fields = {"method": method, "code": getattr(code, "name", str(code)), "ms": round((time.perf_counter() - started) * 1000, 3)}
        log.log(level, "rpc", extra={"fields": fields})


class TokenAuthInterceptor(_OwnServicesInterceptor):
    """Requires `authorization: Bearer <token>` on kfpgrpc's services."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        presented = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(presented).encode(), self._expected):
            return handler
        denial = to_grpc_status(Unauthenticated("missing or invalid bearer token"))

        # Request-streaming handlers, given the request stream unread: the body is never
        # deserialized or buffered beyond HTTP/2 flow control, however large it is.
        async def deny(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort_with_status(denial)

        async def deny_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await context.abort_with_status(denial)
            yield  # unreachable: abort raises; makes this an async generator

        if handler.unary_stream:
            return grpc.stream_stream_rpc_method_handler(deny_stream, None, handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(deny, None, handler.response_serializer)
