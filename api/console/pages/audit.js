// Audit: verify the hash chain with progress; the current signed checkpoint and the public key,
// to keep; two kept checkpoints checked against each other (their signatures too, here in the
// browser, when its WebCrypto has Ed25519); and an export of the log as `ledger export` writes it.

import { get, getText } from "../api.js";
import { canonicalJson, parseKeepingNumbers } from "../canonical.js";
import { parseCheckpoint, signatureValid, signatureView } from "../checkpoint.js";
import { count, shortHash, time } from "../format.js";
import { download, facts, fill, h, link, problemBox, section, task } from "../ui.js";
import { remember, verifyRange } from "../verify.js";
import { periodEventsTable } from "./periods.js";

/** Events per `/v1/events` request while exporting: the API's largest page. */
const EXPORT_PAGE_EVENTS = 1000;
/** An export is assembled in the browser's memory (about 1 KB an event): past this, use `ledger export`. */
const EXPORT_EVENTS_MAX = 1_000_000;

export async function render({ main, signal }) {
  const checkpointPanel = h("div", {}, h("p", { class: "muted" }, "Signing the head…"));
  const periodsPanel = h("div", { "data-testid": "audit-periods" }, h("p", { class: "muted" }, "Loading…"));
  fill(
    main,
    h("h1", {}, "Audit"),
    section("Verify the hash chain", verifyPanel(signal)),
    section("Signed checkpoint", checkpointPanel),
    section("Consistency of two kept checkpoints", consistencyPanel(signal)),
    section("Closed and reopened periods", periodsPanel),
    section("Export", exportPanel(signal)),
  );
  await Promise.all([showCheckpoint(checkpointPanel, signal), showPeriods(periodsPanel, signal)]);
}

