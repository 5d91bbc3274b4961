"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import grpc

from kfpgrpc.client.connection import CHANNEL_OPTIONS
from kfpgrpc.client.errors import KfpGrpcError
from kfpgrpc.client.operations import ClientOperations
from kfpgrpc.client.steps import Backoff, Emit, Finished, Offload, OpenStream, Plan, PlanRunner, Receive, Step, Stream, Unary


class Client(ClientOperations):
    """A blocking kfpgrpc client; use it as a context manager, or close() it.

    >>> with Client("127.0.0.1:8887") as client:
    ...     version = client.upload_pipeline("pipeline.yaml")
    ...     run = client.create_run(version.pipeline_id, {"a": 5})
    ...     print(client.wait_for_run(run.run_id).state)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channel = (
            grpc.secure_channel(self.server, self.credentials, CHANNEL_OPTIONS)
            if self.credentials
            else grpc.insecure_channel(self.server, CHANNEL_OPTIONS)
        )

    __init__.__doc__ = ClientOperations.__init__.__doc__

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _call(self, plan: Plan[Any]) -> Any:
        with PlanRunner(plan) as runner:
            while not isinstance(step := runner.next_step(), Finished):
                if not isinstance(step, Emit):
                    self._perform(runner, step)
            return step.value

    def _iterate(self, plan: Stream[Any]) -> Iterator[Any]:
        with PlanRunner(plan) as runner:
            while not isinstance(step := runner.next_step(), Finished):
                if isinstance(step, Emit):
                    yield step.item
                else:
                    self._perform(runner, step)

    def _perform(self, runner: PlanRunner, step: Step) -> None:
        try:
            runner.send(self._result(step))
        except KfpGrpcError as error:
            runner.throw(error)
        except grpc.RpcError as error:
            runner.throw(KfpGrpcError.from_rpc_error(error, self.server))

    def _result(self, step: Step) -> Any:
        match step:
            case Unary(path, request, response_type):
                call = self._channel.unary_unary(path, type(request).SerializeToString, response_type.FromString)
                return call(request, timeout=self.timeout, metadata=self.metadata)
            case OpenStream(path, request, response_type, timeout):
                stream = self._channel.unary_stream(path, type(request).SerializeToString, response_type.FromString)
                return stream(request, timeout=timeout, metadata=self.metadata)
            case Receive(stream):
                return next(stream, None)
            case Backoff():
                return time.sleep(self.reconnect.delay(step))
            case Offload(function):
                return function()
