#!/usr/bin/env python3
"""Independent verifier of a ledger export.

Reads the NDJSON that `ledger export` writes, recomputes the hash chain from the genesis value as
docs/audit.md specifies it, and recomputes every balance figure (posted, pending debits, pending
credits, available) from the events as docs/events.md specifies them. Standard library only, and
no code shared with the server: it follows the documents, so where it disagrees with the server,
one of the two is wrong.

    python3 tools/verify_export.py export.ndjson [--prev-hash HEX] [--expect-head HEX]
    python3 tools/verify_export.py export.ndjson --as-of T [--known-at P]
    python3 tools/verify_export.py export.ndjson --lots
    python3 tools/verify_export.py export.ndjson --at-position P --checkpoint checkpoint.json
    python3 tools/verify_export.py --vectors docs/vectors
    python3 tools/verify_export.py --self-test

With --prev-hash (an export that starts after position 1) only the chain is checked: the figures
need every event from the first.

Accounting time (docs/events.md, "Effective time and closed periods"): every money event counts
in the books at its `effective_at`, else when it was recorded. Each `PeriodClosed` fixes the trial
balance as of its `through` as known at its `known_at_position`; this recomputes it from the
events and checks the close's `trial_balance_digest` (a mismatch is a problem naming the close's
position), and checks that no money event counts in a period while it is closed. With --as-of T
(RFC 3339) the report also holds `as_of`: every posted balance as of T (the entries that count at
or before T), as known at position P (the entries up to P; the whole export by default), with
its trial balance digest.

Trading (docs/events.md): a trade that settles later (`settlement_date`, `settles_at`) is a hold
that may settle in parts (`PendingPosted.remaining`: what stays reserved) or fail
(`PendingVoided.reason`); postings may state a `cost`; `BookingMethodSet` and `PriceMarked` change
no figure. With --lots the report also holds `lots`: per book (account, instrument, currency) its
open lots, closings and realized P&L, recomputed as docs/events.md ("Lots and realized P&L")
specifies, as known at the head; and the latest mark per instrument and currency. --self-test runs
this verifier's checks on events worked out by hand and on tools/testdata/trading_export.ndjson,
and exits with status 1 if one fails.

Accounts (docs/events.md, "The figures"): the report's `account_answers` holds every account as
`GET /v1/accounts/{code}` answers it: `id`, `code`, `allow_negative`, `metadata` (numbers as
written), `position` (its `AccountOpened`), `opened_at`, `status`, `version` (the position of the
last event that changed it), `balances` per asset (`balance`, `pending_debits`, `pending_credits`,
`available`, `trade_date_balance` = posted + pending credits − pending debits, and `position`: the
last event whose postings or released postings name the account in that asset) and `limits` per
asset set (as the event wrote them, at the asset's scale; a removed one `null`). With --at-position P, `at_position`:
every account's posted balances right after P as `…/balances?at_position=P` answers them, each
with the position of the last event that moved it.

Checkpoints (docs/audit.md, "Signed checkpoints"): with --checkpoint FILE (the JSON of
`GET /v1/audit/checkpoint`), `checkpoint` reports `signature_valid` (Ed25519, RFC 8032, verified
here in pure Python over `ledger:checkpoint:v2`, the ledger, the position, the head hash and the
head's recorded_at), `chain_intact` (the whole export chains), `checkpoint_holds` (the signature
is valid and the export's hash at the checkpoint's position is its `head_hash`) and
`first_broken_position` (where the chain breaks, else the checkpoint's position when it does not
hold, else null); exit status 1 when it does not hold.

Vectors (docs/vectors, made by scripts/vectors.sh): --vectors DIR verifies every ledger of every
set of DIR/manifest.json and compares everything its expected.json holds: the head, the verdict,
every account answer, the balances at two earlier positions, positions (recomputed from the lots
as --lots does, with each book's trade-date quantity, mark, market value and unrealized P&L), trial
balances as of a date (as --as-of does), and every tampered copy's verdict. One line per check on
stderr (`ok …` or `MISMATCH <set>/<ledger> <what> <field>: expected …, got …`), a JSON summary on
stdout, exit status 1 on any mismatch.

Payload and metadata are read with their numbers as the literals they are written with, and
hashed in the canonical form of docs/audit.md ("Canonical JSON"), never through a float: `1.50`,
`1e16` and `123456789012345678901` are hashed as those characters. A payload or metadata whose
text is not already canonical is a problem (no ledger writes one). An event of the known defect of
logs written before migration 0013 (docs/audit.md, "stored form differs from hashed form") is
listed under `stored_form_differs`, as the server lists it, and the chain goes on from its stored
hash.

Prints one JSON object: the head position and hash, the first broken position (if any), the
problems found, the events whose stored form differs from their hashed form, the figures per
account and asset, each account's status and limits, and every close with the digest of its
trial balance recomputed here (`closes`; `trial_balances_verified` when every one matches).
Exit status 1 when the chain breaks, a line is not an exported event in canonical form, an event
does not follow docs/events.md (a posting that does not fit its asset, a settlement that releases
other amounts than were reserved, a part of a trade whose released and remaining do not add up to
what it reserved, a trade whose fees are not its postings, a cost in the posting's own asset, a
booking method or a price not written as the document says, a second reversal, a close out of
order, an entry that counts in a closed period…), the figures of an asset do not
balance, or a close's digest is not that of its trial balance; not for an event whose stored form
differs from its hashed form.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import unittest
from decimal import Decimal, localcontext
from fractions import Fraction

GENESIS = hashlib.sha256(b"ledger:genesis:v1").digest()
DOMAIN = b"ledger:event:v1\n"
TRIAL_BALANCE_DOMAIN = b"ledger:trial-balance:v1\n"
TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                  r"([Zz]|[+-][0-9]{2}:[0-9]{2})")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# docs/events.md: the booking methods, how far a settlement date may be from its trade date, and
# the longest reason a failed settlement gives.
BOOKING_METHODS = ("fifo", "lifo", "hifo", "average", "specific")
SETTLEMENT_DAYS_MAX = 366
FAIL_REASON_BYTES_MAX = 1024
PRICE = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{0,17}[1-9])?")


def micros(text):
    """An RFC 3339 time as whole microseconds since 1970 in UTC, to compare times exactly. A finer
    fraction is cut: the ledger's times are whole microseconds, so `t <= T` is unchanged."""
    match = TIME.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    fraction = int(((match[7] or ".")[1:] + "000000")[:6])
    zone = match[8]
    offset = datetime.timedelta(0)
    if zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    local = datetime.datetime(year, month, day, hour, minute, second,
                              tzinfo=datetime.timezone(offset))
    return (local - EPOCH) // datetime.timedelta(microseconds=1) + fraction


def utc_date(us):
    """The date (UTC, `YYYY-MM-DD`) of a time given as microseconds since 1970."""
    return (EPOCH + datetime.timedelta(microseconds=us)).date().isoformat()


def is_price(text):
    """docs/events.md, "Values inside payloads": a decimal string above zero, without trailing
    zeros, up to 18 fractional digits."""
    return isinstance(text, str) and PRICE.fullmatch(text) is not None and Decimal(text) > 0


def rfc3339(us):
    """Microseconds since 1970 as RFC 3339 in UTC, with six fractional digits."""
    return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Num(str):
    """A JSON number, kept as the text it was written with (docs/audit.md, "Canonical JSON")."""


class NotCanonical(ValueError):
    """JSON that has no canonical form: a key twice in one object, NaN or Infinity."""


def unique_members(pairs):
    keys = set()
    for key, _ in pairs:
        if key in keys:
            raise NotCanonical(f"the key {key!r} appears twice in one object")
        keys.add(key)
    return dict(pairs)


def refuse_constant(name):
    raise NotCanonical(f"{name} is not a JSON number")


# Numbers as their literal, never through a float; duplicate keys and NaN/Infinity refused.
DECODER = json.JSONDecoder(
    parse_int=Num, parse_float=Num, parse_constant=refuse_constant, object_pairs_hook=unique_members
)
WHITESPACE = re.compile(r"[ \t\n\r]*")


def canonical(v, number=str):
    """docs/audit.md: keys sorted by code point (= UTF-8 byte order), no whitespace, minimal
    escapes, every other character as itself, numbers exactly as written (or, for the check of
    the known defect, as `number` writes each literal, in the order of the canonical text)."""
    if isinstance(v, Num):  # before str: a Num is a str
        return number(v)
    if isinstance(v, dict):
        return "{" + ",".join(canonical(k) + ":" + canonical(v[k], number) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical(x, number) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)  # str, True, False, None


def members_text(line):
    """The top-level members of the JSON object `line`, each as (key, value, the value's text as
    the line writes it)."""
    at = WHITESPACE.match(line, 0).end()
    if line[at:at + 1] != "{":
        raise ValueError("not a JSON object")
    at = WHITESPACE.match(line, at + 1).end()
    members = []
    if line[at:at + 1] == "}":
        return members
    while True:
        if line[at:at + 1] != '"':
            raise ValueError(f"a key expected at character {at}")
        key, at = json.decoder.scanstring(line, at + 1)
        at = WHITESPACE.match(line, at).end()
        if line[at:at + 1] != ":":
            raise ValueError(f"`:` expected at character {at}")
        start = WHITESPACE.match(line, at + 1).end()
        try:
            value, at = DECODER.scan_once(line, start)
        except StopIteration:
            raise ValueError(f"a value expected at character {start}") from None
        members.append((key, value, line[start:at]))
        at = WHITESPACE.match(line, at).end()
        if line[at:at + 1] == ",":
            at = WHITESPACE.match(line, at + 1).end()
        elif line[at:at + 1] == "}":
            break
        else:
            raise ValueError(f"`,` or `}}` expected at character {at}")
    if WHITESPACE.match(line, at + 1).end() != len(line):
        raise ValueError("text after the object")
    return members


def read_line(line):
    """An exported event, its numbers as written, and the problems of its form: a payload or
    metadata whose text is not canonical (docs/audit.md), which no ledger writes."""
    members = members_text(line)
    e = unique_members([(key, value) for key, value, _ in members])
    problems = []
    for key, value, text in members:
        if key in ("payload", "metadata") and canonical(value) != text:
            problems.append(f"its {key} is not in canonical form")
    for key in ("position", "schema_version"):
        if not (isinstance(e.get(key), Num) and e[key].isdigit()):
            raise ValueError(f"{key} is not a whole number")
    return e, problems


# docs/audit.md, "Logs written before migration 0013": the cause of an event whose stored form
# differs from its hashed form only in how numbers of equal value are written.
RESPELLED_CAUSE = "stored form differs from hashed form"
# Numbers that may have been respelled, per event, beyond which no explanation is tried (every
# subset of them is tried: 2^10 hashes at most).
RESPELLED_NUMBERS_MAX = 10


def old_writer_spelling(x):
    """How the writer before migration 0013 wrote the binary64 value `x`: the shortest decimal
    that reads back as `x` (Python's repr finds the same digits), laid out as docs/audit.md says."""
    negative = math.copysign(1.0, x) < 0
    if x == 0:
        return "-0.0" if negative else "0.0"
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    d = "".join(map(str, digit_tuple))
    n = len(d)
    k = n + exponent  # the value is 0.d1…dn × 10^k
    if n <= k <= 16:
        text = d + "0" * (k - n) + ".0"
    elif 0 < k < n and k <= 16:
        text = d[:k] + "." + d[k:]
    elif -5 < k <= 0:
        text = "0." + "0" * -k + d
    else:
        text = d[0] + ("." + d[1:] if n > 1 else "") + "e" + ("+" if k - 1 >= 0 else "-") + str(abs(k - 1))
    return ("-" if negative else "") + text


def same_value(a, b):
    """Whether two number literals are exactly the same decimal number (zeros of either sign
    are one), compared as decimals, never as floats."""
    try:
        return Decimal(a) == Decimal(b)
    except ArithmeticError:
        return False


def numeric_text(literal):
    """How PostgreSQL's jsonb printed a number it was given as `literal`: as numeric, in plain
    digits with as many decimals as the literal had after its point less its exponent (none if
    that is negative), and a zero without its sign (`1e+16` → `10000000000000000`, `1.5e-7` →
    `0.00000015`, `-0.0` → `0.0`, `1.0` → `1.0`)."""
    text = format(Decimal(literal), "f")
    return text[1:] if text.startswith("-") and Decimal(literal) == 0 else text


def old_spelling(stored):
    """The spelling the old writer hashed for a number stored as `stored`, when it differs and
    is of exactly the same value (a stored zero may have been a negative one), and jsonb would
    have printed that spelling as `stored`: the stored text is what jsonb made of the hashed text,
    so a spelling it would have printed otherwise (`12.0` for a stored `12`) cannot be the one
    hashed, and trying it would only multiply the subsets to try."""
    try:
        value = float(stored)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    old = old_writer_spelling(-0.0 if value == 0 else value)
    if old == stored or not same_value(old, stored) or numeric_text(old) != stored:
        return None
    return old


