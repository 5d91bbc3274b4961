// #/recurringruns: the recurring runs with their status, next fire times, last tick and
// counters, an enable/disable toggle on each, kept live by the events stream
// (docs/ui.md "Recurring runs").

import { get, post, showError, watchNewest } from "../api.js";
import { h } from "../util.js";
import { describeTrigger, formatInZone, triggerZone } from "./recurring_run_form.js";

const PAGE_SIZE = 50;
// What changes a shown row: the recurring run itself, its ticks, and its runs (counters).
const LIVE_TYPES = ["RECURRING_RUN_CHANGED", "TICK_SKIPPED", "RUN_STATE_CHANGED", "RUN_COMPLETED"];
const REFRESH_MS = 250; // a burst of events about one recurring run reads it once

let view = null; // this render's state; null once disposed

export async function render(container, params) {
  const mine = { container, rows: new Map(), stream: null, pending: new Map(), reading: false, queued: new Map(), pageToken: params.page || "" };
  view = mine;
  const body = h("tbody");
  mine.body = body;
  mine.live = h("span", { class: "live muted" });
  container.append(
    h("div", { class: "title-row" }, h("h1", {}, "Recurring runs"), mine.live,
      h("a", { class: "button primary", href: "#/recurringruns/new" }, "New recurring run")),
    h("table", { class: "list recurring-runs" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Schedule", "Next fire times", "Last tick", "Runs created", "Active", "Queued", "Skipped"]
        .map((title) => h("th", {}, title)))),
      body),
    (mine.pager = h("div", { class: "pager" })));
  // The stream first, the list once it is open (watchNewest): no change falls between them.
  mine.stream = watchNewest("events:watch", {
    query: { types: LIVE_TYPES },
    on: { message: (event) => view === mine && apply(mine, event) },
    onOpen: () => view === mine && setLive(mine, ""),
    onError: (error) => view === mine && setLive(mine, error.message),
    onRestart: () => view === mine && load(mine).catch(showError),
  });
  await mine.stream.ready;
  if (view === mine) await load(mine);
}

export function dispose() {
  if (!view) return;
  view.stream?.close();
  for (const timer of view.pending.values()) clearTimeout(timer);
  view = null;
}

/** Reads the page of recurring runs; events that come meanwhile are applied once it is shown. */
async function load(mine) {
  mine.reading = true;
  let listed;
  try {
    listed = await get("recurringruns", { page_size: PAGE_SIZE, sort_by: "created_at desc", page_token: mine.pageToken });
  } finally {
    mine.reading = false;
  }
  if (view !== mine) return;
  const items = listed.recurringRuns || listed.recurring_runs || [];
  mine.rows.clear();
  mine.body.replaceChildren(...(items.length ? items.map((r) => row(mine, r)) : [h("tr", {}, h("td", { class: "empty", colspan: 9 }, "No recurring runs yet."))]));
  mine.pager.replaceChildren(h("span", {},
    h("span", { class: "info" }, `${listed.total_size || 0} in all`),
    mine.pageToken ? h("a", { href: "#/recurringruns" }, " First page") : null,
    listed.next_page_token ? h("a", { href: `#/recurringruns?page=${encodeURIComponent(listed.next_page_token)}` }, " Next page") : null));
  const queued = [...mine.queued.values()];
  mine.queued.clear();
  for (const event of queued) apply(mine, event);
}

function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status === "ENABLED" ? "enabled" : "disabled");
}

/** A table row for a RecurringRun JSON; remembered in mine.rows to be replaced in place. */
function row(mine, recurringRun) {
  const id = recurringRun.recurring_run_id;
  const zone = triggerZone(recurringRun.trigger);
  const counters = recurringRun.counters || {};
  const enabled = recurringRun.status === "ENABLED";
  const toggle = h("button", { type: "button", class: "toggle", "data-action": enabled ? "disable" : "enable" }, enabled ? "Disable" : "Enable");
  toggle.addEventListener("click", async () => {
    toggle.disabled = true;
    try {
      await post(`recurringruns/${encodeURIComponent(id)}:${enabled ? "disable" : "enable"}`);
      await refresh(mine, id);
    } catch (error) {
      showError(error);
      toggle.disabled = false;
    }
  });
  const reasons = Object.entries(counters.ticks_skipped_by_reason || {}).map(([reason, n]) => `${reason}: ${n}`).join(", ");
  const next = recurringRun.next_scheduled_times || [];
  const tr = h("tr", { "data-id": id },
    h("td", {}, h("a", { href: `#/recurringruns/${encodeURIComponent(id)}`, title: recurringRun.display_name }, recurringRun.display_name),
      recurringRun.error?.message ? h("div", { class: "error-text" }, recurringRun.error.message) : null),
    h("td", {}, statusBadge(recurringRun.status), " ", toggle),
    h("td", { class: "mono" }, describeTrigger(recurringRun.trigger)),
    h("td", { class: "next" }, next.length
      ? h("ul", { class: "compact" }, next.slice(0, 3).map((t) => h("li", { "data-time": t, class: "mono" }, formatInZone(t, zone))))
      : h("span", { class: "muted" }, enabled ? "none" : "—")),
    h("td", { class: "mono" }, formatInZone(recurringRun.last_scheduled_time, zone)),
    h("td", { class: "runs-created" }, counters.runs_created || "0"),
    h("td", {}, counters.runs_active || "0"),
    h("td", {}, counters.ticks_queued || "0"),
    h("td", { title: reasons }, counters.ticks_skipped || "0", reasons ? h("div", { class: "muted small" }, reasons) : null));
  mine.rows.set(id, tr);
  return tr;
}

/** Reads one recurring run again and replaces its row (a deleted one leaves). */
async function refresh(mine, id) {
  try {
    const recurringRun = await get(`recurringruns/${encodeURIComponent(id)}`);
    const shown = mine.rows.get(id);
    if (view === mine && shown) shown.replaceWith(row(mine, recurringRun));
  } catch (error) {
    if (view !== mine) return;
    if (error.status === 404) {
      mine.rows.get(id)?.remove();
      mine.rows.delete(id);
    } else setLive(mine, error.message);
  }
}

/** One Event (kfpgrpc.v1.Event JSON): a shown recurring run is read again (once per burst); a
 * new one reloads the first page. Events that come while the list is read wait for it. */
function apply(mine, event) {
  if (!event.recurring_run_id) return;
  if (mine.reading) {
    // One per recurring run is enough (it is read again), a creation kept over later changes.
    if (mine.queued.get(event.recurring_run_id)?.recurring_run_changed?.change !== "CREATED") mine.queued.set(event.recurring_run_id, event);
    return;
  }
  const id = event.recurring_run_id;
  if (!mine.rows.has(id)) {
    if (event.recurring_run_changed?.change === "CREATED" && !mine.pageToken) load(mine).catch(showError);
    return;
  }
  if (mine.pending.has(id)) return;
  mine.pending.set(id, setTimeout(() => {
    mine.pending.delete(id);
    refresh(mine, id);
  }, REFRESH_MS));
}

function setLive(mine, problem) {
  mine.live.dataset.live = problem ? "no" : "yes";
  mine.live.textContent = problem ? "not live" : "● live";
  mine.live.title = problem || "changes appear as they happen";
}
