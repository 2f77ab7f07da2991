// Trading on the Account page. For an account that holds instruments: its positions (the quantity
// on the trade date, settled and not yet, what its open lots cost and their average cost, the mark
// they are valued at with the market value and unrealized P&L at it, the realized P&L to date),
// each instrument's open lots, and its realized P&L over a range of trade dates with the lots each
// disposal closed and the server's CSV. For any account with open holds: its settlement ladder,
// per settlement date and asset what they bring in and take out, with the totals.
//
// Every figure is the API's decimal string, shown as it is (unit and average costs with their
// trailing zeros dropped, the exact string in `data-value`); the only arithmetic is a ladder row's
// net, exact on decimal strings (format.js).

import { get, getText } from "../api.js";
import { amount, compare, count, scaleOf, subtract, time, trimmed } from "../format.js";
import { download, fill, h, link, money, problemBox, section, setQuery, table, transactionHref } from "../ui.js";

/**
 * Reads the account's positions and settlement ladder at the position the page read the account
 * at (`page.position`: the lots are an asynchronous projection, and the read waits for it to get
 * there, so every section shows the same state) and fills `page.trading` with the sections that
 * apply: none for an account that never held an instrument and has nothing due.
 */
export async function renderTrading(page, path) {
  const options = { signal: page.signal };
  const at = { min_position: page.position };
  const [positions, ladder] = await Promise.all([
    get(`${path}/positions`, at, options).catch((error) => error),
    get(`${path}/settlements`, at, options).catch((error) => error),
  ]);
  for (const read of [positions, ladder]) if (read instanceof Error && read.name === "AbortError") return;
  const holdsInstruments = positions instanceof Error || positions.positions.length > 0;
  const hasDues = ladder instanceof Error || ladder.items.length > 0;
  const sections = [];
  const realized = h("div", { "data-testid": "realized" });
  if (positions instanceof Error) {
    sections.push(section("Positions", h("div", { "data-testid": "positions" }, problemBox(positions))));
  } else if (holdsInstruments) {
    sections.push(
      section("Positions", h("div", { "data-testid": "positions" }, positionsView(positions))),
      section("Open lots", h("div", { "data-testid": "lots" }, lotsView(positions.positions))),
    );
  }
  if (holdsInstruments) sections.push(section("Realized P&L", realized));
  if (holdsInstruments || hasDues) {
    sections.push(section("Settlement ladder", h("div", { "data-testid": "ladder" }, ladder instanceof Error ? problemBox(ladder) : ladderView(ladder))));
  }
  fill(page.trading, sections);
  if (holdsInstruments) await renderRealized(page, path, realized);
}

/** A book's key in test hooks: an instrument may be held at a cost in more than one currency. */
function bookKey(p) {
  return `${p.instrument}-${p.currency}`;
}

/** A figure in its asset, negative in the negative colour; "–" when the API has none (null). */
function figure(value, asset, testid, none = "–", noneTitle) {
  if (value === null || value === undefined) return h("span", { class: "muted", "data-testid": testid, title: noneTitle }, none);
  const node = money(value, asset);
  node.dataset.testid = testid;
  if (value.startsWith("-")) node.classList.add("negative");
  return node;
}

/** A quotient the API gives at 18 places (a unit or average cost), read at its currency's scale or more. */
function quotient(value, currency, testid) {
  if (value === null || value === undefined || value === "") return h("span", { class: "muted", "data-testid": testid }, "–");
  const shown = amount(trimmed(value, scaleOf(currency) ?? 2), currency);
  return h("span", { class: value.startsWith("-") ? "amount negative" : "amount", "data-value": value, "data-asset": currency, "data-testid": testid, title: value }, shown);
}

/** A figure followed by its asset's code, for a column whose rows may be in different assets. */
function inAsset(node, asset) {
  return [node, h("span", { class: "asset" }, ` ${asset}`)];
}

// ---------------------------------------------------------------------------------------------
// Positions and lots

