// The runs list, #/runs?experiment=&state=&name=&show=&size= (docs/ui.md "Runs list"): ListRuns
// newest first, filtered by state, name and storage state (active, archived or all), paged by
// page_token, kept live by the events stream.

import { get, showError, watchNewest } from "../api.js";
import { setQuery } from "../app.js";
import { FINAL_STATES, STATES, formatDuration, formatTime, h, shortId, stateBadge } from "../util.js";
import { Pager, nameSearch, pageSizeOf, sizeQuery, sizeSelect } from "./pager.js";

const LIVE_TYPES = ["RUN_STATE_CHANGED", "RUN_COMPLETED", "RUN_DELETED"];
const MAX_PENDING = 5000; // events kept while the list is read (the oldest go first)
const MAX_EXPERIMENT_PAGES = 10; // 200 each: the selector lists at most 2,000 experiments
// The "Show" choices: the storage_state filtered on (KFP's UI lists active and archived runs
// apart; ListRuns returns both unless filtered). "active" is the default, left out of the hash.
const SHOWN = { active: "AVAILABLE", archived: "ARCHIVED", all: "" };

// Recurring runs' display names by id (a Run names its recurring run by id only); a promise
// while asked for, "" for one that is gone.
const recurringNames = new Map();
let view = null; // the shown list's state, null once disposed

/** Fills `container` with the runs list; `params` from the hash's query. */
export async function render(container, params) {
  view = {
    container,
    experiment: params.experiment || "",
    state: STATES.includes(params.state) ? params.state : "",
    name: params.name || "",
    show: Object.hasOwn(SHOWN, params.show) ? params.show : "active",
    size: pageSizeOf(params.size),
    rows: new Map(), // run_id -> {run, tr}
    loads: 0, // counts reads of the list: only the newest one's answer is shown
    reading: false,
    pending: [], // events that came while the list was being read, applied once it is shown
    reloading: null,
    timers: [],
    stream: null,
  };
  const mine = view;
  mine.pager = new Pager(() => load(mine));

  const experiments = h("select", { name: "experiment", "aria-label": "Experiment", onchange: (e) => change({ experiment: e.target.value }) },
    h("option", { value: "" }, "All experiments"));
  const states = h("select", { name: "state", "aria-label": "State", onchange: (e) => change({ state: e.target.value }) },
    h("option", { value: "" }, "Any state"), STATES.map((s) => h("option", { value: s, selected: s === mine.state }, s)));
  const name = nameSearch(mine.name, (value) => change({ name: value }), mine.timers);
  const shows = h("select", { name: "show", "aria-label": "Show", onchange: (e) => change({ show: e.target.value }) },
    [["active", "Active"], ["archived", "Archived"], ["all", "All"]].map(([value, label]) => h("option", { value, selected: value === mine.show }, label)));
  const sizes = sizeSelect(mine.size, (size) => change({ size }));

  mine.body = h("tbody");
  mine.live = h("span", { class: "live", "data-live": "no" }, "connecting…");
  container.append(
    h("h1", {}, "Runs"),
    h("div", { class: "toolbar" },
      h("label", {}, "Experiment", experiments),
      h("label", {}, "State", states),
      h("label", {}, "Name", name),
      h("label", {}, "Show", shows),
      h("label", {}, "Page size", sizes)),
    h("table", { class: "list runs" },
      h("thead", {}, h("tr", {}, ["Name", "State", "Created", "Duration", "Recurring run"].map((t) => h("th", {}, t)))),
      mine.body),
    mine.pager.element(mine.live),
  );

  // Durations of unfinished runs grow: redrawn every second.
  const tick = setInterval(() => {
    for (const { run, tr } of mine.rows.values()) {
      if (!FINAL_STATES.has(run.state)) tr.querySelector(".duration").textContent = durationOf(run);
    }
  }, 1000);
  mine.timers.push(() => clearInterval(tick), () => clearTimeout(mine.reloading));

  loadExperiments(mine, experiments);
  // The stream first, the list once it is open (watchNewest): no change falls between them.
  mine.stream = openStream(mine);
  await mine.stream.ready;
  if (view === mine) await load(mine);
}

