"""The Verify page: an export (`ledger export` NDJSON) and a kept checkpoint verified in the browser
alone, before sign-in. Its report must give every test vector's expected head, verdict, account
answers and balances at positions (docs/vectors), and each tampered copy's verdict; equal what
the server answers for a log it imported and for a log written through its API; and catch a
forged checkpoint. A large export is worked through in slices: the page answers and can be
cancelled while it runs."""

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import LEDGER_BIN, Ledger, screenshot, seed

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "vectors"
TRADING_EXPORT = ROOT / "tools" / "testdata" / "trading_export.ndjson"
#: How long one verification may take in the browser: the vectors are small, CI machines slow.
VERIFY_TIMEOUT_MS = 120_000
VERDICT_FIELDS = ("chain_intact", "checkpoint_holds", "first_broken_position")


def verify(page, export, checkpoint=None, positions=()):
    """Verifies `export` (a path) with `checkpoint` (a path, or none) on the open Verify page;
    returns its report, as the page shows it in `verify-report`."""
    page.get_by_test_id("verify-export").set_input_files(str(export))
    page.get_by_test_id("verify-checkpoint").set_input_files(str(checkpoint) if checkpoint else [])
    page.get_by_test_id("verify-positions").fill(", ".join(str(p) for p in positions))
    page.get_by_test_id("verify-run").click()
    report = page.get_by_test_id("verify-report")
    expect(report).to_be_visible(timeout=VERIFY_TIMEOUT_MS)
    return json.loads(report.text_content())


def vector_ledgers():
    """(set, ledger) for every ledger of every set of docs/vectors/manifest.json; [None] when
    the vectors are missing, so that the test fails without them rather than skip."""
    manifest = VECTORS / "manifest.json"
    if not manifest.exists():
        return [None]
    return [(s["name"], name) for s in json.loads(manifest.read_text())["sets"] for name in s["ledgers"]]


@pytest.mark.parametrize("vector", vector_ledgers(), ids=lambda v: "missing" if v is None else "/".join(v))
def test_every_vector_gives_its_expected_figures_and_verdicts(console, vector, tmp_path):
    if vector is None:
        pytest.fail(f"{VECTORS / 'manifest.json'} is missing: the test vectors must be in docs/vectors")
    set_name, ledger_name = vector
    folder = VECTORS / set_name
    expected = json.loads((folder / f"{ledger_name}.expected.json").read_text())
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps(expected["checkpoint"]))
    page = console.open("/verify")
    report = verify(page, folder / expected["export"], checkpoint, sorted(int(p) for p in expected["at_positions"]))
    assert report["verdict"] == expected["verdict"]
    assert report["head"] == expected["head"]
    assert report["ledger"] == expected["ledger"] == expected["checkpoint"]["ledger"]
    assert report["checkpoint"]["signature_valid"] is True
    assert report["problems"] == []
    assert sorted(report["accounts"]) == sorted(expected["accounts"])
    for code, answer in expected["accounts"].items():
        assert report["accounts"][code] == answer, f"{set_name}/{ledger_name}: account {code}"
    assert sorted(report["at_positions"]) == sorted(expected["at_positions"])
    for position, answers in expected["at_positions"].items():
        for code, answer in answers.items():
            assert report["at_positions"][position][code] == answer, f"{set_name}/{ledger_name}: {code} at {position}"
    assert expected["tampered"], f"{set_name}/{ledger_name} has no tampered copy"
    for tampered in expected["tampered"]:
        verdict = verify(page, folder / tampered["file"], checkpoint)["verdict"]
        assert verdict == {k: tampered[k] for k in VERDICT_FIELDS}, f"{tampered['file']}: {tampered['what']}"


def server_answers(ledger, positions):
    """What the server answers: every account (GET …/accounts/{code}), and every account's
    posted balances right after each of `positions` (GET …/balances?at_position=P)."""
    codes = [a["code"] for a in ledger.get("/v1/accounts?limit=1000")["items"]]
    accounts = {code: ledger.get(f"/v1/accounts/{code}") for code in codes}
    at_positions = {str(p): {code: ledger.get(f"/v1/accounts/{code}/balances?at_position={p}") for code in codes}
                    for p in positions}
    return accounts, at_positions


