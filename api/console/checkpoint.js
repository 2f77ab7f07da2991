// Signed checkpoints (docs/audit.md, "Signed checkpoints"), read and checked in the browser: the
// Audit page checks the ledger's own and two kept ones, the Verify page one kept beside an export.
// The Ed25519 signature is checked with WebCrypto, so a checkpoint is believed for its signature
// and public key alone, not for having come from the server.

import { h } from "./ui.js";

export function bytesOfHex(hex) {
  if (!/^([0-9a-f]{2})*$/.test(hex)) throw new Error(`not lower-case hex: ${hex.slice(0, 20)}…`);
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export function hexOfBytes(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The bytes a checkpoint signs (api/src/routes/audit.rs, CheckpointView). */
function checkpointMessage(c) {
  return new TextEncoder().encode(`ledger:checkpoint:v2\n${c.ledger}\n${c.position}\n${c.head_hash}\n${c.recorded_at}`);
}

/** `true` or `false`, or `null` with `why` when this browser cannot check Ed25519. */
export async function signatureValid(checkpoint) {
  if (!globalThis.crypto?.subtle) return { valid: null, why: "WebCrypto is only available to pages served over HTTPS or from localhost" };
  let key;
  try {
    key = await crypto.subtle.importKey("raw", bytesOfHex(checkpoint.public_key), { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    if (error.name === "NotSupportedError") return { valid: null, why: "this browser's WebCrypto has no Ed25519" };
    return { valid: false, why: `the public key is not an Ed25519 key (${error.message})` };
  }
  const valid = await crypto.subtle.verify({ name: "Ed25519" }, key, bytesOfHex(checkpoint.signature), checkpointMessage(checkpoint));
  return { valid, why: valid ? null : "the signature does not match the checkpoint" };
}

/** A signature check as a line of the page: valid, INVALID and why, or not checked and why. */
export function signatureView(result, testid) {
  const element =
    result.valid === true
      ? h("span", { class: "good" }, "valid")
      : result.valid === false
        ? h("span", { class: "bad" }, `INVALID: ${result.why}`)
        : h("span", { class: "warn" }, `not checked here: ${result.why}`);
  return h("span", { "data-testid": testid }, element, result.valid === true ? h("span", { class: "muted small" }, " (Ed25519, checked in this browser)") : "");
}

/** A pasted or uploaded checkpoint, checked field by field; throws with what is wrong. */
export function parseCheckpoint(text, which) {
  let c;
  try {
    c = JSON.parse(text);
  } catch (error) {
    throw new Error(`the ${which} checkpoint is not JSON: ${error.message}`);
  }
  const bad = (field, what) => new Error(`the ${which} checkpoint's ${field} is not ${what}`);
  if (!c || typeof c !== "object") throw new Error(`the ${which} checkpoint is not a JSON object`);
  if (!Number.isSafeInteger(c.position) || c.position < 0) throw bad("position", "a position (an integer, 0 or more)");
  if (!/^[0-9a-f]{64}$/.test(c.head_hash ?? "")) throw bad("head_hash", "a SHA-256 hash in lower-case hex");
  if (typeof c.recorded_at !== "string") throw bad("recorded_at", "a string");
  if (!/^[0-9a-f]{128}$/.test(c.signature ?? "")) throw bad("signature", "an Ed25519 signature in hex (128 digits)");
  if (!/^[0-9a-f]{64}$/.test(c.public_key ?? "")) throw bad("public_key", "an Ed25519 public key in hex (64 digits)");
  return c;
}