def explain_respelled(previous, e):
    """The cause, when the stored event hashes to its stored hash once some of its numbers are
    written as the old writer wrote the same values (docs/audit.md); None otherwise."""
    literals = []

    def collect(literal):
        literals.append(str(literal))
        return str(literal)

    canonical(e["payload"], collect)
    canonical(e["metadata"], collect)
    respellable = [(i, old) for i, old in ((i, old_spelling(s)) for i, s in enumerate(literals)) if old]
    if not respellable or len(respellable) > RESPELLED_NUMBERS_MAX:
        return None
    for subset in range(1, 1 << len(respellable)):
        spellings, changed = list(literals), []
        for bit, (i, old) in enumerate(respellable):
            if subset & (1 << bit):
                changed.append(f"stored {literals[i]}, hashed {old}")
                spellings[i] = old
        written = iter(spellings)
        payload = canonical(e["payload"], lambda _: next(written))
        metadata = canonical(e["metadata"], lambda _: next(written))
        if hashlib.sha256(previous + event_bytes(e, payload, metadata)).hexdigest() == e["hash"]:
            return (f"{RESPELLED_CAUSE}: numbers written differently, of equal value "
                    f"({'; '.join(changed)}), as the writer before migration 0013 hashed them")
    return None


def plain(v):
    """A payload for the figures: small whole numbers (a scale) as int; every other number stays
    its literal, which the figures never read (amounts are strings), so that no number a client
    may write in metadata (`1e99999999999999999999`, 4,000 digits) has to fit a Decimal or int."""
    if isinstance(v, Num):
        return int(v) if re.fullmatch(r"-?[0-9]{1,18}", v) else v
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def event_bytes(e, payload=None, metadata=None):
    """The canonical bytes of an event (docs/audit.md); `payload` and `metadata`, when given,
    are the canonical texts to use instead of the event's."""
    head = "\n".join(
        [str(e["position"]), e["event_id"], e["type"], str(e["schema_version"]), e["recorded_at"]]
    )
    return (
        DOMAIN
        + head.encode("utf-8")
        + b"\n"
        + (canonical(e["payload"]) if payload is None else payload).encode("utf-8")
        + b"\n"
        + (canonical(e["metadata"]) if metadata is None else metadata).encode("utf-8")
    )


