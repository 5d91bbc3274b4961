// A pipeline's page, #/pipelines/<id>[?version=<version id>] (docs/ui.md "Pipeline page"): its
// versions (newest first), the chosen version's static graph (graph.js, no run) and root
// inputs, the upload of a new version, and "Create run": a form generated from the version's
// root parameters (parameters.js) that creates a run of that version and opens its page.

import { ApiError, get, post, showError } from "../api.js";
import { formatTime, h } from "../util.js";
import { RunGraph } from "./graph.js";
import { ParameterFields, clearViolations, formatValue, placeViolations, rootInputs, specOf } from "./parameters.js";
import { uploadForm } from "./upload.js";

const VERSIONS_PAGE = 20; // each listed version carries its whole spec
const MAX_EXPERIMENT_PAGES = 10; // 200 each: the picker lists at most 2,000 experiments
const NEW_EXPERIMENT = "\u0000new"; // the picker's "New experiment…" choice (not an id)

let shown = null; // the shown page's container, null once disposed

export async function render(container, params) {
  shown = container;
  const pipelineId = params.id;
  const path = `pipelines/${encodeURIComponent(pipelineId)}`;
  const [pipeline, first] = await Promise.all([get(path), get(`${path}/versions`, { page_size: VERSIONS_PAGE, sort_by: "created_at desc" })]);
  if (shown !== container) return;
  const versionId = params.version || first.pipeline_versions?.[0]?.pipeline_version_id || "";
  // A listed version carries its spec; one further back (a link) is read by itself.
  const listed = (first.pipeline_versions || []).find((v) => v.pipeline_version_id === versionId);
  const version = listed?.pipeline_spec ? listed : versionId ? await get(`${path}/versions/${encodeURIComponent(versionId)}`) : null;
  if (shown !== container) return;

  const versions = h("tbody");
  const more = h("button", { type: "button", class: "more-versions", hidden: !first.next_page_token }, "More versions");
  const addVersions = (list) => versions.append(...list.map((v) => versionRow(pipelineId, v, versionId)));
  addVersions(first.pipeline_versions || []);
  let token = first.next_page_token;
  more.addEventListener("click", async () => {
    try {
      const next = await get(`${path}/versions`, { page_size: VERSIONS_PAGE, sort_by: "created_at desc", page_token: token });
      token = next.next_page_token;
      more.hidden = !token;
      if (shown === container) addVersions(next.pipeline_versions || []);
    } catch (error) {
      if (shown === container) showError(error);
    }
  });

  container.append(
    h("p", {}, h("a", { href: "#/pipelines" }, "← Pipelines")),
    h("h1", {}, pipeline.display_name || pipeline.name),
    h("div", { class: "run-meta muted" },
      h("span", {}, "Pipeline ", h("code", {}, pipeline.pipeline_id)),
      h("span", {}, `created ${formatTime(pipeline.created_at)}`),
      pipeline.description ? h("span", {}, pipeline.description) : null),
    h("div", { class: "pipeline-layout" },
      h("section", { class: "panel versions" }, h("h2", {}, "Versions"),
        h("table", { class: "list versions" },
          h("thead", {}, h("tr", {}, ["Version", "Description", "Created"].map((t) => h("th", {}, t)))), versions),
        more,
        h("h3", {}, "Upload a new version"),
        uploadForm({ pipelineId, onUploaded: (v) => shown === container && (location.hash = `#/pipelines/${encodeURIComponent(pipelineId)}?version=${encodeURIComponent(v.pipeline_version_id)}`) })),
      version ? versionSection(pipeline, version) : h("p", { class: "muted" }, "This pipeline has no version: upload one.")),
  );
}

export function dispose() {
  shown = null;
}

function versionRow(pipelineId, version, selectedId) {
  const selected = version.pipeline_version_id === selectedId;
  return h("tr", { "data-version-id": version.pipeline_version_id, "aria-current": selected ? "true" : null },
    h("td", {}, h("a", { href: `#/pipelines/${encodeURIComponent(pipelineId)}?version=${encodeURIComponent(version.pipeline_version_id)}` },
      version.display_name || version.name || version.pipeline_version_id)),
    h("td", {}, version.description || ""),
    h("td", { class: "time", title: version.created_at || "" }, formatTime(version.created_at)));
}

/** The chosen version: its graph, its inputs and the run form. */
function versionSection(pipeline, version) {
  const spec = specOf(version.pipeline_spec);
  const inputs = rootInputs(spec);
  const graphPane = h("div", { class: "graph-pane static-graph", "data-testid": "pipeline-graph" });
  new RunGraph(graphPane, null).update(spec, null);
  return h("section", { class: "version", "data-version-id": version.pipeline_version_id },
    h("h2", {}, `Version ${version.display_name || version.name}`),
    h("div", { class: "version-layout" },
      graphPane,
      h("div", { class: "version-side" },
        h("section", { class: "panel" }, h("h3", {}, "Inputs"), inputsTable(inputs)),
        h("section", { class: "panel" }, h("h3", {}, "Create run"), runForm(pipeline, version, inputs)))));
}

