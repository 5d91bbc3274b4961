// The run page, #/runs/<id>[?task=<task_id>]: the runtime graph (graph.js), the selected task's
// details and log (logs.js), the run's state history, and its actions. Live: one
// runs/{id}:watch stream while the run has not finished; each `run` frame re-colours the graph
// (laid out again only when its set of tasks changed) and refreshes the panels.

import { ApiError, del, describe, get, post, showError, watch } from "../api.js";
import { setQuery } from "../app.js";
import { FINAL_STATES, formatDuration, formatTime, h, shortId, stateBadge } from "../util.js";
import { NOT_RUN, RunGraph } from "./graph.js";
import { LogView } from "./logs.js";

let page = null; // the shown RunPage, disposed on navigation

export async function render(container, params) {
  page = new RunPage(container, params.id, params.task || "");
  await page.load();
}

export function dispose() {
  page?.dispose();
  page = null;
}

class RunPage {
  constructor(container, runId, taskId) {
    this.container = container;
    this.runId = runId;
    this.taskId = taskId;
    this.run = null;
    this.spec = null;
    this.graphNodes = new Map();
    this.stream = null;
    this.command = "";
    this.logTask = null; // the task whose log is open, and whether it was followed
  }

  async load() {
    const run = await get(`runs/${encodeURIComponent(this.runId)}`);
    try {
      this.spec = await pipelineSpec(run);
    } catch (error) {
      // KFP lets a version be deleted while runs of it remain: the run is still shown (and can
      // be archived or deleted), its graph drawn from the reported tasks alone.
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      this.spec = null;
      this.versionDeleted = true;
    }
    if (!this.container.isConnected) return;
    this.build();
    this.show(run);
    this.follow();
    this.nameExperiment();
  }

  /** Replaces the experiment's id in the header by its name (one GET; the id stays if it fails). */
  async nameExperiment() {
    if (!this.run.experiment_id) return;
    try {
      const experiment = await get(`experiments/${encodeURIComponent(this.run.experiment_id)}`);
      this.experimentName = experiment.display_name || "";
    } catch {
      return;
    }
    const link = this.container.isConnected && this.meta.querySelector("a.experiment");
    if (link && this.experimentName) link.textContent = this.experimentName;
  }

  /** The page's fixed parts: header, actions, graph, task panel, timeline. */
  build() {
    this.title = h("h1", {});
    this.meta = h("div", { class: "run-meta muted" });
    this.description = h("p", { class: "run-description", hidden: true });
    this.actions = h("div", { class: "toolbar run-actions" });
    const graphPane = h("div", { class: "graph-pane", "data-testid": "run-graph" });
    const graphNote = this.versionDeleted
      ? h("p", { class: "graph-note", "data-testid": "graph-note" }, "The pipeline version was deleted: graph from the reported tasks only.")
      : null;
    this.graph = new RunGraph(graphPane, (taskId) => this.select(taskId));
    const fit = h("input", { type: "checkbox", checked: true, onchange: () => this.graph.fit(fit.checked) });
    const legend = h("p", { class: "graph-legend muted", "data-testid": "graph-legend" },
      "A dashed box is a task the run has not reported: not started yet, in a branch not taken (SKIPPED), or not run.");
    this.taskPanel = h("section", { class: "task-panel", "data-testid": "task-panel" });
    this.taskDetails = h("div", { class: "task-details" });
    const logPane = h("div", { class: "task-log" });
    this.logs = new LogView(logPane, {
      onCommand: (command) => {
        this.command = command;
        this.showTask();
      },
    });
    this.logSection = h("div", { class: "log-section" }, h("h3", {}, "Log"), logPane);
    this.taskPanel.append(this.taskDetails, this.logSection);
    this.timeline = h("section", { class: "run-timeline", "data-testid": "run-timeline" });
    this.parameters = h("section", { class: "run-parameters" });
    this.container.append(
      h("p", {}, h("a", { href: "#/runs" }, "← Runs")),
      this.title,
      this.meta,
      this.description,
      this.actions,
      h("div", { class: "run-layout" }, h("div", { class: "graph-column" }, graphNote, graphPane, h("label", { class: "graph-fit muted" }, fit, " Fit the graph to the width"), legend), this.taskPanel),
      h("div", { class: "run-lower" }, this.timeline, this.parameters),
    );
  }

