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
