// The pipelines list, #/pipelines?name=&size= (docs/ui.md "Pipelines list"): ListPipelines
// newest first, filtered by name, paged by page_token, each with its newest version; and the
// upload of a compiled pipeline (upload.js).

import { get, showError } from "../api.js";
import { setQuery } from "../app.js";
import { formatTime, h } from "../util.js";
import { uploadForm } from "./upload.js";

const PAGE_SIZES = [10, 20, 50, 100];

let view = null; // the shown list's state, null once disposed

export async function render(container, params) {
  const size = PAGE_SIZES.includes(Number(params.size)) ? Number(params.size) : 20;
  view = { container, name: params.name || "", size, tokens: [], token: "", nextToken: "", timers: [] };
  const mine = view;

  let typing = null;
  const name = h("input", {
    type: "search", name: "name", placeholder: "Name contains…", value: mine.name, "aria-label": "Name contains",
    oninput: (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => change({ name: e.target.value.trim() }), 300);
    },
  });
  mine.timers.push(() => clearTimeout(typing));
  const sizes = h("select", { name: "size", "aria-label": "Page size", onchange: (e) => change({ size: Number(e.target.value) }) },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === size }, `${n} per page`)));
  mine.body = h("tbody");
  mine.previous = h("button", { type: "button", class: "previous", onclick: () => page(-1) }, "‹ Previous");
  mine.next = h("button", { type: "button", class: "next", onclick: () => page(1) }, "Next ›");
  mine.info = h("span", { class: "info" });
  container.append(
    h("h1", {}, "Pipelines"),
    h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Page size", sizes)),
    h("table", { class: "list pipelines" },
      h("thead", {}, h("tr", {}, ["Name", "Description", "Created", "Newest version"].map((t) => h("th", {}, t)))),
      mine.body),
    h("div", { class: "pager" }, mine.previous, mine.next, mine.info),
    h("section", { class: "panel upload" }, h("h2", {}, "Upload a pipeline"),
      uploadForm({ onUploaded: () => view === mine && change({}) })),
  );
  await load(mine);
}

export function dispose() {
  if (!view) return;
  for (const clear of view.timers) clear();
  view = null;
}

/** A filter or page-size change (or an upload): back to the first page, the address updated. */
function change(update) {
  Object.assign(view, update, { tokens: [], token: "" });
  setQuery({ name: view.name, size: view.size === 20 ? "" : view.size });
  load(view);
}

function page(step) {
  const mine = view;
  if (step > 0) {
    if (!mine.nextToken) return;
    mine.tokens.push(mine.token);
    mine.token = mine.nextToken;
  } else {
    if (!mine.tokens.length) return;
    mine.token = mine.tokens.pop();
  }
  load(mine);
}

async function load(mine) {
  mine.previous.disabled = mine.next.disabled = true;
  const filter = mine.name ? JSON.stringify({ predicates: [{ key: "display_name", operation: "IS_SUBSTRING", string_value: mine.name }] }) : "";
  let answer;
  try {
    answer = await get("pipelines", { page_size: mine.size, page_token: mine.token, sort_by: "created_at desc", filter });
  } catch (error) {
    if (view === mine) showError(error);
    return;
  }
  if (view !== mine) return;
  mine.nextToken = answer.next_page_token || "";
  const pipelines = answer.pipelines || [];
  mine.body.replaceChildren(...pipelines.map((p) => row(mine, p)));
  if (!pipelines.length) mine.body.append(h("tr", {}, h("td", { class: "empty", colspan: 4 }, mine.name ? "No pipeline matches" : "No pipelines yet")));
  mine.previous.disabled = !mine.tokens.length;
  mine.next.disabled = !mine.nextToken;
  const total = Number(answer.total_size || 0);
  mine.info.textContent = `Page ${mine.tokens.length + 1} of ${Math.max(1, Math.ceil(total / mine.size))} · ${total} pipeline${total === 1 ? "" : "s"}`;
}

function row(mine, pipeline) {
  const id = encodeURIComponent(pipeline.pipeline_id);
  const newest = h("td", { class: "newest-version muted" }, "…");
  newestVersion(mine, pipeline.pipeline_id, newest);
  return h("tr", { "data-pipeline-id": pipeline.pipeline_id },
    h("td", {}, h("a", { class: "pipeline-name", href: `#/pipelines/${id}` }, pipeline.display_name || pipeline.name || pipeline.pipeline_id)),
    h("td", { class: "description" }, pipeline.description || ""),
    h("td", { class: "time", title: pipeline.created_at || "" }, formatTime(pipeline.created_at)),
    newest);
}

/** Fills `cell` with the pipeline's newest version (one ListPipelineVersions call per row). */
async function newestVersion(mine, pipelineId, cell) {
  let version;
  try {
    const answer = await get(`pipelines/${encodeURIComponent(pipelineId)}/versions`, { page_size: 1, sort_by: "created_at desc" });
    version = answer.pipeline_versions?.[0];
  } catch (error) {
    if (view === mine) cell.textContent = error.message;
    return;
  }
  if (view !== mine) return;
  cell.classList.remove("muted");
  cell.replaceChildren(version
    ? h("a", { href: `#/pipelines/${encodeURIComponent(pipelineId)}?version=${encodeURIComponent(version.pipeline_version_id)}`, title: formatTime(version.created_at) },
      version.display_name || version.name || version.pipeline_version_id)
    : h("span", { class: "muted" }, "none"));
}
