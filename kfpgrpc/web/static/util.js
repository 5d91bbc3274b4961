// Small helpers shared by the pages: building elements, times, durations, run states.

/** An element: h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child...). Attributes
 * with null/undefined/false values are left out; text children are text nodes (never HTML). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return element;
}

/** An id shortened for a label: its last 8 characters. Ids are UUID version 7, whose first
 * characters are a millisecond clock (alike for everything made within a minute); the last
 * are random. */
export const shortId = (id) => id.slice(-8);

/** The RuntimeState names (protos/kfpgrpc/v1/common.proto), in their enum order. */
export const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED"];
export const FINAL_STATES = new Set(["SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"]);

/** A state badge: its colour comes from style.css's --state-<NAME> variables. */
export function stateBadge(state) {
  const name = state || "PENDING";
  return h("span", { class: `state state-${name}`, "data-state": name }, name);
}

/** An RFC 3339 time as the browser's local date and time; "" when absent. */
export function formatTime(rfc3339) {
  if (!rfc3339) return "";
  const date = new Date(rfc3339);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** Milliseconds as "1h 2m", "3m 4s", "5.2s". */
export function formatDuration(ms) {
  if (!(ms >= 0)) return "";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  const hours = Math.floor(m / 60);
  return hours < 48 ? `${hours}h ${m % 60}m` : `${Math.floor(hours / 24)}d ${hours % 24}h`;
}