class Ledger:
    """What docs/events.md says the events do: figures per (account, asset), holds, reversals,
    account statuses and limits."""

    def __init__(self):
        self.scales = {}
        self.accounts = {}  # code -> {"status", "allow_negative", "limits": {asset: {...}}}
        # (account, asset) -> [posted, pending_debits, pending_credits]
        self.figures = {}
        self.holds = {}  # pending transaction id -> the postings it reserves now
        # pending transaction id -> {"trade": whether a trade's, "settles_at": a trade's, or None}
        self.hold_kinds = {}
        self.settled = set()
        self.transactions = set()  # ids of TransactionPosted and TradeExecuted
        self.reversed = set()
        self.problems = []
        # Accounting time: every move as (position, effective time in µs, account, asset, change),
        # the closes in log order, the periods closed now (oldest first) and the closes made.
        self.moves = []
        self.effective = None
        self.recorded = None
        self.closes = []
        self.closed = []
        # What an account answer shows beyond the figures (docs/events.md, "The figures"): each
        # account's version, each balance's position, and every figure change as (position,
        # account, asset, change of the posted balance) for balances at a past position.
        self.versions = {}
        self.balance_positions = {}
        self.changes = []

    def problem(self, position, text):
        self.problems.append(f"position {position}: {text}")

    def apply(self, position, recorded_at, kind, payload):
        handler = getattr(self, "on_" + kind, None)
        if handler is None:
            self.problem(position, f"unknown event type {kind}")
            return
        # docs/events.md: a money event counts at its effective_at, else when it was recorded.
        try:
            self.effective = micros(payload.get("effective_at") or recorded_at)
        except (ValueError, AttributeError, TypeError) as error:
            self.problem(position, f"effective_at: {error}")
            self.effective = micros(recorded_at)
        self.recorded = micros(recorded_at)
        moved_before = len(self.moves)
        handler(position, payload)
        if len(self.moves) > moved_before and self.closed and self.effective <= self.closed[-1]["through_us"]:
            close = self.closed[-1]
            self.problem(position, f"counts at {rfc3339(self.effective)} in period {close['period']}, "
                                   f"closed through {close['through']}")

    # Assets and accounts.
    def on_AssetDefined(self, position, p):
        self.scales[p["asset"]] = p["scale"]

    def on_AccountOpened(self, position, p):
        method = p.get("booking_method", "fifo")
        if method not in BOOKING_METHODS:
            self.problem(position, f"booking_method {method!r} is not one of {', '.join(BOOKING_METHODS)}")
        self.accounts[p["code"]] = {"status": "open", "allow_negative": p["allow_negative"], "limits": {},
                                    "booking_method": method, "id": p["account_id"], "position": position,
                                    "metadata": p["metadata"], "opened_at": rfc3339(self.recorded)}
        self.versions[p["code"]] = position

    def on_BookingMethodSet(self, position, p):
        account = self.account(position, p["account"])
        if account["status"] == "closed":
            self.problem(position, f"sets the booking method of {p['account']}, which is closed")
        if p["booking_method"] not in BOOKING_METHODS:
            self.problem(position, f"booking_method {p['booking_method']!r} is not one of {', '.join(BOOKING_METHODS)}")
        account["booking_method"] = p["booking_method"]
        self.versions[p["account"]] = position

    def on_PriceMarked(self, position, p):
        """docs/events.md, `PriceMarked`: moves nothing; its assets, price and time are checked."""
        if p["instrument"] not in self.scales or p["currency"] not in self.scales:
            self.problem(position, f"marks {p['instrument']} in {p['currency']}: an asset not defined")
        if p["instrument"] == p["currency"]:
            self.problem(position, "marks an asset in itself")
        if not is_price(p["price"]):
            self.problem(position, f"price {p['price']!r} is not a decimal above zero without trailing zeros")
        try:
            if micros(p["as_of"]) > self.recorded:
                self.problem(position, f"as_of {p['as_of']} is later than the mark was recorded")
        except (ValueError, TypeError) as error:
            self.problem(position, f"as_of: {error}")

    def on_AccountStatusChanged(self, position, p):
        self.account(position, p["account"])["status"] = p["status"]
        self.versions[p["account"]] = position

    def on_AccountLimitsSet(self, position, p):
        self.account(position, p["account"])["limits"][p["asset"]] = {
            "min_balance": p["min_balance"], "max_balance": p["max_balance"]}
        self.versions[p["account"]] = position

    # Money.
    def on_TransactionPosted(self, position, p):
        for posting in p["postings"]:
            if "cost" not in posting:
                continue
            if p.get("pending") or p.get("reverses") is not None:
                self.problem(position, "a posting of a hold or a reversal states a cost")
            self.check_cost(position, posting)
        self.record(position, p["transaction_id"], p)
        original = p.get("reverses")
        if original is not None:
            if original not in self.transactions or original in self.reversed:
                self.problem(position, f"reverses {original}, which is unknown or reversed already")
            self.reversed.add(original)

    def on_TradeExecuted(self, position, p):
        fees = [{"source": f["payer"], "destination": f["account"], "asset": f["asset"],
                 "amount": f["amount"]} for f in p["fees"]]
        if p["postings"][2:] != fees:
            self.problem(position, "the trade's fees are not its postings after the first two")
        if any("cost" in posting for posting in p["postings"]):
            self.problem(position, "a trade's posting states a cost")
        if any((f["asset"], f["payer"], f["account"]) == (p["instrument"], p["seller"], p["buyer"])
               for f in p["fees"]):
            self.problem(position, "a fee moves the instrument from the seller to the buyer")
        if "lots" in p and sum((Decimal(pick["quantity"]) for pick in p["lots"]), Decimal(0)) != Decimal(p["quantity"]):
            self.problem(position, "the named lots do not add up to the quantity")
        self.check_settlement_date(position, p)
        self.record(position, p["trade_id"], p)
        if p.get("pending", False):
            self.hold_kinds[p["trade_id"]] = {"trade": True, "settles_at": p.get("settles_at")}

    def check_settlement_date(self, position, p):
        """docs/events.md, "Trades that settle later": a settlement date on or after the trade
        date, at most 366 days after it; `settles_at`, that date at the settlement time, ahead of
        the recording, on a trade booked pending that does not expire."""
        date, settles_at = p.get("settlement_date"), p.get("settles_at")
        if date is None:
            if settles_at is not None:
                self.problem(position, "settles_at without a settlement_date")
            return
        trade_date = utc_date(self.effective)
        try:
            settlement = datetime.date.fromisoformat(date)
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", date):
                raise ValueError("not YYYY-MM-DD")
        except (ValueError, TypeError) as error:
            self.problem(position, f"settlement_date {date!r}: {error}")
            return
        if not 0 <= (settlement - datetime.date.fromisoformat(trade_date)).days <= SETTLEMENT_DAYS_MAX:
            self.problem(position, f"settlement_date {date} is before the trade date {trade_date} "
                                   f"or more than {SETTLEMENT_DAYS_MAX} days after it")
        if settles_at is None:
            if p.get("pending", False):
                self.problem(position, "a trade with a settlement_date and no settles_at is pending")
            return
        try:
            due = micros(settles_at)
        except (ValueError, TypeError) as error:
            self.problem(position, f"settles_at: {error}")
            return
        if not p.get("pending", False) or "expires_at" in p:
            self.problem(position, "a trade with settles_at is not pending, or it expires")
        if utc_date(due) != date or date <= trade_date or due <= self.recorded:
            self.problem(position, f"settles_at {settles_at} is not its settlement date {date}, after the "
                                   f"trade date {trade_date}, ahead of its recording")

    def on_PendingPosted(self, position, p):
        if p.get("remaining"):
            self.settle_part(position, p)
            return
        reserved = self.settle(position, p)
        if not moves_within(p["postings"], reserved):
            self.problem(position, "the post moves more than was reserved, or other postings")
        for posting in p["postings"]:
            self.step(position, posting, move=1)

    def settle_part(self, position, p):
        """A part of a trade that settles later (docs/events.md, `PendingPosted`): `released` is
        what it posts (= `postings`), and the hold reserves `remaining` from now on; per source,
        destination and asset, released + remaining is what the hold reserved before."""
        pending_id = p["pending_id"]
        reserved = self.holds.get(pending_id)
        if reserved is None:
            self.problem(position, f"settles a part of {pending_id}, which is not an open hold")
            reserved = []
        elif not self.hold_kinds.get(pending_id, {}).get("settles_at"):
            self.problem(position, f"settles a part of {pending_id}, which is not a trade that settles later")
        if p["postings"] != p["released"]:
            self.problem(position, "a partial settlement's released are not its postings")
        if sums_by_route(p["released"] + p["remaining"]) != sums_by_route(reserved):
            self.problem(position, f"released and remaining do not add up to what {pending_id} reserved")
        if not moves_within(p["postings"], reserved) or not moves_within(p["remaining"], reserved):
            self.problem(position, "the part moves or keeps other postings than were reserved")
        for posting in p["remaining"]:
            self.check_posting(position, posting)
        self.holds[pending_id] = p["remaining"]
        for posting in p["released"]:
            self.step(position, posting, reserve=-1)
        for posting in p["postings"]:
            self.step(position, posting, move=1)

    def on_PendingVoided(self, position, p):
        if "reason" in p:
            reason = p["reason"]
            if not self.hold_kinds.get(p["pending_id"], {}).get("trade"):
                self.problem(position, f"a failed settlement of {p['pending_id']}, which is not a trade's hold")
            if not isinstance(reason, str) or not reason.strip() or len(reason.encode("utf-8")) > FAIL_REASON_BYTES_MAX:
                self.problem(position, f"a failed settlement's reason is not 1 to {FAIL_REASON_BYTES_MAX} bytes")
        self.settle(position, p)

    def on_PendingExpired(self, position, p):
        if self.hold_kinds.get(p["pending_id"], {}).get("settles_at"):
            self.problem(position, f"expires {p['pending_id']}, a trade that settles later (it never expires)")
        self.settle(position, p)

    # Closed periods.
    def on_PeriodClosed(self, position, p):
        through, known_at = micros(p["through"]), p["known_at_position"]
        if p["period"] != len(self.closes) + 1:
            self.problem(position, f"period {p['period']} closed, but {len(self.closes)} closes came before")
        if self.closed and through <= self.closed[-1]["through_us"]:
            self.problem(position, f"closes through {p['through']}, not after the last closed period")
        if not isinstance(known_at, int) or not 0 <= known_at < position:
            self.problem(position, f"known_at_position {known_at} is not before the close")
            known_at = position - 1
        # The writer accepts a close only if nothing recorded since known_at counts in the period.
        for at, effective, *_ in reversed(self.moves):
            if at <= known_at:
                break
            if effective <= through:
                self.problem(at, f"counts at {rfc3339(effective)} in period {p['period']}, closed "
                                 f"at position {position} through {p['through']} as known at {known_at}")
        close = {"position": position, "period": p["period"], "through": p["through"], "through_us": through,
                 "known_at_position": known_at, "trial_balance_digest": p["trial_balance_digest"],
                 "reopened": False}
        self.closes.append(close)
        self.closed.append(close)

    def on_PeriodReopened(self, position, p):
        if not self.closed or self.closed[-1]["period"] != p["period"]:
            self.problem(position, f"reopens period {p['period']}, which is not the latest closed")
            return
        self.closed.pop()["reopened"] = True

    def record(self, position, transaction_id, p):
        """A transaction or trade: it moves its postings, or reserves them when pending."""
        if transaction_id in self.transactions:
            self.problem(position, f"transaction {transaction_id} recorded twice")
        self.transactions.add(transaction_id)
        pending = p.get("pending", False)
        if pending:
            self.holds[transaction_id] = p["postings"]
            self.hold_kinds[transaction_id] = {"trade": False, "settles_at": None}
        for posting in p["postings"]:
            self.step(position, posting, reserve=1 if pending else 0, move=0 if pending else 1)

    def settle(self, position, p):
        """Ends the hold `pending_id`: its reservations, listed again as `released`, are released
        (after parts of a trade settled, what the latest part left reserved)."""
        pending_id = p["pending_id"]
        reserved = self.holds.pop(pending_id, None)
        if reserved is None:
            self.problem(position, f"settles {pending_id}, which is not an open hold")
        elif p["released"] != reserved:
            self.problem(position, f"releases other postings than {pending_id} reserved")
        self.settled.add(pending_id)
        for posting in p["released"]:
            self.step(position, posting, reserve=-1)
        return reserved or []

    def step(self, position, posting, move=0, reserve=0):
        """Moves (source's posted −, destination's posted +) or reserves (source's pending debits,
        destination's pending credits; negative: releases) one posting's amount."""
        asset, amount = posting["asset"], Decimal(posting["amount"])
        self.check_posting(position, posting)
        source = self.figures.setdefault((posting["source"], asset), [Decimal(0)] * 3)
        destination = self.figures.setdefault((posting["destination"], asset), [Decimal(0)] * 3)
        source[0] -= move * amount
        destination[0] += move * amount
        if move:
            self.moves.append((position, self.effective, posting["source"], asset, -amount))
            self.moves.append((position, self.effective, posting["destination"], asset, amount))
        source[1] += reserve * amount
        destination[2] += reserve * amount
        # docs/events.md: a posting or released posting changes both accounts' version and the
        # position of their balance in its asset, whatever its effect.
        for account, sign in ((posting["source"], -1), (posting["destination"], 1)):
            self.versions[account] = position
            self.balance_positions[(account, asset)] = position
            if move:
                self.changes.append((position, account, asset, sign * amount))

    def check_posting(self, position, posting):
        """Two different accounts, both opened, and an amount above zero at its asset's scale."""
        if not self.fits(posting["asset"], posting["amount"]):
            self.problem(position, f"posting {posting} does not fit {posting['asset']}")
        if posting["source"] == posting["destination"]:
            self.problem(position, f"posting {posting} has one account on both sides")
        for account in (posting["source"], posting["destination"]):
            self.account(position, account)

    def check_cost(self, position, posting):
        """docs/events.md, "Values inside payloads": a cost is an amount above zero at the scale of
        its currency, a defined asset other than the posting's."""
        cost = posting["cost"]
        if not isinstance(cost, dict) or set(cost) != {"amount", "currency"}:
            self.problem(position, f"cost {cost} is not {{amount, currency}}")
            return
        if cost["currency"] == posting["asset"] or not self.fits(cost["currency"], cost["amount"]):
            self.problem(position, f"cost {cost} does not fit {cost['currency']}, or is in the posting's own asset")

    def fits(self, asset, text):
        """Whether `text` is an amount above zero written at `asset`'s scale."""
        try:
            amount = Decimal(text)
        except (ArithmeticError, TypeError, ValueError):
            return False
        return (asset in self.scales and amount > 0 and amount.is_finite()
                and -amount.as_tuple().exponent == self.scales[asset])

    def account(self, position, code):
        if code not in self.accounts:
            self.problem(position, f"account {code} was never opened")
            self.accounts[code] = {"status": "open", "allow_negative": False, "limits": {}}
        return self.accounts[code]

    def check_totals(self):
        """Per asset: posted balances sum to zero, pending debits equal pending credits, and no
        reservation is negative."""
        totals = {}
        for (account, asset), (posted, debits, credits) in self.figures.items():
            total = totals.setdefault(asset, [Decimal(0)] * 3)
            for i, value in enumerate((posted, debits, credits)):
                total[i] += value
            if debits < 0 or credits < 0:
                self.problems.append(f"{account} {asset}: a reservation below zero")
        for asset, (posted, debits, credits) in sorted(totals.items()):
            if posted != 0:
                self.problems.append(f"balances of {asset} sum to {posted}, not zero")
            if debits != credits:
                self.problems.append(f"pending debits of {asset} ({debits}) differ from its pending credits ({credits})")

    def trial_balance(self, as_of, known_at):
        """Every posted balance as of `as_of` (µs) as known at position `known_at`, where it is not
        zero, as [(account, asset, balance at the asset's scale)] in the order of the digest:
        account code, then asset code, bytewise."""
        sums = {}
        for position, effective, account, asset, change in self.moves:
            if position <= known_at and effective <= as_of:
                sums[(account, asset)] = sums.get((account, asset), Decimal(0)) + change
        rows = [(account, asset, self.at_scale(asset, balance))
                for (account, asset), balance in sums.items() if balance != 0]
        return sorted(rows, key=lambda r: (r[0].encode("utf-8"), r[1].encode("utf-8")))

    def at_scale(self, asset, amount):
        """`amount` in plain digits at the asset's scale (`-12.50`, `0.0000001`, `10`)."""
        return format(amount.quantize(Decimal(1).scaleb(-self.scales.get(asset, 0))), "f")

    def check_closes(self):
        """Each close's trial balance recomputed, and its digest checked."""
        report = []
        for close in self.closes:
            rows = self.trial_balance(close["through_us"], close["known_at_position"])
            digest = trial_balance_digest(rows)
            matches = digest == close["trial_balance_digest"]
            if not matches:
                self.problem(close["position"], f"period {close['period']}: the trial balance as of "
                                                f"{close['through']} as known at position {close['known_at_position']} "
                                                f"has digest {digest}, the close recorded {close['trial_balance_digest']}")
            report.append({k: close[k] for k in ("position", "period", "through", "known_at_position",
                                                 "trial_balance_digest", "reopened")}
                          | {"recomputed_digest": digest, "matches": matches})
        return report

    def report_as_of(self, as_of, known_at):
        rows = self.trial_balance(as_of, known_at)
        totals = {}
        for _, asset, balance in rows:
            totals[asset] = totals.get(asset, Decimal(0)) + Decimal(balance)
        return {"as_of": rfc3339(as_of), "known_at_position": known_at,
                "balances": {f"{account} {asset}": balance for account, asset, balance in rows},
                "totals": {asset: self.at_scale(asset, total) for asset, total in sorted(totals.items())},
                "trial_balance_digest": trial_balance_digest(rows)}

    def shown(self, asset, amount):
        quantum = Decimal(1).scaleb(-self.scales.get(asset, 0))
        return format((amount + 0).quantize(quantum), "f")  # + 0: never "-0"; "f": never "0E-10"

    def report_figures(self):
        return {
            f"{account} {asset}": {
                "posted": self.shown(asset, posted),
                "pending_debits": self.shown(asset, debits),
                "pending_credits": self.shown(asset, credits),
                "available": self.shown(asset, posted - debits),
            }
            for (account, asset), (posted, debits, credits) in sorted(self.figures.items())
        }

    # The account answer (GET /v1/accounts/{code}) and balances at a position, recomputed.
    def account_answers(self):
        """Every account as `GET /v1/accounts/{code}` answers it, by code."""
        balances = {}
        for (code, asset), (posted, debits, credits) in sorted(self.figures.items()):
            balances.setdefault(code, []).append({
                "asset": asset, "balance": self.shown(asset, posted),
                "pending_debits": self.shown(asset, debits), "pending_credits": self.shown(asset, credits),
                "available": self.shown(asset, posted - debits),
                "trade_date_balance": self.shown(asset, posted + credits - debits),
                "position": self.balance_positions[(code, asset)]})
        return {code: {
            "id": a.get("id"), "code": code, "allow_negative": a["allow_negative"],
            "metadata": a.get("metadata", {}), "position": a.get("position"), "opened_at": a.get("opened_at"),
            "status": a["status"], "version": self.versions.get(code),
            "balances": balances.get(code, []),
            "limits": [{"asset": asset, "min_balance": bounds["min_balance"],
                        "max_balance": bounds["max_balance"]}
                       for asset, bounds in sorted(a["limits"].items())],
        } for code, a in sorted(self.accounts.items())}

    def balances_at(self, at_position):
        """Every account as `GET …/accounts/{code}/balances?at_position=` answers it: the posted
        balances right after that position, each with the position of the last event that moved
        it (docs/api.md: pending figures are not kept per position). The server answers this for
        an account opened after the position too, with no balances."""
        posted, last = {}, {}
        for position, account, asset, change in self.changes:
            if position > at_position:
                break
            posted[(account, asset)] = posted.get((account, asset), Decimal(0)) + change
            last[(account, asset)] = position
        answers = {}
        for code, a in sorted(self.accounts.items()):
            answers[code] = {
                "account": code, "account_id": a.get("id"), "as_of_position": at_position, "at": None,
                "as_of": None, "known_at_position": None,
                "balances": [{"asset": asset, "balance": self.shown(asset, posted[(account, asset)]),
                              "position": last[(account, asset)]}
                             for account, asset in sorted(posted) if account == code]}
        return answers

    def trial_balance_answer(self, as_of, known_at):
        """`GET …/reports/trial-balance?as_of=&known_at_position=`, recomputed."""
        rows = self.trial_balance(as_of, known_at)
        totals = {}
        for _, asset, balance in rows:
            totals[asset] = totals.get(asset, Decimal(0)) + Decimal(balance)
        return {"as_of": rfc3339(as_of), "known_at_position": known_at, "digest": trial_balance_digest(rows),
                "rows": [{"account": account, "asset": asset, "balance": balance} for account, asset, balance in rows],
                "totals": [{"asset": asset, "total": self.at_scale(asset, total)} for asset, total in sorted(totals.items())]}


def trial_balance_digest(rows):
    """docs/events.md, "The trial balance": SHA-256 over `ledger:trial-balance:v1\\n`, then
    `{account}\\t{asset}\\t{balance}\\n` per row, in lower-case hex."""
    lines = "".join(f"{account}\t{asset}\t{balance}\n" for account, asset, balance in rows)
    return hashlib.sha256(TRIAL_BALANCE_DOMAIN + lines.encode("utf-8")).hexdigest()


# Ed25519 verification (RFC 8032, section 5.1.7), written from the RFC's description.
ED_P = 2 ** 255 - 19
ED_L = 2 ** 252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)  # a square root of -1 mod p


def ed_add(P, Q):
    """The sum of two points in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
    (RFC 8032, 5.1.4)."""
    x1, y1, z1, t1 = P
    x2, y2, z2, t2 = Q
    a = (y1 - x1) * (y2 - x2) % ED_P
    b = (y1 + x1) * (y2 + x2) % ED_P
    c = 2 * t1 * t2 * ED_D % ED_P
    d = 2 * z1 * z2 % ED_P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % ED_P, g * h % ED_P, f * g % ED_P, e * h % ED_P)


def ed_multiply(scalar, P):
    """scalar × P by double and add (verification handles no secret: timing does not matter)."""
    result = (0, 1, 1, 0)  # the neutral element
    while scalar:
        if scalar & 1:
            result = ed_add(result, P)
        P = ed_add(P, P)
        scalar >>= 1
    return result


def ed_equal(P, Q):
    """Whether two points in projective form are the same point: x1/z1 = x2/z2, y1/z1 = y2/z2."""
    return (P[0] * Q[2] - Q[0] * P[2]) % ED_P == 0 and (P[1] * Q[2] - Q[1] * P[2]) % ED_P == 0


