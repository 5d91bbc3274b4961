// Placeholder: replaced by the runs list in the next commit.
import { h } from "../util.js";

export function render(container) {
  container.append(h("h1", {}, "Runs"), h("p", { class: "coming" }, "coming"));
}

export function dispose() {}
