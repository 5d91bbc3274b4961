"""Runs over KFP's REST API (kfpgrpc/http/runs.py), driven by the real kfp.Client against a real
`kfpgrpc serve`: what tests/test_http_sdks.py's session (runs from a package, a function and a
stored version, waited for, listed, archived, terminated, deleted, refused) does not make: a
retry, the terminate of an unknown run, a run without a pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import pytest

from tests.support import ServerProcess
from tests.test_http import gateway_error, rest, violated_fields  # noqa: F401 - `rest`: the server fixture
from tests.test_http_pipelines import write

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")  # kfp.Client's, always
WAIT = 120  # seconds: a bound on a run's end, not a measure of it
POLL = 0.1


def test_retry_and_terminate_of_an_unknown_run(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
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


def test_a_run_without_a_pipeline_is_refused_naming_the_field(rest: ServerProcess) -> None:
    client = kfp.Client(host=rest.http_url)
    with pytest.raises(kfp_server_api.ApiException) as sourceless:
        client._run_api.run_service_create_run(kfp_server_api.V2beta1Run(display_name="nothing to run"))
    assert sourceless.value.status == 400 and violated_fields(sourceless.value), gateway_error(sourceless.value)
