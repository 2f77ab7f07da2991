// Accounts: the tree of account codes by segment, each node with its roll-up balances per asset
// (`/v1/accounts/tree`, one index range per page however many accounts there are), the roll-up of
// the prefix itself (`/v1/balances`), and the accounts whose code starts with what was searched.

import { get } from "../api.js";
import { navigate } from "../app.js";
import { count, endOfDay, exactTime, sum } from "../format.js";
import { accountHref, fill, h, link, money, problemBox, section, table } from "../ui.js";

/** Accounts shown as of a date at most; the trial balance report (CSV) has them all. */
const AS_OF_ROWS_SHOWN = 500;
/** Tree nodes and accounts per page. */
const TREE_PAGE_NODES = 100;
const ACCOUNTS_PAGE_ACCOUNTS = 50;
/** The roll-up figures, in the order shown. */
const FIGURES = [
  ["posted", "Posted"],
  ["pending_debits", "Pending debits"],
  ["pending_credits", "Pending credits"],
  ["available", "Available"],
];

export async function render({ main, query, signal }) {
  const prefix = (query.get("prefix") || "").replace(/:+$/, "");
  const asset = query.get("asset") || "";
  const asOf = query.get("as_of") || "";
  const knownAt = query.get("known_at_position") || "";
  const search = h("input", {
    type: "search",
    value: prefix,
    placeholder: "Code prefix, e.g. broker:acme",
    "aria-label": "Search accounts by code prefix",
    "data-search": true,
    "data-testid": "prefix-search",
    size: 40,
  });
  const assets = (await get("/v1/assets", {}, { signal })).items;
  const assetSelect = h(
    "select",
    { "aria-label": "Asset", "data-testid": "asset-filter" },
    h("option", { value: "" }, "All assets"),
    assets.map((a) => h("option", { value: a.code, selected: a.code === asset }, a.code)),
  );
  const go = (next) => {
    const params = new URLSearchParams();
    if (next.prefix) params.set("prefix", next.prefix);
    if (next.asset) params.set("asset", next.asset);
    if (next.asOf) params.set("as_of", next.asOf);
    if (next.asOf && next.knownAt) params.set("known_at_position", next.knownAt);
    navigate(`/console/accounts${params.size ? `?${params}` : ""}`);
  };
  const form = h(
    "form",
    {
      class: "toolbar",
      role: "search",
      onsubmit: (event) => {
        event.preventDefault();
        go({ prefix: search.value.trim().replace(/:+$/, ""), asset: assetSelect.value, asOf, knownAt });
      },
    },
    search,
    assetSelect,
    h("button", { type: "submit" }, "Search"),
    h("span", { class: "muted small" }, "Press ", h("kbd", {}, "/"), " to search, ", h("kbd", {}, "j"), "/", h("kbd", {}, "k"), " to move, ", h("kbd", {}, "Enter"), " to open"),
  );
  assetSelect.addEventListener("change", () => go({ prefix, asset: assetSelect.value, asOf, knownAt }));
  const asOfDate = h("input", { type: "date", value: asOf, "data-testid": "asof-date", "aria-label": "Balances as of the end of this day (UTC)" });
  const asOfKnown = h("input", { type: "number", min: 0, step: 1, value: knownAt, placeholder: "the head", class: "narrow", "data-testid": "asof-known-at", "aria-label": "As known at this position" });
  const asOfForm = h(
    "form",
    { class: "toolbar", onsubmit: (event) => { event.preventDefault(); go({ prefix, asset, asOf: asOfDate.value, knownAt: asOfKnown.value }); } },
    h("label", {}, "Balances as of the end of ", asOfDate),
    h("label", {}, "as known at position ", asOfKnown),
    h("span", { class: "muted small" }, "(a day in UTC; entries count at their effective time)"),
    h("button", { type: "submit", "data-testid": "asof-show" }, "Show"),
    asOf && h("button", { type: "button", "data-testid": "asof-now", onclick: () => go({ prefix, asset }) }, "Now"),
  );

  const [rollup, tree] = await Promise.all([
    get("/v1/balances", { prefix, asset }, { signal }),
    get("/v1/accounts/tree", { prefix, limit: TREE_PAGE_NODES, cursor: query.get("cursor") }, { signal }),
  ]);
  const accounts = h("div");
  const asOfPanel = h("div", { "data-testid": "asof" }, asOf && h("p", { class: "muted" }, "Loading…"));
  fill(
    main,
    h("h1", {}, "Accounts"),
    form,
    asOfForm,
    breadcrumbs(prefix, asset),
    asOf && section(`${prefix ? `Under ${prefix}, a` : "A"}s of the end of ${asOf} (UTC)`, asOfPanel),
    section(
      prefix ? `Roll-up of ${prefix}` : "Roll-up of the whole ledger",
      h("p", { class: "muted small" }, `${count(rollup.accounts)} accounts · as of position ${count(rollup.position)}`),
      rollupTable(rollup, asset),
    ),
    section(
      prefix ? `Under ${prefix}` : "Top-level segments",
      treeTable(tree, prefix, asset),
      tree.next_cursor && h("p", {}, link(treeHref(prefix, asset, tree.next_cursor), "Next segments →")),
    ),
    section(prefix ? `Accounts whose code starts with ${prefix}` : "Accounts", accounts),
  );
  renderAccounts(accounts, prefix, null, signal);
  if (asOf) renderAsOf(asOfPanel, { prefix, asset, asOf, knownAt }, signal);
}

/**
 * The posted balances under the prefix as of the end of a day, as known at a position: every
 * account's from the trial balance report (one scan of the postings history), and their sum.
 */
