"""Helpers shared by the tests: stubs, error details, a `kfpgrpc serve` subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kfpgrpc.clock import VirtualClock
from kfpgrpc.config import ServerConfig
from kfpgrpc.executor.process import TaskProcesses
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import (
    common_pb2,
    event_pb2,
    event_pb2_grpc,
    experiment_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    recurring_run_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
)

T = TypeVar("T")


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
    """`kfpgrpc serve` in a subprocess on a free port, as a user starts it (with `env` added to
    this process's environment)."""

    def __init__(
        self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None, prefix: Sequence[str] = (), http: bool = False,
    ) -> None:
        """`preexec_fn` runs in the child before the server starts (e.g. to lower a limit);
        `prefix` is a command that runs the server command given as its arguments; `http`:
        serve KFP's REST API too, on a free port (`http_url`)."""
        http_listen = "127.0.0.1:0" if http else "off"
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--http-listen", http_listen,
             "--data-dir", str(data_dir), *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=preexec_fn,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read() if self.process.stderr else ''}")
        self.address = line.removeprefix("listening on ").strip()
        self.http_url = self.process.stdout.readline().removeprefix("listening for HTTP on ").strip() if http else ""

    def terminate(self, timeout: float = 20) -> tuple[int, str]:
        """SIGTERM; return (exit code, stderr)."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=20)


@contextlib.contextmanager
def serving(data_dir: Path, *extra_args: str, **options: Any) -> Iterator[ServerProcess]:
    """A ServerProcess(data_dir, *extra_args, **options) for the `with` block, then SIGTERM; a
    clean exit (code 0, no Traceback on stderr) is asserted unless the block raised (its error
    is the one reported)."""
    server = ServerProcess(data_dir, *extra_args, **options)
    try:
        yield server
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr


def bearer(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Channel interceptors that send `authorization: Bearer <token>` with every unary and
    server-streaming call (grpc.aio files an interceptor under one kind only)."""
    metadata = (("authorization", f"Bearer {token}"),)

    def with_token(details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *metadata))

    class Unary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(with_token(details), request)

    class Streaming(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(with_token(details), request)

    return [Unary(), Streaming()]


async def upload(stubs: Stubs, name: str, spec: dict[str, Any]) -> pipeline_pb2.PipelineVersion:
    """Create pipeline `name` with one version holding `spec`; return the version."""
    pipeline = await stubs.pipelines.CreatePipeline(pipeline_pb2.CreatePipelineRequest(pipeline=pipeline_pb2.Pipeline(name=name)))
    return await stubs.pipelines.CreatePipelineVersion(
        pipeline_pb2.CreatePipelineVersionRequest(
            pipeline_id=pipeline.pipeline_id, pipeline_version=pipeline_pb2.PipelineVersion(pipeline_spec=struct(spec))
        )
    )


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def run_of(version: pipeline_pb2.PipelineVersion, display_name: str = "run", **parameters: Any) -> run_pb2.Run:
    """A Run message for CreateRun of a stored version with these parameters."""
    return run_pb2.Run(
        display_name=display_name,
        pipeline_version_reference=common_pb2.PipelineVersionReference(
            pipeline_id=version.pipeline_id, pipeline_version_id=version.pipeline_version_id
        ),
        runtime_config=common_pb2.RuntimeConfig(parameters=dict(struct(parameters).fields)),
    )


def inline_run(spec: dict[str, Any], display_name: str = "run", **parameters: Any) -> run_pb2.Run:
    return run_pb2.Run(
        display_name=display_name,
        pipeline_spec=struct(spec),
        runtime_config=common_pb2.RuntimeConfig(parameters=dict(struct(parameters).fields)),
    )


TERMINAL = {common_pb2.SUCCEEDED, common_pb2.FAILED, common_pb2.CANCELED}


async def watch_to_end(runs: run_pb2_grpc.RunServiceStub, run_id: str, timeout: float = 60) -> list[run_pb2.Run]:
    """Every snapshot WatchRun sends, up to and including the terminal one."""
    snapshots: list[run_pb2.Run] = []

    async def collect() -> None:
        async for snapshot in runs.WatchRun(run_pb2.WatchRunRequest(run_id=run_id)):
            snapshots.append(snapshot)

    await asyncio.wait_for(collect(), timeout)
    assert snapshots and snapshots[-1].state in TERMINAL, snapshots[-1:]
    return snapshots


async def wait_until(runs: run_pb2_grpc.RunServiceStub, run_id: str, condition: Callable[[run_pb2.Run], bool], timeout: float = 60) -> run_pb2.Run:
    """The first WatchRun snapshot that satisfies `condition`."""

    async def find() -> run_pb2.Run:
        call = runs.WatchRun(run_pb2.WatchRunRequest(run_id=run_id))
        try:
            async for snapshot in call:
                if condition(snapshot):
                    return snapshot
        finally:
            call.cancel()  # leave no watch open on the server
        raise AssertionError(f"run {run_id} ended without meeting the condition")

    return await asyncio.wait_for(find(), timeout)


async def create(stubs: Stubs, run: run_pb2.Run) -> run_pb2.Run:
    return await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


async def finished(stubs: Stubs, run: run_pb2.Run) -> run_pb2.Run:
    """The run's terminal snapshot."""
    return (await watch_to_end(stubs.runs, run.run_id))[-1]


async def run_to_end(stubs: Stubs, spec: dict[str, Any], display_name: str = "run", **parameters: Any) -> run_pb2.Run:
    """Create an inline run of `spec` with `parameters`; its terminal snapshot."""
    return await finished(stubs, await create(stubs, inline_run(spec, display_name, **parameters)))


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


def is_running(task_id: str) -> Callable[[run_pb2.Run], bool]:
    """A WatchRun condition: task `task_id` is RUNNING."""
    return lambda run: any(t.task_id == task_id and t.state == common_pb2.RUNNING for t in run.run_details.task_details)


def tasks_of(run: run_pb2.Run) -> dict[str, run_pb2.PipelineTaskDetail]:
    """The run's task details by task_id (each task_id once)."""
    found = {t.task_id: t for t in run.run_details.task_details}
    assert len(found) == len(run.run_details.task_details), sorted(t.task_id for t in run.run_details.task_details)
    return found


def output(detail: run_pb2.PipelineTaskDetail, name: str = "Output") -> Any:
    """One output parameter of a task, as a plain Python value."""
    outputs = plain(detail.output_parameters)
    assert name in outputs, f"task {detail.task_id} ({common_pb2.RuntimeState.Name(detail.state)}) has no output {name!r}: {outputs}"
    return outputs[name]


def task(run: run_pb2.Run, task_id: str) -> run_pb2.PipelineTaskDetail:
    found = [t for t in run.run_details.task_details if t.task_id == task_id]
    assert found, f"no task {task_id!r} in {[t.task_id for t in run.run_details.task_details]}"
    return found[0]


def state_names(history: Any) -> list[str]:
    return [common_pb2.RuntimeState.Name(entry.state) for entry in history]


def plain(values: Any) -> dict[str, Any]:
    """A proto map<string, google.protobuf.Value> as plain Python values."""
    return {name: json_format.MessageToDict(value) for name, value in values.items()}


def task_processes(run_id: str) -> dict[int, int]:
    """{pid: process group} of the live processes the executor started for `run_id`: it marks
    their environment with KFPGRPC_RUN_ID. Zombies (exited, not yet reaped) do not count."""
    marker = f"KFPGRPC_RUN_ID={run_id}".encode()
    found = {}
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # after "(command)": state, ppid, pgrp
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if fields[0] != "Z" and marker in environ.read().split(b"\0"):
                    found[pid] = int(fields[2])
        except OSError:  # gone, or not ours
            continue
    return found


def tree(python: Path) -> dict[str, tuple[int, int]]:
    """Every file of the python's virtual environment, with its size and modification time."""
    root = python.parent.parent
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
    }


