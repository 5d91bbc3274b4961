"""The web UI's recurring-run pages (docs/ui.md "Recurring runs") in a real Chromium against a
real `kfpgrpc serve` (with --min-interval-seconds 1, so that a seconds cron fires during the
test): a recurring run created from the form fires at the times its preview showed, which are
the API's next_scheduled_times; the preview marks DST days and shows the API's errors next to
their fields; an edit keeps the parameters, an inline spec's too; enable/disable from the list and the page reach the API, as does trigger; a backfill is previewed (nothing
queued) and then queued. KFPGRPC_UPDATE_SCREENSHOTS=1 writes
docs/screenshots/recurring-run-page.png."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import pipelines
from tests.support import ServerProcess
from tests.test_ui import TRACK_SOURCES, call

WAIT = 120  # seconds: a bound on a tick's run, not a measure of it
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "recurring-run-page.png"


@pytest.fixture(scope="module")
def instant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """instant_pipeline compiled by the kfp SDK: one task, done at once."""
    return pipelines.compile_pipeline(pipelines.instant_pipeline, tmp_path_factory.mktemp("ui-recurring") / "instant.yaml")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", "--min-interval-seconds", "1", http=True)
    try:
        yield server
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


@pytest.fixture
def pipeline_id(served: ServerProcess, instant: dict[str, Any]) -> str:
    """The pipeline "instant", with one version."""
    status, pipeline = call(served, "POST", "/apis/v2beta1/pipelines", {"display_name": "instant"})
    assert status == 200, pipeline
    status, version = call(served, "POST", f"/apis/v2beta1/pipelines/{pipeline['pipeline_id']}/versions",
                           {"display_name": "v1", "pipeline_spec": instant})
    assert status == 200, version
    return str(pipeline["pipeline_id"])


def api_recurring_run(served: ServerProcess, recurring_run_id: str) -> dict[str, Any]:
    status, recurring_run = call(served, "GET", f"/apis/v2beta1/recurringruns/{recurring_run_id}")
    assert status == 200, recurring_run
    return recurring_run


def create_recurring_run(served: ServerProcess, pipeline_id: str, name: str, cron: str, **fields: Any) -> str:
    status, created = call(served, "POST", "/apis/v2beta1/recurringruns", {
        "display_name": name, "pipeline_version_reference": {"pipeline_id": pipeline_id},
        "trigger": {"cron_schedule": {"cron": cron}}, **fields,
    })
    assert status == 200, created
    return str(created["recurring_run_id"])


def runs_of(served: ServerProcess, recurring_run_id: str) -> list[dict[str, Any]]:
    query = json.dumps({"predicates": [{"key": "recurring_run_id", "operation": "EQUALS", "string_value": recurring_run_id}]})
    status, listed = call(served, "GET", "/apis/v2beta1/runs?page_size=100&filter=" + urllib.parse.quote(query))
    assert status == 200, listed
    return list(listed.get("runs", []))


def preview_times(page: Page) -> list[str]:
    """The preview's fire times (UTC), once it shows the form as it is now."""
    expect(page.locator(".preview")).to_have_attribute("data-state", "ok")
    return [str(t) for t in page.locator(".preview li").evaluate_all("items => items.map(li => li.dataset.time)")]


def fill_form(page: Page, name: str, cron: str) -> None:
    """The new-recurring-run form with the pipeline "instant" (its parameters shown) and `cron`."""
    page.get_by_label("Name", exact=True).fill(name)
    page.locator("select[name=pipeline]").select_option(label="instant")
    expect(page.locator(".parameters [data-param='label']")).to_be_visible()
    page.locator(".parameters [data-param='label']").fill(name)
    page.locator("input[name=cron]").fill(cron)


