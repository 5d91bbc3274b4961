"""kfpgrpc.client against real servers: the in-process `server` fixture, and `kfpgrpc serve`
subprocesses where a test restarts the server under a watch.

The `server` fixture serves on this test's event loop, so blocking `Client` calls run in a
thread (asyncio.to_thread) to keep it serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import yaml

from kfpgrpc.client import AsyncClient, Client, KfpGrpcError, ReconnectPolicy, ServerUnreachable, kfp_filter
from kfpgrpc.client.operations import ClientOperations, _Operation
from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, event_pb2, recurring_run_pb2, run_pb2
from tests import pipelines
from tests.support import ServerProcess, plain, task
from tests.test_server import certificates  # noqa: F401 - the CA and certificates fixture, reused

T = TypeVar("T")


@pytest.fixture
async def client(server: KfpGrpcServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address) as opened:
        yield opened


@pytest.fixture
def blocking(server: KfpGrpcServer) -> Iterator[Client]:
    """A blocking Client on the server; call it as `await in_thread(blocking.method, …)`."""
    with Client(server.address) as opened:
        yield opened


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


def spec_file(directory: Path, spec: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(spec))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sync_client_uploads_a_yaml_file_runs_it_and_waits(blocking: Client, compiled: dict[str, Any], tmp_path: Path) -> None:
    path = spec_file(tmp_path, compiled["add-pipeline"])
    first = await in_thread(blocking.upload_pipeline, path)
    second = await in_thread(blocking.upload_pipeline, str(path), version_name="again")
    assert (first.name, second.name) == ("v1", "again")
    assert first.pipeline_id == second.pipeline_id  # the name was known: a new version, not a new pipeline
    pipeline = await in_thread(blocking.find_pipeline, "add-pipeline")
    assert pipeline.pipeline_id == first.pipeline_id
    assert (await in_thread(blocking.find_pipeline, first.pipeline_id)).name == "add-pipeline"

    run = await in_thread(blocking.create_run, "add-pipeline", {"a": 5}, version="v1", display_name="five")
    assert run.pipeline_version_reference.pipeline_version_id == first.pipeline_version_id
    snapshots = await in_thread(lambda: list(blocking.watch_run(run.run_id)))
    assert snapshots[-1].state == common_pb2.SUCCEEDED
    assert all(before != after for before, after in zip(snapshots, snapshots[1:]))
    final = await in_thread(blocking.wait_for_run, run.run_id, timeout=30)
    assert final == snapshots[-1]
    assert plain(task(final, "add-2").output_parameters) == {"Output": 9}  # (5 + 2) + 2
    lines = await in_thread(lambda: list(blocking.run_logs(run.run_id, "add")))
    assert [line.line_number for line in lines] == list(range(1, len(lines) + 1))
    assert lines[0].text.startswith("+ ")
    # The paging options: the last 2 lines, the one before them, the ones after line 1.
    tail = await in_thread(lambda: list(blocking.run_logs(run.run_id, "add", tail_lines=2)))
    assert tail == lines[-2:]
    earlier = await in_thread(lambda: list(blocking.run_logs(run.run_id, "add", tail_lines=1, before_line_number=len(lines) - 1)))
    assert earlier == lines[-3:-2]
    assert await in_thread(lambda: list(blocking.run_logs(run.run_id, "add", after_line_number=1))) == lines[1:]
    # The newest event of the run, then nothing more is stored: the stream is left open.
    events = blocking.watch_events(run_id=run.run_id, newest=1)
    newest = await in_thread(next, events)
    assert newest.type == event_pb2.RUN_COMPLETED and newest.run_id == run.run_id
    events.close()


async def test_async_client_uploads_a_pipeline_function_and_runs_it_in_an_experiment(client: AsyncClient) -> None:
    version = await client.upload_pipeline(pipelines.nested_pipeline)  # compiled by the kfp SDK on the fly
    pipeline = await client.get_pipeline(version.pipeline_id)
    assert (pipeline.name, pipeline.description) == ("nested-pipeline", "Runs the add-twice sub-pipeline, then adds 10.")
    experiment = await client.create_experiment("client-demo")
    run = await client.create_run("nested-pipeline", {"x": 1}, experiment="client-demo")
    assert run.experiment_id == experiment.experiment_id
    assert run.display_name.startswith("nested-pipeline ")
    final = await client.wait_for_run(run.run_id)
    assert final.state == common_pb2.SUCCEEDED
    assert plain(task(final, "add").output_parameters) == {"Output": 21}  # ((1 + 5) + 5) + 10
    listed = [r.run_id async for r in client.list_runs(experiment.experiment_id)]
    assert listed == [run.run_id]


async def test_paging_iterators_walk_every_page_with_filter_and_sort(client: AsyncClient, blocking: Client) -> None:
    names = [f"paging-{index}" for index in range(7)]
    for name in names:
        await client.create_experiment(name)
    everything = [e.display_name async for e in client.list_experiments(page_size=2)]
    assert everything == ["Default", *names]  # four pages of two, in creation order
    matching = kfp_filter(display_name__contains="PAGING")  # IS_SUBSTRING ignores ASCII case
    newest_first = [e.display_name async for e in client.list_experiments(filter=matching, sort_by="display_name desc", page_size=3)]
    assert newest_first == names[::-1]
    assert [e.display_name for e in await in_thread(lambda: list(blocking.list_experiments(filter=matching, page_size=3, limit=4)))] == names[:4]
    chosen = kfp_filter(display_name__in=["paging-1", "paging-5"], display_name__ne="paging-5")
    assert [e.display_name async for e in client.list_experiments(filter=chosen)] == ["paging-1"]


async def test_every_failure_is_one_error_type_with_code_and_field_violations(client: AsyncClient, compiled: dict[str, Any]) -> None:
    await client.upload_pipeline(compiled["add-pipeline"])
    with pytest.raises(KfpGrpcError) as bad_parameter:
        await client.create_run("add-pipeline", {"a": "five"})
    assert bad_parameter.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_parameter.value.field_violations == {"run.runtime_config.parameters.a": "must be an integer, got 'five'"}
    assert "run.runtime_config.parameters.a" in bad_parameter.value.message

    with pytest.raises(KfpGrpcError) as unknown_run:
        await client.get_run("no-such-run")
    assert (unknown_run.value.code, unknown_run.value.field_violations) == (grpc.StatusCode.NOT_FOUND, {})
    with pytest.raises(KfpGrpcError) as unknown_pipeline:
        await client.create_run("no-such-pipeline")
    assert unknown_pipeline.value.code == grpc.StatusCode.NOT_FOUND
    assert unknown_pipeline.value.message == "no pipeline named or with id 'no-such-pipeline'"

    with pytest.raises(KfpGrpcError) as bad_spec:
        await client.upload_pipeline({"pipelineInfo": {"name": "broken"}, "schemaVersion": "1.0"})
    assert bad_spec.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pipeline_version.pipeline_spec.schemaVersion" in bad_spec.value.field_violations
    assert [p.name async for p in client.list_pipelines()] == ["add-pipeline"]  # no empty "broken" pipeline left behind

    with pytest.raises(KfpGrpcError) as no_schedule:  # refused before anything is sent
        await client.create_recurring_run("add-pipeline")
    assert no_schedule.value.field_violations == {"recurring_run.trigger": "give a cron schedule or an interval"}
    with pytest.raises(KfpGrpcError) as bad_type:
        [event async for event in client.watch_events(types=["RUN_EXPLODED"])]
    assert list(bad_type.value.field_violations) == ["types"]


async def test_recurring_run_lifecycle(client: AsyncClient, compiled: dict[str, Any]) -> None:
    await client.upload_pipeline(compiled["add-pipeline"])
    created = await client.create_recurring_run(
        "add-pipeline", cron="0 3 * * *", time_zone="Europe/Berlin", parameters={"a": 40}, display_name="nightly",
        description="adds at three", max_concurrency=2, no_catchup=True, overlap_policy="skip")
    assert created.status == recurring_run_pb2.RecurringRun.ENABLED
    assert (created.trigger.cron_schedule.cron, created.trigger.cron_schedule.time_zone) == ("0 3 * * *", "Europe/Berlin")
    assert (created.max_concurrency, created.no_catchup, created.overlap_policy) == (2, True, recurring_run_pb2.SKIP)
    assert [t.ToDatetime().hour for t in created.next_scheduled_times] in ([2] * 10, [1] * 10)  # 03:00 CET or CEST, in UTC
    recurring_run_id = created.recurring_run_id

    updated = await client.update_recurring_run(recurring_run_id, cron="30 4 * * *", max_concurrency=3)
    assert (updated.trigger.cron_schedule.cron, updated.max_concurrency) == ("30 4 * * *", 3)
    assert (updated.description, updated.trigger.cron_schedule.time_zone, updated.no_catchup) == ("adds at three", "Europe/Berlin", True)
    bounded = await client.update_recurring_run(recurring_run_id, start_time="2999-01-01T00:00:00Z")  # the client looks up the schedule kind
    assert bounded.trigger.cron_schedule.start_time.ToJsonString() == "2999-01-01T00:00:00Z"
    assert bounded.trigger.cron_schedule.cron == "30 4 * * *"
    await client.update_recurring_run(recurring_run_id, start_time="2000-01-01T00:00:00Z")

    await client.disable_recurring_run(recurring_run_id)
    disabled = await client.find_recurring_run("nightly")
    assert (disabled.status, list(disabled.next_scheduled_times)) == (recurring_run_pb2.RecurringRun.DISABLED, [])
    await client.enable_recurring_run(recurring_run_id)
    assert (await client.get_recurring_run(recurring_run_id)).status == recurring_run_pb2.RecurringRun.ENABLED

    triggered = await client.trigger_recurring_run(recurring_run_id)
    assert (triggered.recurring_run_id, triggered.display_name.startswith("nightly-")) == (recurring_run_id, True)
    finished = await client.wait_for_run(triggered.run_id)
    assert finished.state == common_pb2.SUCCEEDED
    assert plain(finished.runtime_config.parameters)["a"] == 40
    would = await client.backfill_recurring_run(recurring_run_id, "2024-01-01T00:00:00Z", "2024-01-03T12:00:00Z", validate_only=True)
    assert [t.ToJsonString() for t in would.queued_times] == [f"2024-01-0{d}T03:30:00Z" for d in (1, 2, 3)]  # 04:30 in Berlin, winter
    backfilled = await client.backfill_recurring_run(recurring_run_id, "2024-01-01T00:00:00Z", "2024-01-03T12:00:00Z")
    assert (backfilled.ticks_queued, backfilled.ticks_already_present) == (3, 0)
    preview = await client.preview_schedule(cron="30 4 * * *", time_zone="Europe/Berlin", start_time="2999-01-01T00:00:00Z", count=2)
    assert [(f.time.ToJsonString(), f.local_time) for f in preview.fire_times] == [
        ("2999-01-01T03:30:00Z", "2999-01-01T04:30:00+01:00"), ("2999-01-02T03:30:00Z", "2999-01-02T04:30:00+01:00")]
    hourly = await client.preview_schedule(interval="1h", start_time="2999-01-01T00:00:00Z", time_zone="Asia/Kolkata", count=1)
    assert (hourly.time_zone, hourly.fire_times[0].local_time) == ("Asia/Kolkata", "2999-01-01T06:30:00+05:30")

    periodic = await client.create_recurring_run("add-pipeline", interval="1h30m", enabled=False)
    assert (periodic.display_name, periodic.trigger.periodic_schedule.interval_second) == ("add-pipeline", 5400)
    assert periodic.status == recurring_run_pb2.RecurringRun.DISABLED
    listed = [r.display_name async for r in client.list_recurring_runs(sort_by="display_name")]
    assert listed == ["add-pipeline", "nightly"]
    watch = client.watch_recurring_run(periodic.recurring_run_id)
    assert (await anext(watch)).recurring_run_id == periodic.recurring_run_id
    await watch.aclose()

    await client.delete_recurring_run(periodic.recurring_run_id)
    with pytest.raises(KfpGrpcError) as deleted:
        await client.get_recurring_run(periodic.recurring_run_id)
    assert deleted.value.code == grpc.StatusCode.NOT_FOUND


async def test_bearer_token_and_mutual_tls(data_dir: Path, certificates: Path) -> None:  # noqa: F811 - the fixture
    config = ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, auth_token="s3cret", tls_cert=certificates / "server.pem",
                          tls_key=certificates / "server.key", tls_client_ca=certificates / "ca.pem")
    server = KfpGrpcServer(config)
    await server.start()
    tls = {"tls_ca": certificates / "ca.pem", "tls_cert": certificates / "client.pem", "tls_key": certificates / "client.key"}
    try:
        async with AsyncClient(server.address, token="s3cret", **tls) as client:
            assert [e.display_name async for e in client.list_experiments()] == ["Default"]
        async with AsyncClient(server.address, token="wrong", **tls) as client:
            with pytest.raises(KfpGrpcError) as refused:
                await client.get_experiment("x")
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop()


def _wait_for_run_across_a_restart(tmp_path: Path, gated: dict[str, Any]) -> list[run_pb2.Run]:
    """Watch a run whose task waits for a file; restart the server mid-watch; then open the gate."""
    data_dir, gate = tmp_path / "data", tmp_path / "gate"
    listen = f"127.0.0.1:{free_port()}"
    server = ServerProcess(data_dir, "--listen", listen)
    snapshots: list[run_pb2.Run] = []
    restarted = False
    try:
        with Client(listen) as client:
            client.upload_pipeline(gated)
            run = client.create_run("gated-pipeline", {"counter": str(tmp_path / "counter"), "gate": str(gate)})
            for snapshot in client.watch_run(run.run_id, timeout=120):
                snapshots.append(snapshot)
                waiting = any(t.task_id == "wait-for" and t.state == common_pb2.RUNNING for t in snapshot.run_details.task_details)
                if waiting and not restarted:
                    assert server.terminate()[0] == 0
                    server = ServerProcess(data_dir, "--listen", listen)  # same port, same data: the run resumes
                    gate.touch()
                    restarted = True
    finally:
        server.terminate()
    assert restarted
    return snapshots


async def test_watch_run_reconnects_across_a_server_restart_without_repeating_a_snapshot(
    tmp_path: Path, compiled: dict[str, Any]
) -> None:
    snapshots = await in_thread(_wait_for_run_across_a_restart, tmp_path, compiled["gated-pipeline"])
    assert snapshots[-1].state == common_pb2.SUCCEEDED
    assert all(before != after for before, after in zip(snapshots, snapshots[1:]))
    wait_for = task(snapshots[-1], "wait-for")
    assert [common_pb2.RuntimeState.Name(s.state) for s in wait_for.state_history] == ["RUNNING", "RUNNING", "SUCCEEDED"]  # ran again after the restart


async def test_the_client_watch_helper_survives_a_server_restart_mid_stream_without_losing_or_repeating_an_event(
    tmp_path: Path, compiled: dict[str, Any]
) -> None:
    data_dir, listen = tmp_path / "data", f"127.0.0.1:{free_port()}"
    spec = compiled["instant-pipeline"]
    server = await in_thread(ServerProcess, data_dir, "--listen", listen)
    seen: list[event_pb2.Event] = []
    progress = asyncio.Condition()
    last_version = asyncio.get_running_loop().create_future()

    async def consume(client: AsyncClient) -> None:
        async for event in client.watch_events():
            seen.append(event)
            async with progress:
                progress.notify_all()
            if last_version.done() and event.pipeline_version_created.pipeline_version_id == last_version.result():
                return

    async def seen_at_least(count: int) -> None:
        async with progress:
            await asyncio.wait_for(progress.wait_for(lambda: len(seen) >= count), 60)

    try:
        async with AsyncClient(listen) as watcher:
            consumer = asyncio.create_task(consume(watcher))
            async with AsyncClient(listen) as client:
                for index in range(3):
                    await client.upload_pipeline(spec, name="events", version_name=f"before-{index}")
            await seen_at_least(3)
            assert (await in_thread(server.terminate))[0] == 0  # SIGTERM while the stream is open
            server = await in_thread(ServerProcess, data_dir, "--listen", listen)
            async with AsyncClient(listen) as client:  # a new connection: the old one is still backing off
                for index in range(3):
                    await client.upload_pipeline(spec, name="events", version_name=f"after-{index}")
                run = await client.create_run("events", {"label": "after the restart"})
                assert (await client.wait_for_run(run.run_id)).state == common_pb2.SUCCEEDED
                last_version.set_result((await client.upload_pipeline(spec, name="events", version_name="last")).pipeline_version_id)
                await asyncio.wait_for(consumer, 60)
                everything: list[event_pb2.Event] = []
                async for event in client.watch_events():  # the whole log, read in one go
                    everything.append(event)
                    if event.sequence == seen[-1].sequence:
                        break
    finally:
        await in_thread(server.terminate)
    sequences = [event.sequence for event in seen]
    assert sequences == list(range(1, len(seen) + 1))  # consecutive: nothing lost, nothing repeated
    assert seen == everything
    assert {event.run_id for event in seen if event.type == event_pb2.RUN_COMPLETED} == {run.run_id}


async def test_experiment_names_are_accepted_wherever_an_experiment_is(client: AsyncClient, compiled: dict[str, Any]) -> None:
    await client.upload_pipeline(compiled["instant-pipeline"])
    experiment = await client.create_experiment("nightly")
    run = await client.create_run("instant-pipeline", experiment="nightly")
    await client.wait_for_run(run.run_id)
    recurring = await client.create_recurring_run("instant-pipeline", interval="1h", enabled=False, experiment="nightly")
    assert [r.run_id async for r in client.list_runs("nightly")] == [run.run_id]
    assert [r.run_id async for r in client.list_runs(experiment.experiment_id)] == [run.run_id]
    assert [r.run_id async for r in client.list_runs(experiment="Default")] == []
    assert [r.recurring_run_id async for r in client.list_recurring_runs("nightly")] == [recurring.recurring_run_id]
    events = client.watch_events(experiment="nightly", types=["RUN_COMPLETED"])
    assert (await asyncio.wait_for(anext(events), 60)).run_id == run.run_id
    await events.aclose()
    for listing in (client.list_runs("nigthly"), client.list_recurring_runs(experiment="nigthly"), client.watch_events(experiment="nigthly")):
        with pytest.raises(KfpGrpcError) as unknown:  # never a silent empty list
            [item async for item in listing]
        assert (unknown.value.code, unknown.value.message) == (grpc.StatusCode.NOT_FOUND, "no experiment named or with id 'nigthly'")


async def test_a_server_that_cannot_be_reached_is_told_from_one_that_answers_unavailable(data_dir: Path, compiled: dict[str, Any],
                                                                                          tmp_path: Path) -> None:
    port = free_port()
    with Client(f"127.0.0.1:{port}") as nobody, pytest.raises(ServerUnreachable) as refused:
        await in_thread(lambda: list(nobody.list_runs()))
    assert (refused.value.code, refused.value.server) == (grpc.StatusCode.UNAVAILABLE, f"127.0.0.1:{port}")
    assert refused.value.message.startswith(f"cannot reach kfpgrpc at 127.0.0.1:{port} (") and "Connection refused" in refused.value.reason

    # A server that stops answers the watches it ends with UNAVAILABLE itself: that is no unreachable server.
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir))
    await server.start()
    async with AsyncClient(server.address, reconnect=ReconnectPolicy(max_attempts=0)) as client:
        await client.upload_pipeline(compiled["gated-pipeline"])
        run = await client.create_run("gated-pipeline", {"counter": str(tmp_path / "counter"), "gate": str(tmp_path / "gate")})
        snapshots = client.watch_run(run.run_id)
        await anext(snapshots)
        stopping = asyncio.create_task(server.stop())
        with pytest.raises(KfpGrpcError) as ended:
            async for _ in snapshots:
                pass
        await stopping
    assert type(ended.value) is KfpGrpcError, ended.value
    assert (ended.value.code, ended.value.message) == (grpc.StatusCode.UNAVAILABLE, "the server is shutting down; watch again to resume")


async def test_a_server_that_takes_time_to_answer_a_connection_is_reached(server: KfpGrpcServer) -> None:
    """A server half a second away (a TLS handshake over a long link) is still reached: a connection
    attempt may take longer than the first reconnection backoff."""
    host, port = server.address.rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        with contextlib.suppress(ConnectionError):
            first = True
            while data := await reader.read(65536):
                if first:
                    await asyncio.sleep(delay)  # the far server's first bytes (its SETTINGS frame) arrive late
                    first = False
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(relay(client_reader, server_writer, 0), relay(server_reader, client_writer, 0.5))

    far = await asyncio.start_server(connect, "127.0.0.1", 0)
    try:
        address = "127.0.0.1:{}".format(far.sockets[0].getsockname()[1])
        with Client(address) as blocking:
            assert [e.display_name for e in await in_thread(lambda: list(blocking.list_experiments()))] == ["Default"]
    finally:
        far.close()


def test_a_malformed_server_address_is_refused_before_connecting() -> None:
    for address, problem in (("grpc://127.0.0.1:8887", "unknown scheme grpc://"), ("127.0.0.1:99999", "the port must be a number"),
                             ("https://127.0.0.1/v1", "without a path")):
        with pytest.raises(KfpGrpcError) as refused:
            Client(address)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and problem in refused.value.field_violations["server"]
    with pytest.raises(KfpGrpcError) as mixed:
        Client("http://127.0.0.1", tls=True)
    assert "an http:// address is plaintext" in mixed.value.field_violations["server"]


CLIENT_DOCS = Path(__file__).resolve().parent.parent / "docs" / "client.md"


class _Enough(Exception):
    """Ends the docs' event loop, which would follow the log for ever."""


