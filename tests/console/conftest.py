"""The browser tests' fixtures: a real `ledger serve` (its own PostgreSQL, authentication on) and
Debian's Chromium driven by Playwright. Run them with `scripts/console_check.sh`.

Every page a test opens fails the test if the browser logs an error or a script throws, unless the
test says which errors it expects (`console.expect_errors(...)`).
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

# tools/ledger_process.py, shared with the vectors' generator.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from ledger_process import stop, wait_ready  # noqa: E402

LEDGER_BIN = os.environ.get("LEDGER_BIN", "target/debug/ledger")
#: When set, the console is served from this folder (`ledger serve --console-dir`) instead of the
#: files built into LEDGER_BIN: to test a change to api/console without building the binary.
CONSOLE_DIR = os.environ.get("LEDGER_CONSOLE_DIR")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR", tempfile.gettempdir()))
#: How long a ledger may take to become ready (it initialises a PostgreSQL cluster first).
READY_TIMEOUT_S = 60
# How long a server has to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30
#: Chromium flags for a closed network: no background connections to anywhere.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 860}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ledger:
    """A `ledger serve` on loopback with a scratch PostgreSQL cluster and an admin key; with
    `imported`, its log is that export (`ledger import` before the server starts)."""

    def __init__(self, imported=None):
        self.work = Path(tempfile.mkdtemp(prefix="ledger-console."))
        self.work.chmod(0o755)  # as root, PostgreSQL runs as another user that must reach it
        if imported is not None:
            subprocess.run([LEDGER_BIN, "import", "--data-dir", str(self.work / "pg"), "--input", str(imported)],
                           env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"RUST_LOG": "warn"},
                           check=True, capture_output=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin_key = "lk_" + secrets.token_hex(32)
        # The server reads LEDGER_CONSOLE_DIR itself too: passed as a flag (absolute) or not at all.
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LEDGER_CONSOLE_DIR")}
        env.update(RUST_LOG="warn", LEDGER_BOOTSTRAP_ADMIN_KEY=self.admin_key)
        console = ["--console-dir", str(Path(CONSOLE_DIR).resolve())] if CONSOLE_DIR else []
        self.log = open(self.work / "ledger.log", "wb")
        self.process = subprocess.Popen(
            [LEDGER_BIN, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", str(self.work / "pg"), "--no-webhook-delivery", *console],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self):
        wait_ready(self.process, self.base, self.log_tail, READY_TIMEOUT_S)

    def log_tail(self, lines=40):
        text = (self.work / "ledger.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def api(self, method, path, body=None, key=None, expect=None):
        """Calls the API; returns (status, parsed JSON or text). `expect`: the status required."""
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        data = None
        if body is not None or method in ("POST", "PATCH"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = secrets.token_hex(16)
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.decode(errors="replace")
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path}: {status} (wanted {expect}): {value}")
        return status, value

    def get(self, path):
        return self.api("GET", path, expect=200)[1]

    def post(self, path, body=None):
        """A command that must succeed (200 or 201); returns its answer."""
        status, value = self.api("POST", path, body)
        assert status in (200, 201), f"POST {path}: {status}: {value}"
        return value

    def create_key(self, scopes, name=None):
        """A new API key with these scopes; returns its secret."""
        _, created = self.api("POST", "/v1/admin/keys",
                              {"name": name or "-".join(scopes), "scopes": scopes}, expect=201)
        return created["secret"]

    def psql(self, sql):
        """Runs SQL as the cluster's superuser, as an operator with shell access could."""
        socket_dir = (self.work / "pg" / "ledger-socket-dir").read_text().strip()
        psql = shutil.which("psql") or sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
        return subprocess.run(
            [str(psql), "-h", socket_dir, "-p", "5432", "-U", "ledger", "-d", "ledger",
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout

    def stop(self):
        stop(self.process, STOP_TIMEOUT_S)
        self.log.close()


def seed(ledger):
    """A small but varied ledger: three assets, a tree of accounts, transfers, holds (pending,
    posted in part, voided), a reversal and a trade with a fee."""
    ledger.post("/v1/assets", {"code": "USD", "scale": 2})
    ledger.post("/v1/assets", {"code": "EUR", "scale": 2})
    ledger.post("/v1/assets", {"code": "BTC", "scale": 8})
    codes = ["world:bank", "broker:fees"]
    for firm in ("acme", "globex"):
        for client in range(1, 4):
            codes += [f"broker:{firm}:client{client}:cash", f"broker:{firm}:client{client}:crypto"]
    codes += ["alice:cash", "bob:cash", "treasury:ops"]
    for code in codes:
        ledger.post("/v1/accounts", {"code": code, "allow_negative": code == "world:bank"})
    for i, code in enumerate(c for c in codes if c.endswith(":cash") or c == "treasury:ops"):
        ledger.post("/v1/transfers", {"source": "world:bank", "destination": code,
                                      "asset": "USD", "amount": f"{1000 + 137 * i}.25"})
        ledger.post("/v1/transfers", {"source": "world:bank", "destination": code,
                                      "asset": "EUR", "amount": f"{500 + 11 * i}.10"})
    for i, code in enumerate(c for c in codes if c.endswith(":crypto")):
        ledger.post("/v1/transfers", {"source": "world:bank", "destination": code,
                                      "asset": "BTC", "amount": f"0.{i + 1}2345678"})
    hold = {"postings": [{"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                          "amount": "40.00"}], "pending": True}
    posted_in_part = ledger.post("/v1/transactions", hold)
    ledger.post(f"/v1/transactions/{posted_in_part['id']}/post", {"amounts": ["15.00"]})
    voided = ledger.post("/v1/transactions", hold)
    ledger.post(f"/v1/transactions/{voided['id']}/void")
    ledger.post("/v1/transactions", hold)  # left pending
    mistake = ledger.post("/v1/transfers", {"source": "bob:cash", "destination": "treasury:ops",
                                            "asset": "USD", "amount": "12.34"})
    ledger.post(f"/v1/transactions/{mistake['id']}/reverse")
    ledger.post("/v1/trades", {
        "buyer": "alice:cash", "seller": "broker:globex:client1:crypto", "instrument": "BTC",
        "quantity": "0.01", "price": "30000.00", "currency": "USD",
        "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.50"}]})
    return codes


@pytest.fixture(scope="session")
def ledger():
    """One seeded ledger for the tests that only read, or add without breaking anything."""
    ledger = Ledger()
    try:
        ledger.codes = seed(ledger)
        yield ledger
    finally:
        ledger.stop()
        shutil.rmtree(ledger.work, ignore_errors=True)


@pytest.fixture
def fresh_ledger():
    """A ledger of the test's own, for tests that damage it (altering the log)."""
    ledger = Ledger()
    try:
        yield ledger
    finally:
        ledger.stop()
        shutil.rmtree(ledger.work, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Console:
    """A browser tab on a ledger's console that records every error the browser reports."""

    def __init__(self, browser, ledger):
        self.ledger = ledger
        self.base = f"{ledger.base}/console"
        self.context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors = []
        self.expected = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        # The console loads nothing from anywhere but its ledger: any other request fails the test.
        self.context.route("**/*", self._only_from_the_ledger)

    def _only_from_the_ledger(self, route):
        url = route.request.url
        if url == self.ledger.base or url.startswith(self.ledger.base + "/"):
            route.continue_()
        else:
            self.errors.append(f"a request outside the ledger: {url}")
            route.abort()

    def expect_errors(self, *fragments):
        """Errors the test provokes on purpose (a refused key): each logged error must contain one."""
        self.expected.extend(fragments)

    def unexpected_errors(self):
        return [e for e in self.errors if not any(f in e for f in self.expected)]

    def open(self, path=""):
        self.page.goto(self.base + path)
        return self.page

    def sign_in(self, key=None, then=""):
        """Signs in with `key` (the admin key by default) and opens `then`."""
        page = self.open(f"/signin?next=/console{then}")
        page.fill("#api-key", key or self.ledger.admin_key)
        page.press("#api-key", "Enter")
        page.wait_for_selector("#whoami button")
        return page


@pytest.fixture
def console(browser, ledger):
    console = Console(browser, ledger)
    yield console
    errors = console.unexpected_errors()
    console.context.close()
    assert not errors, f"the browser reported errors: {errors}"


@pytest.fixture
def console_on(browser):
    """A console on another ledger: `console_on(ledger)`."""
    consoles = []

    def make(ledger):
        consoles.append(Console(browser, ledger))
        return consoles[-1]

    yield make
    for console in consoles:
        errors = console.unexpected_errors()
        console.context.close()
        assert not errors, f"the browser reported errors: {errors}"


#: Screenshots show at most this much of a page's height: enough to see a page, small enough to
#: keep in the repository.
SCREENSHOT_HEIGHT_MAX_PX = 1400


def screenshot(page, name):
    """Saves a screenshot of the page's top as NAME.png (docs/console/ with --screenshots)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    width, height = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": width, "height": min(height, SCREENSHOT_HEIGHT_MAX_PX)})
