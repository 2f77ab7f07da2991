// An export (`ledger export` NDJSON) verified in the browser from the file alone: each line read
// with its numbers as written, its canonical bytes rebuilt and chained from the genesis value with
// WebCrypto's SHA-256 (docs/audit.md), a kept checkpoint's Ed25519 signature checked and its head
// found in the chain, and every account's figures recomputed from the events (books.js). Nothing is
// asked of the server: a verifier that trusted it would prove nothing.
//
// The file is read as a stream and worked through in slices of a few tens of milliseconds, each
// followed by a pause that lets the page repaint and take clicks: a large export never freezes it.

import { canonicalJson, numberSource, parseKeepingNumbers } from "./canonical.js";
import { Books, byBytes } from "./books.js";
import { hexOfBytes, signatureValid } from "./checkpoint.js";

/** SHA-256 of the 17 bytes `ledger:genesis:v1`: the hash before position 1. */
export const GENESIS = "f9fd333a0202bd84e2a8cad8ee9c0f434d38403f2083782c60f05b110612f6d2";
/** How long the page works before it lets the browser paint and take input again. */
const SLICE_MS = 40;
/** The members of an export line (docs/audit.md, "Where to find it"), in canonical order. */
const MEMBERS = ["event_id", "hash", "metadata", "payload", "position", "recorded_at", "schema_version", "type"];
const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RECORDED_AT = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$/;

const encoder = new TextEncoder();

/** The lines of a file as bytes, each with the offset where it ends, read as a stream. */
async function* linesOf(file) {
  const reader = file.stream().getReader();
  let rest = new Uint8Array(0);
  let offset = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = rest.length ? concat(rest, value) : value;
    let start = 0;
    for (let end = chunk.indexOf(10); end >= 0; end = chunk.indexOf(10, start)) {
      yield { bytes: chunk.subarray(start, end), end: offset + end + 1, terminated: true };
      start = end + 1;
    }
    offset += start;
    rest = chunk.slice(start);
  }
  if (rest.length) yield { bytes: rest, end: offset + rest.length, terminated: false };
}

function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** Whether every string in a parsed value is well formed: the ledger never writes a lone surrogate. */
function wellFormed(value) {
  if (typeof value === "string") return value.isWellFormed();
  if (value === null || typeof value !== "object") return true;
  return Object.entries(value).every(([k, v]) => k.isWellFormed() && wellFormed(v));
}

/**
 * One line as an event, or throws with why it is not one the ledger wrote: not UTF-8, not JSON,
 * not in canonical form (so its payload or metadata is not the text that was hashed), or a
 * member missing, extra or malformed.
 */
function readEvent(bytes, decoder) {
  const text = decoder.decode(bytes);
  const line = parseKeepingNumbers(text);
  if (!line || typeof line !== "object" || Array.isArray(line)) throw new Error("not a JSON object");
  const keys = Object.keys(line).sort();
  if (keys.join() !== MEMBERS.join()) throw new Error(`its members are ${keys.join(", ")}, not ${MEMBERS.join(", ")}`);
  if (!wellFormed(line)) throw new Error("a string holds a lone surrogate");
  if (canonicalJson(line) !== text) throw new Error("not in canonical form: not the text the ledger wrote");
  const position = numberSource(line.position);
  const schemaVersion = numberSource(line.schema_version);
  if (!/^[1-9][0-9]*$/.test(position ?? "")) throw new Error("its position is not a positive integer");
  if (!/^[1-9][0-9]*$/.test(schemaVersion ?? "")) throw new Error("its schema_version is not a positive integer");
  if (!EVENT_ID.test(line.event_id ?? "")) throw new Error("its event_id is not a lower-case hyphenated UUID");
  if (!RECORDED_AT.test(line.recorded_at ?? "")) throw new Error("its recorded_at is not RFC 3339 UTC with six fractional digits");
  if (typeof line.type !== "string" || !/^[0-9a-f]{64}$/.test(line.hash ?? "")) throw new Error("its type or hash is malformed");
  for (const member of ["payload", "metadata"]) {
    if (!line[member] || typeof line[member] !== "object" || Array.isArray(line[member])) throw new Error(`its ${member} is not an object`);
  }
  return { line, position: Number(position), schemaVersion };
}

