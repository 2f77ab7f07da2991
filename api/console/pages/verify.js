// Verify: an export (`ledger export` NDJSON) and a kept checkpoint checked in this browser alone.
// The page asks the server nothing (it opens without a key): the chain, the checkpoint's signature
// and every account's figures come from the two files, so what it reports holds whoever serves
// the page's ledger. The figures are in the shape of the server's account answers, to be compared
// with them; the whole report is JSON under the tables, to copy or download.

import { parseCheckpoint, signatureView } from "../checkpoint.js";
import { count, shortHash } from "../format.js";
import { download, facts, fill, h, link, money, section, table, task } from "../ui.js";
import { verifyExport } from "../verify_export.js";

/** Rows a table shows at most: a large ledger's figures are all in the report, not in the page. */
const TABLE_ROWS_MAX = 2000;

export async function render({ main, signal }) {
  const exportFile = h("input", { type: "file", accept: ".ndjson,.jsonl,.json,application/x-ndjson", "data-testid": "verify-export", "aria-label": "Export (ledger export NDJSON)" });
  const checkpointFile = h("input", { type: "file", accept: ".json,application/json", "data-testid": "verify-checkpoint", "aria-label": "Checkpoint (JSON)" });
  const positions = h("input", { type: "text", "data-testid": "verify-positions", placeholder: "e.g. 19, 38", "aria-label": "Posted balances right after these positions", class: "narrow" });
  const status = h("div", { "data-testid": "verify-status" });
  fill(
    main,
    h("h1", {}, "Verify an export"),
    h(
      "p",
      { class: "muted small" },
      "Checks an export of a ledger's log, and a checkpoint you kept, in this browser: nothing is sent to the server. Every event's hash is recomputed from its canonical bytes and chained from the genesis value (SHA-256, WebCrypto); the checkpoint's Ed25519 signature is checked with its public key, and the export's hash at its position must be its signed head. Every account's figures are then computed from the events alone, as ",
      h("code", {}, "docs/events.md"),
      " specifies, in the form ",
      h("code", {}, "GET /v1/accounts/{code}"),
      " answers: compare them with the ledger's. See also the ",
      link("/console/audit", "Audit"),
      " page, which checks the ledger's own log through its API.",
    ),
    section(
      "Files",
      h(
        "div",
        { class: "split" },
        h("label", {}, h("span", { class: "muted small" }, "Export: ", h("code", {}, "ledger export"), " NDJSON, or the Audit page's download"), h("br"), exportFile),
        h("label", {}, h("span", { class: "muted small" }, "Checkpoint (optional): the JSON of ", h("code", {}, "GET /v1/audit/checkpoint"), ", kept where the ledger's operators cannot write"), h("br"), checkpointFile),
      ),
      task(signal, {
        inputs: h("label", {}, "Posted balances right after positions ", positions),
        label: "Verify",
        testid: "verify-run",
        status,
        describe: (done, total) => `${megabytes(done)} of ${megabytes(total)}`,
        run: (runSignal, progress) => run({ exportFile, checkpointFile, positions, status, progress, signal: runSignal }),
      }),
    ),
    status,
  );
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 0)} MB`;
}

/** "19, 38" → [19, 38]; throws on anything that is not a position. */
function parsePositions(text) {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]*)$/.test(part) || !Number.isSafeInteger(Number(part))) throw new Error(`${part} is not a position (an integer, 0 or more)`);
  }
  return parts.map(Number);
}

async function run({ exportFile, checkpointFile, positions, status, progress, signal }) {
  const file = exportFile.files[0];
  if (!file) throw new Error("choose the export to verify");
  const atPositions = parsePositions(positions.value);
  const checkpoint = checkpointFile.files[0] ? parseCheckpoint(await checkpointFile.files[0].text(), "kept") : null;
  fill(status, h("p", { class: "muted" }, "verifying…"));
  let read = [0, file.size];
  const report = await verifyExport(file, {
    checkpoint,
    atPositions,
    signal,
    onProgress: (done, total) => {
      read = [done, total];
      progress.update(done, total);
    },
  });
  // The bar stops, red, at the line where the chain broke.
  if (!report.verdict.chain_intact) progress.fail(...read);
  show(status, report);
}

function show(status, report) {
  const text = `${JSON.stringify(report, null, 2)}\n`;
  fill(
    status,
    section("Verdict", verdictView(report)),
    section("Accounts at the head", h("p", { class: "muted small" }, `From the events through position ${count(report.figures_through)}. Each row is an account's figures in one asset, as GET /v1/accounts/{code} answers them; limits are those set (AccountLimitsSet).`), accountsTable(report)),
    (Object.keys(report.at_positions).length > 0 || report.at_positions_not_reached.length > 0) &&
      section("Posted balances right after a position", atPositionsView(report), notReached(report)),
    report.problems.length > 0 && section("Problems", problemsView(report.problems)),
    section(
      "Report",
      h("div", { class: "toolbar" }, h("button", { type: "button", "data-testid": "verify-download", onclick: () => download(`verify-${report.head.position}.json`, text, "application/json") }, "Download report")),
      h("pre", { class: "report", "data-testid": "verify-report" }, text),
    ),
  );
}

