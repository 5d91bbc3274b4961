"""Task processes against a real server: a task ends when its own process exits, nothing it
started survives it (background children, `setsid` daemons, even ones that clear their
environment), on its end, TerminateRun, DeleteRun, server stop and crash; its working
directory goes with it; it sees a minimal environment; a run of 20,000 tasks terminates fast.

Each behaviour is checked with both ways of containing task processes: a cgroup (where this
machine lets the server make one) and a subreaper init process."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from kfpgrpc.v1 import common_pb2, run_pb2
from tests.pipelines import wide_spec
from tests.support import (
    ServerProcess,
    Stubs,
    alive,
    bearer,
    eventually,
    inline_run,
    run_of,
    running,
    skip_unless_containment,
    start_time_of,
    task_processes,
    upload,
    wait_until,
    watch_to_end,
)

Spec = dict[str, Any]
DAEMON_SECONDS = 600  # far beyond every timeout here: a daemon that survives is caught


@pytest.fixture
async def contained(containment: str, data_dir: Path) -> AsyncIterator[tuple[KfpGrpcServer, Stubs]]:
    """A server of its own that contains task processes that way."""
    async with running(data_dir, task_containment=containment) as (server, stubs):
        yield server, stubs


def daemon(pid_file: Path, *, clear_environment: bool = False, keep_output: bool = False) -> str:
    """Shell that starts a `setsid` daemon which writes its pid to `pid_file`, then waits until
    it has. `clear_environment`: it also drops the markers of the task's environment.
    `keep_output`: it keeps the task's output pipe open."""
    body = f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep {DAEMON_SECONDS}"
    start = ("env -i " if clear_environment else "") + f"setsid sh -c {shlex.quote(body)}"
    redirect = "" if keep_output else " < /dev/null > /dev/null 2>&1"
    return f"{start}{redirect} & while [ ! -s {shlex.quote(str(pid_file))} ]; do sleep 0.01; done"


def pid_in(pid_file: Path) -> int:
    return int(pid_file.read_text())


async def daemon_started(pid_file: Path) -> None:
    """Wait until the daemon of `daemon(pid_file)` has written its pid."""
    await eventually(lambda: asyncio.sleep(0, pid_file.exists() and pid_file.read_text().strip()), bool)


async def create(stubs: Stubs, run: run_pb2.Run) -> run_pb2.Run:
    return await stubs.runs.CreateRun(run_pb2.CreateRunRequest(run=run))


async def log_text(stubs: Stubs, run_id: str) -> str:
    lines = []
    async for response in stubs.runs.StreamRunLogs(run_pb2.StreamRunLogsRequest(run_id=run_id)):
        lines += [line.text for line in response.lines]
    return "\n".join(lines)


def is_running(run: run_pb2.Run) -> bool:
    return any(t.state == common_pb2.RUNNING for t in run.run_details.task_details)


@pytest.mark.parametrize(
    "script",
    [
        # Python 3.11's Process.wait() also waited for the output pipe that these hold.
        f"(sh -c 'echo $$ > {{pid_file}}; exec sleep {DAEMON_SECONDS}' &); while [ ! -s {{pid_file}} ]; do sleep 0.01; done",
        "{setsid_holding_output}",
        # Not in the task's process group, so killing that group missed it.
        "{setsid}",
        "{setsid_without_environment}",
    ],
    ids=["background-child-holding-output", "setsid-daemon-holding-output", "setsid-daemon", "setsid-daemon-without-environment"],
)
async def test_a_task_ends_when_its_own_process_exits_and_nothing_it_started_survives(
    contained: tuple[KfpGrpcServer, Stubs], compiled: dict[str, Spec], tmp_path: Path, script: str
) -> None:
    _, stubs = contained
    pid_file = tmp_path / "daemon.pid"
    script = script.format(
        pid_file=shlex.quote(str(pid_file)),
        setsid_holding_output=daemon(pid_file, keep_output=True),
        setsid=daemon(pid_file),
        setsid_without_environment=daemon(pid_file, clear_environment=True),
    )
    version = await upload(stubs, "shell", compiled["shell-pipeline"])
    created = await create(stubs, run_of(version, script=script + "; echo done"))
    run = (await watch_to_end(stubs.runs, created.run_id))[-1]  # times out while the daemon holds the task
    assert run.state == common_pb2.SUCCEEDED, run.error
    assert "done" in (await log_text(stubs, run.run_id)).splitlines()
    assert not alive(pid_in(pid_file))
    assert not task_processes(run.run_id)


