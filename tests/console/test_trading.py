"""Trading in the console: an account's positions, open lots, realized P&L (with its CSV) and
settlement ladder on the Account page, and a trade's settlement on the Trade page, each figure the
API's own, read from its JSON (never a number written here)."""

import datetime
import time
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest
from conftest import screenshot
from playwright.sync_api import expect

# The ledger is shared with the other browser tests: these accounts are the only ones under
# `desk:` and XYZ is theirs alone; the cash comes from `world:bank`, so every asset sums to zero.
ALICE = "desk:alice"
BOB = "desk:bob"
FEES = "desk:fees"
INSTRUMENT = "XYZ"
#: A trade settling tomorrow is settled by the ledger itself at 00:00 UTC: closer to midnight
#: than this, the set-up waits for the new day first, so that nothing settles during a test.
MIDNIGHT_MARGIN_S = 180


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def wait_past_midnight_if_close():
    tomorrow = (utc_now() + datetime.timedelta(days=1)).date()
    midnight = datetime.datetime.combine(tomorrow, datetime.time(), datetime.timezone.utc)
    left = (midnight - utc_now()).total_seconds()
    if left < MIDNIGHT_MARGIN_S:
        time.sleep(left + 1)  # a wall-clock boundary, not an ordering of events


@pytest.fixture(scope="module")
def desk(ledger):
    """Alice's book in XYZ: a buy settled at once, a sale with a fee two days later, a T+1 buy
    settled in part, a T+1 buy settled in part and then failed, a T+2 buy nothing of which has
    settled, a sale with a fee today, a two-phase hold of cash, and a mark."""
    wait_past_midnight_if_close()
    today = utc_now().date()

    def day(offset):
        return (today + datetime.timedelta(days=offset)).isoformat()

    def trade(buyer, seller, quantity, price, **terms):
        return ledger.post("/v1/trades", {"buyer": buyer, "seller": seller, "instrument": INSTRUMENT,
                                          "quantity": quantity, "price": price, "currency": "USD", **terms})

    def fee(amount):
        return [{"payer": ALICE, "account": FEES, "amount": amount}]

    ledger.post("/v1/assets", {"code": INSTRUMENT, "scale": 0})
    ledger.post("/v1/accounts", {"code": ALICE})
    ledger.post("/v1/accounts", {"code": BOB, "allow_negative": True})  # may sell short
    ledger.post("/v1/accounts", {"code": FEES})
    ledger.post("/v1/transfers", {"source": "world:bank", "destination": ALICE, "asset": "USD", "amount": "100000.00"})
    trades = {
        "bought": trade(ALICE, BOB, "30", "100.00", trade_date=f"{day(-5)}T12:00:00Z", fees=fee("2.50")),
        "sold_earlier": trade(BOB, ALICE, "12", "110.00", trade_date=f"{day(-2)}T12:00:00Z", fees=fee("3.00")),
        "partial": trade(ALICE, BOB, "20", "105.25", settlement_date=day(1)),
        "failed": trade(ALICE, BOB, "8", "101.00", settlement_date=day(1)),
        "waiting": trade(ALICE, BOB, "4", "106.00", settlement_date=day(2)),
    }
    # A quarter of each posting the partial trade still reserves, in the order of `remaining`.
    remaining = trades["partial"]["settlement"]["remaining"]
    quarter = [str(Decimal(p["amount"]) / 4) for p in remaining]
    ledger.post(f"/v1/trades/{trades['partial']['id']}/settle", {"amounts": quarter})
    remaining = trades["failed"]["settlement"]["remaining"]
    ledger.post(f"/v1/trades/{trades['failed']['id']}/settle",
                {"amounts": ["3", str(Decimal(remaining[1]["amount"]) * 3 / 8)]})
    ledger.post(f"/v1/trades/{trades['failed']['id']}/fail", {"reason": "seller failed to deliver"})
    trades["sold_today"] = trade(BOB, ALICE, "5", "111.00", fees=fee("1.00"))
    ledger.post("/v1/transfers", {"source": ALICE, "destination": FEES, "asset": "USD", "amount": "50.00",
                                  "pending": True, "timeout_s": 3600})
    as_of = (utc_now() - datetime.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    mark = ledger.post("/v1/prices", {"instrument": INSTRUMENT, "currency": "USD", "price": "107.5", "as_of": as_of})
    return {"trades": trades, "position": mark["position"], "day": day}


def read(ledger, desk, path):
    """An API read that reflects every write of the set-up (the lots are read asynchronously)."""
    separator = "&" if "?" in path else "?"
    return ledger.get(f"{path}{separator}min_position={desk['position']}")


def csv_of(ledger, path):
    request = urllib.request.Request(ledger.base + path, headers={
        "Authorization": f"Bearer {ledger.admin_key}", "Accept": "text/csv"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read().decode()


def value(page, testid):
    return page.get_by_test_id(testid).get_attribute("data-value")


def amounts(page, testid):
    """The exact amounts (data-value) of a table's rows, in order."""
    return page.get_by_test_id(testid).locator("tbody .amount").evaluate_all(
        "cells => cells.map(c => c.dataset.value)")


def test_the_account_page_shows_positions_and_open_lots_as_the_api_does(console, ledger, desk):
    positions = read(ledger, desk, f"/v1/accounts/{ALICE}/positions")["positions"]
    account = read(ledger, desk, f"/v1/accounts/{ALICE}")
    page = console.sign_in(then=f"/accounts/{ALICE}")
    expect(page.get_by_test_id("positions").locator("tbody tr")).to_have_count(len(positions))
    assert positions, "alice holds XYZ"
    for p in positions:
        key = f"{p['instrument']}-{p['currency']}"
        expect(page.get_by_test_id(f"position-method-{key}")).to_have_text(p["booking_method"])
        for field in ("quantity", "settled", "unsettled", "cost_basis", "average_cost", "realized",
                      "market_value", "unrealized"):
            assert p[field] is not None, field  # a mark, and a read now: every figure is there
            expect(page.get_by_test_id(f"position-{field.replace('_', '-')}-{key}")).to_have_attribute("data-value", p[field])
        mark = page.get_by_test_id(f"position-mark-{key}")
        expect(mark).to_have_attribute("data-value", p["mark"]["price"])
        expect(mark).to_have_attribute("data-as-of", p["mark"]["as_of"])
        expect(mark).to_have_attribute("data-position", str(p["mark"]["position"]))
        # The settled and unsettled quantities are the account's balance and its pending figures.
        balance = next(b for b in account["balances"] if b["asset"] == p["instrument"])
        assert (p["settled"], p["quantity"]) == (balance["balance"], balance["trade_date_balance"])
        expect(page.get_by_test_id(f"balance-trade-date-{p['instrument']}")).to_have_attribute("data-value", balance["trade_date_balance"])
    lots = [lot for p in positions for lot in p["lots"]]
    assert len(lots) == 4  # the first buy's rest, the partial trade, what the failed one settled, the waiting one
    rows = page.get_by_test_id("lots").locator("tbody tr")
    expect(rows).to_have_count(len(lots))
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.testid)") == [f"lot-{lot['lot_id']}" for lot in lots]
    for lot in lots:
        for field in ("quantity", "cost", "unit_cost"):
            expect(page.get_by_test_id(f"lot-{field.replace('_', '-')}-{lot['lot_id']}")).to_have_attribute("data-value", lot[field])
    # A unit cost reads at the currency's scale when its other places are zeros.
    partial = desk["trades"]["partial"]
    expect(page.get_by_test_id(f"lot-unit-cost-{partial['id']}/0")).to_have_text(partial["price"])
    screenshot(page, "account-trading")
    # A lot opens the trade that opened it.
    page.get_by_test_id(f"lot-{partial['id']}/0").get_by_role("link").click()
    expect(page).to_have_url(f"{console.base}/trades/{partial['id']}")


def test_realized_pnl_lists_each_disposal_with_its_closed_lots_and_its_csv_is_the_apis(console, ledger, desk):
    realized = read(ledger, desk, f"/v1/accounts/{ALICE}/realized")
    assert len(realized["items"]) == 2  # the two sales
    page = console.sign_in(then=f"/accounts/{ALICE}")
    body = page.get_by_test_id("realized")
    expect(body.locator("tbody tr")).to_have_count(sum(1 + len(i["lots"]) for i in realized["items"]))
    for total in realized["totals"]:
        expect(page.get_by_test_id(f"realized-total-{total['instrument']}-{total['currency']}")).to_have_attribute("data-value", total["realized"])
    for item in realized["items"]:
        key = f"{item['position']}-{item['instrument']}-{item['currency']}"
        expect(page.get_by_test_id(f"realized-item-{key}")).to_contain_text(item["date"])
        for field in ("quantity", "proceeds", "cost", "realized"):
            expect(page.get_by_test_id(f"realized-{field}-{key}")).to_have_attribute("data-value", item[field])
        for lot in item["lots"]:
            lot_key = f"{item['position']}-{lot['lot_id']}"
            expect(page.get_by_test_id(f"realized-lot-{lot_key}")).to_contain_text(f"opened {lot['opened']}")
            for field in ("quantity", "proceeds", "cost", "realized"):
                expect(page.get_by_test_id(f"realized-lot-{field}-{lot_key}")).to_have_attribute("data-value", lot[field])

    # One day's disposals: the earlier sale's.
    earlier = realized["items"][0]["date"]
    page.get_by_test_id("realized-from").fill(earlier)
    page.get_by_test_id("realized-to").fill(earlier)
    page.get_by_test_id("realized-show").click()
    ranged = read(ledger, desk, f"/v1/accounts/{ALICE}/realized?from={earlier}&to={earlier}")
    assert 0 < len(ranged["items"]) < len(realized["items"])
    expect(body.locator("tbody tr")).to_have_count(sum(1 + len(i["lots"]) for i in ranged["items"]))
    for total in ranged["totals"]:
        expect(page.get_by_test_id(f"realized-total-{total['instrument']}-{total['currency']}")).to_have_attribute("data-value", total["realized"])
    assert f"realized_from={earlier}" in page.url and f"realized_to={earlier}" in page.url
    with page.expect_download() as download:
        page.get_by_test_id("realized-download").click()
    assert download.value.suggested_filename.endswith(".csv")
    with open(download.value.path(), encoding="utf-8") as f:
        downloaded = f.read()
    query = urllib.parse.urlencode({"from": earlier, "to": earlier, "min_position": desk["position"]})
    assert downloaded == csv_of(ledger, f"/v1/accounts/{ALICE}/realized?{query}")
    assert len(downloaded.splitlines()) == 1 + sum(len(i["lots"]) for i in ranged["items"])


def test_the_settlement_ladder_shows_each_date_and_the_totals_as_the_api_does(console, ledger, desk):
    ladder = read(ledger, desk, f"/v1/accounts/{ALICE}/settlements")
    account = read(ledger, desk, f"/v1/accounts/{ALICE}")
    dates = [item["date"] for item in ladder["items"]]
    assert dates == [desk["day"](1), desk["day"](1), desk["day"](2), desk["day"](2), None]
    page = console.sign_in(then=f"/accounts/{ALICE}")
    rows = page.get_by_test_id("ladder").locator("tr[data-testid^=ladder-]:not([data-testid^=ladder-total])")
    expect(rows).to_have_count(len(ladder["items"]))
    for item in ladder["items"]:
        key = f"{item['date'] or 'undated'}-{item['asset']}"
        assert value(page, f"ladder-in-{key}") == item["due_in"]
        assert value(page, f"ladder-out-{key}") == item["due_out"]
        assert Decimal(value(page, f"ladder-net-{key}")) == Decimal(item["due_in"]) - Decimal(item["due_out"])
    expect(page.get_by_test_id(f"ladder-undated-USD")).to_contain_text("no date")
    balances = {b["asset"]: b for b in account["balances"]}
    for total in ladder["totals"]:
        asset = total["asset"]
        expect(page.get_by_test_id(f"ladder-total-in-{asset}")).to_have_attribute("data-value", total["due_in"])
        expect(page.get_by_test_id(f"ladder-total-out-{asset}")).to_have_attribute("data-value", total["due_out"])
        # …which are the account's pending figures, as its balances show them.
        expect(page.get_by_test_id(f"balance-pending-credits-{asset}")).to_have_attribute("data-value", balances[asset]["pending_credits"])
        expect(page.get_by_test_id(f"balance-pending-debits-{asset}")).to_have_attribute("data-value", balances[asset]["pending_debits"])


def test_an_account_without_instruments_or_dues_shows_no_trading_section(console, ledger, desk):
    page = console.sign_in(then=f"/accounts/{FEES}")  # fees only: no lots, nothing due
    expect(page.get_by_test_id("balance-posted-USD")).to_be_visible()
    expect(page.get_by_test_id("history").locator("tbody tr").first).to_be_visible()
    expect(page.get_by_test_id("positions")).to_have_count(0)
    expect(page.get_by_test_id("realized")).to_have_count(0)
    # The pending hold alice sent it is due in: its ladder shows, undated.
    expect(page.get_by_test_id("ladder-undated-USD")).to_be_visible()


def event_at(ledger, position):
    return ledger.get(f"/v1/events?after={position - 1}&limit=1")["items"][0]


def test_a_trade_settled_in_part_shows_what_settled_and_what_remains(console, ledger, desk):
    trade = read(ledger, desk, f"/v1/trades/{desk['trades']['partial']['id']}")
    settlement = trade["settlement"]
    assert settlement["status"] == "partially_settled"
    page = console.sign_in(then=f"/trades/{trade['id']}")
    expect(page.get_by_test_id("settlement-status")).to_have_text(settlement["status"])
    expect(page.get_by_test_id("transaction-status")).to_have_text(trade["status"])
    expect(page.get_by_test_id("settlement-trade-date")).to_have_text(trade["trade_date"])
    expect(page.get_by_test_id("settlement-settlement-date")).to_have_text(trade["settlement_date"])
    expect(page.get_by_test_id("settles-at")).to_have_attribute("data-value", trade["settles_at"])
    expect(page.get_by_test_id("trade-date")).to_have_text(trade["trade_date"])
    expect(page.get_by_test_id("settlement-settled").locator("tbody tr")).to_have_count(len(settlement["settled"]))
    assert amounts(page, "settlement-settled") == [p["amount"] for p in settlement["settled"]]
    assert amounts(page, "settlement-remaining") == [p["amount"] for p in settlement["remaining"]]
    assert amounts(page, "postings") == [p["amount"] for p in trade["postings"]]  # what it reserved
    expect(page.get_by_test_id("settlement-reason")).to_have_count(0)
    expect(page.get_by_test_id("settlement-released")).to_have_count(0)
    expect(page.get_by_test_id("settlement-event-hash")).to_have_text(event_at(ledger, settlement["position"])["hash"])
    screenshot(page, "trade-settlement")


def test_a_failed_trade_shows_why_what_settled_before_and_what_was_released(console, ledger, desk):
    trade = read(ledger, desk, f"/v1/trades/{desk['trades']['failed']['id']}")
    settlement = trade["settlement"]
    assert settlement["status"] == "failed" and settlement["settled"] and settlement["released"]
    page = console.sign_in(then=f"/transactions/{trade['id']}")  # opens as the trade it is
    expect(page).to_have_url(f"{console.base}/trades/{trade['id']}")
    expect(page.get_by_test_id("settlement-status")).to_have_text("failed")
    expect(page.get_by_test_id("settlement-reason")).to_have_text(settlement["reason"])
    assert amounts(page, "settlement-settled") == [p["amount"] for p in settlement["settled"]]
    assert settlement["remaining"] == []
    expect(page.get_by_test_id("settlement-remaining").locator("tbody tr")).to_have_count(0)
    assert amounts(page, "settlement-released") == [p["amount"] for p in settlement["released"]]
    expect(page.get_by_test_id("settlement-event-hash")).to_have_text(event_at(ledger, settlement["position"])["hash"])


def test_a_trade_awaiting_its_settlement_date_shows_everything_still_reserved(console, ledger, desk):
    trade = read(ledger, desk, f"/v1/trades/{desk['trades']['waiting']['id']}")
    settlement = trade["settlement"]
    assert (settlement["status"], settlement["settled"]) == ("pending", [])
    page = console.sign_in(then=f"/trades/{trade['id']}")
    expect(page.get_by_test_id("settlement-status")).to_have_text("pending")
    assert amounts(page, "settlement-remaining") == [p["amount"] for p in settlement["remaining"]]
    expect(page.get_by_test_id("settlement-settled").locator("tbody tr")).to_have_count(0)
    # Nothing settled yet: no settlement event but the trade's own.
    expect(page.get_by_test_id("settlement-event")).to_have_count(0)
    expect(page.get_by_test_id("settles-at")).to_have_attribute("data-value", trade["settles_at"])
