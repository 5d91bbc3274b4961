"""The web UI's pipelines pages (#/pipelines, #/pipelines/<id>) and events page (#/events) in a
real Chromium against a real `kfpgrpc serve`, with pipelines the kfp SDK compiled: an upload
from the page, the static graph, a run created from the form generated from the pipeline's
inputs (client-side checks and the API's field violations next to their fields), and the
events tail with its filters, pause and resume.

No `from __future__ import annotations`: the kfp SDK reads the components' annotations as types."""

import json
from pathlib import Path
from typing import Any, Optional

import kfp
from kfp import dsl
from playwright.sync_api import Page, Route, expect

from tests import pipelines, pipelines_ui
from tests.pipelines import compile_pipeline
from tests.support import ServerProcess
from tests.test_ui import TRACK_SOURCES, served, set_hidden  # noqa: F401 - `served`: the server fixture
from tests.test_ui_run import api, wait_for_end


@dsl.component(base_image="python:3.11")
def report(limit: int, count: int, ratio: float, word: str, flag: bool, items: list, config: dict, note: Optional[str] = None):
    print(limit, count, ratio, word, flag, items, config, note)


@dsl.pipeline(name="typed-inputs")
def typed_inputs(limit: int, count: int = 3, ratio: float = 0.5, word: str = "hello", flag: bool = True,
                 items: list = [1, 2], config: dict = {"a": 1}, note: Optional[str] = None):
    """Every parameterType a run sets; `limit` is required (no default), `note` optional."""
    report(limit=limit, count=count, ratio=ratio, word=word, flag=flag, items=items, config=config, note=note)


def upload(server: ServerProcess, tmp_path: Path, pipeline: Any, name: str) -> str:
    """Compiles `pipeline` and uploads it with kfp.Client (a multipart upload); its pipeline_id."""
    path = tmp_path / f"{name}.yaml"
    compile_pipeline(pipeline, path)
    return str(kfp.Client(host=server.http_url).upload_pipeline(str(path), pipeline_name=name).pipeline_id)


def field(page: Page, name: str) -> Any:
    """The run form's field of parameter `name`."""
    return page.get_by_test_id("run-form").locator(f'[data-field="runtime_config.parameters.{name}"]')


