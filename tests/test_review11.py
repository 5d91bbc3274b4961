"""Review of issue 11 ("Hardening"): cases of each kind the issue lists that the implementation
missed, each against a real server (real gRPC, real task subprocesses)."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import grpc
import pytest

from kfpgrpc.v1 import common_pb2, run_pb2
from tests.support import (
    Stubs,
    alive,
    eventually,
    field_violations,
    inline_run,
    run_of,
    running,
    skip_unless_containment,
    upload,
    watch_to_end,
)
from tests.test_task_processes import DAEMON_SECONDS, create, daemon, pid_in

Spec = dict[str, Any]


async def test_a_daemon_without_the_marker_survives_a_task_that_kills_its_init(
    data_dir: Path, compiled: dict[str, Spec], tmp_path: Path
) -> None:
    """Subreaper containment: the task starts a `setsid` daemon with a cleared environment (no
    KFPGRPC_TASK_DIR), then SIGKILLs its init process. The daemon is re-parented to PID 1 and the
    server's fallback (processes marked with KFPGRPC_TASK_DIR) cannot find it: it outlives its
    task, its run and the server. Each half alone is handled; together they escape."""
    await skip_unless_containment("subreaper", tmp_path / "probe")
    pid_file = tmp_path / "daemon.pid"
    try:
        async with running(data_dir, task_containment="subreaper") as (_, stubs):
            version = await upload(stubs, "shell", compiled["shell-pipeline"])
            script = daemon(pid_file, clear_environment=True) + f"; kill -9 $PPID; exec sleep {DAEMON_SECONDS}"
            run = (await watch_to_end(stubs.runs, (await create(stubs, run_of(version, script=script))).run_id))[-1]
            assert run.state == common_pb2.FAILED
        await asyncio.sleep(0.5)
        assert not alive(pid_in(pid_file)), "the task's daemon outlived its task and the server"
    finally:
        if pid_file.exists() and alive(pid_in(pid_file)):
            import os, signal
            os.kill(pid_in(pid_file), signal.SIGKILL)


async def test_a_task_whose_leader_exits_ends_even_if_it_stopped_its_init(data_dir: Path, compiled: dict[str, Spec], tmp_path: Path) -> None:
    """Subreaper containment: the server waits for task_init.py, not for the leader. A task
    that sends SIGSTOP to its init and then exits stays RUNNING for ever (until terminated): its
    own process has exited, so the issue's rule says it has ended."""
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
        assert run.state in (common_pb2.SUCCEEDED, common_pb2.FAILED)
