// The shell: hash routing to page modules (pages/*.js), the navigation, the error banner and
// the logout button. A page module exports render(container, params) and dispose(); see
// docs/ui.md "Pages".

import { clearError, showError } from "./api.js";

/** Routes, first match wins: `pattern` segments, ":name" capturing one into params. `section`
 * is the navigation entry shown as current. A new page adds a line here. */
export const ROUTES = [
  { pattern: ["runs"], page: "./pages/runs.js", section: "runs" },
  { pattern: ["runs", ":id"], page: "./pages/run.js", section: "runs" },
  { pattern: ["pipelines"], page: "./pages/pipelines.js", section: "pipelines" },
  { pattern: ["pipelines", ":id"], page: "./pages/pipeline.js", section: "pipelines" },
  { pattern: ["recurringruns"], page: "./pages/recurring_runs.js", section: "recurringruns" },
  { pattern: ["recurringruns", "new"], page: "./pages/recurring_run_form.js", section: "recurringruns" },
  { pattern: ["recurringruns", ":id"], page: "./pages/recurring_run.js", section: "recurringruns" },
  { pattern: ["events"], page: "./pages/events.js", section: "events" },
];
const HOME = "#/runs";

/** The route of `hash` ("#/runs/ID?x=1") and its params: captured segments plus the query's
 * parameters (a query parameter does not override a segment). Null when none matches. */
export function match(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const route of ROUTES) {
    if (route.pattern.length !== parts.length) continue;
    const params = Object.fromEntries(new URLSearchParams(query));
    if (route.pattern.every((seg, i) => (seg.startsWith(":") ? ((params[seg.slice(1)] = parts[i]), true) : seg === parts[i]))) {
      return { route, params };
    }
  }
  return null;
}

/** Replaces the current hash's query with `params` (empty values left out) without rendering
 * again: a page keeps its state (filters, page) in the address, so a reload or a shared link
 * shows the same, and calls this when that state changes. */
export function setQuery(params) {
  const path = location.hash.split("?", 1)[0] || HOME;
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  history.replaceState(null, "", query ? `${path}?${query}` : path);
}

let current = null; // the shown page module
let rendering = 0; // counts navigations, so a slow import does not render over a newer page

async function show() {
  const found = match(location.hash);
  if (!found) {
    location.replace(HOME);
    return;
  }
  const mine = ++rendering;
  try {
    current?.dispose();
  } catch (error) {
    console.error(error);
  }
  current = null;
  clearError();
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.section === found.route.section);
  }
  const page = document.getElementById("page");
  // A fresh container per render: a page still finishing work for an old render can tell it
  // is gone (container.isConnected) and write nothing.
  const container = document.createElement("div");
  container.className = "page";
  page.replaceChildren(container);
  try {
    const module = await import(found.route.page);
    if (mine !== rendering) return;
    current = module;
    await module.render(container, found.params);
  } catch (error) {
    if (mine === rendering) showError(error);
  }
}

async function showLogout() {
  try {
    const session = await (await fetch("/ui/session.json", { credentials: "same-origin" })).json();
    document.getElementById("logout").hidden = !session.auth;
  } catch {
    // Without it the button stays hidden; the pages report their own failures.
  }
}

document.querySelector("#error-banner .dismiss").addEventListener("click", clearError);
window.addEventListener("hashchange", show);
showLogout();
show();
