"""The web UI (docs/ui.md) in a real browser against a real `kfpgrpc serve`: the shell loads
with nothing fetched from elsewhere, the runs list shows runs made through the REST API and
follows them live, filters by state, pages, and the login turns the token into a cookie that
a cross-origin request cannot use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.sync_api import Page, Request, expect

from kfpgrpc.v1 import recurring_run_pb2, recurring_run_pb2_grpc
from tests import pipelines
from tests.support import ServerProcess, serving

TOKEN = "s3cret; with=odd,chars"
WAIT = 120  # seconds: a bound on a run's end, not a measure of it


@pytest.fixture(scope="module")
def instant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """instant_pipeline compiled by the kfp SDK: one task, done at once or when its gate opens."""
    return pipelines.compile_pipeline(pipelines.instant_pipeline, tmp_path_factory.mktemp("ui") / "instant.yaml")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path / "data", http=True) as server:
        yield server


def call(server: ServerProcess, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """An HTTP call to the server: (status, the JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.http_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def create_run(server: ServerProcess, spec: dict[str, Any], name: str, gate: str = "") -> str:
    status, run = call(server, "POST", "/apis/v2beta1/runs", {
        "display_name": name, "pipeline_spec": spec, "runtime_config": {"parameters": {"label": name, "gate": gate}},
    })
    assert status == 200, run
    return str(run["run_id"])


def wait_for_state(server: ServerProcess, run_id: str, state: str) -> None:
    """Until the run is in `state` (bounded: a run that never gets there fails the test)."""
    deadline = time.monotonic() + WAIT
    while (run := call(server, "GET", f"/apis/v2beta1/runs/{run_id}")[1]).get("state") != state:
        assert time.monotonic() < deadline, f"run {run_id} is {run.get('state')}, never {state}"
        time.sleep(0.1)


def state_of(page: Page, name: str) -> Any:
    """The state badge in the row of the run named `name`."""
    return page.locator("table.runs tr", has=page.get_by_role("link", name=name, exact=True)).locator(".state")


def test_the_shell_loads_offline_and_routes_to_each_page(page: Page, served: ServerProcess) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    shown = page.goto(served.http_url + "/")
    assert shown is not None and "default-src 'self'" in shown.headers["content-security-policy"]
    expect(page).to_have_url(re.compile(r"/ui/#/runs$"))
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.locator("table.runs")).to_contain_text("No runs")
    for link, heading in (("Pipelines", "Pipelines"), ("Recurring runs", "Recurring runs"), ("Events", "Events")):
        page.get_by_role("navigation").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        expect(page.get_by_role("navigation").get_by_role("link", name=link)).to_have_attribute("aria-current", "")
    page.goto(served.http_url + "/ui/#/no-such-page")
    expect(page).to_have_url(re.compile(r"#/runs$"))
    assert requested and all(url.startswith("http://127.0.0.1:") for url in requested), requested
    assert not page.locator("#logout").is_visible()  # no token, nothing to log out of
    assert not console_errors  # a Content-Security-Policy violation would be one