def ed_decode(data):
    """The point a 32-byte encoding names (RFC 8032, 5.1.3), or None when it names none."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= ED_P:
        return None
    u, v = (y * y - 1) % ED_P, (ED_D * y * y + 1) % ED_P
    # x = u v^3 (u v^7)^((p-5)/8), then fixed up by sqrt(-1) when v x^2 = -u.
    x = u * pow(v, 3, ED_P) * pow(u * pow(v, 7, ED_P), (ED_P - 5) // 8, ED_P) % ED_P
    if (v * x * x - u) % ED_P != 0:
        if (v * x * x + u) % ED_P != 0:
            return None
        x = x * ED_SQRT_M1 % ED_P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = ED_P - x
    return (x, y, 1, x * y % ED_P)


# The base point B: y = 4/5, x positive (even).
ED_B = ed_decode((4 * pow(5, ED_P - 2, ED_P) % ED_P).to_bytes(32, "little"))


def ed25519_verify(public_key, message, signature):
    """Whether `signature` (64 bytes) is an Ed25519 signature of `message` by `public_key` (32
    bytes): [8][S]B = [8]R + [8][k]A with k = SHA-512(R || A || M) mod L (RFC 8032, 5.1.7)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    A, R = ed_decode(public_key), ed_decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if A is None or R is None or s >= ED_L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % ED_L
    left = ed_multiply(8 * s, ED_B)
    right = ed_multiply(8, ed_add(R, ed_multiply(k, A)))
    return ed_equal(left, right)


def sums_by_route(postings):
    """Amounts per (source, destination, asset)."""
    sums = {}
    for p in postings:
        key = (p["source"], p["destination"], p["asset"])
        sums[key] = sums.get(key, Decimal(0)) + Decimal(p["amount"])
    return sums


def moves_within(moved, reserved):
    """Whether `moved` is `reserved` in order, each amount from zero up to the one reserved, with
    the postings of zero left out."""
    remaining = iter(reserved)
    for posting in moved:
        for candidate in remaining:
            same = all(posting[k] == candidate[k] for k in ("source", "destination", "asset"))
            if same and Decimal(posting["amount"]) <= Decimal(candidate["amount"]):
                break
        else:
            return False
    return True


# Lots and realized P&L (docs/events.md, "Lots and realized P&L"): a function of the events alone.

def share(whole, part, of, scale):
    """`whole × part ÷ of`, computed exactly and rounded half to even at `scale` decimal places;
    `whole` itself when `part` is `of` or `of` is zero."""
    if part == of or of == 0:
        return whole
    exact = Fraction(whole) * Fraction(part) / Fraction(of) * 10 ** scale
    units, rest = divmod(exact.numerator, exact.denominator)  # floor, and what is above it
    if 2 * rest > exact.denominator or (2 * rest == exact.denominator and units % 2 == 1):
        units += 1
    return Decimal(f"{units}E-{scale}")  # exact, whatever the context's precision


def split(whole, parts, of, scale):
    """`whole` split by `parts` (which add up to `of`): each part's `share`, the last taking what
    is left, so that the amounts add up to `whole` exactly."""
    amounts, left = [], whole
    for index, part in enumerate(parts):
        amount = left if index == len(parts) - 1 else share(whole, part, of, scale)
        left -= amount
        amounts.append(amount)
    return amounts


def side(quantity):
    """1 or −1: the side of a quantity."""
    return Decimal(-1) if quantity < 0 else Decimal(1)


class Book:
    """One account's lots of one instrument in one currency (docs/events.md, "Applying a
    movement"): open lots in the order of their (trade date, position), all of one sign."""

    def __init__(self, scale):
        self.scale = scale
        self.lots = []  # {"lot_id", "transaction_id", "position", "date", "quantity", "amount"}
        self.closings = []

    def quantity(self):
        return sum((lot["quantity"] for lot in self.lots), Decimal(0))

    def amount(self):
        return sum((lot["amount"] for lot in self.lots), Decimal(0))

    def apply(self, m, method):
        """Applies movement `m` by `method`: the lots it closes (added to `closings`, and
        returned), then what is left of it opens a lot."""
        against = bool(self.lots) and (self.lots[0]["quantity"] > 0) != (m["quantity"] > 0)
        quantity = abs(m["quantity"])
        picks = self.picks(quantity, method, m.get("picks", [])) if against else []
        taken = sum((take for _, take in picks), Decimal(0))
        lot_amounts = self.lot_amounts(picks, taken, method)
        left = quantity - taken
        parts = [take for _, take in picks] + ([left] if left != 0 else [])
        movement_amounts = split(m["amount"], parts, quantity, self.scale)
        closed = []
        for (index, take), lot_amount, part_amount in zip(picks, lot_amounts, movement_amounts):
            lot = self.lots[index]
            cost, proceeds = ((lot_amount, part_amount) if lot["quantity"] > 0
                              else (part_amount, lot_amount))
            closed.append({
                "lot_id": lot["lot_id"], "opened": lot["date"], "closed": m["date"], "quantity": take,
                "cost": cost, "proceeds": proceeds, "realized": proceeds - cost,
                "holding_days": (datetime.date.fromisoformat(m["date"])
                                 - datetime.date.fromisoformat(lot["date"])).days,
                "transaction_id": m["transaction_id"], "position": m["position"],
            })
            lot["quantity"] -= take * side(lot["quantity"])
            lot["amount"] -= lot_amount
        if method == "average" and picks:
            self.restate_at_average()
        self.lots = [lot for lot in self.lots if lot["quantity"] != 0]
        if left != 0:
            self.open(m, left * side(m["quantity"]), movement_amounts[-1])
        self.closings.extend(closed)
        return closed

    def picks(self, quantity, method, named):
        """Which lots a closing of `quantity` units takes, and how much of each: [(index, take)].
        Under `specific`, the named lots first (each up to its named quantity), then the rest in
        the order kept."""
        order = list(range(len(self.lots)))
        taken = {}  # index -> take, in the order first taken
        left = quantity
        if method == "specific":
            for pick in named:
                index = next((i for i, lot in enumerate(self.lots) if lot["lot_id"] == pick["lot_id"]), None)
                if index is None:
                    continue
                take = min(abs(self.lots[index]["quantity"]) - taken.get(index, Decimal(0)),
                           Decimal(pick["quantity"]), left)
                if take > 0:
                    taken[index] = taken.get(index, Decimal(0)) + take
                    left -= take
        if method == "lifo":
            order.reverse()
        elif method == "hifo":
            # Long lots: the highest unit cost first; short lots, in mirror: the lowest unit
            # proceeds first. Equal ones in the order kept: exact, as fractions.
            short = self.quantity() < 0
            unit = lambda i: Fraction(self.lots[i]["amount"]) / abs(Fraction(self.lots[i]["quantity"]))  # noqa: E731
            order.sort(key=lambda i: (unit(i) if short else -unit(i), i))
        for index in order:
            if left == 0:
                break
            take = min(abs(self.lots[index]["quantity"]) - taken.get(index, Decimal(0)), left)
            if take > 0:
                taken[index] = taken.get(index, Decimal(0)) + take
                left -= take
        return list(taken.items())

    def lot_amounts(self, picks, taken, method):
        """What each pick takes from its lot's amount: its share of the lot, or under `average`
        its share of the book's amount × taken ÷ the book's size."""
        if method == "average":
            total = share(self.amount(), taken, abs(self.quantity()), self.scale)
            return split(total, [take for _, take in picks], taken, self.scale)
        return [share(self.lots[i]["amount"], take, abs(self.lots[i]["quantity"]), self.scale)
                for i, take in picks]

    def restate_at_average(self):
        """Under `average`, after a closing: the lots share the book's amount by size."""
        sizes = [abs(lot["quantity"]) for lot in self.lots]
        for lot, amount in zip(self.lots, split(self.amount(), sizes, sum(sizes, Decimal(0)), self.scale)):
            lot["amount"] = amount

    def open(self, m, quantity, amount):
        lot = {"lot_id": m["lot_id"], "transaction_id": m["transaction_id"], "position": m["position"],
               "date": m["date"], "quantity": quantity, "amount": amount}
        at = 0
        while at < len(self.lots) and (self.lots[at]["date"], self.lots[at]["position"]) <= (m["date"], m["position"]):
            at += 1
        self.lots.insert(at, lot)


def lot_movements(events, scales=None):
    """The movements of a log, as docs/events.md ("Movements", "Which movements count") makes
    them from `events`, [(position, recorded_at, type, payload)] in position order, the payloads
    decoded (amounts as strings): [(book key (account, instrument, currency), movement)] in no
    particular order, each movement {"lot_id", "transaction_id", "position", "index", "date",
    "quantity", "amount"}; and the problems met."""
    problems = []
    made = {}  # transaction or trade id -> its movements
    trades = {}  # pending trade id -> what a revision needs
    reversed_ids = set()
    for position, recorded_at, kind, p in events:
        if kind == "TradeExecuted" or (kind == "TransactionPosted" and not p.get("pending")
                                       and p.get("reverses") is None):
            try:
                date = utc_date(micros(p.get("effective_at") or recorded_at))
            except (ValueError, TypeError) as error:
                problems.append(f"position {position}: effective_at: {error}")
                continue
        if kind == "TradeExecuted":
            def fees_of(payer):
                return sum((Decimal(f["amount"]) for f in p["fees"]
                            if f["payer"] == payer and f["asset"] == p["currency"]), Decimal(0))
            notional, quantity = Decimal(p["notional"]), Decimal(p["quantity"])
            movement = {"lot_id": f"{p['trade_id']}/0", "transaction_id": p["trade_id"], "position": position,
                        "index": 0, "date": date}
            made[p["trade_id"]] = [
                ((p["buyer"], p["instrument"], p["currency"]),
                 dict(movement, quantity=quantity, amount=notional + fees_of(p["buyer"]))),
                ((p["seller"], p["instrument"], p["currency"]),
                 dict(movement, quantity=-quantity, amount=notional - fees_of(p["seller"]),
                      picks=p.get("lots", []))),
            ]
            if p.get("pending", False):
                trades[p["trade_id"]] = {"instrument": p["instrument"], "buyer": p["buyer"], "seller": p["seller"],
                                         "quantity": quantity, "currency": p["currency"],
                                         "posted": Decimal(0), "ended": False}
        elif kind == "TransactionPosted":
            if p.get("reverses") is not None:
                reversed_ids.add(p["reverses"])
            elif not p.get("pending"):
                movements = []
                for index, posting in enumerate(p["postings"]):
                    cost = posting.get("cost")
                    if cost is None:
                        continue
                    movement = {"lot_id": f"{p['transaction_id']}/{index}", "transaction_id": p["transaction_id"],
                                "position": position, "index": index, "date": date,
                                "amount": Decimal(cost["amount"])}
                    amount = Decimal(posting["amount"])
                    movements.append(((posting["source"], posting["asset"], cost["currency"]),
                                      dict(movement, quantity=-amount)))
                    movements.append(((posting["destination"], posting["asset"], cost["currency"]),
                                      dict(movement, quantity=amount)))
                if movements:
                    made[p["transaction_id"]] = movements
        elif kind in ("PendingPosted", "PendingVoided", "PendingExpired"):
            trade = trades.get(p["pending_id"])
            if trade is None:
                continue
            for posting in p.get("postings", []):
                if (posting["asset"], posting["source"], posting["destination"]) == (
                        trade["instrument"], trade["seller"], trade["buyer"]):
                    trade["posted"] += Decimal(posting["amount"])
            if not (kind == "PendingPosted" and p.get("remaining")):
                trade["ended"] = True
    # Revisions: a reversed trade or transaction never happened; a pending trade whose hold ended
    # counts for the instrument quantity it posted.
    for trade_id, trade in trades.items():
        if not trade["ended"] or trade["posted"] == trade["quantity"] or trade_id not in made:
            continue
        if trade["posted"] == 0:
            del made[trade_id]
            continue
        scale = (scales or {}).get(trade["currency"])
        if scale is None:
            problems.append(f"trade {trade_id}: its currency {trade['currency']} has no scale")
            scale = 0
        made[trade_id] = [(key, dict(m, quantity=side(m["quantity"]) * trade["posted"],
                                     amount=share(m["amount"], trade["posted"], trade["quantity"], scale)))
                          for key, m in made[trade_id]]
    movements = [pair for transaction_id, pairs in made.items() if transaction_id not in reversed_ids
                 for pair in pairs]
    return movements, problems


def compute_lots(events):
    """docs/events.md, "Lots and realized P&L": every book's open lots, closings and realized
    P&L, from `events` ([(position, recorded_at, type, payload)] in position order, the payloads
    decoded, amounts as strings) as known at the last of them. Returns (books, marks, problems):
    books keyed by (account, instrument, currency), each a `Book` with `method` (as of the last
    event); marks keyed by (instrument, currency), the latest by `as_of` then position."""
    with localcontext() as context:
        context.prec = 400  # amounts add and subtract exactly
        return _compute_lots(events)


