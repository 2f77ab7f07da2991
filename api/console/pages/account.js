// Account: one account as the API sees it — status, balances and limits per asset, for an account
// that holds instruments its positions, lots and realized P&L, its settlement ladder (trading.js),
// its history (cursor-paged, newest first), the balance over time, a statement for a period with
// its CSV, and the actions the key may take (freeze, unfreeze, close, set limits), each confirmed
// first.

import { get, getAt, getText, send } from "../api.js";
import { can } from "../app.js";
import { lineChart } from "../chart.js";
import { amount, compare, count, effective, endOfDay, exactTime, forChart, scaleOf, sum, time } from "../format.js";
import {
  accountHref,
  confirmAction,
  download,
  facts,
  fill,
  h,
  link,
  money,
  problemBox,
  section,
  setQuery,
  statusBadge,
  table,
  toast,
  transactionHref,
} from "../ui.js";
import { renderTrading } from "./trading.js";

/** History entries per page of the table. */
const HISTORY_PAGE_SIZE = 50;
/** History entries the chart draws at most: the newest ones, one page at the API's largest size. */
const CHART_ENTRIES_MAX = 1000;
/** Statement entries shown on the page at most; the CSV download has them all. */
const STATEMENT_ROWS_SHOWN = 500;

export async function render({ main, params, signal }) {
  // `newer`: the cursors of the history pages newer than the one on screen, for "← Newer".
  await show({ main, code: params.code, signal, newer: [] });
}

/**
 * Reads the account and lays out the page; `minPosition` (after a write) makes every read wait
 * until it reflects that position, so the page shows what the user just did.
 */
