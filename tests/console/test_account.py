"""The Account page: its balances are the API's, figure for figure; a key sees only the actions
its scopes allow; freezing and setting limits through the console are confirmed first and show;
the statement's CSV is the statement; and paging the history reaches every entry once."""

import csv
import io
import uuid

import pytest
from conftest import screenshot
from playwright.sync_api import expect

#: Postings of the busy account: enough for several pages of history (50 a page).
BUSY_POSTINGS = 220
# The ledger is shared with the other browser tests: these accounts are the only ones under
# `merchant:`, and their money comes from `world:bank`, so every asset still sums to zero.
BUSY = "merchant:acme:payouts"
OTHER = "merchant:acme:reserve"


def history_items(ledger, code):
    """Every history item of an account, through the API's own paging."""
    items, cursor = [], None
    while True:
        query = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
        page = ledger.get(f"/v1/accounts/{code}/history{query}")
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


@pytest.fixture(scope="module")
def busy(ledger):
    """An account with two assets, a few hundred postings, a hold still pending and a limit."""
    ledger.post("/v1/accounts", {"code": BUSY, "metadata": {"owner": "Busy Ltd"}})
    ledger.post("/v1/accounts", {"code": OTHER})
    for code in (BUSY, OTHER):
        for asset, amount in (("USD", "90000.00"), ("EUR", "5000.00")):
            ledger.post("/v1/transfers", {"source": "world:bank", "destination": code, "asset": asset, "amount": amount})
    commands = []
    for i in range(BUSY_POSTINGS):
        asset = "EUR" if i % 4 == 0 else "USD"
        source, destination = (BUSY, OTHER) if i % 3 else (OTHER, BUSY)
        amount = f"{1 + (i * 37) % 500}.{i % 100:02d}"
        commands.append({"idempotency_key": str(uuid.uuid4()),
                         "transfer": {"source": source, "destination": destination, "asset": asset, "amount": amount}})
    answer = ledger.post("/v1/transactions/batch", {"atomic": True, "commands": commands})
    assert [r for r in answer["results"] if r["status"] != 201] == []
    ledger.post("/v1/transfers", {"source": BUSY, "destination": OTHER, "asset": "USD", "amount": "123.45",
                                  "pending": True, "timeout_s": 3600})
    ledger.post("/v1/transfers", {"source": OTHER, "destination": BUSY, "asset": "USD", "amount": "6.78",
                                  "pending": True, "timeout_s": 3600})
    status, _ = ledger.api("PATCH", f"/v1/accounts/{BUSY}/limits",
                           {"asset": "USD", "min_balance": "-250.00", "max_balance": None})
    assert status == 201
    return BUSY


def test_the_account_page_shows_every_balance_exactly_as_the_api_does(console, ledger, busy):
    page = console.sign_in(then=f"/accounts/{busy}")
    account = ledger.get(f"/v1/accounts/{busy}")
    posted = ledger.get(f"/v1/accounts/{busy}/balances")["balances"]
    assert {b["asset"] for b in posted} == {"USD", "EUR"}
    for balance in posted:
        expect(page.get_by_test_id(f"balance-posted-{balance['asset']}")).to_have_attribute("data-value", balance["balance"])
    for balance in account["balances"]:
        asset = balance["asset"]
        for field, testid in (("balance", "posted"), ("pending_debits", "pending-debits"),
                              ("pending_credits", "pending-credits"), ("available", "available")):
            expect(page.get_by_test_id(f"balance-{testid}-{asset}")).to_have_attribute("data-value", balance[field])
    assert page.locator("[data-testid^=balance-posted-]").count() == len(posted)
    expect(page.get_by_test_id("balance-pending-debits-USD")).to_have_attribute("data-value", "123.45")
    expect(page.get_by_test_id("limit-min-USD")).to_have_attribute("data-value", "-250.00")
    expect(page.get_by_test_id("account-status")).to_have_text("open")
    expect(page.get_by_test_id("account-id")).to_have_text(account["id"])
    expect(page.get_by_test_id("chart").locator("svg polyline")).to_have_count(1)
    screenshot(page, "account")


def test_a_read_only_key_sees_no_action_and_an_admin_key_sees_them_all(console, ledger, busy):
    reader = ledger.create_key(["read"], name="account reader")
    page = console.sign_in(reader, then=f"/accounts/{busy}")
    expect(page.get_by_test_id("balance-posted-USD")).to_be_visible()
    expect(page.get_by_test_id("history").locator("tbody tr").first).to_be_visible()
    expect(page.locator("[data-testid^=action-]")).to_have_count(0)
    expect(page.locator("main button", has_text="Freeze")).to_have_count(0)

    writer = ledger.create_key(["read", "write"], name="account writer")
    page.click("#whoami button")  # sign out
    console.sign_in(writer, then=f"/accounts/{busy}")
    expect(page.get_by_test_id("action-freeze")).to_be_visible()
    expect(page.get_by_test_id("action-close")).to_be_visible()
    expect(page.get_by_test_id("action-limits")).to_have_count(0)  # limits need admin

    page.click("#whoami button")
    console.sign_in(then=f"/accounts/{busy}")
    for action in ("freeze", "close", "limits"):
        expect(page.get_by_test_id(f"action-{action}")).to_be_visible()
    expect(page.get_by_test_id("action-unfreeze")).to_have_count(0)  # it is open