def _run_docs_examples(directory: Path, address: str, run_id: str) -> list[tuple[str, list[str]]]:
    """Run the ```python blocks of docs/client.md in order in one namespace, as a reader would
    in a session; return each block with the lines it printed. A fresh open `client` stands in
    for the one a block may have closed; the helpers the examples leave to the reader exist."""
    consumed: list[int] = []

    def save_checkpoint(sequence: int) -> None:
        consumed.append(sequence)
        raise _Enough

    namespace: dict[str, Any] = {"load_checkpoint": lambda: 0, "handle": lambda event: None, "save_checkpoint": save_checkpoint}
    blocks = re.findall(r"^```python\n(.*?)^```$", CLIENT_DOCS.read_text(), re.MULTILINE | re.DOTALL)
    printed = []
    with Client(address) as client:
        for number, block in enumerate(blocks, 1):
            namespace["client"] = client
            output = io.StringIO()
            code = block.replace("127.0.0.1:8887", address).replace('"RUN_ID"', repr(run_id))
            with contextlib.redirect_stdout(output), contextlib.suppress(_Enough):
                exec(compile(code, f"docs/client.md, python block {number}", "exec"), namespace)
            printed.append((block, output.getvalue().splitlines()))
    for value in namespace.values():
        if isinstance(value, Client):
            value.close()
    assert consumed, "the event example handled no event"
    return printed


