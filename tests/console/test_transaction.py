"""The Transaction and Trade pages: postings, a hold's settlement, reversals linked both ways, and
the event that recorded each, whose hash is the log's."""

from conftest import screenshot

from playwright.sync_api import expect


def event_at(ledger, position):
    """The event at `position`, as GET /v1/events gives it."""
    return ledger.get(f"/v1/events?after={position - 1}&limit=1")["items"][0]


def amounts(page, testid):
    """The exact amounts (data-value) of a table's rows, in order."""
    return page.get_by_test_id(testid).locator("tbody .amount").evaluate_all(
        "cells => cells.map(c => c.dataset.value)")


def test_a_transaction_shows_its_postings_and_the_event_that_recorded_it(console, ledger):
    created = ledger.post("/v1/transactions", {
        "postings": [
            {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "10.00"},
            {"source": "alice:cash", "destination": "broker:fees", "asset": "USD", "amount": "0.50"},
        ],
        "metadata": {"memo": "invoice 7"},
    })
    page = console.sign_in(then=f"/transactions/{created['id']}")
    expect(page.get_by_test_id("transaction-status")).to_have_text("posted")
    rows = page.get_by_test_id("postings").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("alice:cash")
    expect(rows.nth(0)).to_contain_text("bob:cash")
    assert amounts(page, "postings") == ["10.00", "0.50"]
    expect(page.get_by_test_id("metadata")).to_contain_text("invoice 7")
    event = event_at(ledger, created["position"])
    expect(page.get_by_test_id("event-hash")).to_have_text(event["hash"])
    expect(page.get_by_test_id("event-position")).to_have_text(str(created["position"]))
    expect(page.get_by_test_id("event-api-key")).to_have_text(event["metadata"]["api_key_id"])
    expect(page.get_by_test_id("event")).to_contain_text("bootstrap")  # the key's name, for an admin
    screenshot(page, "transaction")
    # Each account opens its own page.
    rows.nth(0).get_by_role("link", name="bob:cash").click()
    expect(page).to_have_url(f"{console.base}/accounts/bob:cash")


def test_a_hold_posted_in_part_shows_what_moved_and_what_was_released(console, ledger):
    hold = ledger.post("/v1/transactions", {"pending": True, "postings": [
        {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "40.00"},
        {"source": "alice:cash", "destination": "broker:fees", "asset": "USD", "amount": "2.00"},
    ]})
    settled = ledger.post(f"/v1/transactions/{hold['id']}/post", {"amounts": ["15.00", "0"]})
    page = console.sign_in(then=f"/transactions/{hold['id']}")
    expect(page.get_by_test_id("settlement-status")).to_have_text("posted")
    assert amounts(page, "postings") == ["40.00", "2.00"]  # what was reserved
    expect(page.get_by_test_id("settlement-moved-0").locator(".amount")).to_have_attribute("data-value", "15.00")
    expect(page.get_by_test_id("settlement-released-0").locator(".amount")).to_have_attribute("data-value", "25.00")
    expect(page.get_by_test_id("settlement-moved-1").locator(".amount")).to_have_attribute("data-value", "0")
    expect(page.get_by_test_id("settlement-released-1").locator(".amount")).to_have_attribute("data-value", "2.00")
    expect(page.get_by_test_id("settlement-event-hash")).to_have_text(event_at(ledger, settled["position"])["hash"])
    expect(page.get_by_test_id("event-hash")).to_have_text(event_at(ledger, hold["position"])["hash"])
    screenshot(page, "transaction-hold")


def test_a_reversal_and_the_transaction_it_reverses_link_to_each_other(console, ledger):
    original = ledger.post("/v1/transfers", {"source": "bob:cash", "destination": "alice:cash",
                                             "asset": "USD", "amount": "3.21"})
    reversal = ledger.post(f"/v1/transactions/{original['id']}/reverse", {"metadata": {"reason": "typo"}})
    page = console.sign_in(then=f"/transactions/{original['id']}")
    reversed_by = page.get_by_test_id("reversed-by")
    expect(reversed_by).to_have_text(reversal["id"])
    reversed_by.get_by_role("link").click()
    expect(page).to_have_url(f"{console.base}/transactions/{reversal['id']}")
    expect(page.get_by_test_id("transaction-id")).to_have_text(reversal["id"])
    expect(page.get_by_test_id("forced")).to_have_count(0)
    reverses = page.get_by_test_id("reverses")
    expect(reverses).to_have_text(original["id"])
    reverses.get_by_role("link").click()
    expect(page).to_have_url(f"{console.base}/transactions/{original['id']}")
    expect(page.get_by_test_id("reversed-by")).to_have_text(reversal["id"])


def test_a_trade_shows_its_terms_and_its_forced_reversal_leads_back_to_it(console, ledger):
    trade = ledger.post("/v1/trades", {
        "buyer": "alice:cash", "seller": "broker:globex:client2:crypto", "instrument": "BTC",
        "quantity": "0.02", "price": "30500.5", "currency": "USD",
        "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "0.25"}]})
    reversal = ledger.post(f"/v1/transactions/{trade['id']}/reverse", {"force": True})
    # Asked for as a transaction (as a reversal names it), a trade opens as a trade.
    page = console.sign_in(then=f"/transactions/{trade['id']}")
    expect(page).to_have_url(f"{console.base}/trades/{trade['id']}")
    expect(page.get_by_test_id("trade-notional").locator(".amount")).to_have_attribute("data-value", trade["notional"])
    assert amounts(page, "postings") == [p["amount"] for p in trade["postings"]]
    expect(page.get_by_test_id("reversed-by")).to_have_text(reversal["id"])
    expect(page.get_by_test_id("event-hash")).to_have_text(event_at(ledger, trade["position"])["hash"])
    screenshot(page, "trade")
    page.get_by_test_id("reversed-by").get_by_role("link").click()
    expect(page.get_by_test_id("forced")).to_have_text("forced")
    page.get_by_test_id("reverses").get_by_role("link").click()
    expect(page).to_have_url(f"{console.base}/trades/{trade['id']}")


def test_an_unknown_transaction_quotes_the_problem_document(console):
    console.expect_errors("404")  # Chromium logs the refused request itself
    page = console.sign_in(then="/transactions/01a2459f-0000-7000-8000-000000000000")
    expect(page.locator(".problem")).to_contain_text("transaction_not_found")