/** Closes the events stream and the timers. */
export function dispose() {
  if (!view) return;
  view.stream?.close();
  for (const clear of view.timers) clear();
  view = null;
}

/** A filter or page-size change: back to the first page, the address updated. */
function change(update) {
  Object.assign(view, update);
  view.pager.reset();
  setQuery({ experiment: view.experiment, state: view.state, name: view.name, show: view.show === "active" ? "" : view.show,
    size: sizeQuery(view.size) });
  load(view);
}

/** KFP's filter JSON for the chosen state, name and storage state, or "" for none (docs/api.md
 * Filters). */
function filterOf(mine) {
  const predicates = [];
  if (SHOWN[mine.show]) predicates.push({ key: "storage_state", operation: "EQUALS", string_value: SHOWN[mine.show] });
  if (mine.state) predicates.push({ key: "state", operation: "EQUALS", string_value: mine.state });
  if (mine.name) predicates.push({ key: "display_name", operation: "IS_SUBSTRING", string_value: mine.name });
  return predicates.length ? JSON.stringify({ predicates }) : "";
}

async function load(mine) {
  const mineLoad = ++mine.loads;
  mine.reading = true;
  mine.pager.busy();
  let answer;
  try {
    answer = await get("runs", {
      experiment_id: mine.experiment, page_size: mine.size, page_token: mine.pager.token, sort_by: "created_at desc", filter: filterOf(mine),
    });
  } catch (error) {
    if (view === mine && mineLoad === mine.loads) {
      mine.reading = false;
      showError(error);
      mine.pager.failed();
    }
    return;
  }
  if (view !== mine || mineLoad !== mine.loads) return;
  mine.reading = false;
  mine.rows.clear();
  const runs = answer.runs || [];
  mine.body.replaceChildren(...runs.map((run) => row(mine, run)));
  if (!runs.length) mine.body.append(h("tr", {}, h("td", { class: "empty", colspan: 5 }, "No runs")));
  mine.pager.shown(answer, mine.size, "run");
  for (const event of mine.pending.splice(0)) apply(mine, event);
  nameRecurringRuns(mine, runs);
}

/** Replaces the shown recurring run ids by their names, asking once per id per app load. */
async function nameRecurringRuns(mine, runs) {
  for (const id of new Set(runs.map((run) => run.recurring_run_id).filter(Boolean))) {
    if (!recurringNames.has(id)) {
      recurringNames.set(id, get(`recurringruns/${encodeURIComponent(id)}`)
        .then((r) => r.display_name || "", () => "")
        .then((name) => (recurringNames.set(id, name), name)));
    }
    const name = await recurringNames.get(id);
    if (view !== mine || !name) continue;
    for (const link of mine.body.querySelectorAll(`a.recurring[data-id="${CSS.escape(id)}"]`)) link.textContent = name;
  }
}

function row(mine, run) {
  const tr = h("tr", { "data-run-id": run.run_id });
  mine.rows.set(run.run_id, { run, tr });
  fillRow(tr, run);
  return tr;
}

/** The recurring run's name if known yet, else the start of its id. */
function recurringName(id) {
  const known = recurringNames.get(id);
  return typeof known === "string" && known ? known : shortId(id);
}

/** How long `run` took, or has been going. */
function durationOf(run) {
  const end = run.finished_at ? Date.parse(run.finished_at) : FINAL_STATES.has(run.state) ? NaN : Date.now();
  return formatDuration(end - Date.parse(run.created_at));
}