  /** Shows `run` (a GET or a watch frame): everything but the spec may have changed. */
  show(run) {
    this.run = run;
    const tasks = run.run_details?.task_details || [];
    this.tasks = new Map(tasks.map((t) => [t.task_id, t]));
    this.title.replaceChildren(run.display_name || run.run_id, " ", stateBadge(run.state));
    this.title.title = run.display_name || run.run_id;
    this.title.dataset.state = run.state || "";
    const ended = run.finished_at ? new Date(run.finished_at) : new Date();
    this.meta.replaceChildren(...[
      h("span", {}, "Run ", h("code", {}, run.run_id)),
      h("span", {}, `created ${formatTime(run.created_at)}`),
      run.finished_at ? h("span", {}, `finished ${formatTime(run.finished_at)}`) : null,
      h("span", {}, `duration ${formatDuration(ended - new Date(run.created_at))}`),
      run.storage_state === "ARCHIVED" ? h("span", { class: "archived" }, "archived") : null,
      run.experiment_id ? h("span", {}, "experiment ", h("a", { href: `#/runs?experiment=${encodeURIComponent(run.experiment_id)}`, class: "experiment", "data-id": run.experiment_id }, this.experimentName || shortId(run.experiment_id))) : null,
      run.recurring_run_id ? h("span", {}, "by recurring run ", h("a", { href: `#/recurringruns/${encodeURIComponent(run.recurring_run_id)}` }, run.recurring_run_id)) : null,
    ].filter(Boolean));
    this.description.textContent = run.description || "";
    this.description.hidden = !run.description;
    this.showActions();
    const graph = this.graph.update(this.spec, tasks, FINAL_STATES.has(run.state));
    this.graphNodes = graph.nodes;
    this.graph.select(this.taskId);
    this.showTask();
    this.showTimeline();
    this.showParameters();
  }

  /** Watches the run until it finishes (again after a retry). */
  follow() {
    this.stream?.close();
    this.stream = null;
    if (FINAL_STATES.has(this.run.state)) return;
    this.stream = watch(`runs/${encodeURIComponent(this.runId)}:watch`, {
      on: { run: (run) => this.container.isConnected && this.show(run) },
      onError: (error) => showError(error),
    });
  }

  select(taskId) {
    this.taskId = taskId;
    setQuery({ task: taskId });
    this.graph.select(taskId);
    this.showTask();
  }

  showTask() {
    const node = this.graphNodes.get(this.taskId);
    if (!node) {
      this.taskPanel.hidden = false;
      this.taskDetails.replaceChildren(h("p", { class: "muted" }, "Select a task in the graph to see its inputs, outputs and log."));
      this.logSection.hidden = true;
      this.openLog(null);
      return;
    }
    const task = this.tasks.get(this.taskId);
    const state = node.state;
    const rows = [
      ["Task ID", h("code", {}, node.id)],
      ["State", state === NOT_RUN ? h("span", { class: "state state-NOT_RUN", "data-state": NOT_RUN }, "NOT RUN") : stateBadge(state)],
    ];
    if (task) {
      rows.push(
        ["Created", formatTime(task.create_time)],
        ["Started", formatTime(task.start_time)],
        ["Ended", formatTime(task.end_time)],
        ["Duration", task.start_time ? formatDuration((task.end_time ? new Date(task.end_time) : new Date()) - new Date(task.start_time)) : ""],
        ["Image", task.image ? h("code", {}, task.image) : ""],
        ["Command", this.logTask?.taskId === node.id && this.command ? h("code", { class: "command" }, this.command) : ""],
        ["Exit code", task.exit_code !== undefined ? String(task.exit_code) : task.state === "SUCCEEDED" && node.kind === "task" && !task.cached ? "0" : ""],
        ["Retries", task.retries ? String(task.retries) : ""],
        ["Cached", task.cached ? cachedFrom(task.cached_from_run_id) : ""],
        ["Iteration", task.iteration_index !== undefined ? String(task.iteration_index) : ""],
        ["Iterations", task.iteration_count !== undefined ? String(task.iteration_count) : ""],
      );
    } else {
      rows.push(["", h("span", { class: "muted" }, state === "PENDING" ? "not started yet" : state === NOT_RUN ? "not run: the run ended before it started" : `not run: an enclosing task is ${state}`)]);
    }
    const parts = [h("h2", {}, node.label), table("task-fields", rows.filter(([, value]) => value !== ""))];
    if (task?.error?.message) parts.push(h("h3", {}, "Error"), h("pre", { class: "task-error" }, task.error.message));
    if (task?.notes?.length) parts.push(h("h3", {}, "Notes"), h("ul", { class: "notes" }, task.notes.map((n) => h("li", {}, n))));
    if (task?.input_parameters) parts.push(h("h3", {}, "Inputs"), valueTable(task.input_parameters));
    if (task?.output_parameters) parts.push(h("h3", {}, "Outputs"), valueTable(task.output_parameters));
    if (task?.output_artifacts?.length) parts.push(h("h3", {}, "Artifacts"), artifactList(task.output_artifacts));
    if (task?.state_history?.length) parts.push(h("h3", {}, "State history"), historyTable(task.state_history));
    this.taskDetails.replaceChildren(...parts);
    // Logs are a container task's: a DAG, loop or condition task prints nothing.
    const loggable = node.kind === "task" && Boolean(task);
    this.logSection.hidden = !loggable;
    this.openLog(loggable ? node.id : null, loggable && !FINAL_STATES.has(task.state) && !FINAL_STATES.has(this.run.state));
  }