def created_id(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"#/recurringruns/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_a_recurring_run_created_from_the_form_fires_at_the_times_its_preview_showed(
    page: Page, served: ServerProcess, pipeline_id: str,
) -> None:
    page.goto(served.http_url + "/ui/#/recurringruns/new")
    fill_form(page, "every-5s", "*/5 * * * * *")
    # The preview follows the form: ten ticks five seconds apart, on whole multiples of 5 s.
    previewed = preview_times(page)
    assert len(previewed) == 10 and all(re.search(r":\d[05]Z$", t) for t in previewed), previewed
    page.get_by_role("button", name="Create").click()
    recurring_run_id = created_id(page)
    api = api_recurring_run(served, recurring_run_id)
    assert api["status"] == "ENABLED" and api["runtime_config"]["parameters"]["label"] == "every-5s"
    # The API's times are the preview's from the first tick not handled yet (ticks may have
    # fired since the preview was read): one computation.
    upcoming = api["next_scheduled_times"]
    assert upcoming[0] in previewed, (upcoming, previewed)
    overlap = previewed[previewed.index(upcoming[0]):]
    assert upcoming[: len(overlap)] == overlap
    # It fires: its run appears on its page, with the previewed tick as its scheduled time.
    first_run = page.locator("table.runs tr[data-run-id]").last
    expect(first_run).to_be_visible(timeout=WAIT * 1000)
    scheduled = first_run.locator("td").nth(2).inner_text()
    assert scheduled in previewed, (scheduled, previewed)
    expect(page.locator("[data-counter='runs_created']")).not_to_have_text("0")
    call(served, "POST", f"/apis/v2beta1/recurringruns/{recurring_run_id}:disable")


def test_the_preview_marks_dst_days_shows_errors_by_their_field_and_equals_the_api(
    page: Page, served: ServerProcess, pipeline_id: str,
) -> None:
    page.goto(served.http_url + "/ui/#/recurringruns/new")
    fill_form(page, "berlin-nights", "61 * * * *")
    error = page.locator(".field-error[data-for='trigger.cron_schedule.cron']")
    expect(error).to_have_text("minute must be 0-59, got 61")
    expect(page.locator("input[name=cron]")).to_have_attribute("aria-invalid", "true")

    page.locator("input[name=cron]").fill("0 30 2 * * *")
    page.locator("select[name=time_zone]").select_option("Europe/Berlin")
    page.get_by_label("Start (in the time zone)", exact=True).fill("2100-03-26T00:00:00")
    expect(page.locator(".preview")).to_have_attribute("data-state", "ok")
    expect(error).to_have_count(0)
    expect(page.locator(".preview li").first).to_have_attribute("data-time", "2100-03-26T01:30:00Z")
    # Berlin springs forward on 2100-03-28: 02:30 does not exist, that day fires at 03:00 CEST.
    dst = page.locator(".preview li.dst")
    expect(dst).to_have_count(1)
    expect(dst).to_have_attribute("data-time", "2100-03-28T01:00:00Z")
    expect(dst).to_contain_text("2100-03-28 03:00:00")
    expect(dst).to_contain_text("DST change")
    expect(page.locator(".preview li").nth(3)).to_contain_text("2100-03-29 02:30:00 UTC+02:00")
    previewed = preview_times(page)
    assert len(previewed) == 10

    page.get_by_role("button", name="Create").click()
    recurring_run_id = created_id(page)
    api = api_recurring_run(served, recurring_run_id)
    assert api["next_scheduled_times"] == previewed
    assert api["trigger"]["cron_schedule"] == {"cron": "0 30 2 * * *", "time_zone": "Europe/Berlin", "start_time": "2100-03-25T23:00:00Z"}
    expect(page.locator(".next-times li")).to_have_count(10)
    shown = page.locator(".next-times li").evaluate_all("items => items.map(li => li.dataset.time)")
    assert shown == previewed

    # Edit: the form comes back filled in; a change is a PATCH the API keeps.
    page.get_by_role("button", name="Edit").click()
    expect(page.locator("input[name=cron]")).to_have_value("0 30 2 * * *")
    expect(page.locator(".parameters [data-param='label']")).to_have_value("berlin-nights")
    expect(page.get_by_label("Start (in the time zone)", exact=True)).to_have_value("2100-03-26T00:00")  # the browser drops zero seconds
    page.locator("input[name=cron]").fill("0 45 3 * * *")
    expect(page.locator(".preview li").first).to_have_attribute("data-time", "2100-03-26T02:45:00Z")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".schedule")).to_contain_text("0 45 3 * * *")
    saved = api_recurring_run(served, recurring_run_id)
    assert saved["trigger"]["cron_schedule"]["cron"] == "0 45 3 * * *"
    assert saved["runtime_config"]["parameters"]["label"] == "berlin-nights"


