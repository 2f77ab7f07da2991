// Periods: every close and reopen of the books, in log order, reopens marked; a close with the
// trial balance it fixed (`/console/periods/3`); and, for an admin key, closing the books through
// a time and reopening the latest closed period, each behind a confirmation.

import { getAt, getText, send } from "../api.js";
import { can } from "../app.js";
import { count, endOfDay, exactTime, shortHash, time, yesterday } from "../format.js";
import { accountHref, confirmAction, download, facts, fill, h, link, money, problemBox, section, table, toast } from "../ui.js";

export async function render({ main, params, signal }) {
  if (params.period) return renderPeriod(main, params.period, signal);
  const page = { main, signal };
  await show(page);
}

/** The periods closed now, oldest first: each close, less those a later reopen took back. */
export function closedNow(items) {
  const closed = [];
  for (const item of items) {
    if (item.action === "closed") closed.push(item);
    else if (item.action === "reopened") {
      const at = closed.findLastIndex((c) => c.period === item.period);
      if (at >= 0) closed.splice(at, 1);
    }
  }
  return closed;
}

/** Every close and reopen in log order; a reopen is marked, and so is a close it took back. */
export function periodEventsTable(items) {
  const reopenedAt = new Map(items.filter((i) => i.action === "reopened").map((i) => [i.period, i.position]));
  return table(
    [
      { label: "Position", numeric: true, value: (i) => count(i.position) },
      { label: "Period", value: (i) => link(`/console/periods/${i.period}`, `period ${i.period}`) },
      {
        label: "Action",
        value: (i) =>
          i.action === "reopened"
            ? h("span", { class: "badge warn", "data-testid": "period-action" }, "reopened")
            : h("span", { class: "nowrap" }, h("span", { class: "badge good", "data-testid": "period-action" }, "closed"), reopenedAt.get(i.period) > i.position ? h("span", { class: "muted small" }, ` · reopened at ${count(reopenedAt.get(i.period))}`) : ""),
      },
      { label: "Through (UTC)", value: (i) => (i.through ? h("span", { class: "nowrap", title: i.through }, exactTime(i.through)) : "") },
      { label: "Recorded (UTC)", value: (i) => h("span", { class: "nowrap", title: i.recorded_at }, time(i.recorded_at)) },
      {
        label: "Trial balance or reason",
        value: (i) =>
          i.action === "reopened"
            ? h("span", { "data-testid": "period-reason" }, i.reason ?? "")
            : h("span", {}, h("code", { title: i.trial_balance_digest }, shortHash(i.trial_balance_digest)), i.known_at_position !== undefined ? h("span", { class: "muted small" }, ` read at ${count(i.known_at_position)}`) : ""),
      },
    ],
    items,
    {
      href: (i) => `/console/periods/${i.period}`,
      empty: "No period has been closed yet.",
      rowAttributes: (i) => ({ "data-testid": `period-row-${i.position}`, "data-action": i.action, class: i.action === "reopened" ? "row-link reopened" : "row-link" }),
    },
  );
}

async function show(page, minPosition) {
  const { main, signal } = page;
  const read = await getAt("/v1/periods", { min_position: minPosition }, { signal });
  const items = read.value.items;
  const closed = closedNow(items);
  page.problem = h("div", { "data-testid": "periods-problem" });
  fill(
    main,
    h("h1", {}, "Periods"),
    h(
      "p",
      { class: "muted small", "data-testid": "periods-state" },
      closed.length
        ? `Closed through ${exactTime(closed.at(-1).through)} UTC (period ${closed.at(-1).period}): no write may count at or before then (422 period_closed).`
        : "No period is closed: a write may count at any time up to now.",
      ` Read at position ${count(read.position)}.`,
    ),
    page.problem,
    can("admin") ? h("div", { class: "split" }, section("Close the books", closeForm(page, closed.at(-1))), section("Reopen", reopenForm(page, closed.at(-1)))) : h("p", { class: "muted small" }, "Closing and reopening periods need an API key with the admin scope."),
    section("Closes and reopens", h("p", { class: "muted small" }, "Every close and reopen in the log, oldest first. A close fixes the trial balance as of its end, with its digest; open one to see it."), h("div", { "data-testid": "periods-list" }, periodEventsTable(items))),
  );
}

function closeForm(page, latest) {
  const date = h("input", { type: "date", required: true, value: yesterday(), "data-testid": "close-date", "aria-label": "Close through the end of this day (UTC)" });
  const at = h("input", { type: "time", step: 1, "data-testid": "close-time", "aria-label": "Close through this time of the day (UTC); empty: its end" });
  const submit = async (event) => {
    event.preventDefault();
    const through = at.value ? `${date.value}T${at.value.length === 5 ? `${at.value}:00` : at.value}Z` : endOfDay(date.value);
    const confirmed = await confirmAction(
      `Close the books through ${exactTime(through)} UTC?`,
      `Every write that would count at or before ${exactTime(through)} UTC will be refused (422 period_closed) until the period is reopened. The ledger reads the trial balance as of then and records its digest in the log.${latest ? ` The last closed period ends at ${exactTime(latest.through)} UTC: this one must end later.` : ""}`,
      "Close period",
    );
    if (!confirmed) return;
    await write(page, () => send("POST", "/v1/periods/close", { through }), (r) => `Period ${r.period} closed through ${exactTime(r.through)} UTC (position ${count(r.position)})`);
  };
  return h(
    "form",
    { onsubmit: submit },
    h("p", { class: "muted small" }, "Through the end of a day (UTC), or a time of it. It must be later than the last closed period's end, and in the past."),
    h("div", { class: "toolbar" }, h("label", {}, "Through ", date), h("label", {}, "at ", at), h("button", { type: "submit", class: "primary", "data-testid": "close-period" }, "Close period…")),
  );
}

