#!/usr/bin/env node
// A third verifier of a ledger export (NDJSON), written in a clean room from docs/verify.md, docs/audit.md,
// docs/events.md and docs/vectors/README.md only. Node 20, standard library only.
//
//   node tools/verify_export.mjs EXPORT.ndjson [--checkpoint CP.json] [--public-key HEX] [--at-position P]...
//   node tools/verify_export.mjs --vectors DIR
//
// Out of scope (said so in the output): lots/positions, trial balances and close digests.
import { createHash, createPublicKey, verify as edVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

// ---------------------------------------------------------------- JSON that keeps number literals
// audit.md "Canonical JSON": numbers are hashed as the characters written, so never go through a
// float. Node 20's JSON.parse has no source access without a flag (audit.md's JS snippet needs
// --harmony-json-parse-with-source), so this is a small parser of our own. It also refuses what the
// ledger never writes: duplicate keys and lone surrogates.
class Num { constructor(src) { this.src = src; } }
const NUM_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

function parseJSON(text) {
  let i = 0;
  const ws = () => { while (" \t\n\r".includes(text[i]) && i < text.length) i++; };
  const fail = (m) => { throw new Error(`JSON: ${m} at ${i}`); };
  const value = (depth) => {
    if (depth > 200) fail("too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++; const o = Object.create(null); ws();
      if (text[i] === "}") { i++; return o; }
      for (;;) {
        ws(); if (text[i] !== '"') fail("key");
        const k = str();
        if (Object.prototype.hasOwnProperty.call(o, k)) fail(`duplicate key ${k}`);
        ws(); if (text[i++] !== ":") fail("colon");
        o[k] = value(depth + 1); ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] === "}") return o;
        fail("object");
      }
    }
    if (c === "[") {
      i++; const a = []; ws();
      if (text[i] === "]") { i++; return a; }
      for (;;) {
        a.push(value(depth + 1)); ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] === "]") return a;
        fail("array");
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [["true", true], ["false", false], ["null", null]])
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    NUM_RE.lastIndex = i;
    const m = NUM_RE.exec(text);
    if (!m) fail("value");
    i += m[0].length;
    return new Num(m[0]);
  };
  const str = () => {
    let out = ""; i++;
    for (;;) {
      const c = text[i++];
      if (c === undefined) fail("string");
      if (c === '"') break;
      if (c < " ") fail("control character in string");
      if (c !== "\\") { out += c; continue; }
      const e = text[i++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e in simple) out += simple[e];
      else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4))) {
        out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16)); i += 4;
      } else fail("escape");
    }
    if (!out.isWellFormed()) fail("lone surrogate");
    return out;
  };
  const v = value(0); ws();
  if (i !== text.length) fail("trailing text");
  return v;
}

// Canonical form: no whitespace, keys by UTF-8 bytes, minimal string escapes, numbers as written.
const ESC = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r" };
const cstr = (s) => '"' + s.replace(/["\\\u0000-\u001f]/g,
  (c) => ESC[c] ?? "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")) + '"';
const byUtf8 = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
function canonical(v) {
  if (v instanceof Num) return v.src;
  if (v === null) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") return String(v);            // our own report values only
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return cstr(v);
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  return "{" + Object.keys(v).sort(byUtf8).map((k) => cstr(k) + ":" + canonical(v[k])).join(",") + "}";
}
const int = (v) => (v instanceof Num && /^(0|[1-9][0-9]*)$/.test(v.src) ? Number(v.src) : NaN);

// ---------------------------------------------------------------- the chain (audit.md)
const sha256 = (...parts) => { const h = createHash("sha256"); for (const p of parts) h.update(p); return h.digest(); };
const GENESIS = sha256("ledger:genesis:v1");
const RECORDED_AT_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ENVELOPE_KEYS = "event_id,hash,metadata,payload,position,recorded_at,schema_version,type";