/** The canonical bytes of an event (docs/audit.md, "The canonical bytes of an event"). */
function eventBytes(line) {
  const fields = [
    "ledger:event:v1",
    numberSource(line.position),
    line.event_id,
    line.type,
    numberSource(line.schema_version),
    line.recorded_at,
    canonicalJson(line.payload),
    canonicalJson(line.metadata),
  ];
  return encoder.encode(fields.join("\n"));
}

/** hash(n) = SHA-256(hash(n−1) ‖ canonical(event n)), in hex. */
async function chainHash(previousHex, bytes) {
  const input = new Uint8Array(32 + bytes.length);
  input.set(Uint8Array.from(previousHex.match(/../g), (b) => parseInt(b, 16)));
  input.set(bytes, 32);
  return hexOfBytes(await crypto.subtle.digest("SHA-256", input));
}

/** Lets the page paint and take input, and stops if the user cancelled. */
async function pause(signal) {
  await new Promise((resolve) => setTimeout(resolve, 0));
  signal?.throwIfAborted();
}

/**
 * The walk over the file: the chain, the hash at the checkpoint's position, the figures, and the
 * posted balances right after each of `atPositions`.
 */
class Walk {
  constructor(checkpoint, atPositions) {
    this.checkpoint = checkpoint;
    this.pending = [...new Set(atPositions)].sort((a, b) => a - b);
    this.snapshots = new Map();
    this.books = new Books();
    this.head = { position: 0, hash: GENESIS };
    this.hashAtCheckpoint = checkpoint?.position === 0 ? GENESIS : null;
    this.broken = null; // { position, problem }
    this.figuresStopped = null; // { position, problem }
    this.lines = 0;
    this.problems = [];
    this.beyond = []; // positions asked for that the figures did not reach
  }

  /** Takes one line; false once the chain is broken and nothing after it can be believed. */
  async take(bytes, decoder) {
    this.lines += 1;
    const expected = this.head.position + 1;
    let event;
    try {
      event = readEvent(bytes, decoder);
    } catch (error) {
      return this.breaks(expected, `line ${this.lines}: ${error.message}`);
    }
    if (event.position !== expected) {
      const problem = expected === 1 ? "the export does not start at position 1" : `position ${event.position} where ${expected} was expected`;
      return this.breaks(expected, `line ${this.lines}: ${problem}`);
    }
    const hash = await chainHash(this.head.hash, eventBytes(event.line));
    if (hash !== event.line.hash) return this.breaks(expected, `the hash does not match the event's content and the hash before it`);
    this.head = { position: event.position, hash };
    if (event.position === this.checkpoint?.position) this.hashAtCheckpoint = hash;
    this.applyFigures(event);
    return true;
  }

  breaks(position, problem) {
    this.broken = { position, problem };
    return false;
  }

  /** The event's effect on the figures, after the snapshots of the positions before it. */
  applyFigures({ line, position, schemaVersion }) {
    if (this.figuresStopped) return;
    this.snapshotBefore(position);
    try {
      this.books.apply({ position, type: line.type, schemaVersion, recordedAt: line.recorded_at, payload: line.payload });
    } catch (error) {
      this.figuresStopped = { position, problem: error.message };
    }
  }

  /** Snapshots every position asked for that is below `position` (right after it, before `position`). */
  snapshotBefore(position) {
    while (this.pending.length && this.pending[0] < position) {
      this.snapshots.set(this.pending.shift(), this.books.postedSnapshot());
    }
  }

  /**
   * The positions up to the last event are answered; those after it are not in the export (the
   * server too refuses a position its log has not reached: 409).
   */
  finish() {
    if (!this.figuresStopped) this.snapshotBefore(this.head.position + 1);
    this.beyond = this.pending;
  }
}

