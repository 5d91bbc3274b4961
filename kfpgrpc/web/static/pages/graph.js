// The runtime graph of a run: its tasks as SVG boxes laid out by their DAG (dagre), sub-DAGs,
// loops and condition branches drawn as clusters around their tasks, coloured by state.
//
// The graph is the pipeline spec's DAG (components[...].dag.tasks, their dependentTasks)
// walked with the run's task details (PipelineTaskDetail, keyed by task_id: a task's path in
// the DAG, "outer.train"; a loop iteration's body is under "for-loop-2[1]."). A task the spec
// has and the run has not reported yet is drawn dashed, in its nearest reported ancestor's
// state when that is SKIPPED or CANCELED (an untaken condition branch: nothing inside it is
// reported), else PENDING, or NOT_RUN once the run has finished (it never started). Before a
// loop reports its iterations, its body is drawn once ("for-loop-2[…]."). Without a spec, the task details alone give the clusters (no edges).

import dagre from "../vendor/dagre.esm.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_WIDTH = 170;
const NODE_HEIGHT = 34;
const MAX_LABEL = 22; // characters of a box's label; the full name is its tooltip
const CLUSTER_LABEL_HEIGHT = 24; // a cluster's label, above its contents
const INHERITED = new Set(["SKIPPED", "CANCELED"]);
/** The drawn state of a task a finished run never reported: it never started. */
export const NOT_RUN = "NOT_RUN";
const MARGIN = 12;
const CLUSTER_PADDING = 10;
const MIN_CLUSTER_WIDTH = 90;
const GAP = 16; // between a grid's cells
// Above this many boxes in one DAG, dagre ranks by longest path and keeps its first ordering
// of each rank: its defaults (network simplex, crossing reduction sweeps) take seconds on
// hundreds of boxes with edges.
const LARGE = 100;

/**
 * The graph of a run: {nodes: Map(id -> node), edges: [[from, to]]}. A node is {id, label,
 * title, kind: "task" | "dag" | "loop" | "iteration", parent (the enclosing node's id or
 * null), state, reported (whether a task detail exists)}; a node that is some node's parent is
 * a cluster. Edges join siblings (the spec's dependentTasks are within one DAG): an edge into
 * a sub-DAG, loop or condition ends at its cluster, as in KFP's UI.
 * `spec`: the PipelineSpec object (or null); `tasks`: run_details.task_details, or null for a
 * pipeline's static graph (no run: every node PENDING and unreported, titled by its id only);
 * `finished`: whether the run is in a final state, so an unreported task that no SKIPPED or
 * CANCELED ancestor explains is NOT_RUN (never started; not a RuntimeState) rather than PENDING.
 */