async def test_a_task_that_kills_its_init_process_is_still_cleaned_up(data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """Under the subreaper init, the task's own SIGKILL to it ends the task (FAILED), and its
    processes are found by their KFPGRPC_TASK_DIR and killed."""
    await skip_unless_containment("subreaper", tmp_path / "probe")
    pid_file = tmp_path / "daemon.pid"
    async with running(data_dir, task_containment="subreaper") as (_, stubs):
        version = await upload(stubs, "shell", compiled["shell-pipeline"])
        script = f"echo $$ > {shlex.quote(str(tmp_path / 'leader.pid'))}; " + daemon(pid_file) + f"; kill -9 $PPID; exec sleep {DAEMON_SECONDS}"
        run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version, script=script))).run_id))[-1]
        assert run.state == common_pb2.FAILED
        assert "killed by signal SIGKILL" in run.error.message
        assert not alive(pid_in(pid_file)) and not alive(pid_in(tmp_path / "leader.pid"))
        assert not task_processes(run.run_id)


async def test_a_task_that_kills_its_init_loses_the_processes_of_its_session_even_without_the_marker(
    data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    """Under the subreaper init, a task that SIGKILLs its init leaves orphans that PID 1
    adopts; besides the KFPGRPC_TASK_DIR marker, the server finds them by the session of the
    task's own process, which a background child that clears its environment stays in."""
    await skip_unless_containment("subreaper", tmp_path / "probe")
    pid_file = tmp_path / "child.pid"
    body = f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep {DAEMON_SECONDS}"
    script = (f"env -i sh -c {shlex.quote(body)} < /dev/null > /dev/null 2>&1 & while [ ! -s {shlex.quote(str(pid_file))} ]; do sleep 0.01; done;"
              f" kill -9 $PPID; exec sleep {DAEMON_SECONDS}")
    try:
        async with running(data_dir, task_containment="subreaper") as (_, stubs):
            version = await upload(stubs, "shell", compiled["shell-pipeline"])
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version, script=script))).run_id))[-1]
            assert run.state == common_pb2.FAILED
            assert not alive(pid_in(pid_file)), "the task's child outlived its task"
    finally:
        if pid_file.exists() and alive(pid_in(pid_file)):
            os.kill(pid_in(pid_file), signal.SIGKILL)


async def test_under_a_cgroup_a_daemon_without_the_marker_dies_with_a_task_killed_by_a_signal(
    data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    """A `setsid` daemon with a cleared environment, started by a task whose own process is
    then SIGKILLed, dies with its task under cgroup containment: nothing a process does takes
    it out of its cgroup. Under the subreaper init, the same daemon of a task that SIGKILLs its
    init (its parent there; under a cgroup the parent is the server, and that is a crash, see
    below) is the documented limit: it is in no tree, session or marker the server can find
    once init is dead (README "Security model", docs/api.md "Task processes")."""
    await skip_unless_containment("cgroup", tmp_path / "probe")
    pid_file = tmp_path / "daemon.pid"
    try:
        async with running(data_dir, task_containment="cgroup") as (_, stubs):
            version = await upload(stubs, "shell", compiled["shell-pipeline"])
            script = daemon(pid_file, clear_environment=True) + "; kill -9 $$"
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version, script=script))).run_id))[-1]
            assert run.state == common_pb2.FAILED and "killed by signal SIGKILL" in run.error.message
            assert not alive(pid_in(pid_file)), "the task's daemon outlived its task"
            assert not task_processes(run.run_id)
    finally:
        if pid_file.exists() and alive(pid_in(pid_file)):
            os.kill(pid_in(pid_file), signal.SIGKILL)