async function show(page, minPosition) {
  const { main, signal } = page;
  let read;
  try {
    read = await getAt(accountPath(page.code), { min_position: minPosition }, { signal });
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) throw error;
    return showUnknown(page, error);
  }
  const account = read.value;
  if (account.code !== page.code) {
    // Opened by id: the address becomes the account's code, which is what people share.
    page.code = account.code;
    history.replaceState(null, "", accountHref(account.code) + location.search);
  }
  document.title = `${account.code} · ledger`;
  page.account = account;
  page.position = read.position;
  page.minPosition = minPosition;
  page.actionProblem = h("div", { "data-testid": "actions-problem" });
  page.history = h("div", { "data-testid": "history" });
  page.chart = h("div", { "data-testid": "chart" });
  page.statement = h("div", { "data-testid": "statement" });
  page.balances = h("div", { "data-testid": "balances" });
  page.trading = h("div", { "data-testid": "trading" });
  fill(
    main,
    breadcrumbs(account.code),
    h("div", { class: "page-head" }, h("h1", {}, h("span", { "data-testid": "account-code" }, account.code), " ", statusBadge(account.status, "account-status")), actions(page)),
    page.actionProblem,
    h("div", { id: "limits-form" }),
    section("Account", accountFacts(account, read.position)),
    section("Balances", page.balances),
    page.trading,
    section("Balance over time", page.chart),
    section("History", page.history),
    section("Statement", page.statement),
  );
  const balancesShown = renderBalances(page);
  const tradingShown = renderTrading(page, accountPath(page.code));
  const historyShown = renderHistory(page);
  try {
    page.recent = await get(`${accountPath(page.code)}/history`, { limit: CHART_ENTRIES_MAX, min_position: minPosition }, { signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    fill(page.chart, problemBox(error));
    page.recent = null;
  }
  page.busiest = busiestAsset(page.recent?.items ?? [], account);
  if (page.recent) renderChart(page);
  await Promise.all([balancesShown, tradingShown, historyShown, renderStatement(page)]);
}

/** The asset with the most recent postings: what the chart and the statement open on. */
function busiestAsset(items, account) {
  const postings = new Map();
  for (const item of items) if (item.type === "posting") postings.set(item.asset, (postings.get(item.asset) ?? 0) + 1);
  const [top] = [...postings].sort((a, b) => b[1] - a[1]);
  return top?.[0] ?? account.balances[0]?.asset;
}

/** The API path of an account; a code's colons stay as they are (they are valid in a path). */
function accountPath(code) {
  return `/v1/accounts/${encodeURIComponent(code).replaceAll("%3A", ":")}`;
}

/** Not an account (404) or not a valid code (422): the problem as the server put it. */
function showUnknown(page, error) {
  const looksLikeCode = !/^[0-9a-f-]{36}$/i.test(page.code);
  fill(
    page.main,
    looksLikeCode && breadcrumbs(page.code),
    h("h1", {}, page.code),
    h("p", {}, error.status === 404 ? "The ledger has no account with this code or id." : "The ledger could not read this account."),
    h("div", { "data-testid": "account-problem" }, problemBox(error)),
    h("p", {}, link("/console/accounts", "Browse accounts")),
  );
}

/** Accounts / broker / clients / alice: each segment opens the tree at that prefix. */
function breadcrumbs(code) {
  const segments = code.split(":");
  const crumbs = [link("/console/accounts", "Accounts")];
  segments.forEach((segment, i) => {
    crumbs.push(" / ");
    const prefix = segments.slice(0, i + 1).join(":");
    crumbs.push(i === segments.length - 1 ? h("span", {}, segment) : link(`/console/accounts?prefix=${encodeURIComponent(prefix)}`, segment));
  });
  return h("nav", { class: "breadcrumbs", "aria-label": "Account code" }, crumbs);
}

function accountFacts(account, position) {
  return facts([
    ["Id", h("code", { "data-testid": "account-id" }, account.id)],
    ["Status", account.status === "frozen" ? "frozen: takes no postings until unfrozen" : account.status === "closed" ? "closed: final, takes no postings" : "open"],
    ["Version", h("span", { "data-testid": "account-version" }, count(account.version), h("span", { class: "muted" }, " (position of its last change)"))],
    ["Opened", [time(account.opened_at), " UTC", h("span", { class: "muted" }, ` at position ${count(account.position)}`)]],
    ["Allow negative", account.allow_negative ? "yes: no lower bound unless a limit sets one" : "no: balances stay at or above zero unless a limit allows less"],
    ["Metadata", metadataView(account.metadata)],
    ["Read at", h("span", { "data-testid": "read-position" }, `position ${count(position)}`, h("span", { class: "muted" }, " (the ledger's state this page shows)"))],
  ]);
}

function metadataView(metadata) {
  const entries = Object.entries(metadata ?? {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h(
    "dl",
    { class: "facts metadata" },
    entries.map(([key, value]) => [h("dt", {}, key), h("dd", {}, typeof value === "string" ? value : h("code", {}, JSON.stringify(value)))]),
  );
}

/** Every asset the account holds or has limits in, with its figures and bounds. */
function balanceTable(account) {
  const limits = new Map(account.limits.map((l) => [l.asset, l]));
  const assets = [...new Set([...account.balances.map((b) => b.asset), ...limits.keys()])].sort();
  const balances = new Map(account.balances.map((b) => [b.asset, b]));
  // The trade-date position (as if every hold had settled), from a server that gives it.
  const tradeDates = account.balances.some((b) => b.trade_date_balance !== undefined);
  const figure = (field, label) => ({
    label,
    numeric: true,
    value: (asset) => {
      const value = balances.get(asset)?.[field];
      if (value === undefined) return h("span", { class: "muted" }, "–");
      const node = money(value, asset);
      node.dataset.testid = `balance-${label.toLowerCase().replace(" ", "-")}-${asset}`;
      if (value.startsWith("-")) node.classList.add("negative");
      return node;
    },
  });
  const bound = (field, asset) => {
    const value = limits.get(asset)?.[field];
    const testid = `limit-${field === "min_balance" ? "min" : "max"}-${asset}`;
    if (value !== null && value !== undefined) {
      const node = money(value, asset);
      node.dataset.testid = testid;
      return node;
    }
    const none = field === "min_balance" && !account.allow_negative ? amount("0", asset) : "unbounded";
    return h("span", { class: "muted", "data-testid": testid, title: "no limit set" }, none);
  };
  return table(
    [
      { label: "Asset", value: (asset) => h("strong", {}, asset) },
      figure("balance", "Posted"),
      figure("pending_debits", "Pending debits"),
      figure("pending_credits", "Pending credits"),
      figure("available", "Available"),
      tradeDates && figure("trade_date_balance", "Trade date"),
      { label: "Min balance", numeric: true, value: (asset) => bound("min_balance", asset) },
      { label: "Max balance", numeric: true, value: (asset) => bound("max_balance", asset) },
      { label: "Last change", numeric: true, value: (asset) => (balances.has(asset) ? count(balances.get(asset).position) : "") },
    ].filter(Boolean),
    assets,
    { empty: "No balances yet: nothing has been posted to this account." },
  );
}

// ---------------------------------------------------------------------------------------------
// Balances as of a date

/**
 * The balances now, or as of the end of a day (`?as_of=2026-12-04`), optionally as the ledger
 * knew them at a position (`&known_at_position=`): entries count at their effective time.
 */
async function renderBalances(page) {
  const query = new URLSearchParams(location.search);
  const asOf = query.get("as_of") || "";
  const knownAt = query.get("known_at_position") || "";
  const date = h("input", { type: "date", name: "as_of", value: asOf, "data-testid": "asof-date", "aria-label": "Balances as of the end of this day (UTC)" });
  const known = h("input", { type: "number", min: 0, step: 1, name: "known_at_position", value: knownAt, placeholder: "the head", class: "narrow", "data-testid": "asof-known-at", "aria-label": "As known at this position" });
  const apply = (next) => {
    setQuery(next);
    renderBalances(page);
  };
  const form = h(
    "form",
    { class: "toolbar", onsubmit: (event) => { event.preventDefault(); apply({ as_of: date.value || undefined, known_at_position: date.value && known.value ? known.value : undefined }); } },
    h("label", {}, "As of the end of ", date),
    h("label", {}, "as known at position ", known),
    h("span", { class: "muted small" }, "(a day in UTC; empty position: all the ledger knows now)"),
    h("button", { type: "submit", "data-testid": "asof-show" }, "Show"),
    h("button", { type: "button", "data-testid": "asof-now", disabled: !asOf, onclick: () => apply({ as_of: undefined, known_at_position: undefined }) }, "Now"),
  );
  if (!asOf) return fill(page.balances, form, h("div", { class: "scroll-x" }, balanceTable(page.account)));
  fill(page.balances, form, h("p", { class: "muted" }, "Loading…"));
  try {
    const read = await balancesAsOf(page, endOfDay(asOf), knownAt || undefined);
    fill(page.balances, form, asOfView(page.account, endOfDay(asOf), read));
  } catch (error) {
    if (error.name !== "AbortError") fill(page.balances, form, problemBox(error));
  }
}

/**
 * The account's posted balances as of `asOf`: from its balances route, or, on a server whose
 * balances route takes no `as_of`, from the trial balance report (the same figures, for every
 * account at once).
 */
async function balancesAsOf(page, asOf, knownAt) {
  const options = { signal: page.signal };
  try {
    const read = await get(`${accountPath(page.code)}/balances`, { as_of: asOf, known_at_position: knownAt, min_position: page.minPosition }, options);
    return { balances: read.balances, knownAt: read.known_at_position ?? read.as_of_position, fromReport: false };
  } catch (error) {
    if (!(error.status === 400 && /unknown field `(as_of|known_at_position)`/.test(error.problem?.detail ?? ""))) throw error;
  }
  const report = await get("/v1/reports/trial-balance", { as_of: asOf, known_at_position: knownAt, min_position: page.minPosition }, options);
  return { balances: report.rows.filter((r) => r.account === page.account.code), knownAt: report.known_at_position, fromReport: true };
}

function asOfView(account, asOf, read) {
  const then = new Map(read.balances.map((b) => [b.asset, b]));
  const now = new Map(account.balances.map((b) => [b.asset, b]));
  const assets = [...new Set([...then.keys(), ...now.keys()])].sort();
  return [
    h(
      "p",
      { class: "muted small", "data-testid": "asof-caption" },
      `Posted balances over every entry effective at or before ${exactTime(asOf)} UTC`,
      read.knownAt !== undefined && read.knownAt !== null ? `, as known at position ${count(read.knownAt)}` : "",
      ". Pending holds are not counted.",
      read.fromReport ? " (Read from the trial balance report: this server's balances route takes no as_of.)" : "",
    ),
    h(
      "div",
      { class: "scroll-x" },
      table(
        [
          { label: "Asset", value: (asset) => h("strong", {}, asset) },
          { label: `Posted as of ${asOf.slice(0, 10)}`, numeric: true, value: (asset) => withTestid(colour(money(then.get(asset)?.balance ?? "0", asset)), `balance-asof-${asset}`) },
          { label: "Posted now", numeric: true, value: (asset) => (now.has(asset) ? colour(money(now.get(asset).balance, asset)) : h("span", { class: "muted" }, "–")) },
        ],
        assets,
        { empty: "No balances as of then." },
      ),
    ),
  ];
}

function colour(node) {
  if (node.dataset.value.startsWith("-")) node.classList.add("negative");
  return node;
}

// ---------------------------------------------------------------------------------------------
// Actions

/** The actions this key may take on the account in its status; none for a read-only key. */
function actions(page) {
  const { account } = page;
  if (account.status === "closed") return null;
  const buttons = [];
  if (can("write")) {
    if (account.status === "open") buttons.push(actionButton("freeze", "Freeze", () => statusAction(page, "freeze")));
    if (account.status === "frozen") buttons.push(actionButton("unfreeze", "Unfreeze", () => statusAction(page, "unfreeze")));
    buttons.push(actionButton("close", "Close account", () => statusAction(page, "close")));
  }
  if (can("admin")) buttons.push(actionButton("limits", "Set limits…", () => showLimitsForm(page)));
  return buttons.length ? h("div", { class: "toolbar actions" }, buttons) : null;
}

function actionButton(name, label, onclick) {
  return h("button", { type: "button", "data-testid": `action-${name}`, onclick }, label);
}

/** What each status change does, said exactly, for the confirmation. */
function statusChangeText(account, action) {
  switch (action) {
    case "freeze":
      return ["Freeze this account?", `${account.code} will take no postings — no debits and no credits — until it is unfrozen. Reads still work.`, "Freeze"];
    case "unfreeze":
      return ["Unfreeze this account?", `${account.code} will take postings again, within its balance limits.`, "Unfreeze"];
    default:
      return ["Close this account for good?", closeText(account), "Close account"];
  }
}

/** Closing is refused while a balance is not zero or a hold is pending: say so before trying. */
function closeText(account) {
  const nonZero = (value) => compare(value ?? "0", "0") !== 0;
  const held = account.balances.filter((b) => nonZero(b.balance)).map((b) => `${amount(b.balance, b.asset)} ${b.asset}`);
  const holds = account.balances.filter((b) => nonZero(b.pending_debits) || nonZero(b.pending_credits)).map((b) => b.asset);
  const obstacles = [held.length && `still holds ${held.join(", ")}`, holds.length && `has pending holds in ${holds.join(", ")}`].filter(Boolean);
  if (!obstacles.length) return `${account.code} will be closed. Closing is final: it will never take a posting again, and it cannot be reopened.`;
  return `${account.code} ${obstacles.join(" and ")}: the ledger will refuse to close it until every balance is zero and no hold is pending.`;
}

async function statusAction(page, action) {
  const [title, detail, label] = statusChangeText(page.account, action);
  if (!(await confirmAction(title, detail, label))) return;
  await write(page, () => send("POST", `${accountPath(page.code)}/${action}`, {}), (result) => `${page.code} is ${result.status} (position ${count(result.position)})`);
}

/** Sends a write; on success re-reads the page at the write's position, on failure quotes why. */
async function write(page, sendIt, describe) {
  fill(page.actionProblem);
  let result;
  try {
    result = await sendIt();
  } catch (error) {
    fill(page.actionProblem, problemBox(error));
    return false;
  }
  toast(describe(result));
  await show(page, result.position).catch((error) => {
    if (error.name !== "AbortError") fill(page.actionProblem, problemBox(error));
  });
  return true;
}

async function showLimitsForm(page) {
  const holder = document.getElementById("limits-form");
  if (holder.childElementCount) return fill(holder);
  const assets = (await get("/v1/assets", {}, { signal: page.signal })).items.map((a) => a.code);
  const current = new Map(page.account.limits.map((l) => [l.asset, l]));
  const asset = h("select", { name: "asset", "data-testid": "limits-asset", required: true }, assets.map((code) => h("option", { value: code, selected: code === (page.busiest ?? assets[0]) }, code)));
  const decimal = (name) => h("input", { name, inputmode: "decimal", pattern: "-?[0-9]+(\\.[0-9]+)?", placeholder: "unbounded", "data-testid": `limits-${name}`, size: 16 });
  const min = decimal("min");
  const max = decimal("max");
  const prefill = () => {
    min.value = current.get(asset.value)?.min_balance ?? "";
    max.value = current.get(asset.value)?.max_balance ?? "";
  };
  asset.addEventListener("change", prefill);
  prefill();
  const form = h(
    "form",
    { class: "toolbar", onsubmit: (event) => submitLimits(event, page, { asset, min, max }) },
    h("label", {}, "Asset ", asset),
    h("label", {}, "Min balance ", min),
    h("label", {}, "Max balance ", max),
    h("button", { type: "submit", class: "primary", "data-testid": "limits-submit" }, "Set limits"),
    h("button", { type: "button", onclick: () => fill(holder) }, "Cancel"),
  );
  fill(
    holder,
    section(
      "Set limits",
      h("p", { class: "muted small" }, "Bounds on the balance in one asset; every later debit and credit is checked against them. Leave a field empty for no bound (the minimum is then 0, or unbounded for an account that allows negative balances)."),
      form,
    ),
  );
  asset.focus();
}

async function submitLimits(event, page, { asset, min, max }) {
  event.preventDefault();
  const body = { asset: asset.value, min_balance: min.value.trim() || null, max_balance: max.value.trim() || null };
  const before = page.account.limits.find((l) => l.asset === body.asset) ?? {};
  const unset = { min_balance: page.account.allow_negative ? "none" : "none (0)", max_balance: "none" };
  const shown = (field, value) => (value === null || value === undefined ? unset[field] : `${amount(value, body.asset)} ${body.asset}`);
  const same = (a, b) => (a ?? null) === null || (b ?? null) === null ? (a ?? null) === (b ?? null) : compare(a, b) === 0;
  const change = (label, field) =>
    same(before[field], body[field]) ? `${label} ${shown(field, body[field])} (unchanged)` : `${label} ${shown(field, before[field])} → ${shown(field, body[field])}`;
  const confirmed = await confirmAction(
    `Set the ${body.asset} limits of ${page.code}?`,
    `${change("Minimum balance:", "min_balance")}; ${change("maximum balance:", "max_balance")}. Every later posting or hold in ${body.asset} that would take the balance outside these bounds will be refused; balances already outside them stay as they are.`,
    "Set limits",
  );
  if (!confirmed) return;
  await write(page, () => send("PATCH", `${accountPath(page.code)}/limits`, body), (r) => `${body.asset} limits of ${page.code} set (position ${count(r.position)})`);
}

// ---------------------------------------------------------------------------------------------
// History

/**
 * One page of history. The cursor of the page on screen is in the address (`?cursor=`), so the
 * page can be bookmarked; the cursors of newer pages are remembered while the page is open.
 */
async function renderHistory(page) {
  const query = new URLSearchParams(location.search);
  const cursor = query.get("cursor") || undefined;
  const asset = query.get("history_asset") || undefined;
  let read;
  try {
    read = await get(`${accountPath(page.code)}/history`, { limit: HISTORY_PAGE_SIZE, cursor, asset, min_position: page.minPosition }, { signal: page.signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    const newest = h("button", { type: "button", "data-testid": "history-newest", onclick: () => { setQuery({ cursor: undefined }); renderHistory(page); } }, "Back to the newest entries");
    return fill(page.history, problemBox(error), cursor && newest);
  }
  const go = (next, newer) => {
    page.newer = newer;
    setQuery({ cursor: next });
    renderHistory(page);
  };
  const assets = page.account.balances.map((b) => b.asset);
  const filter = h(
    "select",
    { "aria-label": "Asset", "data-testid": "history-asset", onchange: (e) => { setQuery({ history_asset: e.target.value || undefined }); go(undefined, []); } },
    h("option", { value: "" }, "All assets"),
    assets.map((a) => h("option", { value: a, selected: a === asset }, a)),
  );
  const first = page.newer.length * HISTORY_PAGE_SIZE + 1;
  const last = first + read.items.length - 1;
  let where = `entries ${count(first)}–${count(last)}, newest first`;
  if (!cursor) where = `the newest ${count(read.items.length)} entries`;
  else if (!page.newer.length) where = `${count(read.items.length)} entries from a bookmarked point`;
  fill(
    page.history,
    h(
      "div",
      { class: "toolbar" },
      filter,
      h("button", { type: "button", "data-testid": "history-newest", disabled: !cursor, onclick: () => go(undefined, []) }, "Newest"),
      h("button", { type: "button", "data-testid": "history-newer", disabled: !cursor, onclick: () => go(page.newer.at(-1), page.newer.slice(0, -1)) }, "← Newer"),
      h("button", { type: "button", "data-testid": "history-older", disabled: !read.next_cursor, onclick: () => go(read.next_cursor, [...page.newer, cursor]) }, "Older →"),
      h("span", { class: "muted small", "data-testid": "history-range" }, where, read.next_cursor ? "" : " · the oldest entry is on this page"),
    ),
    h("div", { class: "scroll-x" }, historyTable(read.items)),
  );
}

function historyTable(items) {
  const isPosting = (item) => item.type === "posting";
  return table(
    [
      { label: "Position", numeric: true, value: (item) => count(item.position) },
      { label: "Effective (UTC)", value: effectiveCell },
      { label: "Recorded (UTC)", value: (item) => h("span", { class: "nowrap", "data-field": "recorded", title: item.recorded_at }, time(item.recorded_at)) },
      { label: "Entry", value: entryLabel },
      { label: "Counterparty", value: (item) => (isPosting(item) ? link(accountHref(item.counterparty), item.counterparty) : "") },
      { label: "Asset", value: (item) => item.asset ?? h("span", { class: "muted" }, "all") },
      { label: "Amount", numeric: true, value: (item) => (isPosting(item) ? signed(item.amount, item.asset) : "") },
      { label: "Balance after", numeric: true, value: (item) => (isPosting(item) ? money(item.balance_after, item.asset) : "") },
    ],
    items,
    {
      href: (item) => (isPosting(item) ? transactionHref(item.kind, item.transaction_id) : null),
      // A change of the account itself opens nothing: it is not a row to move to.
      rowAttributes: (item) => ({ "data-testid": `history-row-${item.position}-${item.leg}`, ...(isPosting(item) ? {} : { class: null, tabindex: null }) }),
      empty: "No history yet.",
    },
  );
}

/** When the entry counts; marked when that is not when it was recorded (a backdated write). */
function effectiveCell(item) {
  const { at, stated } = effective(item);
  return h(
    "span",
    {
      class: stated ? "nowrap differs" : "nowrap",
      "data-field": "effective",
      title: stated ? `counts at ${at}, not when it was recorded` : "counts when it was recorded",
    },
    time(at),
  );
}

/** What a history item is: the transaction it belongs to, or the change of the account. */
function entryLabel(item) {
  if (item.type === "status_changed") return h("span", {}, "status → ", statusBadge(item.status));
  if (item.type === "limits_set") {
    const bound = (v) => (v === null || v === undefined ? "none" : amount(v, item.asset));
    return h("span", {}, "limits set: ", h("span", { class: "muted" }, `min ${bound(item.min_balance)}, max ${bound(item.max_balance)}`));
  }
  return transactionLink(item);
}

/** "transfer 7589bdc9beb0": the kind, and the end of the id (a UUIDv7 starts with its time). */
function transactionLink({ kind, transaction_id: id }) {
  return h("span", { class: "nowrap" }, h("span", { class: "kind" }, kind), " ", link(transactionHref(kind, id), h("code", { title: id }, id.slice(-12))));
}

/** An amount with its sign made visible: credits with +, debits in the negative colour. */
function signed(text, asset) {
  const node = money(text, asset);
  if (text.startsWith("-")) node.classList.add("negative");
  else node.textContent = `+${node.textContent}`;
  return node;
}

// ---------------------------------------------------------------------------------------------
// Chart

/** The balance after each of the newest postings (`page.recent`), one asset at a time (`?chart=USD`). */
function renderChart(page) {
  const read = page.recent;
  const postings = read.items.filter((item) => item.type === "posting").reverse();
  const assets = [...new Set(postings.map((p) => p.asset))].sort();
  if (!assets.length) return fill(page.chart, h("p", { class: "muted" }, "No postings yet."));
  const wanted = new URLSearchParams(location.search).get("chart");
  const asset = assets.includes(wanted) ? wanted : page.busiest;
  const points = postings.filter((p) => p.asset === asset).map((p) => [p.position, forChart(p.balance_after)]);
  // The last balance holds until the position the page was read at.
  if (points.length) points.push([Math.max(page.position, points.at(-1)[0]), points.at(-1)[1]]);
  const scale = scaleOf(asset) ?? 2;
  const chosen = postings.filter((p) => p.asset === asset);
  const oldest = chosen[0];
  fill(
    page.chart,
    h(
      "div",
      { class: "toolbar", role: "group", "aria-label": "Asset drawn" },
      assets.map((a) =>
        h("button", { type: "button", class: a === asset ? "primary" : null, "aria-pressed": String(a === asset), "data-testid": `chart-asset-${a}`, onclick: () => { setQuery({ chart: a }); renderChart(page); } }, a),
      ),
    ),
    lineChart([{ name: `${asset} balance after each posting`, points }], {
      step: true,
      zero: new Set(points.map((p) => p[1])).size < 2, // a flat line is drawn against zero
      xLabel: (x) => `position ${count(Math.round(x))}`,
      yLabel: (y) => y.toLocaleString("en-US", { minimumFractionDigits: Math.min(scale, 2), maximumFractionDigits: scale }),
    }),
    h(
      "p",
      { class: "muted small", "data-testid": "chart-range" },
      `Drawn from the newest ${plural(read.items.length, "history entry", "history entries")} (at most ${count(CHART_ENTRIES_MAX)}): ${plural(chosen.length, `${asset} posting`, `${asset} postings`)}, `,
      `from position ${count(oldest.position)} (${time(oldest.recorded_at)} UTC) to the position read, ${count(page.position)}.`,
      read.next_cursor ? " Older postings are not drawn; the statement below covers any period." : " That is the account's whole history.",
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Statement

/** "2026-12-05" → the instant that day starts, in UTC (RFC 3339). */
function dayStart(date) {
  return date ? `${date}T00:00:00Z` : undefined;
}

/** The day after a date, so that a statement "to" a day includes that day. */
function dayAfter(date) {
  if (!date) return undefined;
  const next = new Date(`${date}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString().slice(0, 10);
}

function firstOfMonth() {
  return new Date().toISOString().slice(0, 8) + "01";
}

/** The statement's period and asset, from the address (`?asset=&from=&to=`), with defaults. */
function statementChoice(page) {
  const query = new URLSearchParams(location.search);
  const assets = [...new Set(page.account.balances.map((b) => b.asset))].sort();
  const asset = query.get("asset") || page.busiest;
  return { assets, asset, from: query.get("from") ?? firstOfMonth(), to: query.get("to") ?? "" };
}

function statementQuery(choice, minPosition) {
  return { asset: choice.asset, from: dayStart(choice.from), to: dayStart(dayAfter(choice.to)), min_position: minPosition };
}

async function renderStatement(page) {
  const choice = statementChoice(page);
  if (!choice.asset) return fill(page.statement, h("p", { class: "muted" }, "No postings yet: no statement to draw up."));
  const asset = h("select", { name: "asset", "data-testid": "statement-asset" }, choice.assets.map((a) => h("option", { value: a, selected: a === choice.asset }, a)));
  const from = h("input", { type: "date", name: "from", value: choice.from, "data-testid": "statement-from" });
  const to = h("input", { type: "date", name: "to", value: choice.to, "data-testid": "statement-to" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const downloadButton = h("button", { type: "button", "data-testid": "statement-download", onclick: () => downloadCsv(page, choice, downloadButton, body) }, "Download CSV");
  const submit = (event) => {
    event.preventDefault();
    // An empty "from" stays in the address: it means the beginning of the log, not the default.
    setQuery({ asset: asset.value, from: from.value, to: to.value || undefined });
    renderStatement(page);
  };
  fill(
    page.statement,
    h(
      "form",
      { class: "toolbar", onsubmit: submit },
      h("label", {}, "Asset ", asset),
      h("label", {}, "From ", from),
      h("label", {}, "to ", to),
      h("span", { class: "muted small" }, "(days in UTC, both included; empty: from the beginning, to now)"),
      h("button", { type: "submit", "data-testid": "statement-show" }, "Show"),
      downloadButton,
    ),
    body,
  );
  try {
    const statement = await get(`${accountPath(page.code)}/statement`, statementQuery(choice, page.minPosition), { signal: page.signal });
    fill(body, statementView(statement));
  } catch (error) {
    if (error.name !== "AbortError") fill(body, problemBox(error));
  }
}

function statementView(s) {
  const credits = s.entries.filter((e) => !e.amount.startsWith("-")).map((e) => e.amount);
  const debits = s.entries.filter((e) => e.amount.startsWith("-")).map((e) => e.amount);
  const shown = s.entries.slice(0, STATEMENT_ROWS_SHOWN);
  const figure = (label, value, testid, note) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value num" }, withTestid(money(value, s.asset), testid)), note && h("div", { class: "muted small" }, note));
  return [
    h(
      "div",
      { class: "cards" },
      figure("Opening balance", s.opening_balance, "statement-opening", `after position ${count(s.opening_position)}`),
      figure("Credits", sum(credits), "statement-credits", plural(credits.length, "posting", "postings")),
      figure("Debits", sum(debits), "statement-debits", plural(debits.length, "posting", "postings")),
      figure("Closing balance", s.closing_balance, "statement-closing", `after position ${count(s.closing_position)}`),
    ),
    h("div", { class: "scroll" }, table(
      [
        { label: "Position", numeric: true, value: (e) => count(e.position) },
        { label: "Recorded (UTC)", value: (e) => h("span", { class: "nowrap" }, time(e.recorded_at)) },
        { label: "Transaction", value: transactionLink },
        { label: "Counterparty", value: (e) => link(accountHref(e.counterparty), e.counterparty) },
        { label: "Amount", numeric: true, value: (e) => signed(e.amount, s.asset) },
        { label: "Balance", numeric: true, value: (e) => money(e.balance_after, s.asset) },
      ],
      shown,
      { href: (e) => transactionHref(e.kind, e.transaction_id), empty: "No postings in this period." },
    )),
    s.entries.length > shown.length && h("p", { class: "muted small" }, `Showing the first ${count(shown.length)} of ${count(s.entries.length)} postings; the CSV has them all.`),
  ];
}

function plural(n, one, many) {
  return `${count(n)} ${n === 1 ? one : many}`;
}

function withTestid(node, testid) {
  node.dataset.testid = testid;
  return node;
}

/** The server's own CSV of the statement on screen (one row each for opening and closing). */
async function downloadCsv(page, choice, button, body) {
  button.disabled = true;
  try {
    const csv = await getText(`${accountPath(page.code)}/statement`, { query: statementQuery(choice, page.minPosition), accept: "text/csv", signal: page.signal });
    const period = `${choice.from || "start"}_${choice.to || "now"}`;
    download(`statement_${page.code.replaceAll(":", "-")}_${choice.asset}_${period}.csv`, csv, "text/csv");
  } catch (error) {
    if (error.name !== "AbortError") fill(body, problemBox(error));
  } finally {
    button.disabled = false;
  }
}
