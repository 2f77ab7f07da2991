// Verifying the hash chain from the browser, with progress: the range is walked in chunks with
// `GET /v1/audit/consistency`. The server recomputes every hash of a chunk from the hash stored
// at its start and compares each with the hash stored beside it, so a consistent chunk proves
// the hash stored at its end, where the next chunk starts. Together the chunks check what
// `/v1/audit/verify` checks, and a break is reported at its first position.

import { get } from "./api.js";

/** Events per request: a chunk answers in well under a second on a loaded machine. */
const CHUNK_EVENTS = 50_000;
const REMEMBERED = "ledger.verifiedThrough";

/**
 * Verifies (from, to]: from `fromHash`, the hash the caller kept for `from` (the genesis at 0,
 * when absent), to `toHash` when the caller has one (a signed checkpoint's). Chunks after the
 * first start from the hash the previous chunk proved. `onProgress(done, total)`.
 * Returns { intact, verifiedThrough, firstBrokenPosition, problem }.
 */
export async function verifyRange({ from = 0, fromHash, to, toHash, onProgress, signal }) {
  let at = from;
  while (at < to) {
    const end = Math.min(to, at + CHUNK_EVENTS);
    const query = { from: at, to: end };
    if (at === from) query.from_hash = fromHash;
    if (end === to) query.to_hash = toHash;
    const report = await get("/v1/audit/consistency", query, { signal });
    if (!report.consistent) {
      return { intact: false, verifiedThrough: at, firstBrokenPosition: report.first_broken_position, problem: report.problem };
    }
    at = end;
    onProgress?.(at - from, to - from);
  }
  return { intact: true, verifiedThrough: to, firstBrokenPosition: null, problem: null };
}

/**
 * The last (position, hash) this browser verified against the ledger whose checkpoints
 * `publicKey` signs, if any: a ledger started afresh on the same address has another key.
 */
export function remembered(publicKey) {
  try {
    const kept = JSON.parse(localStorage.getItem(REMEMBERED));
    return kept?.publicKey === publicKey ? kept : null;
  } catch {
    return null;
  }
}

export function remember(publicKey, position, hash) {
  localStorage.setItem(REMEMBERED, JSON.stringify({ publicKey, position, hash }));
}

export function forget() {
  localStorage.removeItem(REMEMBERED);
}