/** Every close of the books and every reopen, each an event of the log: a reopen is never hidden. */
async function showPeriods(element, signal) {
  try {
    const periods = await get("/v1/periods", {}, { signal });
    const reopens = periods.items.filter((i) => i.action === "reopened").length;
    fill(
      element,
      h("p", { class: "muted small" }, `${count(periods.items.length - reopens)} closes and ${count(reopens)} reopens, oldest first. A reopen lets writes count in a closed period again: each is listed with its reason.`),
      periodEventsTable(periods.items),
    );
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}

function verifyPanel(pageSignal) {
  const status = h("p", { "data-testid": "audit-status" }, h("span", { class: "muted" }, "Not run yet."));
  return [
    h("p", { class: "muted small" }, "Recomputes every event's hash from the genesis value, in chunks of the log, and compares each with the hash the ledger stored beside it; the last must be the signed head. Reports the first position where they differ."),
    task(pageSignal, {
      label: "Verify the chain",
      testid: "audit-verify",
      status,
      async run(signal, progress) {
        fill(status, h("span", { class: "muted" }, "verifying…"));
        const checkpoint = await get("/v1/audit/checkpoint", {}, { signal });
        const total = checkpoint.position;
        progress.update(0, total);
        const result = await verifyRange({ from: 0, to: total, toHash: checkpoint.head_hash, signal, onProgress: (done) => progress.update(done, total) });
        if (result.intact) {
          remember(checkpoint.public_key, checkpoint.position, checkpoint.head_hash);
          fill(status, h("span", { class: "good" }, "intact"), ` through position ${count(total)}: every hash from the genesis recomputed, ending at the signed head `, h("code", {}, shortHash(checkpoint.head_hash)), ".");
        } else {
          progress.fail(result.firstBrokenPosition - 1, total);
          fill(
            status,
            h("span", { class: "bad" }, `broken at position ${result.firstBrokenPosition}`),
            result.problem && [": ", result.problem],
            h("br"),
            h("span", { class: "muted small" }, result.firstBrokenPosition > 1 ? `Every event before it verifies, through position ${count(result.firstBrokenPosition - 1)}.` : "The first event already breaks the chain."),
          );
        }
      },
    }),
    status,
  ];
}

async function showCheckpoint(element, signal) {
  try {
    const [checkpoint, publicKey] = await Promise.all([get("/v1/audit/checkpoint", {}, { signal }), get("/v1/audit/public-key", {}, { signal })]);
    const signature = await signatureValid(checkpoint);
    fill(
      element,
      facts([
        ["Position", h("span", { "data-testid": "checkpoint-position" }, count(checkpoint.position))],
        ["Head hash", h("code", { "data-testid": "checkpoint-hash" }, checkpoint.head_hash)],
        ["Head recorded at", h("span", { title: checkpoint.recorded_at }, checkpoint.recorded_at ? `${time(checkpoint.recorded_at)} UTC` : "(empty log)")],
        ["Signature", h("code", {}, checkpoint.signature)],
        ["Signature check", signatureView(signature, "checkpoint-signature")],
        ["Public key", h("code", { "data-testid": "public-key" }, publicKey.public_key), " ", h("span", { class: "muted small" }, publicKey.algorithm)],
      ]),
      checkpoint.public_key !== publicKey.public_key && h("p", { class: "problem" }, "The checkpoint names another public key than the ledger's."),
      h(
        "div",
        { class: "toolbar" },
        h("button", { type: "button", "data-testid": "download-checkpoint", onclick: () => download(`checkpoint-${checkpoint.position}.json`, `${JSON.stringify(checkpoint, null, 2)}\n`, "application/json") }, "Download checkpoint"),
        h("button", { type: "button", "data-testid": "download-public-key", onclick: () => download("ledger-public-key.json", `${JSON.stringify(publicKey, null, 2)}\n`, "application/json") }, "Download public key"),
        h("button", { type: "button", onclick: () => showCheckpoint(element, signal) }, "Sign the head again"),
      ),
      h("p", { class: "muted small" }, "Keep checkpoints where the ledger's operators cannot write. A later log must extend each of them: paste two below to check."),
    );
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}

function consistencyPanel(pageSignal) {
  const earlier = h("textarea", { rows: 7, "data-testid": "checkpoint-earlier", placeholder: '{"position": …, "head_hash": "…", "recorded_at": "…", "signature": "…", "public_key": "…"}', spellcheck: "false", "aria-label": "Earlier checkpoint" });
  const later = h("textarea", { rows: 7, "data-testid": "checkpoint-later", placeholder: "The later checkpoint, as downloaded", spellcheck: "false", "aria-label": "Later checkpoint" });
  const status = h("div", { "data-testid": "consistency-status" });
  const pasteCurrent = h("button", {
    type: "button",
    class: "link-button",
    onclick: async () => {
      later.value = JSON.stringify(await get("/v1/audit/checkpoint", {}, { signal: pageSignal }), null, 2);
    },
  }, "use the current checkpoint");
  return [
    h("div", { class: "split" }, h("label", {}, h("span", { class: "muted small" }, "Earlier checkpoint"), earlier), h("label", {}, h("span", { class: "muted small" }, "Later checkpoint (", pasteCurrent, ")"), later)),
    task(pageSignal, {
      label: "Check consistency",
      testid: "consistency-check",
      status,
      run: (signal, progress) => checkConsistency(earlier.value, later.value, { status, progress, signal }),
    }),
    status,
  ];
}

async function checkConsistency(earlierText, laterText, { status, progress, signal }) {
  let a = parseCheckpoint(earlierText, "earlier");
  let b = parseCheckpoint(laterText, "later");
  const swapped = a.position > b.position;
  if (swapped) [a, b] = [b, a];
  const { public_key: ledgerKey } = await get("/v1/audit/public-key", {}, { signal });
  const signatures = await Promise.all([a, b].map(signatureValid));
  const keyNote = (c) => (c.public_key === ledgerKey ? "" : h("span", { class: "bad" }, " · signed by another key than this ledger's"));
  const lines = [
    swapped && h("p", { class: "muted small" }, "The two were pasted in the other order; the one at the lower position is the earlier."),
    facts([
      [`Earlier, position ${count(a.position)}`, [signatureView(signatures[0], "earlier-signature"), keyNote(a)]],
      [`Later, position ${count(b.position)}`, [signatureView(signatures[1], "later-signature"), keyNote(b)]],
    ]),
  ];
  fill(status, lines);
  const result =
    a.position === b.position
      ? await samePosition(a, b, signal)
      : await verifyRange({ from: a.position, fromHash: a.head_hash, to: b.position, toHash: b.head_hash, signal, onProgress: (done, total) => progress.update(done, total) });
  const span = b.position - a.position;
  if (result.intact) progress.update(span, span);
  else progress.fail(Math.max(0, result.firstBrokenPosition - 1 - a.position), span);
  const signed = signatures.every((s) => s.valid !== false) && a.public_key === ledgerKey && b.public_key === ledgerKey;
  const verdict = result.intact
    ? h("p", {}, h("span", { class: signed ? "good" : "warn" }, "consistent"), `: the log still holds the earlier checkpoint's head at ${count(a.position)} and extends it, hash by hash, to the later one's at ${count(b.position)}.`)
    : h("p", {}, h("span", { class: "bad" }, `inconsistent at position ${result.firstBrokenPosition}`), result.problem && [": ", result.problem]);
  fill(status, lines, h("div", { "data-testid": "consistency-verdict" }, verdict));
}

/** Two checkpoints of one position agree when their hashes do and the log still stores it. */
async function samePosition(a, b, signal) {
  if (a.head_hash !== b.head_hash) return { intact: false, firstBrokenPosition: a.position, problem: "the two checkpoints give different hashes for one position" };
  const report = await get("/v1/audit/consistency", { from: a.position, from_hash: a.head_hash, to: b.position, to_hash: b.head_hash }, { signal });
  return { intact: report.consistent, firstBrokenPosition: report.first_broken_position, problem: report.problem };
}

function exportPanel(pageSignal) {
  const after = h("input", { type: "number", min: 0, step: 1, value: 0, "data-testid": "export-after", "aria-label": "Export events after this position", class: "narrow" });
  const status = h("div", { "data-testid": "export-status" });
  return [
    h(
      "p",
      { class: "muted small" },
      "The log as ",
      h("code", {}, "ledger export"),
      " writes it: NDJSON, one event per line in canonical JSON, with its hash. ",
      h("code", {}, "ledger import"),
      " loads it and ",
      h("code", {}, "tools/verify_export.py"),
      " recomputes every hash and balance from it, and so does ",
      link("/console/verify", "Verify"),
      ` in this browser, with a checkpoint you kept, trusting nothing the server says. Read ${count(EXPORT_PAGE_EVENTS)} events at a time, up to ${count(EXPORT_EVENTS_MAX)} in a browser (beyond, use ledger export).`,
    ),
    task(pageSignal, {
      inputs: h("label", {}, "After position ", after),
      label: "Download export",
      testid: "export-download",
      status,
      async run(signal, progress) {
        const from = Number(after.value || 0);
        if (!Number.isSafeInteger(from) || from < 0) throw new Error("the position to export after is an integer, 0 or more");
        const done = await exportLog(from, { progress, signal });
        fill(
          status,
          h("p", {}, h("span", { class: "good" }, "downloaded"), ` ${done.filename}: ${count(done.events)} events, through position ${count(done.to)}, whose hash `, h("code", {}, shortHash(done.headHash)), done.signedHead ? " is the signed checkpoint's." : " (the log moved on since the checkpoint)."),
        );
      },
    }),
    status,
  ];
}

/** Pages through `/v1/events` from `after` to the head signed at the start. */
async function exportLog(after, { progress, signal }) {
  const checkpoint = await get("/v1/audit/checkpoint", {}, { signal });
  const to = checkpoint.position;
  if (after > to) throw new Error(`the log ends at position ${to}`);
  if (to - after > EXPORT_EVENTS_MAX) {
    throw new Error(`${count(to - after)} events are more than this browser export holds (${count(EXPORT_EVENTS_MAX)}): export after a later position, or use ledger export`);
  }
  progress.update(0, to - after);
  const lines = [];
  let at = after;
  let headHash = null;
  while (at < to) {
    const limit = Math.min(EXPORT_PAGE_EVENTS, to - at);
    // The text, not response.json(): numbers must reach the file as the server wrote them.
    const page = parseKeepingNumbers(await getText(`/v1/events?after=${at}&limit=${limit}`, { signal }));
    if (!page.items.length) throw new Error(`the log returned no event after position ${at}`);
    for (const event of page.items) {
      const position = Number(event.position.source);
      if (position !== at + 1) throw new Error(`expected the event at position ${at + 1}, got ${position}`);
      lines.push(`${canonicalJson(event)}\n`);
      headHash = event.hash;
      at = position;
    }
    progress.update(at - after, to - after);
  }
  const filename = `ledger-export-${after}-${to}.ndjson`;
  download(filename, new Blob(lines, { type: "application/x-ndjson" }), "application/x-ndjson");
  return { filename, events: to - after, to, headHash: headHash ?? checkpoint.head_hash, signedHead: (headHash ?? checkpoint.head_hash) === checkpoint.head_hash };
}
