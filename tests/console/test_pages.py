"""Every page of the console loads in Chromium with no browser error, and the Accounts tree's
roll-ups equal the sums of the accounts under them."""

from conftest import screenshot

from playwright.sync_api import expect


def decimal_units(text, scale):
    """'1234.5' → 123450 at scale 2: exact integer arithmetic for comparing sums."""
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    value = int(whole or "0") * 10**scale + int((fraction + "0" * scale)[:scale] or "0")
    assert len(fraction) <= scale, f"{text} has more digits than scale {scale}"
    return -value if negative else value


def test_signing_in_with_an_api_key_shows_what_its_scopes_allow(console):
    page = console.sign_in()
    expect(page.locator("#nav a")).to_have_text(["Overview", "Accounts", "Periods", "Live", "Audit", "Verify"])
    reader = console.ledger.create_key(["read"], name="reader")
    page.click("#whoami button")  # sign out
    console.sign_in(reader)
    # Verify reads files in the browser and asks the server nothing: any key, or none, may use it.
    expect(page.locator("#nav a")).to_have_text(["Overview", "Accounts", "Periods", "Live", "Verify"])


def test_a_wrong_key_is_refused_with_the_problem_document_quoted(console):
    console.expect_errors("401")  # Chromium logs the refused request itself
    page = console.open("/signin")
    screenshot(page, "signin")
    page.fill("#api-key", "lk_" + "0" * 64)
    page.press("#api-key", "Enter")
    expect(page.locator(".problem")).to_contain_text("unauthorized")


def test_a_bookmarked_page_asks_for_a_key_and_then_opens(console):
    page = console.open("/accounts?prefix=broker")
    expect(page).to_have_url(f"{console.base}/signin?next=%2Fconsole%2Faccounts%3Fprefix%3Dbroker")
    page.fill("#api-key", console.ledger.admin_key)
    page.press("#api-key", "Enter")
    expect(page).to_have_url(f"{console.base}/accounts?prefix=broker")


def test_the_overview_shows_the_writer_the_head_and_an_intact_chain(console, ledger):
    page = console.sign_in()
    head = ledger.get("/readyz")["read_source"]["position"]
    expect(page.get_by_test_id("role")).to_have_text("writer")
    expect(page.get_by_test_id("chain-status")).to_contain_text("intact")
    shown = int(page.get_by_test_id("head-position").inner_text().replace(",", ""))
    assert shown >= head
    expect(page.get_by_test_id("events-per-second")).to_be_visible()  # two samples of /metrics
    screenshot(page, "overview")


def test_the_accounts_tree_rolls_up_exactly_the_sum_of_its_accounts(console, ledger):
    scales = {a["code"]: a["scale"] for a in ledger.get("/v1/assets")["items"]}
    page = console.sign_in(then="/accounts?prefix=broker")
    rows = page.locator("tr[data-prefix]")
    expect(rows.first).to_be_visible()
    screenshot(page, "accounts")
    assert rows.count() >= 3  # acme, fees, globex
    for i in range(rows.count()):
        row = rows.nth(i)
        prefix = row.get_attribute("data-prefix")
        accounts = ledger.get(f"/v1/accounts?prefix={prefix}:&limit=1000")["items"]
        accounts += ledger.get(f"/v1/accounts?prefix={prefix}&limit=1")["items"][:1] \
            if any(a["code"] == prefix for a in ledger.get(f"/v1/accounts?prefix={prefix}&limit=1")["items"]) else []
        expected = {}
        for account in accounts:
            for b in account["balances"]:
                scale = scales[b["asset"]]
                sums = expected.setdefault(b["asset"], {"posted": 0, "pending_debits": 0, "pending_credits": 0})
                sums["posted"] += decimal_units(b["balance"], scale)
                sums["pending_debits"] += decimal_units(b.get("pending_debits") or "0", scale)
                sums["pending_credits"] += decimal_units(b.get("pending_credits") or "0", scale)
        shown = {}
        for cell in row.locator("[data-field] .amount").all():
            asset = cell.get_attribute("data-asset")
            field = cell.locator("xpath=..").get_attribute("data-field")
            shown.setdefault(asset, {})[field] = decimal_units(cell.get_attribute("data-value"), scales[asset])
        for asset, sums in expected.items():
            for field, value in sums.items():
                assert shown[asset][field] == value, f"{prefix} {asset} {field}: {shown[asset]} != {sums}"
        assert set(shown) == set(expected), prefix


def test_the_whole_ledger_sums_to_zero_in_every_asset(console):
    page = console.sign_in(then="/accounts")
    posted = page.locator("[data-testid^=rollup-posted-] .amount")
    expect(posted.first).to_be_visible()
    for cell in posted.all():
        assert cell.get_attribute("data-value").strip("-0.") == "", cell.get_attribute("data-value")


def test_keys_move_through_the_tree_and_open_a_node(console):
    page = console.sign_in(then="/accounts")
    first = page.locator("tr.row-link").first
    expect(first).to_be_visible()
    segment = first.get_attribute("data-prefix")
    page.keyboard.press("j")
    expect(first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{console.base}/accounts?prefix={segment}")
    expect(page.get_by_role("heading", name=f"Under {segment}")).to_be_visible()
    page.keyboard.press("/")
    expect(page.get_by_test_id("prefix-search")).to_be_focused()
    page.keyboard.type("broker:acme")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{console.base}/accounts?prefix=broker%3Aacme")


def test_the_ledger_switcher_shows_every_page_for_the_chosen_ledger(console, ledger):
    if ledger.api("GET", "/v1/ledgers/console-b")[0] == 404:
        ledger.post("/v1/ledgers", {"name": "console-b"})
        ledger.post("/v1/ledgers/console-b/assets", {"code": "USD", "scale": 2})
        ledger.post("/v1/ledgers/console-b/accounts", {"code": "only-in-b:cash"})
    page = console.sign_in(then="/accounts")
    switcher = page.get_by_test_id("ledger")
    expect(switcher).to_have_value("default")
    expect(page.locator("tr[data-prefix='broker']")).to_be_visible()
    switcher.select_option("console-b")
    page.click("#nav a[href='/console/accounts']")
    expect(page.locator("tr[data-prefix='only-in-b']")).to_be_visible()
    expect(page.locator("tr[data-prefix='broker']")).to_have_count(0)
    expect(page.get_by_test_id("ledger")).to_have_value("console-b")