function verifyChain(text) {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();                   // every line ends with "\n", the last too
  const events = [], problems = [], hashAt = new Map();   // hashAt: position → recomputed hash hex
  let prev = GENESIS, expected = 1, firstBroken = null;
  const broken = (position, why) => { problems.push({ position, problem: why }); firstBroken ??= position; };
  for (const line of lines) {
    let ev;
    try { ev = parseJSON(line); } catch (e) { broken(expected, `unreadable line: ${e.message}`); expected++; continue; }
    const pos = int(ev.position);
    if (pos !== expected) {
      // removed-event / swapped-events: the position that was expected is where it breaks
      broken(expected, `found position ${ev.position?.src ?? ev.position} where ${expected} was expected`);
    }
    const why = [];
    if (Object.keys(ev).sort().join(",") !== ENVELOPE_KEYS) why.push("envelope fields");
    if (!UUID_RE.test(ev.event_id ?? "")) why.push("event_id");
    if (!RECORDED_AT_RE.test(ev.recorded_at ?? "")) why.push("recorded_at form");
    if (Number.isNaN(int(ev.schema_version))) why.push("schema_version");
    if (!/^[0-9a-f]{64}$/.test(ev.hash ?? "")) why.push("hash form");
    // the ledger only writes canonical text: payload/metadata (and so the line) must be canonical
    if (canonical(ev) !== line) why.push("not in canonical form");
    const bytes = ["ledger:event:v1", ev.position?.src, ev.event_id, ev.type, ev.schema_version?.src,
      ev.recorded_at, canonical(ev.payload ?? null), canonical(ev.metadata ?? null)].join("\n");
    const h = sha256(prev, Buffer.from(bytes, "utf8")).toString("hex");
    if (h !== ev.hash) why.push("hash does not match content and predecessor");
    if (why.length && pos === expected) broken(pos, why.join("; "));
    if (firstBroken === null) hashAt.set(pos, { hash: h, recorded_at: ev.recorded_at });
    if (events.length && ev.recorded_at < events.at(-1).recorded_at)  // not a chain break (verify.md)
      problems.push({ position: pos, problem: "recorded_at goes backwards" });
    events.push(ev);
    prev = /^[0-9a-f]{64}$/.test(ev.hash ?? "") ? Buffer.from(ev.hash, "hex") : Buffer.from(h, "hex");
    expected = (Number.isInteger(pos) ? pos : expected) + 1;
  }
  const last = events.at(-1);
  return { events, problems, hashAt, first_broken_position: firstBroken, chain_intact: firstBroken === null,
    head_position: last ? int(last.position) : 0, head_hash: last ? last.hash : GENESIS.toString("hex") };
}

// verify.md "What the verdicts mean"; the message is audit.md "Signed checkpoints" (v2).
function checkCheckpoint(chain, cp, storedKey) {
  let signature_valid = false;
  try {
    const msg = `ledger:checkpoint:v2\n${cp.ledger}\n${cp.position.src}\n${cp.head_hash}\n${cp.recorded_at}`;
    const x = Buffer.from(cp.public_key, "hex").toString("base64url");
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
    signature_valid = edVerify(null, Buffer.from(msg, "utf8"), key, Buffer.from(cp.signature, "hex"));
  } catch { signature_valid = false; }
  const key_matches = storedKey ? storedKey.toLowerCase() === cp.public_key : null;
  const pos = int(cp.position);
  // "reaches": the chain recomputed without a break up to the checkpoint's position (hashAt only
  // holds positions before the first break), there with head_hash and that event's recorded_at
  const at = pos === 0 ? { hash: GENESIS.toString("hex"), recorded_at: "" } : chain.hashAt.get(pos);
  const reaches = !!at && at.hash === cp.head_hash && at.recorded_at === cp.recorded_at;
  const holds = signature_valid && key_matches !== false && reaches;
  return { signature_valid, public_key_matches_stored: key_matches, chain_intact: chain.chain_intact,
    checkpoint_holds: holds,
    first_broken_position: chain.first_broken_position ?? (holds ? null : pos) };
}

