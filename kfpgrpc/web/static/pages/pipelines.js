// The pipelines list, #/pipelines?name=&size= (docs/ui.md "Pipelines list"): ListPipelines
// newest first, filtered by name, paged by page_token, each with its newest version; and the
// upload of a compiled pipeline (upload.js).

import { get, showError } from "../api.js";
import { setQuery } from "../app.js";
import { formatTime, h } from "../util.js";
import { Pager, nameSearch, pageSizeOf, sizeQuery, sizeSelect } from "./pager.js";
import { uploadForm } from "./upload.js";

let view = null; // the shown list's state, null once disposed

export async function render(container, params) {
  view = { container, name: params.name || "", size: pageSizeOf(params.size), timers: [] };
  const mine = view;
  mine.pager = new Pager(() => load(mine));

  const name = nameSearch(mine.name, (value) => change({ name: value }), mine.timers);
  const sizes = sizeSelect(mine.size, (size) => change({ size }));
  mine.body = h("tbody");
  container.append(
    h("h1", {}, "Pipelines"),
    h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Page size", sizes)),
    h("table", { class: "list pipelines" },
      h("thead", {}, h("tr", {}, ["Name", "Description", "Created", "Newest version"].map((t) => h("th", {}, t)))),
      mine.body),
    mine.pager.element(),
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
  Object.assign(view, update);
  view.pager.reset();
  setQuery({ name: view.name, size: sizeQuery(view.size) });
  load(view);
}

async function load(mine) {
  mine.pager.busy();
  const filter = mine.name ? JSON.stringify({ predicates: [{ key: "display_name", operation: "IS_SUBSTRING", string_value: mine.name }] }) : "";
  let answer;
  try {
    answer = await get("pipelines", { page_size: mine.size, page_token: mine.pager.token, sort_by: "created_at desc", filter });
  } catch (error) {
    if (view === mine) {
      showError(error);
      mine.pager.failed();
    }
    return;
  }
  if (view !== mine) return;
  const pipelines = answer.pipelines || [];
  mine.body.replaceChildren(...pipelines.map((p) => row(mine, p)));
  if (!pipelines.length) mine.body.append(h("tr", {}, h("td", { class: "empty", colspan: 4 }, mine.name ? "No pipeline matches" : "No pipelines yet")));
  mine.pager.shown(answer, mine.size, "pipeline");
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
