// The UI's only way to the server: KFP's REST API (/apis/v2beta1/..., docs/api.md "HTTP (KFP
// REST)") and its Server-Sent Events streams. Errors come back as grpc-gateway's body,
// {code, message, details}, and are thrown as ApiError.

export const API = "/apis/v2beta1/";

/** A refused call: the gateway's {code, message, details} and the HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? 2; // UNKNOWN when the body is not the gateway's
    this.details = body.details || [];
  }

  /** The field violations of an INVALID_ARGUMENT: [{field, description}]. */
  get violations() {
    return this.details.flatMap((d) => d.field_violations || d.fieldViolations || []);
  }
}

/** `path` (under /apis/v2beta1/) with `query`: a repeated parameter for an array value, none
 * for an empty one (undefined, null, ""). */
export function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") params.append(name, String(one));
    }
  }
  const text = params.toString();
  return API + path + (text ? `?${text}` : "");
}

/** Calls the API; resolves to the JSON answer ({} for an empty one), rejects with ApiError.
 * `body` is sent as JSON, a FormData as a multipart form (the pipeline uploads). A 401 sends the browser to the login form. `response` receives the
 * Response (headers such as Date). */
export async function call(path, { method = "GET", query, body, signal, response } = {}) {
  const init = { method, signal, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body; // multipart: the browser writes the Content-Type with its boundary
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(apiUrl(path, query), init);
  if (response) response(answer);
  const text = await answer.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { message: `HTTP ${answer.status}: ${text.slice(0, 200)}` };
  }
  if (!answer.ok) {
    // The hash goes along: the login form returns to it (login.js).
    if (answer.status === 401) location.assign("/ui/login" + location.hash);
    throw new ApiError(answer.status, json);
  }
  return json;
}

export const get = (path, query, options = {}) => call(path, { ...options, query });
export const post = (path, body = {}, options = {}) => call(path, { ...options, method: "POST", body });
export const del = (path, query, options = {}) => call(path, { ...options, method: "DELETE", query });

/** One line for `error`: the message, and each field violation. */
export function describe(error) {
  if (error instanceof ApiError) {
    const fields = error.violations.map((v) => `${v.field}: ${v.description}`);
    return [error.message, ...fields].join("\n");
  }
  return String(error?.message || error);
}

/** Shows `error` in the banner under the navigation until dismissed or the next page. */
export function showError(error) {
  const banner = document.getElementById("error-banner");
  if (!banner) return;
  banner.querySelector(".text").textContent = describe(error);
  banner.hidden = false;
}

export function clearError() {
  const banner = document.getElementById("error-banner");
  if (banner) banner.hidden = true;
}

// The gRPC codes after which a closed stream is worth reopening: the watcher fell behind
// (RESOURCE_EXHAUSTED) or the server is stopping (UNAVAILABLE). Others are final.
const RESUMABLE = new Set([8, 14]);
const RETRY_MS = 1000; // as the server's `retry:` line tells EventSource

/**
 * Watches an SSE stream of the API, e.g. watch("runs/ID:watch", {on: {run: (run) => ...}}).
 *
 * - `on`: handlers by event name, each given the frame's parsed JSON and the MessageEvent;
 *   "message" is for frames without an `event:` line (the events stream).
 * - `end` frames close the stream for good and call `onEnd()`.
 * - `error` frames (`{code, message}`) call `onError(ApiError)`; a resumable one (the watcher
 *   fell behind, the server is stopping) lets EventSource reconnect, which sends the last
 *   `id:` seen as Last-Event-ID; others close the stream. A lost connection (EventSource
 *   retries) or one refused (it gives up) calls `onError` with an UNAVAILABLE ApiError.
 * - While the tab is hidden the stream is closed; when it shows again it is reopened, with
 *   `resume` (a query parameter name, e.g. "after_sequence") set to the last id seen, and
 *   `start` (e.g. "newest": how the first request chose where to begin) left out. An
 *   EventSource reconnect repeats the first URL with Last-Event-ID, which the server lets
 *   take the place of both.
 *
 * - `onOpen()` is called each time the connection opens (and reopens).
 * - `query` may be a function, called at each open for the query to use: such a stream is
 *   reopened by watch() itself after a lost connection (RETRY_MS later) with a fresh query,
 *   instead of EventSource's reconnect with the first URL (the logs resume by line number,
 *   which they cannot say by Last-Event-ID).
 *
 * Returns {close(), lastId()}.
 */
