// Live: the log as it grows, newest first, from the event stream (SSE). It starts at the head
// (with the last few events for context), never replays the whole log, and resumes after the
// last position it received — after a pause, a dropped connection or a restarted server — so no
// event is skipped or shown twice. Filters (type, account prefix) are in the URL.

import { get, ProblemError, streamEvents } from "../api.js";
import { count, time } from "../format.js";
import { accountHref, fill, h, link, money, transactionHref } from "../ui.js";

/** Rows kept on screen; the same number of recent events is kept to re-filter them. */
const ROWS_MAX = 500;
/** Events shown on opening, before following the stream. */
const BACKLOG_EVENTS = 50;
/** Postings listed per row; a transaction has up to 64. */
const POSTINGS_SHOWN_MAX = 3;
/** Reconnecting waits this long at first, doubling up to the maximum. */
const RETRY_MS_MIN = 500;
const RETRY_MS_MAX = 10_000;
/** While paused, how often the head is read to say how many events arrived meanwhile. */
const PAUSED_POLL_MS = 2_000;

const EVENT_TYPES = [
  "TransactionPosted",
  "TradeExecuted",
  "PendingPosted",
  "PendingVoided",
  "PendingExpired",
  "AccountOpened",
  "AccountStatusChanged",
  "AccountLimitsSet",
  "AssetDefined",
];

export async function render({ main, query, signal }) {
  const live = new Live(main, query, signal);
  await live.start();
}

