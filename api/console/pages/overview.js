// Overview: the node's role, the head of the log, throughput and latency from /metrics, and the
// latest signed checkpoint with whether the chain up to it verifies.

import { get, getText } from "../api.js";
import { can } from "../app.js";
import { lineChart } from "../chart.js";
import { count, shortHash, time } from "../format.js";
import { facts, fill, h, problemBox, section, table } from "../ui.js";
import { remember, remembered, verifyRange } from "../verify.js";

/** How often /metrics is sampled, and how many samples are kept (five minutes). */
const SAMPLE_MS = 2_000;
const SAMPLES_MAX = 150;

/** Samples survive moving between pages, so coming back shows the minutes already seen. */
const samples = [];

export async function render({ main, signal }) {
  const cards = h("div", { class: "cards" });
  const rates = h("div");
  const chain = h("div");
  const projections = h("div");
  fill(
    main,
    h("h1", {}, "Overview"),
    cards,
    section("Throughput and latency", h("p", { class: "muted small" }, `Sampled from /metrics every ${SAMPLE_MS / 1000} s while the console is open.`), rates),
    section("Signed checkpoint and chain", chain),
    section("Projections", projections),
  );
  const refresh = async () => {
    const [ready, metricsText] = await Promise.all([get("/readyz").catch((e) => e.problem ?? Promise.reject(e)), getText("/metrics")]);
    sample(metricsText);
    fill(cards, roleCards(ready));
    fill(rates, rateView());
    fill(projections, projectionTable(ready.projections ?? []));
  };
  await refresh();
  renderChain(chain, signal);
  const timer = setInterval(() => refresh().catch(() => {}), SAMPLE_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

function roleCards(ready) {
  const card = (label, value, extra) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), extra);
  const source = ready.read_source;
  return [
    card("Role", h("span", { "data-testid": "role" }, ready.role), h("div", { class: "muted small" }, `writer task: ${ready.writer}`, ready.writer_url ? ` · writes go to ${ready.writer_url}` : "")),
    card("Head position", h("span", { "data-testid": "head-position" }, count(source?.position ?? ready.position)), h("div", { class: "muted small" }, source ? `${source.kind} · ${source.lag_events} events behind the primary` : "read source not answering")),
    card("Ready", ready.ready ? h("span", { class: "good" }, "ready") : h("span", { class: "bad" }, "not ready"), h("div", { class: "muted small" }, ready.database ? "database answers" : "database does not answer")),
  ];
}

/** Parses Prometheus text into name → [{ labels, value }]. */
function parseMetrics(text) {
  const metrics = new Map();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[3] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!metrics.has(match[1])) metrics.set(match[1], []);
    metrics.get(match[1]).push({ labels, value: Number(match[4]) });
  }
  return metrics;
}

function sample(text) {
  const metrics = parseMetrics(text);
  const value = (name) => metrics.get(name)?.[0]?.value ?? 0;
  const buckets = (name) => (metrics.get(`${name}_bucket`) ?? []).map((m) => [m.labels.le === "+Inf" ? Infinity : Number(m.labels.le), m.value]);
  samples.push({
    at: Date.now(),
    position: value("ledger_position"),
    commit: buckets("ledger_commit_latency_seconds"),
    request: buckets("ledger_http_request_duration_seconds"),
  });
  if (samples.length > SAMPLES_MAX) samples.shift();
}

/** The 99th percentile between two cumulative histograms: the upper bound of its bucket. */
function p99(before, after) {
  const deltas = after.map(([le, n], i) => [le, n - (before[i]?.[1] ?? 0)]);
  const total = deltas.at(-1)?.[1] ?? 0;
  if (!total) return null;
  return deltas.find(([, n]) => n >= total * 0.99)?.[0] ?? null;
}

function ms(seconds) {
  if (seconds === null) return "–";
  return seconds === Infinity ? "> 1 s" : `≤ ${seconds * 1000} ms`;
}

function rateView() {
  if (samples.length < 2) return h("p", { class: "muted" }, "Collecting a second sample…");
  const first = samples[0];
  const last = samples.at(-1);
  const previous = samples.at(-2);
  const seconds = (a, b) => (b.at - a.at) / 1000;
  const rate = (a, b) => Math.max(0, (b.position - a.position) / seconds(a, b));
  const points = samples.slice(1).map((s, i) => [(s.at - last.at) / 1000, rate(samples[i], s)]);
  return [
    facts([
      ["Events/s now", h("span", { "data-testid": "events-per-second" }, count(Math.round(rate(previous, last))))],
      [`Events/s over ${Math.round(seconds(first, last))} s`, count(Math.round(rate(first, last)))],
      ["Commit p99 (writer)", ms(p99(first.commit, last.commit))],
      ["Request p99 (this node)", ms(p99(first.request, last.request))],
    ]),
    lineChart([{ name: "events/s", points }], { xLabel: (x) => `${Math.round(x)} s`, yLabel: (y) => count(Math.round(y)) }),
  ];
}

function projectionTable(rows) {
  return table(
    [
      { label: "Projection", value: (p) => p.name },
      { label: "Kind", value: (p) => p.kind },
      { label: "Position", value: (p) => count(p.position), numeric: true },
      { label: "Lag (events)", value: (p) => count(p.lag_events), numeric: true },
      { label: "Lag (ms)", value: (p) => count(p.lag_ms), numeric: true },
    ],
    rows,
  );
}

/**
 * The latest signed checkpoint, and whether the chain up to it verifies. This browser remembers
 * the last checkpoint it verified and checks only what the log added since, as an auditor would.
 */
async function renderChain(element, signal) {
  if (!can("audit")) return fill(element, h("p", { class: "muted" }, "Needs an API key with the audit scope."));
  try {
    const checkpoint = await get("/v1/audit/checkpoint", {}, { signal });
    const kept = remembered(checkpoint.public_key);
    const status = h("span", { "data-testid": "chain-status" }, "verifying…");
    fill(
      element,
      facts([
        ["Position", h("span", { "data-testid": "checkpoint-position" }, count(checkpoint.position))],
        ["Head hash", h("code", { title: checkpoint.head_hash }, checkpoint.head_hash)],
        ["Recorded at", time(checkpoint.recorded_at)],
        ["Signature", h("code", { title: checkpoint.signature }, shortHash(checkpoint.signature))],
        ["Public key", h("code", {}, checkpoint.public_key)],
        ["Chain", status],
      ]),
    );
    const from = kept && kept.position <= checkpoint.position ? kept : { position: 0, hash: undefined };
    const result = await verifyRange({ from: from.position, fromHash: from.hash, to: checkpoint.position, toHash: checkpoint.head_hash, signal });
    if (result.intact) {
      remember(checkpoint.public_key, checkpoint.position, checkpoint.head_hash);
      fill(status, h("span", { class: "good" }, "intact"), ` through ${count(checkpoint.position)}`, from.position ? h("span", { class: "muted" }, ` (checked from ${count(from.position)}, verified here before)`) : "");
    } else {
      fill(status, h("span", { class: "bad" }, `broken at position ${result.firstBrokenPosition}`), " — ", result.problem, " · ", h("a", { href: "/console/audit", "data-link": true }, "open Audit"));
    }
  } catch (error) {
    if (error.name !== "AbortError") fill(element, problemBox(error));
  }
}