/**
 * Verifies `file` (a File or Blob of `ledger export` NDJSON) against `checkpoint` (parsed, or
 * null), with the posted balances right after each of `atPositions`. `onProgress(bytesDone,
 * bytesTotal, events)`. Returns the report (see `report`).
 */
export async function verifyExport(file, { checkpoint = null, atPositions = [], onProgress, signal } = {}) {
  if (!globalThis.crypto?.subtle) throw new Error("WebCrypto is only available to pages served over HTTPS or from localhost");
  const walk = new Walk(checkpoint, atPositions);
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  let sliceStart = performance.now();
  let last = null;
  for await (const line of linesOf(file)) {
    last = line;
    if (!(await walk.take(line.bytes, decoder))) break;
    if (performance.now() - sliceStart > SLICE_MS) {
      onProgress?.(line.end, file.size, walk.head.position);
      await pause(signal);
      sliceStart = performance.now();
    }
  }
  if (last && !last.terminated && !walk.broken) walk.problems.push({ position: walk.head.position, problem: "the last line does not end with a line feed" });
  walk.finish();
  onProgress?.(last?.end ?? 0, file.size, walk.head.position); // where the chain broke, if it did
  const signature = checkpoint ? await signatureValid(checkpoint) : null;
  return report(file, walk, signature);
}

/** The verdict: docs/vectors' `verdict`, from the chain and the checkpoint. */
function verdictOf(walk, signature) {
  const cp = walk.checkpoint;
  const headMatches = cp !== null && walk.hashAtCheckpoint === cp.head_hash;
  const holds = cp === null ? null : signature.valid === null ? null : signature.valid && headMatches;
  let first = walk.broken?.position ?? null;
  // A chain intact on its own that does not reach the signed head there was rewritten after it.
  if (first === null && cp !== null && !headMatches) first = cp.position;
  return { chain_intact: walk.broken === null, checkpoint_holds: holds, first_broken_position: first };
}

function checkpointReport(walk, signature) {
  const cp = walk.checkpoint;
  if (!cp) return null;
  return {
    ledger: cp.ledger,
    position: cp.position,
    head_hash: cp.head_hash,
    recorded_at: cp.recorded_at,
    public_key: cp.public_key,
    signature_valid: signature.valid,
    signature_problem: signature.why,
    hash_in_export: walk.hashAtCheckpoint,
  };
}

/**
 * The report: the verdict, the head the chain reaches, the checkpoint, and every account's
 * answer at the head and right after each position asked for, computed from the events through
 * `figures_through` (all of them, unless the chain broke or an event could not be applied).
 */
function report(file, walk, signature) {
  const books = walk.books;
  if (!walk.figuresStopped) books.checkTotals();
  const codes = [...books.accounts.keys()].sort(byBytes);
  const stopped = walk.figuresStopped;
  return {
    file: file.name ?? null,
    bytes: file.size,
    lines: walk.lines,
    ledger: walk.checkpoint?.ledger ?? null,
    verdict: verdictOf(walk, signature),
    head: walk.head,
    chain_problem: walk.broken?.problem ?? null,
    checkpoint: checkpointReport(walk, signature),
    figures_through: stopped ? stopped.position - 1 : books.head,
    figures_stopped: stopped,
    accounts: Object.fromEntries(codes.map((code) => [code, books.accountAnswer(code)])),
    at_positions: atPositionsReport(walk, codes),
    at_positions_not_reached: walk.beyond,
    problems: [...walk.problems, ...books.problems],
  };
}

/** GET …/accounts/{code}/balances?at_position=P for every account, at each position snapshotted. */
function atPositionsReport(walk, codes) {
  const answers = {};
  for (const [position, snapshot] of [...walk.snapshots].sort(([a], [b]) => a - b)) {
    answers[position] = Object.fromEntries(
      codes.map((code) => [
        code,
        {
          account_id: walk.books.accounts.get(code).id,
          account: code,
          as_of_position: position,
          at: null,
          as_of: null,
          known_at_position: null,
          balances: snapshot.get(code) ?? [],
        },
      ]),
    );
  }
  return answers;
}
