// A task's log: the lines of GET /apis/v2beta1/runs/{id}/logs?task_name=&follow= (Server-Sent
// Events, `logs` frames of {lines: [{task_id, time, text, line_number}]}, then `end`), with
// ANSI escape sequences stripped, followed while the run runs.
//
// A log can be long (10 MiB a task): the stream starts with its last PAGE lines
// (`tail_lines`), and a reopened one (a lost connection, the tab shown again) goes on after the
// last line received (`after_line_number`). The page holds only the lines in the DOM: at most
// `shown` of them (PAGE at first, PAGE more per "Show earlier lines", which asks for the PAGE
// lines before the first one shown with `before_line_number`); new lines push the oldest out.

import { describe, watch } from "../api.js";
import { h } from "../util.js";

export const PAGE = 1000; // lines fetched at first, and per "Show earlier lines"
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
    // Shown only while the log can grow: a finished task's log has nothing to follow.
    this._followLabel = h("label", { title: "Keep the newest line in view" }, this._follow, " Follow");
    this._earlier = h("button", { type: "button", class: "link", hidden: true, onclick: () => this._showEarlier() });
    this._lines = h("pre", { class: "log-lines", "data-testid": "log-lines" });
    this._lines.addEventListener("scroll", () => {
      // Scrolling up stops following; back at the bottom, it follows again.
      this._follow.checked = this._atBottom();
    });
    container.append(
      h("div", { class: "log-toolbar" }, this._followLabel, this._status),
      this._earlier,
      this._lines,
    );
    this._stream = null;
    this._reset();
  }

  open(runId, taskId, follow) {
    this.dispose();
    this._reset();
    this._runId = runId;
    this._taskId = taskId;
    const reading = follow ? "following…" : "loading…";
    // Checked either way: the newest lines are the ones shown first.
    this._follow.checked = true;
    this._followLabel.hidden = !follow;
    this._status.textContent = reading;
    const path = `runs/${encodeURIComponent(runId)}/logs`;
    // The command is line 1, which a tail of a long log leaves out: asked for on its own.
    this._commandStream = watch(path, {
      query: { task_name: taskId, tail_lines: 1, before_line_number: 2 },
      on: { logs: (frame) => this._command(frame.lines || []) },
      onEnd: () => (this._commandStream = null),
      onError: () => this._commandStream?.close(),
    });
    this._stream = watch(path, {
      // The last PAGE lines first; after a reconnect, on after the last line received.
      query: () => ({ task_name: taskId, follow: follow ? "true" : "", ...(this._last ? { after_line_number: this._last } : { tail_lines: PAGE }) }),
      onOpen: () => {
        this._status.textContent = reading; // again after a lost connection
      },
      on: { logs: (frame) => this._add(frame.lines || []) },
      onEnd: () => {
        this._followLabel.hidden = true;
        this._status.textContent = this._last ? "end of log" : "no log lines";
      },
      onError: (error) => {
        this._status.textContent = `log stream: ${describe(error)}`;
      },
    });
  }

  dispose() {
    this._stream?.close();
    this._stream = null;
    this._commandStream?.close();
    this._commandStream = null;
    this._earlierStream?.close();
    this._earlierStream = null;
  }

  _reset() {
    this._last = 0; // the highest line_number received
    this._commandShown = false;
    this._shown = PAGE; // lines kept in the DOM
    this._pending = null;
    this._lines.replaceChildren();
    this._earlier.hidden = true;
  }

  /** The number of the first line in the DOM, 0 when none. */
  _first() {
    return Number(this._lines.firstElementChild?.dataset.line || 0);
  }

  /** Gives onCommand the argv of line 1 ("+ ...") when `lines` hold it. */
  _command(lines) {
    const first = lines.find((line) => Number(line.line_number) === 1);
    const text = first ? stripAnsi(first.text || "") : "";
    if (text.startsWith("+ ") && !this._commandShown) {
      this._commandShown = true;
      this._onCommand?.(text.slice(2));
    }
  }

  _add(lines) {
    this._command(lines);
    const fresh = [];
    for (const line of lines) {
      if (line.line_number <= this._last) continue;
      this._last = Number(line.line_number);
      fresh.push({ line_number: this._last, text: stripAnsi(line.text || "") });
    }
    if (!fresh.length) return;
    // Frames can come faster than the page paints: draw once per frame.
    if (this._pending === null) requestAnimationFrame(() => this._flush());
    this._pending = (this._pending || []).concat(fresh).slice(-this._shown);
  }

  _flush() {
    const pending = this._pending || [];
    this._pending = null;
    const following = this._follow.checked;
    const fragment = document.createDocumentFragment();
    for (const line of pending) fragment.append(lineElement(line));
    this._lines.append(fragment);
    while (this._lines.childElementCount > this._shown) this._lines.firstElementChild.remove();
    this._updateEarlier();
    if (following) this._lines.scrollTop = this._lines.scrollHeight;
  }

  /** Fetches the PAGE lines before the first one shown and puts them on top. */
  _showEarlier() {
    const before = this._first();
    if (before <= 1 || this._earlierStream) return;
    this._earlier.disabled = true;
    const earlier = [];
    this._earlierStream = watch(`runs/${encodeURIComponent(this._runId)}/logs`, {
      query: { task_name: this._taskId, tail_lines: PAGE, before_line_number: before },
      on: { logs: (frame) => earlier.push(...(frame.lines || [])) },
      onEnd: () => {
        this._earlierStream = null;
        if (this._first() !== before) return this._updateEarlier(); // the view moved on meanwhile
        this._shown += PAGE;
        const height = this._lines.scrollHeight;
        this._lines.prepend(...earlier.map((line) => lineElement({ line_number: Number(line.line_number), text: stripAnsi(line.text || "") })));
        this._lines.scrollTop += this._lines.scrollHeight - height; // keep the lines in view where they were
        this._updateEarlier();
      },
      onError: (error) => {
        this._earlierStream?.close();
        this._earlierStream = null;
        this._status.textContent = `earlier lines: ${describe(error)}`;
        this._updateEarlier();
      },
    });
  }

  _updateEarlier() {
    // Line numbers are consecutive from 1: the first one shown says how many come before it.
    const hidden = Math.max(0, this._first() - 1);
    this._earlier.hidden = hidden <= 0;
    this._earlier.disabled = Boolean(this._earlierStream);
    this._earlier.textContent = `Show ${Math.min(PAGE, hidden).toLocaleString()} earlier lines of ${hidden.toLocaleString()}`;
  }

  _atBottom() {
    return this._lines.scrollHeight - this._lines.scrollTop - this._lines.clientHeight < 4;
  }
}

function lineElement(line) {
  return h("div", { class: "log-line", "data-line": line.line_number }, h("span", { class: "n" }, String(line.line_number)), line.text);
}