// ---------------------------------------------------------------- decimals (BigInt, never Number)
function amount(s, scale) {   // events.md "Values inside payloads": exactly `scale` fractional digits
  const re = scale === 0 ? /^-?(0|[1-9][0-9]*)$/ : new RegExp(`^-?(0|[1-9][0-9]*)\\.[0-9]{${scale}}$`);
  if (typeof s !== "string" || !re.test(s)) throw new Error(`amount ${JSON.stringify(s)} not at scale ${scale}`);
  return BigInt(s.replace(".", ""));
}
function fmt(v, scale) {
  const neg = v < 0n, d = (neg ? -v : v).toString().padStart(scale + 1, "0");
  return (neg ? "-" : "") + (scale ? d.slice(0, -scale) + "." + d.slice(-scale) : d);
}
// opened_at: fewest of 0, 3 or 6 fractional digits (events.md "The account answer")
const shortTime = (t) => t.replace(/\.(\d{3})000Z$/, ".$1Z").replace(/\.000Z$/, "Z");

// ---------------------------------------------------------------- figures (events.md "The figures")
const KNOWN = new Set(["AssetDefined", "AccountOpened", "TransactionPosted", "TradeExecuted",
  "AccountStatusChanged", "AccountLimitsSet", "PendingPosted", "PendingVoided", "PendingExpired",
  "PeriodClosed", "PeriodReopened", "BookingMethodSet", "PriceMarked"]);