/** The position of the newest event the read source holds. */
async function headPosition(signal) {
  const ready = await get("/readyz", {}, { signal }).catch((e) => e.problem ?? Promise.reject(e));
  return ready.read_source?.position ?? ready.position;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** A prefix of whole code segments: `broker:` and `broker` are the same prefix. */
function normalizePrefix(text) {
  return text.trim().replace(/:+$/, "");
}

/** The postings a row shows: what moved or was reserved, or for a hold's end what it released. */
function postingsOf(event) {
  const p = event.payload;
  if (event.type === "PendingVoided" || event.type === "PendingExpired") return p.released ?? [];
  return p.postings ?? [];
}

/** Every account the event names (docs/events.md: postings, released, and the account fields). */
export function accountsOf(event) {
  const p = event.payload;
  const codes = new Set();
  for (const posting of [...(p.postings ?? []), ...(p.released ?? [])]) {
    codes.add(posting.source);
    codes.add(posting.destination);
  }
  for (const field of ["code", "account", "buyer", "seller"]) if (typeof p[field] === "string") codes.add(p[field]);
  return [...codes];
}

/** Where a row leads: the transaction or trade, or the account. */
function hrefOf(event) {
  const p = event.payload;
  switch (event.type) {
    case "TransactionPosted":
      return transactionHref("transaction", p.transaction_id);
    case "TradeExecuted":
      return transactionHref("trade", p.trade_id);
    case "PendingPosted":
    case "PendingVoided":
    case "PendingExpired":
      // The hold may be a trade: the transaction page sends a trade on to its own page.
      return transactionHref("transaction", p.pending_id);
    case "AccountOpened":
      return accountHref(p.code);
    case "AccountStatusChanged":
    case "AccountLimitsSet":
      return accountHref(p.account);
    default:
      return null;
  }
}

/** An id short enough for a table: its end (a UUIDv7 begins with its time, shared by neighbours). */
function shortId(id) {
  return h("code", { title: id }, `…${id.slice(-8)}`);
}

function details(event) {
  const p = event.payload;
  switch (event.type) {
    case "TransactionPosted":
      return [p.kind, p.pending && " · pending", p.reverses && [" of ", shortId(p.reverses)], p.forced && " · forced"];
    case "TradeExecuted":
      return [`${p.quantity} ${p.instrument} @ ${p.price} ${p.currency}`, p.pending && " · pending"];
    case "PendingPosted":
      return ["posts hold ", shortId(p.pending_id)];
    case "PendingVoided":
      return ["voids hold ", shortId(p.pending_id)];
    case "PendingExpired":
      return ["hold ", shortId(p.pending_id), " expired"];
    case "AccountStatusChanged":
      return `now ${p.status}`;
    case "AccountLimitsSet":
      return `${p.asset}: min ${p.min_balance ?? "none"}, max ${p.max_balance ?? "none"}`;
    case "AccountOpened":
      return p.allow_negative ? "may go negative" : "";
    case "AssetDefined":
      return `${p.asset}, scale ${p.scale}`;
    default:
      return "";
  }
}

function eventRow(event, fresh) {
  const href = hrefOf(event);
  const postings = postingsOf(event);
  const shown = postings.slice(0, POSTINGS_SHOWN_MAX);
  const more = postings.length - shown.length;
  const accounts = postings.length
    ? shown.map((p) => h("div", {}, link(accountHref(p.source), p.source), " → ", link(accountHref(p.destination), p.destination)))
    : accountsOf(event).map((code) => h("div", {}, link(accountHref(code), code)));
  return h(
    "tr",
    {
      "data-testid": `live-event-${event.position}`,
      "data-position": event.position,
      class: [href && "row-link", fresh && "fresh"].filter(Boolean).join(" ") || null,
      tabindex: href ? 0 : null,
      "data-href": href,
    },
    h("td", { class: "num" }, count(event.position)),
    h("td", { class: "nowrap", title: event.recorded_at }, time(event.recorded_at)),
    h("td", {}, h("code", {}, event.type)),
    h("td", {}, accounts, more > 0 && h("div", { class: "muted small" }, `+${more} more`)),
    h("td", { class: "num" }, shown.map((p) => h("div", {}, money(p.amount, p.asset), " ", h("span", { class: "asset" }, p.asset)))),
    h("td", {}, details(event)),
  );
}

class Live {
  constructor(main, query, signal) {
    this.main = main;
    this.signal = signal;
    this.type = EVENT_TYPES.includes(query.get("type")) ? query.get("type") : "";
    this.prefix = normalizePrefix(query.get("account") ?? "");
    this.last = 0; // the last position received: the stream resumes after it
    this.recent = []; // the last ROWS_MAX events received, oldest first
    this.queue = []; // received, matching, not drawn yet
    this.flushing = false;
    this.paused = false;
    this.stream = null; // aborts the connection in use (pause, leaving the page)
    this.generation = 0; // each pause or resume ends the loops of the one before
  }

  async start() {
    this.build();
    this.setState("connecting", "reading the head of the log…");
    const head = await headPosition(this.signal);
    const backlog = await get("/v1/events", { after: Math.max(0, head - BACKLOG_EVENTS), limit: BACKLOG_EVENTS }, { signal: this.signal });
    this.last = backlog.next_after;
    for (const event of backlog.items) this.keep(event);
    this.redraw();
    this.signal.addEventListener("abort", () => this.stream?.abort());
    document.addEventListener("keydown", (e) => this.onKey(e), { signal: this.signal });
    this.follow();
  }

  build() {
    this.state = h("span", { class: "badge", "data-testid": "live-state" });
    this.stateDetail = h("span", { class: "muted small", "data-testid": "live-state-detail" });
    this.pauseButton = h("button", { type: "button", "data-testid": "live-pause", title: "Pause (p)", onclick: () => this.pause() }, "Pause");
    this.resumeButton = h("button", { type: "button", class: "primary", "data-testid": "live-resume", title: "Resume (p)", hidden: true, onclick: () => this.resume() }, "Resume");
    const typeSelect = h(
      "select",
      { "aria-label": "Event type", "data-testid": "live-type", onchange: (e) => this.setFilter({ type: e.target.value }) },
      h("option", { value: "" }, "All types"),
      EVENT_TYPES.map((t) => h("option", { value: t, selected: t === this.type }, t)),
    );
    const prefixInput = h("input", {
      type: "search",
      "aria-label": "Account prefix",
      placeholder: "account prefix, e.g. broker:alice",
      value: this.prefix,
      "data-search": true,
      "data-testid": "live-account",
      spellcheck: "false",
      oninput: (e) => this.setFilter({ prefix: normalizePrefix(e.target.value) }),
    });
    this.shownCount = h("span", { class: "muted small", "data-testid": "live-count" });
    this.tbody = h("tbody", { "data-testid": "live-rows" });
    this.empty = h("p", { class: "muted empty", hidden: true }, "No event matches yet.");
    fill(
      this.main,
      h("h1", {}, "Live"),
      h(
        "div",
        { class: "toolbar" },
        this.state,
        this.stateDetail,
        h("span", { class: "spacer" }),
        typeSelect,
        prefixInput,
        this.pauseButton,
        this.resumeButton,
      ),
      h(
        "div",
        { class: "panel flush" },
        h(
          "table",
          { class: "grid live" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Position", "Time (UTC)", "Type", "Accounts", "Amount", "Details"].map((label, i) => h("th", { scope: "col", class: i === 0 || i === 4 ? "num" : null }, label)),
            ),
          ),
          this.tbody,
        ),
        this.empty,
      ),
      h("p", { class: "small muted" }, this.shownCount, ` · newest first; at most ${count(ROWS_MAX)} rows are kept. `, h("kbd", {}, "p"), " pauses and resumes."),
    );
  }

  setState(name, detail) {
    const classes = { live: "good", paused: "warn", reconnecting: "warn", stopped: "bad" };
    this.state.className = `badge ${classes[name] ?? ""}`;
    this.state.textContent = name;
    this.stateDetail.textContent = detail ?? "";
  }

  matches(event) {
    if (this.type && event.type !== this.type) return false;
    if (!this.prefix) return true;
    return accountsOf(event).some((code) => code === this.prefix || code.startsWith(`${this.prefix}:`));
  }

  /** Takes one received event: remembered, and queued for drawing if the filter wants it. */
  keep(event, fresh = false) {
    if (event.position <= this.last && fresh) return; // never shown twice
    if (fresh) this.last = event.position;
    this.recent.push(event);
    if (this.recent.length > 2 * ROWS_MAX) this.recent.splice(0, this.recent.length - ROWS_MAX);
    if (!fresh || !this.matches(event)) return;
    this.queue.push(event);
    if (this.queue.length > 2 * ROWS_MAX) this.queue.splice(0, this.queue.length - ROWS_MAX);
    if (!this.flushing) {
      this.flushing = true;
      // Events that arrive in one read are drawn together.
      setTimeout(() => this.flush(), 0);
    }
  }

  flush() {
    this.flushing = false;
    const batch = this.queue.splice(0).slice(-ROWS_MAX);
    if (!batch.length) return;
    const rows = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) rows.append(eventRow(batch[i], true));
    this.tbody.prepend(rows);
    while (this.tbody.childElementCount > ROWS_MAX) this.tbody.lastElementChild.remove();
    this.updateCount();
  }

  /** Draws the remembered events again, for a new filter. */
  redraw() {
    if (this.recent.length > ROWS_MAX) this.recent.splice(0, this.recent.length - ROWS_MAX);
    const matching = this.recent.filter((e) => this.matches(e)).reverse();
    fill(this.tbody, matching.map((e) => eventRow(e, false)));
    this.updateCount();
  }

  updateCount() {
    const shown = this.tbody.childElementCount;
    this.empty.hidden = shown > 0;
    this.shownCount.textContent = `${count(shown)} shown · last position received ${count(this.last)}`;
  }

  setFilter({ type = this.type, prefix = this.prefix }) {
    this.type = type;
    this.prefix = prefix;
    const params = new URLSearchParams();
    if (type) params.set("type", type);
    if (prefix) params.set("account", prefix);
    const search = params.toString();
    history.replaceState(null, "", location.pathname + (search ? `?${search}` : ""));
    this.queue = [];
    this.redraw();
  }

  /** Follows the stream until paused or the page is left, reconnecting after the last position. */
  async follow() {
    const generation = ++this.generation;
    let retryMs = RETRY_MS_MIN;
    while (generation === this.generation && !this.signal.aborted) {
      const connection = new AbortController();
      this.stream = connection;
      const signal = AbortSignal.any([this.signal, connection.signal]);
      this.setState("connecting", `resuming after position ${count(this.last)}`);
      let reason = "the stream ended";
      try {
        await streamEvents({
          after: this.last,
          signal,
          onOpen: () => {
            retryMs = RETRY_MS_MIN;
            this.setState("live", `connected after position ${count(this.last)}`);
          },
          onEvent: (event) => this.keep(event, true),
        });
      } catch (error) {
        if (signal.aborted) return; // paused or left
        if (error instanceof ProblemError && (error.status === 401 || error.status === 403)) {
          this.setState("stopped", error.message);
          return;
        }
        // A TypeError is fetch's word for a connection that failed or broke.
        reason = error.problem?.code ?? (error instanceof TypeError ? "no connection to the server" : error.message);
      }
      if (generation !== this.generation || this.signal.aborted) return;
      this.setState("reconnecting", `${reason}; retrying in ${(retryMs / 1000).toFixed(1)} s from position ${count(this.last)}`);
      await sleep(retryMs, signal);
      retryMs = Math.min(RETRY_MS_MAX, retryMs * 2);
    }
  }

  pause() {
    if (this.paused) return;
    this.paused = true;
    this.generation += 1;
    this.stream?.abort();
    this.pauseButton.hidden = true;
    this.resumeButton.hidden = false;
    this.resumeButton.focus();
    this.setState("paused", `at position ${count(this.last)}`);
    this.watchWhilePaused();
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.pauseButton.hidden = false;
    this.resumeButton.hidden = true;
    this.pauseButton.focus();
    this.follow();
  }

  /** Says how many events the log gained since the pause; they are read on resume. */
  async watchWhilePaused() {
    const generation = this.generation;
    while (generation === this.generation && !this.signal.aborted) {
      await sleep(PAUSED_POLL_MS, this.signal);
      if (generation !== this.generation) return;
      try {
        const waiting = (await headPosition(this.signal)) - this.last;
        if (generation === this.generation) this.setState("paused", `at position ${count(this.last)} · ${count(waiting)} new ${waiting === 1 ? "event" : "events"} waiting`);
      } catch {
        // The head is only for the message; the stream will say what is wrong on resume.
      }
    }
  }

  onKey(event) {
    if (event.key !== "p" || event.target.matches?.("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (this.paused) this.resume();
    else this.pause();
  }
}
