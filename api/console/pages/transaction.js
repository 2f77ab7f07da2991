// Transaction or trade: what moved (or, for a hold, what is reserved), how a hold was settled,
// where the settlement of a trade with a settlement date stands (settled so far, still reserved,
// why it failed), the reversal linked both ways, and the event that recorded it — its position,
// its hash and the API key that sent it — read from the log itself.

import { get } from "../api.js";
import { can, navigate } from "../app.js";
import { count, subtract, time } from "../format.js";
import { accountHref, facts, fill, h, link, money, problemBox, section, statusBadge, table, transactionHref } from "../ui.js";

export async function render({ main, params, kind, signal }) {
  const isTrade = kind === "trade";
  const view = await get(isTrade ? `/v1/trades/${encodeURIComponent(params.id)}` : `/v1/transactions/${encodeURIComponent(params.id)}`, {}, { signal });
  // A trade asked for as a transaction (a reversal's or a hold's link names only the id): show
  // it as the trade it is, with its terms.
  if (!isTrade && view.kind === "trade") return navigate(transactionHref("trade", view.id), { replace: true });
  const event = h("div", {}, h("p", { class: "muted" }, "Reading the event…"));
  const settlementEvent = h("div", {}, h("p", { class: "muted" }, "Reading the event…"));
  // A trade booked pending for its settlement date has a settlement from the start; until a part
  // of it settles, that settlement's event is the trade's own.
  const dated = isTrade && Boolean(view.settlement?.settled);
  const settlementHasEvent = view.settlement && view.settlement.position !== view.position;
  fill(
    main,
    h(
      "h1",
      {},
      `${title(isTrade ? "trade" : view.kind)} `,
      h("code", { class: "id", "data-testid": "transaction-id" }, view.id),
      " ",
      statusBadge(view.status, "transaction-status"),
    ),
    h("div", { class: "split" }, section("Summary", summary(view, isTrade)), section("Event", event)),
    isTrade && section("Terms", terms(view)),
    section(view.settlement || view.status === "pending" ? "Postings reserved" : "Postings", postingsTable(view.postings, "postings")),
    dated && section(`Settlement: ${view.settlement.status.replace("_", " ")}`, datedSettlementView(view, settlementHasEvent && settlementEvent)),
    view.settlement && !dated && section(`Settlement: ${view.settlement.status}`, settlementView(view.settlement, settlementEvent)),
    view.status === "pending" && !dated &&
      section(
        "Settlement",
        h("p", { class: "muted", "data-testid": "settlement-status" }, "Not settled yet: a post moves up to what is reserved, a void releases it", view.expires_at ? `; the ledger expires it at ${time(view.expires_at)} UTC if neither comes first.` : "."),
      ),
  );
  const keys = apiKeyNames(signal);
  showEvent(event, view.position, keys, "event", signal);
  if (settlementHasEvent) showEvent(settlementEvent, view.settlement.position, keys, "settlement-event", signal, dated ? "Its latest settlement event" : "The settlement's event");
}

function title(kind) {
  return kind.charAt(0).toUpperCase() + kind.slice(1);
}

function transactionLink(id) {
  return link(transactionHref("transaction", id), h("code", {}, id));
}

function summary(view, isTrade) {
  return facts([
    ["Kind", isTrade ? "trade" : view.kind],
    ["Status", statusBadge(view.status)],
    ["Position", h("span", { "data-testid": "transaction-position" }, count(view.position))],
    ["Effective at", h("span", { title: view.effective_at ?? view.recorded_at, "data-testid": "transaction-effective" }, time(view.effective_at ?? view.recorded_at), " UTC", view.effective_at && view.effective_at !== view.recorded_at ? h("span", { class: "muted small" }, " (counts at another time than it was recorded)") : "")],
    ["Recorded at", h("span", { title: view.recorded_at }, time(view.recorded_at), " UTC")],
    view.expires_at && ["Expires at", h("span", { title: view.expires_at }, time(view.expires_at), " UTC")],
    view.reverses && [
      "Reverses",
      h(
        "span",
        { "data-testid": "reverses" },
        transactionLink(view.reverses),
        view.forced && [" ", h("span", { class: "badge bad", "data-testid": "forced", title: "The balance bounds were skipped on an administrator's request" }, "forced")],
      ),
    ],
    view.reversed_by && ["Reversed by", h("span", { "data-testid": "reversed-by" }, transactionLink(view.reversed_by))],
    metadataFact(view.metadata),
  ]);
}