def _compute_lots(events):
    scales, methods, marks = {}, {}, {}
    for position, recorded_at, kind, p in events:
        if kind == "AssetDefined":
            scales[p["asset"]] = p["scale"]
        elif kind == "AccountOpened":
            methods[p["code"]] = [(position, p.get("booking_method", "fifo"))]
        elif kind == "BookingMethodSet":
            methods.setdefault(p["account"], []).append((position, p["booking_method"]))
        elif kind == "PriceMarked":
            key = (p["instrument"], p["currency"])
            try:
                mark = {"price": p["price"], "as_of": p["as_of"], "position": position, "as_of_us": micros(p["as_of"])}
            except (ValueError, TypeError):
                continue  # the figures' check names it
            if key not in marks or (mark["as_of_us"], position) >= (marks[key]["as_of_us"], marks[key]["position"]):
                marks[key] = mark

    def method_at(account, position):
        """The account's booking method for a movement of the event at `position`."""
        method = "fifo"
        for at, named in methods.get(account, []):
            if at < position:
                method = named
        return method

    movements, problems = lot_movements(events, scales)
    books = {}
    for key, m in sorted(movements, key=lambda pair: (pair[1]["date"], pair[1]["position"], pair[1]["index"])):
        account, _, currency = key
        if currency not in scales:
            problems.append(f"position {m['position']}: lots in {currency}, an asset not defined")
            continue
        book = books.setdefault(key, Book(scales[currency]))
        method = method_at(account, m["position"])
        if method not in BOOKING_METHODS:
            problems.append(f"position {m['position']}: {account} books by {method!r}")
            method = "fifo"
        book.apply(m, method)
    last = events[-1][0] + 1 if events else 0
    for (account, _, _), book in books.items():
        book.method = method_at(account, last)
    return books, marks, problems


def report_lots(events):
    """The lots as `--lots` prints them, with the problems met."""
    with localcontext() as context:
        context.prec = 400
        return _report_lots(events)


def _report_lots(events):
    books, marks, problems = compute_lots(events)
    scales = {p["asset"]: p["scale"] for _, _, kind, p in events if kind == "AssetDefined"}

    def at(asset, value):
        quantum = Decimal(1).scaleb(-scales.get(asset, 0))
        return format((value + 0).quantize(quantum), "f")

    report = {}
    for (account, instrument, currency), book in sorted(books.items()):
        q = lambda value: at(instrument, value)
        a = lambda value: at(currency, value)
        report[f"{account} {instrument} {currency}"] = {
            "account": account, "instrument": instrument, "currency": currency,
            "booking_method": book.method,
            "quantity": q(book.quantity()), "amount": a(book.amount()),
            "realized": a(sum((c["realized"] for c in book.closings), Decimal(0))),
            "open_lots": [dict(lot, quantity=q(lot["quantity"]), amount=a(lot["amount"])) for lot in book.lots],
            "closings": [dict(c, quantity=q(c["quantity"]), cost=a(c["cost"]), proceeds=a(c["proceeds"]),
                              realized=a(c["realized"])) for c in book.closings],
        }
    return {"books": report,
            "marks": {f"{instrument} {currency}": {k: mark[k] for k in ("price", "as_of", "position")}
                      for (instrument, currency), mark in sorted(marks.items())}}, problems


# The self-test (`--self-test`): events whose figures and lots were worked out by hand
# (docs/events.md, "A worked example", and the cases below), and an export with every trading
# event, `tools/testdata/trading_export.ndjson`, decided, applied and chained by the domain crate
# (`domain::LedgerState`, `domain::chain`; its request fingerprints are stand-ins).

FIXTURE = "testdata/trading_export.ndjson"


class SyntheticLog:
    """A log for the self-test: (position, recorded_at, type, payload) in position order, the
    payloads as an export decodes them."""

    def __init__(self):
        self.events = []
        self.ids = 0

    def add(self, kind, payload, recorded_at="2026-06-01T00:00:00.000000Z"):
        self.events.append((len(self.events) + 1, recorded_at, kind, payload))
        return payload

    def new_id(self):
        self.ids += 1
        return f"00000000-0000-7000-8000-{self.ids:012x}"

    def assets(self, **scales):
        for code, scale in scales.items():
            self.add("AssetDefined", {"asset": code, "scale": scale})

    def accounts(self, *codes, method=None):
        for code in codes:
            payload = {"account_id": self.new_id(), "code": code, "allow_negative": True, "metadata": {}}
            if method:
                payload["booking_method"] = method
            self.add("AccountOpened", payload)

    def trade(self, buyer, seller, quantity, price, day, fees=(), instrument="XYZ", currency="USD",
              scale=2, pending=False, settlement_date=None, settles_at=None, recorded_at=None):
        """A trade of `quantity` at `price` on `day` (its effective time, 10:00 UTC); `fees` as
        (payer, amount[, asset]) to `broker:fees`."""
        trade_id = self.new_id()
        notional = format((Decimal(quantity) * Decimal(price)).quantize(Decimal(1).scaleb(-scale)), "f")
        fee_list = [{"payer": f[0], "account": "broker:fees", "asset": f[2] if len(f) > 2 else currency,
                     "amount": f[1]} for f in fees]
        postings = [{"source": seller, "destination": buyer, "asset": instrument, "amount": quantity},
                    {"source": buyer, "destination": seller, "asset": currency, "amount": notional}]
        postings += [{"source": f["payer"], "destination": f["account"], "asset": f["asset"], "amount": f["amount"]}
                     for f in fee_list]
        payload = {"trade_id": trade_id, "buyer": buyer, "seller": seller, "instrument": instrument,
                   "quantity": quantity, "price": price, "currency": currency, "notional": notional,
                   "fees": fee_list, "postings": postings, "metadata": {},
                   "effective_at": f"{day}T10:00:00.000000Z"}
        if pending:
            payload["pending"] = True
        if settlement_date:
            payload["settlement_date"] = settlement_date
        if settles_at:
            payload["settles_at"] = settles_at
        return self.add("TradeExecuted", payload, recorded_at or "2026-06-01T00:00:00.000000Z")

    def transaction(self, *postings, day="2026-03-01", reverses=None):
        payload = {"transaction_id": self.new_id(), "kind": "reversal" if reverses else "transaction",
                   "postings": [dict(p) for p in postings], "metadata": {},
                   "effective_at": f"{day}T10:00:00.000000Z"}
        if reverses:
            payload["reverses"] = reverses
        return self.add("TransactionPosted", payload)

    def reverse(self, original):
        swapped = [{"source": p["destination"], "destination": p["source"], "asset": p["asset"],
                    "amount": p["amount"]} for p in original["postings"]]
        return self.transaction(*swapped, reverses=original.get("trade_id") or original["transaction_id"])

    def settle(self, kind, pending_id, released, postings=None, remaining=None, reason=None,
               recorded_at="2026-06-01T00:00:00.000000Z"):
        payload = {"pending_id": pending_id, "released": released}
        if kind != "PendingExpired":
            payload["metadata"] = {}
        if postings is not None:
            payload["postings"] = postings
        if remaining:
            payload["remaining"] = remaining
        if reason is not None:
            payload["reason"] = reason
        return self.add(kind, payload, recorded_at)


def posting(source, destination, asset, amount, cost=None):
    p = {"source": source, "destination": destination, "asset": asset, "amount": amount}
    if cost:
        p["cost"] = {"amount": cost[0], "currency": cost[1]}
    return p


def worked_example(log, who, counterparty, reverse_t4=False, t4_settles_in_part=False):
    """docs/events.md, "A worked example": T1, T2, T3, then T4 recorded last but dated before T3."""
    log.trade(who, counterparty, "10", "10.00", "2026-01-05", fees=[(who, "1.00")])
    log.trade(who, counterparty, "5", "12.00", "2026-01-10", fees=[(counterparty, "0.50")])
    log.trade(counterparty, who, "12", "15.00", "2026-02-01", fees=[(who, "2.00"), (who, "1.00", "EUR")])
    if t4_settles_in_part:
        t4 = log.trade(who, counterparty, "3", "11.00", "2026-01-20", pending=True, settlement_date="2026-01-22",
                       settles_at="2026-01-22T00:00:00.000000Z", recorded_at="2026-01-20T10:00:00.000000Z")
        part = [posting(counterparty, who, "XYZ", "2"), posting(who, counterparty, "USD", "22.00")]
        rest = [posting(counterparty, who, "XYZ", "1"), posting(who, counterparty, "USD", "11.00")]
        log.settle("PendingPosted", t4["trade_id"], part, postings=part, remaining=rest,
                   recorded_at="2026-01-21T10:00:00.000000Z")
        log.settle("PendingVoided", t4["trade_id"], rest, reason="failed to deliver",
                   recorded_at="2026-01-21T11:00:00.000000Z")
    else:
        t4 = log.trade(who, counterparty, "3", "11.00", "2026-01-20")
        if reverse_t4:
            log.reverse(t4)


