"""Run page benchmark: how long the web UI takes to lay out and draw a run's graph of ~500 tasks
(issue 14's target: under a second), in the system's Chromium driven by Playwright.

    python bench/bench_ui.py [--tasks 500] [--repeat 5]

Two measures against a `kfpgrpc serve` subprocess (its HTTP API and /ui/):
- layout: in the page, pages/graph.js's RunGraph.update() (buildGraph + dagre layout + SVG) on
  generated runs of `--tasks` tasks in four shapes: independent tasks; a layered DAG (each task
  after one or two of the previous layer's); a loop of single-task iterations; a loop of
  two-task iterations (an iteration cluster each). The median and the worst of `--repeat`.
- page: a real run of `--tasks` independent tasks (tests.pipelines.wide_spec, waiting on a gate
  file that never appears) opened at #/runs/<id>: from navigation until every task's box is on
  the page (GET run with its spec, layout, drawing), then terminated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Chromium not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as directory:
        server = ServerProcess(Path(directory) / "data", "--log-level", "warning", http=True)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True)
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"{server.http_url}/ui/#/runs")
                results = page.evaluate(MEASURE_JS.replace("SHAPES", SHAPES_JS), [args.tasks, args.repeat])
                print(f"RunGraph.update (build the graph, lay it out, draw the SVG, style it), {args.repeat} times each, ms:")
                for name, result in results.items():
                    times = result["times"]
                    split = "  ".join(f"{part} {statistics.median(p[part] for p in result['parts']):6.1f}" for part in ("build", "layout", "draw"))
                    print(f"  {name:28} {result['nodes']:5} boxes  median {statistics.median(times):7.1f}  worst {max(times):7.1f}   (medians: {split})")

                run = post(server.http_url, "runs", {
                    "display_name": "wide", "pipeline_spec": wide_spec(args.tasks),
                    "runtime_config": {"parameters": {"gate": str(Path(directory) / "never")}},
                })
                started = time.perf_counter()
                page.goto(f"{server.http_url}/ui/#/runs/{run['run_id']}")
                page.wait_for_function("n => document.querySelectorAll('.run-graph .g-node').length >= n", arg=args.tasks, timeout=60_000)
                elapsed = time.perf_counter() - started
                print(f"page: a real run of {args.tasks} tasks, navigation to every box drawn: {elapsed * 1000:.0f} ms")
                post(server.http_url, f"runs/{run['run_id']}:terminate", {})
                browser.close()
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