export function buildGraph(spec, tasks, finished = false) {
  const details = new Map((tasks || []).map((t) => [t.task_id, t]));
  const nodes = new Map();
  const edges = [];
  const components = spec?.components || {};
  const absorbed = new Set(); // reported iterations drawn as their one task

  const add = (id, fields) => {
    const detail = details.get(id);
    const parentState = fields.parent ? nodes.get(fields.parent)?.state : null;
    const state = detail?.state || (INHERITED.has(parentState) ? parentState : finished ? NOT_RUN : "PENDING");
    const node = { id, parent: null, reported: Boolean(detail), state, ...fields };
    node.title = tasks ? `${id} (${state === NOT_RUN ? "not run" : state})` : id;
    nodes.set(id, node);
    return node;
  };

  // One DAG's tasks under `parent`, with ids prefixed by `prefix`.
  const walk = (dag, prefix, parent) => {
    const within = new Set(Object.keys(dag?.tasks || {}));
    for (const name of within) {
      const task = dag.tasks[name];
      const id = prefix + name;
      const label = task.taskInfo?.name || name;
      const component = components[task.componentRef?.name] || {};
      if (!component.dag) {
        add(id, { label, kind: "task", parent });
      } else if (task.parameterIterator || task.artifactIterator) {
        walkLoop(id, label, component.dag, parent);
      } else {
        add(id, { label, kind: "dag", parent });
        walk(component.dag, id + ".", id);
      }
      for (const upstream of task.dependentTasks || []) {
        if (within.has(upstream)) edges.push([prefix + upstream, id]);
      }
    }
  };

  // A loop: a cluster of its iterations. An iteration whose body is one task is that task
  // (labelled "name [i]"); a larger body is a cluster of its own.
  const walkLoop = (id, label, body, parent) => {
    const loop = add(id, { label, kind: "loop", parent });
    let count = details.get(id)?.iteration_count ?? 0;
    for (const taskId of details.keys()) {
      const index = iterationOf(taskId, id);
      if (index !== null && index >= count) count = index + 1;
    }
    loop.label = count ? `${label} ×${count}` : label;
    const bodyNames = Object.keys(body?.tasks || {});
    const single = bodyNames.length === 1 && !components[body.tasks[bodyNames[0]].componentRef?.name]?.dag;
    for (const index of count ? [...Array(count).keys()] : ["…"]) {
      const iteration = `${id}[${index}]`;
      if (single) {
        absorbed.add(iteration);
        const name = body.tasks[bodyNames[0]].taskInfo?.name || bodyNames[0];
        add(`${iteration}.${bodyNames[0]}`, { label: `${name} [${index}]`, kind: "task", parent: id });
      } else {
        add(iteration, { label: `[${index}]`, kind: "iteration", parent: id });
        walk(body, iteration + ".", iteration);
      }
    }
  };

  if (spec?.root?.dag) walk(spec.root.dag, "", null);
  // Reported tasks the spec walk did not place (no spec, or a shape it does not know), under
  // their parent when that is drawn; parents first, so a child finds its cluster.
  const missing = [...details.values()].filter((t) => !nodes.has(t.task_id) && !absorbed.has(t.task_id));
  missing.sort((a, b) => depth(a.task_id) - depth(b.task_id));
  for (const t of missing) {
    const parent = nodes.has(t.parent_task_id) ? t.parent_task_id : null;
    const kind = t.iteration_count !== undefined ? "loop" : t.iteration_index !== undefined ? "iteration" : "task";
    add(t.task_id, { label: t.display_name || t.task_id, kind, parent });
  }
  return { nodes, edges };
}

/** The iteration index of `taskId` within loop `loopId` ("loop[3]" or "loop[3].x" -> 3), else null. */
function iterationOf(taskId, loopId) {
  if (!taskId.startsWith(loopId + "[")) return null;
  const match = /^\[(\d+)\]/.exec(taskId.slice(loopId.length));
  return match ? Number(match[1]) : null;
}

function depth(taskId) {
  return taskId.split(".").length;
}

/**
 * The graph's positions: {width, height, boxes: Map(id -> {x, y, width, height, cluster})
 * (top-left corners), paths: [[points]]}. Each DAG is laid out on its own, innermost first,
 * a cluster then being one box of its contents' size in its parent's layout: dagre on one
 * flat graph per DAG (a compound graph of hundreds of clusters takes dagre seconds), and a
 * loop's iterations, which have no edges between them, in a grid of equal cells.
 */
