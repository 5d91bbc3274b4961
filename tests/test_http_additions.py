"""Our additions to KFP's REST API (kfpgrpc/http/recurring_runs.py), which kfp-server-api has no
method for, driven with httpx against a real `kfpgrpc serve`: PATCH a recurring run (update mask
as a query parameter, or inferred from the body as grpc-gateway infers it), :trigger and
:backfill, and their refusals naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess
from tests.test_http import rest  # noqa: F401 - the server fixture

START = "2100-01-01T00:00:00Z"  # after any test run: nothing fires
PREFIX = "/apis/v2beta1/recurringruns"


@pytest.fixture
def http(rest: ServerProcess) -> Iterator[httpx.Client]:  # noqa: F811 - the fixture above
    with httpx.Client(base_url=rest.http_url, timeout=60) as client:
        yield client


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, status: int) -> list[str]:
    """The fields a refusal names, after checking its status."""
    assert response.status_code == status, response.text
    details = response.json()["details"]
    return [violation["field"] for detail in details for violation in detail.get("field_violations", [])]


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_patch_updates_the_fields_the_mask_names(http: httpx.Client, compiled: dict[str, dict[str, Any]]) -> None:
    created = ok(http.post(PREFIX, json={
        "display_name": "nightly", "pipeline_spec": compiled["add-pipeline"], "runtime_config": {"parameters": {"a": 1, "b": 2}},
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *", "start_time": START}}, "max_concurrency": 1,
    }))
    one = f"{PREFIX}/{created['recurring_run_id']}"

    # The mask as a query parameter: only the fields it names change, the body's others are not read.
    body = {"max_concurrency": 3, "description": "not in the mask", "trigger": {"periodic_schedule": {"interval_second": 7200, "start_time": START}}}
    updated = ok(http.patch(one, params={"update_mask": "max_concurrency,trigger"}, json=body))
    assert (updated["max_concurrency"], updated["trigger"]) == ("3", {"periodic_schedule": {"interval_second": "7200", "start_time": START}})
    assert "description" not in updated and updated["display_name"] == "nightly"

    # No mask: the fields the body sets, a nested object followed to its leaves (start_time stays).
    updated = ok(http.patch(one, json={"description": "every hour", "trigger": {"periodic_schedule": {"interval_second": 3600}}}))
    assert updated["description"] == "every hour"
    assert updated["trigger"] == {"periodic_schedule": {"interval_second": "3600", "start_time": START}}
    updated = ok(http.patch(one, json={"runtime_config": {"parameters": {"a": 5, "b": 6}}, "mode": "ENABLE"}))
    assert (updated["runtime_config"]["parameters"], updated["status"]) == ({"a": 5, "b": 6}, "ENABLED")
    assert ok(http.get(one)) == updated

    # Refusals name the field: an output-only or unknown path, a bad value, a body of the wrong shape.
    assert refused(http.patch(one, params={"update_mask": "status"}, json={}), 400) == ["update_mask.paths[0]"]
    assert refused(http.patch(one, params={"update_mask": "no_such_field"}, json={}), 400) == ["update_mask"]
    assert refused(http.patch(one, json={}), 400) == ["update_mask"]
    assert refused(http.patch(one, json={"trigger": {"cron_schedule": {"cron": "61 * * * *"}}}), 400) == ["recurring_run.trigger.cron_schedule.cron"]
    assert refused(http.patch(one, json={"max_concurrency": "many"}), 400) == ["recurring_run"]
    assert refused(http.patch(one, content=b"[1, 2]"), 400) == ["recurring_run"]
    assert refused(http.patch(f"{PREFIX}/no-such-recurring-run", json={"description": "x"}), 404) == []
    assert ok(http.get(one)) == updated  # nothing refused changed anything


def test_trigger_and_backfill(http: httpx.Client, compiled: dict[str, dict[str, Any]]) -> None:
    disabled = ok(http.post(PREFIX, json={
        "display_name": "on-demand", "pipeline_spec": compiled["add-pipeline"], "runtime_config": {"parameters": {"a": 1, "b": 2}},
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *", "start_time": START}},
    }))
    run = ok(http.post(f"{PREFIX}/{disabled['recurring_run_id']}:trigger"))
    assert run["recurring_run_id"] == disabled["recurring_run_id"]
    assert (run["runtime_config"]["parameters"]["a"], run["runtime_config"]["parameters"]["b"]) == (1, 2)  # and the defaults
    assert ok(http.get(f"/apis/v2beta1/runs/{run['run_id']}"))["run_id"] == run["run_id"]
    assert refused(http.post(f"{PREFIX}/no-such-recurring-run:trigger"), 404) == []

    # Hourly ticks at -2.5 h, -1.5 h and -0.5 h: no_catchup runs the last and skips the two
    # others, which a backfill of the whole range then queues.
    now = datetime.now(UTC)
    hourly = ok(http.post(PREFIX, json={
        "display_name": "hourly", "pipeline_spec": compiled["add-pipeline"], "mode": "ENABLE", "no_catchup": True,
        "trigger": {"periodic_schedule": {"interval_second": 3600, "start_time": rfc3339(now - timedelta(hours=3, minutes=30))}},
    }))
    backfill = f"{PREFIX}/{hourly['recurring_run_id']}:backfill"
    answer = ok(http.post(backfill, json={"start_time": rfc3339(now - timedelta(hours=4)), "end_time": rfc3339(now)}))
    assert answer == {"ticks_queued": "2", "ticks_already_present": "1"}
    again = ok(http.post(backfill, json={"start_time": rfc3339(now - timedelta(hours=4)), "end_time": rfc3339(now)}))
    assert again == {"ticks_already_present": "3"}

    assert refused(http.post(backfill, json={"start_time": START, "end_time": "2100-01-02T00:00:00Z"}), 400) == ["end_time"]
    assert refused(http.post(backfill, json={"end_time": rfc3339(now)}), 400) == ["start_time"]
    assert refused(http.post(backfill, json={"start_time": "yesterday"}), 400) == ["body"]
    ok(http.post(f"{PREFIX}/{hourly['recurring_run_id']}:disable"))
