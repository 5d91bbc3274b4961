"""The real kfp.Client of each kfp version (tests/kfp_sdks.py: this environment's 2.17, and each
interpreter of KFPGRPC_TEST_KFP_PYTHONS, 2.16 in .ci/run) against a real `kfpgrpc serve` with
HTTP: tests/kfp_client_session.py makes the session's calls in that version's interpreter and
prints what it saw; the values are checked here. Without KFPGRPC_TEST_KFP_PYTHONS the other
versions are one skipped case per test, as for the control-flow tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.kfp_sdks import KfpSdk
from tests.support import ServerProcess

SESSION = Path(__file__).with_name("kfp_client_session.py")
TOKEN = "s3cret-token"
ADD_TASKS = [["add", "SUCCEEDED"], ["add-2", "SUCCEEDED"]]
REFUSED_TOKEN = {"status": 401, "body": {"code": 16, "message": "missing or invalid bearer token", "details": []}}


def session(sdk: KfpSdk, tmp_path: Path, token: str | None = None) -> dict[str, Any]:
    """Run the session with `sdk`'s interpreter against a fresh server; its observations."""
    server = ServerProcess(tmp_path / "data", *(("--auth-token", token) if token else ()), http=True)
    try:
        ran = subprocess.run([sdk.python or sys.executable, str(SESSION), server.http_url, *([token] if token else [])],
                             capture_output=True, text=True, timeout=600)
    finally:
        code, stderr = server.terminate()
    assert ran.returncode == 0, ran.stderr
    assert code == 0 and "Traceback" not in stderr, stderr
    seen: dict[str, Any] = json.loads(ran.stdout)
    assert seen["kfp_version"] == sdk.version
    return seen