function terms(trade) {
  return h(
    "div",
    { class: "split" },
    facts([
      ["Buyer", link(accountHref(trade.buyer), trade.buyer)],
      ["Seller", link(accountHref(trade.seller), trade.seller)],
      ["Instrument", trade.instrument],
      ["Quantity", h("span", { class: "mono" }, money(trade.quantity, trade.instrument), " ", trade.instrument)],
      ["Price", h("span", { class: "mono" }, trade.price, " ", trade.currency, " per unit")],
      ["Currency", trade.currency],
      ["Notional", h("span", { class: "mono", "data-testid": "trade-notional" }, money(trade.notional, trade.currency), " ", trade.currency)],
      trade.trade_date && ["Trade date", h("span", { "data-testid": "trade-date" }, trade.trade_date)],
      ["Settlement date", trade.settlement_date ? h("span", { "data-testid": "settlement-date" }, trade.settlement_date) : h("span", { class: "muted", "data-testid": "settlement-date" }, "none stated")],
    ]),
    table(
      [
        { label: "Fee payer", value: (f) => link(accountHref(f.payer), f.payer) },
        { label: "Paid to", value: (f) => link(accountHref(f.account), f.account) },
        { label: "Asset", value: (f) => f.asset },
        { label: "Fee", value: (f) => money(f.amount, f.asset), numeric: true },
      ],
      trade.fees,
      { empty: "No fees." },
    ),
  );
}

/** The columns every table of postings starts with; `leg` is the posting's index. */
const POSTING_COLUMNS = [
  { label: "#", value: (p) => p.leg, numeric: true },
  { label: "Source", value: (p) => link(accountHref(p.source), p.source) },
  { label: "Destination", value: (p) => link(accountHref(p.destination), p.destination) },
  { label: "Asset", value: (p) => p.asset },
];

function postingsTable(postings, testid) {
  const rows = postings.map((p, i) => ({ leg: i, ...p }));
  return h(
    "div",
    { "data-testid": testid },
    table(
      [
        ...POSTING_COLUMNS,
        { label: "Amount", value: (p) => money(p.amount, p.asset), numeric: true },
      ],
      rows,
      { empty: "No postings." },
    ),
  );
}

/**
 * Each reservation the settlement ended, beside what of it moved. A post moves each reserved
 * posting whole, in part or (left out) not at all, in the reserved order; the rest returns.
 */
function settlementRows(settlement) {
  let next = 0;
  return settlement.released.map((reserved, leg) => {
    const moved = settlement.postings[next];
    const same = moved && moved.source === reserved.source && moved.destination === reserved.destination && moved.asset === reserved.asset;
    const amount = same ? moved.amount : "0";
    if (same) next += 1;
    return { ...reserved, leg, moved: amount, returned: subtract(reserved.amount, amount) };
  });
}

function settlementView(settlement, eventElement) {
  const rows = settlementRows(settlement);
  return [
    h(
      "div",
      { class: "split" },
      facts([
        ["Status", statusBadge(settlement.status, "settlement-status")],
        ["Position", h("span", { "data-testid": "settlement-position" }, count(settlement.position))],
        ["Recorded at", h("span", { title: settlement.recorded_at }, time(settlement.recorded_at), " UTC")],
        metadataFact(settlement.metadata),
      ]),
      eventElement,
    ),
    h(
      "div",
      { "data-testid": "settlement-postings" },
      table(
        [
          ...POSTING_COLUMNS,
          { label: "Reserved", value: (p) => money(p.amount, p.asset), numeric: true },
          { label: "Moved", value: (p) => h("span", { "data-testid": `settlement-moved-${p.leg}` }, money(p.moved, p.asset)), numeric: true },
          { label: "Released", value: (p) => h("span", { "data-testid": `settlement-released-${p.leg}` }, money(p.returned, p.asset)), numeric: true },
        ],
        rows,
        { caption: settlement.status === "posted" ? "Every reservation ended: what of it moved, and what was released." : "Every reservation was released; nothing moved." },
      ),
    ),
  ];
}

/** What each status of a dated trade's settlement means, said in full. */
const DATED_STATUS = {
  pending: "nothing has settled yet: everything stays reserved until the settlement date",
  partially_settled: "settled in part: the rest stays reserved, and the ledger settles it on the settlement date",
  settled: "settled in full",
  failed: "failed: what had not settled was released; parts settled before stay settled",
  voided: "voided: what had not settled was released",
  expired: "expired: what had not settled was released",
};

/**
 * Where the settlement of a trade with a settlement date stands: its dates, what has settled so far
 * (per source, destination and asset), what stays reserved (per posting, in the order a settle's
 * `amounts` refer to), and for a failed one why, and what its end released.
 */