def assert_report_is_the_servers(report, ledger, positions):
    accounts, at_positions = server_answers(ledger, positions)
    assert sorted(report["accounts"]) == sorted(accounts)
    for code, answer in accounts.items():
        assert report["accounts"][code] == answer, f"account {code}"
    for position, answers in at_positions.items():
        for code, answer in answers.items():
            assert report["at_positions"][position][code] == answer, f"{code} at {position}"


def test_a_log_the_server_imported_has_the_servers_figures(console_on, tmp_path):
    """tools/testdata/trading_export.ndjson holds every trading event: trades with fees, one that
    settles in part then fails, one the ledger settles by itself, costs, booking methods, marks."""
    ledger = Ledger(imported=TRADING_EXPORT)
    try:
        checkpoint = tmp_path / "checkpoint.json"
        checkpoint.write_text(json.dumps(ledger.get("/v1/audit/checkpoint")))
        page = console_on(ledger).open("/verify")
        positions = [0, 15, 30, 44]
        report = verify(page, TRADING_EXPORT, checkpoint, positions)
        assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": True, "first_broken_position": None}
        assert report["head"]["position"] == 44 and report["problems"] == []
        assert_report_is_the_servers(report, ledger, positions)
    finally:
        ledger.stop()
        shutil.rmtree(ledger.work, ignore_errors=True)


