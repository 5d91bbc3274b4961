"""The web UI's run page (#/runs/<id>, kfpgrpc/web/static/pages/run.js) in a real Chromium
against a real `kfpgrpc serve`: the graph of a pipeline with a condition and a loop (the branch
not taken SKIPPED), a task's panel, its log followed while it runs, and terminating a run from
the page. KFPGRPC_UPDATE_SCREENSHOTS=1 writes docs/screenshots/run-page.png."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests import pipelines, pipelines_ui
from tests.pipelines import compile_pipeline
from tests.support import ServerProcess
from tests.test_ui import TRACK_SOURCES, WAIT, call, served, set_hidden  # noqa: F401 - `served`: the server fixture

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "run-page.png"


def api(server: ServerProcess, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON answer of a call that must succeed: POST `body`, or GET without one."""
    status, answer = call(server, "GET" if body is None else "POST", f"/apis/v2beta1/{path}", body)
    assert status == 200, answer
    return answer


def start_run(server: ServerProcess, tmp_path: Path, pipeline: Any, **parameters: Any) -> str:
    spec = compile_pipeline(pipeline, tmp_path / f"{pipeline.name}.yaml")
    run = api(server, "runs", {"display_name": pipeline.name, "pipeline_spec": spec, "runtime_config": {"parameters": parameters}})
    return run["run_id"]


def wait_for_end(server: ServerProcess, run_id: str, *states: str) -> dict[str, Any]:
    """The run once in one of `states` (bounded: a run that never gets there fails the test)."""
    deadline = time.monotonic() + WAIT
    while (run := api(server, f"runs/{run_id}"))["state"] not in states:
        assert time.monotonic() < deadline, f"run {run_id} is {run['state']}, never {states}"
        time.sleep(0.1)
    return run


def graph_states(run_page: Page) -> dict[str, str]:
    """The graph's boxes and clusters: task_id -> the state it is drawn in."""
    return run_page.eval_on_selector_all(
        "[data-testid=run-graph] [data-task-id]", "els => Object.fromEntries(els.map(e => [e.dataset.taskId, e.dataset.state]))"
    )


def test_graph_shows_every_task_with_the_branch_not_taken_skipped(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines_ui.condition_and_loop)
    run = wait_for_end(served, run_id, "SUCCEEDED", "FAILED")
    assert run["state"] == "SUCCEEDED"
    reported = {task["task_id"]: task["state"] for task in run["run_details"]["task_details"]}

    page.set_viewport_size({"width": 1500, "height": 1000})
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}")
    expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")
    shown = graph_states(page)
    # Every reported task in its state, and the task inside the branch not taken, which the
    # server does not report (its condition task is SKIPPED), drawn SKIPPED from the spec.
    tails = "condition-branches-1.condition-3"
    assert reported[tails] == "SKIPPED"
    assert shown == {**reported, f"{tails}.say-2": "SKIPPED"}
    assert {f"for-loop-5[{i}].{name}" for i in range(3) for name in ("square", "say-3")} <= shown.keys()
    assert page.locator(f'[data-task-id="{tails}.say-2"]').get_attribute("data-reported") == "false"

    page.locator('[data-task-id="for-loop-5[1].square"]').click()
    panel = page.get_by_test_id("task-panel")
    expect(panel.locator("h2")).to_have_text("square")
    expect(panel.locator("table.task-fields")).to_contain_text("for-loop-5[1].square")
    inputs, outputs = panel.locator("table.values").all()
    assert (inputs.inner_text().split(), outputs.inner_text().split()) == (["i", "2"], ["Output", "4"])
    expect(page.locator(".log-line").first).to_contain_text("python")  # the argv, the log's first line
    expect(panel.locator("code.command")).to_contain_text("python")
    expect(page.locator(".log-line", has_text="squaring 2")).to_have_count(1)
    assert "task=for-loop-5%5B1%5D.square" in page.url or "task=for-loop-5[1].square" in page.url
    expect(page.get_by_test_id("run-timeline").locator("tr")).to_have_count(3)  # PENDING, RUNNING, SUCCEEDED

    page.get_by_label("Fit the graph to the width").check()
    pane, drawn = (page.locator(selector).bounding_box() for selector in ("[data-testid=run-graph]", ".run-graph"))
    assert pane is not None and drawn is not None and drawn["width"] <= pane["width"]

    if os.environ.get("KFPGRPC_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_a_sub_pipeline_is_a_cluster_with_its_edges(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    # A run of a stored version: GET run has no spec then, and the page reads the version's.
    spec = compile_pipeline(pipelines.nested_pipeline, tmp_path / "nested.yaml")
    pipeline = api(served, "pipelines", {"display_name": "nested"})
    version = api(served, f"pipelines/{pipeline['pipeline_id']}/versions", {"display_name": "v1", "pipeline_spec": spec})
    reference = {"pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": version["pipeline_version_id"]}
    run_id = api(served, "runs", {"display_name": "nested", "pipeline_version_reference": reference,
                                  "runtime_config": {"parameters": {"x": 1}}})["run_id"]
    run = wait_for_end(served, run_id, "SUCCEEDED", "FAILED")
    assert "pipeline_spec" not in run
    reported = {task["task_id"]: task["state"] for task in run["run_details"]["task_details"]}
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}")
    expect(page.locator("h1")).to_have_attribute("data-state", run["state"])
    assert graph_states(page) == reported
    graph = page.get_by_test_id("run-graph")
    expect(graph.locator('.g-cluster[data-task-id="add-twice"]')).to_have_count(1)  # the sub-DAG, around its tasks
    assert graph.locator(".g-cluster").count() == 1 and graph.locator(".g-node").count() == len(reported) - 1
    # Edges: add-twice -> add (the outer DAG) and add -> add-2 (inside the sub-pipeline).
    expect(graph.locator(".edges path")).to_have_count(2)
    # The version is a link to its pipeline page.
    expect(page.locator(f'.run-parameters a[href="#/pipelines/{pipeline["pipeline_id"]}?version={version["pipeline_version_id"]}"]')).to_have_count(1)


