// The console's shell: sign-in, the navigation the key's scopes allow, the router that turns
// /console/... paths into pages (so every view is a link that can be bookmarked), and keys.

import { currentLedger, get, me, ProblemError, setApiKey, setLedger } from "./api.js";
import { setScales } from "./format.js";
import { fill, h, problemBox } from "./ui.js";

/** Pages by path. `scope`: what the key needs to see the page; `public`: shown before sign-in too. */
const PAGES = [
  { pattern: /^\/console\/?$/, module: "overview", title: "Overview", nav: "/console", scope: "read", key: "o" },
  { pattern: /^\/console\/accounts\/?$/, module: "accounts", title: "Accounts", nav: "/console/accounts", scope: "read", key: "a" },
  { pattern: /^\/console\/accounts\/(?<code>[^/]+)$/, module: "account", title: "Account", scope: "read" },
  { pattern: /^\/console\/transactions\/(?<id>[^/]+)$/, module: "transaction", title: "Transaction", scope: "read" },
  { pattern: /^\/console\/trades\/(?<id>[^/]+)$/, module: "transaction", title: "Trade", scope: "read", kind: "trade" },
  { pattern: /^\/console\/periods\/?$/, module: "periods", title: "Periods", nav: "/console/periods", scope: "read", key: "p" },
  { pattern: /^\/console\/periods\/(?<period>[0-9]+)$/, module: "periods", title: "Period", scope: "read" },
  { pattern: /^\/console\/live\/?$/, module: "live", title: "Live", nav: "/console/live", scope: "read", key: "l" },
  { pattern: /^\/console\/audit\/?$/, module: "audit", title: "Audit", nav: "/console/audit", scope: "audit", key: "u" },
  // Public: it reads two files in the browser and asks the server nothing, so it needs no key.
  { pattern: /^\/console\/verify\/?$/, module: "verify", title: "Verify", nav: "/console/verify", key: "v", public: true },
  { pattern: /^\/console\/signin\/?$/, module: "signin", title: "Sign in" },
];

/** What the signed-in caller is and may do (`GET /v1/me`), or null before sign-in. */
let session = null;
/** The ledgers the key may use (`GET /v1/ledgers`), for the switcher; at most one page. */
let ledgers = [];
/** Ends the page on screen (its streams and timers) before the next one renders. */
let leavePage = new AbortController();

export function can(scope) {
  return Boolean(session?.scopes.includes(scope));
}

export function currentSession() {
  return session;
}

/** Goes to a console path as a link would. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

/** Signs in with a key (or none, on a server without authentication); false if it is refused. */
export async function signIn(key) {
  setApiKey(key);
  try {
    session = await me();
  } catch (error) {
    setApiKey(null);
    session = null;
    throw error;
  }
  if (!session.scopes.length) {
    session = null;
    throw new Error("The server needs an API key.");
  }
  ledgers = (await get("/v1/ledgers", { limit: 1000 }).catch(() => ({ items: [] }))).items.map((l) => l.name);
  if (!ledgers.includes(currentLedger())) setLedger(ledgers[0]);
  await loadScales().catch(() => {});
  return true;
}

/** Pages rendered so far: tells whether the user opened one while something was awaited. */
let renders = 0;

/**
 * Every page is the chosen ledger's: switching shows the overview of the other, unless a page
 * was opened while its assets were read (that page is the other ledger's already).
 */
async function switchLedger(name) {
  setLedger(name);
  const before = renders;
  await loadScales().catch(() => {});
  if (renders === before) navigate("/console");
}

export function signOut() {
  setApiKey(null);
  session = null;
  navigate("/console/signin");
}

async function loadScales() {
  if (!can("read")) return;
  const assets = await get("/v1/assets");
  setScales(assets.items);
}

