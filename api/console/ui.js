// Small DOM helpers: every element is built with `h`, never from HTML strings, so no text from
// the ledger (codes, metadata) is ever parsed as markup.

import { amount, count } from "./format.js";

/** h("a", { href: "/x", class: "c", onclick: f }, "text", child) */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A link inside the console: the router handles it without reloading the page. */
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

/** An account's page; colons stay as they are (`/console/accounts/alice:cash`), readable and valid in a path. */
export function accountHref(code) {
  return `/console/accounts/${encodeURIComponent(code).replaceAll("%3A", ":")}`;
}

export function transactionHref(kind, id) {
  return kind === "trade" ? `/console/trades/${id}` : `/console/transactions/${id}`;
}

/**
 * A table. `columns`: [{ label, value(row) → node or text, numeric }]. Rows with `href(row)` can
 * be opened with Enter after moving to them with j/k or the arrow keys; `rowAttributes(row)`
 * adds attributes to a row (test hooks).
 */
export function table(columns, rows, { href, empty = "Nothing here yet.", caption, rowAttributes } = {}) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    { class: "grid" },
    caption && h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.numeric ? "num" : null, scope: "col" }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {
            tabindex: href ? 0 : null,
            "data-href": href ? href(row) : null,
            class: href ? "row-link" : null,
            ...(rowAttributes ? rowAttributes(row) : {}),
          },
          columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.value(row))),
        ),
      ),
    ),
  );
}

/** A definition list of [label, value] pairs. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

/** An error as the user should see it: the problem document's title, detail and code. */
export function problemBox(error) {
  const problem = error.problem;
  if (!problem) {
    return h("div", { class: "problem", role: "alert" }, h("strong", {}, "Error: "), String(error.message || error));
  }
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", {}, problem.title || `HTTP ${error.status}`),
    problem.detail && h("p", {}, problem.detail),
    h(
      "p",
      { class: "muted small" },
      problem.code && ["code ", h("code", {}, problem.code), " · "],
      `HTTP ${problem.status || error.status}`,
      error.path && [" · ", h("code", {}, error.path)],
    ),
    h("details", {}, h("summary", {}, "Problem document"), h("pre", {}, JSON.stringify(problem, null, 2))),
  );
}

/** Asks before an action that changes the ledger. Resolves true when confirmed. */
export function confirmAction(title, detail, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, detail),
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { value: "cancel", type: "submit" }, "Cancel"),
        h("button", { value: "confirm", type: "submit", class: "danger", autofocus: true }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

let toastTimer;
/** A short message at the bottom of the screen. */
export function toast(text) {
  const element = document.getElementById("toast");
  element.textContent = text;
  element.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => element.classList.remove("shown"), 4000);
}

/** Saves text (or a Blob, for a file assembled in parts) as a file the browser downloads. */
export function download(filename, text, type = "text/plain") {
  const url = URL.createObjectURL(text instanceof Blob ? text : new Blob([text], { type }));
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/**
 * How each status of an account (open, frozen, closed), a transaction (posted, pending) or a
 * trade's settlement (settled, partially settled, failed) reads at a glance.
 */
const STATUS_TONE = { open: "good", posted: "good", settled: "good", frozen: "warn", pending: "warn", partially_settled: "warn", closed: "bad", failed: "bad" };

/** A status as a badge, in its tone. */
export function statusBadge(status, testid) {
  return h("span", { class: `badge ${STATUS_TONE[status] ?? ""}`, "data-testid": testid }, status);
}

/** Sets query parameters of the page's address (undefined: removed) without a history entry. */
export function setQuery(changes) {
  const url = new URL(location.href);
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined || value === null) url.searchParams.delete(name);
    else url.searchParams.set(name, value);
  }
  history.replaceState(null, "", url.pathname + url.search);
}

/** A section with a heading. */
export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

/** An amount in its asset's scale, right-aligned by its cell; the exact string is kept in `data-value`. */
export function money(text, asset) {
  return h("span", { class: "amount", "data-value": text, "data-asset": asset }, amount(text, asset));
}

/** A progress bar and a line of text under it: `describe(done, total)` says how far (events by default). */
export function progressView(testid, { describe = (done, total) => `${count(done)} of ${count(total)} events` } = {}) {
  const bar = h("div");
  const meter = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  const text = h("span", { class: "muted small", "data-testid": `${testid}-progress` });
  const started = performance.now();
  return {
    element: h("div", {}, meter, text),
    /** Marks the bar as stopped by a failure at `done` of `total`. */
    fail(done, total) {
      this.update(done, total);
      bar.classList.add("failed");
    },
    update(done, total) {
      const percent = total ? Math.floor((done / total) * 100) : 100;
      // The last step lands at once: a finished bar that is still sliding reads as unfinished.
      if (done >= total) bar.style.transition = "none";
      bar.style.width = `${percent}%`;
      meter.setAttribute("aria-valuenow", percent);
      const seconds = (performance.now() - started) / 1000;
      text.textContent = `${describe(done, total)} (${percent}%) · ${seconds.toFixed(1)} s`;
    },
  };
}

/**
 * A piece of work behind a Start button, with Cancel, a progress bar, and `status` for its
 * outcome: `run(signal, progress)` fills it; a failure shows the problem. Leaving the page cancels.
 * `inputs` go before the button.
 */
export function task(pageSignal, { label, testid, status, run, inputs = [], describe }) {
  const holder = h("div");
  let running = null;
  const start = h("button", { type: "button", class: "primary", "data-testid": testid }, label);
  const cancel = h("button", { type: "button", hidden: true, "data-testid": `${testid}-cancel` }, "Cancel");
  start.addEventListener("click", async () => {
    running = new AbortController();
    start.disabled = true;
    cancel.hidden = false;
    const progress = progressView(testid, describe && { describe });
    fill(holder, progress.element);
    fill(status);
    try {
      await run(AbortSignal.any([pageSignal, running.signal]), progress);
    } catch (error) {
      fill(status, error.name === "AbortError" ? h("span", { class: "warn" }, "cancelled") : problemBox(error));
    } finally {
      start.disabled = false;
      cancel.hidden = true;
      running = null;
    }
  });
  cancel.addEventListener("click", () => running?.abort());
  return [h("div", { class: "toolbar" }, inputs, start, cancel), holder];
}
