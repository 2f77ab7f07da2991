#!/usr/bin/env python3
"""Makes the verifier kit's test vectors (docs/vectors, issue 25) from a real ledger.

For each set it starts `ledger serve` on its own scratch PostgreSQL, drives it over HTTP as a
client would, exports each ledger with `ledger export`, and records what a verifier must compute
from the export alone, taken from the server's own answers: every account (`GET …/accounts/{code}`),
its balances at two earlier positions (`…/balances?at_position=`), positions (trading), trial
balances as of a date (time), the head and a signed checkpoint. Then it writes tampered copies of
each export with the verdict each must get, `manifest.json` and `README.md`.

    python3 tools/make_vectors.py --ledger-bin target/debug/ledger --out docs/vectors

Standard library only. Progress goes to stderr; it prints nothing on stdout. It fails when the
sets together lack an event type of `domain/src/event.rs`, or when a server answer is not the one
the set is built to show.
"""
import argparse
import datetime
import decimal
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from ledger_process import stop, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT_S = 90
# How long a server has to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 60
POLL_TIMEOUT_S = 30
# The chain's constants (docs/audit.md), needed to recompute the hashes of a tampered copy.
GENESIS = hashlib.sha256(b"ledger:genesis:v1").digest()
DOMAIN = b"ledger:event:v1\n"
TAMPER_KINDS = ["changed-amount", "removed-event", "swapped-events", "recomputed-chain",
                "changed-metadata-number"]


