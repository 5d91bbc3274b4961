"""Web UI benchmark, in the system's Chromium driven by Playwright, against `kfpgrpc serve`
subprocesses (their HTTP API and /ui/). Issue 14: the run page of a 500-task run renders in under
a second; 20 open run pages add no measurable server CPU while idle; the runs list pages over
100,000 runs as fast as the API.

    python bench/bench_ui.py [--only graph,idle,paging] [--tasks 500] [--repeat 5]
        [--pages 20] [--idle-seconds 30] [--runs 100000] [--next-pages 20] [--page-size 100]

graph (two measures):
- layout: in the page, pages/graph.js's RunGraph.update() (buildGraph + dagre layout + SVG) on
  generated runs of `--tasks` tasks in four shapes: independent tasks; a layered DAG (each task
  after one or two of the previous layer's); a loop of single-task iterations; a loop of
  two-task iterations (an iteration cluster each). The median and the worst of `--repeat`.
- page: a real run of `--tasks` independent tasks (tests.pipelines.wide_spec, waiting on a gate
  file that never appears) opened at #/runs/<id>: from navigation until every task's box is on
  the page (GET run with its spec, layout, drawing), then terminated.
idle: the server process's CPU seconds (/proc/<pid>/stat utime + stime, all threads) over
  `--idle-seconds` with no page open, then with `--pages` run pages open and settled: half of a
  finished run, half of a running one (a task waiting on a gate file) with that task's panel and
  its followed log shown, so each of those holds two streams (runs/{id}:watch and the log). Each
  page has a browser context of its own, as separate windows or users would: one context has at
  most six connections to a server (HTTP/1.1), fewer than ten pages' twenty streams.
paging: `--runs` SUCCEEDED runs bulk-loaded into the store (bench_runs.bulk_load), the runs list
  at #/runs?size=<page size>: its first page (navigation to rows drawn), then `--next-pages`
  clicks on "Next" (click to the new rows drawn, timed in the page), against the same ListRuns
  calls (same query, same page tokens) from Python over one keep-alive connection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_rest import CpuMeter  # noqa: E402
from bench.bench_runs import bulk_load  # noqa: E402
from tests.pipelines import wide_spec  # noqa: E402
from tests.support import ServerProcess  # noqa: E402

# Generates {spec, tasks} of a shape in the page, so the measure is the page's work alone.
SHAPES_JS = """
(n) => {
  const container = (name) => ({ componentRef: { name: "comp-t" }, taskInfo: { name } });
  const detail = (task_id, extra = {}) => ({ task_id, display_name: task_id.split(".").pop(), state: "SUCCEEDED", ...extra });
  const base = { components: { "comp-t": { executorLabel: "exec-t" } } };
  const shapes = {};
  const wide = {};
  for (let i = 0; i < n; i++) wide[`t-${i}`] = container(`t-${i}`);
  shapes.independent = { spec: { ...base, root: { dag: { tasks: wide } } }, tasks: Object.keys(wide).map((id) => detail(id)) };
  const layered = {};
  const width = Math.round(Math.sqrt(n));
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / width);
    const deps = layer ? [`t-${(layer - 1) * width + (i % width)}`, `t-${(layer - 1) * width + ((i * 7) % width)}`] : [];
    layered[`t-${i}`] = { ...container(`t-${i}`), dependentTasks: [...new Set(deps)] };
  }
  shapes.layered = { spec: { ...base, root: { dag: { tasks: layered } } }, tasks: Object.keys(layered).map((id) => detail(id)) };
  const loop = (bodySize) => {
    const body = {};
    for (let j = 0; j < bodySize; j++) body[`step-${j}`] = { ...container(`step-${j}`), dependentTasks: j ? [`step-${j - 1}`] : [] };
    const count = Math.floor(n / bodySize);
    const spec = { components: { ...base.components, "comp-loop": { dag: { tasks: body } } },
      root: { dag: { tasks: { first: container("first"), loop: { componentRef: { name: "comp-loop" }, dependentTasks: ["first"], parameterIterator: {} } } } } };
    const tasks = [detail("first"), detail("loop", { iteration_count: count })];
    for (let i = 0; i < count; i++) {
      tasks.push(detail(`loop[${i}]`, { parent_task_id: "loop", iteration_index: i }));
      for (const name of Object.keys(body)) tasks.push(detail(`loop[${i}].${name}`, { parent_task_id: `loop[${i}]` }));
    }
    return { spec, tasks };
  };
  shapes["loop of 1-task iterations"] = loop(1);
  shapes["loop of 2-task iterations"] = loop(2);
  return shapes;
}
"""

# The UI's Content-Security-Policy forbids eval(): SHAPES_JS is written into the measuring code.
MEASURE_JS = """
async ([n, repeat]) => {
  const { RunGraph } = await import("/ui/pages/graph.js");
  const shapes = (SHAPES)(n);
  const results = {};
  for (const [name, { spec, tasks }] of Object.entries(shapes)) {
    const times = [];
    const parts = [];
    let nodes = 0;
    for (let r = 0; r < repeat; r++) {
      const host = document.createElement("div");
      document.body.append(host);
      const graph = new RunGraph(host, () => {});
      const started = performance.now();
      nodes = graph.update(spec, tasks).nodes.size;
      host.getBoundingClientRect(); // the SVG's style and layout, as the page shows it
      times.push(performance.now() - started);
      parts.push(graph.timings);
      host.remove();
    }
    results[name] = { nodes, times, parts };
  }
  return results;
}
"""


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/apis/v2beta1/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def get(base: str, path: str) -> dict:
    with urllib.request.urlopen(f"{base}/apis/v2beta1/{path}", timeout=60) as response:
        return json.loads(response.read())


def wait_for_state(base: str, run_id: str, states: set[str], task_states: dict[str, str] | None = None, timeout: float = 120) -> None:
    """Until the run is in one of `states` (and its tasks named in `task_states` in theirs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = get(base, f"runs/{run_id}")
        tasks = {t["task_id"]: t.get("state") for t in run.get("run_details", {}).get("task_details", [])}
        if run.get("state") in states and all(tasks.get(k) == v for k, v in (task_states or {}).items()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"run {run_id} not in {states} {task_states or ''} after {timeout} s")


def measure_graph(browser: Browser, directory: Path, tasks: int, repeat: int) -> None:
    server = ServerProcess(directory / "graph", "--log-level", "warning", http=True)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{server.http_url}/ui/#/runs")
        results = page.evaluate(MEASURE_JS.replace("SHAPES", SHAPES_JS), [tasks, repeat])
        print(f"RunGraph.update (build the graph, lay it out, draw the SVG, style it), {repeat} times each, ms:")
        for name, result in results.items():
            times = result["times"]
            split = "  ".join(f"{part} {statistics.median(p[part] for p in result['parts']):6.1f}" for part in ("build", "layout", "draw"))
            print(f"  {name:28} {result['nodes']:5} boxes  median {statistics.median(times):7.1f}  worst {max(times):7.1f}   (medians: {split})")

        run = post(server.http_url, "runs", {
            "display_name": "wide", "pipeline_spec": wide_spec(tasks),
            "runtime_config": {"parameters": {"gate": str(directory / "never")}},
        })
        started = time.perf_counter()
        page.goto(f"{server.http_url}/ui/#/runs/{run['run_id']}")
        page.wait_for_function("n => document.querySelectorAll('.run-graph .g-node').length >= n", arg=tasks, timeout=60_000)
        elapsed = time.perf_counter() - started
        print(f"page: a real run of {tasks} tasks, navigation to every box drawn: {elapsed * 1000:.0f} ms")
        post(server.http_url, f"runs/{run['run_id']}:terminate", {})
        page.close()
    finally:
        server.terminate()


def measure_idle(browser: Browser, directory: Path, pages: int, seconds: float) -> None:
    server = ServerProcess(directory / "idle", "--log-level", "warning", http=True)
    contexts = []
    try:
        (directory / "open").touch()
        finished = post(server.http_url, "runs", {
            "display_name": "finished", "pipeline_spec": wide_spec(3), "runtime_config": {"parameters": {"gate": str(directory / "open")}},
        })["run_id"]
        running = post(server.http_url, "runs", {
            "display_name": "running", "pipeline_spec": wide_spec(3), "runtime_config": {"parameters": {"gate": str(directory / "never")}},
        })["run_id"]
        wait_for_state(server.http_url, finished, {"SUCCEEDED"})
        wait_for_state(server.http_url, running, {"RUNNING"}, {"wait-0": "RUNNING"})
        meter = CpuMeter(server.process.pid)

        def cpu_over(duration: float) -> float:
            time.sleep(2)  # what opening the pages set off (reads, stream starts) is over
            before = meter.now()[0]
            time.sleep(duration)
            return meter.now()[0] - before

        print(f"Idle server CPU over {seconds:g} s (a finished run and a running one with a task waiting on a gate file):")
        print(f"  load average before: {os.getloadavg()[0]:.2f}")
        without = cpu_over(seconds)
        shown = []
        for index in range(pages):
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            contexts.append(context)
            page = context.new_page()
            if index % 2:
                page.goto(f"{server.http_url}/ui/#/runs/{finished}")
            else:
                page.goto(f"{server.http_url}/ui/#/runs/{running}?task=wait-0")
            shown.append((index % 2 == 0, page))
        for is_running, page in shown:
            page.wait_for_function("() => document.querySelectorAll('.run-graph .g-node').length >= 3", timeout=60_000)
            if is_running:  # the followed log has its first line (the argv the executor wrote)
                page.wait_for_function("() => document.querySelector('.log-line') !== null", timeout=60_000)
        visible = sum(page.evaluate("document.visibilityState") == "visible" for _, page in shown)
        with_pages = cpu_over(seconds)
        streams = sum(2 for is_running, _ in shown if is_running)
        print(f"  {'pages open':>10}  {'server CPU s':>12}  {'% of a core':>11}")
        print(f"  {0:>10}  {without:12.3f}  {100 * without / seconds:11.2f}")
        print(f"  {pages:>10}  {with_pages:12.3f}  {100 * with_pages / seconds:11.2f}   ({visible} visible; {streams} open streams)")
        print(f"  per open page: {1000 * (with_pages - without) / pages / seconds:+.2f} ms of server CPU per second")
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
        post(server.http_url, f"runs/{running}:terminate", {})
    finally:
        for context in contexts:
            context.close()
        server.terminate()


# In the page: a click on the runs list's Next per expected first row, each timed from the click
# until the table's first row is that run (the rows replaced), then the browser's style and
# layout; and, from the browser's resource timing, the ListRuns request's own time within it.
NEXT_PAGES_JS = """
async (expected) => {
  const body = document.querySelector("table.runs tbody, table.list tbody");
  const next = document.querySelector(".pager button.next");
  const times = [];
  const requests = [];
  performance.setResourceTimingBufferSize(10000);
  for (const first of expected) {
    const drawn = new Promise((resolve) => {
      const check = () => body.querySelector("tr[data-run-id]")?.dataset.runId === first;
      const observer = new MutationObserver(() => {
        if (check()) { observer.disconnect(); resolve(); }
      });
      observer.observe(body, { childList: true });
    });
    await new Promise((resolve) => {
      const wait = () => (next.disabled ? setTimeout(wait, 5) : resolve());
      wait();
    });
    const started = performance.now();
    next.click();
    await Promise.race([drawn, new Promise((_, reject) => setTimeout(() => reject(new Error(`page of ${first} not drawn in 30 s`)), 30000))]);
    body.getBoundingClientRect();
    times.push(performance.now() - started);
    const request = performance.getEntriesByType("resource")
      .filter((e) => e.name.includes("/apis/v2beta1/runs?") && e.startTime >= started).pop();
    requests.push(request ? request.responseEnd - request.startTime : NaN);
  }
  return { times, requests };
}
"""


def measure_paging(browser: Browser, directory: Path, runs: int, next_pages: int, size: int) -> None:
    data = directory / "paging"
    server = ServerProcess(data, "--log-level", "warning", http=True)  # creates the schema
    try:
        experiment_id = post(server.http_url, "experiments", {"display_name": "bench"})["experiment_id"]
    finally:
        server.terminate()
    started = time.perf_counter()
    bulk_load(data / "kfpgrpc.db", runs, [experiment_id])
    print(f"Runs list paging: {runs:,} runs bulk-loaded in {time.perf_counter() - started:.1f} s; pages of {size}, created_at desc.")
    server = ServerProcess(data, "--log-level", "warning", http=True)
    try:
        with httpx.Client(base_url=f"{server.http_url}/apis/v2beta1/", timeout=60) as client:
            def list_runs(token: str) -> tuple[float, dict]:
                began = time.perf_counter()
                response = client.get("runs", params={"page_size": size, "page_token": token, "sort_by": "created_at desc"})
                response.raise_for_status()
                return time.perf_counter() - began, response.json()

            list_runs("")  # warm-up: the server's caches and this connection
            rest, firsts, token = [], [], ""
            for _ in range(next_pages + 1):
                elapsed, answer = list_runs(token)
                rest.append(elapsed)
                firsts.append(answer["runs"][0]["run_id"])
                token = answer.get("next_page_token", "")
                if not token:
                    break
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{server.http_url}/ui/#/runs")  # the app's modules loaded
        page.wait_for_selector("table tbody tr[data-run-id]")
        page.evaluate("location.hash = '#/pipelines'")
        page.wait_for_selector("table.pipelines")
        began = time.perf_counter()
        page.evaluate(f"location.hash = '#/runs?size={size}'")
        page.wait_for_function("([n, first]) => { const rows = document.querySelectorAll('tbody tr[data-run-id]');"
                               " return rows.length === n && rows[0].dataset.runId === first; }", arg=[size, firsts[0]], timeout=60_000)
        first_page = time.perf_counter() - began
        clicked = page.evaluate(NEXT_PAGES_JS, firsts[1:])
        ui, requests = clicked["times"], clicked["requests"]
        page.close()
        print(f"  {'page':>4}  {'UI: click to rows drawn':>23}  {'its ListRuns request':>20}  {'REST ListRuns (Python)':>22}   ms")
        print(f"  {1:>4}  {1000 * first_page:23.1f}  {'':>20}  {1000 * rest[0]:22.1f}   (UI: from #/pipelines to #/runs?size={size}, rows drawn)")
        for index, (shown, request, listed) in enumerate(zip(ui, requests, rest[1:]), start=2):
            print(f"  {index:>4}  {shown:23.1f}  {request:20.1f}  {1000 * listed:22.1f}")
        print(f"  next pages, median: UI {statistics.median(ui):.1f} (its request {statistics.median(requests):.1f}), REST {1000 * statistics.median(rest[1:]):.1f};"
              f" worst: UI {max(ui):.1f}, REST {1000 * max(rest[1:]):.1f}")
    finally:
        server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="graph,idle,paging", help="the measures to take, comma-separated: graph, idle, paging")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages", type=int, default=20, help="run pages open for the idle measure")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store for the paging measure")
    parser.add_argument("--next-pages", type=int, default=20)
    parser.add_argument("--page-size", type=int, default=100, choices=[10, 20, 50, 100])
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - {"graph", "idle", "paging"}:
        parser.error(f"--only: unknown {sorted(only - {'graph', 'idle', 'paging'})}")
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Chromium not installed (apt-get install chromium)")
    print(f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f} at the start.")
    with tempfile.TemporaryDirectory() as name, sync_playwright() as playwright:
        directory = Path(name)
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            if "graph" in only:
                measure_graph(browser, directory, args.tasks, args.repeat)
            if "idle" in only:
                measure_idle(browser, directory, args.pages, args.idle_seconds)
            if "paging" in only:
                measure_paging(browser, directory, args.runs, args.next_pages, args.page_size)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
