// A task's log: the lines of GET /apis/v2beta1/runs/{id}/logs?task_name=&follow= (Server-Sent
// Events, `logs` frames of {lines: [{task_id, time, text, line_number}]}, then `end`), with
// ANSI escape sequences stripped, followed while the run runs.
//
// A log can be long: the page holds at most MAX_HELD lines (the oldest dropped, and counted)
// and puts only the last `shown` of them in the DOM (PAGE at first, PAGE more per "Show
// earlier lines"). The stream starts at a log's first line each time it is opened (the API has
// no offset), so lines already held are recognised by their line_number and dropped.

import { describe, watch } from "../api.js";
import { h } from "../util.js";

export const PAGE = 1000; // lines put in the DOM at first, and added per "Show earlier lines"
export const MAX_HELD = 100_000; // lines held in memory per log
// CSI sequences (colours, cursor moves), OSC sequences (titles, links) and lone ESC pairs.
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** `text` without ANSI escape sequences (terminal colours and cursor controls). */
export function stripAnsi(text) {
  return text.replace(ANSI, "");
}

/**
 * The log of one task: new LogView(container, {onCommand}); open(runId, taskId, follow) shows
 * a task's log (closing the previous one), dispose() closes it. `onCommand(text)` receives
 * the log's first line when it is the argv the executor ran ("+ python3 -m ...": the local
 * executor writes it first in every attempt).
 */
export class LogView {
  constructor(container, { onCommand } = {}) {
    this._onCommand = onCommand;
    this._status = h("span", { class: "log-status muted" });
    this._follow = h("input", { type: "checkbox", checked: true, "aria-label": "Follow" });
    this._earlier = h("button", { type: "button", class: "link", hidden: true, onclick: () => this._showEarlier() });
    this._lines = h("pre", { class: "log-lines", "data-testid": "log-lines" });
    this._lines.addEventListener("scroll", () => {
      // Scrolling up stops following; back at the bottom, it follows again.
      this._follow.checked = this._atBottom();
    });
    container.append(
      h("div", { class: "log-toolbar" }, h("label", {}, this._follow, " Follow"), this._status),
      this._earlier,
      this._lines,
    );
    this._stream = null;
    this._reset();
  }

  open(runId, taskId, follow) {
    this.dispose();
    this._reset();
    const reading = follow ? "following…" : "loading…";
    this._status.textContent = reading;
    this._stream = watch(`runs/${encodeURIComponent(runId)}/logs`, {
      query: { task_name: taskId, follow: follow ? "true" : "" },
      onOpen: () => {
        this._status.textContent = reading; // again after a lost connection
      },
      on: { logs: (frame) => this._add(frame.lines || []) },
      onEnd: () => {
        this._status.textContent = this._held.length || this._dropped ? "end of log" : "no log lines";
      },
      onError: (error) => {
        this._status.textContent = `log stream: ${describe(error)}`;
      },
    });
  }

  dispose() {
    this._stream?.close();
    this._stream = null;
  }

  _reset() {
    this._held = []; // {line_number, text}
    this._last = 0; // the highest line_number held
    this._dropped = 0; // lines dropped from memory (over MAX_HELD)
    this._shown = PAGE;
    this._pending = null;
    this._lines.replaceChildren();
    this._earlier.hidden = true;
  }

  _add(lines) {
    const fresh = [];
    for (const line of lines) {
      if (line.line_number <= this._last) continue;
      this._last = Number(line.line_number);
      const text = stripAnsi(line.text || "");
      if (this._last === 1 && text.startsWith("+ ")) this._onCommand?.(text.slice(2));
      fresh.push({ line_number: this._last, text });
    }
    if (!fresh.length) return;
    this._held.push(...fresh);
    if (this._held.length > MAX_HELD) {
      const over = this._held.length - MAX_HELD;
      this._held.splice(0, over);
      this._dropped += over;
    }
    // Frames can come faster than the page paints: draw once per frame.
    this._pending = (this._pending || []).concat(fresh);
    if (this._pending.length === fresh.length) requestAnimationFrame(() => this._flush());
  }

  _flush() {
    const pending = this._pending || [];
    this._pending = null;
    const following = this._follow.checked;
    const fragment = document.createDocumentFragment();
    for (const line of pending.slice(-this._shown)) fragment.append(lineElement(line));
    this._lines.append(fragment);
    while (this._lines.childElementCount > this._shown) this._lines.firstElementChild.remove();
    this._updateEarlier();
    if (following) this._lines.scrollTop = this._lines.scrollHeight;
  }

  _showEarlier() {
    const inDom = this._lines.childElementCount;
    this._shown += PAGE;
    const before = this._held.slice(Math.max(0, this._held.length - inDom - PAGE), this._held.length - inDom);
    const height = this._lines.scrollHeight;
    this._lines.prepend(...before.map(lineElement));
    this._lines.scrollTop += this._lines.scrollHeight - height; // keep the lines in view where they were
    this._updateEarlier();
  }

  _updateEarlier() {
    const hidden = this._held.length - this._lines.childElementCount;
    this._earlier.hidden = hidden <= 0 && !this._dropped;
    this._earlier.disabled = hidden <= 0;
    const dropped = this._dropped ? ` (${this._dropped.toLocaleString()} older lines are not held)` : "";
    this._earlier.textContent = hidden > 0 ? `Show ${Math.min(PAGE, hidden).toLocaleString()} earlier lines of ${hidden.toLocaleString()}${dropped}` : dropped.trim();
  }

  _atBottom() {
    return this._lines.scrollHeight - this._lines.scrollTop - this._lines.clientHeight < 4;
  }
}

function lineElement(line) {
  return h("div", { class: "log-line", "data-line": line.line_number }, h("span", { class: "n" }, String(line.line_number)), line.text);
}