function inputsTable(inputs) {
  if (!inputs.length) return h("p", { class: "muted" }, "No inputs.");
  return h("table", { class: "list inputs", "data-testid": "pipeline-inputs" },
    h("thead", {}, h("tr", {}, ["Name", "Type", "Default", "Optional"].map((t) => h("th", {}, t)))),
    h("tbody", {}, inputs.map((i) => h("tr", { "data-input": i.name },
      h("td", { title: i.description }, i.name),
      h("td", {}, i.kind === "artifact" ? `artifact ${i.type}` : i.type),
      h("td", {}, h("code", {}, formatValue(i.default))),
      h("td", {}, i.optional || i.default !== undefined ? "yes" : "no")))));
}

/** The "Create run" form: run name, experiment (an existing one, or a new one made first),
 * the parameters; checked here, then by the server, whose violations go next to their field. */
function runForm(pipeline, version, inputs) {
  const fields = new ParameterFields(inputs);
  const name = h("input", { type: "text", name: "display_name", value: `${pipeline.display_name || pipeline.name} ${new Date().toISOString().slice(0, 19).replace("T", " ")}` });
  const experiment = h("select", { name: "experiment" }, h("option", { value: "" }, "Default"), h("option", { value: NEW_EXPERIMENT }, "New experiment…"));
  const newName = h("input", { type: "text", name: "experiment_name", placeholder: "New experiment's name" });
  const newField = h("div", { class: "field", "data-field": "experiment.display_name", hidden: true }, h("label", {}, "New experiment", newName));
  experiment.addEventListener("change", () => (newField.hidden = experiment.value !== NEW_EXPERIMENT));
  const submit = h("button", { type: "submit", class: "primary" }, "Create run");
  const general = h("p", { class: "form-error", role: "alert", hidden: true });
  const artifacts = inputs.some((i) => i.kind === "artifact")
    ? h("p", { class: "muted" }, "Artifact inputs are not set by this form; the API's runtime_config.parameters cannot carry them.") : null;
  const form = h("form", { class: "run-form", "data-testid": "run-form", novalidate: true },
    h("div", { class: "field", "data-field": "display_name" }, h("label", {}, "Run name", name)),
    h("div", { class: "field", "data-field": "experiment_id" }, h("label", {}, "Experiment", experiment)),
    newField,
    h("fieldset", {}, h("legend", {}, "Parameters"), fields.element, artifacts),
    h("div", { class: "field actions" }, submit),
    general);
  loadExperiments(form, experiment);

  const fail = (texts) => {
    general.textContent = texts.join("\n");
    general.hidden = !texts.length;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fail([]);
    clearViolations(form);
    const { parameters, problems } = fields.values();
    if (experiment.value === NEW_EXPERIMENT && !newName.value.trim()) problems.set("experiment.display_name", "is required: the new experiment's name");
    if (problems.size) {
      fail(placeViolations(form, problems));
      return;
    }
    submit.disabled = true;
    try {
      if (experiment.value === NEW_EXPERIMENT) {
        // Made once: the picker then holds it, so submitting again after a refused run reuses it.
        let made;
        try {
          made = await post("experiments", { display_name: newName.value.trim() });
        } catch (error) {
          fail(placeViolations(form, violationsAs(error, "experiment.display_name")));
          return;
        }
        experiment.insertBefore(h("option", { value: made.experiment_id }, made.display_name), experiment.lastChild);
        experiment.value = made.experiment_id;
        newField.hidden = true;
        newName.value = "";
      }
      const run = await post("runs", {
        display_name: name.value.trim(),
        experiment_id: experiment.value,
        pipeline_version_reference: { pipeline_id: version.pipeline_id, pipeline_version_id: version.pipeline_version_id },
        runtime_config: { parameters },
      });
      location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
    } catch (error) {
      const unplaced = placeViolations(form, error, "run.");
      fail(unplaced.length || !(error instanceof ApiError) || !error.violations.length ? [error.message, ...unplaced] : []);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** An error of CreateExperiment as problems of the new experiment's field: its violations
 * (`experiment.display_name`, as the server names them) or its message (ALREADY_EXISTS). */
function violationsAs(error, field) {
  if (error instanceof ApiError && error.violations.length) return error;
  return new Map([[field, error.message]]);
}

async function loadExperiments(form, select) {
  const found = [];
  let token = "";
  try {
    for (let i = 0; i < MAX_EXPERIMENT_PAGES; i++) {
      const answer = await get("experiments", { page_size: 200, page_token: token, sort_by: "display_name", filter: JSON.stringify({ predicates: [{ key: "storage_state", operation: "NOT_EQUALS", string_value: "ARCHIVED" }] }) });
      found.push(...(answer.experiments || []));
      token = answer.next_page_token;
      if (!token) break;
    }
  } catch (error) {
    if (form.isConnected) showError(error);
    return;
  }
  for (const experiment of found) select.insertBefore(h("option", { value: experiment.experiment_id }, experiment.display_name), select.lastChild);
}