class SelfTest(unittest.TestCase):
    def run_log(self, log):
        """The figures and the lots of a synthetic log, failing on any problem."""
        ledger = Ledger()
        for position, recorded_at, kind, payload in log.events:
            ledger.apply(position, recorded_at, kind, payload)
        ledger.check_totals()
        lots, problems = report_lots(log.events)
        self.assertEqual(ledger.problems + problems, [])
        return ledger, lots["books"]

    def problems_of(self, log):
        ledger = Ledger()
        for position, recorded_at, kind, payload in log.events:
            ledger.apply(position, recorded_at, kind, payload)
        return ledger.problems + report_lots(log.events)[1]

    def base(self):
        log = SyntheticLog()
        log.assets(USD=2, XYZ=0, EUR=2)
        log.accounts("world:bank", "mm:desk", "broker:fees")
        return log

    def closings(self, book):
        return [(c["quantity"], c["cost"], c["proceeds"], c["realized"], c["holding_days"]) for c in book["closings"]]

    def open_lots(self, book):
        return [(lot["date"], lot["quantity"], lot["amount"]) for lot in book["open_lots"]]

    def test_share_rounds_half_to_even_and_split_adds_up(self):
        d = Decimal
        self.assertEqual(share(d("10.00"), d(1), d(3), 2), d("3.33"))
        self.assertEqual(share(d("129.33"), d(10), d(12), 2), d("107.78"))  # 107.775
        self.assertEqual(share(d("64.67"), d(3), d(6), 2), d("32.34"))  # 32.335
        self.assertEqual(share(d("0.25"), d(1), d(2), 2), d("0.12"))  # 0.125
        self.assertEqual(share(d("0.35"), d(1), d(2), 2), d("0.18"))  # 0.175
        self.assertEqual(share(d("-0.25"), d(1), d(2), 2), d("-0.12"))
        self.assertEqual(share(d("7.00"), d(0), d(0), 2), d("7.00"))
        self.assertEqual(split(d("10.00"), [d(1), d(1), d(1)], d(3), 2), [d("3.33"), d("3.33"), d("3.34")])
        self.assertEqual(split(d("64.67"), [d(0), d(3), d(3)], d(6), 2), [d("0.00"), d("32.34"), d("32.33")])

    def test_the_worked_example_fifo_and_average(self):
        log = self.base()
        log.accounts("alice:broker")
        log.accounts("carol:broker", method="average")
        worked_example(log, "alice:broker", "mm:desk")
        worked_example(log, "carol:broker", "mm:desk")
        _, books = self.run_log(log)
        alice, carol = books["alice:broker XYZ USD"], books["carol:broker XYZ USD"]
        self.assertEqual(self.closings(alice), [("10", "101.00", "148.33", "47.33", 27), ("2", "24.00", "29.67", "5.67", 22)])
        self.assertEqual((alice["booking_method"], alice["quantity"], alice["amount"], alice["realized"]), ("fifo", "6", "69.00", "53.00"))
        self.assertEqual(self.open_lots(alice), [("2026-01-10", "3", "36.00"), ("2026-01-20", "3", "33.00")])
        self.assertEqual(self.closings(carol), [("10", "107.78", "148.33", "40.55", 27), ("2", "21.55", "29.67", "8.12", 22)])
        self.assertEqual((carol["booking_method"], carol["quantity"], carol["amount"], carol["realized"]), ("average", "6", "64.67", "48.67"))
        self.assertEqual(self.open_lots(carol), [("2026-01-10", "3", "32.34"), ("2026-01-20", "3", "32.33")])
        # Lot ids: <trade_id>/0, the buy that opened the lot.
        self.assertTrue(alice["open_lots"][0]["lot_id"].endswith("/0"))
        self.assertEqual(alice["open_lots"][0]["lot_id"], alice["closings"][1]["lot_id"])

    def test_a_reversed_trade_counts_as_if_it_had_never_happened(self):
        log = self.base()
        log.accounts("alice:broker")
        log.accounts("carol:broker", method="average")
        worked_example(log, "alice:broker", "mm:desk", reverse_t4=True)
        worked_example(log, "carol:broker", "mm:desk", reverse_t4=True)
        _, books = self.run_log(log)
        alice, carol = books["alice:broker XYZ USD"], books["carol:broker XYZ USD"]
        self.assertEqual((alice["realized"], self.open_lots(alice)), ("53.00", [("2026-01-10", "3", "36.00")]))
        self.assertEqual(self.closings(carol), [("10", "107.33", "148.33", "41.00", 27), ("2", "21.47", "29.67", "8.20", 22)])
        self.assertEqual((carol["realized"], self.open_lots(carol)), ("49.20", [("2026-01-10", "3", "32.20")]))

    def test_a_trade_settled_in_part_then_failed_counts_for_its_posted_part(self):
        log = self.base()
        log.accounts("alice:broker")
        log.accounts("carol:broker", method="average")
        worked_example(log, "alice:broker", "mm:desk", t4_settles_in_part=True)
        worked_example(log, "carol:broker", "mm:desk", t4_settles_in_part=True)
        ledger, books = self.run_log(log)
        alice, carol = books["alice:broker XYZ USD"], books["carol:broker XYZ USD"]
        # +2 at share(33.00, 2, 3) = 22.00.
        self.assertEqual((alice["realized"], self.open_lots(alice)), ("53.00", [("2026-01-10", "3", "36.00"), ("2026-01-20", "2", "22.00")]))
        # 183.00 over 17: T3 takes 129.18, split 107.65 and 21.53; 53.82 restated over [0, 3, 2].
        self.assertEqual(self.closings(carol), [("10", "107.65", "148.33", "40.68", 27), ("2", "21.53", "29.67", "8.14", 22)])
        self.assertEqual((carol["realized"], self.open_lots(carol)), ("48.82", [("2026-01-10", "3", "32.29"), ("2026-01-20", "2", "21.53")]))
        # The figures: 2 of 3 XYZ and 22.00 of 33.00 USD moved, nothing stays reserved.
        figures = ledger.report_figures()
        self.assertEqual(figures["alice:broker XYZ"], {"posted": "5", "pending_debits": "0", "pending_credits": "0", "available": "5"})
        # Unfunded (it may go negative): −(100.00 + 1.00) − 60.00 + (180.00 − 2.00) − 22.00.
        self.assertEqual(figures["alice:broker USD"]["posted"], "-5.00")
        self.assertEqual(figures["alice:broker USD"]["pending_debits"], "0.00")

    def test_holds_settled_in_part_keep_the_rest_reserved(self):
        log = self.base()
        log.accounts("dan:broker")
        t = log.trade("dan:broker", "mm:desk", "3", "11.00", "2026-03-02", pending=True, settlement_date="2026-03-04",
                      settles_at="2026-03-04T00:00:00.000000Z", recorded_at="2026-03-02T10:00:00.000000Z")
        part = [posting("mm:desk", "dan:broker", "XYZ", "2")]
        rest = [posting("mm:desk", "dan:broker", "XYZ", "1"), posting("dan:broker", "mm:desk", "USD", "33.00")]
        log.settle("PendingPosted", t["trade_id"], part, postings=part, remaining=rest, recorded_at="2026-03-03T10:00:00.000000Z")
        ledger, books = self.run_log(log)
        figures = ledger.report_figures()
        self.assertEqual(figures["dan:broker XYZ"], {"posted": "2", "pending_debits": "0", "pending_credits": "1", "available": "2"})
        self.assertEqual(figures["dan:broker USD"], {"posted": "0.00", "pending_debits": "33.00", "pending_credits": "0.00", "available": "-33.00"})
        # Still open: the trade counts in full, at its trade date.
        self.assertEqual(self.open_lots(books["dan:broker XYZ USD"]), [("2026-03-02", "3", "33.00")])
        # The ledger's own post of what it still reserves ends it, whole.
        log.settle("PendingPosted", t["trade_id"], rest, postings=rest, recorded_at="2026-03-04T00:00:01.000000Z")
        ledger, books = self.run_log(log)
        self.assertEqual(ledger.report_figures()["dan:broker USD"]["posted"], "-33.00")
        self.assertEqual(self.open_lots(books["dan:broker XYZ USD"]), [("2026-03-02", "3", "33.00")])

    def test_voided_and_expired_trades_make_no_lots_posted_ones_do(self):
        log = self.base()
        log.accounts("alice:broker")
        reserved = lambda t: t["postings"]
        voided = log.trade("alice:broker", "mm:desk", "1", "50.00", "2026-02-03", pending=True)
        log.settle("PendingVoided", voided["trade_id"], reserved(voided))
        failed = log.trade("alice:broker", "mm:desk", "1", "51.00", "2026-02-03", pending=True)
        log.settle("PendingVoided", failed["trade_id"], reserved(failed), reason="no cash")
        expired = log.trade("alice:broker", "mm:desk", "1", "52.00", "2026-02-03", pending=True)
        log.settle("PendingExpired", expired["trade_id"], reserved(expired))
        posted = log.trade("alice:broker", "mm:desk", "2", "14.00", "2026-02-04", pending=True)
        log.settle("PendingPosted", posted["trade_id"], reserved(posted), postings=reserved(posted))
        _, books = self.run_log(log)
        self.assertEqual(self.open_lots(books["alice:broker XYZ USD"]), [("2026-02-04", "2", "28.00")])

    def test_hifo_lifo_and_the_method_a_movement_applies_with(self):
        log = self.base()
        log.accounts("dave:broker", "erin:broker")
        for who in ("dave:broker", "erin:broker"):
            for day, price in (("2026-01-01", "30.00"), ("2026-01-02", "10.00"), ("2026-01-03", "20.00")):
                log.trade(who, "mm:desk", "1", price, day)
        log.add("BookingMethodSet", {"account": "dave:broker", "booking_method": "hifo", "metadata": {}})
        log.trade("mm:desk", "dave:broker", "1", "25.00", "2026-01-04")  # closes the 30.00 lot
        log.add("BookingMethodSet", {"account": "dave:broker", "booking_method": "lifo", "metadata": {}})
        log.trade("mm:desk", "dave:broker", "1", "25.00", "2026-01-05")  # closes the 20.00 lot
        # erin: a fifo sale on the 10th, then hifo set, then a sale recorded later but dated the
        # 5th: it applies first, by hifo (the 30.00 lot); the sale of the 10th, by fifo, then
        # closes the 10.00 lot.
        log.trade("mm:desk", "erin:broker", "1", "25.00", "2026-01-10")
        log.add("BookingMethodSet", {"account": "erin:broker", "booking_method": "hifo", "metadata": {}})
        log.trade("mm:desk", "erin:broker", "1", "25.00", "2026-01-05")
        _, books = self.run_log(log)
        dave, erin = books["dave:broker XYZ USD"], books["erin:broker XYZ USD"]
        self.assertEqual(self.closings(dave), [("1", "30.00", "25.00", "-5.00", 3), ("1", "20.00", "25.00", "5.00", 2)])
        self.assertEqual((dave["booking_method"], self.open_lots(dave)), ("lifo", [("2026-01-02", "1", "10.00")]))
        self.assertEqual(self.closings(erin), [("1", "30.00", "25.00", "-5.00", 4), ("1", "10.00", "25.00", "15.00", 8)])
        self.assertEqual((erin["booking_method"], self.open_lots(erin)), ("hifo", [("2026-01-03", "1", "20.00")]))

    def test_a_sale_beyond_the_long_lots_opens_a_short_lot(self):
        log = self.base()
        log.accounts("frank:broker")
        log.trade("frank:broker", "mm:desk", "1", "10.00", "2026-01-01")
        log.trade("mm:desk", "frank:broker", "3", "12.00", "2026-01-02")
        _, books = self.run_log(log)
        frank = books["frank:broker XYZ USD"]
        self.assertEqual(self.closings(frank), [("1", "10.00", "12.00", "2.00", 1)])
        self.assertEqual(self.open_lots(frank), [("2026-01-02", "-2", "24.00")])
        log.trade("frank:broker", "mm:desk", "2", "10.00", "2026-01-03")
        _, books = self.run_log(log)
        frank = books["frank:broker XYZ USD"]
        self.assertEqual(self.closings(frank)[1], ("2", "20.00", "24.00", "4.00", 1))
        self.assertEqual((frank["open_lots"], frank["quantity"], frank["realized"]), ([], "0", "6.00"))

    def test_average_as_domain_lots_tests_it(self):
        """The numbers of domain::lots's own unit test of `average`."""
        log = self.base()
        log.accounts("gus:broker", method="average")
        log.trade("gus:broker", "mm:desk", "1", "10.00", "2026-01-01")
        log.trade("gus:broker", "mm:desk", "2", "20.00", "2026-01-02")
        log.trade("mm:desk", "gus:broker", "1", "20.00", "2026-01-03")
        log.trade("gus:broker", "mm:desk", "1", "20.00", "2026-01-04")
        log.trade("mm:desk", "gus:broker", "2", "25.00", "2026-01-05")
        _, books = self.run_log(log)
        gus = books["gus:broker XYZ USD"]
        costs = [c["cost"] for c in gus["closings"]]
        self.assertEqual((costs[0], sum(Decimal(c) for c in costs[1:])), ("16.67", Decimal("35.55")))
        self.assertEqual(gus["amount"], "17.78")

    def test_costs_on_transactions_and_fees_that_count(self):
        log = self.base()
        log.accounts("hal:broker", "ida:broker", "joe:broker")
        log.transaction(posting("world:bank", "hal:broker", "XYZ", "10", ("95.00", "USD")), day="2026-03-05")
        log.transaction(posting("hal:broker", "ida:broker", "XYZ", "4", ("50.00", "USD")),
                        posting("world:bank", "ida:broker", "EUR", "5.00"),
                        posting("world:bank", "ida:broker", "XYZ", "1", ("14.00", "EUR")), day="2026-03-06")
        taken_back = log.transaction(posting("world:bank", "hal:broker", "XYZ", "1", ("1.00", "USD")), day="2026-03-07")
        log.reverse(taken_back)
        # joe sells to ida: joe pays 1.00 USD (off his proceeds) and 2.00 EUR (no lot); the fee
        # mm pays is nobody's lot.
        log.trade("ida:broker", "joe:broker", "2", "20.00", "2026-03-08",
                  fees=[("joe:broker", "1.00"), ("joe:broker", "2.00", "EUR"), ("mm:desk", "3.00")])
        _, books = self.run_log(log)
        hal, ida, joe = books["hal:broker XYZ USD"], books["ida:broker XYZ USD"], books["joe:broker XYZ USD"]
        self.assertEqual(self.closings(hal), [("4", "38.00", "50.00", "12.00", 1)])
        self.assertEqual(self.open_lots(hal), [("2026-03-05", "6", "57.00")])
        self.assertEqual(self.open_lots(ida), [("2026-03-06", "4", "50.00"), ("2026-03-08", "2", "40.00")])
        self.assertTrue(ida["open_lots"][0]["lot_id"].endswith("/0"))
        self.assertEqual(self.open_lots(books["ida:broker XYZ EUR"]), [("2026-03-06", "1", "14.00")])
        self.assertTrue(books["ida:broker XYZ EUR"]["open_lots"][0]["lot_id"].endswith("/2"))
        self.assertEqual(self.open_lots(joe), [("2026-03-08", "-2", "39.00")])
        self.assertEqual(self.open_lots(books["world:bank XYZ USD"]), [("2026-03-05", "-10", "95.00")])

    def test_marks_the_latest_by_as_of(self):
        log = self.base()
        for price, as_of in (("14.5", "2026-03-07T16:00:00.000000Z"), ("14.25", "2026-03-07T15:00:00.000000Z")):
            log.add("PriceMarked", {"instrument": "XYZ", "currency": "USD", "price": price, "as_of": as_of,
                                    "metadata": {}}, recorded_at="2026-03-07T17:00:00.000000Z")
        lots, problems = report_lots(log.events)
        self.assertEqual((problems, lots["marks"]["XYZ USD"]["price"]), ([], "14.5"))

    def test_events_that_do_not_follow_the_documents_are_problems(self):
        def one(build, expected):
            log = self.base()
            log.accounts("kim:broker")
            build(log)
            problems = self.problems_of(log)
            self.assertTrue(any(expected in p for p in problems), f"{expected!r} not in {problems}")

        one(lambda log: log.add("BookingMethodSet", {"account": "kim:broker", "booking_method": "random", "metadata": {}}),
            "is not one of")
        one(lambda log: log.add("PriceMarked", {"instrument": "XYZ", "currency": "USD", "price": "14.50",
                                                "as_of": "2026-01-01T00:00:00.000000Z", "metadata": {}}),
            "without trailing zeros")
        one(lambda log: log.add("PriceMarked", {"instrument": "XYZ", "currency": "USD", "price": "14.5",
                                                "as_of": "2027-01-01T00:00:00.000000Z", "metadata": {}}),
            "later than the mark was recorded")
        one(lambda log: log.transaction(posting("world:bank", "kim:broker", "XYZ", "1", ("1.00", "XYZ"))),
            "in the posting's own asset")
        one(lambda log: log.transaction(posting("world:bank", "kim:broker", "XYZ", "1", ("1.0", "USD"))),
            "does not fit USD")

        def part_of_a_two_phase_trade(log):
            t = log.trade("kim:broker", "mm:desk", "3", "11.00", "2026-03-02", pending=True)
            part = [posting("mm:desk", "kim:broker", "XYZ", "2")]
            rest = [posting("mm:desk", "kim:broker", "XYZ", "1"), posting("kim:broker", "mm:desk", "USD", "33.00")]
            log.settle("PendingPosted", t["trade_id"], part, postings=part, remaining=rest)
        one(part_of_a_two_phase_trade, "not a trade that settles later")

        def a_part_that_does_not_add_up(log):
            t = log.trade("kim:broker", "mm:desk", "3", "11.00", "2026-03-02", pending=True, settlement_date="2026-03-04",
                          settles_at="2026-03-04T00:00:00.000000Z", recorded_at="2026-03-02T10:00:00.000000Z")
            part = [posting("mm:desk", "kim:broker", "XYZ", "2")]
            rest = [posting("kim:broker", "mm:desk", "USD", "33.00")]
            log.settle("PendingPosted", t["trade_id"], part, postings=part, remaining=rest)
        one(a_part_that_does_not_add_up, "do not add up")

        def a_failed_transfer(log):
            t = log.add("TransactionPosted", {"transaction_id": log.new_id(), "kind": "transfer", "metadata": {},
                                              "pending": True, "postings": [posting("world:bank", "kim:broker", "USD", "1.00")]})
            log.settle("PendingVoided", t["transaction_id"], t["postings"], reason="no")
        one(a_failed_transfer, "not a trade's hold")

        def an_expired_dated_trade(log):
            t = log.trade("kim:broker", "mm:desk", "1", "11.00", "2026-03-02", pending=True, settlement_date="2026-03-04",
                          settles_at="2026-03-04T00:00:00.000000Z", recorded_at="2026-03-02T10:00:00.000000Z")
            log.settle("PendingExpired", t["trade_id"], t["postings"])
        one(an_expired_dated_trade, "it never expires")
        one(lambda log: log.trade("kim:broker", "mm:desk", "1", "11.00", "2026-03-02", pending=True,
                                  settlement_date="2026-03-04", settles_at="2026-03-05T00:00:00.000000Z",
                                  recorded_at="2026-03-02T10:00:00.000000Z"),
            "is not its settlement date")
        one(lambda log: log.trade("kim:broker", "mm:desk", "1", "11.00", "2026-03-02", settlement_date="2026-03-01"),
            "before the trade date")

    def test_ed25519_rfc8032_test_1_and_a_flipped_bit(self):
        """RFC 8032, 7.1, TEST 1 (the empty message) verifies; one bit flipped anywhere in the
        signature, the key or the message, it does not."""
        key = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        signature = bytes.fromhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        self.assertTrue(ed25519_verify(key, b"", signature))
        flip = lambda data, bit: data[:bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1:]  # noqa: E731
        self.assertFalse(ed25519_verify(key, b"", flip(signature, 3)))  # in R
        self.assertFalse(ed25519_verify(key, b"", flip(signature, 300)))  # in S
        self.assertFalse(ed25519_verify(flip(key, 9), b"", signature))
        self.assertFalse(ed25519_verify(key, b"\x00", signature))
        # S at or above the group order is refused, not reduced (RFC 8032, 5.1.7 step 1).
        s = int.from_bytes(signature[32:], "little") + ED_L
        self.assertFalse(ed25519_verify(key, b"", signature[:32] + s.to_bytes(32, "little")))

    def test_the_checkpoint_message(self):
        """docs/audit.md, "Signed checkpoints": five lines, no trailing line feed."""
        checkpoint = {"ledger": "east", "position": 7, "head_hash": "ab" * 32,
                      "recorded_at": "2026-06-01T00:00:00.000000Z"}
        self.assertEqual(checkpoint_message(checkpoint),
                         b"ledger:checkpoint:v2\neast\n7\n" + b"ab" * 32 + b"\n2026-06-01T00:00:00.000000Z")

    def test_balances_at_a_position_and_the_account_answer(self):
        """At a position: the posted balances then, each with the position of the last event
        that moved it (a reservation moves nothing). At the head: version and each balance's
        position follow every event that names the account, reservations and releases too."""
        log = SyntheticLog()
        log.assets(USD=2)  # 1
        log.accounts("world:bank", "alice:cash")  # 2, 3
        log.transaction(posting("world:bank", "alice:cash", "USD", "100.00"))  # 4
        hold = log.transaction(posting("alice:cash", "world:bank", "USD", "30.00"))  # 5
        hold["pending"] = True
        log.add("AccountLimitsSet", {"account": "alice:cash", "asset": "USD", "min_balance": "0.00",
                                     "max_balance": "500.00"})  # 6
        log.settle("PendingPosted", hold["transaction_id"], [posting("alice:cash", "world:bank", "USD", "30.00")],
                   postings=[posting("alice:cash", "world:bank", "USD", "10.00")])  # 7
        ledger, _ = self.run_log(log)
        at_5 = ledger.balances_at(5)["alice:cash"]
        self.assertEqual(at_5["balances"], [{"asset": "USD", "balance": "100.00", "position": 4}])
        self.assertEqual(ledger.balances_at(3)["alice:cash"]["balances"], [])
        self.assertEqual(ledger.balances_at(7)["alice:cash"]["balances"],
                         [{"asset": "USD", "balance": "90.00", "position": 7}])
        answer = ledger.account_answers()["alice:cash"]
        self.assertEqual((answer["version"], answer["position"], answer["status"]), (7, 3, "open"))
        self.assertEqual(answer["balances"], [{"asset": "USD", "balance": "90.00", "pending_debits": "0.00",
                                               "pending_credits": "0.00", "available": "90.00",
                                               "trade_date_balance": "90.00", "position": 7}])
        self.assertEqual(answer["limits"], [{"asset": "USD", "min_balance": "0.00", "max_balance": "500.00"}])
        world = ledger.account_answers()["world:bank"]
        self.assertEqual(world["version"], 7)

    def test_the_fixture_export_verifies_with_its_lots(self):
        """tools/testdata/trading_export.ndjson, read as an export: the chain, the figures, and
        the lots of docs/events.md's worked example (alice fifo, carol average), of a trade that
        settled 2 of 3 then failed and one the ledger settled by itself (dan, hifo), and of costs
        on transfers (erin, lifo from position 37)."""
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), FIXTURE)
        run = subprocess.run([sys.executable, os.path.abspath(__file__), path, "--lots"], capture_output=True, check=False)
        report = json.loads(run.stdout)
        self.assertEqual((run.returncode, report["problems"], report["intact"], report["head_position"]), (0, [], True, 44))
        self.assertEqual(report["head_hash"], "8d05b0e6b69b9831e7812dbb85397f52c0677c6abb5745bdad970a06b85a4b33")
        types = {json.loads(line)["type"] for line in open(path, encoding="utf-8")}
        self.assertTrue({"BookingMethodSet", "PriceMarked", "PendingVoided", "PendingPosted"} <= types)
        books = report["lots"]["books"]
        alice, carol = books["alice:broker XYZ USD"], books["carol:broker XYZ USD"]
        self.assertEqual((alice["realized"], self.open_lots(alice)), ("53.00", [("2026-01-10", "3", "36.00"), ("2026-01-20", "3", "33.00")]))
        self.assertEqual((carol["realized"], self.open_lots(carol)), ("48.67", [("2026-01-10", "3", "32.34"), ("2026-01-20", "3", "32.33")]))
        # dan (hifo): D1 +2 at 22.00 (2 of 3 settled, then it failed), D2 +2 at 24.00, erin's 4
        # at 50.00 (12.50 a unit); his sale of 3 for 39.00 takes 3 of those: cost 37.50.
        dan = books["dan:broker XYZ USD"]
        self.assertEqual(self.closings(dan), [("3", "37.50", "39.00", "1.50", 2)])
        self.assertEqual(self.open_lots(dan), [("2026-03-02", "2", "22.00"), ("2026-03-02", "2", "24.00"), ("2026-03-06", "1", "12.50")])
        # erin: 10 at 95.00; 4 to dan for 50.00 (fifo: cost 38.00); lifo from then on; 2 at
        # 30.00 in; 1 at 9.00 in and reversed (never happened); 2 sold for 28.00 (lifo: the
        # 30.00 lot): realized 12.00 − 2.00.
        erin = books["erin:broker XYZ USD"]
        self.assertEqual(self.closings(erin), [("4", "38.00", "50.00", "12.00", 1), ("2", "30.00", "28.00", "-2.00", 2)])
        self.assertEqual((erin["booking_method"], erin["realized"], self.open_lots(erin)), ("lifo", "10.00", [("2026-03-05", "6", "57.00")]))
        self.assertEqual(report["lots"]["marks"]["XYZ USD"], {"price": "14.5", "as_of": "2026-03-07T16:00:00.000000Z", "position": 38})
        self.assertEqual(report["balances"]["dan:broker XYZ"]["posted"], "5")
        self.assertEqual(report["balances"]["dan:broker USD"]["posted"], "9993.00")