// Replays events in position order up to `upto` (inclusive). Returns the state.
function replay(events, upto = Infinity) {
  const scales = new Map(), accounts = new Map(), holds = new Map(), problems = [];
  const acct = (code) => {
    const a = accounts.get(code);
    if (!a) throw new Error(`account ${code} was never opened`);
    return a;
  };
  const fig = (a, asset) => {
    if (!scales.has(asset)) throw new Error(`asset ${asset} was never defined`);
    if (!a.figs.has(asset)) a.figs.set(asset, { posted: 0n, pd: 0n, pc: 0n, position: 0, lastMove: null });
    return a.figs.get(asset);
  };
  // One posting is two steps, the source's then the destination's (events.md "Statuses and
  // bounds"): a step that moves or reserves needs an open account; bounds are checked per step on
  // TransactionPosted/TradeExecuted (not forced reversals), never on settlements.
  const bound = (a, asset, which) => {
    const l = a.limits.get(asset);
    if (l) return l[which] === null ? null : amount(l[which], scales.get(asset));
    return which === "min_balance" && !a.allow_negative ? 0n : null;
  };
  const step = (a, asset, isSource, amt, effect, pos, ev) => {
    const f = fig(a, asset), avail0 = f.posted - f.pd, top0 = f.posted + f.pc;
    const signed = effect === "release" ? -amt : amt;
    if (effect === "move") { f.posted += isSource ? -amt : amt; f.lastMove = pos; }
    else if (isSource) f.pd += signed;                  // reserve / release: pending debits
    else f.pc += signed;                                //                   pending credits
    f.position = a.touched = pos;                       // any effect names it (events.md "position")
    if (effect === "release") return;
    if (a.status !== "open") problems.push({ position: pos, problem: `${a.code} is ${a.status}` });
    if (!ev.bounded) return;
    const min = bound(a, asset, "min_balance"), max = bound(a, asset, "max_balance");
    const avail = f.posted - f.pd, top = f.posted + f.pc;
    if (min !== null && avail < min && avail < avail0) problems.push({ position: pos, problem: `${a.code} ${asset} below its minimum` });
    if (max !== null && top > max && top > top0) problems.push({ position: pos, problem: `${a.code} ${asset} above its maximum` });
  };
  const apply = (p, effect, pos, ev) => {
    const amt = amount(p.amount, scales.get(p.asset));
    if (!(amt > 0n)) throw new Error("posting amount not above zero");
    if (p.source === p.destination) throw new Error("posting from an account to itself");
    step(acct(p.source), p.asset, true, amt, effect, pos, ev);
    step(acct(p.destination), p.asset, false, amt, effect, pos, ev);
  };
  const sameList = (a, b) => canonical(a ?? []) === canonical(b ?? []);
  const key = (q) => `${q.source}\t${q.destination}\t${q.asset}`;
  const fits = (posted, reserved) => {      // earliest unmatched reserved posting after the last match
    let j = 0;
    for (const q of posted) {
      while (j < reserved.length && !(key(reserved[j]) === key(q) &&
        amount(q.amount, scales.get(q.asset)) <= amount(reserved[j].amount, scales.get(q.asset)))) j++;
      if (j++ >= reserved.length) return false;
    }
    return true;
  };
  const sums = (list) => { const m = new Map(); for (const q of list) m.set(key(q), (m.get(key(q)) ?? 0n) + amount(q.amount, scales.get(q.asset))); return m; };
  const sameSums = (a, b) => { const x = sums(a), y = sums(b); return x.size === y.size && [...x].every(([k, v]) => y.get(k) === v); };
  for (const ev of events) {
    const pos = int(ev.position), p = ev.payload ?? {};
    if (pos > upto) break;
    if (!KNOWN.has(ev.type) || int(ev.schema_version) !== 1) {  // events.md: stop, do not skip
      problems.push({ position: pos, problem: `unknown type/version ${ev.type}/${ev.schema_version?.src}: figures stop here` });
      break;
    }
    try {
      switch (ev.type) {
        case "AssetDefined": scales.set(p.asset, int(p.scale)); break;
        case "AccountOpened":
          accounts.set(p.code, { id: p.account_id, code: p.code, allow_negative: p.allow_negative,
            metadata: p.metadata, position: pos, opened_at: ev.recorded_at, status: "open",
            statusPos: 0, limits: new Map(), limitsPos: 0, methodPos: 0, touched: 0, figs: new Map() });
          break;
        case "TransactionPosted": case "TradeExecuted": {
          const bounded = !(p.kind === "reversal" && p.forced === true);
          for (const q of p.postings) apply(q, p.pending === true ? "reserve" : "move", pos, { bounded });
          if (p.pending === true) holds.set(p.transaction_id ?? p.trade_id, { reserved: p.postings, open: true });
          break;
        }
        case "PendingPosted": case "PendingVoided": case "PendingExpired": {
          const h = holds.get(p.pending_id);
          if (!h || !h.open) problems.push({ position: pos, problem: `settles ${p.pending_id}, not an open hold` });
          // without remaining, released is exactly what the hold reserves now, and postings match
          // distinct reserved postings in order with no larger amounts (events.md "PendingPosted");
          // with remaining (a part), released = postings and released + remaining = reserved per key
          else if (p.remaining === undefined ? !sameList(h.reserved, p.released) || !fits(p.postings ?? [], h.reserved)
            : !sameList(p.released, p.postings) || !sameSums([...p.released, ...p.remaining], h.reserved))
            problems.push({ position: pos, problem: "settlement does not match what the hold reserves" });
          for (const q of p.released) apply(q, "release", pos, {});
          for (const q of p.postings ?? []) apply(q, "move", pos, {});
          if (h) { if (p.remaining !== undefined) h.reserved = p.remaining; else h.open = false; }
          break;
        }
        case "AccountStatusChanged": { const a = acct(p.account); a.status = p.status; a.statusPos = pos; break; }
        case "AccountLimitsSet": {
          const a = acct(p.account);
          a.limits.set(p.asset, { asset: p.asset, min_balance: p.min_balance, max_balance: p.max_balance });
          a.limitsPos = pos; break;
        }
        case "BookingMethodSet": acct(p.account).methodPos = pos; break;
        default: break;   // PeriodClosed, PeriodReopened, PriceMarked: no figure, no version
      }
    } catch (e) { problems.push({ position: pos, problem: e.message }); }
  }
  // at the end (it holds after every event): per asset, posted sums to zero, pending debits = credits
  const totals = new Map();
  for (const a of accounts.values()) for (const [asset, f] of a.figs) {
    const t = totals.get(asset) ?? { posted: 0n, pd: 0n, pc: 0n }; totals.set(asset, t);
    t.posted += f.posted; t.pd += f.pd; t.pc += f.pc;
  }
  for (const [asset, t] of totals)
    if (t.posted !== 0n || t.pd !== t.pc) problems.push({ position: upto, problem: `asset ${asset} does not balance` });
  return { scales, accounts, problems };
}

