"""The `kfpgrpc` client commands as a user types them: `python -m kfpgrpc.cli …` subprocesses
against the in-process `server` (run with asyncio subprocesses, so the server keeps serving)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import pty
import re
import signal
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
    *_, outcome, error_line, log_hint = failed.stdout.splitlines()
    assert "FAILED after " in outcome and outcome.endswith("s: task 'fail' failed: exit code 1")
    assert error_line == "task fail failed: exit code 1: RuntimeError: broken on purpose"  # the error, not only the exit code
    failed_run = (await kfpgrpc(server, "runs", "list", "--state", "FAILED", "-o", "json")).json
    assert [r["runtime_config"]["parameters"]["message"] for r in failed_run] == ["broken on purpose"]
    assert log_hint == f"its log: kfpgrpc runs logs {failed_run[0]['run_id']} --task fail"
    logs = await kfpgrpc(server, *log_hint.removeprefix("its log: kfpgrpc ").split())  # the command works as printed
    assert logs.stdout.splitlines()[-1] == "fail: RuntimeError: broken on purpose"
    json_watch = await kfpgrpc(server, "runs", "watch", failed_run[0]["run_id"], "-o", "json")
    assert (json_watch.code, json_watch.json["state"]) == (1, "FAILED")


async def test_runs_watch_draws_a_live_task_view_on_a_terminal(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["nested-pipeline"])
    run = (await kfpgrpc(server, "runs", "create", "--pipeline", "nested-pipeline", "--param", "x=1", "-o", "json")).json

    def watch_in_a_terminal(run_id: str) -> tuple[int, str]:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "kfpgrpc.cli", "runs", "watch", run_id], stdin=terminal, stdout=terminal, stderr=terminal,
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

    code, screen = await asyncio.to_thread(watch_in_a_terminal, run["run_id"])
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not printed line by line
    for task_id in ("add-twice", "add-twice.add", "add-twice.add-2", "add"):
        assert task_id in screen
    assert re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.splitlines()[-1]).startswith(f"run {run['display_name']} SUCCEEDED after ")
    assert "(cached)" not in screen
    # The same run again: its tasks' outputs come from the cache, and the view says so.
    again = (await kfpgrpc(server, "runs", "create", "--pipeline", "nested-pipeline", "--param", "x=1", "-o", "json")).json
    code, screen = await asyncio.to_thread(watch_in_a_terminal, again["run_id"])
    assert code == 0 and "SUCCEEDED (cached)" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen), screen
    plain = (await kfpgrpc(server, "runs", "watch", again["run_id"])).stdout.splitlines()  # not a terminal
    assert "task add-twice.add: SUCCEEDED (cached)" in plain and "task add-twice: SUCCEEDED" in plain, plain


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
        (("runs", "list", "--server", "grpc://127.0.0.1:8887"), "runs list: argument --server (or KFPGRPC_SERVER): unknown scheme grpc://"),
        (("runs", "list", "--server", "127.0.0.1:http"), "argument --server (or KFPGRPC_SERVER): the port must be a number from 1 to 65535"),
        (("runs", "list", "--server", "http://127.0.0.1/api"), "without a path, query or user; got 'http://127.0.0.1/api'"),
        (("runs", "list", "--server", "http://127.0.0.1", "--tls"), "an http:// address is plaintext: use https://"),
    ]
    for args, message in cases:
        assert_one_line_error(await kfpgrpc(server, *args), 2, message)


async def test_numbers_out_of_their_fields_range_give_one_line_and_exit_2(server: KfpGrpcServer) -> None:
    """Each number is checked against the range of the proto field it goes into (and is never
    negative where that means nothing) before anything is sent: no traceback from islice or
    from protobuf's encoder."""
    huge = "99999999999999999999"
    cases = [
        (("events", "tail", "--limit", "-1"), "argument --limit: must be a whole number from 0 to 9223372036854775807, got '-1'"),
        (("events", "tail", "--after", "99999999999999999999999"), "argument --after: must be a whole number from 0 to 9223372036854775807"),
        (("events", "tail", "--after", "-5"), "argument --after: must be a whole number from 0 to"),
        (("recurring", "create", "--pipeline", "p", "--every", "1h", "--max-concurrency", huge),
         f"recurring create: argument --max-concurrency: must be a whole number from 0 to 9223372036854775807, got '{huge}'"),
        (("recurring", "update", "nightly", "--max-concurrency", huge), "recurring update: argument --max-concurrency: must be a whole number"),
        (("recurring", "create", "--pipeline", "p", "--every", huge, "--name", "e1"),
         f"argument --every: must be a whole number of seconds from 1 to 9223372036854775807, got '{huge}'"),
        (("recurring", "create", "--pipeline", "p", "--every", "1e400"), "argument --every: must be a whole number of seconds from 1 to"),
        (("recurring", "create", "--pipeline", "p", "--every", "nan"), "argument --every: must be a whole number of seconds from 1 to"),
        (("recurring", "next", "nightly", "--count", "-1"), "argument --count: must be a whole number from 0 to 2147483647, got '-1'"),
        (("runs", "list", "--limit", "-1"), "runs list: argument --limit: must be a whole number from 0 to 2147483647, got '-1'"),
        (("experiments", "list", "--limit", "many"), "argument --limit: must be a whole number from 0 to 2147483647, got 'many'"),
    ]
    for args, message in cases:
        result = await kfpgrpc(server, *args)
        assert "Traceback" not in result.stderr, result.stderr
        assert_one_line_error(result, 2, message)


CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control character but the newline ending each line


async def test_server_strings_with_control_characters_are_shown_escaped(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    """A name another client gave, with ESC, BEL, a newline and a C1 CSI in it, neither sets the
    terminal's title, clears it nor forges a row of text output; JSON keeps it as it is."""
    evil = "evil\x1b]0;pwned\x07\x1b[2J\nFAKE-ROW  SUCCEEDED\x9b31m\x7f"
    shown = "evil\\x1b]0;pwned\\x07\\x1b[2J\\x0aFAKE-ROW  SUCCEEDED\\x9b31m\\x7f"
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["instant-pipeline"])
    assert (await kfpgrpc(server, "experiments", "create", evil)).code == 0
    created = await kfpgrpc(server, "runs", "create", "--pipeline", "instant-pipeline", "--experiment", evil, "--name", evil, "--watch")
    assert created.code == 0, created
    run = (await kfpgrpc(server, "runs", "list", "-o", "json")).json[0]
    assert run["display_name"] == evil  # stored and sent as given: only the text output escapes it
    outputs = [created.stdout]
    for args in (("runs", "list"), ("runs", "get", run["run_id"]), ("experiments", "list"), ("experiments", "get", evil),
                 ("events", "tail", "--run", run["run_id"], "--limit", "2")):
        result = await kfpgrpc(server, *args)
        assert result.code == 0, result
        outputs.append(result.stdout)
    for output in outputs:
        assert not CONTROLS.search(output), output
        assert shown in output, output
        assert not any(line.startswith("FAKE-ROW") for line in output.splitlines()), output
    rows = (await kfpgrpc(server, "runs", "list")).stdout.splitlines()
    assert len(rows) == 2 and rows[1].split()[:2] == [run["run_id"], shown.split()[0]]


async def test_server_errors_give_one_line_with_the_code_and_exit_1(server: KfpGrpcServer, pipeline_files: dict[str, str], tmp_path: Path) -> None:
    assert_one_line_error(await kfpgrpc(server, "runs", "get", "no-such-run"), 1, "kfpgrpc: NOT_FOUND: run with run_id 'no-such-run' not found")
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"])
    assert_one_line_error(await kfpgrpc(server, "recurring", "create", "--pipeline", "add-pipeline", "--every", "1h", "--max-concurrency", "1000"),
                          1, "INVALID_ARGUMENT", "recurring_run.max_concurrency: must be between 1 and 100")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelineInfo: {name: broken}\nschemaVersion: '1.0'\n")
    assert_one_line_error(await kfpgrpc(server, "pipelines", "upload", str(broken)), 1,
                          "INVALID_ARGUMENT", "pipeline_version.pipeline_spec.schemaVersion")
    for args in (("runs", "list"), ("runs", "watch", "some-run")):  # a watch does not retry in the dark either
        assert_one_line_error(await kfpgrpc("127.0.0.1:1", *args), 1, "kfpgrpc: UNAVAILABLE: cannot reach kfpgrpc at 127.0.0.1:1 (",
                              "Connection refused", "): is `kfpgrpc serve` running there? set --server or KFPGRPC_SERVER")
    assert_one_line_error(await kfpgrpc(server, "runs", "list", "--server", f"https://{server.address}"), 1,
                          f"cannot reach kfpgrpc at {server.address} (", "TLS failed: --tls-ca must name the CA")


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
    waiting = tailed.stderr.splitlines()  # it said why it waited, and that it would go on trying
    assert waiting and all(line.startswith(f"kfpgrpc: UNAVAILABLE: cannot reach kfpgrpc at {address} (") for line in waiting), waiting
    assert waiting[0].endswith("is `kfpgrpc serve` running there? set --server or KFPGRPC_SERVER (and --tls-ca FILE if it serves TLS); retrying")
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