function fillRow(tr, run) {
  const recurring = run.recurring_run_id
    ? h("a", { class: "recurring", "data-id": run.recurring_run_id, href: `#/recurringruns/${encodeURIComponent(run.recurring_run_id)}`,
      title: run.recurring_run_id }, recurringName(run.recurring_run_id))
    : "";
  tr.replaceChildren(
    h("td", {},
      h("a", { class: "run-name", href: `#/runs/${encodeURIComponent(run.run_id)}`, title: run.display_name || run.run_id }, run.display_name || run.run_id),
      run.storage_state === "ARCHIVED" ? h("span", { class: "badge archived", "data-testid": "archived" }, "archived") : null),
    h("td", {}, stateBadge(run.state)),
    h("td", { class: "time", title: run.created_at || "" }, formatTime(run.created_at)),
    h("td", { class: "duration" }, durationOf(run)),
    h("td", {}, recurring),
  );
}

async function loadExperiments(mine, select) {
  const found = [];
  let token = "";
  try {
    for (let i = 0; i < MAX_EXPERIMENT_PAGES; i++) {
      const answer = await get("experiments", { page_size: 200, page_token: token, sort_by: "display_name" });
      found.push(...(answer.experiments || []));
      token = answer.next_page_token;
      if (!token) break;
    }
  } catch (error) {
    if (view === mine) showError(error);
    return;
  }
  if (view !== mine) return;
  for (const experiment of found) {
    select.append(h("option", { value: experiment.experiment_id, selected: experiment.experiment_id === mine.experiment },
      experiment.display_name));
  }
  if (mine.experiment && !found.some((e) => e.experiment_id === mine.experiment)) {
    // Past the selector's cap, or gone (a link to a deleted experiment): asked for by id.
    try {
      const experiment = await get(`experiments/${encodeURIComponent(mine.experiment)}`);
      if (view === mine) select.append(h("option", { value: mine.experiment, selected: true }, experiment.display_name));
    } catch (error) {
      if (view === mine) showError(error);
    }
  }
}

/** The events stream of run changes (all experiments: one stream whatever is chosen, so a
 * change of experiment needs no new stream), applied to the shown rows. It starts at the newest
 * stored event (watchNewest), not the retained log. An event the list read already reflects
 * may be applied again, but so is every event after it, in order: a row ends in its latest
 * state. */
function openStream(mine) {
  return watchNewest("events:watch", {
    query: { types: LIVE_TYPES },
    on: {
      message: (event) => {
        if (view === mine) apply(mine, event);
      },
    },
    onOpen: () => view === mine && setLive(mine, ""),
    onError: (error) => view === mine && setLive(mine, error.message),
    onRestart: () => view === mine && load(mine),
  });
}

/** Shows whether the list is live: `problem` is "" when the stream is open. A list that is not
 * live still works; it shows what was read and says so, rather than as an error. */
function setLive(mine, problem) {
  mine.live.dataset.live = problem ? "no" : "yes";
  mine.live.textContent = problem ? "not live" : "● live";
  mine.live.title = problem || "state changes and new runs appear as they happen";
}

/** One Event (kfpgrpc.v1.Event JSON) applied to the list. */
function apply(mine, event) {
  if (mine.reading) {
    // The list is being read: what it will show may predate this event.
    mine.pending.push(event);
    if (mine.pending.length > MAX_PENDING) mine.pending.shift();
    return;
  }
  if (mine.experiment && event.experiment_id !== mine.experiment) return;
  const shown = mine.rows.get(event.run_id);
  if (event.type === "RUN_DELETED") {
    if (shown) {
      shown.tr.remove();
      mine.rows.delete(event.run_id);
    }
    return;
  }
  const changed = event.run_state_changed;
  if (shown) {
    const run = shown.run;
    if (changed) {
      run.state = changed.state;
      if (FINAL_STATES.has(run.state) && !run.finished_at) run.finished_at = event.time;
    }
    const completed = event.run_completed;
    if (completed) {
      run.state = completed.state;
      run.finished_at = completed.end_time || event.time;
    }
    fillRow(shown.tr, run);
  } else if (changed && !changed.previous_state && mine.pager.first) {
    // A new run (its first state has no previous one): the first page shows it. Reloading lets
    // the server apply the filters; several creations at once reload once.
    clearTimeout(mine.reloading);
    mine.reloading = setTimeout(() => view === mine && load(mine), 200);
  }
}
