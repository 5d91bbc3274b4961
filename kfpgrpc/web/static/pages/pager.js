// The toolbar parts and page-token pager of the lists paged in place (runs.js, pipelines.js;
// docs/ui.md "Runs list"): the name search and page-size selector, a stack of the page_tokens
// before the shown page, "‹ Previous" / "Next ›" buttons and the "Page n of m · total" line.

import { h } from "../util.js";

export const PAGE_SIZES = [10, 20, 50, 100];
export const DEFAULT_PAGE_SIZE = 20; // left out of the hash

/** The page size asked for by the hash's `size`, or DEFAULT_PAGE_SIZE if not one of PAGE_SIZES. */
export function pageSizeOf(value) {
  return PAGE_SIZES.includes(Number(value)) ? Number(value) : DEFAULT_PAGE_SIZE;
}

/** The hash's `size` for `size`: "" for the default. */
export function sizeQuery(size) {
  return size === DEFAULT_PAGE_SIZE ? "" : size;
}

/** The `<select name="size">` of PAGE_SIZES with `size` chosen; `onChange(size)` on a choice. */
export function sizeSelect(size, onChange) {
  return h("select", { name: "size", "aria-label": "Page size", onchange: (e) => onChange(Number(e.target.value)) },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === size }, `${n} per page`)));
}

const TYPING_MS = 300; // a name is searched for once typing pauses this long

/** The "Name contains…" `<input name="name">` showing `value`; `onChange(trimmed)` once typing
 * pauses. Its pending timer's clearing is pushed on `timers` (called at dispose). */
export function nameSearch(value, onChange, timers) {
  let typing = null;
  timers.push(() => clearTimeout(typing));
  return h("input", {
    type: "search", name: "name", placeholder: "Name contains…", value, "aria-label": "Name contains",
    oninput: (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => onChange(e.target.value.trim()), TYPING_MS);
    },
  });
}

/** Previous/Next over page_tokens. `onPage()` reads the page of `token` after a step; the page
 * calls busy() before a read, shown() after it, failed() if it failed. */
export class Pager {
  constructor(onPage) {
    this.onPage = onPage;
    this.tokens = []; // the page_tokens of the pages before the shown one ("" for the first)
    this.token = "";
    this.nextToken = "";
    this.previous = h("button", { type: "button", class: "previous", onclick: () => this.step(-1) }, "‹ Previous");
    this.next = h("button", { type: "button", class: "next", onclick: () => this.step(1) }, "Next ›");
    this.info = h("span", { class: "info" });
  }

  /** The `div.pager` holding the buttons, the info line and `extra` (e.g. the live marker). */
  element(...extra) {
    return h("div", { class: "pager" }, this.previous, this.next, this.info, ...extra);
  }

  /** Whether the first page is shown. */
  get first() {
    return !this.tokens.length;
  }

  /** Back to the first page (a filter or page-size change); the caller reads it. */
  reset() {
    this.tokens = [];
    this.token = "";
  }

  /** One page on (`step` > 0) or back; nothing past either end. */
  step(step) {
    if (step > 0) {
      if (!this.nextToken) return;
      this.tokens.push(this.token);
      this.token = this.nextToken;
    } else {
      if (!this.tokens.length) return;
      this.token = this.tokens.pop();
    }
    this.onPage();
  }

  busy() {
    this.previous.disabled = this.next.disabled = true;
  }

  failed() {
    this.previous.disabled = !this.tokens.length;
  }

  /** A page read: `answer`'s next_page_token and total_size, `size` items a page, counted as
   * `noun` (plural with an "s"). */
  shown(answer, size, noun) {
    this.nextToken = answer.next_page_token || "";
    this.previous.disabled = !this.tokens.length;
    this.next.disabled = !this.nextToken;
    const total = Number(answer.total_size || 0);
    this.info.textContent = `Page ${this.tokens.length + 1} of ${Math.max(1, Math.ceil(total / size))} · ${total} ${noun}${total === 1 ? "" : "s"}`;
  }
}