function renderNav() {
  const nav = document.getElementById("nav");
  const here = location.pathname.replace(/\/$/, "") || "/console";
  fill(
    nav,
    PAGES.filter((p) => p.nav && (!p.scope || can(p.scope))).map((p) =>
      h(
        "a",
        {
          href: p.nav,
          "data-link": true,
          "aria-current": (p.nav === "/console" ? here === "/console" : here.startsWith(p.nav)) ? "page" : null,
          title: `${p.title} (g ${p.key})`,
        },
        p.title,
      ),
    ),
  );
  const who = document.getElementById("whoami");
  if (!session) return fill(who);
  const switcher =
    ledgers.length > 0 &&
    h(
      "label",
      { class: "ledger-switch" },
      "Ledger ",
      h(
        "select",
        { "data-testid": "ledger", onchange: (e) => switchLedger(e.target.value) },
        ...ledgers.map((name) => h("option", { value: name, selected: name === currentLedger() ? "" : null }, name)),
      ),
    );
  const name = session.key ? `${session.key.name} (${session.key.prefix}…)` : "no authentication";
  fill(
    who,
    switcher,
    h("span", { class: "muted", title: `scopes: ${session.scopes.join(", ")}` }, name, " · ", session.scopes.join(" ")),
    session.key && h("button", { class: "link", onclick: signOut }, "Sign out"),
  );
}

async function render() {
  renders += 1;
  leavePage.abort();
  leavePage = new AbortController();
  const main = document.getElementById("main");
  const path = location.pathname;
  const page = PAGES.find((p) => p.pattern.test(path));
  if (!session && page?.module !== "signin" && !page?.public) {
    return navigate(`/console/signin?next=${encodeURIComponent(path + location.search)}`, { replace: true });
  }
  renderNav();
  if (!page) {
    document.title = "Not found · ledger";
    return fill(main, h("h1", {}, "Not found"), h("p", {}, "No console page has this address."));
  }
  if (page.scope && !can(page.scope)) {
    document.title = `${page.title} · ledger`;
    return fill(main, h("h1", {}, page.title), h("p", { class: "problem" }, `This page needs an API key with the ${page.scope} scope.`));
  }
  document.title = `${page.title} · ledger`;
  const params = Object.fromEntries(
    Object.entries(page.pattern.exec(path).groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]),
  );
  const query = new URLSearchParams(location.search);
  fill(main, h("p", { class: "muted" }, "Loading…"));
  try {
    const module = await import(`./pages/${page.module}.js`);
    await module.render({ main, params, query, kind: page.kind, signal: leavePage.signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error instanceof ProblemError && error.status === 401) return signOut();
    fill(main, h("h1", {}, page.title), problemBox(error));
  }
}

/** Links inside the console change the page without a reload. */
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
addEventListener("popstate", render);

/** Keys: g then o/a/p/l/u/v goes to a page; / searches; j/k or arrows move in a table; Enter opens. */
let pendingG = false;
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target.matches?.("input, textarea, select");
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (pendingG) {
    pendingG = false;
    const page = PAGES.find((p) => p.key === event.key && p.nav);
    if (page) navigate(page.nav);
    return;
  }
  if (event.key === "g") pendingG = true;
  else if (event.key === "/") {
    const search = document.querySelector("[data-search]");
    if (search) {
      event.preventDefault();
      search.focus();
      search.select(); // typing replaces what was searched before
    }
  } else if (["j", "k", "ArrowDown", "ArrowUp"].includes(event.key)) {
    const rows = [...document.querySelectorAll("tr.row-link")];
    if (!rows.length) return;
    event.preventDefault();
    const at = rows.indexOf(document.activeElement);
    const step = event.key === "j" || event.key === "ArrowDown" ? 1 : -1;
    rows[Math.max(0, Math.min(rows.length - 1, at < 0 ? 0 : at + step))].focus();
  } else if (event.key === "Enter" && target.dataset?.href) {
    navigate(target.dataset.href);
  } else if (event.key === "?") {
    document.querySelector("#keys")?.toggleAttribute("open");
  }
});
document.addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-href]");
  if (row && !event.target.closest("a, button")) navigate(row.dataset.href);
});

async function boot() {
  // Asked without a key, /v1/me says whether the server needs one; a key kept in this tab's
  // session is tried again, and forgotten if the server no longer takes it.
  try {
    session = await me();
  } catch (error) {
    if (!(error instanceof ProblemError && error.status === 401)) {
      fill(document.getElementById("main"), h("h1", {}, "The ledger does not answer"), problemBox(error));
      return;
    }
    setApiKey(null);
    session = await me().catch(() => null);
  }
  if (session && !session.scopes.length) session = null;
  if (session) await loadScales().catch(() => {});
  render();
}

export { loadScales };
boot();