  /** Opens the log of `taskId` (null: none), again when it was opened unfollowed and the task
   * has started running since; a log being followed stays open. */
  openLog(taskId, follow = false) {
    const open = this.logTask;
    if (open?.taskId === taskId && (open.follow || !follow)) return;
    if (open?.taskId !== taskId) {
      this.command = "";
      // A newly opened log is brought into the window (the least scroll that shows it all):
      // under a task's details it would often start below the fold.
      if (taskId) requestAnimationFrame(() => this.logSection.isConnected && !this.logSection.hidden && this.logSection.scrollIntoView({ block: "nearest" }));
    }
    this.logTask = taskId ? { taskId, follow } : null;
    if (taskId) this.logs.open(this.runId, taskId, follow);
    else this.logs.dispose();
  }

  showTimeline() {
    const history = this.run.state_history || [];
    this.timeline.replaceChildren(h("h2", {}, "Timeline"), historyTable(history));
  }

  showParameters() {
    const config = this.run.runtime_config || {};
    const parts = [h("h2", {}, "Parameters"), valueTable(config.parameters || {})];
    if (config.pipeline_root) parts.push(h("p", {}, "Pipeline root ", h("code", {}, config.pipeline_root)));
    const reference = this.run.pipeline_version_reference;
    if (reference) {
      const ids = h("code", {}, `${reference.pipeline_id} / ${reference.pipeline_version_id}`);
      parts.push(this.versionDeleted
        ? h("p", {}, "Pipeline version ", ids, " (deleted)")
        : h("p", {}, "Pipeline version ", h("a", { href: `#/pipelines/${encodeURIComponent(reference.pipeline_id)}?version=${encodeURIComponent(reference.pipeline_version_id)}` }, ids)));
    }
    if (this.run.error?.message) parts.unshift(h("h2", {}, "Error"), h("pre", { class: "task-error" }, this.run.error.message));
    this.parameters.replaceChildren(...parts);
  }

  showActions() {
    const run = this.run;
    const finished = FINAL_STATES.has(run.state);
    const archived = run.storage_state === "ARCHIVED";
    const button = (label, enabled, question, action) =>
      h("button", { type: "button", disabled: !enabled, "data-action": label.toLowerCase(), onclick: () => this.act(question, action) }, label);
    const path = `runs/${encodeURIComponent(run.run_id)}`;
    this.actions.replaceChildren(
      button("Terminate", !finished && run.state !== "CANCELING", "Terminate this run? Its running tasks are stopped.", () => post(`${path}:terminate`)),
      button("Retry", run.state === "FAILED" || run.state === "CANCELED", "Retry this run's failed and canceled tasks?", () => post(`${path}:retry`)),
      archived
        ? button("Unarchive", true, "Unarchive this run?", () => post(`${path}:unarchive`))
        : button("Archive", true, "Archive this run?", () => post(`${path}:archive`)),
      // A deleted version cannot be run again (CreateRun would refuse it).
      button("Re-run", !this.versionDeleted, "Start a new run of the same pipeline with the same parameters?", () => this.rerun()),
      button("Delete", finished, "Delete this run and its task details and logs? This cannot be undone.", async () => {
        await del(path);
        location.hash = "#/runs";
        return "left";
      }),
    );
  }

