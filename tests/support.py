"""Helpers shared by the tests: stubs, error details, a `kfpgrpc serve` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kfpgrpc.v1 import (
    event_pb2_grpc,
    experiment_pb2_grpc,
    pipeline_pb2_grpc,
    recurring_run_pb2_grpc,
    run_pb2_grpc,
)


@dataclass
class Stubs:
    experiments: experiment_pb2_grpc.ExperimentServiceStub
    pipelines: pipeline_pb2_grpc.PipelineServiceStub
    runs: run_pb2_grpc.RunServiceStub
    recurring_runs: recurring_run_pb2_grpc.RecurringRunServiceStub
    events: event_pb2_grpc.EventServiceStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            experiment_pb2_grpc.ExperimentServiceStub(channel),
            pipeline_pb2_grpc.PipelineServiceStub(channel),
            run_pb2_grpc.RunServiceStub(channel),
            recurring_run_pb2_grpc.RecurringRunServiceStub(channel),
            event_pb2_grpc.EventServiceStub(channel),
        )


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations of a failed call, as {field: description}."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status in {error!r}"
    found: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


class ServerProcess:
    """`kfpgrpc serve` in a subprocess on a free port, as a user starts it."""

    def __init__(self, data_dir: Path, *extra_args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read() if self.process.stderr else ''}")
        self.address = line.removeprefix("listening on ").strip()

    def terminate(self, timeout: float = 20) -> tuple[int, str]:
        """SIGTERM; return (exit code, stderr)."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=20)
