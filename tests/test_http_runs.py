"""Runs over KFP's REST API (kfpgrpc/http/runs.py), driven by the real kfp.Client against a real
`kfpgrpc serve`: runs from a package, a pipeline function and a stored version, waited for to
completion with their task details, listed by experiment, sorted and paged, archived, terminated,
retried, deleted, and refused naming the field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import pytest

from tests import pipelines
from tests.support import ServerProcess
from tests.test_http import gateway_error, rest, violated_fields  # noqa: F401 - `rest`: the server fixture
from tests.test_http_pipelines import write

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")  # kfp.Client's, always
WAIT = 120  # seconds: a bound on a run's end, not a measure of it
POLL = 0.1


def wait_for_state(client: kfp.Client, run_id: str, state: str) -> kfp_server_api.V2beta1Run:
    """The run once in `state` (wait_for_run_completion does not stop at CANCELED)."""
    deadline = time.monotonic() + WAIT
    while (run := client.get_run(run_id)).state != state:
        assert time.monotonic() < deadline, f"run {run_id} is {run.state}, never {state}"
        time.sleep(POLL)
    return run


def test_kfp_client_runs_pipelines(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    package = write(tmp_path / "add.yaml", compiled["add-pipeline"])

    started = client.create_run_from_pipeline_package(package, arguments={"a": 3, "b": 4}, experiment_name="adding", run_name="add-3-4")
    run = client.wait_for_run_completion(started.run_id, WAIT, sleep_duration=POLL)  # type: ignore[arg-type]
    assert (run.state, run.display_name, run.storage_state) == ("SUCCEEDED", "add-3-4", "AVAILABLE")
    experiment = client.get_experiment(experiment_name="adding")
    assert run.experiment_id == experiment.experiment_id
    assert run.runtime_config.parameters.items() >= {"a": 3, "b": 4, "label": "sum"}.items()  # with the defaults
    # Integers come back as integers, as KFP's gateway writes them (not 3.0).
    assert all(type(run.runtime_config.parameters[name]) is int for name in ("a", "b"))
    assert run.pipeline_spec["pipelineInfo"]["name"] == "add-pipeline"
    tasks = {task.display_name: task for task in run.run_details.task_details}
    assert {"add", "add-2"} <= tasks.keys()
    assert all(tasks[name].state == "SUCCEEDED" for name in ("add", "add-2"))
    assert run.finished_at is not None and run.created_at is not None

    from_func = client.create_run_from_pipeline_func(pipelines.add_pipeline, arguments={"a": 10}, experiment_name="adding")
    assert client.wait_for_run_completion(from_func.run_id, WAIT, sleep_duration=POLL).state == "SUCCEEDED"  # type: ignore[arg-type]

    pipeline = client.upload_pipeline(package, pipeline_name="adder")
    [version] = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    by_version = client.run_pipeline(experiment.experiment_id, "by-version", params={"b": 5},
                                     pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id)
    assert by_version.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    done = client.wait_for_run_completion(by_version.run_id, WAIT, sleep_duration=POLL)  # type: ignore[arg-type]
    assert (done.state, done.runtime_config.parameters["b"]) == ("SUCCEEDED", 5)
    assert client.get_run(by_version.run_id).display_name == "by-version"

    elsewhere = client.create_run_from_pipeline_package(package, experiment_name="elsewhere")
    first = client.list_runs(experiment_id=experiment.experiment_id, sort_by="display_name desc", page_size=2)
    # kfp.Client names a run of a function "add-pipeline <time>": between "by-version" and "add-3-4".
    assert [r.run_id for r in first.runs] == [by_version.run_id, from_func.run_id]
    assert first.total_size == 3 and first.next_page_token
    last = client.list_runs(experiment_id=experiment.experiment_id, sort_by="display_name desc", page_size=2,
                            page_token=first.next_page_token)
    assert [r.display_name for r in last.runs] == ["add-3-4"] and not last.next_page_token
    assert client.list_runs(page_size=10).total_size == 4

    client.archive_run(started.run_id)
    assert client.get_run(started.run_id).storage_state == "ARCHIVED"
    client.unarchive_run(started.run_id)
    assert client.get_run(started.run_id).storage_state == "AVAILABLE"

    client.wait_for_run_completion(elsewhere.run_id, WAIT, sleep_duration=POLL)  # type: ignore[arg-type]
    client.delete_run(elsewhere.run_id)
    with pytest.raises(kfp_server_api.ApiException) as gone:
        client.get_run(elsewhere.run_id)
    assert gone.value.status == 404 and gateway_error(gone.value)["code"] == 5


def test_terminate_and_retry(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    gate = tmp_path / "gate"
    gated = client.create_run_from_pipeline_package(
        write(tmp_path / "gated.yaml", compiled["gated-pipeline"]), arguments={"counter": str(tmp_path / "count"), "gate": str(gate)})
    wait_for_state(client, gated.run_id, "RUNNING")
    client.terminate_run(gated.run_id)
    canceled = wait_for_state(client, gated.run_id, "CANCELED")
    assert canceled.finished_at is not None

    retry_gate = tmp_path / "retry-gate"
    retryable = client.create_run_from_pipeline_package(
        write(tmp_path / "retryable.yaml", compiled["retryable-pipeline"]),
        arguments={"counter": str(tmp_path / "retry-count"), "gate": str(retry_gate)})
    failed = client.wait_for_run_completion(retryable.run_id, WAIT, sleep_duration=POLL)  # type: ignore[arg-type]
    assert failed.state == "FAILED" and failed.error.message
    retry_gate.touch()
    client._run_api.run_service_retry_run(retryable.run_id)
    assert client.wait_for_run_completion(retryable.run_id, WAIT, sleep_duration=POLL).state == "SUCCEEDED"  # type: ignore[arg-type]

    with pytest.raises(kfp_server_api.ApiException) as unknown:
        client.terminate_run("no-such-run")
    assert unknown.value.status == 404


def test_bad_runs_are_refused_naming_the_field(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    package = write(tmp_path / "add.yaml", compiled["add-pipeline"])
    with pytest.raises(kfp_server_api.ApiException) as bad_argument:
        client.create_run_from_pipeline_package(package, arguments={"a": "three"})
    assert bad_argument.value.status == 400
    assert violated_fields(bad_argument.value) == ["run.runtime_config.parameters.a"]

    with pytest.raises(kfp_server_api.ApiException) as sourceless:
        client._run_api.run_service_create_run(kfp_server_api.V2beta1Run(display_name="nothing to run"))
    assert sourceless.value.status == 400 and violated_fields(sourceless.value), gateway_error(sourceless.value)

    with pytest.raises(kfp_server_api.ApiException) as bad_sort:
        client.list_runs(sort_by="nonsense")
    assert bad_sort.value.status == 400 and violated_fields(bad_sort.value) == ["sort_by"]