def test_a_log_written_through_the_api_has_the_servers_figures(console_on, fresh_ledger, tmp_path):
    """Holds posted in part, voided and expired, a reversal, a trade with a fee, limits with a
    zero minimum, a freeze and unfreeze, a close, and client metadata with numbers."""
    ledger = fresh_ledger
    seed(ledger)
    ledger.post("/v1/accounts", {"code": "carol:cash", "metadata": {"rate": 1e-6, "big": 12345678901234567890}})
    ledger.post("/v1/transfers", {"source": "world:bank", "destination": "carol:cash", "asset": "USD", "amount": "7.00"})
    ledger.api("PATCH", "/v1/accounts/carol:cash/limits", {"asset": "USD", "min_balance": "0.00", "max_balance": "500.00"}, expect=201)
    ledger.post("/v1/transactions", {"postings": [{"source": "carol:cash", "destination": "bob:cash", "asset": "USD",
                                                   "amount": "2.00"}], "pending": True,
                                     "expires_at": "2020-01-01T00:00:00Z"})
    for action in ("freeze", "unfreeze"):
        ledger.post(f"/v1/accounts/alice:cash/{action}")
    ledger.post("/v1/accounts", {"code": "dave:cash"})
    ledger.post("/v1/accounts/dave:cash/close")
    head = ledger.get("/v1/audit/checkpoint")
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps(head))
    export = tmp_path / "export.ndjson"
    export.write_bytes(cli_export(ledger))
    page = console_on(ledger).open("/verify")
    positions = [head["position"] // 3, 2 * head["position"] // 3]
    report = verify(page, export, checkpoint, positions)
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": True, "first_broken_position": None}
    assert report["head"] == {"position": head["position"], "hash": head["head_hash"]}
    assert report["problems"] == []
    assert_report_is_the_servers(report, ledger, positions)
    screenshot(page, "verify")


def cli_export(ledger):
    return subprocess.run([LEDGER_BIN, "export", "--data-dir", str(ledger.work / "pg")],
                          capture_output=True, check=True).stdout


def test_a_forged_checkpoint_or_one_the_export_does_not_reach_does_not_hold(console, tmp_path):
    """The checkpoint is believed for its signature alone; the chain is checked without it."""
    lines = TRADING_EXPORT.read_bytes().splitlines(keepends=True)
    head = json.loads(lines[-1])
    signed = {"ledger": "default", "position": head["position"], "head_hash": head["hash"],
              "recorded_at": head["recorded_at"], "signature": "ab" * 64, "public_key": "00" * 32}
    checkpoint = tmp_path / "forged.json"
    checkpoint.write_text(json.dumps(signed))
    page = console.open("/verify")
    # Before sign-in, the one page the console offers is this one: it needs nothing of the server.
    expect(page.locator("#nav a")).to_have_text(["Verify"])
    report = verify(page, TRADING_EXPORT, checkpoint)
    # The hashes agree but nobody signed them: the checkpoint does not hold, nothing is broken.
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": False, "first_broken_position": None}
    assert report["checkpoint"]["signature_valid"] is False
    expect(page.get_by_test_id("verify-signature")).to_contain_text("INVALID")
    # Without a checkpoint the chain alone is checked.
    assert verify(page, TRADING_EXPORT)["verdict"] == {"chain_intact": True, "checkpoint_holds": None,
                                                      "first_broken_position": None}
    # An export cut short of the checkpoint's position cannot reach its head.
    short = tmp_path / "short.ndjson"
    short.write_bytes(b"".join(lines[:-1]))
    report = verify(page, short, checkpoint)
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": False, "first_broken_position": head["position"]}
    assert report["head"]["position"] == head["position"] - 1


@pytest.mark.parametrize("damage, position", [
    ("an amount", 20), ("a line removed", 12),
    ("two lines swapped", 30), ("whitespace in the payload", 8), ("a line that is not JSON", 3),
])
def test_a_damaged_export_breaks_at_the_damaged_position(console, tmp_path, damage, position):
    lines = TRADING_EXPORT.read_bytes().splitlines(keepends=True)
    at = position - 1
    if damage == "an amount":
        assert b'"amount":"' in lines[at]
        lines[at] = lines[at].replace(b'"amount":"', b'"amount":"1', 1)
    elif damage == "a line removed":
        del lines[at]
    elif damage == "two lines swapped":
        lines[at], lines[at + 1] = lines[at + 1], lines[at]
    elif damage == "whitespace in the payload":
        lines[at] = lines[at].replace(b'"payload":{', b'"payload":{ ', 1)
    else:
        lines[at] = lines[at][:40] + b"\n"
    damaged = tmp_path / "damaged.ndjson"
    damaged.write_bytes(b"".join(lines))
    page = console.open("/verify")
    report = verify(page, damaged)
    assert report["verdict"] == {"chain_intact": False, "checkpoint_holds": None, "first_broken_position": position}, report["chain_problem"]
    assert report["head"]["position"] == position - 1
    expect(page.get_by_test_id("verify-chain")).to_contain_text(f"broken at position {position}")


#: Where synthetic_export writes a number literal as it is (json.dumps would respell it).
NUMBER = "@number@"


def synthetic_export(path, transfers, number="1e-6", then=()):
    """An export of `transfers` transfers of 1.00 USD from world to alice, chained as docs/audit.md
    says, alice opened with the metadata {"n": `number`}, the number written as given. Its
    payloads hold only strings, small integers and that number, so sorted compact JSON with the
    number put back as written is canonical. `then`: more (type, payload) after the transfers.
    Returns the head hash."""
    def canonical(value):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.replace(json.dumps(NUMBER), number)

    payloads = [("AssetDefined", {"asset": "USD", "scale": 2})]
    payloads += [("AccountOpened", {"account_id": str(uuid.uuid4()), "code": code, "allow_negative": code == "world",
                                    "metadata": metadata}) for code, metadata in (("world", {}), ("alice", {"n": NUMBER}))]
    payloads += [("TransactionPosted", {"transaction_id": str(uuid.uuid4()), "kind": "transfer", "metadata": {},
                                        "postings": [{"source": "world", "destination": "alice", "asset": "USD",
                                                      "amount": "1.00"}]}) for _ in range(transfers)]
    payloads += list(then)
    previous = hashlib.sha256(b"ledger:genesis:v1").digest()
    with open(path, "w", encoding="utf-8") as out:
        for position, (kind, payload) in enumerate(payloads, 1):
            event = {"event_id": str(uuid.uuid4()), "metadata": {"idempotency_key": f"k{position}"}, "payload": payload,
                     "position": position, "recorded_at": "2026-01-01T00:00:00.000000Z", "schema_version": 1,
                     "type": kind}
            hashed = "\n".join(["ledger:event:v1", str(position), event["event_id"], kind, "1", event["recorded_at"],
                                canonical(payload), canonical(event["metadata"])])
            previous = hashlib.sha256(previous + hashed.encode()).digest()
            out.write(canonical(event | {"hash": previous.hex()}) + "\n")
    return previous.hex()


@pytest.mark.parametrize("number", ["1e-6", "1E+2", "0.10", "-0", "123456789012345678901.0", "1.0e-7"])
def test_numbers_are_hashed_as_written_and_a_respelled_one_breaks_the_chain(console, tmp_path, number):
    export = tmp_path / "numbers.ndjson"
    synthetic_export(export, 2, number)
    page = console.open("/verify")
    report = verify(page, export)
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": None, "first_broken_position": None}
    # The account answer gives the client's number as written, as the server does.
    assert f'"n": {number}' in page.get_by_test_id("verify-report").text_content()
    # Python's json.dumps spelling of the same value, the hashes left alone: alice's opening breaks.
    respelled = json.dumps(json.loads(number))
    assert respelled != number
    lines = export.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(f'"n":{number}', f'"n":{respelled}')
    export.write_text("".join(lines))
    assert verify(page, export)["verdict"] == {"chain_intact": False, "checkpoint_holds": None, "first_broken_position": 3}


def test_the_figures_stop_at_an_event_they_cannot_apply_and_the_chain_goes_on(console, tmp_path):
    """docs/events.md: a consumer that meets a type it does not know must stop, not skip it."""
    export = tmp_path / "unknown.ndjson"
    transfer = {"transaction_id": str(uuid.uuid4()), "kind": "transfer", "metadata": {},
                "postings": [{"source": "world", "destination": "alice", "asset": "USD", "amount": "1.00"}]}
    head_hash = synthetic_export(export, 2, then=[("FutureEvent", {}), ("TransactionPosted", transfer)])
    page = console.open("/verify")
    report = verify(page, export, positions=[4, 6])
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": None, "first_broken_position": None}
    assert report["head"] == {"position": 7, "hash": head_hash}
    assert report["figures_through"] == 5 and report["figures_stopped"]["position"] == 6
    assert report["accounts"]["alice"]["balances"][0]["balance"] == "2.00"
    assert list(report["at_positions"]) == ["4"] and report["at_positions_not_reached"] == [6]
    expect(page.get_by_test_id("verify-status")).to_contain_text("stopped at 6")


def test_a_large_export_is_verified_in_slices_that_leave_the_page_responsive(console, tmp_path):
    transfers = 30_000
    export = tmp_path / "large.ndjson"
    head_hash = synthetic_export(export, transfers)
    page = console.open("/verify")
    # Cancel while it runs: the click is taken between two slices.
    page.get_by_test_id("verify-export").set_input_files(str(export))
    page.get_by_test_id("verify-run").click()
    expect(page.get_by_test_id("verify-run-progress")).to_contain_text("MB")
    page.get_by_test_id("verify-run-cancel").click()
    expect(page.get_by_test_id("verify-status")).to_contain_text("cancelled")
    # The whole of it: transfer n (a duplicate id each time) moves 1.00 more.
    started = time.monotonic()
    report = verify(page, export)
    seconds = time.monotonic() - started
    head = transfers + 3
    assert report["verdict"] == {"chain_intact": True, "checkpoint_holds": None, "first_broken_position": None}
    assert report["head"] == {"position": head, "hash": head_hash}
    alice = report["accounts"]["alice"]
    assert alice["version"] == head and alice["balances"] == [{
        "asset": "USD", "balance": f"{transfers}.00", "pending_debits": "0.00", "pending_credits": "0.00",
        "available": f"{transfers}.00", "trade_date_balance": f"{transfers}.00", "position": head}]
    print(f"{head} events verified in the browser in {seconds:.1f} s")