async def test_connection_options_work_before_the_command_too(data_dir: Path, tmp_path: Path) -> None:
    """`kfpgrpc --server HOST runs list` used to fail with "invalid choice: 'HOST'". Given on
    both sides, the one after the command wins; before `serve`, they are a usage error."""
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.1:0", data_dir=data_dir, auth_token="s3cret"))
    await server.start()
    try:
        listed = await kfpgrpc("127.0.0.1:1", "--server", server.address, "--token", "s3cret", "experiments", "list", "-o", "json")
        assert listed.code == 0, listed
        assert [e["display_name"] for e in listed.json] == ["Default"]
        assert (await kfpgrpc("127.0.0.1:1", "--server", "127.0.0.1:1", "--token", "wrong",
                              "runs", "list", "--server", server.address, "--token", "s3cret")).code == 0
        assert_one_line_error(await kfpgrpc("127.0.0.1:1", "--server", server.address, "experiments", "list"), 1, "UNAUTHENTICATED")
    finally:
        await server.stop()
    refused = await kfpgrpc("127.0.0.1:1", "--server", "h", "serve", "--data-dir", str(tmp_path / "unused"))
    assert_one_line_error(refused, 2, "--server: connection options are for the client commands")
    assert not (tmp_path / "unused").exists()


async def test_param_values_take_the_types_the_pipeline_declares(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "--name", "adder")
    created = await kfpgrpc(server, "runs", "create", "--pipeline", "adder", "--param", "label=null", "--param", "verbose=True",
                            "--param", "a=5.0", "--param", "scale=.5", "--param", "tags=[1, \"x\"]", "--param", 'options={"k": null}',
                            "-o", "json")
    assert created.code == 0, created
    parameters = created.json["runtime_config"]["parameters"]
    assert parameters == {"label": "null", "verbose": True, "a": 5, "b": 2, "scale": 0.5, "tags": [1, "x"], "options": {"k": None}}
    assert (await kfpgrpc(server, "runs", "watch", created.json["run_id"])).code == 0  # the typed values run

    for text in ("20261129", "1.10", "true", "", "[1]"):  # a STRING input takes the text as it stands
        recurring = await kfpgrpc(server, "recurring", "create", "--pipeline", "adder", "--every", "1h", "--disabled",
                                  "--param", f"label={text}", "--param", "verbose=0", "-o", "json")
        assert recurring.code == 0, recurring
        assert recurring.json["runtime_config"]["parameters"] == {"label": text, "verbose": False}

    refused = [
        ("a=five", "a: must be a whole number (NUMBER_INTEGER) from -2**53 to 2**53, got 'five'"),
        ("a=2.5", "a: must be a whole number (NUMBER_INTEGER)"),
        ("a=9007199254740993", "a: must be a whole number (NUMBER_INTEGER)"),  # would round to 2**53 as a JSON number
        ("scale=nan", "scale: must be a finite number (NUMBER_DOUBLE), got 'nan'"),
        ("verbose=yes", "verbose: must be true, false, 1 or 0 (BOOLEAN), got 'yes'"),
        ("tags=demo", "tags: must be a JSON array (LIST)"),
        ("options=[1]", "options: must be a JSON object (STRUCT)"),
        ("lable=x", "lable: is not an input of the pipeline; its inputs: a (NUMBER_INTEGER), b (NUMBER_INTEGER), label (STRING), "
                    "options (STRUCT), scale (NUMBER_DOUBLE), tags (LIST), verbose (BOOLEAN)"),
    ]
    for param, problem in refused:
        for command in (("runs", "create", "--pipeline", "adder"), ("recurring", "create", "--pipeline", "adder", "--every", "1h")):
            assert_one_line_error(await kfpgrpc(server, *command, "--param", param), 2,
                                  f"kfpgrpc: {command[0]} create: argument --param: {problem}")
    assert (await kfpgrpc(server, "runs", "list", "-o", "json")).json[0]["run_id"] == created.json["run_id"]  # nothing was sent


