// The runtime graph of a run: its tasks as SVG boxes laid out by their DAG (dagre), sub-DAGs,
// loops and condition branches drawn as clusters around their tasks, coloured by state.
//
// The graph is the pipeline spec's DAG (components[...].dag.tasks, their dependentTasks)
// walked with the run's task details (PipelineTaskDetail, keyed by task_id: a task's path in
// the DAG, "outer.train"; a loop iteration's body is under "for-loop-2[1]."). A task the spec
// has and the run has not reported yet is drawn dashed, in its nearest reported ancestor's
// state when that is SKIPPED or CANCELED (an untaken condition branch: nothing inside it is
// reported), else PENDING. Before a loop reports its iterations, its body is drawn once
// ("for-loop-2[…]."). Without a spec, the task details alone give the clusters (no edges).

import dagre from "../vendor/dagre.esm.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_WIDTH = 170;
const NODE_HEIGHT = 34;
const MAX_LABEL = 22; // characters of a box's label; the full name is its tooltip
const CLUSTER_LABEL_HEIGHT = 18;
const INHERITED = new Set(["SKIPPED", "CANCELED"]);

/**
 * The graph of a run: {nodes: Map(id -> node), edges: [[from, to]]}, leaves and clusters.
 * A node is {id, label, title, kind: "task" | "dag" | "loop" | "iteration", parent (the
 * enclosing node's id or null), state, reported (whether a task detail exists)}; a node that
 * is some node's parent is drawn as a cluster.
 * `spec`: the PipelineSpec object (or null); `tasks`: run_details.task_details, or null for a
 * pipeline's static graph (no run: every node PENDING and unreported, titled by its id only).
 */
export function buildGraph(spec, tasks) {
  const details = new Map((tasks || []).map((t) => [t.task_id, t]));
  const nodes = new Map();
  const edges = [];
  const components = spec?.components || {};
  // A cluster's leaves edges attach to (dagre lays out edges between leaves only): into it at
  // its starts, out of it at its ends.
  const entries = new Map();
  const exits = new Map();
  const orSelf = (id, inner) => {
    const result = inner.starts.length ? inner : { starts: [id], ends: [id] };
    entries.set(id, result.starts);
    exits.set(id, result.ends);
    return result;
  };

  const add = (id, fields) => {
    const detail = details.get(id);
    const parentState = fields.parent ? nodes.get(fields.parent)?.state : null;
    const state = detail?.state || (INHERITED.has(parentState) ? parentState : "PENDING");
    const node = { id, parent: null, reported: Boolean(detail), state, ...fields };
    node.title = tasks ? `${id} (${state})` : id;
    nodes.set(id, node);
    return node;
  };

  // One DAG's tasks under `parent`, with ids prefixed by `prefix`. Returns {starts, ends}: the
  // node ids edges into and out of this DAG attach to (tasks nothing precedes / follows here).
  const walk = (dag, prefix, parent) => {
    const names = Object.keys(dag?.tasks || {});
    const within = new Set(names);
    const followed = new Set();
    const local = [];
    for (const name of names) {
      const task = dag.tasks[name];
      const id = prefix + name;
      const label = task.taskInfo?.name || name;
      const component = components[task.componentRef?.name] || {};
      const loop = Boolean(task.parameterIterator || task.artifactIterator);
      if (!component.dag) {
        local.push({ name, id, ...ends(add(id, { label, kind: "task", parent })) });
      } else if (!loop) {
        add(id, { label, kind: "dag", parent });
        local.push({ name, id, ...orSelf(id, walk(component.dag, id + ".", id)) });
      } else {
        local.push({ name, id, ...orSelf(id, walkLoop(id, label, component.dag, parent)) });
      }
      for (const upstream of task.dependentTasks || []) {
        if (within.has(upstream)) {
          followed.add(upstream);
          edges.push([prefix + upstream, id]);
        }
      }
    }
    const preceded = new Set(names.filter((n) => (dag.tasks[n].dependentTasks || []).some((u) => within.has(u))));
    return {
      starts: local.filter((t) => !preceded.has(t.name)).flatMap((t) => t.starts),
      ends: local.filter((t) => !followed.has(t.name)).flatMap((t) => t.ends),
    };
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
    const indexes = count ? [...Array(count).keys()] : ["…"];
    const result = { starts: [], ends: [] };
    for (const index of indexes) {
      const iteration = `${id}[${index}]`;
      let part;
      if (single) {
        const taskId = `${iteration}.${bodyNames[0]}`;
        const name = body.tasks[bodyNames[0]].taskInfo?.name || bodyNames[0];
        part = ends(add(taskId, { label: `${name} [${index}]`, kind: "task", parent: id }));
      } else {
        add(iteration, { label: `[${index}]`, kind: "iteration", parent: id });
        part = orSelf(iteration, walk(body, iteration + ".", iteration));
      }
      result.starts.push(...part.starts);
      result.ends.push(...part.ends);
    }
    return result;
  };

  if (spec?.root?.dag) walk(spec.root.dag, "", null);
  // Reported tasks the spec walk did not place (no spec, or a shape it does not know), under
  // their parent when that is drawn; parents first, so a child finds its cluster.
  const missing = [...details.values()].filter((t) => !nodes.has(t.task_id));
  missing.sort((a, b) => depth(a.task_id) - depth(b.task_id));
  for (const t of missing) {
    const parent = nodes.has(t.parent_task_id) ? t.parent_task_id : null;
    const kind = t.iteration_count !== undefined ? "loop" : t.iteration_index !== undefined ? "iteration" : "task";
    add(t.task_id, { label: t.display_name || t.task_id, kind, parent });
  }
  const resolved = new Map();
  for (const [from, to] of edges) {
    for (const a of exits.get(from) || [from]) {
      for (const b of entries.get(to) || [to]) {
        if (a !== b && nodes.has(a) && nodes.has(b)) resolved.set(`${a}\u0000${b}`, [a, b]);
      }
    }
  }
  return { nodes, edges: [...resolved.values()] };
}

