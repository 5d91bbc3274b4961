"""Server interceptors: bearer-token authentication, and error mapping with an access log.

Both only wrap kfpgrpc's own services; health and reflection stay open and untouched, as
Kubernetes probes and grpcurl expect.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from kfpgrpc.api.status import to_grpc_status
from kfpgrpc.errors import DomainError, Unauthenticated

log = logging.getLogger("kfpgrpc.rpc")

OWN_SERVICES_PREFIX = "/kfpgrpc.v1."


def _rebuild(handler: grpc.RpcMethodHandler, unary: Callable[..., Any], stream: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """Wrap a unary-request handler, keeping its arity and (de)serializers."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
        )
    return handler  # kfpgrpc has no client-streaming RPCs


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
                    return await behavior(request, context)

            return wrapper

        def stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with _mapped_errors(method, context):
                    async for response in behavior(request, context):
                        yield response

            return wrapper

        return _rebuild(handler, unary, stream)


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

        def unary(_: Any) -> Callable[..., Awaitable[Any]]:
            async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await context.abort_with_status(denial)

            return deny

        def stream(_: Any) -> Callable[..., AsyncIterator[Any]]:
            async def deny(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await context.abort_with_status(denial)
                yield  # unreachable: abort raises; makes this an async generator

            return deny

        return _rebuild(handler, unary, stream)
