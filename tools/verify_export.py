#!/usr/bin/env python3
"""Independent verifier of a ledger export.

Reads the NDJSON that `ledger export` writes, recomputes the hash chain from the genesis value as
docs/audit.md specifies it, and recomputes every balance figure (posted, pending debits, pending
credits, available) from the events as docs/events.md specifies them. Standard library only, and
no code shared with the server: it follows the documents, so where it disagrees with the server,
one of the two is wrong.

    python3 tools/verify_export.py export.ndjson [--prev-hash HEX] [--expect-head HEX]
    python3 tools/verify_export.py export.ndjson --as-of T [--known-at P]

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
other amounts than were reserved, a trade whose fees are not its postings, a second reversal, a
close out of order, an entry that counts in a closed period…), the figures of an asset do not
balance, or a close's digest is not that of its trial balance; not for an event whose stored form
differs from its hashed form.
"""
import argparse
import datetime
import hashlib
import json
import math
import re
import sys
from decimal import Decimal

GENESIS = hashlib.sha256(b"ledger:genesis:v1").digest()
DOMAIN = b"ledger:event:v1\n"
TRIAL_BALANCE_DOMAIN = b"ledger:trial-balance:v1\n"
TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                  r"([Zz]|[+-][0-9]{2}:[0-9]{2})")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


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
        self.holds = {}  # pending transaction id -> the postings it reserved
        self.settled = set()
        self.transactions = set()  # ids of TransactionPosted and TradeExecuted
        self.reversed = set()
        self.problems = []
        # Accounting time: every move as (position, effective time in µs, account, asset, change),
        # the closes in log order, the periods closed now (oldest first) and the closes made.
        self.moves = []
        self.effective = None
        self.closes = []
        self.closed = []

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
        self.accounts[p["code"]] = {"status": "open", "allow_negative": p["allow_negative"], "limits": {}}

    def on_AccountStatusChanged(self, position, p):
        self.account(position, p["account"])["status"] = p["status"]

    def on_AccountLimitsSet(self, position, p):
        self.account(position, p["account"])["limits"][p["asset"]] = {
            "min_balance": p["min_balance"], "max_balance": p["max_balance"]}

    # Money.
    def on_TransactionPosted(self, position, p):
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
        self.record(position, p["trade_id"], p)

    def on_PendingPosted(self, position, p):
        reserved = self.settle(position, p)
        if not moves_within(p["postings"], reserved):
            self.problem(position, "the post moves more than was reserved, or other postings")
        for posting in p["postings"]:
            self.step(position, posting, move=1)

    def on_PendingVoided(self, position, p):
        self.settle(position, p)

    def on_PendingExpired(self, position, p):
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
        for posting in p["postings"]:
            self.step(position, posting, reserve=1 if pending else 0, move=0 if pending else 1)

    def settle(self, position, p):
        """Ends the hold `pending_id`: its reservations, listed again as `released`, are released."""
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
        if asset not in self.scales or amount <= 0 or -amount.as_tuple().exponent != self.scales[asset]:
            self.problem(position, f"posting {posting} does not fit {asset}")
        if posting["source"] == posting["destination"]:
            self.problem(position, f"posting {posting} has one account on both sides")
        for account in (posting["source"], posting["destination"]):
            self.account(position, account)
        source = self.figures.setdefault((posting["source"], asset), [Decimal(0)] * 3)
        destination = self.figures.setdefault((posting["destination"], asset), [Decimal(0)] * 3)
        source[0] -= move * amount
        destination[0] += move * amount
        if move:
            self.moves.append((position, self.effective, posting["source"], asset, -amount))
            self.moves.append((position, self.effective, posting["destination"], asset, amount))
        source[1] += reserve * amount
        destination[2] += reserve * amount

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
        return str((amount + 0).quantize(quantum))  # + 0: never "-0"

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


def trial_balance_digest(rows):
    """docs/events.md, "The trial balance": SHA-256 over `ledger:trial-balance:v1\\n`, then
    `{account}\\t{asset}\\t{balance}\\n` per row, in lower-case hex."""
    lines = "".join(f"{account}\t{asset}\t{balance}\n" for account, asset, balance in rows)
    return hashlib.sha256(TRIAL_BALANCE_DOMAIN + lines.encode("utf-8")).hexdigest()


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--prev-hash", help="hash before the first exported event (hex)")
    parser.add_argument("--expect-head", help="fail unless the last hash equals this (hex)")
    parser.add_argument("--as-of", help="also report every posted balance as of this time (RFC 3339)")
    parser.add_argument("--known-at", type=int, help="with --as-of: as known at this position (default: the head)")
    args = parser.parse_args()
    try:
        as_of = None if args.as_of is None else micros(args.as_of)
    except ValueError as error:
        parser.error(f"--as-of: {error}")
    if args.known_at is not None and (as_of is None or args.known_at < 0):
        parser.error("--known-at goes with --as-of, and is a position (0 or more)")

    previous = bytes.fromhex(args.prev_hash) if args.prev_hash else GENESIS
    ledger, chain_problems = Ledger(), []
    expected_position, head_position, broken = None, 0, None
    respelled = []  # events of the known defect of logs written before migration 0013
    with open(args.export, "rb") as lines:
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
            if expected_position is None and not args.prev_hash and e["position"] != 1:
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
            if not args.prev_hash:
                ledger.apply(e["position"], e["recorded_at"], e["type"], plain(e["payload"]))

    ledger.check_totals()
    closes = ledger.check_closes()
    problems = chain_problems + ledger.problems
    head_hash = previous.hex()
    if args.expect_head and broken is None and head_hash != args.expect_head:
        problems.append(f"head hash {head_hash} is not the expected {args.expect_head}")

    print(json.dumps({
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
    }, indent=1, sort_keys=True))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