function datedSettlementView(trade, eventElement) {
  const settlement = trade.settlement;
  const ended = ["failed", "voided", "expired"].includes(settlement.status);
  const postings = (rows, testid, amountLabel, empty) =>
    h(
      "div",
      { "data-testid": testid },
      table(
        [...POSTING_COLUMNS, { label: amountLabel, value: (p) => money(p.amount, p.asset), numeric: true }],
        rows.map((p, leg) => ({ leg, ...p })),
        { empty },
      ),
    );
  return [
    h(
      "div",
      { class: "split" },
      facts([
        ["Status", h("span", {}, statusBadge(settlement.status, "settlement-status"), h("span", { class: "muted small" }, ` ${DATED_STATUS[settlement.status] ?? ""}`))],
        ["Trade date", h("span", { "data-testid": "settlement-trade-date" }, trade.trade_date)],
        ["Settlement date", h("span", { "data-testid": "settlement-settlement-date" }, trade.settlement_date)],
        [
          "Settles at",
          h(
            "span",
            { "data-testid": "settles-at", "data-value": trade.settles_at, title: trade.settles_at },
            time(trade.settles_at),
            " UTC",
            h("span", { class: "muted small" }, ended ? " (it was to settle then)" : settlement.status === "settled" ? "" : " (when the ledger posts what is still reserved)"),
          ),
        ],
        settlement.reason && ["Reason", h("span", { class: "bad", "data-testid": "settlement-reason" }, settlement.reason)],
        eventElement && ["Latest settlement", h("span", { "data-testid": "settlement-position" }, `position ${count(settlement.position)}`, h("span", { class: "muted" }, ` (${time(settlement.recorded_at)} UTC)`))],
        eventElement && metadataFact(settlement.metadata),
      ]),
      eventElement || h("p", { class: "muted small" }, "No part of it has settled yet: its only event is the trade's own."),
    ),
    h("div", { class: "split" },
      h("div", {}, h("h3", {}, "Settled so far"), postings(settlement.settled, "settlement-settled", "Settled", "Nothing has settled.")),
      h("div", {}, h("h3", {}, "Still reserved"), postings(settlement.remaining, "settlement-remaining", "Reserved", ended ? "Nothing: its settlement has ended." : "Nothing.")),
    ),
    ended &&
      h("div", {}, h("h3", {}, settlement.status === "failed" ? "Released when it failed" : "Released"), postings(settlement.released ?? [], "settlement-released", "Released", "Nothing was left to release.")),
  ];
}

/** The client's metadata: one fact per key, text as it is, anything else as JSON. */
function metadataFact(metadata) {
  const entries = Object.entries(metadata ?? {});
  if (!entries.length) return ["Metadata", h("span", { class: "muted" }, "none")];
  return [
    "Metadata",
    h(
      "div",
      { "data-testid": "metadata" },
      facts(entries.map(([key, value]) => [key, typeof value === "string" ? value : h("code", {}, JSON.stringify(value))])),
    ),
  ];
}

/** API key ids → names, when this key may list keys (admin); otherwise an empty map. */
async function apiKeyNames(signal) {
  if (!can("admin")) return new Map();
  try {
    const keys = await get("/v1/admin/keys", {}, { signal });
    return new Map(keys.items.map((k) => [k.id, k]));
  } catch {
    return new Map();
  }
}

/** The event at `position`, read from the log: what the chain covers, and who sent it. */
async function showEvent(element, position, keys, testid, signal, heading) {
  try {
    const page = await get("/v1/events", { after: position - 1, limit: 1 }, { signal });
    const event = page.items[0];
    if (!event || event.position !== position) throw new Error(`the log has no event at position ${position}`);
    const keyId = event.metadata.api_key_id;
    const key = keyId && (await keys).get(keyId);
    fill(
      element,
      heading && h("h3", { class: "small muted" }, heading),
      h(
        "div",
        { "data-testid": testid },
        facts([
          ["Position", h("span", { "data-testid": `${testid}-position` }, count(event.position))],
          ["Type", h("code", {}, event.type)],
          ["Hash", h("code", { "data-testid": `${testid}-hash`, class: "hash" }, event.hash)],
          ["Recorded at", h("code", {}, event.recorded_at)],
          ["Event id", h("code", {}, event.event_id)],
          [
            "API key",
            keyId
              ? h("span", {}, h("code", { "data-testid": `${testid}-api-key` }, keyId), key ? [" ", h("span", { class: "muted" }, `${key.name} (${key.prefix}…)`)] : "")
              : h("span", { class: "muted" }, "none (the ledger itself, or a server without authentication)"),
          ],
          ["Idempotency key", h("code", {}, event.metadata.idempotency_key ?? "")],
          event.metadata.request_id && ["Request id", h("code", {}, event.metadata.request_id)],
        ]),
      ),
    );
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}