function ends(node) {
  return { starts: [node.id], ends: [node.id] };
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

/** The graph's positions: dagre's layout of `graph` (buildGraph's). Returns {width, height,
 * boxes: Map(id -> {x, y, width, height}) (top-left corners), paths: [[from, to, points]]}. */
export function layout(graph) {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 36, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const parents = new Set([...graph.nodes.values()].map((n) => n.parent).filter(Boolean));
  for (const node of graph.nodes.values()) {
    const cluster = parents.has(node.id);
    g.setNode(node.id, cluster ? { paddingTop: CLUSTER_LABEL_HEIGHT } : { width: NODE_WIDTH, height: NODE_HEIGHT });
  }
  for (const node of graph.nodes.values()) {
    if (node.parent) g.setParent(node.id, node.parent);
  }
  for (const [from, to] of graph.edges) g.setEdge(from, to);
  dagre.layout(g);
  const boxes = new Map();
  for (const id of g.nodes()) {
    const { x, y, width, height } = g.node(id);
    if (graph.nodes.has(id)) boxes.set(id, { x: x - width / 2, y: y - height / 2, width, height, cluster: parents.has(id) });
  }
  const paths = g.edges().map((e) => [e.v, e.w, g.edge(e).points]);
  const { width, height } = g.graph();
  return { width, height, boxes, paths };
}

/**
 * The graph on the page: new RunGraph(container, onSelect(taskId)).
 * update(spec, tasks) draws it again when the set of tasks changed, else only re-colours;
 * select(taskId) highlights one box. Boxes are `g.g-node` with data-task-id and data-state.
 */
export class RunGraph {
  constructor(container, onSelect) {
    this._container = container;
    this._onSelect = onSelect;
    this._key = null;
    this._elements = new Map();
    this._selected = null;
    this.lastLayoutMs = 0;
  }

  update(spec, tasks) {
    const graph = buildGraph(spec, tasks);
    const key = [...graph.nodes.keys()].join("\n") + "\n\n" + graph.edges.join("\n");
    if (key !== this._key) {
      this._key = key;
      const started = performance.now();
      this._draw(graph, layout(graph));
      this.lastLayoutMs = performance.now() - started;
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
        element.append(svgElement("text", { x: 8, y: 14, class: "label" }, clip(node.label, Math.floor(box.width / 7))));
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
    for (const [, , points] of placed.paths) {
      const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
      edges.append(svgElement("path", { d, "marker-end": "url(#arrow)" }));
    }
    const defs = svgElement("defs", {});
    const marker = svgElement("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svgElement("path", { d: "M0,0L10,5L0,10z" }));
    defs.append(marker);
    svg.append(defs, clusters, edges, leaves);
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