def test_editing_a_recurring_run_of_an_inline_spec_keeps_its_parameters(
    page: Page, served: ServerProcess, instant: dict[str, Any],
) -> None:
    """The form cannot change an inline spec, but shows its parameters with their values (its
    parameter fields, pages/parameters.js) and saves them with the rest."""
    status, created = call(served, "POST", "/apis/v2beta1/recurringruns", {
        "display_name": "inline", "pipeline_spec": instant, "runtime_config": {"parameters": {"label": "kept"}},
        "trigger": {"cron_schedule": {"cron": "0 0 1 1 *"}},
    })
    assert status == 200, created
    page.goto(served.http_url + f"/ui/#/recurringruns/{created['recurring_run_id']}")
    page.get_by_role("button", name="Edit").click()
    expect(page.get_by_text("Pipeline: an inline pipeline spec (kept as it is)")).to_be_visible()
    label = page.locator(".parameters [data-param='label']")
    expect(label).to_have_value("kept")
    label.fill("changed")
    page.locator("input[name=cron]").fill("0 0 2 1 *")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".schedule")).to_contain_text("0 0 2 1 *")
    saved = api_recurring_run(served, created["recurring_run_id"])
    # gate: its default "", sent as typed (a STRING field sends "" as the pipeline page's form does)
    assert saved["runtime_config"]["parameters"] == {"label": "changed", "gate": ""}
    assert saved["pipeline_spec"] == created["pipeline_spec"]


def test_enable_and_disable_from_the_list_reach_the_api(page: Page, served: ServerProcess, pipeline_id: str) -> None:
    on = create_recurring_run(served, pipeline_id, "yearly-on", "0 0 1 1 *", mode="ENABLE")
    off = create_recurring_run(served, pipeline_id, "yearly-off", "0 0 1 1 *", mode="DISABLE")
    page.add_init_script(TRACK_SOURCES)
    page.goto(served.http_url + "/ui/#/recurringruns")
    on_row, off_row = page.locator(f"tr[data-id='{on}']"), page.locator(f"tr[data-id='{off}']")
    expect(on_row.locator(".status")).to_have_attribute("data-status", "ENABLED")
    expect(on_row.locator(".next li").first).to_contain_text("-01-01 00:00:00")
    expect(off_row.locator(".status")).to_have_attribute("data-status", "DISABLED")
    # The list's stream starts at the newest stored event, not the retained log.
    (first_stream,) = page.evaluate("window.sources.map((s) => s.url)")
    assert "events:watch" in first_stream and "newest=1" in first_stream and "after_sequence" not in first_stream

    on_row.get_by_role("button", name="Disable").click()
    expect(on_row.locator(".status")).to_have_attribute("data-status", "DISABLED")
    assert api_recurring_run(served, on)["status"] == "DISABLED"
    off_row.get_by_role("button", name="Enable").click()
    expect(off_row.locator(".status")).to_have_attribute("data-status", "ENABLED")
    assert api_recurring_run(served, off)["status"] == "ENABLED"
    # A change made elsewhere shows without a reload (the events stream).
    call(served, "POST", f"/apis/v2beta1/recurringruns/{on}:enable")
    expect(on_row.locator(".status")).to_have_attribute("data-status", "ENABLED")
    # Its page: disable there, and trigger a run now.
    on_row.get_by_role("link", name="yearly-on").click()
    page.get_by_role("button", name="Disable").click()
    skipped = [url for url in page.evaluate("window.sources.map((s) => s.url)") if "recurring_run_id=" in url]
    assert len(skipped) == 1 and "newest=100" in skipped[0], skipped  # the newest 100 skipped ticks
    expect(page.locator("h1 .status")).to_have_attribute("data-status", "DISABLED")
    assert api_recurring_run(served, on)["status"] == "DISABLED"
    page.get_by_role("button", name="Trigger now").click()
    expect(page.locator("table.runs tr[data-run-id]")).to_have_count(1)
    assert len(runs_of(served, on)) == 1