def alive(pid: int, start_time: int | None = None) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has); with `start_time`
    (`start_time_of`), only if it is that same process, not a later one given the pid again
    (pids wrap at 32,768 here, within minutes on a busy machine)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z" and (start_time is None or int(fields[19]) == start_time)


def start_time_of(pid: int) -> int:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat's field 22):
    with the pid, what names one process for good."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[19])


CONTAINMENTS = ("cgroup", "subreaper")


async def skip_unless_containment(containment: str, work_root: Path) -> None:
    """Skip the test where this machine cannot contain tasks that way (no writable cgroup v2)."""
    processes = TaskProcesses(work_root, containment)
    try:
        await processes.start()
    except OSError as error:
        pytest.skip(str(error))
    await processes.stop()


def run_with_venv(args: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `args` to its end with this interpreter's bin directory first on PATH (so `python3`
    and `grpcurl` are the venv's) and `env` added; stdout and stderr together in `.stdout`."""
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, "PATH": path, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


async def eventually(probe: Callable[[], Awaitable[T]], condition: Callable[[T], bool], timeout: float = 30) -> T:
    """Poll `probe` until `condition` holds for its result (a liveness wait, not a timing check)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if condition(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"condition never held; last value: {value}"
        await asyncio.sleep(0.01)


STREAM_TIMEOUT = 60  # only turns a hang into a failure


async def read_events(stubs: Stubs, count: int, **request: Any) -> list[event_pb2.Event]:
    """The first `count` events WatchEvents sends for `request`; the call is then cancelled."""
    call = stubs.events.WatchEvents(event_pb2.WatchEventsRequest(**request))
    received: list[event_pb2.Event] = []
    try:
        while len(received) < count:
            received.append(await asyncio.wait_for(call.read(), STREAM_TIMEOUT))
    finally:
        call.cancel()
    return received


@contextlib.asynccontextmanager
async def running(data_dir: Path, clock: VirtualClock | None = None, **config: Any) -> AsyncIterator[tuple[KfpGrpcServer, Stubs]]:
    """A server of its own (to restart it, or with a virtual clock or a setting), with stubs."""
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, **config), clock)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield server, Stubs.on(channel)
    finally:
        await server.stop()  # first: streams open on the channel see the shutdown
        await channel.close()


def container_spec(task: str, command: list[str], outputs: dict[str, Any] | None = None, retries: int = 0) -> dict[str, Any]:
    """A one-task pipeline, written by hand as a hostile author would: no validation on the way."""
    spec_task: dict[str, Any] = {"taskInfo": {"name": "task"}, "componentRef": {"name": "comp-x"}}
    if retries:
        spec_task["retryPolicy"] = {"maxRetryCount": retries, "backoffDuration": "0s"}
    return {
        "schemaVersion": "2.1.0",
        "pipelineInfo": {"name": "hostile"},
        "root": {"dag": {"tasks": {task: spec_task}}},
        "components": {"comp-x": {"executorLabel": "exec-x", "outputDefinitions": outputs or {}}},
        "deploymentSpec": {"executors": {"exec-x": {"container": {"image": "busybox", "command": command}}}},
    }


def victim_dir(tmp_path: Path, *entries: str) -> Path:
    """A directory of the server's user that no pipeline may touch, holding `precious` files."""
    victim = tmp_path / "victim"
    for entry in ("", *entries):
        (victim / entry).mkdir(parents=True, exist_ok=True)
        (victim / entry / "precious").write_text("keep me")
    return victim


def assert_untouched(victim: Path, *entries: str) -> None:
    for entry in ("", *entries):
        assert (victim / entry / "precious").read_text() == "keep me", entry


# A task's shell script: on its first attempt (file $3 missing) it replaces its own artifact
# directory (that of $1, its output artifact `out`) with a link to $2 and fails; then it succeeds.
REPLACE_OWN_DIRECTORY = """
task_dir=$(dirname "$1")
if [ ! -e "$3" ]; then touch "$3"; rm -rf "$task_dir"; ln -s "$2" "$task_dir"; exit 1; fi
echo second attempt > "$1"
"""

# A task's shell script: it replaces the run's directory $1 ({{$.pipeline_root}}) with a link to $2.
REPLACE_RUN_DIRECTORY = 'mv "$1" "$1.moved" && ln -s "$2" "$1"'
