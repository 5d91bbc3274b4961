// The events page, #/events?types=A,B&run=&recurring=&experiment= (docs/ui.md "Events"): a
// live tail of events:watch starting with the newest KEEP stored events (`newest`), filtered by
// the server, newest on top, the last KEEP shown. Pause closes the stream; resume (and any reconnect) goes on after
// the last sequence received, so nothing is shown twice or missed.

import { watch } from "../api.js";
import { setQuery } from "../app.js";
import { formatTime, h, shortId, stateBadge } from "../util.js";

/** The EventType names (protos/kfpgrpc/v1/event.proto), in their enum order. */
export const EVENT_TYPES = ["RUN_STATE_CHANGED", "RUN_COMPLETED", "RECURRING_RUN_CHANGED", "TICK_SKIPPED", "RUN_DELETED", "PIPELINE_VERSION_CREATED"];
const KEEP = 500; // rows kept in the page: older ones are dropped
const FLUSH_MS = 100; // events arriving together (a replay) are drawn together

let view = null;

export function render(container, params) {
  view = {
    container,
    types: (params.types || "").split(",").filter((t) => EVENT_TYPES.includes(t)),
    run: params.run || "",
    recurring: params.recurring || "",
    experiment: params.experiment || "",
    last: 0, // the last sequence received
    pending: [], // received, not drawn yet (at most KEEP)
    flushing: null,
    paused: false,
    stream: null,
  };
  const mine = view;

  const types = h("select", { name: "types", multiple: true, size: EVENT_TYPES.length, "aria-label": "Types" },
    EVENT_TYPES.map((t) => h("option", { value: t, selected: mine.types.includes(t) }, t)));
  types.addEventListener("change", () => change({ types: [...types.selectedOptions].map((o) => o.value) }));
  const idInput = (key, label) => {
    const input = h("input", { type: "search", name: key, value: mine[key], placeholder: label, "aria-label": label, spellcheck: "false" });
    input.addEventListener("change", () => change({ [key]: input.value.trim() }));
    return input;
  };
  mine.pause = h("button", { type: "button", class: "pause", onclick: () => togglePause(mine) }, "Pause");
  mine.status = h("span", { class: "live", "data-live": "no" }, "connecting…");
  mine.count = h("span", { class: "info" });
  mine.body = h("tbody");
  container.append(
    h("h1", {}, "Events"),
    h("div", { class: "toolbar" },
      h("label", { title: "Ctrl-click (⌘-click on a Mac) to choose several types" }, "Types (none = all; Ctrl/⌘-click for several)", types),
      h("div", { class: "id-filters" },
        h("label", {}, "Run id", idInput("run", "Run id")),
        h("label", {}, "Recurring run id", idInput("recurring", "Recurring run id")),
        h("label", {}, "Experiment id", idInput("experiment", "Experiment id"))),
      h("div", { class: "pager" }, mine.pause, mine.count, mine.status)),
    h("table", { class: "list events" },
      h("thead", {}, h("tr", {}, ["Sequence", "Time", "Type", "Run", "Recurring run", "Experiment", "Details"].map((t) => h("th", {}, t)))),
      mine.body),
  );
  open(mine);
}

export function dispose() {
  if (!view) return;
  view.stream?.close();
  clearTimeout(view.flushing);
  view = null;
}

/** A filter change: the shown events go, the stream starts again with the newest KEEP. */
function change(update) {
  const mine = view;
  Object.assign(mine, update, { last: 0, pending: [] });
  setQuery({ types: mine.types.join(","), run: mine.run, recurring: mine.recurring, experiment: mine.experiment });
  mine.body.replaceChildren();
  mine.stream?.close();
  mine.stream = null;
  if (!mine.paused) open(mine);
  showCount(mine);
}

function open(mine) {
  setStatus(mine, "connecting…", "no");
  mine.stream = watch("events:watch", {
    // After the last one received (a resume), or else the newest KEEP: never the whole log.
    query: { after_sequence: mine.last || "", newest: mine.last ? "" : KEEP, types: mine.types, run_id: mine.run,
      recurring_run_id: mine.recurring, experiment_id: mine.experiment },
    resume: "after_sequence",
    start: "newest",
    on: { message: (event, frame) => view === mine && receive(mine, event, frame) },
    onOpen: () => view === mine && setStatus(mine, "● live", "yes"),
    onError: (error) => view === mine && setStatus(mine, `not live: ${error.message}`, "no"),
  });
}