async function renderAsOf(element, { prefix, asset, asOf, knownAt }, signal) {
  try {
    const report = await get("/v1/reports/trial-balance", { as_of: endOfDay(asOf), known_at_position: knownAt }, { signal });
    const under = (code) => !prefix || code === prefix || code.startsWith(`${prefix}:`);
    const rows = report.rows.filter((r) => under(r.account) && (!asset || r.asset === asset));
    const assets = [...new Set(rows.map((r) => r.asset))].sort();
    const totals = assets.map((a) => ({ asset: a, total: sum(rows.filter((r) => r.asset === a).map((r) => r.balance)) }));
    const shown = rows.slice(0, AS_OF_ROWS_SHOWN);
    // An account opens on its balances as of the same day.
    const asOfHref = (code) => `${accountHref(code)}?${new URLSearchParams({ as_of: asOf, ...(knownAt ? { known_at_position: knownAt } : {}) })}`;
    fill(
      element,
      h(
        "p",
        { class: "muted small", "data-testid": "asof-caption" },
        `Posted balances over every entry effective at or before ${exactTime(endOfDay(asOf))} UTC, as known at position ${count(report.known_at_position)}; accounts whose balance was zero are left out.`,
      ),
      table(
        [
          { label: "Asset", value: (t) => t.asset },
          { label: `Roll-up of ${prefix || "the whole ledger"}`, numeric: true, value: (t) => h("span", { "data-testid": `asof-rollup-${t.asset}` }, money(t.total, t.asset)) },
        ],
        totals,
        { empty: "No balances under this prefix as of then." },
      ),
      rows.length > 0 && table(
        [
          { label: "Account", value: (r) => link(asOfHref(r.account), r.account) },
          { label: "Asset", value: (r) => r.asset },
          { label: "Posted", numeric: true, value: (r) => h("span", { "data-testid": `asof-balance-${r.account}-${r.asset}` }, money(r.balance, r.asset)) },
        ],
        shown,
        { href: (r) => asOfHref(r.account) },
      ),
      rows.length > shown.length && h("p", { class: "muted small" }, `Showing the first ${count(shown.length)} of ${count(rows.length)} balances.`),
    );
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}

function treeHref(prefix, asset, cursor) {
  const params = new URLSearchParams();
  if (prefix) params.set("prefix", prefix);
  if (asset) params.set("asset", asset);
  if (cursor) params.set("cursor", cursor);
  return `/console/accounts${params.size ? `?${params}` : ""}`;
}

function breadcrumbs(prefix, asset) {
  const segments = prefix ? prefix.split(":") : [];
  return h(
    "nav",
    { class: "breadcrumbs", "aria-label": "Prefix" },
    link(treeHref("", asset), "all"),
    segments.map((segment, i) => [" : ", link(treeHref(segments.slice(0, i + 1).join(":"), asset), segment)]),
  );
}

/** One row per asset: the four figures of a roll-up. */
function rollupTable(rollup, asset) {
  const balances = rollup.balances.filter((b) => !asset || b.asset === asset);
  return table(
    [
      { label: "Asset", value: (b) => b.asset },
      ...FIGURES.map(([field, label]) => ({
        label,
        numeric: true,
        value: (b) => h("span", { "data-testid": `rollup-${field}-${b.asset}` }, money(b[field], b.asset)),
      })),
    ],
    balances,
    { empty: "No balances under this prefix yet." },
  );
}

/** The next segments: each row a node, its assets stacked in the cells so figures line up. */
function treeTable(tree, prefix, asset) {
  const stacked = (node, cell) =>
    node.balances.filter((b) => !asset || b.asset === asset).map((b) => h("div", {}, cell(b)));
  return table(
    [
      { label: "Segment", value: (n) => link(treeHref(n.prefix, asset), n.segment) },
      { label: "Accounts", numeric: true, value: (n) => count(n.accounts) },
      { label: "Asset", value: (n) => stacked(n, (b) => b.asset) },
      ...FIGURES.map(([field, label]) => ({
        label,
        numeric: true,
        value: (n) => stacked(n, (b) => h("span", { "data-field": field }, money(b[field], b.asset))),
      })),
    ],
    tree.items,
    {
      href: (n) => treeHref(n.prefix, asset),
      empty: prefix ? "No account codes continue below this prefix." : "No accounts yet.",
      rowAttributes: (n) => ({ "data-testid": `tree-row-${n.segment}`, "data-prefix": n.prefix }),
    },
  );
}

/** Accounts whose code starts with `prefix` (as typed: `client1` also finds `client10`), paged. */
async function renderAccounts(element, prefix, cursor, signal) {
  try {
    const page = await get("/v1/accounts", { prefix, limit: ACCOUNTS_PAGE_ACCOUNTS, cursor }, { signal });
    const rows = page.items.flatMap((account) =>
      (account.balances.length ? account.balances : [null]).map((balance, i) => ({ account, balance, first: i === 0 })),
    );
    const more = page.next_cursor && h("button", { onclick: () => renderAccounts(element, prefix, page.next_cursor, signal) }, "Next accounts →");
    fill(
      element,
      table(
        [
          { label: "Account", value: (r) => r.first && link(accountHref(r.account.code), r.account.code) },
          { label: "Status", value: (r) => r.first && h("span", { class: `badge ${r.account.status === "open" ? "good" : "bad"}` }, r.account.status) },
          { label: "Asset", value: (r) => r.balance?.asset ?? "" },
          { label: "Posted", numeric: true, value: (r) => r.balance && money(r.balance.balance, r.balance.asset) },
          { label: "Available", numeric: true, value: (r) => r.balance && money(r.balance.available ?? r.balance.balance, r.balance.asset) },
        ],
        rows,
        { href: (r) => accountHref(r.account.code), empty: "No account code starts with this." },
      ),
      more && h("p", {}, more),
    );
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}