function positionsView(read) {
  const rows = read.positions;
  const uncosted = rows.some((p) => compare(p.uncosted, "0") !== 0);
  const column = (label, field, asset, extra = {}) => ({
    label,
    numeric: true,
    value: (p) => figure(p[field], asset(p), `position-${field.replaceAll("_", "-")}-${bookKey(p)}`, extra.none, extra.noneTitle),
  });
  const instrument = (p) => p.instrument;
  const currency = (p) => p.currency;
  const noMark = { none: "no mark", noneTitle: "no price of this instrument in this currency at or before now" };
  return [
    h(
      "p",
      { class: "muted small" },
      `Per instrument and the currency it was bought in, at position ${count(read.position)}. Quantity is on the trade date (settled, plus what trades awaiting their settlement date and other holds bring in, less what they take out); the cost basis is what the open lots cost, and the average cost that over their quantity. `,
      "Market value is the quantity at the latest mark at or before now; unrealized P&L is the open lots at that mark less their cost basis.",
    ),
    h(
      "div",
      { class: "scroll-x" },
      table(
        [
          { label: "Instrument", value: (p) => [h("strong", {}, p.instrument), h("span", { class: "asset" }, ` in ${p.currency}`)] },
          { label: "Method", value: (p) => h("span", { "data-testid": `position-method-${bookKey(p)}` }, p.booking_method) },
          column("Quantity", "quantity", instrument),
          column("Settled", "settled", instrument),
          column("Unsettled", "unsettled", instrument),
          uncosted && column("Without cost", "uncosted", instrument),
          column("Cost basis", "cost_basis", currency),
          { label: "Average cost", numeric: true, value: (p) => quotient(p.average_cost, p.currency, `position-average-cost-${bookKey(p)}`) },
          { label: "Mark", numeric: true, value: markCell },
          column("Market value", "market_value", currency, noMark),
          column("Unrealized", "unrealized", currency, noMark),
          column("Realized", "realized", currency),
        ].filter(Boolean),
        rows,
        { rowAttributes: (p) => ({ "data-testid": `position-${bookKey(p)}` }) },
      ),
    ),
  ];
}

/** The mark a position is valued at: its price, when it held, and the position that recorded it. */
function markCell(p) {
  const testid = `position-mark-${bookKey(p)}`;
  if (!p.mark) return h("span", { class: "muted", "data-testid": testid, title: "no price of this instrument in this currency at or before now" }, "no mark");
  return h(
    "span",
    { "data-testid": testid, "data-value": p.mark.price, "data-as-of": p.mark.as_of, "data-position": p.mark.position },
    amount(p.mark.price, p.currency),
    h("div", { class: "muted small", title: p.mark.as_of }, `as of ${time(p.mark.as_of)} UTC · position ${count(p.mark.position)}`),
  );
}

function lotsView(positions) {
  const rows = positions.flatMap((p) => p.lots.map((lot) => ({ ...lot, instrument: p.instrument, currency: p.currency, method: p.booking_method })));
  return [
    h("p", { class: "muted small" }, "Each instrument's open lots in the order they were opened; a short lot has a negative quantity, and its cost is what its sale brought, taken off. Disposals close them by the account's booking method."),
    h(
      "div",
      { class: "scroll-x" },
      table(
        [
          { label: "Instrument", value: (l) => [h("strong", {}, l.instrument), h("span", { class: "asset" }, ` in ${l.currency}`)] },
          { label: "Lot", value: (l) => h("code", {}, l.lot_id) },
          { label: "Trade date", value: (l) => h("span", { class: "nowrap" }, l.trade_date) },
          { label: "Transaction", value: (l) => link(transactionHref("transaction", l.transaction_id), h("code", { title: l.transaction_id }, l.transaction_id.slice(-12))) },
          { label: "Quantity", numeric: true, value: (l) => figure(l.quantity, l.instrument, `lot-quantity-${l.lot_id}`) },
          { label: "Cost", numeric: true, value: (l) => inAsset(figure(l.cost, l.currency, `lot-cost-${l.lot_id}`), l.currency) },
          { label: "Unit cost", numeric: true, value: (l) => inAsset(quotient(l.unit_cost, l.currency, `lot-unit-cost-${l.lot_id}`), l.currency) },
        ],
        rows,
        {
          href: (l) => transactionHref("transaction", l.transaction_id),
          rowAttributes: (l) => ({ "data-testid": `lot-${l.lot_id}` }),
          empty: "No open lots: every position is closed, or its units came without a cost.",
        },
      ),
    ),
  ];
}