function reopenForm(page, latest) {
  if (!latest) return h("p", { class: "muted small", "data-testid": "reopen-none" }, "No period is closed: nothing to reopen.");
  const reason = h("input", { type: "text", required: true, maxlength: 1024, size: 40, placeholder: "Why, for the log", "data-testid": "reopen-reason", "aria-label": "Why the period is reopened" });
  const submit = async (event) => {
    event.preventDefault();
    const confirmed = await confirmAction(
      `Reopen period ${latest.period}?`,
      `Writes may count at or before ${exactTime(latest.through)} UTC again (back to the end of the period closed before it, if any). The reason is recorded in the log for good: “${reason.value}”. Closing again records the trial balance anew.`,
      "Reopen period",
    );
    if (!confirmed) return;
    await write(page, () => send("POST", "/v1/periods/reopen", { reason: reason.value }), (r) => `Period ${r.period} reopened (position ${count(r.position)})`);
  };
  return h(
    "form",
    { onsubmit: submit },
    h("p", { class: "muted small" }, `Opens the latest closed period, period ${latest.period} (through ${exactTime(latest.through)} UTC), again.`),
    h("div", { class: "toolbar" }, h("label", {}, "Reason ", reason), h("button", { type: "submit", class: "danger", "data-testid": "reopen-period" }, "Reopen period…")),
  );
}

/** Sends a close or reopen; on success re-reads the list at its position, on failure quotes why. */
async function write(page, sendIt, describe) {
  fill(page.problem);
  let result;
  try {
    result = await sendIt();
  } catch (error) {
    fill(page.problem, problemBox(error));
    return;
  }
  toast(describe(result));
  await show(page, result.position).catch((error) => {
    if (error.name !== "AbortError") fill(page.problem, problemBox(error));
  });
}

/** One close: what it recorded, whether a reopen took it back, and the trial balance it fixed. */
async function renderPeriod(main, period, signal) {
  let read;
  try {
    read = await getAt(`/v1/periods/${encodeURIComponent(period)}`, {}, { signal });
  } catch (error) {
    if (error.name === "AbortError" || error.status === 401) throw error;
    return fill(main, h("nav", { class: "breadcrumbs" }, link("/console/periods", "Periods"), " / ", `period ${period}`), h("h1", {}, `Period ${period}`), h("div", { "data-testid": "period-problem" }, problemBox(error)));
  }
  const { close, reopened, trial_balance: tb } = read.value;
  document.title = `Period ${close.period} · ledger`;
  const csv = h("button", { type: "button", "data-testid": "trial-balance-csv" }, "Download CSV");
  const csvProblem = h("div");
  csv.addEventListener("click", async () => {
    try {
      const text = await getText("/v1/reports/trial-balance", { query: { as_of: tb.as_of, known_at_position: tb.known_at_position }, accept: "text/csv", signal });
      download(`trial-balance_period-${close.period}.csv`, text, "text/csv");
    } catch (error) {
      if (error.name !== "AbortError") fill(csvProblem, problemBox(error));
    }
  });
  fill(
    main,
    h("nav", { class: "breadcrumbs", "aria-label": "Periods" }, link("/console/periods", "Periods"), " / ", `period ${close.period}`),
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, `Period ${close.period} `, reopened ? h("span", { class: "badge warn", "data-testid": "period-status" }, "reopened") : h("span", { class: "badge good", "data-testid": "period-status" }, "closed")),
    ),
    section(
      "Close",
      facts([
        ["Through", h("span", { "data-testid": "period-through" }, exactTime(close.through), " UTC")],
        ["Closed at", [h("span", {}, `position ${count(close.position)}`), h("span", { class: "muted" }, ` · recorded ${time(close.recorded_at)} UTC`)]],
        ["Trial balance read at", `position ${count(close.known_at_position)}`],
        ["Digest", h("code", { "data-testid": "period-digest" }, close.trial_balance_digest)],
        ["Status", reopened ? "reopened: writes may count in it again (see the periods list for the reason)" : "closed: no write may count at or before its end"],
        Object.keys(close.metadata ?? {}).length > 0 && ["Metadata", h("code", {}, JSON.stringify(close.metadata))],
      ]),
    ),
    section(
      `Trial balance as of ${exactTime(tb.as_of)} UTC`,
      h("p", { class: "muted small" }, `Every account's posted balance where it is not zero, as known at position ${count(tb.known_at_position)}: recomputed from the postings history, and its digest is the one the close recorded.`),
      h("div", { class: "toolbar" }, csv),
      csvProblem,
      h("div", { class: "split" },
        h("div", { class: "scroll" }, table(
          [
            { label: "Account", value: (r) => link(accountHref(r.account), r.account) },
            { label: "Asset", value: (r) => r.asset },
            { label: "Balance", numeric: true, value: (r) => money(r.balance, r.asset) },
          ],
          tb.rows,
          { empty: "No balance: nothing counted by then.", rowAttributes: (r) => ({ "data-testid": `tb-row-${r.account}-${r.asset}` }) },
        )),
        table(
          [
            { label: "Asset", value: (t) => t.asset },
            { label: "Total", numeric: true, value: (t) => h("span", { "data-testid": `tb-total-${t.asset}` }, money(t.total, t.asset)) },
          ],
          tb.totals,
          { empty: "No totals." },
        ),
      ),
    ),
  );
}
