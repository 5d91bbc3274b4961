"""The asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc

from kfpgrpc.client.connection import CHANNEL_OPTIONS
from kfpgrpc.client.errors import KfpGrpcError
from kfpgrpc.client.operations import ClientOperations
from kfpgrpc.client.steps import Backoff, Emit, Finished, Offload, OpenStream, Plan, PlanRunner, Receive, Step, Stream, Unary


class AsyncClient(ClientOperations):
    """An asyncio kfpgrpc client; use it with `async with`, or `await close()`. Iterating
    operations (list_*, watch_*, run_logs) return async iterators.

    >>> async with AsyncClient("127.0.0.1:8887") as client:
    ...     async for event in client.watch_events(after_sequence=0):
    ...         print(event.sequence, event.type)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channel = (
            grpc.aio.secure_channel(self.server, self.credentials, CHANNEL_OPTIONS)
            if self.credentials
            else grpc.aio.insecure_channel(self.server, CHANNEL_OPTIONS)
        )

    __init__.__doc__ = ClientOperations.__init__.__doc__

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        await self.close()

    async def _call(self, plan: Plan[Any]) -> Any:
        with PlanRunner(plan) as runner:
            while not isinstance(step := runner.next_step(), Finished):
                if not isinstance(step, Emit):
                    await self._perform(runner, step)
            return step.value

    async def _iterate(self, plan: Stream[Any]) -> AsyncIterator[Any]:
        with PlanRunner(plan) as runner:
            while not isinstance(step := runner.next_step(), Finished):
                if isinstance(step, Emit):
                    yield step.item
                else:
                    await self._perform(runner, step)

    async def _perform(self, runner: PlanRunner, step: Step) -> None:
        try:
            runner.send(await self._result(step))
        except KfpGrpcError as error:
            runner.throw(error)
        except grpc.RpcError as error:
            runner.throw(KfpGrpcError.from_rpc_error(error, self.server))

    async def _result(self, step: Step) -> Any:
        match step:
            case Unary(path, request, response_type):
                call = self._channel.unary_unary(path, type(request).SerializeToString, response_type.FromString)
                return await call(request, timeout=self.timeout, metadata=self.metadata)
            case OpenStream(path, request, response_type, timeout):
                stream = self._channel.unary_stream(path, type(request).SerializeToString, response_type.FromString)
                return stream(request, timeout=timeout, metadata=self.metadata)
            case Receive(stream):
                message = await stream.read()
                return None if message is grpc.aio.EOF else message
            case Backoff():
                return await asyncio.sleep(self.reconnect.delay(step))
            case Offload(function):
                return await asyncio.to_thread(function)