def test_a_backfill_is_previewed_then_queued(page: Page, served: ServerProcess, pipeline_id: str) -> None:
    """A yearly schedule (it fires on no day a test runs, but New Year's midnight) backfilled
    over 2021-2023: the preview lists the three ticks and queues nothing; confirming queues
    them, and their runs appear."""
    recurring_run_id = create_recurring_run(served, pipeline_id, "new-year", "0 0 1 1 *", mode="ENABLE")
    page.goto(served.http_url + f"/ui/#/recurringruns/{recurring_run_id}")
    page.get_by_label("From", exact=True).fill("2021-01-01T00:00:00")
    page.get_by_label("To", exact=True).fill("2023-01-01T00:00:00")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".backfill-summary")).to_have_text("3 ticks would be queued; 0 already have a run or are queued.")
    ticks = page.locator(".backfill-ticks li").evaluate_all("items => items.map(li => li.dataset.time)")
    assert ticks == ["2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"]
    counters = api_recurring_run(served, recurring_run_id).get("counters", {})
    assert (counters.get("ticks_queued"), counters.get("runs_created")) == (None, None)  # both 0
    assert runs_of(served, recurring_run_id) == []

    page.get_by_role("button", name="Queue 3 ticks").click()
    expect(page.locator(".backfill-done")).to_have_text("Queued 3 ticks; 0 were already present.")
    expect(page.locator("table.runs tr[data-run-id]")).to_have_count(3, timeout=WAIT * 1000)
    expect(page.locator("[data-counter='runs_created']")).to_have_text("3")
    deadline = time.monotonic() + WAIT
    while len(runs := runs_of(served, recurring_run_id)) < 3 or any(r["state"] != "SUCCEEDED" for r in runs):
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    assert sorted(r["scheduled_at"] for r in runs) == ticks
    # Again: every tick has its run now.
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".backfill-summary")).to_have_text("0 ticks would be queued; 3 already have a run or are queued.")
    expect(page.get_by_role("button", name=re.compile("^Queue"))).to_be_hidden()
    expect(page.locator("table.runs .state").first).to_have_attribute("data-state", "SUCCEEDED")
    if os.environ.get("KFPGRPC_UPDATE_SCREENSHOTS") == "1":
        page.set_viewport_size({"width": 1280, "height": 900})
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_a_long_unbroken_name_keeps_the_recurring_runs_list_in_the_window(page: Page, served: ServerProcess, pipeline_id: str) -> None:
    long_name = "R" * 200
    long_id = create_recurring_run(served, pipeline_id, long_name, "0 0 1 1 *", mode="DISABLE")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(served.http_url + "/ui/#/recurringruns")
    link = page.locator(f"tr[data-id='{long_id}'] a", has_text=long_name)
    expect(link).to_have_attribute("title", long_name)
    assert page.eval_on_selector("html", "d => d.scrollWidth") <= 1280
    page.goto(served.http_url + f"/ui/#/recurringruns/{long_id}")
    expect(page.locator("h1")).to_contain_text(long_name)
    assert page.eval_on_selector("html", "d => d.scrollWidth") <= 1280
    # Its pipeline and experiment are links, and an empty skipped-ticks table says so.
    expect(page.get_by_test_id("pipeline-link")).to_have_attribute("href", f"#/pipelines/{pipeline_id}")
    experiment_id = api_recurring_run(served, long_id)["experiment_id"]
    expect(page.get_by_test_id("experiment-link")).to_have_attribute("href", f"#/runs?experiment={experiment_id}")
    expect(page.locator("table.skipped td.empty")).to_have_text("No skipped ticks.")
