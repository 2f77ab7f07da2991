// Amounts are decimal strings from the API and stay strings here: no float ever touches money.
// Each is shown in its asset's scale (padded with zeros, never rounded), with thousands grouped.

const scales = new Map();

/** Remembers each asset's scale (from GET /v1/assets). */
export function setScales(assets) {
  for (const asset of assets) scales.set(asset.code, asset.scale);
}

export function scaleOf(asset) {
  return scales.get(asset);
}

/**
 * "1234.5" in a scale-2 asset → "1,234.50". Digits beyond the scale are kept, never dropped: an
 * amount the API gives is shown as it is.
 */
export function amount(text, asset) {
  if (text === null || text === undefined) return "";
  const negative = text.startsWith("-");
  const unsigned = negative ? text.slice(1) : text;
  let [whole, fraction = ""] = unsigned.split(".");
  const scale = scales.get(asset);
  if (scale !== undefined && fraction.length < scale) fraction = fraction.padEnd(scale, "0");
  whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + whole + (fraction ? `.${fraction}` : "");
}

/** The exact difference of two decimal strings, as a decimal string (BigInt, no floats). */
export function subtract(a, b) {
  const [ua, ub, scale] = units(a, b);
  return fromUnits(ua - ub, scale);
}

/** The exact sum of decimal strings. */
export function sum(values) {
  return values.reduce((total, value) => {
    const [ut, uv, scale] = units(total, value);
    return fromUnits(ut + uv, scale);
  }, "0");
}

/** Compares two decimal strings: negative, zero or positive. */
export function compare(a, b) {
  const [ua, ub] = units(a, b);
  return ua < ub ? -1 : ua > ub ? 1 : 0;
}

/** Both strings as integers of their common smallest unit, and that unit's scale. */
function units(a, b) {
  const scale = Math.max(fractionDigits(a), fractionDigits(b));
  return [toUnits(a, scale), toUnits(b, scale), scale];
}

function fractionDigits(text) {
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}

function toUnits(text, scale) {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole || "0") * 10n ** BigInt(scale) + BigInt(fraction.padEnd(scale, "0") || "0");
  return negative ? -value : value;
}

/** An integer of units at `scale` as a decimal string with exactly `scale` fractional digits. */
export function fromUnits(value, scale) {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, "0");
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return (negative ? "-" : "") + text;
}

/** A decimal string as a number, only to draw a chart: never for arithmetic or display. */
export function forChart(text) {
  return Number(text);
}

/** "2026-12-05T09:45:59.123456Z" → "2026-12-05 09:45:59" (UTC, as the ledger records it). */
export function time(text) {
  if (!text) return "";
  return text.replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
}

export function shortHash(hash) {
  return hash ? `${hash.slice(0, 12)}…` : "";
}

export function count(n) {
  return Number(n).toLocaleString("en-US");
}

/**
 * When an entry counts in the books: its `effective_at`, or when it was recorded (an entry that
 * states no effective time, and a server that does not say, count when recorded). `stated`: the
 * entry counts at another time than it was recorded.
 */
export function effective(item) {
  const at = item.effective_at ?? item.recorded_at;
  return { at, stated: Boolean(item.effective_at) && item.effective_at !== item.recorded_at };
}

/** The instant a UTC day ends, to the microsecond the ledger keeps: "2026-12-04" → "2026-12-04T23:59:59.999999Z". */
export function endOfDay(date) {
  return date ? `${date}T23:59:59.999999Z` : undefined;
}

/** Yesterday in UTC, as a date input's value. */
export function yesterday() {
  const day = new Date();
  day.setUTCDate(day.getUTCDate() - 1);
  return day.toISOString().slice(0, 10);
}

/** "2026-12-04T23:59:59.999999Z" → "2026-12-04 23:59:59.999999" (every digit: a period's end is exact). */
export function exactTime(text) {
  return text ? text.replace("T", " ").replace("Z", "") : "";
}

/**
 * A decimal string with the trailing zeros of its fraction dropped, down to `keep` places: a unit
 * cost the API gives at 18 places ("100.250000000000000000") reads "100.25" at `keep` 2. Only
 * zeros go: no digit that counts is ever rounded away.
 */
export function trimmed(text, keep = 0) {
  if (text === null || text === undefined) return text;
  const dot = text.indexOf(".");
  if (dot < 0) return text;
  let end = text.length;
  while (end > dot + 1 + keep && text[end - 1] === "0") end -= 1;
  return text.slice(0, end === dot + 1 ? dot : end);
}