export function layout(graph) {
  const children = new Map([[null, []]]);
  for (const node of graph.nodes.values()) {
    if (!children.has(node.parent)) children.set(node.parent, []);
    children.get(node.parent).push(node.id);
  }
  const siblingEdges = new Map();
  for (const [from, to] of graph.edges) {
    const parent = graph.nodes.get(to)?.parent ?? null;
    if (graph.nodes.get(from)?.parent !== parent) continue;
    if (!siblingEdges.has(parent)) siblingEdges.set(parent, []);
    siblingEdges.get(parent).push([from, to]);
  }
  const local = new Map(); // id -> {x, y, width, height} within its parent's contents
  const cache = new Map();
  const localPaths = new Map(); // parent id -> [[points]] within its contents

  // Lays out the contents of `parent`; returns their {width, height}.
  const place = (parent) => {
    const ids = children.get(parent) || [];
    for (const id of ids) {
      if (children.has(id)) {
        const inner = place(id);
        local.set(id, { width: Math.max(inner.width + 2 * CLUSTER_PADDING, MIN_CLUSTER_WIDTH), height: inner.height + CLUSTER_LABEL_HEIGHT + CLUSTER_PADDING });
      } else {
        local.set(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
      }
    }
    return graph.nodes.get(parent)?.kind === "loop" ? grid(ids, local) : flat(ids, siblingEdges.get(parent) || [], local, localPaths, parent, cache);
  };
  const size = place(null);

  const boxes = new Map();
  const paths = [];
  const absolute = (parent, dx, dy) => {
    for (const points of localPaths.get(parent) || []) paths.push(points.map((p) => ({ x: p.x + dx, y: p.y + dy })));
    for (const id of children.get(parent) || []) {
      const box = local.get(id);
      const cluster = children.has(id);
      boxes.set(id, { x: box.x + dx, y: box.y + dy, width: box.width, height: box.height, cluster });
      if (cluster) absolute(id, box.x + dx + CLUSTER_PADDING, box.y + dy + CLUSTER_LABEL_HEIGHT);
    }
  };
  absolute(null, MARGIN, MARGIN);
  return { width: size.width + 2 * MARGIN, height: size.height + 2 * MARGIN, boxes, paths };
}

/** Positions of `ids` (sizes in `local`) by dagre, with their edges' points; returns the size.
 * `cache` holds the layouts of contents already placed, by their shape relative to `parent`:
 * a loop's iterations are laid out once. */
function flat(ids, edges, local, localPaths, parent, cache) {
  if (!ids.length) return { width: 0, height: 0 };
  const prefix = parent === null ? "" : parent + ".";
  const relative = (id) => (id.startsWith(prefix) ? id.slice(prefix.length) : id);
  const key = JSON.stringify([ids.map((id) => [relative(id), local.get(id).width, local.get(id).height]), edges.map((e) => e.map(relative))]);
  let placed = cache.get(key);
  if (!placed) {
    const large = ids.length > LARGE;
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 36, marginx: 0, marginy: 0, ranker: large ? "longest-path" : "network-simplex" });
    g.setDefaultEdgeLabel(() => ({}));
    for (const id of ids) g.setNode(id, { width: local.get(id).width, height: local.get(id).height });
    for (const [from, to] of edges) g.setEdge(from, to);
    dagre.layout(g, { disableOptimalOrderHeuristic: large });
    placed = {
      corners: ids.map((id) => {
        const { x, y, width, height } = g.node(id);
        return { x: x - width / 2, y: y - height / 2 };
      }),
      paths: g.edges().map((e) => g.edge(e).points),
      size: { width: g.graph().width, height: g.graph().height },
    };
    cache.set(key, placed);
  }
  ids.forEach((id, i) => Object.assign(local.get(id), placed.corners[i]));
  localPaths.set(parent, placed.paths);
  return placed.size;
}

/** Positions of `ids` in a grid of equal cells, in order, about twice as wide as high. */
function grid(ids, local) {
  if (!ids.length) return { width: 0, height: 0 };
  let cellWidth = 0;
  let cellHeight = 0;
  for (const id of ids) {
    cellWidth = Math.max(cellWidth, local.get(id).width);
    cellHeight = Math.max(cellHeight, local.get(id).height);
  }
  const columns = Math.max(1, Math.min(ids.length, Math.round(Math.sqrt((2 * ids.length * cellHeight) / cellWidth))));
  ids.forEach((id, i) => Object.assign(local.get(id), { x: (i % columns) * (cellWidth + GAP), y: Math.floor(i / columns) * (cellHeight + GAP) }));
  const rows = Math.ceil(ids.length / columns);
  return { width: columns * (cellWidth + GAP) - GAP, height: rows * (cellHeight + GAP) - GAP };
}

/**
 * The graph on the page: new RunGraph(container, onSelect(taskId)).
 * update(spec, tasks, finished) draws it again when the set of tasks changed, else only
 * re-colours (buildGraph's arguments);
 * select(taskId) highlights one box; fit(on) scales a drawing wider than the container down to
 * its width (the default), or shows it at its size, scrolled. Boxes are `g.g-node` with data-task-id and data-state.
 */