def test_freezing_through_the_console_asks_first_then_shows_frozen_and_unfreezes(console, ledger):
    code = "merchant:globex:payouts"
    ledger.post("/v1/accounts", {"code": code})
    page = console.sign_in(then=f"/accounts/{code}")
    dialog = page.locator("dialog.confirm")

    page.get_by_test_id("action-freeze").click()
    expect(dialog).to_contain_text("no postings")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert ledger.get(f"/v1/accounts/{code}")["status"] == "open"

    page.get_by_test_id("action-freeze").click()
    dialog.get_by_role("button", name="Freeze").click()
    expect(page.get_by_test_id("account-status")).to_have_text("frozen")
    assert ledger.get(f"/v1/accounts/{code}")["status"] == "frozen"
    expect(page.get_by_test_id("action-freeze")).to_have_count(0)
    expect(page.get_by_test_id("history-row-" + str(ledger.get(f"/v1/accounts/{code}")["version"]) + "--1")).to_contain_text("frozen")

    page.get_by_test_id("action-unfreeze").click()
    dialog.get_by_role("button", name="Unfreeze").click()
    expect(page.get_by_test_id("account-status")).to_have_text("open")
    assert ledger.get(f"/v1/accounts/{code}")["status"] == "open"


def test_the_statement_csv_download_is_the_statement_of_the_api(console, ledger, busy):
    page = console.sign_in(then=f"/accounts/{busy}?asset=USD&from=")
    statement = ledger.get(f"/v1/accounts/{busy}/statement?asset=USD")
    expect(page.get_by_test_id("statement-closing")).to_have_attribute("data-value", statement["closing_balance"])
    with page.expect_download() as download:
        page.get_by_test_id("statement-download").click()
    assert download.value.suggested_filename.endswith(".csv")
    with open(download.value.path(), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert rows[0]["row"] == "opening" and rows[0]["balance"] == statement["opening_balance"]
    assert rows[-1]["row"] == "closing" and rows[-1]["balance"] == statement["closing_balance"]
    postings = [r for r in rows if r["row"] == "posting"]
    assert len(postings) == len(statement["entries"]) > BUSY_POSTINGS // 2
    for row, entry in zip(postings, statement["entries"]):
        assert (int(row["position"]), int(row["leg"]), row["transaction_id"], row["counterparty"],
                row["amount"], row["balance"]) == (
            entry["position"], entry["leg"], entry["transaction_id"], entry["counterparty"],
            entry["amount"], entry["balance_after"])


def test_paging_the_history_reaches_every_entry_exactly_once(console, ledger, busy):
    expected = [f"history-row-{i['position']}-{i['leg']}" for i in history_items(ledger, busy)]
    page = console.sign_in(then=f"/accounts/{busy}")
    rows = page.get_by_test_id("history").locator("tbody tr")
    older = page.get_by_test_id("history-older")
    seen = []
    while True:
        expect(rows.first).to_be_visible()
        seen += rows.evaluate_all("rows => rows.map(r => r.dataset.testid)")
        if older.is_disabled():
            break
        first = seen[-1]
        older.click()
        expect(page.get_by_test_id(first)).to_have_count(0)
        assert "cursor=" in page.url  # the page on screen can be bookmarked
    assert seen == expected
    assert len(set(seen)) == len(seen) > BUSY_POSTINGS
    # Back to the newest page: the first entries again.
    page.get_by_test_id("history-newest").click()
    expect(page.get_by_test_id(expected[0])).to_be_visible()
    assert "cursor=" not in page.url


def test_setting_limits_through_the_console_says_what_changes_and_shows_them(console, ledger, busy):
    page = console.sign_in(then=f"/accounts/{busy}")
    page.get_by_test_id("action-limits").click()
    page.get_by_test_id("limits-asset").select_option("USD")
    expect(page.get_by_test_id("limits-min")).to_have_value("-250.00")  # the current bound
    page.get_by_test_id("limits-max").fill("500000.00")
    page.get_by_test_id("limits-submit").click()
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_contain_text("-250.00 USD (unchanged)")
    expect(dialog).to_contain_text("none → 500,000.00 USD")
    dialog.get_by_role("button", name="Set limits").click()
    expect(page.get_by_test_id("limit-max-USD")).to_have_attribute("data-value", "500000.00")
    limits = {l["asset"]: l for l in ledger.get(f"/v1/accounts/{busy}")["limits"]}
    assert (limits["USD"]["min_balance"], limits["USD"]["max_balance"]) == ("-250.00", "500000.00")