def self_test():
    """Runs the self-test; its report goes to stderr, and the exit status says whether it passed."""
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


# Signed checkpoints (docs/audit.md, "Signed checkpoints") and the verdict they give an export.

def checkpoint_message(checkpoint):
    """The bytes a checkpoint signs: `ledger:checkpoint:v2`, the ledger, the position, the head
    hash and the head event's recorded_at, one a line, no trailing line feed."""
    lines = ["ledger:checkpoint:v2", checkpoint["ledger"], str(checkpoint["position"]),
             checkpoint["head_hash"], checkpoint["recorded_at"] or ""]
    return "\n".join(lines).encode("utf-8")


def checkpoint_verdict(run, checkpoint):
    """`chain_intact`: the whole export chains; `checkpoint_holds`: the signature verifies with
    the checkpoint's key and the export reaches the checkpoint's position with its `head_hash`
    (and the head event's `recorded_at`); `first_broken_position`: where the chain breaks, else
    the checkpoint's position when it does not hold there, else null."""
    try:
        signed = ed25519_verify(bytes.fromhex(checkpoint["public_key"]), checkpoint_message(checkpoint),
                                bytes.fromhex(checkpoint["signature"]))
    except (ValueError, KeyError, TypeError):
        signed = False
    position = int(checkpoint["position"])
    reached = run["hashes"].get(position)
    holds = (signed and reached is not None and reached[0] == checkpoint["head_hash"]
             and (position == 0 or micros(reached[1]) == micros(checkpoint["recorded_at"])))
    broken = run["broken"]
    if broken is None and not holds:
        broken = position
    return {"chain_intact": run["broken"] is None, "checkpoint_holds": holds, "signature_valid": signed,
            "first_broken_position": broken}


# Positions (GET /v1/accounts/{code}/positions), recomputed from the lots and the figures.

def exact_at(value, scale):
    """Every significant digit of `value`, and at least `scale` places (docs/api.md, "Positions and
    lots": `20500.00`, not the `20500.00000000` of a product's decimal places)."""
    value = (value + 0).normalize()
    if -value.as_tuple().exponent < scale:
        value = value.quantize(Decimal(1).scaleb(-scale))
    return format(value, "f")


def positions_answers(ledger, applied, head_position):
    """Every account's positions as `GET …/accounts/{code}/positions` answers them, at the head."""
    with localcontext() as context:
        context.prec = 400
        books, marks, _ = compute_lots(applied)
        answers = {code: {"account": code, "position": head_position, "positions": []}
                   for code in ledger.accounts}
        for (code, instrument, currency), book in sorted(books.items()):
            if code in answers:
                answers[code]["positions"].append(position_entry(ledger, books, marks, code, instrument,
                                                                  currency, book))
        return answers


