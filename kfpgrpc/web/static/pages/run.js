// Placeholder until this page is built (issue 14): see docs/ui.md "Pages".
import { h } from "../util.js";

export function render(container, params) {
  container.append(h("h1", {}, "Run"), h("p", { class: "coming" }, "coming"));
}

export function dispose() {}