function togglePause(mine) {
  mine.paused = !mine.paused;
  mine.pause.textContent = mine.paused ? "Resume" : "Pause";
  if (mine.paused) {
    mine.stream?.close();
    mine.stream = null;
    setStatus(mine, `paused after sequence ${mine.last}`, "paused");
  } else {
    open(mine);
  }
}

function receive(mine, event, frame) {
  const sequence = Number(frame.lastEventId || event.sequence);
  if (sequence <= mine.last) return; // already shown (a replay overlapping a reconnect)
  mine.last = sequence;
  mine.pending.push(event);
  if (mine.pending.length > KEEP) mine.pending.splice(0, mine.pending.length - KEEP);
  if (mine.flushing === null) mine.flushing = setTimeout(() => flush(mine), FLUSH_MS);
}

/** Draws the pending events on top, newest first, and drops the rows past KEEP. */
function flush(mine) {
  mine.flushing = null;
  if (view !== mine) return;
  const rows = mine.pending.reverse().map(row);
  mine.pending = [];
  mine.body.prepend(...rows);
  while (mine.body.childElementCount > KEEP) mine.body.lastElementChild.remove();
  showCount(mine);
}

function showCount(mine) {
  const n = mine.body.childElementCount;
  mine.count.textContent = `${n} event${n === 1 ? "" : "s"}${n >= KEEP ? ` (the last ${KEEP})` : ""}`;
}

function setStatus(mine, text, live) {
  mine.status.textContent = text;
  mine.status.dataset.live = live;
}

const link = (section, id) => (id ? h("a", { href: `#/${section}/${encodeURIComponent(id)}`, title: id }, shortId(id)) : "");

function row(event) {
  return h("tr", { "data-sequence": event.sequence, "data-type": event.type, "data-run-id": event.run_id || null },
    h("td", { class: "sequence mono" }, event.sequence),
    h("td", { class: "time", title: event.time || "" }, formatTime(event.time)),
    h("td", { class: "type" }, event.type),
    h("td", {}, link("runs", event.run_id)),
    h("td", {}, link("recurringruns", event.recurring_run_id)),
    h("td", { title: event.experiment_id || "" }, event.experiment_id ? h("a", { href: `#/runs?experiment=${encodeURIComponent(event.experiment_id)}` }, shortId(event.experiment_id)) : ""),
    h("td", { class: "details" }, details(event)));
}

/** What happened, in a few words, from the event's payload: the cell's children. */
function details(event) {
  return [describeEvent(event)].flat(2);
}

function describeEvent(event) {
  const changed = event.run_state_changed;
  if (changed) {
    return [changed.run_name || "", " ", changed.previous_state ? [stateBadge(changed.previous_state), " → "] : "", stateBadge(changed.state),
      changed.error?.message ? h("span", { class: "error-text" }, ` ${changed.error.message}`) : ""];
  }
  const completed = event.run_completed;
  if (completed) {
    const artifacts = completed.artifacts?.length ? ` · ${completed.artifacts.length} exposed artifact${completed.artifacts.length === 1 ? "" : "s"}` : "";
    return [stateBadge(completed.state), ` ${completed.run_name || ""}`, completed.pipeline_name ? ` (${completed.pipeline_name})` : "", artifacts,
      completed.error?.message ? h("span", { class: "error-text" }, ` ${completed.error.message}`) : ""];
  }
  const recurring = event.recurring_run_changed;
  if (recurring) return `${recurring.change || ""} ${recurring.display_name || ""}${recurring.status ? ` · ${recurring.status}` : ""}`;
  const skipped = event.tick_skipped;
  if (skipped) return `tick of ${formatTime(skipped.scheduled_time)} skipped: ${skipped.reason || ""}${skipped.detail ? ` (${skipped.detail})` : ""}`;
  if (event.run_deleted) return `deleted (${event.run_deleted.reason || ""})`;
  const version = event.pipeline_version_created;
  if (version) {
    return h("a", { href: `#/pipelines/${encodeURIComponent(version.pipeline_id)}?version=${encodeURIComponent(version.pipeline_version_id)}` }, "new pipeline version");
  }
  return "";
}
