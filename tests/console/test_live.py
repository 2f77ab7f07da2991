"""The Live page: the event stream in the browser, from the head, newest first; a transfer made
through the API shows within a second; pausing and resuming skips and repeats nothing; the filters
keep only the events they name and live in the URL."""

from conftest import screenshot

from playwright.sync_api import expect


def transfer(ledger, destination="bob:cash", amount="1.00"):
    return ledger.post("/v1/transfers", {"source": "world:bank", "destination": destination,
                                         "asset": "USD", "amount": amount})


def shown_positions(page):
    return [int(p) for p in page.locator("[data-testid^=live-event-]").evaluate_all(
        "rows => rows.map(r => r.dataset.position)")]


def open_live(console, path="/live"):
    page = console.sign_in(then=path)
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    return page


def test_a_transfer_made_through_the_api_shows_within_a_second(console, ledger):
    page = open_live(console)
    head = ledger.get("/readyz")["read_source"]["position"]
    # It starts at the head, with the events just before it: not the whole log.
    positions = shown_positions(page)
    assert positions[-1] >= head - 50 and positions[0] <= head, (head, positions)
    made = transfer(ledger, amount="12.34")
    row = page.get_by_test_id(f"live-event-{made['position']}")
    expect(row).to_be_visible(timeout=1000)  # from the API's answer
    expect(row).to_contain_text("bob:cash")
    expect(row.locator(".amount")).to_have_attribute("data-value", "12.34")
    screenshot(page, "live")
    row.locator("td").first.click()  # the row, not one of its account links
    expect(page).to_have_url(f"{console.base}/transactions/{made['id']}")


def test_pausing_and_resuming_skips_and_repeats_nothing(console, ledger):
    page = open_live(console)
    before = transfer(ledger)
    expect(page.get_by_test_id(f"live-event-{before['position']}")).to_be_visible()
    page.get_by_test_id("live-pause").click()
    expect(page.get_by_test_id("live-state")).to_have_text("paused")
    made = [transfer(ledger, amount=f"{i}.00") for i in range(1, 6)]
    # While paused it reads nothing, but says how much waits.
    expect(page.get_by_test_id("live-state-detail")).to_contain_text("5 new events waiting")
    expect(page.get_by_test_id(f"live-event-{made[0]['position']}")).to_have_count(0)
    page.keyboard.press("p")  # resume
    expect(page.get_by_test_id("live-state")).to_have_text("live")
    expect(page.get_by_test_id(f"live-event-{made[-1]['position']}")).to_be_visible()
    after = transfer(ledger)
    expect(page.get_by_test_id(f"live-event-{after['position']}")).to_be_visible()
    positions = shown_positions(page)
    # Newest first, every position once, none missing.
    assert positions == list(range(positions[0], positions[0] - len(positions), -1)), positions
    assert after["position"] == positions[0]


def test_the_filters_keep_the_events_they_name_and_live_in_the_url(console, ledger):
    page = open_live(console, "/live?account=broker:acme")
    expect(page.get_by_test_id("live-account")).to_have_value("broker:acme")
    elsewhere = transfer(ledger, destination="alice:cash")
    wanted = transfer(ledger, destination="broker:acme:client1:cash")
    expect(page.get_by_test_id(f"live-event-{wanted['position']}")).to_be_visible()
    # Events arrive in order: the one before has been read and left out.
    expect(page.get_by_test_id(f"live-event-{elsewhere['position']}")).to_have_count(0)
    # Whole segments: broker:ac is no prefix of broker:acme.
    page.get_by_test_id("live-account").fill("broker:ac")
    expect(page.get_by_test_id(f"live-event-{wanted['position']}")).to_have_count(0)
    page.get_by_test_id("live-account").fill("")
    page.get_by_test_id("live-type").select_option("AccountOpened")
    expect(page).to_have_url(f"{console.base}/live?type=AccountOpened")
    expect(page.get_by_test_id(f"live-event-{wanted['position']}")).to_have_count(0)
    page.get_by_test_id("live-type").select_option("")
    expect(page.get_by_test_id(f"live-event-{elsewhere['position']}")).to_be_visible()
