// A pipeline's root inputs and the form fields of its runtime parameters, generated from the
// compiled spec's root.inputDefinitions (docs/ui.md "Pipeline page"). The checks mirror the
// server's (kfpgrpc/core/parameters.py, which follows KFP's parameterType rules); the server
// stays authoritative and its field violations are placed next to the same fields
// (placeViolations).

import { ApiError } from "../api.js";
import { h } from "../util.js";

// Inputs the backend fills in (an exit handler's task status, a task's config): no field.
const SYSTEM_TYPES = new Set(["TASK_FINAL_STATUS", "TASK_CONFIG"]);
// A decimal number as JSON writes one (no hex, no "Infinity", no empty text).
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** The PipelineSpec of a stored version's `pipeline_spec`: the bare spec the kfp compiler
 * writes, or the one inside KFP's {pipeline_spec, platform_spec} wrapper. */
export function specOf(stored) {
  if (stored && !stored.root && stored.pipeline_spec) return stored.pipeline_spec;
  return stored || null;
}

/** The spec's root inputs: [{name, kind: "parameter" | "artifact", type, default (undefined
 * when none), optional, description}], parameters first, each kind by name. */
export function rootInputs(spec) {
  const definitions = spec?.root?.inputDefinitions || {};
  const parameters = Object.entries(definitions.parameters || {}).map(([name, p]) => ({
    name, kind: "parameter", type: p.parameterType || "", default: p.defaultValue, optional: Boolean(p.isOptional), description: p.description || "",
  }));
  const artifacts = Object.entries(definitions.artifacts || {}).map(([name, a]) => ({
    name, kind: "artifact", type: a.artifactType?.schemaTitle || "artifact", default: undefined, optional: Boolean(a.isOptional), description: a.description || "",
  }));
  const byName = (a, b) => a.name.localeCompare(b.name);
  return [...parameters.sort(byName), ...artifacts.sort(byName)];
}

/** A default value as the form and the inputs table show it: JSON for lists and structs. */
export function formatValue(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * The fields of the parameters a run sets: new ParameterFields(inputs).
 *
 * `element` holds one `.field[data-field="runtime_config.parameters.<name>"]` per settable
 * parameter: a text input (STRING), a text input checked as a number (NUMBER_INTEGER,
 * NUMBER_DOUBLE; text, not type=number, so what was typed is what is checked and reported),
 * a checkbox (BOOLEAN), a JSON textarea (LIST, STRUCT); each filled with its value in `values`
 * ({name: JSON value}, e.g. a recurring run's runtime_config.parameters being edited), else its
 * default. `values()` reads them: {parameters, problems: Map(field -> text)}.
 */
export class ParameterFields {
  constructor(inputs, values = {}) {
    this.parameters = inputs.filter((i) => i.kind === "parameter" && !SYSTEM_TYPES.has(i.type));
    this.inputs = new Map();
    this.element = h("div", { class: "parameter-fields" }, this.parameters.map((p) => this._field(p, values[p.name] ?? p.default)));
    if (!this.parameters.length) this.element.append(h("p", { class: "muted" }, "This pipeline has no parameters."));
  }

  _field(parameter, shown) {
    const attributes = { name: `parameter-${parameter.name}`, "data-param": parameter.name, "data-type": parameter.type };
    let input;
    if (parameter.type === "BOOLEAN") {
      input = h("input", { ...attributes, type: "checkbox", checked: shown === true });
    } else if (parameter.type === "LIST" || parameter.type === "STRUCT") {
      input = h("textarea", { ...attributes, rows: 3, spellcheck: "false", placeholder: parameter.type === "LIST" ? "[…] (JSON)" : "{…} (JSON)" });
      input.value = formatValue(shown);
    } else {
      const numeric = parameter.type.startsWith("NUMBER_");
      input = h("input", { ...attributes, type: "text", inputmode: numeric ? "decimal" : null, value: formatValue(shown) });
    }
    this.inputs.set(parameter.name, input);
    const required = parameter.default === undefined && !parameter.optional;
    return h("div", { class: "field", "data-field": `runtime_config.parameters.${parameter.name}` },
      h("label", {}, h("span", {}, h("span", { class: "field-name" }, parameter.name),
        required ? h("span", { class: "required", title: "required" }, " *") : null,
        " ", h("span", { class: "field-type muted" }, parameter.type.toLowerCase())), input),
      parameter.description ? h("span", { class: "muted field-help" }, parameter.description) : null);
  }

  /** The parameters to send ({name: JSON value}; a parameter left empty is not sent, so the
   * server applies its default) and the problems found, by field. */
  values() {
    const parameters = {};
    const problems = new Map();
    for (const parameter of this.parameters) {
      const input = this.inputs.get(parameter.name);
      const field = `runtime_config.parameters.${parameter.name}`;
      try {
        const value = readValue(parameter, input);
        if (value !== undefined) parameters[parameter.name] = value;
      } catch (problem) {
        problems.set(field, problem.message);
      }
    }
    return { parameters, problems };
  }
}

/** One field's value, or undefined for "not given"; throws an Error saying what is wrong, in
 * the server's words (kfpgrpc/core/parameters.py). */
function readValue(parameter, input) {
  const type = parameter.type;
  if (type === "BOOLEAN") return input.checked;
  const text = input.value;
  if (type === "STRING") {
    // The text as typed, "" included, except for an optional input left empty.
    return text === "" && parameter.optional && parameter.default === undefined ? undefined : text;
  }
  if (text.trim() === "") {
    if (parameter.default !== undefined || parameter.optional) return undefined;
    throw new Error(`is required (${type}, no default)`);
  }
  if (type === "NUMBER_INTEGER" || type === "NUMBER_DOUBLE") {
    const number = DECIMAL.test(text.trim()) ? Number(text.trim()) : NaN;
    if (!Number.isFinite(number)) throw new Error(`must be ${type === "NUMBER_INTEGER" ? "an integer" : "a number"}, got ${JSON.stringify(text)}`);
    if (type === "NUMBER_INTEGER" && !Number.isInteger(number)) throw new Error(`must be an integer, got ${text.trim()}`);
    if (type === "NUMBER_INTEGER" && !Number.isSafeInteger(number)) throw new Error("is too large to send exactly (beyond ±2^53)");
    return number;
  }
  if (type === "LIST" || type === "STRUCT") {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`is not JSON: ${error.message}`);
    }
    if (type === "LIST" && !Array.isArray(value)) throw new Error("must be a list (a JSON array)");
    if (type === "STRUCT" && (value === null || typeof value !== "object" || Array.isArray(value))) throw new Error("must be an object (JSON {…})");
    return value;
  }
  throw new Error(`has a type this form does not know: ${type}`);
}