async def test_a_task_whose_leader_exits_ends_even_if_it_stopped_its_init(data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """Under the subreaper init, the server watches the task's own process (the leader) too:
    a task that SIGSTOPs its init and exits used to stay RUNNING for ever. Now init is killed
    and the task FAILS, saying that its exit status is unknown; its output is kept."""
    await skip_unless_containment("subreaper", tmp_path / "probe")
    async with running(data_dir, task_containment="subreaper") as (_, stubs):
        version = await upload(stubs, "shell", compiled["shell-pipeline"])
        created = await create(stubs, run_of(version, script="kill -STOP $PPID; echo done"))
        try:
            run = (await watch_to_end(stubs.runs, created.run_id, timeout=30))[-1]
        except TimeoutError:
            await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
            await watch_to_end(stubs.runs, created.run_id)
            pytest.fail("the task's process exited 30 s ago and the task is still RUNNING")
        assert run.state == common_pb2.FAILED
        assert "its init process did not end" in run.error.message and "exit status is unknown" in run.error.message
        assert "done" in (await log_text(stubs, run.run_id)).splitlines()
        assert not task_processes(run.run_id)


@pytest.mark.parametrize("end", ["terminate", "delete", "stop"])
async def test_terminate_delete_and_stop_kill_daemons_a_task_started(
    containment: str, end: str, data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    pid_file = tmp_path / "daemon.pid"
    async with running(data_dir, task_containment=containment) as (server, stubs):
        version = await upload(stubs, "shell", compiled["shell-pipeline"])
        script = daemon(pid_file, clear_environment=True) + f"; echo started; exec sleep {DAEMON_SECONDS}"
        created = await create(stubs, run_of(version, script=script))
        await wait_until(stubs.runs, created.run_id, is_running)
        await daemon_started(pid_file)
        assert alive(pid_in(pid_file))
        if end == "terminate":
            await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
            run = (await watch_to_end(stubs.runs, created.run_id))[-1]
            assert run.state == common_pb2.CANCELED
        elif end == "delete":
            await stubs.runs.DeleteRun(run_pb2.DeleteRunRequest(run_id=created.run_id))
        else:
            await server.stop()
        assert not alive(pid_in(pid_file))
        assert not task_processes(created.run_id)


async def test_a_crashed_servers_task_processes_and_directories_are_removed_at_start(
    containment: str, data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    """SIGKILL the server while a task runs a daemon: the daemon dies with the server (subreaper)
    or when it starts again (cgroup), and the task's working directory is gone after the start."""
    pid_file, cwd_file = tmp_path / "daemon.pid", tmp_path / "cwd"
    server = ServerProcess(data_dir, "--task-containment", containment)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "shell", compiled["shell-pipeline"])
            script = f"pwd > {shlex.quote(str(cwd_file))}; echo left behind > $TMPDIR/file; " + daemon(pid_file, clear_environment=True)
            created = await create(stubs, run_of(version, script=script + f"; exec sleep {DAEMON_SECONDS}"))
            await wait_until(stubs.runs, created.run_id, is_running)
            await daemon_started(pid_file)
            started = start_time_of(pid_in(pid_file))
    finally:
        server.kill()
    task_dir = Path(cwd_file.read_text().strip())
    assert task_dir.is_relative_to(data_dir) and (task_dir / "tmp" / "file").exists()
    if containment == "subreaper":
        await eventually(lambda: asyncio.sleep(0, alive(pid_in(pid_file), started)), lambda living: not living)

    restarted = ServerProcess(data_dir, "--task-containment", containment)
    try:
        assert not alive(pid_in(pid_file), started)  # that daemon: by now its pid may be another process's
        assert not task_dir.exists()
    finally:
        restarted.terminate()


async def test_terminating_a_run_of_20000_tasks_takes_seconds(data_dir: Path, tmp_path: Path) -> None:
    """Before: 47 s, as each task that ended made the executor rescan all 20,000 (see
    docs/benchmarks.md). The bound only catches that; bench/bench_terminate.py measures."""
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    # Its spec is 3.5 MB: over the default --max-spec-bytes.
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, max_parallel_tasks=2, max_spec_bytes=64 << 20))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            stubs = Stubs.on(channel)
            created = await create(stubs, inline_run(wide_spec(20_000), gate=str(tmp_path / "never")))
            await wait_until(stubs.runs, created.run_id, is_running)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await stubs.runs.TerminateRun(run_pb2.TerminateRunRequest(run_id=created.run_id))
            run = (await watch_to_end(stubs.runs, created.run_id))[-1]
            took = loop.time() - started
    finally:
        await server.stop()
    assert run.state == common_pb2.CANCELED
    assert took < 20, f"TerminateRun took {took:.1f} s"