async def test_param_types_come_from_the_version_that_runs(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    v1 = (await kfpgrpc(server, "pipelines", "upload", pipeline_files["add-pipeline"], "--name", "adder", "-o", "json")).json
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["instant-pipeline"], "--name", "adder")  # v2, the latest: no input a
    assert_one_line_error(await kfpgrpc(server, "runs", "create", "--pipeline", "adder", "--param", "a=1"), 2,
                          "a: is not an input of the pipeline; its inputs: gate (STRING), label (STRING)")
    run = await kfpgrpc(server, "runs", "create", "--pipeline", "adder", "--version", "v1", "--param", "a=1", "-o", "json")
    assert run.code == 0, run

    created = await kfpgrpc(server, "recurring", "create", "--pipeline", "adder", "--version", "v1", "--every", "1h", "--disabled",
                            "--name", "pinned", "--param", "a=1", "-o", "json")
    assert created.code == 0, created
    updated = await kfpgrpc(server, "recurring", "update", "pinned", "--param", "a=2", "-o", "json")  # typed by its own v1
    assert updated.code == 0, updated
    assert updated.json["runtime_config"]["parameters"] == {"a": 2}
    assert_one_line_error(await kfpgrpc(server, "recurring", "update", "pinned", "--version", "v2", "--param", "a=3"), 2,
                          "a: is not an input of the pipeline")
    moved = await kfpgrpc(server, "recurring", "update", "pinned", "--pipeline", "adder", "--version", "v2", "--param", "label=1", "-o", "json")
    assert moved.code == 0, moved
    assert moved.json["pipeline_version_reference"]["pipeline_version_id"] != v1["pipeline_version_id"]
    assert moved.json["runtime_config"]["parameters"] == {"label": "1"}  # typed by v2, where label is a STRING
    # A version alone is a version of the recurring run's own pipeline (it was sent without one).
    pinned_again = await kfpgrpc(server, "recurring", "update", "pinned", "--version", "v1", "--param", "a=4", "-o", "json")
    assert pinned_again.code == 0, pinned_again
    assert pinned_again.json["pipeline_version_reference"] == {"pipeline_id": v1["pipeline_id"], "pipeline_version_id": v1["pipeline_version_id"]}


async def test_a_name_several_recurring_runs_share_lists_their_ids(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["instant-pipeline"])
    ids = [(await kfpgrpc(server, "recurring", "create", "--pipeline", "instant-pipeline", "--every", "1h", "--disabled", "--name", "twin",
                          "-o", "json")).json["recurring_run_id"] for _ in range(2)]
    assert_one_line_error(await kfpgrpc(server, "recurring", "enable", "twin"), 1,
                          f"FAILED_PRECONDITION: 2 recurring runs are named 'twin' ({ids[0]}, {ids[1]}): use an id")
    assert (await kfpgrpc(server, "recurring", "enable", ids[1])).code == 0


async def test_experiment_names_select_runs_and_an_unknown_one_is_an_error(server: KfpGrpcServer, pipeline_files: dict[str, str]) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["instant-pipeline"])
    await kfpgrpc(server, "experiments", "create", "nightly")
    run = (await kfpgrpc(server, "runs", "create", "--pipeline", "instant-pipeline", "--experiment", "nightly", "--watch", "-o", "json")).json
    assert [r["run_id"] for r in (await kfpgrpc(server, "runs", "list", "--experiment", "nightly", "-o", "json")).json] == [run["run_id"]]
    assert (await kfpgrpc(server, "runs", "list", "--experiment", "Default", "-o", "json")).json == []
    for args in (("runs", "list"), ("recurring", "list"), ("events", "tail", "--limit", "1")):
        assert_one_line_error(await kfpgrpc(server, *args, "--experiment", "nigthly"), 1,
                              "NOT_FOUND: no experiment named or with id 'nigthly'")


async def test_ctrl_c_stops_the_watch_and_says_how_to_stop_the_run(server: KfpGrpcServer, pipeline_files: dict[str, str],
                                                                  tmp_path: Path) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["gated-pipeline"])
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kfpgrpc.cli", "runs", "create", "--pipeline", "gated-pipeline", "--param", f"counter={tmp_path / 'counter'}",
        "--param", f"gate={tmp_path / 'gate'}", "--watch",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KFPGRPC_SERVER": server.address})
    assert watch.stdout is not None
    first = (await asyncio.wait_for(watch.stdout.readline(), 60)).decode()
    run_id = first.rsplit("(", 1)[1].rstrip(")\n")
    while b"task wait-for: RUNNING" not in await asyncio.wait_for(watch.stdout.readline(), 60):
        pass
    watch.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 130
    hint = f"kfpgrpc: stopped watching; the run continues on the server. Stop it with: kfpgrpc runs terminate {run_id}\n"
    assert stderr.decode() == hint
    assert (await kfpgrpc(server, "runs", "get", run_id, "-o", "json")).json["state"] == "RUNNING"
    terminated = await kfpgrpc(server, *hint.split("kfpgrpc ")[-1].split())  # the command works as printed
    assert terminated.code == 0, terminated
    assert (await kfpgrpc(server, "runs", "watch", run_id, "-o", "json")).json["state"] == "CANCELED"