def test_upload_from_the_page_lists_it_and_shows_its_static_graph(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    compiled = tmp_path / "loops.yaml"
    compile_pipeline(pipelines_ui.condition_and_loop, compiled)
    page.goto(f"{served.http_url}/ui/#/pipelines")
    expect(page.locator("table.pipelines td.empty")).to_have_text("No pipelines yet")

    form = page.get_by_test_id("upload-pipeline")
    # Not a pipeline: the server's refusal is shown next to the file.
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: [a, mapping]\n")
    form.locator("input[type=file]").set_input_files(bad)
    form.get_by_role("button", name="Upload pipeline").click()
    expect(form.locator('[data-field="uploadfile"] .field-error')).to_be_visible()
    assert api(served, "pipelines").get("pipelines", []) == []

    form.locator("input[type=file]").set_input_files(compiled)
    form.locator("input[name=name]").fill("loops")
    form.locator("input[name=description]").fill("a condition and a loop")
    form.get_by_role("button", name="Upload pipeline").click()
    name_link = page.locator("a.pipeline-name", has_text="loops")
    row = page.locator("table.pipelines tr", has=name_link)
    expect(row.locator("td.description")).to_have_text("a condition and a loop")
    expect(row.locator("td.newest-version a")).to_have_text("loops")  # the first version is named as the pipeline
    expect(form.locator(".field-error")).to_have_count(0)
    (pipeline,) = api(served, "pipelines")["pipelines"]

    # The name filter is the server's (display_name IS_SUBSTRING, case-insensitive).
    page.get_by_label("Name contains").fill("LOOP")
    expect(page).to_have_url(f"{served.http_url}/ui/#/pipelines?name=LOOP")
    expect(row).to_have_count(1)
    page.get_by_label("Name contains").fill("nothing-like-it")
    expect(page.locator("table.pipelines td.empty")).to_have_text("No pipeline matches")
    page.get_by_label("Name contains").fill("")
    name_link.click()

    expect(page).to_have_url(f"{served.http_url}/ui/#/pipelines/{pipeline['pipeline_id']}")
    graph = page.get_by_test_id("pipeline-graph")
    expect(graph.locator('[data-task-id="coin"]')).to_have_count(1)
    drawn = set(graph.locator("[data-task-id]").evaluate_all("els => els.map(e => e.dataset.taskId)"))
    # Every task of the spec, both condition branches and the loop's body drawn once (no run).
    assert {"coin", "condition-branches-1", "condition-branches-1.condition-3.say-2",
            "for-loop-5", "for-loop-5[…].square", "for-loop-5[…].say-3"} <= drawn, drawn
    assert len(graph.locator(".edges path").all()) > 0
    expect(page.get_by_test_id("run-form")).to_contain_text("This pipeline has no parameters.")

    # A new version from the pipeline's page: it becomes the shown one.
    versions = page.get_by_test_id("upload-version")
    versions.locator("input[type=file]").set_input_files(compiled)
    versions.locator("input[name=name]").fill("second")
    versions.get_by_role("button", name="Upload version").click()
    expect(page.locator("table.versions tbody tr")).to_have_count(2)
    expect(page.locator("table.versions tr[aria-current]")).to_contain_text("second")
    listed = api(served, f"pipelines/{pipeline['pipeline_id']}/versions")["pipeline_versions"]
    assert sorted(v["display_name"] for v in listed) == ["loops", "second"]
    second = next(v for v in listed if v["display_name"] == "second")
    assert page.url.endswith(f"?version={second['pipeline_version_id']}")
    expect(page.get_by_test_id("pipeline-graph").locator('[data-task-id="coin"]')).to_have_count(1)


def test_a_run_from_the_generated_form_has_the_values_typed(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    pipeline_id = upload(served, tmp_path, typed_inputs, "typed")
    page.goto(f"{served.http_url}/ui/#/pipelines/{pipeline_id}")
    inputs = page.get_by_test_id("pipeline-inputs")
    expect(inputs.locator('tr[data-input="count"]')).to_have_text("countNUMBER_INTEGER3yes")
    expect(inputs.locator('tr[data-input="note"]')).to_have_text("noteSTRINGyes")
    expect(inputs.locator('tr[data-input="limit"]')).to_have_text("limitNUMBER_INTEGERno")
    expect(field(page, "limit").locator(".required")).to_be_visible()
    expect(field(page, "limit").locator("input")).to_have_value("")
    # Each field filled with its default, in the input its type calls for.
    expect(field(page, "count").locator("input")).to_have_value("3")
    expect(field(page, "ratio").locator("input")).to_have_value("0.5")
    expect(field(page, "word").locator("input")).to_have_value("hello")
    expect(field(page, "flag").locator("input[type=checkbox]")).to_be_checked()
    expect(field(page, "items").locator("textarea")).to_have_value("[1,2]")
    expect(field(page, "config").locator("textarea")).to_have_value('{"a":1}')
    expect(field(page, "note").locator("input")).to_have_value("")

    form = page.get_by_test_id("run-form")
    form.locator("input[name=display_name]").fill("from-form")
    form.locator("select[name=experiment]").select_option(label="New experiment…")
    form.locator("input[name=experiment_name]").fill("ui-experiment")
    field(page, "count").locator("input").fill("7")
    field(page, "limit").locator("input").fill("-2")
    field(page, "flag").locator("input").uncheck()
    field(page, "items").locator("textarea").fill('["x", 2.5]')
    form.get_by_role("button", name="Create run").click()

    page.wait_for_url("**/ui/#/runs/*")
    run_id = page.url.rsplit("#/runs/", 1)[1]
    run = api(served, f"runs/{run_id}")
    assert run["display_name"] == "from-form"
    assert run["runtime_config"]["parameters"] == {
        "limit": -2, "count": 7, "ratio": 0.5, "word": "hello", "flag": False, "items": ["x", 2.5], "config": {"a": 1},
    }
    assert run["pipeline_version_reference"]["pipeline_id"] == pipeline_id
    assert api(served, f"experiments/{run['experiment_id']}")["display_name"] == "ui-experiment"
    expect(page.locator("h1")).to_contain_text("from-form")  # the run's page
    assert wait_for_end(served, run_id, "SUCCEEDED", "FAILED")["state"] == "SUCCEEDED"


def test_bad_values_are_shown_next_to_their_fields(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    pipeline_id = upload(served, tmp_path, typed_inputs, "typed")
    page.goto(f"{served.http_url}/ui/#/pipelines/{pipeline_id}")
    form = page.get_by_test_id("run-form")
    expect(field(page, "count").locator("input")).to_have_value("3")

    # Checked in the page: nothing is sent.
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.method == "POST" else None)
    field(page, "count").locator("input").fill("three")
    field(page, "ratio").locator("input").fill("2.5")
    field(page, "config").locator("textarea").fill("[1]")
    form.get_by_role("button", name="Create run").click()
    expect(field(page, "count").locator(".field-error")).to_have_text('must be an integer, got "three"')
    expect(field(page, "config").locator(".field-error")).to_have_text("must be an object (JSON {…})")
    expect(field(page, "ratio").locator(".field-error")).to_have_count(0)
    expect(field(page, "limit").locator(".field-error")).to_have_text("is required (NUMBER_INTEGER, no default)")
    field(page, "limit").locator("input").fill("10")
    field(page, "count").locator("input").fill("1.5")
    form.get_by_role("button", name="Create run").click()
    expect(field(page, "count").locator(".field-error")).to_have_text("must be an integer, got 1.5")
    assert sent == []

    # The API decides: a value the page would not send (changed on its way) is refused by the
    # server, whose violation (run.runtime_config.parameters.count) goes next to the field.
    def tamper(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["runtime_config"]["parameters"]["count"] = "seven"
        route.continue_(post_data=json.dumps(body))

    page.route("**/apis/v2beta1/runs", tamper)
    field(page, "count").locator("input").fill("7")
    field(page, "config").locator("textarea").fill('{"b": 2}')
    form.get_by_role("button", name="Create run").click()
    expect(field(page, "count").locator(".field-error")).to_have_text("must be an integer, got 'seven'")
    page.unroute("**/apis/v2beta1/runs")

    # A field the page leaves to the server: the run's name.
    form.locator("input[name=display_name]").fill("")
    form.get_by_role("button", name="Create run").click()
    expect(form.locator('[data-field="display_name"] .field-error')).to_be_visible()
    expect(field(page, "count").locator(".field-error")).to_have_count(0)
    assert api(served, "runs").get("runs", []) == []
    assert "#/pipelines/" in page.url


def test_the_events_page_tails_filters_pauses_and_resumes(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    spec = compile_pipeline(pipelines.instant_pipeline, tmp_path / "instant.yaml")

    def finished_run(name: str) -> str:
        run = api(served, "runs", {"display_name": name, "pipeline_spec": spec, "runtime_config": {"parameters": {"label": name}}})
        wait_for_end(served, run["run_id"], "SUCCEEDED")
        return str(run["run_id"])

    first = finished_run("first")
    page.goto(f"{served.http_url}/ui/#/events")
    completed = page.locator('table.events tr[data-type="RUN_COMPLETED"]')
    expect(completed).to_have_count(1)
    expect(completed.first).to_have_attribute("data-run-id", first)
    expect(completed.first.locator("td.details")).to_contain_text("first")
    changed = page.locator('table.events tr[data-type="RUN_STATE_CHANGED"]')
    expect(changed.first).to_be_visible()
    expect(page.locator('tr[data-type="RUN_STATE_CHANGED"] td.details', has_text="first RUNNING → SUCCEEDED")).to_have_count(1)
    expect(page.locator(".live")).to_have_attribute("data-live", "yes")

    page.get_by_label("Types").select_option(["RUN_COMPLETED"])
    expect(page).to_have_url(f"{served.http_url}/ui/#/events?types=RUN_COMPLETED")
    expect(completed).to_have_count(1)
    expect(changed).to_have_count(0)
    expect(page.locator("table.events tbody tr")).to_have_count(1)

    # Paused: the stream is closed, so a run finishing meanwhile is not shown until resumed.
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".live")).to_have_attribute("data-live", "paused")
    second = finished_run("second")
    expect(completed).to_have_count(1)
    page.get_by_role("button", name="Resume").click()
    expect(completed).to_have_count(2)
    expect(completed.first).to_have_attribute("data-run-id", second)  # newest on top

    # A reconnect (the tab hidden, then shown) goes on after the last sequence: the run that
    # finished meanwhile once, nothing twice.
    set_hidden(page, True)
    third = finished_run("third")
    set_hidden(page, False)
    expect(completed).to_have_count(3)
    expect(completed.first).to_have_attribute("data-run-id", third)
    sequences = [int(s) for s in completed.evaluate_all("rows => rows.map(r => r.dataset.sequence)")]
    assert sequences == sorted(sequences, reverse=True) and len(set(sequences)) == 3
    expect(completed.first.locator("td.sequence")).to_have_text(str(sequences[0]))

    # By run: the server filters; the list starts again.
    page.get_by_label("Run id", exact=True).fill(second)
    page.get_by_label("Run id", exact=True).press("Enter")
    expect(completed).to_have_count(1)
    expect(completed.first).to_have_attribute("data-run-id", second)
    assert "run=" + second in page.url


def test_the_pipelines_list_pages(served: ServerProcess, page: Page) -> None:  # noqa: F811
    for n in range(12):
        api(served, "pipelines", {"display_name": f"p{n:02}"})
    page.goto(f"{served.http_url}/ui/#/pipelines?size=10")
    names = page.locator("a.pipeline-name")
    expect(names).to_have_count(10)
    expect(names.first).to_have_text("p11")  # newest first
    expect(page.locator("td.newest-version").first).to_have_text("none")
    expect(page.locator(".pager .info")).to_have_text("Page 1 of 2 · 12 pipelines")
    page.get_by_role("button", name="Next ›").click()
    expect(names).to_have_text(["p01", "p00"])
    expect(page.get_by_role("button", name="Next ›")).to_be_disabled()
    page.get_by_role("button", name="‹ Previous").click()
    expect(names).to_have_count(10)
    expect(names.first).to_have_text("p11")


def test_the_events_page_starts_with_the_newest_500(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    """600 retained events: the page shows the newest 500, and the server sent only those
    (`newest=500`, counted as frames in the page), then the next one live."""
    spec = compile_pipeline(pipelines.instant_pipeline, tmp_path / "instant.yaml")
    pipeline_id = api(served, "pipelines", {"display_name": "many"})["pipeline_id"]
    for n in range(600):  # one PIPELINE_VERSION_CREATED event each
        api(served, f"pipelines/{pipeline_id}/versions", {"display_name": f"v{n}", "pipeline_spec": spec})
    page.add_init_script(TRACK_SOURCES)
    page.goto(f"{served.http_url}/ui/#/events?types=PIPELINE_VERSION_CREATED")
    rows = page.locator("table.events tbody tr")
    expect(rows.first).to_have_attribute("data-sequence", "600")
    expect(rows).to_have_count(500)
    expect(rows.last).to_have_attribute("data-sequence", "101")
    expect(page.locator(".pager .info")).to_have_text("500 events (the last 500)")
    assert page.evaluate("window.sources.map((s) => s.messages)") == [500]
    assert "newest=500" in page.evaluate("window.sources[0].url")

    api(served, f"pipelines/{pipeline_id}/versions", {"display_name": "v600", "pipeline_spec": spec})
    expect(rows.first).to_have_attribute("data-sequence", "601")
    expect(rows).to_have_count(500)
    expect(rows.last).to_have_attribute("data-sequence", "102")
    assert page.evaluate("window.sources.map((s) => s.messages)") == [501]


def test_the_pipeline_page_fits_a_1280_window(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    pipeline_id = upload(served, tmp_path, typed_inputs, "typed " + "x" * 60)
    upload_loops = upload(served, tmp_path, pipelines_ui.condition_and_loop, "loops")
    page.set_viewport_size({"width": 1280, "height": 900})
    for shown in (pipeline_id, upload_loops):
        page.goto(f"{served.http_url}/ui/#/pipelines/{shown}")
        expect(page.get_by_test_id("pipeline-graph").locator(".run-graph")).to_be_visible()
        assert page.eval_on_selector("html", "d => d.scrollWidth") <= 1280
        # Every card within the window, and the static graph within its card.
        assert page.eval_on_selector_all(".panel, .graph-pane", "els => Math.max(...els.map(e => e.getBoundingClientRect().right))") <= 1280
        pane, drawn = (page.locator(selector).bounding_box() for selector in ("[data-testid=pipeline-graph]", "[data-testid=pipeline-graph] .run-graph"))
        assert pane is not None and drawn is not None and drawn["width"] <= pane["width"]
