// Canonical JSON as the ledger writes it (domain/src/chain.rs, docs/audit.md): no whitespace,
// object keys in ascending order of their UTF-8 bytes, strings with only `"`, `\` and U+0000–U+001F
// escaped, numbers exactly as written. An export built here is byte for byte `ledger export`'s,
// so its hashes can be recomputed from it.

/** A JSON number kept as the text the server wrote: a float or a large integer in a client's
 * metadata must not pass through a JavaScript number on its way to a hash. */
class RawNumber {
  constructor(source) {
    this.source = source;
  }
}

/** JSON.parse, keeping every number's source text (the reviver's `context.source`). */
export function parseKeepingNumbers(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value !== "number") return value;
    if (!context?.source) throw new Error("this browser cannot read JSON numbers exactly (JSON.parse source text access)");
    return new RawNumber(context.source);
  });
}

/** Orders strings by their UTF-8 bytes, which is their order by code point. */
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/**
 * `value` (from `parseKeepingNumbers`) in canonical JSON. JSON.stringify escapes a string as the
 * ledger does: `\"`, `\\`, `\b \t \n \f \r`, other controls as `\u00xx` in lower case, and
 * nothing else (a lone surrogate cannot come from the server, whose strings are UTF-8).
 */
export function canonicalJson(value) {
  if (value instanceof RawNumber) return value.source;
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort(byCodePoint);
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
}

/** The source text of a number read by `parseKeepingNumbers`, or null for any other value. */
export function numberSource(value) {
  return value instanceof RawNumber ? value.source : null;
}

/**
 * `value` (from `parseKeepingNumbers`) made ready for JSON.stringify: every number becomes
 * `JSON.rawJSON` of its source, which JSON.stringify writes as those very characters, and object
 * keys come in canonical order, as the server writes a client's metadata.
 */
export function forStringify(value) {
  if (value instanceof RawNumber) return JSON.rawJSON(value.source);
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(forStringify);
  return Object.fromEntries(Object.keys(value).sort(byCodePoint).map((k) => [k, forStringify(value[k])]));
}