export class RunGraph {
  constructor(container, onSelect) {
    this._container = container;
    this._onSelect = onSelect;
    this._key = null;
    this._elements = new Map();
    this._selected = null;
    this._fit = true;
    this.timings = null; // {build, layout, draw} of the last drawing, in ms (bench/bench_ui.py)
  }

  update(spec, tasks, finished = false) {
    const started = performance.now();
    const graph = buildGraph(spec, tasks, finished);
    const key = [...graph.nodes.keys()].join("\n") + "\n\n" + graph.edges.join("\n");
    if (key !== this._key) {
      this._key = key;
      const built = performance.now();
      const placed = layout(graph);
      const laidOut = performance.now();
      this._draw(graph, placed);
      this.timings = { build: built - started, layout: laidOut - built, draw: performance.now() - laidOut };
    } else {
      for (const node of graph.nodes.values()) this._colour(node);
    }
    return graph;
  }

  select(taskId) {
    this._elements.get(this._selected)?.classList.remove("selected");
    this._selected = taskId;
    this._elements.get(taskId)?.classList.add("selected");
  }

  fit(on) {
    this._fit = on;
    this._container.querySelector("svg.run-graph")?.classList.toggle("fit", on);
  }

  _colour(node) {
    const element = this._elements.get(node.id);
    if (!element || element.dataset.state === node.state) return;
    element.dataset.state = node.state;
    element.querySelector("title").textContent = node.title;
  }

  _draw(graph, placed) {
    const svg = svgElement("svg", { class: "run-graph", width: placed.width, height: placed.height, viewBox: `0 0 ${placed.width} ${placed.height}` });
    const clusters = svgElement("g", { class: "clusters" });
    const edges = svgElement("g", { class: "edges" });
    const leaves = svgElement("g", { class: "nodes" });
    this._elements = new Map();
    // Outer clusters first, so inner ones are drawn over them.
    const ordered = [...graph.nodes.values()].sort((a, b) => depthOf(graph, a) - depthOf(graph, b));
    for (const node of ordered) {
      const box = placed.boxes.get(node.id);
      if (!box) continue;
      const element = svgElement("g", {
        class: box.cluster ? "g-cluster" : "g-node",
        "data-task-id": node.id,
        "data-kind": node.kind,
        "data-state": node.state,
        "data-reported": node.reported ? "true" : "false",
        transform: `translate(${box.x},${box.y})`,
      });
      element.append(svgElement("title", {}, node.title));
      if (box.cluster) {
        element.append(svgElement("rect", { width: box.width, height: box.height, rx: 8 }));
        element.append(svgElement("text", { x: 8, y: 15, class: "label" }, clip(node.label, Math.floor(box.width / 7))));
      } else {
        element.append(svgElement("rect", { width: box.width, height: box.height, rx: 6 }));
        element.append(svgElement("rect", { class: "bar", width: 6, height: box.height, rx: 3 }));
        element.append(svgElement("text", { x: 14, y: box.height / 2 + 4, class: "label" }, clip(node.label, MAX_LABEL)));
      }
      element.addEventListener("click", (event) => {
        event.stopPropagation();
        this._onSelect?.(node.id);
      });
      (box.cluster ? clusters : leaves).append(element);
      this._elements.set(node.id, element);
    }
    for (const points of placed.paths) {
      const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
      edges.append(svgElement("path", { d, "marker-end": "url(#arrow)" }));
    }
    const defs = svgElement("defs", {});
    const marker = svgElement("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svgElement("path", { d: "M0,0L10,5L0,10z" }));
    defs.append(marker);
    svg.append(defs, clusters, edges, leaves);
    svg.classList.toggle("fit", this._fit);
    this._container.replaceChildren(svg);
    if (this._selected) this.select(this._selected);
  }
}

function depthOf(graph, node) {
  let d = 0;
  for (let n = node; n?.parent; n = graph.nodes.get(n.parent)) d++;
  return d;
}

function clip(text, max) {
  return text.length > max ? text.slice(0, Math.max(1, max - 1)) + "…" : text;
}

function svgElement(tag, attributes, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}
