"""Accounting time in the console: an account's history shows when each entry counts and when it
was recorded; the as-of picker shows the balances as of a day, as known at a position; and the
Periods page closes the books behind a confirmation, shows the close and its trial balance,
quotes a refusal, and reopens, with the reopen on the Periods and Audit pages."""

from datetime import datetime, timedelta, timezone

import pytest
from conftest import screenshot
from playwright.sync_api import expect

# Accounts of their own in the shared ledger: their money comes from `world:bank`.
DATED = "dated:alice"


def day(days_ago):
    """A UTC day, as a date input's value."""
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def noon(days_ago):
    return f"{day(days_ago)}T12:00:00Z"


def time_shown(rfc3339):
    """A time as the console shows it: "2026-12-05 09:45:59" (UTC, whole seconds)."""
    return rfc3339.replace("T", " ").split(".")[0].replace("Z", "")


@pytest.fixture(scope="module")
def dated(ledger):
    """An account credited 100.00 counting three days ago, 40.00 counting yesterday (recorded
    after), and 7.00 counting now."""
    ledger.post("/v1/accounts", {"code": DATED})
    made = [
        ledger.post("/v1/transfers", {"source": "world:bank", "destination": DATED, "asset": "USD",
                                      "amount": amount, **({"effective_at": at} if at else {})})
        for amount, at in (("100.00", noon(3)), ("40.00", noon(1)), ("7.00", None))
    ]
    return made


def test_history_shows_when_each_entry_counts_and_when_it_was_recorded(console, ledger, dated):
    page = console.sign_in(then=f"/accounts/{DATED}")
    history = {(i["position"], i["leg"]): i for i in ledger.get(f"/v1/accounts/{DATED}/history")["items"]}
    for made, stated in zip(dated, (noon(3), noon(1), None)):
        item = next(i for (position, _), i in history.items() if position == made["position"])
        row = page.get_by_test_id(f"history-row-{item['position']}-{item['leg']}")
        recorded = time_shown(item["recorded_at"])
        expect(row.locator("[data-field=recorded]")).to_have_text(recorded)
        # When it counts: as the entry says, or when it was recorded (no time stated, or a
        # server whose history does not say).
        effective = item.get("effective_at") or item["recorded_at"]
        expect(row.locator("[data-field=effective]")).to_have_text(time_shown(effective))
        if stated and item.get("effective_at"):
            assert time_shown(effective) == time_shown(stated) != recorded
            expect(row.locator("[data-field=effective]")).to_have_class("nowrap differs")


def test_the_as_of_picker_shows_the_balances_as_of_a_day_and_as_known_at_a_position(console, ledger, dated):
    # A server whose balances route takes no as_of yet answers 400, and the console reads the
    # trial balance report instead: the browser logs the 400.
    console.expect_errors("status of 400")
    page = console.sign_in(then=f"/accounts/{DATED}")
    expect(page.get_by_test_id("balance-posted-USD")).to_have_attribute("data-value", "147.00")
    asof = page.get_by_test_id("balance-asof-USD")
    # Two days ago: only the entry counting three days ago.
    page.get_by_test_id("asof-date").fill(day(2))
    page.get_by_test_id("asof-show").click()
    expect(asof).to_have_attribute("data-value", "100.00")
    assert f"as_of={day(2)}" in page.url
    # Yesterday: the backdated 40.00 too; as known before it was recorded, not.
    page.get_by_test_id("asof-date").fill(day(1))
    page.get_by_test_id("asof-show").click()
    expect(asof).to_have_attribute("data-value", "140.00")
    page.get_by_test_id("asof-known-at").fill(str(dated[0]["position"]))
    page.get_by_test_id("asof-show").click()
    expect(asof).to_have_attribute("data-value", "100.00")
    expect(page.get_by_test_id("asof-caption")).to_contain_text(f"as known at position {dated[0]['position']:,}")
    screenshot(page, "account-as-of")
    page.get_by_test_id("asof-now").click()
    expect(page.get_by_test_id("balance-posted-USD")).to_have_attribute("data-value", "147.00")

    # The Accounts page: the roll-up of the prefix and each account, as of a day.
    page = console.open("/accounts?prefix=dated")
    page.get_by_test_id("asof-date").fill(day(2))
    page.get_by_test_id("asof-show").click()
    expect(page.get_by_test_id("asof-rollup-USD")).to_contain_text("100.00")
    expect(page.get_by_test_id(f"asof-balance-{DATED}-USD")).to_contain_text("100.00")
    report = ledger.get(f"/v1/reports/trial-balance?as_of={day(2)}T23:59:59.999999Z")
    assert [r["balance"] for r in report["rows"] if r["account"] == DATED] == ["100.00"]