export function watch(path, { query = {}, on = {}, onOpen, onEnd, onError, resume, start } = {}) {
  let source = null;
  const dynamic = typeof query === "function";
  let last = !dynamic && resume && query[resume] ? String(query[resume]) : "";
  let finished = false;
  let retry = null;

  const open = () => {
    const base = dynamic ? query() : query;
    const current = resume && last ? { ...base, [resume]: last, ...(start ? { [start]: "" } : {}) } : base;
    source = new EventSource(apiUrl(path, current), { withCredentials: true });
    source.addEventListener("open", () => onOpen?.());
    for (const [name, handler] of Object.entries(on)) {
      source.addEventListener(name, (event) => {
        if (event.lastEventId) last = event.lastEventId;
        handler(event.data ? JSON.parse(event.data) : null, event);
      });
    }
    source.addEventListener("end", () => {
      stop();
      onEnd?.();
    });
    source.addEventListener("error", (event) => {
      if (event.data) {
        const body = JSON.parse(event.data);
        const error = new ApiError(0, body);
        if (!RESUMABLE.has(error.code)) stop();
        onError?.(error);
      } else if (!finished) {
        // The connection failed: EventSource retries (CONNECTING) unless the answer was not a
        // stream at all (CLOSED: a 401, a 404).
        const closed = event.target.readyState === EventSource.CLOSED;
        onError?.(new ApiError(0, { code: 14, message: `the stream ${path} ${closed ? "closed" : "is reconnecting"}` }));
        if (dynamic && !closed && event.target === source) {
          shut();
          retry = setTimeout(() => !finished && !document.hidden && !source && open(), RETRY_MS);
        }
      }
    });
  };

  const shut = () => {
    source?.close();
    source = null;
  };

  const stop = () => {
    finished = true;
    clearTimeout(retry);
    shut();
    document.removeEventListener("visibilitychange", onVisibility);
  };

  const onVisibility = () => {
    if (finished) return;
    if (document.hidden) shut();
    else if (!source) open();
  };

  document.addEventListener("visibilitychange", onVisibility);
  if (!document.hidden) open();
  return { close: stop, lastId: () => last };
}

/**
 * watch() of `events:watch` for a page that reads a list and keeps it live by events. It
 * starts with the newest stored event that matches (`newest=1`) instead of the retained log,
 * and `ready` resolves once it has opened (or failed to: the page is then "not live"). The page
 * reads its list after `ready`: the server fixed the stream's start before it answered, so
 * every event committed after the read comes on the stream (with a few from before it, which
 * the page applies again, in order). A reopen that cannot resume after a sequence (none
 * received yet) starts at the newest again and calls `onRestart()`: the page reads its list
 * again. Returns {close(), lastId(), ready}.
 */
export function watchNewest(path, { query = {}, onOpen, onError, onRestart, ...options } = {}) {
  let opens = 0;
  let gaveUp = false; // the first open failed: the page read its list without the stream
  let opened;
  const ready = new Promise((resolve) => (opened = resolve));
  const stream = watch(path, {
    ...options,
    query: { ...query, newest: 1 },
    resume: "after_sequence",
    start: "newest",
    onOpen: () => {
      const first = opens++ === 0 && !gaveUp;
      onOpen?.();
      if (first) opened();
      else if (!stream.lastId()) onRestart?.();
    },
    onError: (error) => {
      if (!opens && !gaveUp) {
        gaveUp = true;
        opened();
      }
      onError?.(error);
    },
  });
  return { ...stream, ready };
}
