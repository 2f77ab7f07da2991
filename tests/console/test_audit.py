"""The Audit page: the chain verified in the browser (intact, then broken at exactly the position
altered in PostgreSQL), the signed checkpoint checked with WebCrypto, two kept checkpoints checked
against each other, and an export that is `ledger export`'s, byte for byte, and that the
independent verifier accepts."""

import json
import os
import subprocess
import sys

from conftest import LEDGER_BIN, screenshot

from playwright.sync_api import expect

VERIFY_EXPORT = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "verify_export.py")


def download(page, testid, path):
    with page.expect_download() as info:
        page.get_by_test_id(testid).click()
    info.value.save_as(path)
    return path


def test_audit_reports_an_intact_chain_and_exports_what_ledger_export_writes(console, ledger, tmp_path):
    page = console.sign_in(then="/audit")
    expect(page.get_by_test_id("checkpoint-signature")).to_contain_text("valid")
    page.get_by_test_id("audit-verify").click()
    expect(page.get_by_test_id("audit-status")).to_contain_text("intact")
    screenshot(page, "audit")

    exported = download(page, "export-download", tmp_path / "browser.ndjson")
    expect(page.get_by_test_id("export-status")).to_contain_text("downloaded")
    verified = subprocess.run([sys.executable, VERIFY_EXPORT, str(exported)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr
    report = json.loads(verified.stdout)
    lines = exported.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert report["head_position"] == last["position"] and report["head_hash"] == last["hash"], report
    # The CLI's export of the same log (it may have grown since) starts with the same bytes.
    cli = subprocess.run([LEDGER_BIN, "export", "--data-dir", str(ledger.work / "pg")],
                         capture_output=True, check=True).stdout.splitlines(keepends=True)
    assert cli[:len(lines)] == lines


def test_two_kept_checkpoints_are_checked_against_each_other_and_their_signatures(console, ledger, tmp_path):
    page = console.sign_in(then="/audit")
    earlier = download(page, "download-checkpoint", tmp_path / "earlier.json").read_text()
    ledger.post("/v1/transfers", {"source": "world:bank", "destination": "bob:cash", "asset": "USD", "amount": "5.00"})
    later = ledger.get("/v1/audit/checkpoint")
    assert later["position"] > json.loads(earlier)["position"]
    page.get_by_test_id("checkpoint-earlier").fill(earlier)
    page.get_by_test_id("checkpoint-later").fill(json.dumps(later))
    page.get_by_test_id("consistency-check").click()
    expect(page.get_by_test_id("consistency-verdict")).to_contain_text("consistent")
    expect(page.get_by_test_id("earlier-signature")).to_contain_text("valid")
    expect(page.get_by_test_id("later-signature")).to_contain_text("valid")
    screenshot(page, "audit-consistency")
    # A checkpoint whose hash was changed: its signature fails, and the log does not extend it.
    forged = dict(later, head_hash="0" * 64)
    page.get_by_test_id("checkpoint-later").fill(json.dumps(forged))
    page.get_by_test_id("consistency-check").click()
    expect(page.get_by_test_id("consistency-verdict")).to_contain_text(f"inconsistent at position {later['position']}")
    expect(page.get_by_test_id("later-signature")).to_contain_text("INVALID")


def test_audit_reports_the_position_of_an_event_altered_in_postgresql(console_on, fresh_ledger):
    ledger = fresh_ledger
    ledger.post("/v1/assets", {"code": "USD", "scale": 2})
    for code in ("world:bank", "alice:cash"):
        ledger.post("/v1/accounts", {"code": code, "allow_negative": code == "world:bank"})
    made = [ledger.post("/v1/transfers", {"source": "world:bank", "destination": "alice:cash",
                                          "asset": "USD", "amount": f"{i}.00"}) for i in range(1, 6)]
    altered = made[2]["position"]
    ledger.psql("ALTER TABLE events DISABLE TRIGGER ALL; "
                """UPDATE events SET payload = replace(payload, '"amount":"3.00"', '"amount":"300.00"') """
                f"WHERE position = {altered}; ALTER TABLE events ENABLE TRIGGER ALL")
    page = console_on(ledger).sign_in(then="/audit")
    page.get_by_test_id("audit-verify").click()
    expect(page.get_by_test_id("audit-status")).to_contain_text(f"broken at position {altered}")
    screenshot(page, "audit-broken")