async def test_a_task_cannot_read_the_servers_environment_through_proc(data_dir: Path, compiled: dict[str, Spec]) -> None:
    """`kfpgrpc serve` makes itself non-dumpable: a task, which runs as the server's user, used
    to read the server's token and credentials from /proc/<server pid>/environ. Root's tasks
    read it anyway (CAP_SYS_PTRACE), so as root the server runs in a user namespace of its own,
    where it and its tasks hold no capability."""
    prefix = ["unshare", "--user"] if os.geteuid() == 0 else []
    if prefix and subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("root's tasks read any process's /proc/<pid>/environ, and no user namespace can be made here")
    server = ServerProcess(data_dir, env={"KFPGRPC_TEST_SECRET": "s3cret-of-the-server"}, prefix=prefix)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "shell", compiled["shell-pipeline"])
            script = f"tr '\\0' '\\n' < /proc/{server.process.pid}/environ"  # unshare execs the server
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version, script=script))).run_id))[-1]
            log = await log_text(stubs, run.run_id)
    finally:
        server.terminate()
    assert "s3cret-of-the-server" not in log and "Permission denied" in log
    assert run.state == common_pb2.FAILED


async def test_tasks_see_a_minimal_environment_without_the_servers_secrets_or_files(
    containment: str, data_dir: Path, compiled: dict[str, Spec]
) -> None:
    secrets = {"KFPGRPC_AUTH_TOKEN": "s3cret-token", "AWS_SECRET_ACCESS_KEY": "fake-cloud-credential", "LANG": "de_DE.UTF-8"}
    server = ServerProcess(data_dir, "--task-containment", containment, env=secrets)
    try:
        async with grpc.aio.insecure_channel(server.address, interceptors=bearer("s3cret-token")) as channel:
            stubs = Stubs.on(channel)
            version = await upload(stubs, "environment", compiled["environment-pipeline"])
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version))).run_id))[-1]
            assert run.state == common_pb2.SUCCEEDED, run.error
            logs = (await log_text(stubs, run.run_id)).splitlines()
    finally:
        server.terminate()
    printed = json.loads(next(line for line in logs if line.startswith("{")))
    assert printed["descriptors"] == ["0", "1", "2", "3"]  # none of the server's (its database)
    environment = printed["environment"]
    assert set(environment) == {
        "PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED", "KFP_POD_NAME", "KFP_POD_UID", "GREETING",
        "KFPGRPC_RUN_ID", "KFPGRPC_TASK_DIR",
    }
    assert not set(secrets.values()) & set(environment.values())
    task_dir = Path(environment["KFPGRPC_TASK_DIR"])
    assert task_dir.is_relative_to(data_dir.absolute())
    assert (environment["HOME"], environment["TMPDIR"]) == (str(task_dir / "home"), str(task_dir / "tmp"))
    assert environment["LANG"] == "C.UTF-8" and environment["GREETING"] == "hello"
    assert environment["KFP_POD_NAME"] == f"{run.run_id}-print-environment"
    assert environment["KFPGRPC_RUN_ID"] == run.run_id
    assert not task_dir.exists()  # removed with the task