def test_a_running_tasks_log_is_followed(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines_ui.ticking, count=10, interval=0.3)
    # Opened before the task exists: the panel says so, and opens the log when a `run` frame
    # reports the task.
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=ticker")
    first = page.locator(".log-line", has_text="tick 0")
    expect(first).to_have_count(1)
    assert api(served, f"runs/{run_id}")["state"] == "RUNNING"  # followed while it runs
    assert "\x1b" not in first.inner_text()  # the colour codes are stripped
    # The newest line is in the window while followed: the log is not below the fold of a panel.
    expect(page.locator(".log-line").last).to_be_in_viewport()
    expect(page.get_by_label("Follow")).to_be_visible()
    expect(page.locator(".log-line", has_text="tick 9")).to_have_count(1)
    expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator(".log-status")).to_have_text("end of log")
    expect(page.get_by_label("Follow")).to_be_hidden()  # nothing more to follow
    texts = page.eval_on_selector_all(".log-line", "els => els.map(e => e.lastChild.textContent)")
    assert [text for text in texts if text.startswith("tick")] == [f"tick {n}" for n in range(10)]  # once each, in order
    expect(page.get_by_test_id("run-graph").locator('[data-task-id="ticker"]')).to_have_attribute("data-state", "SUCCEEDED")