// GET /v1/accounts/{code}, as events.md "The account answer" describes it.
function accountAnswer(a, scales) {
  const assets = [...a.figs.keys()].sort(byUtf8);
  const balances = assets.map((asset) => {
    const f = a.figs.get(asset), sc = scales.get(asset);
    return { asset, balance: fmt(f.posted, sc), pending_debits: fmt(f.pd, sc), pending_credits: fmt(f.pc, sc),
      available: fmt(f.posted - f.pd, sc), trade_date_balance: fmt(f.posted + f.pc - f.pd, sc), position: f.position };
  });
  const version = Math.max(a.position, a.statusPos, a.limitsPos, a.touched, VERSION_COUNTS_BOOKING ? a.methodPos : 0);
  return { id: a.id, code: a.code, allow_negative: a.allow_negative, metadata: a.metadata, position: a.position,
    opened_at: shortTime(a.opened_at), status: a.status, version, balances,
    limits: [...a.limits.keys()].sort(byUtf8).map((k) => a.limits.get(k)) };
}
// events.md contradicts itself: "The account answer" counts the latest BookingMethodSet in
// `version`, "BookingMethodSet" says the served version does not change. See the report.
const VERSION_COUNTS_BOOKING = true;

// …/balances?at_position=P: posted only, assets the account's posted balance was moved in up to P.
function balancesAt(state, code, P, headAccount) {
  const a = state.accounts.get(code);
  const balances = a ? [...a.figs.keys()].sort(byUtf8).filter((k) => a.figs.get(k).lastMove !== null)
    .map((asset) => ({ asset, balance: fmt(a.figs.get(asset).posted, state.scales.get(asset)),
      position: a.figs.get(asset).lastMove })) : [];
  return { account: code, account_id: (a ?? headAccount)?.id ?? null, as_of: null, as_of_position: P,
    at: null, balances, known_at_position: null };
}

function report(text, cp, atPositions = [], storedKey = null) {
  const chain = verifyChain(text);
  const head = replay(chain.events);
  const answers = {};
  for (const code of [...head.accounts.keys()].sort(byUtf8)) answers[code] = accountAnswer(head.accounts.get(code), head.scales);
  const at_positions = {};
  for (const P of atPositions) {
    const st = replay(chain.events, P);
    at_positions[P] = {};
    for (const code of Object.keys(answers)) at_positions[P][code] = balancesAt(st, code, P, head.accounts.get(code));
  }
  const verdict = cp ? checkCheckpoint(chain, cp, storedKey)
    : { chain_intact: chain.chain_intact, checkpoint_holds: null, first_broken_position: chain.first_broken_position };
  return { verdict, head: { position: chain.head_position, hash: chain.head_hash },
    problems: [...chain.problems, ...head.problems], accounts: answers, at_positions,
    not_checked: "lots/positions (…/positions), trial balances and close digests are out of scope of this verifier" };
}

// ---------------------------------------------------------------- --vectors
// times are compared as instants (events.md): whole seconds via Date, then up to 6 fraction digits
const micros = (t = "") => String(BigInt(Date.parse(t.replace(/\.\d+/, "")) || 0) * 1000n +
  BigInt((t.match(/\.(\d{1,6})/)?.[1] ?? "").padEnd(6, "0")));
