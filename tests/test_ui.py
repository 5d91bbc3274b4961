"""The web UI (docs/ui.md) in a real browser against a real `kfpgrpc serve`: the shell loads
with nothing fetched from elsewhere, the runs list shows runs made through the REST API and
follows them live, filters by state, pages, and the login turns the token into a cookie that
a cross-origin request cannot use."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from tests import pipelines
from tests.support import ServerProcess

TOKEN = "s3cret; with=odd,chars"
WAIT = 120  # seconds: a bound on a run's end, not a measure of it


@pytest.fixture(scope="module")
def instant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """instant_pipeline compiled by the kfp SDK: one task, done at once or when its gate opens."""
    return pipelines.compile_pipeline(pipelines.instant_pipeline, tmp_path_factory.mktemp("ui") / "instant.yaml")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", http=True)
    try:
        yield server
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr


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
    page.goto(served.http_url + "/")
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

        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_label("Token")).to_be_visible()
        assert not [c for c in page.context.cookies() if c["name"] == "kfpgrpc_token"]
        page.goto(server.http_url + "/ui/#/runs")
        expect(page.get_by_label("Token")).to_be_visible()
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr
