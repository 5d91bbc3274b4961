"""KFP's REST API (kfpgrpc/http/), driven by the real kfp.Client (kfp-server-api) against a real
`kfpgrpc serve` with HTTP on a free port: experiments, healthz, errors in the gateway's shape,
the start and stop of the HTTP server. The bearer token: tests/test_http_sdks.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import pytest

from tests.support import ServerProcess, serving
from tests.test_server import certificates  # noqa: F401 - the CA and certificates fixture, reused

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")  # kfp.Client's, always


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path / "data", http=True) as server:
        yield server


def gateway_error(error: kfp_server_api.ApiException) -> dict[str, Any]:
    """The JSON body of a refused call: {"code", "message", "details"}."""
    body: dict[str, Any] = json.loads(error.body)
    return body


def violated_fields(error: kfp_server_api.ApiException) -> list[str]:
    body = gateway_error(error)
    assert [detail["@type"] for detail in body["details"]] == ["type.googleapis.com/google.rpc.BadRequest"], body
    return [violation["field"] for violation in body["details"][0]["field_violations"]]


def substring(text: str) -> str:
    """KFP's filter on display_name, as a kfp.Client user writes it (URL-encoded by the client)."""
    return json.dumps({"predicates": [{"operation": "IS_SUBSTRING", "key": "display_name", "string_value": text}]})


def test_kfp_client_drives_experiments(rest: ServerProcess) -> None:
    client = kfp.Client(host=rest.http_url)  # calls healthz
    assert client.get_kfp_healthz().multi_user is False

    created = client.create_experiment("exp-a", description="first")
    assert (created.display_name, created.description, created.storage_state) == ("exp-a", "first", "AVAILABLE")
    assert created.created_at is not None
    # kfp.Client looks the name up first (a filtered list) and returns the experiment it finds.
    assert client.create_experiment("exp-a").experiment_id == created.experiment_id
    assert client.get_experiment(experiment_id=created.experiment_id).display_name == "exp-a"
    assert client.get_experiment(experiment_name="exp-a").experiment_id == created.experiment_id

    for name in ("exp-c", "exp-b", "other"):
        client.create_experiment(name)
    first = client.list_experiments(page_size=2, sort_by="display_name desc", filter=substring("exp-"))
    assert [e.display_name for e in first.experiments] == ["exp-c", "exp-b"]
    assert first.total_size == 3 and first.next_page_token
    rest_of_them = client.list_experiments(page_token=first.next_page_token, page_size=2)
    assert [e.display_name for e in rest_of_them.experiments] == ["exp-a"]
    assert not rest_of_them.next_page_token
    everything = client.list_experiments(page_size=100)
    assert {e.display_name for e in everything.experiments} == {"Default", "exp-a", "exp-b", "exp-c", "other"}

    client.archive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "ARCHIVED"
    archived = client.list_experiments(filter=json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "storage_state", "string_value": "ARCHIVED"}]}))
    assert [e.display_name for e in archived.experiments] == ["exp-a"]
    client.unarchive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "AVAILABLE"

    client.delete_experiment(created.experiment_id)
    with pytest.raises(kfp_server_api.ApiException) as missing:
        client.get_experiment(experiment_id=created.experiment_id)
    assert missing.value.status == 404
    assert gateway_error(missing.value) == {
        "code": 5, "message": f"experiment with experiment_id {created.experiment_id!r} not found", "details": []}


def test_refusals_have_the_gateway_shape_and_status(rest: ServerProcess) -> None:
    client = kfp.Client(host=rest.http_url)
    with pytest.raises(kfp_server_api.ApiException) as bad_sort:
        client.list_experiments(sort_by="color")
    assert bad_sort.value.status == 400
    assert gateway_error(bad_sort.value)["code"] == 3
    assert violated_fields(bad_sort.value) == ["sort_by"]

    with pytest.raises(kfp_server_api.ApiException) as bad_filter:
        client.list_experiments(filter="{not json")
    assert bad_filter.value.status == 400 and violated_fields(bad_filter.value) == ["filter"]

    with pytest.raises(kfp_server_api.ApiException) as unnamed:
        client._experiment_api.experiment_service_create_experiment(kfp_server_api.V2beta1Experiment(description="no name"))
    assert unnamed.value.status == 400 and violated_fields(unnamed.value) == ["experiment.display_name"]

    client.create_experiment("taken")
    with pytest.raises(kfp_server_api.ApiException) as duplicate:
        client._experiment_api.experiment_service_create_experiment(kfp_server_api.V2beta1Experiment(display_name="taken"))
    assert duplicate.value.status == 409 and gateway_error(duplicate.value)["code"] == 6

    default = client.get_experiment(experiment_name="Default")
    with pytest.raises(kfp_server_api.ApiException) as protected:
        client.delete_experiment(default.experiment_id)
    assert protected.value.status == 412 and gateway_error(protected.value)["code"] == 9


def test_a_body_that_is_not_an_experiment_names_the_field(rest: ServerProcess) -> None:
    client = kfp.Client(host=rest.http_url)
    api = client._experiment_api.api_client
    with pytest.raises(kfp_server_api.ApiException) as malformed:
        api.call_api("/apis/v2beta1/experiments", "POST", body={"display_name": ["a list"]},
                     header_params={"Content-Type": "application/json"}, response_type="V2beta1Experiment")
    assert malformed.value.status == 400 and violated_fields(malformed.value) == ["experiment"]


def test_tls_settings_serve_https_too(tmp_path: Path, certificates: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--tls-cert", str(certificates / "server.pem"),
                           "--tls-key", str(certificates / "server.key"), http=True)
    try:
        assert server.http_url.startswith("https://127.0.0.1:")
        client = kfp.Client(host=server.http_url, ssl_ca_cert=str(certificates / "ca.pem"))
        assert client.create_experiment("over-tls").display_name == "over-tls"
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


def test_a_taken_http_port_fails_the_start_before_anything_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "kfpgrpc.cli", "serve", "--listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == f"kfpgrpc: cannot listen on 127.0.0.1:{port} (--http-listen): Address already in use\n"
    assert not (tmp_path / "data").exists()