def log(text):
    print(text, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def utc(dt):
    """RFC 3339 with microseconds, as the ledger writes times."""
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class Refused(RuntimeError):
    pass


class Literal(str):
    """A JSON number kept as the characters it was written with (`1e-6`, `0.10`, `-0`): the
    ledger serves metadata numbers as written, and a float would respell them."""


def int_or_literal(text):
    return int(text) if str(int(text)) == text else Literal(text)


def loads(text):
    """JSON with every number that an int would not write back the same kept as its literal."""
    return json.loads(text, parse_int=int_or_literal, parse_float=Literal)


def marked(v):
    if isinstance(v, Literal):
        return "\x00" + v + "\x00"
    if isinstance(v, dict):
        return {k: marked(x) for k, x in v.items()}
    if isinstance(v, list):
        return [marked(x) for x in v]
    return v


def dumps(v, **options):
    """JSON text with every Literal written as the number it is."""
    return re.sub(r'"\\u0000([^"\\]*)\\u0000"', r"\1", json.dumps(marked(v), **options))


class Server:
    """A `ledger serve` on loopback with its own scratch PostgreSQL and an admin key."""

    def __init__(self, binary, name):
        self.binary = binary
        self.work = tempfile.mkdtemp(prefix=f"ledger-vectors-{name}.")
        os.chmod(self.work, 0o755)  # as root, PostgreSQL runs as another user that must reach it
        self.data_dir = os.path.join(self.work, "pg")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = "lk_" + secrets.token_hex(32)
        self.env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.env.update(RUST_LOG="warn", LEDGER_BOOTSTRAP_ADMIN_KEY=self.key)
        self.log_path = os.path.join(self.work, "ledger.log")
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
             "--no-webhook-delivery"],
            env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.wait_ready()

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def wait_ready(self):
        wait_ready(self.process, self.base, self.log_tail, READY_TIMEOUT_S)

    def call(self, method, path, body=None, raw=None, key=None):
        """(status, answer) of one request; `raw` is a body sent as these exact bytes (numbers
        in metadata as written), `key` the Idempotency-Key of a POST."""
        data = raw.encode("utf-8") if raw is not None else (
            None if body is None else json.dumps(body).encode("utf-8"))
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        return status, (loads(text) if text else None)

    def export(self, ledger, path):
        # Its logs, if any, go to stderr with the progress; stdout stays empty.
        subprocess.run([self.binary, "export", "--data-dir", self.data_dir, "--ledger", ledger,
                        "--output", path], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        stop(self.process, STOP_TIMEOUT_S)
        self.log_file.close()
        shutil.rmtree(self.work, ignore_errors=True)


class Book:
    """A client of one ledger of a server, for one set: numbered idempotency keys, and the
    exchanges the set records."""

    def __init__(self, server, set_name, ledger="default", exchanges=None):
        self.server, self.set_name, self.ledger = server, set_name, ledger
        self.count = 0
        self.exchanges = [] if exchanges is None else exchanges

    def path(self, route):
        return f"/v1/ledgers/{self.ledger}{route}"

    def next_key(self):
        self.count += 1
        return f"{self.set_name}-{self.ledger}-{self.count:03d}"

    def send(self, method, route, body=None, raw=None, scoped=True, batch=False):
        key = None if method == "GET" or batch else self.next_key()
        path = self.path(route) if scoped else route
        return self.server.call(method, path, body=body, raw=raw, key=key) + (path,)

    def ok(self, method, route, body=None, raw=None, scoped=True, batch=False):
        """The answer of a write or read that must succeed."""
        status, answer, path = self.send(method, route, body, raw, scoped, batch)
        if status >= 300:
            raise Refused(f"{method} {path} {body or raw}: {status} {answer}")
        return answer

    def show(self, question, shows, method, route, body=None, raw=None, status=None, scoped=True,
             batch=False):
        """A request whose answer shows a documented answer: recorded in exchanges.json."""
        got, answer, path = self.send(method, route, body, raw, scoped, batch)
        if status is not None and got != status:
            raise Refused(f"{shows}: {method} {path} answered {got}, not {status}: {answer}")
        self.exchanges.append({"question": question, "shows": shows,
                               "request": {"method": method, "path": path,
                                           "body": loads(raw) if raw is not None else body},
                               "status": got, "answer": answer})
        return answer

    # Shorthands for the routes the sets use.
    def asset(self, code, scale):
        return self.ok("POST", "/assets", {"code": code, "scale": scale})

    def account(self, code, **fields):
        return self.ok("POST", "/accounts", {"code": code, **fields})

    def account_raw(self, code, metadata_text):
        """Opens an account whose metadata is sent as these exact characters: a number in it is
        kept as written, which the changed-metadata-number tamper respells."""
        return self.ok("POST", "/accounts", raw=f'{{"code":"{code}","metadata":{metadata_text}}}')

    def transfer(self, source, destination, asset, amount, **fields):
        return self.ok("POST", "/transfers", {"source": source, "destination": destination,
                                              "asset": asset, "amount": amount, **fields})

    def transaction(self, postings, **fields):
        return self.ok("POST", "/transactions", {"postings": [
            {"source": s, "destination": d, "asset": a, "amount": m} for s, d, a, m in postings], **fields})

    def wait_for(self, what, ready):
        """Polls an observable state until `ready(answer)` (never a fixed sleep)."""
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while time.monotonic() < deadline:
            answer = what()
            if ready(answer):
                return answer
            time.sleep(0.1)
        raise RuntimeError(f"{self.set_name}: state not reached in {POLL_TIMEOUT_S} s")


# The sets. Each function drives a fresh server through `book` (ledger `default`), recording its
# exchanges there; the ledgers it exports are listed in SETS. `set_time` returns the times its
# trial balances are read at.

def head_of(book):
    """The ledger's head position, as `GET /v1/ledgers/{ledger}` states it."""
    return book.ok("GET", "")["head_position"]


def set_basics(book):
    """Scales 0..18, metadata numbers, limits, freeze, close, atomic batches, events page, bounds."""
    basics_scales_and_metadata(book)
    basics_limits_and_bounds(book)
    basics_batches(book)
    basics_close_and_reads(book)


def basics_scales_and_metadata(book):
    for scale in range(19):
        book.asset(f"S{scale}", scale)
    book.asset("USD", 2)
    book.account("world", allow_negative=True, metadata={"role": "outside the books"})
    # Client metadata holding numbers written in several ways: hashed and served as written (q1).
    raw = ('{"code":"alice","metadata":{"tiny":1e-6,"hundred":1E+2,"dime":0.10,"zero":-0,'
           '"big":12345678901234567890,"small":1.0e-7,"list":[1.50,2e3]}}')
    book.show(1, "metadata numbers are hashed and served exactly as written", "POST", "/accounts",
              raw=raw, status=201)
    for code in ("bob", "carol", "dave"):
        book.account(code)
    # One posting in each scale, all in one transaction.
    amounts = {scale: ("12" + ("." + "1234567890123456789"[:scale] if scale else "")) for scale in range(19)}
    book.transaction([("world", "alice", f"S{s}", amounts[s]) for s in range(19)],
                     metadata={"what": "one posting in each scale 0..18"})
    book.transfer("world", "alice", "USD", "500.00")


def basics_limits_and_bounds(book):
    # Limits: a zero minimum stated at USD's scale, and a maximum (q4).
    book.ok("PATCH", "/accounts/bob/limits", {"asset": "USD", "min_balance": "0.00", "max_balance": "300.00"})
    book.show(4, "an account answer lists the limits set, a zero minimum as the server writes it",
              "GET", "/accounts/bob", status=200)
    book.show(7, "a balance above the maximum is refused (balance_limit_exceeded)", "POST", "/transfers",
              {"source": "alice", "destination": "bob", "asset": "USD", "amount": "300.01"}, status=422)
    # Bounds per posting step (q7): bob at 0 cannot pay first and be paid after in one
    # transaction; in the other order it goes through.
    book.show(7, "bounds are checked at every posting step: bob pays before he is paid, refused",
              "POST", "/transactions", {"postings": [
                  {"source": "bob", "destination": "carol", "asset": "USD", "amount": "50.00"},
                  {"source": "alice", "destination": "bob", "asset": "USD", "amount": "50.00"}]}, status=422)
    book.show(7, "the same postings in the other order are accepted", "POST", "/transactions",
              {"postings": [
                  {"source": "alice", "destination": "bob", "asset": "USD", "amount": "50.00"},
                  {"source": "bob", "destination": "carol", "asset": "USD", "amount": "50.00"}]}, status=201)
    book.transfer("alice", "bob", "USD", "120.00")
    # The maximum bounds posted + pending credits (docs/events.md, AccountLimitsSet): bob holds
    # 120.00 of 300.00, so a hold crediting him 181.00 would take him to 301.00.
    book.show(7, "a hold is bounded when reserved: bob's maximum counts his pending credits, refused",
              "POST", "/transfers", {"source": "alice", "destination": "bob", "asset": "USD", "amount": "181.00",
                                     "pending": True, "timeout_s": 3600}, status=422)
    # PendingPosted under a bound lowered after the hold was made (q7).
    hold = book.transfer("alice", "bob", "USD", "100.00", pending=True, timeout_s=3600)
    book.ok("PATCH", "/accounts/bob/limits", {"asset": "USD", "max_balance": "200.00"})
    book.show(7, "a hold posted in part after bob's maximum was lowered to 200.00, below his posted + pending "
                 "credits (220.00): accepted, because a settlement (PendingPosted) is never checked against bounds: "
                 "they were checked when the hold reserved", "POST", f"/transactions/{hold['id']}/post", {"amounts": ["90.00"]}, status=201)
    # A credit line set, then removed (null): which limits an account answer lists (q4).
    book.ok("PATCH", "/accounts/carol/limits", {"asset": "S2", "min_balance": "-5.00"})
    book.ok("PATCH", "/accounts/carol/limits", {"asset": "S2", "min_balance": None})
    book.show(4, "a bound set then removed: the answer's limits for that asset", "GET", "/accounts/carol",
              status=200)
    # Freeze and unfreeze: a frozen account takes no postings.
    book.ok("POST", "/accounts/carol/freeze", {"metadata": {"reason": "review"}})
    book.show(None, "a posting to a frozen account is refused", "POST", "/transfers",
              {"source": "alice", "destination": "carol", "asset": "USD", "amount": "1.00"}, status=422)
    book.ok("POST", "/accounts/carol/unfreeze", {})


def basics_batches(book):
    # An atomic batch: several events committed together, with the same recorded_at (q10).
    book.show(10, "an atomic batch: each command its own event, recorded_at may repeat",
              "POST", "/transactions/batch", {"atomic": True, "commands": [
                  {"idempotency_key": "basics-batch-1",
                   "transfer": {"source": "alice", "destination": "carol", "asset": "USD", "amount": "10.00"}},
                  {"idempotency_key": "basics-batch-2",
                   "transfer": {"source": "alice", "destination": "dave", "asset": "USD", "amount": "0.10"}},
                  {"idempotency_key": "basics-batch-3",
                   "transaction": {"postings": [{"source": "world", "destination": "dave", "asset": "S18",
                                                 "amount": "0.000000000000000001"}]}}]},
              status=200, batch=True)
    # A refused atomic batch: HTTP 200, the refused command its own code, the others batch_aborted (q11).
    head = head_of(book)
    answer = book.show(11, "a refused atomic batch answers 200, one 422 per command, nothing appended",
                       "POST", "/transactions/batch", {"atomic": True, "commands": [
                           {"idempotency_key": "basics-refused-1",
                            "transfer": {"source": "alice", "destination": "carol", "asset": "USD", "amount": "1.00"}},
                           {"idempotency_key": "basics-refused-2",
                            "transfer": {"source": "dave", "destination": "carol", "asset": "USD", "amount": "999.00"}}]},
                       status=200, batch=True)
    if any(r["status"] != 422 for r in answer["results"]) or head_of(book) != head:
        raise Refused(f"a refused atomic batch answered {answer}, or appended something")


def basics_close_and_reads(book):
    # dave empties his accounts and is closed.
    book.transfer("dave", "world", "USD", "0.10")
    book.transfer("dave", "world", "S18", "0.000000000000000001")
    book.ok("POST", "/accounts/dave/close", {"metadata": {"reason": "left"}})
    book.show(2, "a closed account's answer: status closed, version its last change", "GET", "/accounts/dave",
              status=200)
    book.show(3, "each balance's position is the last event that changed it", "GET", "/accounts/alice",
              status=200)
    book.show(9, "the events page: items and next_after", "GET", "/events?after=0&limit=3", status=200)


def set_holds(book):
    """Holds posted in part, voided, expired; partial posts of twin postings; frozen accounts."""
    book.asset("USD", 2)
    book.asset("EUR", 2)
    book.account("world", allow_negative=True)
    for code in ("alice", "bob", "shop"):
        book.account_raw(code, '{"rate":0.10}')
    book.transfer("world", "alice", "USD", "1000.00")
    book.transfer("world", "alice", "EUR", "200.00")
    hold = lambda postings, **f: book.transaction(postings, pending=True, **f)
    # Posted in part: 60.00 of 80.00; the rest released.
    h1 = hold([("alice", "bob", "USD", "80.00")], timeout_s=3600)
    book.ok("POST", f"/transactions/{h1['id']}/post", {"amounts": ["60.00"]})
    # Voided.
    h2 = hold([("alice", "shop", "USD", "25.00")], timeout_s=3600)
    book.ok("POST", f"/transactions/{h2['id']}/void", {})
    # Two reserved postings sharing source, destination and asset, posted in part (q6).
    h3 = hold([("alice", "bob", "USD", "30.00"), ("alice", "bob", "USD", "20.00"),
               ("alice", "shop", "EUR", "5.00")], timeout_s=3600)
    book.show(6, "a partial post matches amounts to the reserved postings by index", "POST",
              f"/transactions/{h3['id']}/post", {"amounts": ["10.00", "20.00", "0.00"]}, status=201)
    # A hold on a frozen account: the post is refused, the void allowed (q5).
    h4 = hold([("alice", "shop", "USD", "40.00")], timeout_s=3600)
    book.ok("POST", "/accounts/shop/freeze", {"metadata": {"reason": "dispute"}})
    book.show(5, "posting a hold whose destination is frozen is refused (account_frozen)", "POST",
              f"/transactions/{h4['id']}/post", {}, status=422)
    book.show(5, "voiding the same hold is allowed", "POST", f"/transactions/{h4['id']}/void", {}, status=201)
    book.ok("POST", "/accounts/shop/unfreeze", {})
    # Expiry: an expires_at sent with 9 fractional digits (q8), a few seconds ahead; the ledger
    # appends PendingExpired by itself.
    due = now() + datetime.timedelta(seconds=3)
    expires_at = due.strftime("%Y-%m-%dT%H:%M:%S.") + f"{due.microsecond:06d}789Z"
    h5 = book.show(8, "an expires_at with 9 fractional digits is kept to microseconds", "POST", "/transfers",
                   {"source": "alice", "destination": "bob", "asset": "USD", "amount": "15.00",
                    "pending": True, "expires_at": expires_at}, status=201)
    book.wait_for(lambda: book.ok("GET", f"/transactions/{h5['id']}"), lambda t: t["status"] == "expired")
    book.show(8, "the hold expired: PendingExpired appended by the ledger", "GET", f"/transactions/{h5['id']}",
              status=200)
    # Expiry times at a whole second and at a millisecond: the event writes as many fractional
    # digits as are exact (q8). Both voided: they are far ahead.
    later = (now() + datetime.timedelta(hours=2)).replace(microsecond=0)
    for expires_at in (later.strftime("%Y-%m-%dT%H:%M:%SZ"), later.strftime("%Y-%m-%dT%H:%M:%S.250Z")):
        h = book.show(8, f"expires_at {expires_at} as the answer and the event write it", "POST", "/transfers",
                      {"source": "alice", "destination": "bob", "asset": "USD", "amount": "1.00",
                       "pending": True, "expires_at": expires_at}, status=201)
        book.ok("POST", f"/transactions/{h['id']}/void", {})
    # Reversals: of a transfer, and of a hold's post.
    t = book.transfer("alice", "shop", "EUR", "12.50")
    book.ok("POST", f"/transactions/{t['id']}/reverse", {"metadata": {"reason": "refund"}})
    book.ok("POST", f"/transactions/{h1['id']}/reverse", {})
    book.transfer("bob", "shop", "USD", "5.00")


def set_trading(book):
    """Trades, settlement dates, booking methods, marks, costs, a reversed trade."""
    book.asset("USD", 2)
    book.asset("EUR", 2)
    book.asset("AAPL", 0)
    book.asset("BTC", 8)
    book.ok("POST", "/accounts", raw='{"code":"market","allow_negative":true,"metadata":{"spread":1.50}}')
    book.account("broker:fees")
    methods = {"alice": "fifo", "bob": "lifo", "carol": "hifo", "dave": "average", "erin": "specific"}
    for who, method in methods.items():
        # fifo is the default: alice states none, so her AccountOpened has no booking_method.
        book.account(who, **({} if method == "fifo" else {"booking_method": method}))
        book.transfer("market", who, "USD", "10000.00")
        book.transfer("market", who, "EUR", "100.00")
    trade = lambda buyer, seller, q, p, **f: book.ok("POST", "/trades", {
        "buyer": buyer, "seller": seller, "instrument": "AAPL", "quantity": q, "price": p,
        "currency": "USD", **f})
    # Three buys at different prices, then a sale: each method closes other lots.
    for who in methods:
        trade(who, "market", "10", "100.00", fees=[{"payer": who, "account": "broker:fees",
                                                    "asset": "EUR", "amount": "1.00"}])
        trade(who, "market", "10", "120.00")
        trade(who, "market", "10", "110.00")
    for who in ("alice", "bob", "carol", "dave"):
        trade("market", who, "15", "130.00", fees=[{"payer": who, "account": "broker:fees",
                                                    "asset": "EUR", "amount": "0.50"}])
    lots = book.ok("GET", "/accounts/erin/positions")["positions"][0]["lots"]
    trade("market", "erin", "15", "130.00",
          lots=[{"lot_id": lots[2]["lot_id"], "quantity": "10"}, {"lot_id": lots[0]["lot_id"], "quantity": "5"}])
    # BookingMethodSet: alice books by hifo from now on.
    book.ok("PUT", "/accounts/alice/booking-method", {"booking_method": "hifo", "metadata": {"why": "tax"}})
    trade("market", "alice", "5", "125.00")
    # A cost-stated posting: units received from outside at a stated cost.
    book.transfer("market", "bob", "AAPL", "4", cost={"amount": "500.00", "currency": "USD"})
    book.transfer("market", "carol", "BTC", "0.50000000", cost={"amount": "20000.00", "currency": "USD"})
    # A trade that settles later, settled early in part, then failed.
    # Two days ahead, not one: still after the trade date if the run crosses midnight (UTC).
    later_date = (now() + datetime.timedelta(days=2)).date().isoformat()
    t1 = trade("alice", "market", "10", "140.00", settlement_date=later_date)
    book.ok("POST", f"/trades/{t1['id']}/settle", {"amounts": ["4", "560.00"]})
    book.ok("POST", f"/trades/{t1['id']}/fail", {"reason": "seller failed to deliver"})
    # One settled early, whole.
    t2 = trade("bob", "market", "3", "141.00", settlement_date=later_date)
    book.ok("POST", f"/trades/{t2['id']}/settle", {})
    # One still pending at the head: trade-date figures differ from settled ones.
    trade("carol", "market", "2", "142.00", settlement_date=later_date)
    # A reversed trade.
    t3 = trade("dave", "market", "5", "150.00", fees=[{"payer": "dave", "account": "broker:fees",
                                                       "asset": "EUR", "amount": "0.25"}])
    book.ok("POST", f"/transactions/{t3['id']}/reverse", {})
    # Marks.
    book.ok("POST", "/prices", {"instrument": "AAPL", "currency": "USD", "price": "135.5",
                                "as_of": utc(now() - datetime.timedelta(minutes=1))})
    book.ok("POST", "/prices", {"instrument": "BTC", "currency": "USD", "price": "41000",
                                "as_of": utc(now())})
    # A BookingMethodSet that is the account's last event: its position is the account's version.
    book.ok("PUT", "/accounts/bob/booking-method", {"booking_method": "fifo"})


def set_ledgers(book):
    """Two ledgers, each its own chain, and transfers between them (one posted, one voided)."""
    server = book.server
    east, west = Book(server, "ledgers", "east", book.exchanges), Book(server, "ledgers", "west", book.exchanges)
    for name in ("east", "west"):
        book.ok("POST", "/v1/ledgers", {"name": name, "metadata": {"region": name}}, scoped=False)
    for side in (east, west):
        side.asset("USD", 2)
        side.account("world", allow_negative=True)
        side.account_raw("treasury:cash", '{"floor":1e3}')
    east.transfer("world", "treasury:cash", "USD", "1000.00")
    west.transfer("world", "treasury:cash", "USD", "50.00")
    book.show(None, "a transfer between ledgers: a hold in each, both posted", "POST", "/v1/ledger-transfers",
              {"source_ledger": "east", "source": "treasury:cash", "destination_ledger": "west",
               "destination": "treasury:cash", "asset": "USD", "amount": "250.00",
               "metadata": {"ref": "INV-7"}}, status=201, scoped=False)
    book.show(None, "a transfer the source cannot fund: refused (422) before any hold, nothing in either log",
              "POST", "/v1/ledger-transfers",
              {"source_ledger": "west", "source": "treasury:cash", "destination_ledger": "east",
               "destination": "treasury:cash", "asset": "USD", "amount": "9999.00"}, status=422, scoped=False)
    # The destination refuses (frozen) after the source's hold was made: that hold is voided.
    east.ok("POST", "/accounts/treasury:cash/freeze", {"metadata": {"reason": "audit"}})
    book.show(None, "a transfer whose destination is frozen: the source's hold voided, 422", "POST",
              "/v1/ledger-transfers",
              {"source_ledger": "west", "source": "treasury:cash", "destination_ledger": "east",
               "destination": "treasury:cash", "asset": "USD", "amount": "30.00"}, status=422, scoped=False)
    east.ok("POST", "/accounts/treasury:cash/unfreeze", {})
    west.transfer("treasury:cash", "world", "USD", "20.00")


def set_time(book):
    """Backdated entries, a closed period, reopened, closed again; trial balances as of a date."""
    book.asset("USD", 2)
    book.account("world", allow_negative=True)
    book.account_raw("alice", '{"share":0.5e1}')
    book.account("bob")
    start = now()
    day = lambda n: utc(start - datetime.timedelta(days=n))
    book.transfer("world", "alice", "USD", "1000.00", effective_at=day(10))
    book.transfer("alice", "bob", "USD", "100.00", effective_at=day(8))
    book.transfer("alice", "bob", "USD", "40.00")
    through = day(6)
    first = book.ok("POST", "/periods/close", {"through": through, "metadata": {"month": "first"}})
    book.show(None, "a write into the closed period is refused (period_closed)", "POST", "/transfers",
              {"source": "alice", "destination": "bob", "asset": "USD", "amount": "1.00",
               "effective_at": day(7)}, status=422)
    book.ok("POST", "/periods/reopen", {"reason": "a late invoice"})
    book.transfer("bob", "alice", "USD", "15.00", effective_at=day(7), metadata={"invoice": 17})
    book.ok("POST", "/periods/close", {"through": through, "metadata": {"month": "again"}})
    book.transfer("alice", "bob", "USD", "5.00", effective_at=day(3))
    return {"through": through, "first_close_position": first["position"], "day": day}


SETS = [
    {"name": "basics", "ledgers": ["default"], "make": set_basics, "questions": [1, 2, 3, 4, 7, 9, 10, 11],
     "shows": ["assets at every scale 0..18 and a transaction in each", "client metadata numbers written in "
               "several ways, hashed as written", "limits: a zero minimum and a maximum", "freeze, unfreeze, close",
               "an atomic batch (one recorded_at) and a refused one", "the events page", "bounds at every posting step"]},
    {"name": "holds", "ledgers": ["default"], "make": set_holds, "questions": [5, 6, 8],
     "shows": ["holds posted in part, voided and expired", "a partial post of two reserved postings sharing "
               "source, destination and asset", "a hold on a frozen account: post refused, void allowed",
               "an expires_at with 9 fractional digits", "reversals of a transfer and of a hold's post"]},
    {"name": "trading", "ledgers": ["default"], "make": set_trading, "questions": [],
     "shows": ["trades with fees in another asset", "a trade settling later settled early in part then failed, "
               "one settled early whole, one still pending", "booking methods fifo, lifo, hifo, average, specific",
               "BookingMethodSet", "PriceMarked", "cost-stated postings", "a reversed trade"]},
    {"name": "ledgers", "ledgers": ["east", "west"], "make": set_ledgers, "questions": [],
     "shows": ["two ledgers, each its own chain", "a transfer between them posted on both sides",
               "one refused by a frozen destination: the source's hold voided"]},
    {"name": "time", "ledgers": ["default"], "make": set_time, "questions": [],
     "shows": ["backdated entries (effective_at)", "a closed period, reopened, closed again",
               "trial balances as of a date, as known at two positions"]},
]


# Expected figures: the server's own answers.

def expected_of(book, ledger, head, checkpoint, context, trading, earlier):
    """expected.json for one ledger, read from the server; `earlier`: the two positions before
    the head whose balances it records."""
    reader = Book(book.server, book.set_name, ledger)
    at = f"min_position={head}"
    codes = [a["code"] for a in reader.ok("GET", f"/accounts?limit=1000&{at}")["items"]]
    accounts = {c: reader.ok("GET", f"/accounts/{c}?{at}") for c in codes}
    at_positions = {}
    for p in earlier:
        answers = {}
        for c in codes:
            status, answer, _ = reader.send("GET", f"/accounts/{c}/balances?at_position={p}&{at}")
            if status == 200:
                answers[c] = answer
            elif accounts[c]["position"] <= p:
                raise Refused(f"balances of {c} at {p}: {status} {answer}")
        at_positions[str(p)] = answers
    expected = {"ledger": ledger, "export": f"{ledger}.ndjson",
                "head": {"position": head, "hash": checkpoint["head_hash"]}, "checkpoint": checkpoint,
                "verdict": {"chain_intact": True, "checkpoint_holds": True, "first_broken_position": None},
                "accounts": accounts, "at_positions": at_positions}
    if trading:
        expected["positions"] = {c: reader.ok("GET", f"/accounts/{c}/positions?{at}") for c in codes}
    if context and "through" in context:
        expected["trial_balances"] = [
            {"as_of": t, "known_at_position": k,
             "answer": reader.ok("GET", f"/reports/trial-balance?as_of={t}&known_at_position={k}&{at}")}
            for t, k in ((context["through"], context["first_close_position"] - 1),
                         (context["through"], head), (context["day"](0), head))]
    return expected


# Tampered copies: each made from the export's lines, its verdict from what was changed.

def find_value(text, start):
    """The end index of the JSON value starting at `start` in `text` (strings respected)."""
    depth, i, in_string = 0, start, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unterminated value")


def member_text(line, name):
    """The raw text of a top-level member of an exported line (its canonical form, docs/audit.md)."""
    start = line.index(f'"{name}":') + len(name) + 3
    return line[start:find_value(line, start)]


def rehash(lines, start, previous):
    """Lines from index `start` with every hash recomputed from `previous`, as the chain does."""
    out = list(lines[:start])
    for line in lines[start:]:
        e = json.loads(line)
        head = "\n".join([str(e["position"]), e["event_id"], e["type"], str(e["schema_version"]),
                          e["recorded_at"]]).encode("utf-8")
        data = DOMAIN + head + b"\n" + member_text(line, "payload").encode("utf-8") + b"\n" + \
            member_text(line, "metadata").encode("utf-8")
        previous = hashlib.sha256(previous + data).digest()
        out.append(re.sub(r'"hash":"[0-9a-f]{64}"', f'"hash":"{previous.hex()}"', line, count=1))
    return out


def bump_amount(line):
    """The line with its first posting's amount one unit of its last place higher."""
    match = re.search(r'"postings":\[\{[^\]]*?"amount":"([0-9.]+)"', line)
    old = decimal.Decimal(match.group(1))
    new = format(old + decimal.Decimal(1).scaleb(old.as_tuple().exponent), "f")
    return line[:match.start(1)] + new + line[match.end(1):], match.group(1), new


def respell(literal):
    """Python's json.dumps spelling of a number literal, when it differs from the literal."""
    value = float(literal) if re.search(r"[.eE]", literal) else int(literal)
    text = json.dumps(value)
    return text if text != literal else None


def metadata_number(lines):
    """(index, start, end, literal, respelled) of the first number in client metadata that a
    float round trip would respell."""
    for index, line in enumerate(lines):
        payload = member_text(line, "payload")
        base = line.index(payload)
        m = re.search(r'"metadata":\{', payload)
        if not m:
            continue
        meta_start = m.end() - 1
        meta = payload[meta_start:find_value(payload, meta_start)]
        for n in re.finditer(r'(?<=[:\[,])(-?[0-9][0-9.eE+\-]*)(?=[,\]\}])', meta):
            other = respell(n.group(1))
            if other:
                at = base + meta_start + n.start(1)
                return index, at, at + len(n.group(1)), n.group(1), other
    return None


def tamper(lines, checkpoint_position):
    """Every tampered copy that applies: (kind, lines, what, chain_intact, checkpoint_holds, broken)."""
    positions = [json.loads(l)["position"] for l in lines]
    money = [i for i, l in enumerate(lines) if '"postings":[{' in l]
    i = money[len(money) // 3]
    out = []
    changed, old, new = bump_amount(lines[i])
    what = f"position {positions[i]}: the first posting's amount \"{old}\" became \"{new}\""
    out.append(("changed-amount", lines[:i] + [changed] + lines[i + 1:], what, False, False, positions[i]))
    r = len(lines) // 2
    out.append(("removed-event", lines[:r] + lines[r + 1:], f"position {positions[r]} removed", False, False,
                positions[r]))
    s = len(lines) // 3
    out.append(("swapped-events", lines[:s] + [lines[s + 1], lines[s]] + lines[s + 2:],
                f"positions {positions[s]} and {positions[s + 1]} swapped", False, False, positions[s]))
    previous = bytes.fromhex(json.loads(lines[i - 1])["hash"]) if i else GENESIS
    recomputed = rehash(lines[:i] + [changed] + lines[i + 1:], i, previous)
    out.append(("recomputed-chain", recomputed, what + ", and every hash from there recomputed", True, False,
                checkpoint_position))
    found = metadata_number(lines)
    if found:
        index, start, end, literal, other = found
        line = lines[index][:start] + other + lines[index][end:]
        out.append(("changed-metadata-number", lines[:index] + [line] + lines[index + 1:],
                    f"position {positions[index]}: metadata number {literal} respelled {other}", False, False,
                    positions[index]))
    return out


def write_ledger(book, out_dir, ledger, context, trading):
    """Exports one ledger, reads its expected figures and writes its tampered copies."""
    reader = Book(book.server, book.set_name, ledger)
    checkpoint = reader.ok("GET", "/audit/checkpoint")
    head = checkpoint["position"]
    export = os.path.join(out_dir, f"{ledger}.ndjson")
    book.server.export(ledger, export)
    with open(export, encoding="utf-8") as f:
        lines = f.read().splitlines()
    last = json.loads(lines[-1])
    if (last["position"], last["hash"]) != (head, checkpoint["head_hash"]):
        raise RuntimeError(f"{ledger}: the export ends at {last['position']}, the checkpoint at {head}")
    # Two earlier positions where money had moved: a third and two thirds through the events
    # with postings (the first events of a set only define assets and open accounts).
    money = [json.loads(l)["position"] for l in lines if '"postings":[{' in l]
    earlier = (money[len(money) // 3], money[2 * len(money) // 3])
    expected = expected_of(book, ledger, head, checkpoint, context, trading, earlier)
    os.makedirs(os.path.join(out_dir, "tampered"), exist_ok=True)
    expected["tampered"] = []
    copies = tamper(lines, head)
    missing = [k for k in TAMPER_KINDS if k not in {c[0] for c in copies}]
    if missing:
        # Every set is built so that each kind applies (a metadata number a float respells).
        raise RuntimeError(f"{book.set_name}/{ledger}: no tampered copy of kind {', '.join(missing)}")
    for kind, tampered, what, intact, holds, broken in copies:
        name = f"tampered/{ledger}.{kind}.ndjson"
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write("\n".join(tampered) + "\n")
        expected["tampered"].append({"file": name, "kind": kind, "what": what, "chain_intact": intact,
                                     "checkpoint_holds": holds, "first_broken_position": broken})
    with open(os.path.join(out_dir, f"{ledger}.expected.json"), "w", encoding="utf-8") as f:
        f.write(dumps(expected, indent=1, sort_keys=True) + "\n")
    return {json.loads(l)["type"] for l in lines}


def make_set(binary, out, spec):
    log(f"== {spec['name']}: starting a ledger")
    started = time.monotonic()
    server = Server(binary, spec["name"])
    try:
        book = Book(server, spec["name"])
        context = spec["make"](book)
        set_dir = os.path.join(out, spec["name"])
        os.makedirs(set_dir, exist_ok=True)
        types = set()
        # Every write has been answered and every expiry observed: nothing more is appended, and
        # write_ledger checks that the export ends where the checkpoint does.
        for ledger in spec["ledgers"]:
            types |= write_ledger(book, set_dir, ledger, context, spec["name"] == "trading")
        if book.exchanges:
            with open(os.path.join(set_dir, "exchanges.json"), "w", encoding="utf-8") as f:
                f.write(dumps(book.exchanges, indent=1) + "\n")
    finally:
        server.stop()
    log(f"== {spec['name']}: {len(types)} event types, {time.monotonic() - started:.1f} s")
    return types


def event_types():
    """The variants of domain::event::Event, read from its source."""
    with open(os.path.join(ROOT, "domain", "src", "event.rs"), encoding="utf-8") as f:
        source = f.read()
    body = source[source.index("pub enum Event {"):]
    body = body[:body.index("}")]
    return set(re.findall(r"^\s+([A-Z][A-Za-z]+)\(", body, re.M))


QUESTIONS = {
    1: "numbers in metadata", 2: "version", 3: "per-balance position", 4: "limits in an account answer",
    5: "frozen accounts and holds", 6: "partial posts", 7: "bounds", 8: "expiry times", 9: "the events page",
    10: "recorded_at order", 11: "refused atomic batches"}
# Where a question's answer is in the files themselves, beside the exchanges that show it.
IN_FILES = {
    1: "`basics/default.ndjson` (alice's `AccountOpened`: `1e-6`, `1E+2`, `0.10`, `-0`, … as sent), "
       "`basics/tampered/default.changed-metadata-number.ndjson` (one respelled: the chain breaks)",
    2: "`version` of every account in every `expected.json`",
    3: "`position` of every balance in `accounts` and `at_positions` of every `expected.json`",
    4: "`limits` of `bob` (a zero minimum) and `carol` (a bound removed) in `basics/default.expected.json`",
    6: "the `PendingPosted` of `holds/default.ndjson` that posts two of three reserved postings",
    8: "`expires_at` of the holds in `holds/default.ndjson` (6, 0 and 3 fractional digits)",
    10: "the three events of the atomic batch in `basics/default.ndjson` share one `recorded_at`",
}
TAMPER_MEANING = {
    "changed-amount": "one posting's amount changed, hashes left alone: the chain breaks there",
    "removed-event": "one line removed: the chain breaks at the missing position",
    "swapped-events": "two adjacent lines swapped: the chain breaks at the lower position",
    "recomputed-chain": "an amount changed and every later hash recomputed: the chain alone is intact, "
                        "the signed checkpoint is not (broken at the checkpoint's position)",
    "changed-metadata-number": "a number in client metadata respelled as Python's json.dumps writes it: "
                               "the chain breaks there (numbers are hashed as written)",
}


def set_files(out, name):
    """The files of a set, relative to it, in order."""
    root = os.path.join(out, name)
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def question_lines(out, manifest):
    """One bullet per question: the files and exchanges that show its answer."""
    lines = []
    for q, title in QUESTIONS.items():
        shown = []
        if q in IN_FILES:
            shown.append(IN_FILES[q])
        for s in manifest["sets"]:
            path = os.path.join(out, s["name"], "exchanges.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    shown += [f"`{s['name']}/exchanges.json`: {x['shows']} ({x['status']})"
                              for x in json.load(f) if x["question"] == q]
        lines.append(f"{q}. **{title}**: " + "; ".join(shown))
    return lines


def write_readme(out, manifest):
    lines = ["# Test vectors", "",
             "Generated by `scripts/vectors.sh` (`tools/make_vectors.py`) from a real `ledger serve`: do not",
             "edit; run `scripts/vectors.sh` again. Each set is a fresh ledger driven over HTTP. For each ledger:",
             "", "- `<ledger>.ndjson`: `ledger export --ledger <ledger>`, byte for byte;",
             "- `<ledger>.expected.json`: the server's own answers, which a verifier must reproduce from the",
             "  export alone: `head`, a signed `checkpoint`, `verdict`, every account (`accounts`, as",
             "  `GET /v1/ledgers/{ledger}/accounts/{code}`), balances at two earlier positions (`at_positions`,",
             "  as `…/balances?at_position=P`), `positions` (trading), `trial_balances` (time), and `tampered`:",
             "  each tampered copy with the verdict it must get;",
             "- `tampered/<ledger>.<kind>.ndjson`: the tampered copies;",
             "- `exchanges.json`: requests and the server's answers that show a documented behaviour.",
             "", "Check them: `python3 tools/verify_export.py --vectors docs/vectors`.", "",
             "## Verdicts", "",
             "`chain_intact`: every line chains from the genesis hash. `checkpoint_holds`: the checkpoint's",
             "Ed25519 signature verifies with its public key over the message of docs/audit.md (\"Signed",
             "checkpoints\"), and the chain recomputed from the genesis hash, unbroken up to the checkpoint's",
             "position, has the hash `head_hash` there (a stored hash is never trusted). Each tampered copy is",
             "judged against its ledger's `checkpoint` in `expected.json`. `first_broken_position`: the position",
             "expected on the first line where the chain breaks, else the checkpoint's position when it does",
             "not hold, else null. The full rules: docs/verify.md.", ""] + [f"- `{k}`: {v}" for k, v in TAMPER_MEANING.items()] + [
             "", "## The eleven questions of issue 25", ""] + question_lines(out, manifest) + [""]
    for s in manifest["sets"]:
        questions = ", ".join(f"{q} ({QUESTIONS[q]})" for q in s["questions"]) or "none of the eleven"
        lines += [f"## {s['name']}", "", f"Ledgers: {', '.join(s['ledgers'])}. Questions: {questions}.", ""]
        lines += [f"- {x}" for x in s["shows"]] + ["", "Files: " + ", ".join(f"`{f}`" for f in set_files(out, s["name"])), ""]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger-bin", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", help="only these sets (for working on one)")
    args = parser.parse_args()
    chosen = [s for s in SETS if not args.set or s["name"] in args.set]
    if os.path.isdir(args.out):
        for s in chosen:
            shutil.rmtree(os.path.join(args.out, s["name"]), ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    seen = set()
    for spec in chosen:
        seen |= make_set(os.path.abspath(args.ledger_bin), args.out, spec)
    missing = event_types() - seen
    if missing and not args.set:
        log(f"the vectors lack event types: {', '.join(sorted(missing))}")
        return 1
    manifest = {"format": 1, "generated_by": "scripts/vectors.sh", "generated_at": utc(now()),
                "sets": [{k: s[k] for k in ("name", "ledgers", "shows", "questions")} for s in SETS]}
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    write_readme(args.out, manifest)
    log(f"vectors written to {args.out}: every event type of domain::event present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