// ---------------------------------------------------------------------------------------------
// Realized P&L

/** The range of trade dates, from the address (`?realized_from=&realized_to=`): every date by default. */
function realizedChoice() {
  const query = new URLSearchParams(location.search);
  return { from: query.get("realized_from") || "", to: query.get("realized_to") || "" };
}

function realizedQuery(choice, page) {
  return { from: choice.from || undefined, to: choice.to || undefined, min_position: page.position };
}

async function renderRealized(page, path, element) {
  const choice = realizedChoice();
  const from = h("input", { type: "date", name: "realized_from", value: choice.from, "data-testid": "realized-from" });
  const to = h("input", { type: "date", name: "realized_to", value: choice.to, "data-testid": "realized-to" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const downloadButton = h(
    "button",
    { type: "button", "data-testid": "realized-download", onclick: () => downloadRealized(page, path, choice, downloadButton, body) },
    "Download CSV",
  );
  const submit = (event) => {
    event.preventDefault();
    setQuery({ realized_from: from.value || undefined, realized_to: to.value || undefined });
    renderRealized(page, path, element);
  };
  fill(
    element,
    h(
      "form",
      { class: "toolbar", onsubmit: submit },
      h("label", {}, "Trade dates from ", from),
      h("label", {}, "to ", to),
      h("span", { class: "muted small" }, "(both included; empty: from the first, to the last)"),
      h("button", { type: "submit", "data-testid": "realized-show" }, "Show"),
      downloadButton,
    ),
    body,
  );
  try {
    const read = await get(`${path}/realized`, realizedQuery(choice, page), { signal: page.signal });
    fill(body, realizedView(read));
  } catch (error) {
    if (error.name !== "AbortError") fill(body, problemBox(error));
  }
}

function realizedView(read) {
  const range = `${read.from ?? "the first trade date"} to ${read.to ?? "the last"}`;
  const cards = read.totals.map((t) =>
    h(
      "div",
      { class: "card" },
      h("div", { class: "label" }, `Realized · ${t.instrument} in ${t.currency}`),
      h("div", { class: "value num" }, figure(t.realized, t.currency, `realized-total-${t.instrument}-${t.currency}`)),
      h("div", { class: "muted small" }, range),
    ),
  );
  // Each disposal, then the lots it closed beneath it.
  const rows = read.items.flatMap((item) => [{ item }, ...item.lots.map((lot) => ({ item, lot }))]);
  const of = (row) => row.lot ?? row.item;
  const cell = (field, asset) => (row) => {
    const testid = row.lot ? `realized-lot-${field}-${row.item.position}-${row.lot.lot_id}` : `realized-${field}-${row.item.position}-${bookKey(row.item)}`;
    return figure(of(row)[field], asset(row.item), testid);
  };
  return [
    cards.length ? h("div", { class: "cards" }, cards) : null,
    h(
      "div",
      { class: "scroll-x" },
      table(
        [
          { label: "Trade date", value: (row) => (row.lot ? "" : h("span", { class: "nowrap" }, row.item.date)) },
          { label: "Transaction", value: (row) => (row.lot ? "" : link(transactionHref("transaction", row.item.transaction_id), h("code", { title: row.item.transaction_id }, row.item.transaction_id.slice(-12)))) },
          { label: "Instrument", value: (row) => (row.lot ? "" : [h("strong", {}, row.item.instrument), h("span", { class: "asset" }, ` in ${row.item.currency}`)]) },
          { label: "Lot closed", value: lotCell },
          { label: "Quantity", numeric: true, value: cell("quantity", (item) => item.instrument) },
          { label: "Proceeds", numeric: true, value: cell("proceeds", (item) => item.currency) },
          { label: "Cost", numeric: true, value: cell("cost", (item) => item.currency) },
          { label: "Realized", numeric: true, value: cell("realized", (item) => item.currency) },
        ],
        rows,
        {
          href: (row) => (row.lot ? null : transactionHref("transaction", row.item.transaction_id)),
          rowAttributes: (row) =>
            row.lot
              ? { "data-testid": `realized-lot-${row.item.position}-${row.lot.lot_id}`, class: "sub", tabindex: null }
              : { "data-testid": `realized-item-${row.item.position}-${bookKey(row.item)}` },
          empty: `No disposal closed a lot from ${range}.`,
        },
      ),
    ),
  ];
}

/** A disposal: how many lots it closed; a lot: which, when it was opened and how long it was held. */
function lotCell(row) {
  if (!row.lot) return h("span", { class: "muted" }, row.item.lots.length === 1 ? "1 lot" : `${count(row.item.lots.length)} lots`);
  const days = row.lot.holding_days;
  return h("span", {}, h("code", {}, row.lot.lot_id), h("span", { class: "muted small" }, ` opened ${row.lot.opened}, held ${count(days)} ${days === 1 ? "day" : "days"}`));
}

/** The server's own CSV of the range on screen: one row per lot closed. */
async function downloadRealized(page, path, choice, button, body) {
  button.disabled = true;
  try {
    const csv = await getText(`${path}/realized`, { query: realizedQuery(choice, page), accept: "text/csv", signal: page.signal });
    download(`realized_${page.code.replaceAll(":", "-")}_${choice.from || "start"}_${choice.to || "now"}.csv`, csv, "text/csv");
  } catch (error) {
    if (error.name !== "AbortError") fill(body, problemBox(error));
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Settlement ladder

/** A ladder row's key in test hooks: its date (`undated` for holds without one) and asset. */
function rungKey(item) {
  return `${item.date ?? "undated"}-${item.asset}`;
}

/** What a row brings in less what it takes out, exactly, with its sign made visible. */
function net(item, testid) {
  const value = subtract(item.due_in, item.due_out);
  const node = money(value, item.asset);
  node.dataset.testid = testid;
  if (value.startsWith("-")) node.classList.add("negative");
  else if (compare(value, "0") > 0) node.textContent = `+${node.textContent}`;
  return node;
}

function ladderView(ladder) {
  const rows = ladder.items.map((item, i) => ({ ...item, first: i === 0 || ladder.items[i - 1].date !== item.date }));
  const dues = (key, testid) => [
    { label: "Due in", numeric: true, value: (r) => figure(r.due_in, r.asset, `${testid}-in-${key(r)}`) },
    { label: "Due out", numeric: true, value: (r) => figure(r.due_out, r.asset, `${testid}-out-${key(r)}`) },
    { label: "Net", numeric: true, value: (r) => net(r, `${testid}-net-${key(r)}`) },
  ];
  const undated = h("span", { class: "muted", title: "two-phase transactions and trades: they settle when a client posts or voids them" }, "no date");
  return [
    h(
      "p",
      { class: "muted small" },
      `At position ${count(ladder.position)}: what the account's open holds bring in (due in) and take out (due out) on each settlement date, cash and instruments alike; holds without a settlement date last. `,
      "The totals, over every open hold, are its pending credits and pending debits.",
    ),
    h(
      "div",
      { class: "split" },
      h(
        "div",
        {},
        table(
          [
            { label: "Settlement date", value: (r) => (r.first ? h("span", { class: "nowrap" }, r.date ?? undated) : "") },
            { label: "Asset", value: (r) => h("strong", {}, r.asset) },
            ...dues(rungKey, "ladder"),
          ],
          rows,
          { rowAttributes: (r) => ({ "data-testid": `ladder-${rungKey(r)}`, class: r.first ? "group-start" : null }), empty: "Nothing due: the account has no open hold." },
        ),
      ),
      h(
        "div",
        {},
        h("h3", {}, "Totals"),
        table([{ label: "Asset", value: (t) => h("strong", {}, t.asset) }, ...dues((t) => t.asset, "ladder-total")], ladder.totals, {
          rowAttributes: (t) => ({ "data-testid": `ladder-total-${t.asset}` }),
          empty: "Nothing due.",
        }),
      ),
    ),
  ];
}
