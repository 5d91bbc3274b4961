// The create/update form of a recurring run (#/recurringruns/new, and "Edit" on a recurring
// run's page): pipeline version, parameters, cron or periodic schedule, time zone, start/end,
// max concurrency, overlap policy, catch-up; with a live preview of the next fire times from
// recurringruns:previewSchedule, the code the server fires by (docs/ui.md "Recurring runs").

import { ApiError, call, get, post, showError } from "../api.js";
import { h } from "../util.js";
import { ParameterFields, placeViolations, rootInputs, specOf } from "./parameters.js";

const PREVIEW_DELAY_MS = 300; // debounce: one preview per pause in typing
const OVERLAP_POLICIES = ["BUFFER_ALL", "BUFFER_ONE", "SKIP", "REPLACE"];

/** The IANA zones the browser knows, UTC first (Chromium's list leaves it out). */
export function timeZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return ["UTC", ...zones.filter((zone) => zone !== "UTC")];
}

const partFormats = new Map();

/** The wall-clock parts of instant `ms` in `zone`: {year, month, day, hour, minute, second}. */
function wallParts(ms, zone) {
  let format = partFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    partFormats.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return { year: +parts.year, month: +parts.month, day: +parts.day, hour: +parts.hour, minute: +parts.minute, second: +parts.second };
}

