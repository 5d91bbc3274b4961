// #/recurringruns/<id>: one recurring run: details, counters, next fire times, skipped ticks
// and why (TICK_SKIPPED events), its runs, enable/disable, trigger now, backfill a range with a
// preview (validate_only) before queuing, and edit (PATCH) with the schedule form. Live by the
// recurring run's watch stream (docs/ui.md "Recurring runs").

import { call, get, post, showError, watch } from "../api.js";
import { formatTime, h, stateBadge } from "../util.js";
import {
  describeTrigger, formatInZone, scheduleForm, showViolations, triggerZone, zonedToRfc3339,
} from "./recurring_run_form.js";

const RUNS_PAGE = 20;
const SKIPPED_SHOWN = 100; // the newest skipped ticks listed
const RUNS_REFRESH_MS = 500; // a burst of snapshots reads the runs once

let view = null;

export async function render(container, params) {
  const id = params.id;
  const mine = { id, container, streams: [], timer: null, form: null, recurringRun: null, lastSkipped: 0 };
  view = mine;
  const recurringRun = await get(`recurringruns/${encodeURIComponent(id)}`);
  if (view !== mine) return;
  mine.recurringRun = recurringRun;

  mine.title = h("h1", {});
  mine.actions = h("div", { class: "actions" });
  mine.details = h("dl", { class: "details" });
  mine.counters = h("dl", { class: "details counters" });
  mine.next = h("div", { class: "next-times" });
  mine.skippedList = h("tbody", {}, h("tr", { class: "none" }, h("td", { class: "empty", colspan: 3 }, "No skipped ticks.")));
  mine.runsBody = h("tbody");
  mine.editBox = h("div", { class: "edit-box", hidden: true });
  mine.main = h("div", { class: "recurring-main" },
    h("section", { class: "panel" }, h("h2", {}, "Details"), mine.details),
    h("section", { class: "panel" }, h("h2", {}, "Counters"), mine.counters),
    h("section", { class: "panel" }, h("h2", {}, "Next fire times"), mine.next),
    backfillPanel(mine),
    h("section", { class: "panel" }, h("h2", {}, "Skipped ticks"),
      h("table", { class: "list skipped" }, h("thead", {}, h("tr", {}, h("th", {}, "Tick"), h("th", {}, "Reason"), h("th", {}, "Detail"))), mine.skippedList)),
    h("section", { class: "panel wide" }, h("h2", {}, "Runs"),
      h("table", { class: "list runs" }, h("thead", {}, h("tr", {}, ["Run", "State", "Scheduled at", "Created", "Finished"].map((t) => h("th", {}, t)))), mine.runsBody)));
  container.append(h("p", {}, h("a", { href: "#/recurringruns" }, "← Recurring runs")),
    h("div", { class: "title-row" }, mine.title, mine.actions), mine.editBox, mine.main);
  show(mine);
  await loadRuns(mine);
  if (view !== mine) return;
  mine.streams.push(watch(`recurringruns/${encodeURIComponent(id)}:watch`, {
    on: {
      recurring_run: (snapshot) => {
        if (view !== mine) return;
        const runsChanged = JSON.stringify(snapshot.counters || {}) !== JSON.stringify(mine.recurringRun.counters || {});
        mine.recurringRun = snapshot;
        show(mine);
        if (runsChanged) later(mine, () => loadRuns(mine));
      },
    },
    onEnd: () => view === mine && (mine.title.textContent += " (deleted)"),
    onError: (error) => view === mine && showError(error),
  }));
  // The newest SKIPPED_SHOWN skipped ticks, then new ones: not the whole retained log.
  mine.streams.push(watch("events:watch", {
    query: { recurring_run_id: id, types: ["TICK_SKIPPED"], newest: SKIPPED_SHOWN },
    resume: "after_sequence",
    start: "newest",
    on: { message: (event) => view === mine && addSkipped(mine, event) },
    onError: (error) => view === mine && showError(error),
  }));
}

export function dispose() {
  if (!view) return;
  for (const stream of view.streams) stream.close();
  clearTimeout(view.timer);
  view.form?.dispose();
  view = null;
}

/** Runs `work` once after a short pause, however often it is asked for meanwhile. */
function later(mine, work) {
  if (mine.timer) return;
  mine.timer = setTimeout(() => {
    mine.timer = null;
    if (view === mine) work().catch(showError);
  }, RUNS_REFRESH_MS);
}

