"""Recurring runs over KFP's REST API (kfpgrpc/http/recurring_runs.py), driven by the real
kfp.Client against a real `kfpgrpc serve`: cron (with start_time) and periodic schedules created
disabled or enabled with max_concurrency and no_catchup, read back, listed by experiment,
enabled, disabled, deleted, and a bad cron refused naming the field. Schedules start in 2100: no
tick fires, the tests look at state and fields, never at time."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import pytest

from tests.support import ServerProcess
from tests.test_http import gateway_error, rest, violated_fields  # noqa: F401 - `rest`: the server fixture
from tests.test_http_pipelines import write

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")  # kfp.Client's, always
START = "2100-01-01T00:00:00Z"  # after any test run: nothing fires


def raw_recurring_run(client: kfp.Client, recurring_run_id: str) -> dict[str, Any]:
    """The recurring run's JSON as the server wrote it, with the fields kfp-server-api's model
    does not know (overlap_policy, next_scheduled_times, counters)."""
    api = client._recurring_run_api
    response = api.recurring_run_service_get_recurring_run(recurring_run_id, _preload_content=False)
    body: dict[str, Any] = json.loads(response.data)
    return body


def test_kfp_client_manages_recurring_runs(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    package = write(tmp_path / "add.yaml", compiled["add-pipeline"])
    experiment = client.create_experiment("nightly")
    other = client.create_experiment("hourly")

    cron = client.create_recurring_run(
        experiment.experiment_id, "add-nightly", cron_expression="0 0 2 * * *", start_time=START,
        pipeline_package_path=package, params={"a": 3, "b": 4}, max_concurrency=2, no_catchup=True, enabled=False,
    )
    assert (cron.display_name, cron.mode, cron.status) == ("add-nightly", "DISABLE", "DISABLED")
    assert (cron.max_concurrency, cron.no_catchup, cron.experiment_id) == ("2", True, experiment.experiment_id)
    assert cron.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert cron.trigger.cron_schedule.start_time.isoformat() == "2100-01-01T00:00:00+00:00"
    assert cron.runtime_config.parameters == {"a": 3, "b": 4}
    assert cron.pipeline_spec["pipelineInfo"]["name"] == "add-pipeline"

    periodic = client.create_recurring_run(
        other.experiment_id, "add-hourly", interval_second=3600, start_time=START, pipeline_package_path=package,
    )
    assert (periodic.mode, periodic.status) == ("ENABLE", "ENABLED")
    assert periodic.trigger.periodic_schedule.interval_second == "3600"
    assert periodic.trigger.cron_schedule is None

    fetched = client.get_recurring_run(cron.recurring_run_id)
    assert (fetched.recurring_run_id, fetched.status, fetched.trigger.cron_schedule.cron) == (
        cron.recurring_run_id, "DISABLED", "0 0 2 * * *")
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert [r.recurring_run_id for r in listed.recurring_runs] == [cron.recurring_run_id] and listed.total_size == 1
    assert client.list_recurring_runs(page_size=10, sort_by="display_name").total_size == 2

    # Our additions are in the JSON as in our proto.
    disabled = raw_recurring_run(client, cron.recurring_run_id)
    assert (disabled["overlap_policy"], disabled["trigger"]["cron_schedule"]["time_zone"]) == ("BUFFER_ALL", "UTC")
    assert disabled["counters"] == {} and "next_scheduled_times" not in disabled  # all zero; disabled: none
    client.enable_recurring_run(cron.recurring_run_id)
    assert client.get_recurring_run(cron.recurring_run_id).status == "ENABLED"
    enabled = raw_recurring_run(client, cron.recurring_run_id)
    assert enabled["next_scheduled_times"][0] == "2100-01-01T02:00:00Z", enabled
    hourly = raw_recurring_run(client, periodic.recurring_run_id)
    assert hourly["next_scheduled_times"][:2] == ["2100-01-01T01:00:00Z", "2100-01-01T02:00:00Z"], hourly

    client.disable_recurring_run(cron.recurring_run_id)
    assert client.get_recurring_run(cron.recurring_run_id).status == "DISABLED"

    client.delete_recurring_run(periodic.recurring_run_id)
    with pytest.raises(kfp_server_api.ApiException) as gone:
        client.get_recurring_run(periodic.recurring_run_id)
    assert gone.value.status == 404 and gateway_error(gone.value)["code"] == 5
    assert [r.recurring_run_id for r in client.list_recurring_runs().recurring_runs] == [cron.recurring_run_id]


def test_our_fields_go_in_through_kfp_server_api(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """A kfp-server-api user may send our additions in the body (as a dict: its model lacks them)."""
    client = kfp.Client(host=rest.http_url)
    api = client._recurring_run_api
    body = {
        "display_name": "paris-mornings", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE",
        "trigger": {"cron_schedule": {"cron": "0 30 7 * * *", "time_zone": "Europe/Paris", "start_time": START}},
        "overlap_policy": "SKIP",
    }
    created = json.loads(api.recurring_run_service_create_recurring_run(body, _preload_content=False).data)
    assert created["overlap_policy"] == "SKIP" and created["trigger"]["cron_schedule"]["time_zone"] == "Europe/Paris"
    assert created["next_scheduled_times"][0] == "2100-01-01T06:30:00Z"  # 07:30 in Paris, in winter
    assert client.get_recurring_run(created["recurring_run_id"]).display_name == "paris-mornings"


def test_a_bad_cron_is_refused_naming_the_field(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    package = write(tmp_path / "add.yaml", compiled["add-pipeline"])
    experiment = client.create_experiment("bad")
    with pytest.raises(kfp_server_api.ApiException) as bad_cron:
        client.create_recurring_run(experiment.experiment_id, "never", cron_expression="61 * * * *", pipeline_package_path=package)
    assert bad_cron.value.status == 400
    assert violated_fields(bad_cron.value) == ["recurring_run.trigger.cron_schedule.cron"]

    for call in (client.enable_recurring_run, client.disable_recurring_run, client.delete_recurring_run):
        with pytest.raises(kfp_server_api.ApiException) as unknown:
            call("no-such-recurring-run")
        assert unknown.value.status == 404, call


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a JSON body with the standard library; the status and the JSON answer, refused or not."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_preview_schedule_equals_the_created_recurring_runs_times(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """POST /apis/v2beta1/recurringruns:previewSchedule across Berlin's spring-forward day of 2100
    (March 28: 02:30 does not exist, that day fires at 03:00 CEST and is flagged), then the
    recurring run created with the same trigger reports the same next_scheduled_times."""
    trigger = {"cron_schedule": {"cron": "0 30 2 * * *", "time_zone": "Europe/Berlin", "start_time": "2100-03-26T00:00:00Z"}}
    status, preview = post(rest.http_url + "/apis/v2beta1/recurringruns:previewSchedule", {"trigger": trigger, "count": 4})
    assert status == 200, preview
    assert preview == {"time_zone": "Europe/Berlin", "fire_times": [
        {"time": "2100-03-26T01:30:00Z", "utc_offset_seconds": 3600, "local_time": "2100-03-26T02:30:00+01:00"},
        {"time": "2100-03-27T01:30:00Z", "utc_offset_seconds": 3600, "local_time": "2100-03-27T02:30:00+01:00"},
        {"time": "2100-03-28T01:00:00Z", "utc_offset_seconds": 7200, "local_time": "2100-03-28T03:00:00+02:00", "dst_transition_day": True},
        {"time": "2100-03-29T00:30:00Z", "utc_offset_seconds": 7200, "local_time": "2100-03-29T02:30:00+02:00"},
    ]}
    _, ten = post(rest.http_url + "/apis/v2beta1/recurringruns:previewSchedule", {"trigger": trigger})
    status, created = post(rest.http_url + "/apis/v2beta1/recurringruns", {
        "display_name": "berlin-nights", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE", "trigger": trigger})
    assert status == 200, created
    assert created["next_scheduled_times"] == [fire["time"] for fire in ten["fire_times"]]

    status, refused = post(rest.http_url + "/apis/v2beta1/recurringruns:previewSchedule", {"trigger": {"cron_schedule": {"cron": "61 * * * *"}}})
    assert status == 400 and refused["code"] == 3, refused
    assert refused["details"][0]["field_violations"] == [{"field": "trigger.cron_schedule.cron", "description": "minute must be 0-59, got 61"}]
    status, refused = post(rest.http_url + "/apis/v2beta1/recurringruns:previewSchedule", {"trigger": trigger, "count": 1000})
    assert status == 400 and [v["field"] for v in refused["details"][0]["field_violations"]] == ["count"]
    status, refused = post(rest.http_url + "/apis/v2beta1/recurringruns:previewSchedule", {"trigger": trigger, "after": "yesterday"})
    assert status == 400 and [v["field"] for v in refused["details"][0]["field_violations"]] == ["body"]


def test_backfill_validate_only_lists_the_ticks_and_queues_nothing(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """POST …/recurringruns/{id}:backfill with validate_only: the counts and the ticks, and no
    queue entry, no run, no counter moved; the same call without it queues them."""
    status, created = post(rest.http_url + "/apis/v2beta1/recurringruns", {
        "display_name": "new-year", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE",
        "trigger": {"cron_schedule": {"cron": "0 0 1 1 *"}}})
    assert status == 200, created
    one = rest.http_url + f"/apis/v2beta1/recurringruns/{created['recurring_run_id']}"
    window = {"start_time": "2021-01-01T00:00:00Z", "end_time": "2023-06-01T00:00:00Z"}
    status, preview = post(one + ":backfill", {**window, "validate_only": True})
    assert status == 200, preview
    assert preview == {"ticks_queued": "3", "queued_times": ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"]}
    client = kfp.Client(host=rest.http_url)
    assert raw_recurring_run(client, created["recurring_run_id"]).get("counters", {}) == {}  # nothing queued, no run
    assert client.list_runs().total_size in (0, None)
    status, refused = post(one + ":backfill", {**window, "end_time": "2999-01-01T00:00:00Z", "validate_only": True})
    assert status == 400 and [v["field"] for v in refused["details"][0]["field_violations"]] == ["end_time"]
    status, done = post(one + ":backfill", window)
    assert (status, done) == (200, {"ticks_queued": "3"})


def test_a_misspelled_enum_name_is_refused_naming_the_field(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """An enum value given by a name its enum lacks (`"mode": "ENABEL"`) is refused naming the
    field, not dropped (which would create the recurring run disabled, without a word), as an
    unknown name in a query parameter already was. Unknown field names stay ignored, as KFP's
    gateway ignores them."""
    url = rest.http_url + "/apis/v2beta1/recurringruns"
    base = {"display_name": "typo", "pipeline_spec": compiled["add-pipeline"], "namespace": "ignored",
            "trigger": {"cron_schedule": {"cron": "0 3 * * *", "start_time": START}}}
    for change, field in (({"mode": "ENABEL"}, "recurring_run.mode"), ({"mode": "ENABLE", "overlap_policy": "NOPE"}, "recurring_run.overlap_policy")):
        status, refused = post(url, {**base, **change})
        assert status == 400 and refused["code"] == 3, refused
        violations = refused["details"][0]["field_violations"]
        assert [v["field"] for v in violations] == [field] and repr(change[field.rsplit(".", 1)[1]]) in violations[0]["description"], violations
    status, created = post(url, {**base, "mode": "ENABLE", "overlap_policy": "SKIP"})
    assert status == 200 and created["mode"] == "ENABLE" and created["overlap_policy"] == "SKIP", created
    watched = urllib.request.Request(rest.http_url + "/apis/v2beta1/events:watch?types=RUN_COMPLETED&types=BOGUS")
    with pytest.raises(urllib.error.HTTPError) as bogus:  # a query parameter: refused as before
        urllib.request.urlopen(watched, timeout=30)
    assert bogus.value.code == 400
