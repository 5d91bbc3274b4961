"""GET /openapi.json (kfpgrpc/http/openapi.py) from a real `kfpgrpc serve`: a valid OpenAPI 3.1
document (openapi-spec-validator) naming every route the app serves, behind the bearer token like
every path but healthz, whose schemas match what the server writes (real responses validated
against them); a stream endpoint's entry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kfpgrpc.config import ServerConfig
from kfpgrpc.http.app import build_app
from kfpgrpc.http.endpoints import Endpoint
from kfpgrpc.http.openapi import openapi_document
from kfpgrpc.v1 import run_pb2
from tests.support import ServerProcess

TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """A client of a server that requires TOKEN, and its /openapi.json."""
    server = ServerProcess(tmp_path_factory.mktemp("openapi") / "data", "--auth-token", TOKEN, http=True)
    try:
        with httpx.Client(base_url=server.http_url, headers=AUTH, timeout=60) as client:
            response = client.get("/openapi.json")
            assert response.status_code == 200, response.text
            yield client, response.json()
    finally:
        code, stderr = server.terminate()
        assert code == 0, stderr


def served_operations() -> set[tuple[str, str]]:
    """(method, path) of every route of the app as built (no store: only its routes are read)."""
    app = build_app(ServerConfig(listen="127.0.0.1:0", data_dir=Path("unused")), None, None, None, None, None)  # type: ignore[arg-type]
    assert isinstance(app, Starlette)
    operations = set()
    for route in app.routes:
        if route.path == "/" or route.path.startswith("/ui"):  # the web UI's pages (kfpgrpc/http/ui.py), not the API
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", route.path)  # `{run_id:id}`: a convertor, not part of the name
        operations |= {(method.lower(), path) for method in route.methods or () if method != "HEAD"}  # HEAD: Starlette's, with GET
    return operations


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def schema_of(document: dict[str, Any], name: str) -> OAS31Validator:
    """A validator of the component `name`, its references resolved in the document."""
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def test_the_document_is_valid_and_names_every_route(served: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, document = served
    validate(document)
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    operations = served_operations()
    assert ("patch", "/apis/v2beta1/recurringruns/{recurring_run_id}") in operations and len(operations) > 35
    assert documented == operations

    # The token rule is the server's: every path but healthz.
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/apis/v2beta1/healthz"]["get"]["security"] == []
    assert httpx.get(client.base_url.join("/openapi.json")).status_code == 401
    assert httpx.get(client.base_url.join("/apis/v2beta1/healthz")).status_code == 200


def test_schemas_follow_the_json_the_server_writes(served: tuple[httpx.Client, dict[str, Any]], compiled: dict[str, dict[str, Any]]) -> None:
    client, document = served
    schemas = document["components"]["schemas"]
    run = schemas["Run"]["properties"]
    assert run["pipeline_spec"] == {"type": "object", "additionalProperties": True}
    assert run["runtime_config"] == {"$ref": "#/components/schemas/RuntimeConfig"}
    assert schemas["RuntimeConfig"]["properties"]["parameters"] == {"type": "object", "additionalProperties": {"description": "any JSON value"}}
    assert run["created_at"] == {"type": "string", "format": "date-time"}
    assert "SUCCEEDED" in schemas[run["state"]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert schemas["RecurringRun"]["properties"]["max_concurrency"] == {"type": "string", "format": "int64"}

    paths = document["paths"]
    listed = paths["/apis/v2beta1/recurringruns"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "recurringRuns" in listed["properties"] and "recurring_runs" not in listed["properties"]  # KFP's name, as written
    patch = paths["/apis/v2beta1/recurringruns/{recurring_run_id}"]["patch"]
    assert [(p["name"], p["in"]) for p in patch["parameters"]] == [("recurring_run_id", "path"), ("update_mask", "query")]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RecurringRun"}
    runs = {p["name"]: p for p in paths["/apis/v2beta1/runs"]["get"]["parameters"]}
    assert set(runs) == {"experiment_id", "page_token", "page_size", "sort_by", "filter"} and runs["page_size"]["schema"]["type"] == "integer"
    upload = paths["/apis/v2beta1/pipelines/upload"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["required"] == ["uploadfile"]

    # Real answers validate against their schemas; a wrong one does not (so the check can fail).
    experiment = ok(client.post("/apis/v2beta1/experiments", json={"display_name": "schemas"}))
    recurring = ok(client.post("/apis/v2beta1/recurringruns", json={
        "display_name": "checked", "experiment_id": experiment["experiment_id"], "pipeline_spec": compiled["add-pipeline"],
        "runtime_config": {"parameters": {"a": 1, "b": 2}}, "mode": "ENABLE", "max_concurrency": 2,
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *", "start_time": "2100-01-01T00:00:00Z"}},
    }))
    schema_of(document, "Experiment").validate(experiment)
    schema_of(document, "RecurringRun").validate(recurring)
    run_answer = ok(client.post(f"/apis/v2beta1/recurringruns/{recurring['recurring_run_id']}:trigger"))
    schema_of(document, "Run").validate(run_answer)
    refused = client.get("/apis/v2beta1/runs", params={"page_size": "many"})
    assert refused.status_code == 400
    schema_of(document, "google.rpc.Status").validate(refused.json())
    assert not schema_of(document, "RecurringRun").is_valid({**recurring, "max_concurrency": 2})  # int64s are strings
    assert not schema_of(document, "RecurringRun").is_valid({**recurring, "mode": "SOMETIMES"})
    assert not schema_of(document, "RecurringRun").is_valid(refused.json())


def test_a_stream_endpoint_is_described_as_server_sent_events() -> None:
    """What the SSE routes' entries will say: `text/event-stream`, each event's data a JSON message."""

    async def watch_run(request: Request) -> Response:
        raise NotImplementedError  # never called: only the document is made

    async def stream_run_logs(request: Request) -> Response:
        raise NotImplementedError

    endpoints = [
        Endpoint("GET", "/apis/v2beta1/runs/{run_id}:watch", watch_run, "Watch a run.", run_pb2.WatchRunRequest, run_pb2.Run, stream=True),
        Endpoint("GET", "/apis/v2beta1/runs/{run_id}/logs", stream_run_logs, "A run's logs.", run_pb2.StreamRunLogsRequest,
                 run_pb2.StreamRunLogsResponse, stream=True),
    ]
    document = openapi_document(endpoints, bearer=False, open_paths=(), version="0")
    validate(document)
    assert "security" not in document  # a server without a token
    watch = document["paths"]["/apis/v2beta1/runs/{run_id}:watch"]["get"]
    assert list(watch["responses"]["200"]["content"]) == ["text/event-stream"]
    assert watch["responses"]["200"]["content"]["text/event-stream"]["x-event-data"] == {"$ref": "#/components/schemas/Run"}
    logs = document["paths"]["/apis/v2beta1/runs/{run_id}/logs"]["get"]
    assert [(p["name"], p["in"]) for p in logs["parameters"]] == [
        ("run_id", "path"), ("task_name", "query"), ("follow", "query"),
        ("after_line_number", "query"), ("tail_lines", "query"), ("before_line_number", "query"),
    ]
    with pytest.raises(ValueError, match="a second endpoint"):
        openapi_document([*endpoints, endpoints[0]], bearer=False, open_paths=(), version="0")