def test_a_long_log_opens_at_its_last_lines_and_pages_back(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    """The page asks for the last 1,000 lines (tail_lines), not the whole log, and for 1,000
    more per "Show earlier lines" (before_line_number); the command (line 1) is asked for on
    its own."""
    run_id = start_run(served, tmp_path, pipelines_ui.chattering, lines=2500)
    wait_for_end(served, run_id, "SUCCEEDED")
    page.add_init_script(TRACK_SOURCES)
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=chatty")
    expect(page.locator(".log-status")).to_have_text("end of log")
    lines = page.locator(".log-line")
    held = int(lines.last.get_attribute("data-line") or 0)  # the executor's lines around 2,500
    assert held > 2500
    expect(lines).to_have_count(1000)  # PAGE (logs.js)
    assert lines.first.get_attribute("data-line") == str(held - 999)
    expect(lines.filter(has_text="line 2499")).to_have_count(1)
    expect(page.locator("code.command")).to_contain_text("python")  # line 1, not in the tail
    sent = page.evaluate("window.sources.map((s) => [s.url, s.lines])")
    tails = [lines_sent for url, lines_sent in sent if "tail_lines=1000" in url]
    assert tails == [1000], sent  # the server sent the tail only
    assert sum(lines_sent for _, lines_sent in sent) == 1001, sent  # and line 1

    page.get_by_role("button", name="Show 1,000 earlier lines").click()
    expect(lines).to_have_count(2000)
    assert lines.first.get_attribute("data-line") == str(held - 1999)
    page.get_by_role("button", name=f"Show {held - 2000:,} earlier lines").click()
    expect(lines).to_have_count(held)
    assert lines.first.get_attribute("data-line") == "1"
    numbers = page.eval_on_selector_all(".log-line", "els => els.map(e => Number(e.dataset.line))")
    assert numbers == list(range(1, held + 1))  # each line once, in order
    expect(page.locator(".task-log button")).to_be_hidden()  # nothing earlier
    sent = page.evaluate("window.sources.map((s) => [s.url, s.lines])")
    earlier = [(url, lines_sent) for url, lines_sent in sent if "before_line_number" in url and "tail_lines=1000" in url]
    assert [lines_sent for _, lines_sent in earlier] == [1000, held - 2000], sent
    assert f"before_line_number={held - 999}" in earlier[0][0] and f"before_line_number={held - 1999}" in earlier[1][0]


def test_a_followed_log_resumes_after_its_last_line(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    """A reopened log stream (the tab hidden, then shown) asks for the lines after the last one
    received (after_line_number): the lines printed meanwhile once each, nothing again."""
    run_id = start_run(served, tmp_path, pipelines_ui.ticking, count=12, interval=0.5)
    page.add_init_script(TRACK_SOURCES)
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=ticker")
    expect(page.locator(".log-line", has_text="tick 1")).to_have_count(1)
    set_hidden(page, True)
    shown = int(page.locator(".log-line").last.get_attribute("data-line") or 0)
    time.sleep(1.5)  # not a pass/fail timing: lines are printed while the tab is hidden
    set_hidden(page, False)
    expect(page.locator(".log-line", has_text="tick 11")).to_have_count(1)
    texts = page.eval_on_selector_all(".log-line", "els => els.map(e => e.lastChild.textContent)")
    assert [text for text in texts if text.startswith("tick")] == [f"tick {n}" for n in range(12)]
    urls = [url for url in page.evaluate("window.sources.map((s) => s.url)") if "/logs?" in url and "tail_lines=1&" not in url]
    assert len(urls) == 2 and "tail_lines=1000" in urls[0] and "tail_lines" not in urls[1], urls
    resumed = re.search(r"after_line_number=(\d+)", urls[1])
    assert resumed and int(resumed.group(1)) >= shown, urls


def test_terminate_from_the_page_cancels_the_run(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines_ui.sleeping, seconds=120.0)
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}")
    expect(page.get_by_test_id("run-graph").locator('[data-task-id="sleep-for"]')).to_have_attribute("data-state", "RUNNING")
    delete = page.locator("button[data-action=delete]")
    expect(delete).to_be_disabled()  # a run is deleted once it has finished
    page.eval_on_selector(".run-graph", "svg => { svg.marked = true; }")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("button[data-action=terminate]").click()
    assert api(served, f"runs/{run_id}")["state"] == "RUNNING"  # not confirmed: nothing done

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=terminate]").click()
    assert wait_for_end(served, run_id, "CANCELED", "FAILED", "SUCCEEDED")["state"] == "CANCELED"
    expect(page.locator("h1")).to_have_attribute("data-state", "CANCELED")
    expect(page.get_by_test_id("run-graph").locator('[data-task-id="sleep-for"]')).to_have_attribute("data-state", "CANCELED")
    assert page.eval_on_selector(".run-graph", "svg => svg.marked === true")  # re-coloured, not drawn again
    expect(page.locator("button[data-action=retry]")).to_be_enabled()
    expect(page.locator("#error-banner")).to_be_hidden()


def test_retry_from_the_page_runs_the_failed_task_again(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines.failing_pipeline)
    failed = wait_for_end(served, run_id, "FAILED")
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=fail")
    expect(page.locator("h1")).to_have_attribute("data-state", "FAILED")
    expect(page.locator(".task-error").first).to_contain_text("this task always fails")
    timeline = page.get_by_test_id("run-timeline").locator("tr")
    expect(timeline).to_have_count(len(failed["state_history"]))

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=retry]").click()
    # The page watches the run again: its second failure is shown without a reload.
    deadline = time.monotonic() + WAIT
    while len((run := api(served, f"runs/{run_id}"))["state_history"]) <= len(failed["state_history"]) or run["state"] != "FAILED":
        assert time.monotonic() < deadline, run["state_history"]
        time.sleep(0.1)
    expect(timeline).to_have_count(len(run["state_history"]))
    expect(page.locator("h1")).to_have_attribute("data-state", "FAILED")


def test_rerun_and_the_apis_errors(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    first = start_run(served, tmp_path, pipelines_ui.sleeping, seconds=0.0)
    wait_for_end(served, first, "SUCCEEDED")
    page.goto(f"{served.http_url}/ui/#/runs/{first}")
    expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")

    # Re-run: a new run of the same spec and parameters, shown when created.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=re-run]").click()
    page.wait_for_url(lambda url: "#/runs/" in url and first not in url)
    run_id = page.url.rsplit("#/runs/", 1)[1].split("?")[0]
    again = wait_for_end(served, run_id, "SUCCEEDED")
    original = api(served, f"runs/{first}")
    assert again["runtime_config"] == original["runtime_config"] and again["pipeline_spec"] == original["pipeline_spec"]
    assert again["display_name"] == "sleeping (re-run)"
    expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")
    # Deleted behind the page's back: archiving it is refused, and the page says why.
    assert call(served, "DELETE", f"/apis/v2beta1/runs/{run_id}")[0] == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=archive]").click()
    expect(page.locator("#error-banner")).to_be_visible()
    expect(page.locator("#error-banner")).to_contain_text(run_id)