def test_periods_close_behind_a_confirmation_show_their_trial_balance_and_reopen(console_on, fresh_ledger):
    ledger = fresh_ledger
    ledger.post("/v1/assets", {"code": "USD", "scale": 2})
    for code in ("world:bank", "alice:cash"):
        ledger.post("/v1/accounts", {"code": code, "allow_negative": code == "world:bank"})
    ledger.post("/v1/transfers", {"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                                  "amount": "100.00", "effective_at": noon(3)})
    ledger.post("/v1/transfers", {"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "5.00"})
    console = console_on(ledger)
    page = console.sign_in(then="/periods")
    expect(page.get_by_test_id("periods-state")).to_contain_text("No period is closed")
    dialog = page.locator("dialog.confirm")
    through = f"{day(2)}T23:59:59.999999Z"

    # Asked first: cancelling closes nothing.
    page.get_by_test_id("close-date").fill(day(2))
    page.get_by_test_id("close-period").click()
    expect(dialog).to_contain_text(f"{day(2)} 23:59:59.999999")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert ledger.get("/v1/periods")["items"] == []

    page.get_by_test_id("close-period").click()
    dialog.get_by_role("button", name="Close period").click()
    expect(page.get_by_test_id("periods-list").locator("tr[data-action=closed]")).to_have_count(1)
    [close] = ledger.get("/v1/periods")["items"]
    assert (close["action"], close["period"], close["through"]) == ("closed", 1, through)
    expect(page.get_by_test_id(f"period-row-{close['position']}")).to_contain_text(f"{day(2)} 23:59:59.999999")
    expect(page.get_by_test_id("periods-state")).to_contain_text("Closed through")

    # A write into the closed period is refused; closing it again too, and the console says why.
    status, problem = ledger.api("POST", "/v1/transfers", {"source": "world:bank", "destination": "alice:cash",
                                                           "asset": "USD", "amount": "1.00", "effective_at": noon(3)})
    assert (status, problem["code"]) == (422, "period_closed")
    console.expect_errors("status of 422")
    page.get_by_test_id("close-date").fill(day(2))
    page.get_by_test_id("close-period").click()
    dialog.get_by_role("button", name="Close period").click()
    expect(page.get_by_test_id("periods-problem")).to_contain_text("HTTP 422")

    # The close and the trial balance it fixed: the backdated 100.00, not what came after.
    page.get_by_test_id(f"period-row-{close['position']}").click()
    expect(page.get_by_test_id("period-status")).to_have_text("closed")
    period = ledger.get("/v1/periods/1")
    expect(page.get_by_test_id("period-digest")).to_have_text(period["trial_balance"]["digest"])
    expect(page.get_by_test_id("tb-row-alice:cash-USD")).to_contain_text("100.00")
    expect(page.get_by_test_id("tb-row-world:bank-USD")).to_contain_text("-100.00")
    expect(page.get_by_test_id("tb-total-USD")).to_contain_text("0.00")
    screenshot(page, "period")

    # Reopened behind a confirmation, with its reason: marked on the Periods page and on Audit.
    page.get_by_role("link", name="Periods").first.click()
    reason = "a supplier invoice dated in the period arrived late"
    page.get_by_test_id("reopen-reason").fill(reason)
    page.get_by_test_id("reopen-period").click()
    expect(dialog).to_contain_text(reason)
    dialog.get_by_role("button", name="Reopen period").click()
    reopened = page.get_by_test_id("periods-list").locator("tr[data-action=reopened]")
    expect(reopened).to_have_count(1)
    expect(reopened).to_contain_text(reason)
    expect(page.get_by_test_id(f"period-row-{close['position']}")).to_contain_text("reopened at")
    expect(page.get_by_test_id("periods-state")).to_contain_text("No period is closed")
    assert [i["action"] for i in ledger.get("/v1/periods")["items"]] == ["closed", "reopened"]
    screenshot(page, "periods")

    page.goto(f"{console.base}/audit")
    audit = page.get_by_test_id("audit-periods")
    expect(audit.locator("tr[data-action=reopened]")).to_contain_text(reason)
    expect(audit.locator("tr[data-action=closed]")).to_have_count(1)

    # Without admin, the list and no action.
    reader = ledger.create_key(["read"], name="periods reader")
    page.click("#whoami button")
    console.sign_in(reader, then="/periods")
    expect(page.get_by_test_id("periods-list").locator("tr")).to_have_count(3)  # a header and two rows
    expect(page.get_by_test_id("close-period")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("need an API key with the admin scope")