function term(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

/** Shows mine.recurringRun: title, actions, details, counters, next fire times. */
function show(mine) {
  const r = mine.recurringRun;
  const zone = triggerZone(r.trigger);
  const enabled = r.status === "ENABLED";
  const counters = r.counters || {};
  const schedule = r.trigger?.cron_schedule || r.trigger?.periodic_schedule || {};
  mine.title.replaceChildren(r.display_name, " ", h("span", { class: `status status-${r.status}`, "data-status": r.status }, enabled ? "enabled" : "disabled"));
  mine.actions.replaceChildren(
    action(mine, enabled ? "Disable" : "Enable", enabled ? "disable" : "enable", () => post(`recurringruns/${encodeURIComponent(mine.id)}:${enabled ? "disable" : "enable"}`)),
    action(mine, "Trigger now", "trigger", async () => {
      const run = await post(`recurringruns/${encodeURIComponent(mine.id)}:trigger`);
      await loadRuns(mine);
      return run;
    }),
    h("button", { type: "button", "data-action": "edit", onclick: () => openEdit(mine) }, "Edit"));
  const reference = r.pipeline_version_reference;
  // Links to the pipeline's page (the version's, when one is named) and to the experiment's runs.
  const pipelineHref = reference && `#/pipelines/${encodeURIComponent(reference.pipeline_id)}${reference.pipeline_version_id ? `?version=${encodeURIComponent(reference.pipeline_version_id)}` : ""}`;
  const source = reference
    ? h("a", { href: pipelineHref, "data-testid": "pipeline-link" }, h("span", { class: "mono" }, reference.pipeline_id), reference.pipeline_version_id
      ? h("span", { class: "muted" }, ` version ${reference.pipeline_version_id}`) : h("span", { class: "muted" }, " (latest version)"))
    : h("span", { class: "muted" }, "inline pipeline spec");
  const parameters = Object.entries(r.runtime_config?.parameters || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  mine.details.replaceChildren(
    ...term("Id", h("span", { class: "mono" }, r.recurring_run_id)),
    ...term("Pipeline", source),
    ...term("Parameters", h("span", { class: "mono" }, parameters || "—")),
    ...term("Schedule", h("span", { class: "mono schedule" }, describeTrigger(r.trigger))),
    ...term("Start / end", `${formatInZone(schedule.start_time, zone) || "—"} / ${formatInZone(schedule.end_time, zone) || "—"}`),
    ...term("Max concurrency", String(r.max_concurrency || 1)),
    ...term("When all slots are busy", r.overlap_policy || "BUFFER_ALL"),
    ...term("Missed ticks", r.no_catchup ? "only the latest runs (no catch-up)" : "all run (catch-up)"),
    ...term("Experiment", r.experiment_id
      ? h("a", { class: "mono", href: `#/runs?experiment=${encodeURIComponent(r.experiment_id)}`, "data-testid": "experiment-link" }, r.experiment_id)
      : ""),
    ...term("Created / updated", `${formatTime(r.created_at)} / ${formatTime(r.updated_at)}`),
    ...(r.error?.message ? term("Error", h("span", { class: "error-text" }, r.error.message)) : []));
  const reasons = Object.entries(counters.ticks_skipped_by_reason || {});
  mine.counters.replaceChildren(
    ...term("Runs created", h("span", { "data-counter": "runs_created" }, counters.runs_created || "0")),
    ...term("Runs active", h("span", { "data-counter": "runs_active" }, counters.runs_active || "0")),
    ...term("Ticks queued", h("span", { "data-counter": "ticks_queued" }, counters.ticks_queued || "0")),
    ...term("Ticks skipped", h("span", { "data-counter": "ticks_skipped" }, counters.ticks_skipped || "0"),
      reasons.length ? h("ul", { class: "compact" }, reasons.map(([reason, n]) => h("li", {}, `${reason}: ${n}`))) : null),
    ...term("Last tick", h("span", { class: "mono" }, formatInZone(r.last_scheduled_time, zone) || "—")));
  const next = r.next_scheduled_times || [];
  mine.next.replaceChildren(next.length
    ? h("ol", { class: "fire-times" }, next.map((t) => h("li", { "data-time": t, class: "mono" }, formatInZone(t, zone), h("span", { class: "muted" }, ` ${zone}`))))
    : h("p", { class: "muted" }, enabled ? "No fire time left." : "Disabled: no fire times."));
}

/** A button that runs `work`, then reads the recurring run again; its errors go to the banner. */
function action(mine, label, name, work) {
  const button = h("button", { type: "button", "data-action": name }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await work();
      const fresh = await get(`recurringruns/${encodeURIComponent(mine.id)}`);
      if (view === mine) {
        mine.recurringRun = fresh;
        show(mine);
      }
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

async function loadRuns(mine) {
  const filter = JSON.stringify({ predicates: [{ key: "recurring_run_id", operation: "EQUALS", string_value: mine.id }] });
  const listed = await get("runs", { filter, sort_by: "created_at desc", page_size: RUNS_PAGE });
  if (view !== mine) return;
  const runs = listed.runs || [];
  mine.runsBody.replaceChildren(...(runs.length
    ? runs.map((run) => h("tr", { "data-run-id": run.run_id },
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.display_name)),
      h("td", {}, stateBadge(run.state)),
      h("td", { class: "mono" }, run.scheduled_at || ""),
      h("td", {}, formatTime(run.created_at)),
      h("td", {}, formatTime(run.finished_at))))
    : [h("tr", {}, h("td", { class: "empty", colspan: 5 }, "No runs yet."))]));
}

function addSkipped(mine, event) {
  const skipped = event.tick_skipped;
  // A reopen before any event came starts at the newest again: what is shown is not repeated.
  if (!skipped || Number(event.sequence) <= mine.lastSkipped) return;
  mine.lastSkipped = Number(event.sequence);
  const zone = triggerZone(mine.recurringRun.trigger);
  mine.skippedList.querySelector("tr.none")?.remove();
  mine.skippedList.prepend(h("tr", { "data-time": skipped.scheduled_time },
    h("td", { class: "mono" }, formatInZone(skipped.scheduled_time, zone)),
    h("td", {}, skipped.reason), h("td", {}, skipped.detail || "")));
  while (mine.skippedList.children.length > SKIPPED_SHOWN) mine.skippedList.lastChild.remove();
}

/** Backfill: a range on the schedule's wall clock, previewed (validate_only) before queuing. */
function backfillPanel(mine) {
  const zone = () => triggerZone(mine.recurringRun.trigger);
  const start = h("input", { type: "datetime-local", step: 1, name: "backfill_start", "data-field": "start_time" });
  const end = h("input", { type: "datetime-local", step: 1, name: "backfill_end", "data-field": "end_time" });
  const result = h("div", { class: "backfill-result", "aria-live": "polite" });
  const general = h("p", { class: "form-error", role: "alert" });
  const confirm = h("button", { type: "button", class: "primary", "data-action": "backfill-confirm", hidden: true });
  const form = h("form", { class: "backfill" },
    h("div", { class: "form-grid" }, h("label", {}, "From", start), h("label", {}, "To", end)),
    h("p", { class: "muted zone-note" }),
    general,
    h("div", { class: "actions" }, h("button", { type: "submit", "data-action": "backfill-preview" }, "Preview"), confirm),
    result);
  const request = (validateOnly) => post(`recurringruns/${encodeURIComponent(mine.id)}:backfill`, {
    start_time: zonedToRfc3339(start.value, zone()), end_time: zonedToRfc3339(end.value, zone()), validate_only: validateOnly,
  });
  form.addEventListener("input", () => {
    confirm.hidden = true;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    confirm.hidden = true;
    form.querySelector(".zone-note").textContent = `Times in ${zone()}.`;
    try {
      const answer = await request(true);
      showViolations(form, general, null);
      const queued = Number(answer.ticks_queued || 0);
      const times = answer.queued_times || [];
      result.replaceChildren(h("div", {},
        h("p", { class: "backfill-summary" }, `${queued} tick${queued === 1 ? "" : "s"} would be queued; ${answer.ticks_already_present || 0} already have a run or are queued.`),
        h("ol", { class: "fire-times backfill-ticks" }, times.map((t) => h("li", { "data-time": t, class: "mono" }, formatInZone(t, zone())))),
        times.length < queued ? h("p", { class: "muted" }, `… and ${queued - times.length} more.`) : null));
      confirm.textContent = `Queue ${queued} tick${queued === 1 ? "" : "s"}`;
      confirm.hidden = queued === 0;
    } catch (error) {
      result.replaceChildren();
      showViolations(form, general, error);
    }
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      const answer = await request(false);
      confirm.hidden = true;
      result.replaceChildren(h("p", { class: "backfill-done" }, `Queued ${answer.ticks_queued || 0} ticks; ${answer.ticks_already_present || 0} were already present.`));
    } catch (error) {
      showViolations(form, general, error);
    } finally {
      confirm.disabled = false;
    }
  });
  return h("section", { class: "panel" }, h("h2", {}, "Backfill"), form);
}

/** Edit: the schedule form, prefilled; saving sends PATCH with the fields it sets. */
function openEdit(mine) {
  if (mine.form) return;
  mine.editBox.hidden = false;
  mine.main.hidden = true;
  const close = () => {
    mine.form?.dispose();
    mine.form = null;
    mine.editBox.replaceChildren();
    mine.editBox.hidden = true;
    mine.main.hidden = false;
  };
  mine.editBox.append(h("h2", {}, "Edit"));
  mine.form = scheduleForm(mine.editBox, {
    initial: mine.recurringRun,
    submitLabel: "Save",
    onSubmit: async (recurringRun, mask) => {
      const updated = await call(`recurringruns/${encodeURIComponent(mine.id)}`, {
        method: "PATCH", query: { update_mask: mask.join(",") }, body: recurringRun,
      });
      if (view !== mine) return;
      mine.recurringRun = updated;
      close();
      show(mine);
    },
    onCancel: close,
  });
}