// The elements a violation can be shown on directly; any other [data-field] is a container of them.
const CONTROLS = "input, select, textarea";

/**
 * Shows each problem next to its field in `form`: `problems` is a Map or [[field, text]], or an
 * error (an ApiError's field violations; any other error has none), whose field violations'
 * names lose `prefix` ("run.", "recurring_run.") and go to the visible element whose data-field
 * is the name or its longest "."- or "["-prefix: a `.field` container, or a control (the message
 * then goes in its label). The controls concerned get aria-invalid="true"; each message is a
 * `.field-error` with data-for = the name. Clears earlier messages first; returns the texts with
 * no field ("name: text").
 */
export function placeViolations(form, problems, prefix = "") {
  clearViolations(form);
  const entries = problems instanceof Map || Array.isArray(problems)
    ? [...problems]
    : (problems instanceof ApiError ? problems.violations : []).map((v) => [v.field.startsWith(prefix) ? v.field.slice(prefix.length) : v.field, v.description]);
  const fields = [...form.querySelectorAll("[data-field]")];
  const unplaced = [];
  for (const [name, text] of entries) {
    const target = fields
      .filter((f) => name === f.dataset.field || name.startsWith(f.dataset.field + ".") || name.startsWith(f.dataset.field + "["))
      .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
    if (target && !target.closest("[hidden]")) {
      const control = target.matches(CONTROLS);
      for (const c of control ? [target] : target.querySelectorAll(CONTROLS)) c.setAttribute("aria-invalid", "true");
      const within = name.slice(target.dataset.field.length).replace(/^\./, ""); // a path inside the field, if any
      (control ? target.closest("label, .field") || target.parentElement : target)
        .append(h("span", { class: "field-error", role: "alert", "data-for": name }, within ? `${within}: ${text}` : text));
    } else {
      unplaced.push(name ? `${name}: ${text}` : text);
    }
  }
  return unplaced;
}

export function clearViolations(form) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}