def fields(refused: dict[str, Any]) -> tuple[int, list[str]]:
    """A refusal's HTTP status and the fields its BadRequest detail names."""
    [detail] = refused["body"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest" and refused["body"]["code"] == 3
    return refused["status"], [violation["field"] for violation in detail["field_violations"]]


def not_found(refused: dict[str, Any], what: str, id: str) -> bool:
    return refused == {"status": 404, "body": {"code": 5, "message": f"{what} with {what.replace(' ', '_')}_id {id!r} not found", "details": []}}


def check_session(seen: dict[str, Any]) -> None:
    """Every observation of tests/kfp_client_session.py, by value."""
    experiments = seen["experiments"]
    session_id, other_id = experiments["created"][0], experiments["other_id"]
    assert experiments["created"][1:] == ["session", "the session's runs", "AVAILABLE"]
    assert (experiments["by_id"], experiments["by_name"]) == ("session", session_id)
    assert (experiments["filtered"], experiments["filtered_total"]) == (["session", "session-other"], 2)

    pipelines = seen["pipelines"]
    pipeline_id, version_id = pipelines["uploaded"][0], pipelines["version"][0]
    assert pipelines["uploaded"][1:] == ["session-adder", "adds"]
    assert pipelines["version"][1:] == [pipeline_id, "v2", "session-add"]
    assert (pipelines["id_by_name"], pipelines["id_of_unknown"]) == (pipeline_id, None)
    assert (pipelines["filtered"], pipelines["filtered_total"]) == (["session-adder"], 1)
    # The upload made the first version, named as the pipeline.
    assert (pipelines["versions"], pipelines["versions_total"]) == (["v2", "session-adder"], 2)

    runs = seen["runs"]
    common = {"experiment_id": session_id, "state": "SUCCEEDED", "storage_state": "AVAILABLE", "tasks": ADD_TASKS,
              "created": True, "finished": True}
    assert runs["package"] == {**common, "run_id": runs["package"]["run_id"], "display_name": "add-3-4",
                               "parameters": {"a": 3, "b": 4, "label": "sum"}, "pipeline_name": "session-add", "pipeline_version_id": None}
    assert runs["func"] == {**common, "run_id": runs["func"]["run_id"], "display_name": "from-func",
                            "parameters": {"a": 10, "b": 2, "label": "sum"}, "pipeline_name": "session-add", "pipeline_version_id": None}
    # A run of a stored version carries the reference, not the spec.
    assert runs["version"] == {**common, "run_id": runs["version"]["run_id"], "display_name": "by-version",
                               "parameters": {"a": 1, "b": 5, "label": "sum"}, "pipeline_name": None, "pipeline_version_id": version_id}
    # Integers come back as integers, as KFP's gateway writes them (not 3.0).
    assert all(type(value) is int for name in ("package", "func", "version") for value in (runs[name]["parameters"]["a"], runs[name]["parameters"]["b"]))
    assert runs["get"] == [runs["version"]["run_id"], "by-version", "SUCCEEDED"]
    # Sorted by display_name desc, two to a page: from-func, by-version | add-3-4.
    assert runs["first_page"] == [runs["func"]["run_id"], runs["version"]["run_id"]]
    assert (runs["first_total"], runs["has_next_page"]) == (3, True)
    assert (runs["last_page"], runs["last_next_page"]) == ([runs["package"]["run_id"]], "")
    assert runs["archived_then_unarchived"] == ["ARCHIVED", "AVAILABLE"]

    terminated = seen["terminated"]
    assert (terminated["experiment_id"], terminated["states"], terminated["finished"]) == (other_id, ["RUNNING", "CANCELED"], True)
    assert not_found(terminated["after_delete"], "run", terminated["run_id"]), terminated["after_delete"]
    assert terminated["left_in_experiment"] == 0

    recurring = seen["recurring"]
    cron_id, periodic_id = recurring["cron"]["recurring_run_id"], recurring["periodic"]["recurring_run_id"]
    assert recurring["cron"] == {
        "recurring_run_id": cron_id, "display_name": "add-nightly", "experiment_id": session_id, "mode": "DISABLE",
        "status": "DISABLED", "max_concurrency": "2", "no_catchup": True, "cron": "0 0 2 * * *",
        "start_time": "2100-01-01T00:00:00+00:00", "interval_second": None, "parameters": {"a": 3, "b": 4}}
    assert recurring["periodic"] == {
        "recurring_run_id": periodic_id, "display_name": "add-hourly", "experiment_id": other_id, "mode": "ENABLE",
        "status": "ENABLED", "max_concurrency": "1", "no_catchup": None, "cron": None,
        "start_time": "2100-01-01T00:00:00+00:00", "interval_second": "3600", "parameters": {}}
    assert (recurring["listed_in_session"], recurring["listed_total"]) == ([cron_id], 1)
    assert recurring["cron_statuses"] == ["DISABLED", "ENABLED", "DISABLED"]
    assert not_found(recurring["after_delete"], "recurring run", periodic_id), recurring["after_delete"]
    assert recurring["left"] == [cron_id]

    # Archiving an experiment archives its runs, as KFP's.
    assert seen["archived_experiment"] == {"storage_state": "ARCHIVED", "runs": ["ARCHIVED"] * 3}

    assert fields(seen["refused"]["bad_argument"]) == (400, ["run.runtime_config.parameters.a"])
    assert fields(seen["refused"]["bad_sort"]) == (400, ["sort_by"])


def test_kfp_client_session(kfp_sdk: KfpSdk, tmp_path: Path) -> None:
    seen = session(kfp_sdk, tmp_path)
    check_session(seen)
    assert "token" not in seen


def test_kfp_client_session_with_a_bearer_token(kfp_sdk: KfpSdk, tmp_path: Path) -> None:
    """Every call of the session made with kfp.Client(existing_token=...); a wrong token or none is
    refused with 401, while healthz (which kfp.Client calls when it is made) stays open."""
    seen = session(kfp_sdk, tmp_path, TOKEN)
    check_session(seen)
    assert seen["token"] == {"healthz_multi_user": False, "wrong": REFUSED_TOKEN, "none": REFUSED_TOKEN}