/** `zone`'s UTC offset at instant `ms`, in ms. */
function offsetAt(ms, zone) {
  const p = wallParts(ms, zone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

/** An RFC 3339 time as "YYYY-MM-DD HH:MM:SS" on `zone`'s wall clock; "" when absent. */
export function formatInZone(rfc3339, zone) {
  if (!rfc3339) return "";
  const p = wallParts(Date.parse(rfc3339), zone);
  const two = (n) => String(n).padStart(2, "0");
  return `${p.year}-${two(p.month)}-${two(p.day)} ${two(p.hour)}:${two(p.minute)}:${two(p.second)}`;
}

/** A datetime-local value ("2027-03-28T02:30" or with seconds) read on `zone`'s wall clock,
 * as an RFC 3339 UTC time; "" for "". A wall time that does not exist (a DST gap) is read with
 * the offset before the gap. */
export function zonedToRfc3339(local, zone) {
  if (!local) return "";
  const [date, time = "00:00"] = local.split("T");
  const [year, month, day] = date.split("-").map(Number);
  const [hour, minute, second = 0] = time.split(":").map(Number);
  const wall = Date.UTC(year, month - 1, day, hour, minute, second);
  let instant = wall - offsetAt(wall, zone);
  instant = wall - offsetAt(instant, zone);
  return new Date(instant).toISOString().replace(".000Z", "Z");
}

/** An RFC 3339 time as a datetime-local value on `zone`'s wall clock; "" when absent. */
export function rfc3339ToZoned(rfc3339, zone) {
  return rfc3339 ? formatInZone(rfc3339, zone).replace(" ", "T") : "";
}

/** How a trigger reads: "cron 0 30 2 * * * (Europe/Berlin)", "every 3600 s". */
export function describeTrigger(trigger = {}) {
  const parts = [];
  if (trigger.cron_schedule) parts.push(`cron ${trigger.cron_schedule.cron} (${trigger.cron_schedule.time_zone || "UTC"})`);
  if (trigger.periodic_schedule) parts.push(`every ${trigger.periodic_schedule.interval_second} s`);
  if (trigger.upstream_recurring_run_ids?.length) parts.push(`after ${trigger.upstream_recurring_run_ids.join(", ")}`);
  if (trigger.on_new_pipeline_version) parts.push("on a new pipeline version");
  return parts.join("; ") || "no schedule";
}

/** The zone a trigger's times are read in: the cron's, else UTC. */
export function triggerZone(trigger = {}) {
  return trigger.cron_schedule?.time_zone || "UTC";
}

/** A fire-time list: each item has data-time (UTC, as the API writes it) and, on a day with a
 * DST change, class "dst" and a marker. `fires` are PreviewSchedule's FireTime JSON. */
export function fireTimeList(fires, zone) {
  return h("ol", { class: "fire-times" }, fires.map((fire) => h("li", {
    class: fire.dst_transition_day ? "dst" : null, "data-time": fire.time,
    title: `${fire.time} UTC`,
  },
  h("span", { class: "mono" }, formatInZone(fire.time, zone)),
  h("span", { class: "muted" }, ` UTC${offsetText(fire.utc_offset_seconds || 0)}`),
  fire.dst_transition_day ? h("span", { class: "dst-mark", title: "the clocks change on this day" }, "DST change") : null)));
}

function offsetText(seconds) {
  const sign = seconds < 0 ? "−" : "+";
  const abs = Math.abs(seconds);
  return `${sign}${String(Math.floor(abs / 3600)).padStart(2, "0")}:${String(Math.floor(abs / 60) % 60).padStart(2, "0")}`;
}

/** Shows `error`'s field violations next to their inputs in `form` (placeViolations, with
 * "recurring_run." dropped: create's names and preview's agree then) and the rest in `general`;
 * null clears them. */
export function showViolations(form, general, error) {
  const unplaced = placeViolations(form, error || new Map(), "recurring_run.");
  if (error && !(error instanceof ApiError && error.violations.length)) unplaced.push(error.message || String(error));
  general.textContent = unplaced.join("\n");
}

/**
 * Builds the form into `container`. `initial` is a RecurringRun's JSON (editing) or null.
 * `onSubmit(recurringRun, updateMask)` is called with the RecurringRun JSON the form makes
 * (and, editing, the fields to change); an ApiError it throws is shown next to the fields.
 * Returns {dispose()}.
 */
export function scheduleForm(container, { initial = null, submitLabel = "Create", onSubmit, onCancel }) {
  const editing = Boolean(initial);
  const inline = editing && Boolean(initial.pipeline_spec);
  const trigger = initial?.trigger || {};
  const cronInitial = trigger.cron_schedule;
  const periodicInitial = trigger.periodic_schedule;
  const zone0 = cronInitial?.time_zone || "UTC";
  const bounds = cronInitial || periodicInitial || {};
  let disposed = false;
  let timer = null;
  let previewCount = 0; // numbers the previews, so a late answer never replaces a newer one
  let fields = null; // the ParameterFields of the chosen version's spec

  const text = (field, value, extra = {}) => h("input", { type: "text", "data-field": field, value: value ?? "", ...extra });
  const name = text("display_name", initial?.display_name, { name: "display_name", required: true });
  const description = text("description", initial?.description, { name: "description" });
  const pipelineSelect = h("select", { name: "pipeline", "data-field": "pipeline_version_reference" });
  const versionSelect = h("select", { name: "version", "data-field": "pipeline_version_reference.pipeline_version_id" });
  const parameters = h("div", { class: "parameters" });
  const kind = h("select", { name: "kind" },
    h("option", { value: "cron", selected: !periodicInitial }, "cron"),
    h("option", { value: "periodic", selected: Boolean(periodicInitial) }, "periodic"));
  const cron = text("trigger.cron_schedule.cron", cronInitial?.cron ?? "0 0 * * *", { name: "cron", class: "mono" });
  const interval = h("input", {
    type: "number", name: "interval_second", min: 1, "data-field": "trigger.periodic_schedule.interval_second",
    value: periodicInitial?.interval_second ?? 3600,
  });
  const zone = h("select", { name: "time_zone", "data-field": "trigger.cron_schedule.time_zone" },
    timeZones().map((z) => h("option", { value: z, selected: z === zone0 }, z)));
  const start = h("input", { type: "datetime-local", step: 1, name: "start_time", "data-field": "trigger.schedule.start_time" });
  const end = h("input", { type: "datetime-local", step: 1, name: "end_time", "data-field": "trigger.schedule.end_time" });
  start.value = rfc3339ToZoned(bounds.start_time, zone0);
  end.value = rfc3339ToZoned(bounds.end_time, zone0);
  const concurrency = h("input", { type: "number", name: "max_concurrency", min: 1, max: 100, "data-field": "max_concurrency", value: initial?.max_concurrency ?? 1 });
  const overlap = h("select", { name: "overlap_policy", "data-field": "overlap_policy" },
    OVERLAP_POLICIES.map((p) => h("option", { value: p, selected: p === (initial?.overlap_policy || "BUFFER_ALL") }, p)));
  const catchup = h("input", { type: "checkbox", name: "catchup", "data-field": "no_catchup", checked: !initial?.no_catchup });
  const enabled = h("input", { type: "checkbox", name: "enabled", checked: true });
  const preview = h("div", { class: "preview", "aria-live": "polite" });
  const previewNote = h("p", { class: "muted preview-note" });
  const general = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, submitLabel);

  const cronFields = h("div", { class: "field-group cron-fields" }, h("label", {}, "Cron (5 fields, or 6 with seconds first)", cron));
  const periodicFields = h("div", { class: "field-group periodic-fields" }, h("label", {}, "Interval (seconds)", interval));
  const form = h("form", { class: "recurring-form", novalidate: true },
    h("div", { class: "form-grid" },
      h("label", {}, "Name", name),
      h("label", {}, "Description", description),
      inline
        ? h("p", { class: "muted" }, "Pipeline: an inline pipeline spec (kept as it is)")
        : [h("label", {}, "Pipeline", pipelineSelect), h("label", {}, "Version", versionSelect)],
    ),
    h("fieldset", {}, h("legend", {}, "Parameters"), parameters),
    h("fieldset", {}, h("legend", {}, "Schedule"),
      h("div", { class: "form-grid" },
        h("label", {}, "Kind", kind), cronFields, periodicFields,
        h("label", {}, "Time zone", zone),
        h("label", {}, "Start (in the time zone)", start),
        h("label", {}, "End (in the time zone)", end)),
      h("div", { class: "preview-box" }, h("h3", {}, "Next fire times"), previewNote, preview)),
    h("fieldset", {}, h("legend", {}, "Runs"),
      h("div", { class: "form-grid" },
        h("label", {}, "Max concurrency", concurrency),
        h("label", {}, "When all slots are busy", overlap),
        h("label", { class: "check" }, catchup, "Catch up missed ticks"),
        editing ? null : h("label", { class: "check" }, enabled, "Enabled"))),
    general,
    h("div", { class: "actions" }, submit, onCancel ? h("button", { type: "button", onclick: onCancel }, "Cancel") : null));
  container.append(form);

  const isCron = () => kind.value === "cron";

  /** The Trigger JSON the form describes. */
  function triggerOf() {
    const schedule = {};
    const z = zone.value;
    if (start.value) schedule.start_time = zonedToRfc3339(start.value, z);
    if (end.value) schedule.end_time = zonedToRfc3339(end.value, z);
    const made = isCron()
      ? { cron_schedule: { cron: cron.value, time_zone: z, ...schedule } }
      : { periodic_schedule: { interval_second: interval.value === "" ? "0" : String(interval.value), ...schedule } };
    if (trigger.upstream_recurring_run_ids?.length) made.upstream_recurring_run_ids = trigger.upstream_recurring_run_ids;
    if (trigger.on_new_pipeline_version) made.on_new_pipeline_version = true;
    return made;
  }

  function showKind() {
    cronFields.hidden = !isCron();
    periodicFields.hidden = isCron();
    // Start and end belong to whichever schedule is chosen: their errors are named after it.
    const prefix = isCron() ? "trigger.cron_schedule" : "trigger.periodic_schedule";
    start.dataset.field = `${prefix}.start_time`;
    end.dataset.field = `${prefix}.end_time`;
    zone.dataset.field = isCron() ? "trigger.cron_schedule.time_zone" : "time_zone";
  }

  async function refreshPreview() {
    const mine = ++previewCount;
    const request = { trigger: triggerOf(), count: 10 };
    if (!isCron()) request.time_zone = zone.value;
    try {
      const answer = await post("recurringruns:previewSchedule", request);
      if (disposed || mine !== previewCount) return;
      showViolations(form, general, null);
      const fires = answer.fire_times || [];
      previewNote.textContent = fires.length
        ? `In ${answer.time_zone}${!isCron() && !start.value ? "; without a start, a periodic schedule counts from its creation: these are from now" : ""}.`
        : "It has no fire time left.";
      preview.replaceChildren(fireTimeList(fires, answer.time_zone));
      preview.dataset.state = "ok";
    } catch (error) {
      if (disposed || mine !== previewCount) return;
      preview.replaceChildren();
      previewNote.textContent = "No preview: see the errors above.";
      preview.dataset.state = "error";
      showViolations(form, general, error);
    }
  }

  function schedulePreview() {
    clearTimeout(timer);
    preview.dataset.state = "pending";
    timer = setTimeout(refreshPreview, PREVIEW_DELAY_MS);
  }

  async function loadPipelines() {
    const listed = await get("pipelines", { page_size: 200, sort_by: "display_name" });
    const chosen = initial?.pipeline_version_reference?.pipeline_id;
    pipelineSelect.replaceChildren(h("option", { value: "" }, "— choose —"),
      ...(listed.pipelines || []).map((p) => h("option", { value: p.pipeline_id, selected: p.pipeline_id === chosen }, p.display_name)));
    if (chosen) await loadVersions(initial.pipeline_version_reference.pipeline_version_id || "");
  }

  async function loadVersions(chosen = "") {
    const pipelineId = pipelineSelect.value;
    versionSelect.replaceChildren(h("option", { value: "" }, "latest"));
    if (!pipelineId) return showParameters(null);
    const listed = await get(`pipelines/${encodeURIComponent(pipelineId)}/versions`, { page_size: 200, sort_by: "created_at desc" });
    const versions = listed.pipeline_versions || [];
    versionSelect.append(...versions.map((v) => h("option", { value: v.pipeline_version_id, selected: v.pipeline_version_id === chosen }, v.display_name)));
    const version = versions.find((v) => v.pipeline_version_id === (versionSelect.value || versions[0]?.pipeline_version_id));
    showParameters(specOf(version?.pipeline_spec));
  }

  /** Shows the fields of `spec`'s root parameters (pages/parameters.js), filled with the edited
   * recurring run's values; none without a spec. */
  function showParameters(spec) {
    fields = spec ? new ParameterFields(rootInputs(spec), initial?.runtime_config?.parameters) : null;
    parameters.replaceChildren(fields ? fields.element
      : h("p", { class: "muted" }, inline ? "Reading the pipeline's parameters…" : "Choose a pipeline to set its parameters."));
  }

  /** An inline spec's parameters: the spec is read with GET, as a watch stream's snapshot marks
   * an inline spec with an empty one. */
  async function loadInlineSpec() {
    let spec = specOf(initial.pipeline_spec);
    if (!spec?.root) spec = specOf((await get(`recurringruns/${encodeURIComponent(initial.recurring_run_id)}`)).pipeline_spec);
    if (!disposed) showParameters(spec);
  }

  /** The RecurringRun JSON of the form, the fields an update changes, and the parameters'
   * problems found (Map(field -> text), as ParameterFields.values()). */
  function recurringRunOf() {
    const { parameters: values, problems } = fields ? fields.values() : { parameters: {}, problems: new Map() };
    const made = {
      display_name: name.value,
      description: description.value,
      trigger: triggerOf(),
      max_concurrency: concurrency.value === "" ? "0" : String(concurrency.value),
      overlap_policy: overlap.value,
      no_catchup: !catchup.checked,
    };
    const mask = ["display_name", "description", "trigger", "max_concurrency", "overlap_policy", "no_catchup"];
    // An edit saved before the parameters are shown leaves them as they are.
    if (fields || !editing) {
      made.runtime_config = { parameters: values };
      mask.push("runtime_config.parameters");
    }
    if (!inline) {
      made.pipeline_version_reference = { pipeline_id: pipelineSelect.value, pipeline_version_id: versionSelect.value };
      mask.push("pipeline_version_reference");
    }
    if (!editing) made.mode = enabled.checked ? "ENABLE" : "DISABLE";
    return { made, mask, problems };
  }

  form.addEventListener("input", (event) => {
    if (event.target.closest(".parameters") || event.target === name || event.target === description) return;
    schedulePreview();
  });
  kind.addEventListener("change", () => {
    showKind();
    schedulePreview();
  });
  zone.addEventListener("change", schedulePreview);
  pipelineSelect.addEventListener("change", () => loadVersions().catch(showError));
  versionSelect.addEventListener("change", () => loadVersions(versionSelect.value).catch(showError));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { made, mask, problems } = recurringRunOf();
    if (problems.size) {
      general.textContent = placeViolations(form, problems).join("\n");
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(made, mask);
    } catch (error) {
      if (!disposed) showViolations(form, general, error);
    } finally {
      submit.disabled = false;
    }
  });

  showKind();
  showParameters(null);
  // An inline spec stays as it is, but its parameters are shown and kept.
  (inline ? loadInlineSpec() : loadPipelines()).catch(showError);
  refreshPreview();
  return {
    dispose() {
      disposed = true;
      clearTimeout(timer);
    },
  };
}

// -- the #/recurringruns/new page ------------------------------------------------------------

let shown = null;

export function render(container) {
  container.append(h("p", {}, h("a", { href: "#/recurringruns" }, "← Recurring runs")), h("h1", {}, "New recurring run"));
  shown = scheduleForm(container, {
    submitLabel: "Create",
    onSubmit: async (recurringRun) => {
      const created = await call("recurringruns", { method: "POST", body: recurringRun });
      location.hash = `#/recurringruns/${encodeURIComponent(created.recurring_run_id)}`;
    },
    onCancel: () => {
      location.hash = "#/recurringruns";
    },
  });
}

export function dispose() {
  shown?.dispose();
  shown = null;
}