function runVectors(dir) {
  const manifest = parseJSON(readFileSync(join(dir, "manifest.json"), "utf8"));
  const mismatches = []; let checks = 0;
  const check = (where, field, expected, got) => {
    checks++;
    const e = canonical(expected ?? null), g = canonical(got ?? null);
    if (e !== g) mismatches.push({ ...where, field, expected: e, got: g });
  };
  for (const set of manifest.sets) for (const ledger of set.ledgers) {
    const exp = parseJSON(readFileSync(join(dir, set.name, `${ledger}.expected.json`), "utf8"));
    const text = readFileSync(join(dir, set.name, `${ledger}.ndjson`), "utf8");
    const at = Object.keys(exp.at_positions).map(Number);
    const r = report(text, exp.checkpoint, at);
    const w = { set: set.name, ledger };
    check(w, "head", exp.head, r.head);
    for (const k of ["chain_intact", "checkpoint_holds", "first_broken_position"]) check(w, `verdict.${k}`, exp.verdict[k], r.verdict[k]);
    check(w, "accounts (set of codes)", Object.keys(exp.accounts).sort(byUtf8), Object.keys(r.accounts));
    for (const [code, ea] of Object.entries(exp.accounts)) {
      const ga = r.accounts[code] ?? {}, wa = { ...w, account: code };
      for (const k of ["id", "allow_negative", "metadata", "position", "status", "version", "limits"]) check(wa, k, ea[k], ga[k]);
      check(wa, "opened_at (as an instant)", micros(ea.opened_at), micros(ga.opened_at));
      check(wa, "balances (assets)", ea.balances.map((b) => b.asset), (ga.balances ?? []).map((b) => b.asset));
      for (const eb of ea.balances) {
        const gb = (ga.balances ?? []).find((b) => b.asset === eb.asset) ?? {};
        for (const k of ["balance", "pending_debits", "pending_credits", "available", "trade_date_balance", "position"])
          check({ ...wa, asset: eb.asset }, k, eb[k], gb[k]);
      }
    }
    for (const [P, accts] of Object.entries(exp.at_positions)) for (const [code, eb] of Object.entries(accts)) {
      check({ ...w, account: code, at_position: P }, "balances?at_position", eb, r.at_positions[P]?.[code]);
    }
    for (const t of exp.tampered) {
      const tr = report(readFileSync(join(dir, set.name, t.file), "utf8"), exp.checkpoint);
      for (const k of ["chain_intact", "checkpoint_holds", "first_broken_position"])
        check({ ...w, tampered: t.kind }, `verdict.${k}`, t[k], tr.verdict[k]);
    }
  }
  return { checks, mismatches, ok: mismatches.length === 0,
    skipped: "positions (lots) and trial_balances in the expected files are not checked: out of scope" };
}

// ---------------------------------------------------------------- command line
const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : undefined; };
const vectors = opt("--vectors");
if (vectors) {
  const s = runVectors(vectors);
  process.stdout.write(canonical(s) + "\n");
  process.exit(s.ok ? 0 : 1);
}
const cpFile = opt("--checkpoint"), storedKey = opt("--public-key");
const at = []; for (let p; (p = opt("--at-position")) !== undefined;) at.push(Number(p));
if (args.length !== 1) { console.error("usage: node verify.mjs EXPORT.ndjson [--checkpoint CP.json] [--public-key HEX] [--at-position P]... | --vectors DIR"); process.exit(2); }
const cp = cpFile ? parseJSON(readFileSync(cpFile, "utf8")) : null;
const r = report(readFileSync(args[0], "utf8"), cp, at, storedKey);
process.stdout.write(canonical(r) + "\n");
process.exit(r.verdict.chain_intact && r.verdict.checkpoint_holds !== false && r.problems.length === 0 ? 0 : 1);
