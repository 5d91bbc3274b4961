"""The `kfpgrpc` client commands as a user types them: `python -m kfpgrpc.cli …` subprocesses
against the in-process `server` (run with asyncio subprocesses, so the server keeps serving)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from kfpgrpc.config import ServerConfig
from kfpgrpc.server import KfpGrpcServer
from tests.support import ServerProcess


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


async def kfpgrpc(server: KfpGrpcServer | str, *args: str, **env: str) -> Result:
    """Run `kfpgrpc ARGS` against `server` (its address in KFPGRPC_SERVER) to its end."""
    address = server if isinstance(server, str) else server.address
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kfpgrpc.cli", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KFPGRPC_SERVER": address, **env},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture
def pipeline_files(tmp_path: Path, compiled: dict[str, Any]) -> dict[str, str]:
    """Each compiled test pipeline as a YAML file, by pipeline name."""
    files = {}
    for name, spec in compiled.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        files[name] = str(path)
    return files


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.stderr.startswith("kfpgrpc: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


async def test_upload_run_and_watch_exit_0_on_success_and_1_on_failure(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    uploaded = await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "--name", "adder")
    assert uploaded.code == 0, uploaded
    assert uploaded.stdout.startswith("uploaded version v1 (") and "of pipeline adder (" in uploaded.stdout
    again = await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "--name", "adder", "-o", "json")
    assert again.json["name"] == "v2"

    created = await kfpgrpc(server, "runs", "create", "--pipeline", "adder", "--param", "a=5", "--param", "b=3", "-o", "json")
    assert created.code == 0, created
    run = created.json
    assert run["runtime_config"]["parameters"] == {"a": 5, "b": 3, "label": "sum", "verbose": False,
                                                   "tags": ["demo"], "options": {"retries": 1}}  # parsed as JSON, defaults added
    watched = await kfpgrpc(server, "runs", "watch", run["run_id"])
    assert watched.code == 0, watched
    lines = watched.stdout.splitlines()
    assert lines[0] == f"run {run['display_name']} ({run['run_id']})"
    assert "task add: SUCCEEDED" in lines and "task add-2: SUCCEEDED" in lines
    assert lines[-1].startswith(f"run {run['display_name']} SUCCEEDED after ")
    got = await kfpgrpc(server, "runs", "get", run["run_id"], "-o", "json")
    outputs = {t["task_id"]: t["output_parameters"] for t in got.json["run_details"]["task_details"]}
    assert outputs == {"add": {"Output": 8}, "add-2": {"Output": 11}}
    shown = await kfpgrpc(server, "runs", "get", run["run_id"])
    shown_lines = [line.split() for line in shown.stdout.splitlines()]
    assert ["State:", "SUCCEEDED"] in shown_lines and ["add-2", "SUCCEEDED"] == shown_lines[-1][:2]

    await kfpgrpc(server, "pipelines", "upload", pipeline_files["failing-pipeline"])
    failed = await kfpgrpc(server, "runs", "create", "--pipeline", "failing-pipeline", "--param", "message=broken on purpose", "--watch")
    assert failed.code == 1, failed
    assert "FAILED after " in failed.stdout.splitlines()[-1]
    assert failed.stdout.splitlines()[-1].endswith("s: task 'fail' failed: exit code 1")
    failed_run = (await kfpgrpc(server, "runs", "list", "--state", "FAILED", "-o", "json")).json
    assert [r["runtime_config"]["parameters"]["message"] for r in failed_run] == ["broken on purpose"]
    logs = await kfpgrpc(server, "runs", "logs", failed_run[0]["run_id"])
    assert logs.stdout.splitlines()[-1] == "fail: RuntimeError: broken on purpose"
    json_watch = await kfpgrpc(server, "runs", "watch", failed_run[0]["run_id"], "-o", "json")
    assert (json_watch.code, json_watch.json["state"]) == (1, "FAILED")


async def test_runs_watch_draws_a_live_task_view_on_a_terminal(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["nested-pipeline"])
    run = (await kfpgrpc(server, "runs", "create", "--pipeline", "nested-pipeline", "--param", "x=1", "-o", "json")).json

    def watch_in_a_terminal() -> tuple[int, str]:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "kfpgrpc.cli", "runs", "watch", run["run_id"]], stdin=terminal, stdout=terminal, stderr=terminal,
            env={**os.environ, "KFPGRPC_SERVER": server.address, "COLUMNS": "120", "TERM": "xterm"})
        os.close(terminal)
        screen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        os.close(controller)
        return process.wait(timeout=60), screen.decode(errors="replace")

    code, screen = await asyncio.to_thread(watch_in_a_terminal)
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not printed line by line
    for task_id in ("add-twice", "add-twice.add", "add-twice.add-2", "add"):
        assert task_id in screen
    assert re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.splitlines()[-1]).startswith(f"run {run['display_name']} SUCCEEDED after ")


async def test_json_output_uses_proto_field_names_and_parses(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    experiment = (await kfpgrpc(server, "experiments", "create", "nightly-jobs", "--description", "scheduled", "-o", "json")).json
    assert set(experiment) >= {"experiment_id", "display_name", "description", "created_at", "storage_state"}
    experiments = (await kfpgrpc(server, "experiments", "list", "-o", "json")).json
    assert [e["display_name"] for e in experiments] == ["Default", "nightly-jobs"]
    version = (await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "-o", "json")).json
    assert set(version) >= {"pipeline_id", "pipeline_version_id", "pipeline_spec"}
    pipelines = (await kfpgrpc(server, "pipelines", "list", "-o", "json")).json
    assert [(p["pipeline_id"], p["name"]) for p in pipelines] == [(version["pipeline_id"], "add-pipeline")]
    assert (await kfpgrpc(server, "pipelines", "get", "add-pipeline", "-o", "json")).json["pipeline_id"] == version["pipeline_id"]
    assert (await kfpgrpc(server, "runs", "list", "-o", "json")).json == []
    archived = await kfpgrpc(server, "experiments", "archive", "nightly-jobs", "-o", "json")
    assert archived.json["storage_state"] == "ARCHIVED"
    table = await kfpgrpc(server, "experiments", "list")
    assert table.stdout.splitlines()[0].split() == ["EXPERIMENT", "ID", "NAME", "STATE", "CREATED", "LAST", "RUN"]


async def test_recurring_commands_from_create_to_next_fire_times(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "--name", "adder")
    created = await kfpgrpc(server, "recurring", "create", "--pipeline", "adder", "--cron", "0 3 * * *", "--time-zone", "America/New_York",
                            "--max-concurrency", "2", "--no-catchup", "--param", "a=40", "--name", "nightly", "-o", "json")
    assert created.code == 0, created
    recurring = created.json
    assert recurring["trigger"]["cron_schedule"] == {"cron": "0 3 * * *", "time_zone": "America/New_York"}
    assert (recurring["max_concurrency"], recurring["no_catchup"], recurring["status"]) == ("2", True, "ENABLED")

    upcoming = await kfpgrpc(server, "recurring", "next", "nightly", "--count", "3")
    header, *rows = upcoming.stdout.splitlines()
    assert header.split() == ["America/New_York", "UTC"]
    expected = [datetime.fromisoformat(t) for t in recurring["next_scheduled_times"][:3]]
    zone = ZoneInfo("America/New_York")
    assert rows == [f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}  {t.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC" for t in expected]
    assert all(row.startswith(row[:10] + " 03:00:00 E") for row in rows)  # 03:00 EST or EDT
    as_json = (await kfpgrpc(server, "recurring", "next", recurring["recurring_run_id"], "-o", "json")).json
    assert len(as_json) == 10 and as_json[0]["utc"] == recurring["next_scheduled_times"][0].replace(".000Z", "Z")

    backfilled = await kfpgrpc(server, "recurring", "backfill", "nightly", "--start", "2024-01-01T00:00:00Z", "--end", "2024-01-03T12:00:00Z")
    assert backfilled.stdout == "queued 3 ticks of nightly; 0 already had a run\n"  # 08:00Z, 03:00 EST, each day
    updated = (await kfpgrpc(server, "recurring", "update", "nightly", "--every", "2h", "--catchup", "-o", "json")).json
    assert updated["trigger"] == {"periodic_schedule": {"interval_second": "7200"}}
    assert "no_catchup" not in updated  # false: JSON leaves it out
    assert updated["max_concurrency"] == "2"  # untouched by the update
    assert (await kfpgrpc(server, "recurring", "disable", "nightly")).stdout.startswith("disabled recurring run nightly (")
    assert (await kfpgrpc(server, "recurring", "next", "nightly")).stdout == "no upcoming fire times (disabled)\n"
    assert (await kfpgrpc(server, "recurring", "enable", "nightly", "-o", "json")).json["status"] == "ENABLED"

    triggered = await kfpgrpc(server, "recurring", "trigger", "nightly", "--watch")
    assert triggered.code == 0, triggered
    assert triggered.stdout.splitlines()[-1].startswith("run nightly-")
    listed = await kfpgrpc(server, "recurring", "list")
    assert listed.stdout.splitlines()[1].split()[1:4] == ["nightly", "ENABLED", "every"]
    assert (await kfpgrpc(server, "recurring", "delete", "nightly")).code == 0
    assert_one_line_error(await kfpgrpc(server, "recurring", "get", "nightly"), 1, "NOT_FOUND", "no recurring run named or with id 'nightly'")


async def test_events_tail_follows_the_log_with_filters(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    for _ in range(2):
        await kfpgrpc(server, "pipelines", "upload", pipeline_files["instant-pipeline"])
    run = (await kfpgrpc(server, "runs", "create", "--pipeline", "instant-pipeline", "--watch", "-o", "json")).json
    completed = await kfpgrpc(server, "events", "tail", "--run", run["run_id"], "--type", "RUN_COMPLETED", "--limit", "1", "-o", "json")
    assert completed.code == 0, completed
    event = json.loads(completed.stdout)
    assert (event["type"], event["run_id"], event["run_completed"]["state"]) == ("RUN_COMPLETED", run["run_id"], "SUCCEEDED")
    tail = await kfpgrpc(server, "events", "tail", "--after", "1", "--limit", "2")
    first, second = tail.stdout.splitlines()
    assert first.split()[0] == "2" and "PIPELINE_VERSION_CREATED" in first
    assert second.split()[0] == "3" and "RUN_STATE_CHANGED" in second


async def test_bad_command_lines_give_one_line_and_exit_2(server: KfpGrpcServer, tmp_path: Path) -> None:
    cases = [
        (("runs", "create"), "runs create: the following arguments are required: --pipeline"),
        (("runs", "create", "--pipeline", "p", "--param", "novalue"), "argument --param: expected NAME=VALUE, got 'novalue'"),
        (("recurring", "create", "--pipeline", "p", "--cron", "* * * * *", "--every", "1h"), "argument --every: not allowed with argument --cron"),
        (("recurring", "create", "--pipeline", "p", "--every", "soon"), "must be seconds or a duration such as 1h30m, got 'soon'"),
        (("recurring", "backfill", "x", "--start", "yesterday", "--end", "now"), "argument --start: must be an ISO 8601 time"),
        (("runs", "list", "--output", "yaml"), "argument -o/--output: invalid choice: 'yaml'"),
        (("runs", "list", "--state", "RUNNING", "--filter", "{}"), "argument --filter: not allowed with argument --state"),
        (("pipelines", "upload", str(tmp_path / "missing.yaml")), "no such file"),
        (("runs", "frobnicate"), "invalid choice: 'frobnicate'"),
        (("runs", "list", "--tls-cert", __file__), "--tls-cert and --tls-key go together"),
    ]
    for args, message in cases:
        assert_one_line_error(await kfpgrpc(server, *args), 2, message)


async def test_server_errors_give_one_line_with_the_code_and_exit_1(server: KfpGrpcServer, pipeline_files: dict[str, str], tmp_path: Path) -> None:
    assert_one_line_error(await kfpgrpc(server, "runs", "get", "no-such-run"), 1, "kfpgrpc: NOT_FOUND: run with run_id 'no-such-run' not found")
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"])
    assert_one_line_error(await kfpgrpc(server, "runs", "create", "--pipeline", "add-pipeline", "--param", "a=[1]"), 1,
                          "INVALID_ARGUMENT", "run.runtime_config.parameters.a: must be an integer")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelineInfo: {name: broken}\nschemaVersion: '1.0'\n")
    assert_one_line_error(await kfpgrpc(server, "pipelines", "upload", str(broken)), 1,
                          "INVALID_ARGUMENT", "pipeline_version.pipeline_spec.schemaVersion")
    assert_one_line_error(await kfpgrpc("127.0.0.1:1", "runs", "list"), 1, "kfpgrpc: UNAVAILABLE: ")
    assert_one_line_error(await kfpgrpc("127.0.0.1:1", "runs", "watch", "some-run"), 1, "kfpgrpc: UNAVAILABLE: ")  # no retrying in the dark


async def test_events_tail_waits_for_a_server_that_is_not_up_yet(tmp_path: Path, pipeline_files: dict[str, str]) -> None:
    with socket.socket() as impostor:  # holds the port, and hangs up on the tail's first attempt
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        address = f"127.0.0.1:{impostor.getsockname()[1]}"
        tail = asyncio.create_task(kfpgrpc(address, "events", "tail", "--limit", "1", "-o", "json"))
        connection, _ = await asyncio.wait_for(asyncio.to_thread(impostor.accept), 60)
        connection.close()
    server = await asyncio.to_thread(ServerProcess, tmp_path / "data", "--listen", address)
    try:
        uploaded = await kfpgrpc(address, "pipelines", "upload", pipeline_files["instant-pipeline"], "-o", "json")
        tailed = await tail
    finally:
        await asyncio.to_thread(server.terminate)
    assert tailed.code == 0, tailed
    event = json.loads(tailed.stdout)
    assert (event["sequence"], event["type"]) == ("1", "PIPELINE_VERSION_CREATED")
    assert event["pipeline_version_created"]["pipeline_version_id"] == uploaded.json["pipeline_version_id"]


async def test_token_from_the_flag_or_the_environment(data_dir: Path) -> None:
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, auth_token="s3cret"))
    await server.start()
    try:
        assert_one_line_error(await kfpgrpc(server, "experiments", "list"), 1, "UNAUTHENTICATED")
        assert (await kfpgrpc(server, "experiments", "get", "Default", "--token", "s3cret")).code == 0
        assert (await kfpgrpc(server, "experiments", "list", KFPGRPC_TOKEN="s3cret")).stdout.splitlines()[1].split()[1] == "Default"
    finally:
        await server.stop()