def test_the_runs_list_shows_a_new_run_and_its_end_without_a_reload(page: Page, served: ServerProcess, instant: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    page.goto(served.http_url + "/ui/#/runs")
    expect(page.locator(".pager .live")).to_have_attribute("data-live", "yes")
    navigations: list[Request] = []
    page.on("request", lambda request: navigations.append(request) if request.is_navigation_request() else None)
    gate = tmp_path / "gate"
    create_run(served, instant, "live-run", str(gate))
    expect(state_of(page, "live-run")).to_have_attribute("data-state", "RUNNING")
    gate.touch()
    expect(state_of(page, "live-run")).to_have_attribute("data-state", "SUCCEEDED")
    assert not navigations


def test_the_runs_list_filters_by_state_and_name(page: Page, served: ServerProcess, instant: dict[str, Any], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    waiting = create_run(served, instant, "waiting", str(gate))
    done = [create_run(served, instant, "done-one"), create_run(served, instant, "done-two")]
    try:
        for run_id in done:
            wait_for_state(served, run_id, "SUCCEEDED")
        wait_for_state(served, waiting, "RUNNING")
        page.goto(served.http_url + "/ui/#/runs?state=SUCCEEDED")
        expect(page.get_by_label("State")).to_have_value("SUCCEEDED")
        rows = page.locator("table.runs tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.locator(".state")).to_have_text(["SUCCEEDED", "SUCCEEDED"])
        page.get_by_label("State").select_option("RUNNING")
        expect(rows.locator(".run-name")).to_have_text(["waiting"])
        expect(page).to_have_url(re.compile(r"state=RUNNING"))
        page.get_by_label("State").select_option("")
        page.get_by_label("Name contains").fill("DONE")  # IS_SUBSTRING ignores case
        expect(rows.locator(".run-name")).to_have_text(["done-two", "done-one"])
    finally:
        gate.touch()


def test_the_runs_list_pages_newest_first(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    names = [f"run-{i:02}" for i in range(45)]
    for name in names:
        create_run(served, instant, name)
    newest_first = names[::-1]
    page.goto(served.http_url + "/ui/#/runs")
    page.get_by_label("Page size").select_option("20")
    links = page.locator("table.runs tbody .run-name")
    info = page.locator(".pager .info")
    expect(links).to_have_text(newest_first[:20])
    expect(info).to_have_text("Page 1 of 3 · 45 runs")
    expect(page.get_by_role("button", name="‹ Previous")).to_be_disabled()
    page.get_by_role("button", name="Next ›").click()
    expect(links).to_have_text(newest_first[20:40])
    page.get_by_role("button", name="Next ›").click()
    expect(links).to_have_text(newest_first[40:])
    expect(info).to_have_text("Page 3 of 3 · 45 runs")
    expect(page.get_by_role("button", name="Next ›")).to_be_disabled()
    page.get_by_role("button", name="‹ Previous").click()
    expect(links).to_have_text(newest_first[20:40])
    page.get_by_role("button", name="‹ Previous").click()
    expect(links).to_have_text(newest_first[:20])
    page.get_by_label("Page size").select_option("50")
    expect(links).to_have_count(45)
    expect(page).to_have_url(re.compile(r"size=50"))


def test_with_a_token_the_ui_asks_for_it_and_keeps_it_in_a_same_origin_cookie(page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--auth-token", TOKEN, http=True)
    try:
        shown = page.goto(server.http_url + "/ui/")
        assert shown is not None and shown.status == 401 and shown.headers["content-type"].startswith("text/html")
        page.get_by_label("Token").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong token.")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.locator("table.runs")).to_contain_text("No runs")
        expect(page.locator(".pager .live")).to_have_attribute("data-live", "yes")  # EventSource by the cookie

        # The API without the token is still 401 JSON, not the form.
        assert call(server, "GET", "/apis/v2beta1/runs") == (401, {"code": 16, "message": "missing or invalid bearer token", "details": []})
        # The cookie alone changes state from this server's pages only.
        cookie = next(c for c in page.context.cookies() if c["name"] == "kfpgrpc_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
        with_cookie = {"Cookie": f"kfpgrpc_token={cookie['value']}"}
        body = {"display_name": "by-cookie"}
        status, refused = call(server, "POST", "/apis/v2beta1/experiments", body, {**with_cookie, "Origin": "http://evil.example"})
        assert (status, refused["code"]) == (403, 7)
        status, refused = call(server, "POST", "/apis/v2beta1/experiments", body, {**with_cookie, "Sec-Fetch-Site": "cross-site"})
        assert (status, refused["code"]) == (403, 7)
        assert call(server, "POST", "/apis/v2beta1/experiments", body, with_cookie)[0] == 403  # says nothing of its origin
        status, made = call(server, "POST", "/apis/v2beta1/experiments", body, {**with_cookie, "Origin": server.http_url})
        assert (status, made["display_name"]) == (200, "by-cookie")
        assert call(server, "GET", "/apis/v2beta1/experiments", headers=with_cookie)[0] == 200
        # Nor can another site log the browser in (with its own token, say).
        forged = urllib.request.Request(server.http_url + "/ui/login", data=f"token={TOKEN}".encode(), method="POST",
                                        headers={"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"})
        with pytest.raises(urllib.error.HTTPError) as refused_login:
            urllib.request.urlopen(forged, timeout=30)
        assert refused_login.value.code == 403 and "set-cookie" not in refused_login.value.headers

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_label("Token")).to_be_visible()
        assert not [c for c in page.context.cookies() if c["name"] == "kfpgrpc_token"]
        page.goto(server.http_url + "/ui/#/runs")
        expect(page.get_by_label("Token")).to_be_visible()
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


# Keeps every EventSource the page makes in window.sources, to see them open and close and
# count what the server sent on each.
TRACK_SOURCES = """
window.sources = [];
const Original = window.EventSource;
window.EventSource = class extends Original {
  constructor(...args) {
    super(...args);
    window.sources.push(this);
    this.messages = 0; // frames without an `event:` line (the events stream's)
    this.lines = 0; // log lines in `logs` frames
    this.addEventListener("message", () => this.messages++);
    this.addEventListener("logs", (event) => (this.lines += JSON.parse(event.data).lines.length));
  }
};
"""


def set_hidden(page: Page, hidden: bool) -> None:
    """What the browser does when the tab is hidden or shown again."""
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)


def test_a_hidden_tab_closes_the_stream_and_catches_up_when_shown(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    page.add_init_script(TRACK_SOURCES)
    first = create_run(served, instant, "before")
    wait_for_state(served, first, "SUCCEEDED")
    page.goto(served.http_url + "/ui/#/runs")
    expect(state_of(page, "before")).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator(".pager .live")).to_have_attribute("data-live", "yes")
    set_hidden(page, True)
    assert page.evaluate("window.sources.map((s) => s.readyState)") == [2]  # CLOSED
    wait_for_state(served, create_run(served, instant, "while-hidden"), "SUCCEEDED")
    set_hidden(page, False)
    expect(state_of(page, "while-hidden")).to_have_attribute("data-state", "SUCCEEDED")
    urls = page.evaluate("window.sources.map((s) => s.url)")
    # First the newest stored event, not the retained log; then on after the last one received.
    assert len(urls) == 2 and "newest=1" in urls[0] and "after_sequence=" not in urls[0], urls
    assert re.search(r"after_sequence=\d+", urls[1]) and "newest=" not in urls[1], urls


def test_an_error_of_the_api_is_shown(page: Page, served: ServerProcess) -> None:
    page.goto(served.http_url + "/ui/#/runs?experiment=no-such-experiment")
    expect(page.locator("#error-banner")).to_contain_text("no-such-experiment")
    page.locator("#error-banner .dismiss").click()
    expect(page.locator("#error-banner")).to_be_hidden()


def test_the_experiment_selector_lists_that_experiments_runs(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    ids = {}
    for name in ("alpha", "beta"):
        status, experiment = call(served, "POST", "/apis/v2beta1/experiments", {"display_name": name})
        assert status == 200, experiment
        ids[name] = experiment["experiment_id"]
        for i in range(2):
            status, run = call(served, "POST", "/apis/v2beta1/runs", {
                "display_name": f"{name}-{i}", "experiment_id": ids[name], "pipeline_spec": instant,
            })
            assert status == 200, run
    page.goto(served.http_url + f"/ui/#/runs?experiment={ids['alpha']}")
    names = page.locator("table.runs tbody .run-name")
    expect(names).to_have_text(["alpha-1", "alpha-0"])
    expect(page.get_by_label("Experiment")).to_have_value(ids["alpha"])
    page.get_by_label("Experiment").select_option(label="beta")
    expect(names).to_have_text(["beta-1", "beta-0"])
    expect(page).to_have_url(re.compile(f"experiment={ids['beta']}"))
    page.get_by_label("Experiment").select_option(label="All experiments")
    expect(names).to_have_text(["beta-1", "beta-0", "alpha-1", "alpha-0"])


@pytest.mark.parametrize("required", [False, True])
def test_without_chromium_the_browser_tests_skip_unless_required(tmp_path: Path, required: bool) -> None:
    path = tmp_path / "bin"  # the interpreter's directory only: no chromium on it
    path.mkdir()
    (path / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(path)}
    env.pop("KFPGRPC_REQUIRE_BROWSER", None)
    if required:
        env["KFPGRPC_REQUIRE_BROWSER"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rsf", "-q", "-p", "no:cacheprovider", f"{__file__}::test_an_error_of_the_api_is_shown"],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parent.parent,
    )
    assert "Chromium not installed (apt-get install chromium)" in result.stdout, result.stdout + result.stderr
    assert result.returncode == (1 if required else 0), result.stdout
    assert ("1 error" if required else "1 skipped") in result.stdout, result.stdout


def test_a_run_of_a_recurring_run_links_to_it_by_name(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    status, recurring = call(served, "POST", "/apis/v2beta1/recurringruns", {
        "display_name": "hourly", "mode": "DISABLE", "pipeline_spec": instant, "trigger": {"periodic_schedule": {"interval_second": "3600"}},
    })
    assert status == 200, recurring
    recurring_id = recurring["recurring_run_id"]
    with grpc.insecure_channel(served.address) as channel:  # a run now: TriggerRecurringRun is gRPC only
        recurring_run_pb2_grpc.RecurringRunServiceStub(channel).TriggerRecurringRun(
            recurring_run_pb2.TriggerRecurringRunRequest(recurring_run_id=recurring_id), timeout=30)
    page.goto(served.http_url + "/ui/#/runs")
    link = page.locator("table.runs a.recurring")
    expect(link).to_have_text("hourly")
    link.click()
    expect(page).to_have_url(re.compile(f"#/recurringruns/{recurring_id}$"))
    expect(page.locator("h1")).to_contain_text("hourly")  # the recurring run's page


def test_a_long_unbroken_name_keeps_the_runs_list_in_the_window(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    long_name = "L" * 250  # display_name allows 256 characters
    run_id = create_run(served, instant, long_name)
    create_run(served, instant, "short")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(served.http_url + "/ui/#/runs")
    expect(page.get_by_role("link", name="short", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=long_name, exact=True)).to_be_visible()
    assert page.eval_on_selector("table.runs", "t => t.getBoundingClientRect().right") <= 1280
    assert page.eval_on_selector("html", "d => d.scrollWidth") <= 1280
    # The short run's row stays one line high: the long name wraps in its own cell only.
    short = page.locator("table.runs tr", has=page.get_by_role("link", name="short", exact=True)).bounding_box()
    assert short is not None and short["height"] < 60
    page.goto(served.http_url + f"/ui/#/runs/{run_id}")
    expect(page.locator("h1")).to_have_attribute("title", long_name)
    assert page.eval_on_selector("html", "d => d.scrollWidth") <= 1280


def test_logging_in_returns_to_the_link_opened(page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--auth-token", TOKEN, http=True)
    try:
        page.goto(server.http_url + "/ui/#/events")
        page.get_by_label("Token").fill("wrong")  # a wrong token first: the link is kept through it
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong token.")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Events")).to_be_visible()
        assert page.url.endswith("/ui/#/events")
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


def test_the_runs_list_shows_active_archived_or_all_runs(page: Page, served: ServerProcess, instant: dict[str, Any]) -> None:
    kept = create_run(served, instant, "kept")
    archived = create_run(served, instant, "put-away")
    for run_id in (kept, archived):
        wait_for_state(served, run_id, "SUCCEEDED")
    assert call(served, "POST", f"/apis/v2beta1/runs/{archived}:archive")[0] == 200
    page.goto(served.http_url + "/ui/#/runs")
    runs = page.locator("table.runs tbody tr[data-run-id]")
    expect(runs).to_have_count(1)  # active runs by default
    expect(runs).to_have_attribute("data-run-id", kept)
    page.get_by_label("Show").select_option("archived")
    expect(runs).to_have_count(1)
    expect(runs).to_have_attribute("data-run-id", archived)
    expect(runs.get_by_test_id("archived")).to_have_text("archived")
    assert "show=archived" in page.url
    page.get_by_label("Show").select_option("all")
    expect(runs).to_have_count(2)
    expect(page.locator(f'tr[data-run-id="{kept}"]').get_by_test_id("archived")).to_have_count(0)
    expect(page.locator(f'tr[data-run-id="{archived}"]').get_by_test_id("archived")).to_have_count(1)