function verdictView(report) {
  const v = report.verdict;
  const cp = report.checkpoint;
  const chain = v.chain_intact
    ? [h("span", { class: "good" }, "intact"), ` through position ${count(report.head.position)}: every hash recomputed from the genesis value`]
    : [h("span", { class: "bad" }, `broken at position ${v.first_broken_position}`), `: ${report.chain_problem}. Every event before it verifies, through position ${count(report.head.position)}.`];
  return [
    h(
      "p",
      { "data-testid": "verify-verdict" },
      v.first_broken_position === null ? h("span", { class: "good" }, "verified") : h("span", { class: "bad" }, `first broken position ${v.first_broken_position}`),
      cp ? ` against the checkpoint of ledger ${cp.ledger} at position ${count(cp.position)}` : " (no checkpoint given: the chain proves only that the file agrees with itself)",
    ),
    facts([
      ["Chain", h("span", { "data-testid": "verify-chain" }, chain)],
      ["Head", [`position ${count(report.head.position)}, hash `, h("code", { "data-testid": "verify-head-hash" }, report.head.hash)]],
      cp && ["Checkpoint", h("span", { "data-testid": "verify-checkpoint-holds" }, checkpointLine(v, cp))],
      cp && ["Its signature", signatureView({ valid: cp.signature_valid, why: cp.signature_problem }, "verify-signature")],
      ["Events", `${count(report.lines)} lines read, figures through position ${count(report.figures_through)}${report.figures_stopped ? ` (stopped at ${report.figures_stopped.position}: ${report.figures_stopped.problem})` : ""}`],
    ]),
  ];
}

function checkpointLine(verdict, cp) {
  if (verdict.checkpoint_holds === true) return [h("span", { class: "good" }, "holds"), ": the export's hash at its position is the signed head."];
  const why =
    cp.hash_in_export === null
      ? `the export has no verified hash at position ${count(cp.position)}`
      : cp.hash_in_export !== cp.head_hash
        ? [`the export's hash at position ${count(cp.position)} is `, h("code", {}, shortHash(cp.hash_in_export)), ", not the signed ", h("code", {}, shortHash(cp.head_hash))]
        : "its signature does not verify";
  const label = verdict.checkpoint_holds === false ? h("span", { class: "bad" }, "does not hold") : h("span", { class: "warn" }, "not checked");
  return [label, ": ", why, "."];
}

/** One row per account and asset (an account without figures: one row without them). */
function accountsTable(report) {
  const rows = Object.values(report.accounts).flatMap((a) => (a.balances.length ? a.balances.map((b) => ({ a, b })) : [{ a, b: null }]));
  const figure = (field) => (r) => (r.b ? money(r.b[field], r.b.asset) : "");
  const limits = (a, asset) => a.limits.find((l) => l.asset === asset);
  return [
    capped(rows.length),
    // Amounts at scale 18 are wide: the table scrolls sideways rather than spill out of its panel.
    h("div", { class: "scroll-x" }, table(
      [
        { label: "Account", value: (r) => r.a.code },
        { label: "Status", value: (r) => r.a.status },
        { label: "Version", value: (r) => r.a.version, numeric: true },
        { label: "Asset", value: (r) => r.b?.asset ?? "" },
        { label: "Balance", value: figure("balance"), numeric: true },
        { label: "Pending debits", value: figure("pending_debits"), numeric: true },
        { label: "Pending credits", value: figure("pending_credits"), numeric: true },
        { label: "Available", value: figure("available"), numeric: true },
        { label: "Trade-date", value: figure("trade_date_balance"), numeric: true },
        { label: "Position", value: (r) => r.b?.position ?? "", numeric: true },
        { label: "Limits", value: (r) => h("span", { class: "nowrap" }, limitText(limits(r.a, r.b?.asset))) },
      ],
      rows.slice(0, TABLE_ROWS_MAX),
      { empty: "No account opened.", rowAttributes: (r) => ({ "data-account": r.a.code, "data-asset": r.b?.asset ?? "" }) },
    )),
  ];
}

function limitText(limit) {
  if (!limit) return "";
  return `${limit.min_balance ?? "−∞"} … ${limit.max_balance ?? "+∞"}`;
}

function capped(rows) {
  return rows > TABLE_ROWS_MAX && h("p", { class: "warn small" }, `The first ${count(TABLE_ROWS_MAX)} of ${count(rows)} rows: every one is in the report below.`);
}

function atPositionsView(report) {
  return Object.entries(report.at_positions).map(([position, answers]) => {
    const rows = Object.values(answers).flatMap((a) => a.balances.map((b) => ({ a, b })));
    return h(
      "details",
      { "data-testid": `verify-at-${position}` },
      h("summary", {}, `Right after position ${count(Number(position))} (GET …/balances?at_position=${position})`),
      capped(rows.length),
      table(
        [
          { label: "Account", value: (r) => r.a.account },
          { label: "Asset", value: (r) => r.b.asset },
          { label: "Balance", value: (r) => money(r.b.balance, r.b.asset), numeric: true },
          { label: "Last moved at", value: (r) => r.b.position, numeric: true },
        ],
        rows.slice(0, TABLE_ROWS_MAX),
        { empty: "No money had moved by then." },
      ),
    );
  });
}

function notReached(report) {
  const positions = report.at_positions_not_reached;
  if (!positions.length) return null;
  const why = report.figures_stopped ? `the figures stop at position ${count(report.figures_stopped.position)}` : `the export's verified events end at position ${count(report.head.position)}`;
  return h("p", { class: "warn small" }, `Not computed: position ${positions.map(count).join(", ")}, since ${why}.`);
}

function problemsView(problems) {
  return h(
    "ul",
    { "data-testid": "verify-problems" },
    problems.slice(0, TABLE_ROWS_MAX).map((p) => h("li", {}, `position ${p.position}: ${p.problem}`)),
  );
}