# Runs the command of its arguments with SIGINT ignored, as a shell without job control (a
# script, a CI job) starts its `&` commands: their children inherit it, and Python then installs
# no KeyboardInterrupt.
SIGINT_IGNORED = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"


async def test_ctrl_c_stops_every_stream_command_also_when_sigint_was_ignored_at_start(
        server: KfpGrpcServer, pipeline_files: dict[str, str], tmp_path: Path) -> None:
    await kfpgrpc(server, "pipelines", "upload", pipeline_files["gated-pipeline"])
    run_id = (await kfpgrpc(server, "runs", "create", "--pipeline", "gated-pipeline", "--param", f"counter={tmp_path / 'counter'}",
                            "--param", f"gate={tmp_path / 'gate'}", "-o", "json")).json["run_id"]
    hint = f"kfpgrpc: stopped watching; the run continues on the server. Stop it with: kfpgrpc runs terminate {run_id}\n"
    # Each command waits for the next message of its stream when SIGINT comes: the run waits for
    # a gate that never opens.
    for args, shown, stderr in [(("runs", "watch", run_id), b"task wait-for: RUNNING", hint),
                                (("runs", "logs", run_id, "--follow"), b"record: ", ""),
                                (("events", "tail"), b"PIPELINE_VERSION_CREATED", "")] * 2:
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SIGINT_IGNORED, sys.executable, "-m", "kfpgrpc.cli", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KFPGRPC_SERVER": server.address})
        assert command.stdout is not None
        while shown not in (line := await asyncio.wait_for(command.stdout.readline(), 60)):
            assert line, f"{args}: ended before printing {shown!r}"
        command.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(command.communicate(), 60)  # a hang guard: it ends at once
        finally:
            if command.returncode is None:
                command.kill()
                await command.wait()
        assert (command.returncode, err.decode()) == (130, stderr), args
    assert (await kfpgrpc(server, "runs", "terminate", run_id)).code == 0


async def test_server_without_a_port_means_port_8887_and_http_urls_are_plaintext(data_dir: Path) -> None:
    # 127.0.0.2 is this machine too (the loopback network is 127.0.0.0/8); port 8887 there is free
    # of other tests, which listen on 127.0.0.1.
    server = KfpGrpcServer(ServerConfig(listen="127.0.0.2:8887", data_dir=data_dir))
    await server.start()
    try:
        for address in ("127.0.0.2", "http://127.0.0.2", "http://127.0.0.2:8887/", "HTTP://127.0.0.2"):
            listed = await kfpgrpc("127.0.0.1:1", "experiments", "list", "--server", address, "-o", "json")
            assert listed.code == 0, (address, listed)
            assert [e["display_name"] for e in listed.json] == ["Default"]
        assert (await kfpgrpc("127.0.0.2", "experiments", "get", "Default")).code == 0  # KFPGRPC_SERVER too
    finally:
        await server.stop()


async def test_version_and_help_need_no_server(data_dir: Path) -> None:
    shown = await kfpgrpc("127.0.0.1:1", "--version")
    assert (shown.code, shown.stdout, shown.stderr) == (0, f"kfpgrpc {importlib.metadata.version('kfpgrpc')}\n", "")


# What `kfpgrpc serve` needs and the client commands do not: the server and its store, the kfp
# SDK (kfp.pipeline_spec imports all of it when it is installed), YAML, cron and the live view.
SERVER_MODULES = {"kfpgrpc.server", "kfpgrpc.api", "kfpgrpc.core", "kfpgrpc.store", "kfpgrpc.executor", "kfpgrpc.pipeline_spec",
                  "kfpgrpc.schedule", "kfp", "aiosqlite", "croniter", "yaml", "rich"}


async def test_client_commands_import_nothing_of_the_server(server: KfpGrpcServer) -> None:
    script = """
import json, sys
from kfpgrpc.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""
    for args in (["--help"], ["runs", "list"], ["runs", "get", "no-such-run"], ["experiments", "get", "Default", "-o", "json"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KFPGRPC_SERVER": server.address})
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        report = json.loads(stderr.decode().splitlines()[-1])
        assert report["code"] == (1 if "no-such-run" in args else 0), (args, stderr)
        loaded = [m for m in report["modules"] if any(m == name or m.startswith(name + ".") for name in SERVER_MODULES)]
        assert loaded == [], (args, loaded)