async def test_the_examples_of_the_client_docs_run_as_written(server: KfpGrpcServer, compiled: dict[str, Any], tmp_path: Path,
                                                             certificates: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    spec_file(tmp_path, compiled["add-pipeline"])  # pipeline.yaml: the inputs a and b
    (tmp_path / "my_pipelines.py").write_text("from tests.pipelines import add_pipeline as train\n")
    for name, source in (("ca.pem", "ca.pem"), ("me.pem", "client.pem"), ("me.key", "client.key")):
        shutil.copy(certificates / source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KFPGRPC_SERVER", server.address)
    async with AsyncClient(server.address) as client:
        await client.upload_pipeline(compiled["instant-pipeline"])
        finished = await client.wait_for_run((await client.create_run("instant-pipeline")).run_id)

    printed = await in_thread(_run_docs_examples, tmp_path, server.address, finished.run_id)
    for block, lines in printed:  # what a block shows in a comment under a print() is what it prints
        shown = re.findall(r"^\s*print\(.*\n((?:\s*# .*\n)+)", block, re.MULTILINE)
        if shown:
            assert lines == [line.strip().removeprefix("# ") for line in shown[0].splitlines()], block
    assert printed[0][1][0].startswith(f"{common_pb2.SUCCEEDED} ")  # the quick start's run succeeded


def test_the_operations_table_of_the_client_docs_gives_every_call_its_real_signature() -> None:
    table = re.search(r"^\| Resource \| Calls \|\n(.*?)\n\n", CLIENT_DOCS.read_text(), re.MULTILINE | re.DOTALL)
    assert table, "docs/client.md has no operations table"
    documented = dict(re.findall(r"`(\w+)\(([^)]*)\)`", table.group(1)))
    operations = {name for name, value in vars(ClientOperations).items() if isinstance(value, _Operation)}
    assert set(documented) == operations
    for name, arguments in documented.items():
        parameters = inspect.signature(getattr(ClientOperations, name).plan).parameters.values()
        written = [argument.strip() for argument in arguments.split(",")]
        real = [f"**{p.name}" if p.kind == p.VAR_KEYWORD else f"{p.name}=" if p.kind == p.KEYWORD_ONLY else p.name for p in parameters]
        assert written == real, name


async def test_a_pipeline_file_with_yaml_aliases_is_refused_before_it_expands(client: AsyncClient, tmp_path: Path) -> None:
    """The client reads a pipeline file as the server's upload does (kfpgrpc/spec_files.py): 380
    bytes of nested aliases would be 10**7 strings, gigabytes once converted to send."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join([*lines, "root: *a6"]) + "\n")
    with pytest.raises(KfpGrpcError) as refused:
        await client.upload_pipeline(path)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.field_violations == {
        "source": f"cannot read a compiled pipeline from {path}: line 1, column 5: YAML anchors and aliases (&name, *name)"
                  " are not accepted: the kfp compiler never writes them"
    }
