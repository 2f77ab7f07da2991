// The ledger's HTTP API, as the console uses it: every call carries the signed-in key, and every
// failure becomes a ProblemError that quotes the server's problem document (RFC 9457).

const KEY_STORAGE = "ledger.apiKey";
const LEDGER_STORAGE = "ledger.ledger";
/** The routes of a ledger's book: under `/v1/ledgers/{ledger}` for a ledger other than `default`. */
const BOOK_ROUTES = ["accounts", "assets", "transactions", "transfers", "trades", "events", "audit", "balances", "periods", "reports"];

/** The ledger every page shows, for this tab: `default` until another is chosen. */
export function currentLedger() {
  return sessionStorage.getItem(LEDGER_STORAGE) || "default";
}

export function setLedger(name) {
  if (name && name !== "default") sessionStorage.setItem(LEDGER_STORAGE, name);
  else sessionStorage.removeItem(LEDGER_STORAGE);
}

/** A book's route, under the chosen ledger; any other path as it is. */
function scoped(path) {
  const ledger = currentLedger();
  const first = path.startsWith("/v1/") ? path.slice(4).split(/[/?]/)[0] : "";
  if (ledger === "default" || !BOOK_ROUTES.includes(first)) return path;
  return `/v1/ledgers/${encodeURIComponent(ledger)}/${path.slice(4)}`;
}

/** The key the user signed in with, for this tab only (sessionStorage dies with the tab). */
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** A failed call: the HTTP status and the problem document the server answered with. */
export class ProblemError extends Error {
  constructor(status, problem, path) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.path = path;
  }
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

function url(path, query) {
  const u = new URL(scoped(path), location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") u.searchParams.set(name, value);
  }
  return u.pathname + u.search;
}

async function problemOf(response, path) {
  let problem;
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText || "error", status: response.status };
  }
  return new ProblemError(response.status, problem, path);
}

/** GET a JSON document. */
export async function get(path, query, { signal } = {}) {
  const response = await fetch(url(path, query), { headers: headers(), signal });
  if (!response.ok) throw await problemOf(response, path);
  return response.json();
}

/**
 * GET a JSON document with the position the read reflects (its `Ledger-Position` header):
 * `{ value, position }`.
 */
export async function getAt(path, query, { signal } = {}) {
  const response = await fetch(url(path, query), { headers: headers(), signal });
  if (!response.ok) throw await problemOf(response, path);
  return { value: await response.json(), position: Number(response.headers.get("Ledger-Position")) };
}

/** GET a text document (/metrics; a statement with `accept: "text/csv"`). */
export async function getText(path, { signal, query, accept } = {}) {
  const response = await fetch(url(path, query), { headers: headers(accept ? { Accept: accept } : {}), signal });
  if (!response.ok) throw await problemOf(response, path);
  return response.text();
}

/** POST or PATCH a command. Each call gets a fresh Idempotency-Key: a user's click is one write. */
export async function send(method, path, body) {
  const response = await fetch(scoped(path), {
    method,
    headers: headers({
      "Content-Type": "application/json",
      "Idempotency-Key": crypto.randomUUID(),
    }),
    body: JSON.stringify(body ?? {}),
  });
  if (!response.ok) throw await problemOf(response, path);
  return response.json();
}

/** Who the key is and what it may do; 401 when it is none. */
export function me() {
  return get("/v1/me");
}

/**
 * Follows `/v1/events/stream` from `after`, calling `onEvent` for each event, until `signal`
 * aborts. EventSource cannot send an Authorization header, so this reads the stream with fetch.
 */
export async function streamEvents({ after, onEvent, onOpen, signal }) {
  const response = await fetch(url("/v1/events/stream", { after }), {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) throw await problemOf(response, "/v1/events/stream");
  onOpen?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = message.split("\n");
      const field = (name) =>
        lines
          .filter((line) => line.startsWith(`${name}:`))
          .map((line) => line.slice(name.length + 1).trimStart());
      const data = field("data").join("\n");
      if (!data) continue; // a keep-alive comment
      if (field("event")[0] === "error") {
        let problem;
        try {
          problem = JSON.parse(data);
        } catch {
          problem = { title: "stream error", detail: data };
        }
        throw new ProblemError(200, problem, "/v1/events/stream");
      }
      onEvent(JSON.parse(data));
    }
  }
}