def position_entry(ledger, books, marks, code, instrument, currency, book):
    """One book of an account as the positions answer shows it."""
    scale_i, scale_c = ledger.scales.get(instrument, 0), ledger.scales.get(currency, 0)
    q = lambda v: exact_at(v, scale_i)  # noqa: E731
    posted, debits, credits = ledger.figures.get((code, instrument), [Decimal(0)] * 3)
    quantity = posted + credits - debits
    # A short lot's cost is what its sale brought, negative (owed back): the book keeps it as a
    # positive amount.
    cost = lambda lot: side(lot["quantity"]) * lot["amount"]  # noqa: E731
    lots_quantity, cost_basis = book.quantity(), sum((cost(lot) for lot in book.lots), Decimal(0))
    in_every_currency = sum((b.quantity() for (a, i, _), b in books.items() if (a, i) == (code, instrument)),
                            Decimal(0))
    mark = marks.get((instrument, currency))
    price = None if mark is None else Decimal(mark["price"])
    unit = lambda amount, units: format((amount / units).quantize(Decimal(1).scaleb(-18)), "f")  # noqa: E731
    return {
        "instrument": instrument, "currency": currency, "booking_method": book.method,
        "quantity": q(quantity), "settled": q(posted), "unsettled": q(quantity - posted),
        "lots_quantity": q(lots_quantity), "uncosted": q(quantity - in_every_currency),
        "lots": [{"lot_id": lot["lot_id"], "transaction_id": lot["transaction_id"], "trade_date": lot["date"],
                  "quantity": q(lot["quantity"]), "cost": exact_at(cost(lot), scale_c),
                  "unit_cost": unit(cost(lot), lot["quantity"])} for lot in book.lots],
        "cost_basis": exact_at(cost_basis, scale_c),
        "average_cost": unit(cost_basis, lots_quantity) if lots_quantity else None,
        "realized": exact_at(sum((c["realized"] for c in book.closings), Decimal(0)), scale_c),
        "mark": None if mark is None else {k: mark[k] for k in ("price", "as_of", "position")},
        "market_value": None if price is None else exact_at(quantity * price, scale_c),
        "unrealized": None if price is None else exact_at(lots_quantity * price - cost_basis, scale_c),
    }


# --vectors: every set of a vectors directory checked against its expected.json.

def same_leaf(key, expected, got):
    """Whether two JSON leaves are the same answer: numbers as written, times as instants."""
    if isinstance(expected, str) and isinstance(got, str) and not isinstance(expected, Num) \
            and (key.endswith("_at") or key == "as_of") and TIME.fullmatch(expected) and TIME.fullmatch(got):
        return micros(expected) == micros(got)
    return canonical(expected) == canonical(got)


def differences(expected, got, where=""):
    """[(field, expected, got)] wherever `got` differs from `expected`, field by field."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(expected) | set(got)):
            path = f"{where}.{key}" if where else key
            if key not in got or key not in expected:
                out.append((path, expected.get(key, "(absent)"), got.get(key, "(absent)")))
            else:
                out.extend(differences(expected[key], got[key], path))
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [(where, expected, got)]
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in differences(e, g, f"{where}[{i}]")]
    key = where.rsplit(".", 1)[-1]
    return [] if same_leaf(key, expected, got) else [(where, expected, got)]


class VectorCheck:
    """The checks of one vectors directory: one line per check on stderr, every mismatch kept."""

    def __init__(self):
        self.checks, self.mismatches = 0, []

    def compare(self, label, expected, got):
        found = differences(expected, got)
        self.checks += 1
        for field, e, g in found:
            self.mismatches.append({"check": label, "field": field, "expected": plain_text(e), "got": plain_text(g)})
            print(f"MISMATCH {label} {field}: expected {plain_text(e)}, got {plain_text(g)}", file=sys.stderr)
        if not found:
            print(f"ok {label}", file=sys.stderr)

    def ledger(self, directory, set_name, ledger):
        """An export, its expected figures and every tampered copy's verdict."""
        with open(os.path.join(directory, f"{ledger}.expected.json"), encoding="utf-8") as f:
            expected = DECODER.decode(f.read())
        label = f"{set_name}/{ledger}"
        run = verify(os.path.join(directory, expected["export"]))
        verdict = checkpoint_verdict(run, expected["checkpoint"])
        self.compare(f"{label} verdict", expected["verdict"], {k: verdict[k] for k in expected["verdict"]})
        self.compare(f"{label} head", expected["head"], {"position": run["head_position"], "hash": run["previous"].hex()})
        problems = run["chain_problems"] + run["ledger"].problems
        self.compare(f"{label} problems", [], problems)
        accounts = run["ledger"].account_answers()
        for code, answer in sorted(expected["accounts"].items()):
            self.compare(f"{label} account {code}", answer, accounts.get(code, "(none)"))
        self.compare(f"{label} account list", sorted(expected["accounts"]), sorted(accounts))
        for position, answers in sorted(expected["at_positions"].items(), key=lambda kv: int(kv[0])):
            got = run["ledger"].balances_at(int(position))
            self.compare(f"{label} at_position {position}", answers, got)
        if "positions" in expected:
            got = positions_answers(run["ledger"], run["applied"], run["head_position"])
            for code, answer in sorted(expected["positions"].items()):
                self.compare(f"{label} positions {code}", answer, got.get(code, "(none)"))
        for item in expected.get("trial_balances", []):
            answer = run["ledger"].trial_balance_answer(micros(item["as_of"]), int(item["known_at_position"]))
            self.compare(f"{label} trial_balance as_of {item['as_of']} known_at {item['known_at_position']}",
                         item["answer"], answer)
        for item in expected["tampered"]:
            tampered = checkpoint_verdict(verify(os.path.join(directory, item["file"])), expected["checkpoint"])
            keys = ("chain_intact", "checkpoint_holds", "first_broken_position")
            self.compare(f"{label} {item['file']}", {k: item[k] for k in keys}, {k: tampered[k] for k in keys})

    def run(self, root):
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        for entry in manifest["sets"]:
            for ledger in entry["ledgers"]:
                self.ledger(os.path.join(root, entry["name"]), entry["name"], ledger)
        return {"vectors": root, "sets": [s["name"] for s in manifest["sets"]], "checks": self.checks,
                "mismatches": self.mismatches, "ok": not self.mismatches}


def report_text(report):
    """The report as JSON, with every number of client metadata as written (a Num would
    otherwise be printed as a string): each is marked, dumped, then unquoted."""
    def mark(v):
        if isinstance(v, Num):
            return "\x00" + v + "\x00"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v
    text = json.dumps(mark(report), indent=1, sort_keys=True)
    return re.sub(r'"\\u0000([^"\\]*)\\u0000"', r"\1", text)


def plain_text(v):
    """A value for a message: JSON with numbers as written."""
    return v if isinstance(v, str) and not isinstance(v, Num) else canonical(v)


def verify(path, prev_hash=None):
    """Recomputes the chain of an export and applies its events: the chain's verdict, the
    figures (`ledger`), the events applied and the hash at every position the chain reaches."""
    previous = bytes.fromhex(prev_hash) if prev_hash else GENESIS
    ledger, chain_problems = Ledger(), []
    expected_position, head_position, broken = None, 0, None
    respelled = []  # events of the known defect of logs written before migration 0013
    applied = []  # (position, recorded_at, type, payload) of every event applied, for --lots
    hashes = {}  # position -> (the chain's hash there, its recorded_at), while the chain holds
    with open(path, "rb") as lines:
        for number, raw_line in enumerate(lines, 1):
            try:
                e, form_problems = read_line(raw_line.decode("utf-8"))
                computed = hashlib.sha256(previous + event_bytes(e)).digest()
            except (ValueError, KeyError, UnicodeError) as error:
                # Not an event: not UTF-8, not JSON, a key twice, a lone surrogate, a field missing.
                broken = broken or (expected_position or 1)
                chain_problems.append(f"line {number}: not an exported event: {error}")
                break
            e["position"], e["schema_version"] = int(e["position"]), int(e["schema_version"])
            chain_problems.extend(f"position {e['position']}: {p}" for p in form_problems)
            if expected_position is not None and e["position"] != expected_position:
                broken = broken or expected_position
                chain_problems.append(f"line {number}: position {e['position']}, expected {expected_position}")
                break
            if expected_position is None and not prev_hash and e["position"] != 1:
                chain_problems.append("the export does not start at position 1: pass --prev-hash")
                broken = e["position"]
                break
            if computed.hex() != e["hash"]:
                cause = explain_respelled(previous, e)
                if cause is None:
                    broken = e["position"]
                    chain_problems.append(f"position {e['position']}: hash does not match content and predecessor")
                    break
                # The known defect, not an alteration: the chain goes on from the stored hash.
                respelled.append({"position": e["position"], "cause": cause})
                computed = bytes.fromhex(e["hash"])
            previous, head_position, expected_position = computed, e["position"], e["position"] + 1
            # An export that starts after position 1 lacks the events its figures start from:
            # only its chain is checked.
            if not prev_hash:
                payload = plain(e["payload"])
                ledger.apply(e["position"], e["recorded_at"], e["type"], payload)
                applied.append((e["position"], e["recorded_at"], e["type"], payload))
                if e["type"] == "AccountOpened" and e["payload"]["code"] in ledger.accounts:
                    # Metadata as written (`-0`, `1E+2`): what an account answer serves.
                    ledger.accounts[e["payload"]["code"]]["metadata"] = e["payload"]["metadata"]
            hashes[e["position"]] = (computed.hex(), e["recorded_at"])

    ledger.check_totals()
    return {"ledger": ledger, "chain_problems": chain_problems, "broken": broken, "head_position": head_position,
            "previous": previous, "respelled": respelled, "applied": applied, "hashes": hashes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?")
    parser.add_argument("--prev-hash", help="hash before the first exported event (hex)")
    parser.add_argument("--expect-head", help="fail unless the last hash equals this (hex)")
    parser.add_argument("--as-of", help="also report every posted balance as of this time (RFC 3339)")
    parser.add_argument("--known-at", type=int, help="with --as-of: as known at this position (default: the head)")
    parser.add_argument("--lots", action="store_true",
                        help="also report every book's open lots, closings and realized P&L, and the latest marks")
    parser.add_argument("--at-position", type=int,
                        help="also report every account's posted balances right after this position")
    parser.add_argument("--checkpoint", help="a signed checkpoint (JSON, as GET /v1/audit/checkpoint answers) "
                                             "to check the export against")
    parser.add_argument("--vectors", help="check every set of a vectors directory (docs/vectors) against its "
                                          "expected.json; one line per check on stderr, a summary on stdout")
    parser.add_argument("--self-test", action="store_true",
                        help="run the checks of this verifier on events whose figures and lots were worked out by hand")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if args.vectors:
        summary = VectorCheck().run(args.vectors)
        print(json.dumps(summary, indent=1))
        return 0 if summary["ok"] else 1
    if args.export is None:
        parser.error("the export to verify is missing")
    if args.lots and args.prev_hash:
        parser.error("--lots needs every event from the first: not with --prev-hash")
    try:
        as_of = None if args.as_of is None else micros(args.as_of)
    except ValueError as error:
        parser.error(f"--as-of: {error}")
    if args.known_at is not None and (as_of is None or args.known_at < 0):
        parser.error("--known-at goes with --as-of, and is a position (0 or more)")
    if args.prev_hash and (args.at_position is not None or args.checkpoint):
        parser.error("--at-position and --checkpoint need every event from the first: not with --prev-hash")
    checkpoint = None
    if args.checkpoint:
        with open(args.checkpoint, encoding="utf-8") as f:
            checkpoint = DECODER.decode(f.read())

    run = verify(args.export, args.prev_hash)
    ledger, chain_problems, broken = run["ledger"], run["chain_problems"], run["broken"]
    head_position, previous, respelled, applied = run["head_position"], run["previous"], run["respelled"], run["applied"]
    closes = ledger.check_closes()
    problems = chain_problems + ledger.problems
    lots = None
    if args.lots:
        lots, lot_problems = report_lots(applied)
        problems += lot_problems
    head_hash = previous.hex()
    verdict = None if checkpoint is None else checkpoint_verdict(run, checkpoint)
    if args.expect_head and broken is None and head_hash != args.expect_head:
        problems.append(f"head hash {head_hash} is not the expected {args.expect_head}")

    print(report_text({
        "intact": broken is None,
        "head_position": head_position,
        "head_hash": head_hash,
        "first_broken_position": broken,
        "problems": problems,
        "stored_form_differs": respelled,
        "stored_form_differs_count": len(respelled),
        "balances": ledger.report_figures(),
        "accounts": {code: {"status": a["status"], "limits": a["limits"]}
                     for code, a in sorted(ledger.accounts.items())},
        "closes": closes,
        "trial_balances_verified": all(c["matches"] for c in closes),
        **({} if as_of is None else {"as_of": ledger.report_as_of(
            as_of, head_position if args.known_at is None else args.known_at)}),
        **({} if lots is None else {"lots": lots}),
        "account_answers": ledger.account_answers(),
        **({} if args.at_position is None else {"at_position": {
            "position": args.at_position, "accounts": ledger.balances_at(args.at_position)}}),
        **({} if verdict is None else {"checkpoint": verdict}),
    }))
    return 0 if not problems and (verdict is None or verdict["checkpoint_holds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