def test_a_run_whose_version_was_deleted_is_shown_from_its_reported_tasks(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    spec = compile_pipeline(pipelines.nested_pipeline, tmp_path / "nested.yaml")
    pipeline = api(served, "pipelines", {"display_name": "nested"})
    version = api(served, f"pipelines/{pipeline['pipeline_id']}/versions", {"display_name": "v1", "pipeline_spec": spec})
    reference = {"pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": version["pipeline_version_id"]}
    run_id = api(served, "runs", {"display_name": "orphan", "pipeline_version_reference": reference,
                                  "runtime_config": {"parameters": {"x": 1}}})["run_id"]
    run = wait_for_end(served, run_id, "SUCCEEDED", "FAILED")
    status, _ = call(served, "DELETE", f"/apis/v2beta1/pipelines/{pipeline['pipeline_id']}/versions/{version['pipeline_version_id']}")
    assert status == 200
    reported = {task["task_id"]: task["state"] for task in run["run_details"]["task_details"]}

    page.goto(f"{served.http_url}/ui/#/runs/{run_id}")
    expect(page.locator("h1")).to_have_attribute("data-state", run["state"])
    expect(page.get_by_test_id("graph-note")).to_have_text("The pipeline version was deleted: graph from the reported tasks only.")
    assert graph_states(page) == reported  # every reported task, no edges (they are the spec's)
    expect(page.get_by_test_id("run-graph").locator(".edges path")).to_have_count(0)
    expect(page.get_by_test_id("run-timeline").locator("tr")).to_have_count(len(run["state_history"]))
    expect(page.locator("#error-banner")).to_be_hidden()
    expect(page.locator(".run-parameters")).to_contain_text("(deleted)")
    expect(page.locator("button[data-action=re-run]")).to_be_disabled()
    expect(page.locator(".run-meta a.experiment")).to_have_text("Default")  # the experiment by name
    # It can still be archived from its page.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=archive]").click()
    expect(page.locator("button[data-action=unarchive]")).to_be_visible()
    assert api(served, f"runs/{run_id}")["storage_state"] == "ARCHIVED"


def test_a_finished_runs_never_started_task_is_not_run(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines_ui.stops_early)
    run = wait_for_end(served, run_id, "FAILED", "SUCCEEDED")
    assert run["state"] == "FAILED"
    assert "say" not in {task["task_id"] for task in run["run_details"]["task_details"]}  # never reported
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=say")
    expect(page.locator("h1")).to_have_attribute("data-state", "FAILED")
    box = page.get_by_test_id("run-graph").locator('[data-task-id="say"]')
    expect(box).to_have_attribute("data-state", "NOT_RUN")
    assert box.get_attribute("data-reported") == "false"
    panel = page.get_by_test_id("task-panel")
    expect(panel.locator("table.task-fields")).to_contain_text("NOT RUN")
    expect(panel).to_contain_text("not run: the run ended before it started")
    expect(panel).not_to_contain_text("not started yet")
    expect(page.get_by_test_id("graph-legend")).to_contain_text("dashed box")


def test_the_graph_fits_and_the_log_has_room(served: ServerProcess, page: Page, tmp_path: Path) -> None:  # noqa: F811
    run_id = start_run(served, tmp_path, pipelines_ui.condition_and_loop)
    wait_for_end(served, run_id, "SUCCEEDED", "FAILED")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{served.http_url}/ui/#/runs/{run_id}?task=coin")
    expect(page.locator(".log-status")).to_have_text("end of log")
    # Fitted by default: the whole graph, wider than its card at its size, shows in the card.
    expect(page.get_by_label("Fit the graph to the width")).to_be_checked()
    pane, drawn = (page.locator(selector).bounding_box() for selector in ("[data-testid=run-graph]", ".run-graph"))
    assert pane is not None and drawn is not None and drawn["width"] <= pane["width"]
    natural = float(page.locator(".run-graph").get_attribute("width") or 0)
    assert natural > pane["width"]  # so the fitting is what keeps it in
    # The log is its own scroll box, at least half the window high, and the panel is none.
    log = page.locator(".log-lines").bounding_box()
    assert log is not None and log["height"] >= 0.5 * 900 - 1
    assert page.eval_on_selector("[data-testid=task-panel]", "p => getComputedStyle(p).overflowY") == "visible"
    assert page.eval_on_selector("body", "b => b.scrollWidth") <= 1280