  /** Asks `question`; on yes runs `action` and shows the run again, or the API's error. */
  async act(question, action) {
    if (!window.confirm(question)) return;
    for (const b of this.actions.querySelectorAll("button")) b.disabled = true;
    try {
      if ((await action()) === "left") return;
      const run = await get(`runs/${encodeURIComponent(this.runId)}`);
      if (!this.container.isConnected) return;
      this.show(run);
      this.follow();
    } catch (error) {
      showError(error);
      this.showActions();
    }
  }

  /** A new run of the same pipeline source and runtime config (CreateRun); opens it. */
  async rerun() {
    const run = this.run;
    const body = { display_name: `${run.display_name} (re-run)`, description: run.description, experiment_id: run.experiment_id, runtime_config: run.runtime_config };
    if (run.pipeline_version_reference) body.pipeline_version_reference = run.pipeline_version_reference;
    else body.pipeline_spec = this.spec;
    const created = await post("runs", body);
    location.hash = `#/runs/${encodeURIComponent(created.run_id)}`;
    return "left";
  }

  dispose() {
    this.stream?.close();
    this.logs?.dispose();
  }
}

/** The run's pipeline spec: inline, or its pipeline version's (GET of the version). */
async function pipelineSpec(run) {
  if (run.pipeline_spec) return run.pipeline_spec;
  const reference = run.pipeline_version_reference;
  if (!reference?.pipeline_version_id) return null;
  const version = await get(`pipelines/${encodeURIComponent(reference.pipeline_id)}/versions/${encodeURIComponent(reference.pipeline_version_id)}`);
  return version.pipeline_spec || null;
}

function cachedFrom(runId) {
  return runId ? h("span", {}, "yes, from run ", h("a", { href: `#/runs/${encodeURIComponent(runId)}` }, runId)) : "yes";
}

function table(className, rows) {
  return h("table", { class: className }, h("tbody", {}, rows.map(([name, value]) => h("tr", {}, h("th", {}, name), h("td", {}, value)))));
}

/** A map of JSON values as name / value rows (a value that is not a string as JSON). */
function valueTable(values) {
  const names = Object.keys(values).sort();
  if (!names.length) return h("p", { class: "muted" }, "none");
  return table("values", names.map((name) => [name, h("code", {}, typeof values[name] === "string" ? values[name] : JSON.stringify(values[name]))]));
}

function artifactList(artifacts) {
  return h(
    "ul",
    { class: "artifacts" },
    artifacts.map((a) =>
      h(
        "li",
        {},
        h("strong", {}, a.name), " ", h("span", { class: "muted" }, a.schema_title || ""),
        h("div", {}, h("code", { class: "uri" }, a.uri || "")),
        a.metadata && Object.keys(a.metadata).length ? h("pre", { class: "metadata" }, JSON.stringify(a.metadata, null, 2)) : null,
      ),
    ),
  );
}

/** RuntimeStatus entries: time, state, time since the previous one, error. */
function historyTable(history) {
  if (!history.length) return h("p", { class: "muted" }, "none yet");
  return h(
    "table",
    { class: "history" },
    h("tbody", {}, history.map((entry, i) => {
      const since = i ? formatDuration(new Date(entry.update_time) - new Date(history[i - 1].update_time)) : "";
      return h("tr", { "data-state": entry.state }, h("td", {}, formatTime(entry.update_time)), h("td", {}, stateBadge(entry.state)), h("td", { class: "muted" }, since ? `+${since}` : ""), h("td", {}, entry.error?.message || ""));
    })),
  );
}
