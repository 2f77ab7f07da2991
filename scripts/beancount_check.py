"""The two halves of scripts/beancount_check.sh that talk to the ledger and to Beancount.

    python3 beancount_check.py populate BASE_URL
        makes a test ledger over HTTP: transfers, a transaction of several postings, trades with
        fees (one pending, posted), holds posted in part, voided and expired, reversals of a
        transfer and of a trade, a frozen and unfrozen account, limits, codes that need escaping,
        and accounting time: entries backdated into January and February of last year (a
        transfer, a trade, a hold and its post, a reversal), January closed, reopened for a late
        invoice, then closed again with February (two closes standing, one reopened).
    python3 beancount_check.py compare BASE_URL EXPORT.beancount   (with beancount installed)
        loads the export with Beancount's loader (errors fail), realizes its balances and checks
        that they equal the ledger's own (`GET /v1/accounts/{code}`) for every account and asset.
    python3 beancount_check.py closes BASE_URL EXPORT.beancount BEAN_QUERY
        for every close the ledger lists (`GET /v1/periods`), runs BEAN_QUERY (bean-query) for the
        balances of the entries dated up to the close's last day, and checks that they equal the
        ledger's trial balance as of its end (`GET /v1/reports/trial-balance?as_of=`).

    python3 beancount_check.py tamper EXPORT.beancount TAMPERED.beancount
        writes a copy whose first `balance` is off by one in its last place, which bean-check
        must refuse (so a passing bean-check means something).

    python3 beancount_check.py trading BASE_URL EXPECTED.json [--require-trading]
        a seeded trading log over HTTP (`random.Random(TRADING_SEED)`): four traders (fifo,
        lifo, hifo, average), two instruments, holdings from a market maker that may go short,
        then TRADES random trades between the traders, one a day, with fees in the currency paid
        by buyer and seller and fees in another asset; writes the realized P&L an independent lot
        model (`LotBook`) expects to EXPECTED.json. Where the server does not take a booking
        method when opening an account or a cost on a transfer (routes of their own branches),
        it says so loudly and falls back (every trader fifo; holdings bought from the maker);
        with --require-trading that is an error.
    python3 beancount_check.py realized BASE_URL EXPORT.beancount BEAN_QUERY EXPECTED.json
        bean-query's realized P&L per income account, mapped back to (account, instrument) by
        the income accounts' `realized-account`/`realized-instrument` metadata, must equal the
        model's for the fifo, lifo and hifo traders; and, when the server answers
        `GET /v1/accounts/{code}/realized` with 200, the ledger's own totals too.

Beancount names are mapped back to ledger codes by the `ledger-code` metadata the export puts on
every `open` and `commodity`, not by re-implementing the mapping (the export's own accounts,
realized P&L and the equity accounts of lots, have none).
"""

import datetime
import json
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from fractions import Fraction

REQUEST_TIMEOUT_S = 10
EXPIRY_WAIT_S = 30


def call(base, method, path, key=None, body=None):
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")


def populate(base):
    post = lambda path, key, body: call(base, "POST", path, key, body)  # noqa: E731
    for code, scale in [("USD", 2), ("AAPL", 0), ("1INCH", 4), ("EUR_", 2), ("X", 0)]:
        post("/v1/assets", f"asset-{code}", {"code": code, "scale": scale})
    post("/v1/accounts", "open-world", {"code": "world:bank", "allow_negative": True})
    for code in ["alice:cash", "bob:cash", "broker:fees", "petty_cash:eur_2", "_ops:a-b", "user:0",
                 "idle:account", "round:trip"]:
        post("/v1/accounts", f"open-{code}", {"code": code})

    def transfer(key, source, destination, asset, amount, **extra):
        body = {"source": source, "destination": destination, "asset": asset, "amount": amount}
        return post("/v1/transfers", key, {**body, **extra})

    transfer("fund-alice", "world:bank", "alice:cash", "USD", "5000.00")
    transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "40")
    transfer("fund-1inch", "world:bank", "_ops:a-b", "1INCH", "12.3456")
    transfer("fund-eur", "world:bank", "petty_cash:eur_2", "EUR_", "70.05")
    transfer("fund-x", "world:bank", "user:0", "X", "3")
    # An idempotency key and metadata that need escaping in Beancount's strings.
    transfer('key "quoted" \\ back', "alice:cash", "user:0", "USD", "0.01",
             metadata={"note": 'a "quoted" \\ value', "lines": "one\ntwo"})
    post("/v1/transactions", "several", {"postings": [
        {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "10.00"},
        {"source": "alice:cash", "destination": "broker:fees", "asset": "USD", "amount": "0.50"},
        {"source": "_ops:a-b", "destination": "user:0", "asset": "1INCH", "amount": "0.0001"}]})

    # Trades with fees, one paid by each side; one reversed.
    trade = {"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
             "price": "189.50", "currency": "USD",
             "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"},
                      {"payer": "bob:cash", "account": "broker:fees", "amount": "0.75"}]}
    post("/v1/trades", "trade-1", trade)
    reversed_trade = post("/v1/trades", "trade-2", {**trade, "quantity": "2"})
    post(f"/v1/transactions/{reversed_trade['id']}/reverse", "reverse-trade-2", {})
    pending_trade = post("/v1/trades", "trade-3", {**trade, "quantity": "1", "pending": True})
    post(f"/v1/transactions/{pending_trade['id']}/post", "post-trade-3", {})

    # Holds: one posted in part, one voided, one expired by the ledger itself (its time is past
    # when it is made, so it expires at once, without waiting out a timeout).
    held = transfer("hold-1", "alice:cash", "bob:cash", "USD", "80.00", pending=True)
    post(f"/v1/transactions/{held['id']}/post", "post-1", {"amounts": ["60.00"], "metadata": {"ticket": "A-1"}})
    voided = transfer("hold-2", "alice:cash", "bob:cash", "USD", "25.00", pending=True, timeout_s=3600)
    post(f"/v1/transactions/{voided['id']}/void", "void-2", {})
    expired = transfer("hold-3", "alice:cash", "bob:cash", "USD", "5.00", pending=True,
                       expires_at="2020-01-01T00:00:00Z")
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while call(base, "GET", f"/v1/transactions/{expired['id']}")["status"] != "expired":
        if time.monotonic() > deadline:
            sys.exit(f"hold {expired['id']} did not expire within {EXPIRY_WAIT_S} s")
        time.sleep(0.1)

    # A transfer reversed; an account frozen and unfrozen; limits.
    mistake = transfer("mistake", "alice:cash", "bob:cash", "USD", "99.99")
    post(f"/v1/transactions/{mistake['id']}/reverse", "reverse-mistake", {"metadata": {"reason": "entered twice"}})
    post("/v1/accounts/bob:cash/freeze", "freeze-bob", {})
    post("/v1/accounts/bob:cash/unfreeze", "unfreeze-bob", {})
    call(base, "PATCH", "/v1/accounts/alice:cash/limits", "limits-alice",
         {"asset": "USD", "min_balance": "-100.00", "max_balance": None})
    # A balance back to zero, asserted as zero; an account that never moves money.
    transfer("round-out", "world:bank", "round:trip", "USD", "7.00")
    transfer("round-back", "round:trip", "world:bank", "USD", "7.00")
    accounting_time(base, post, transfer, trade)
    transfer("last", "bob:cash", "alice:cash", "AAPL", "1")


def last_year(month_day_time):
    """`MM-DDTHH:MM:SS…Z` of last year: always in the past, so always a time a write may count."""
    return f"{time.gmtime().tm_year - 1}-{month_day_time}"


def accounting_time(base, post, transfer, trade):
    """Entries that count in January and February of last year, though recorded today (so their
    accounts are opened, in Beancount, by their first entry's day), and two closes, the first
    reopened in between."""
    january_end, february_end = last_year("01-31T23:59:59.999999Z"), last_year("02-28T23:59:59.999999Z")
    transfer("jan-fund", "world:bank", "alice:cash", "USD", "300.00", effective_at=last_year("01-05T08:00:00Z"))
    paid = transfer("jan-pay", "alice:cash", "bob:cash", "USD", "45.10", effective_at=last_year("01-20T10:00:00.5Z"))
    post("/v1/periods/close", "close-january", {"through": january_end})
    post("/v1/periods/reopen", "reopen-january", {"reason": "a late invoice"})
    transfer("jan-late", "alice:cash", "broker:fees", "USD", "3.20", effective_at=last_year("01-31T23:59:59.999999Z"))
    # The reversal counts when its original did, by default: in January.
    post(f"/v1/transactions/{paid['id']}/reverse", "jan-reverse", {})
    post("/v1/trades", "feb-trade", {**trade, "quantity": "1", "effective_at": last_year("02-03T15:30:00Z")})
    held = transfer("feb-hold", "alice:cash", "bob:cash", "USD", "20.00", pending=True,
                    effective_at=last_year("02-10T00:00:00Z"))
    post(f"/v1/transactions/{held['id']}/post", "feb-post", {"amounts": ["15.00"], "effective_at": last_year("02-11T00:00:00Z")})
    post("/v1/periods/close", "close-february", {"through": february_end})


def ledger_balances(base):
    """{(account code, asset code): balance} for every account the ledger lists."""
    codes, cursor = [], None
    while True:
        query = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = call(base, "GET", "/v1/accounts?" + urllib.parse.urlencode(query))
        codes += [account["code"] for account in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    balances = {}
    for code in codes:
        account = call(base, "GET", "/v1/accounts/" + urllib.parse.quote(code, safe=":"))
        for balance in account["balances"]:
            balances[(code, balance["asset"])] = Decimal(balance["balance"])
    return codes, balances


def beancount_balances(path):
    """{(account code, asset code): balance} as Beancount realizes the export, and its codes."""
    from beancount import loader
    from beancount.core import data, realization

    entries, errors, _options = loader.load_file(path)
    if errors:
        for error in errors:
            print(f"beancount: {error.source.get('lineno')}: {error.message}", file=sys.stderr)
        sys.exit(f"Beancount's loader reported {len(errors)} errors")
    accounts = ledger_accounts(entries)
    assets = {e.currency: e.meta["ledger-code"] for e in entries if isinstance(e, data.Commodity)}
    real_root = realization.realize(entries)
    balances = {}
    for name, code in accounts.items():
        inventory = realization.get(real_root, name).balance
        # Units held at cost are one position per lot: an account's balance is their sum.
        for position in inventory:
            key = (code, assets[position.units.currency])
            balances[key] = balances.get(key, Decimal(0)) + position.units.number
    return sorted(accounts.values()), balances


def ledger_accounts(entries):
    """{Beancount account: ledger code} of the ledger's accounts (the export's own accounts have
    no `ledger-code`)."""
    from beancount.core import data
    return {e.account: e.meta["ledger-code"] for e in entries
            if isinstance(e, data.Open) and "ledger-code" in e.meta}


def compare(base, path):
    ledger_codes, ledger = ledger_balances(base)
    beancount_codes, beancount = beancount_balances(path)
    problems = []
    if ledger_codes != beancount_codes:
        problems.append(f"accounts differ: ledger {ledger_codes}, beancount {beancount_codes}")
    for key in sorted(set(ledger) | set(beancount)):
        ours, theirs = ledger.get(key, Decimal(0)), beancount.get(key, Decimal(0))
        if ours != theirs:
            problems.append(f"{key[0]} {key[1]}: ledger {ours}, beancount {theirs}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} differences between the ledger and Beancount")
    print(f"balances equal: {len(ledger_codes)} accounts, {len(ledger)} account balances "
          f"({sum(1 for v in ledger.values() if v)} non-zero)")


def bean_query_balances(bean_query, path, through_day, accounts, assets):
    """{(account code, asset code): balance} of the entries dated up to `through_day`, as
    bean-query sums them; the codes from the export's `ledger-code` metadata."""
    import csv
    import subprocess
    query = (f"SELECT account, currency, sum(number) AS balance WHERE date <= {through_day} "
             "GROUP BY account, currency")
    answer = subprocess.run([bean_query, "-f", "csv", path, query], check=True, capture_output=True, text=True)
    balances = {}
    for row in csv.DictReader(answer.stdout.splitlines()):
        number = Decimal(row["balance"].strip() or "0")
        if number and row["account"].strip() in accounts:
            balances[(accounts[row["account"].strip()], assets[row["currency"].strip()])] = number
    return balances


def trial_balance(base, through):
    """{(account code, asset code): balance} of the ledger's trial balance as of `through`."""
    answer = call(base, "GET", "/v1/reports/trial-balance?" + urllib.parse.urlencode({"as_of": through}))
    return {(row["account"], row["asset"]): Decimal(row["balance"]) for row in answer["rows"]}


def closes(base, path, bean_query):
    """Beancount's balances at the end of each close's last day (bean-query) against the ledger's
    trial balance as of the close's end, for every close, reopened or not."""
    from beancount import loader
    from beancount.core import data

    entries, errors, _options = loader.load_file(path)
    if errors:
        sys.exit(f"Beancount's loader reported {len(errors)} errors")
    accounts = ledger_accounts(entries)
    assets = {e.currency: e.meta["ledger-code"] for e in entries if isinstance(e, data.Commodity)}
    listed = [p for p in call(base, "GET", "/v1/periods")["items"] if p["action"] == "closed"]
    if len(listed) < 2:
        sys.exit(f"the test ledger should have two closes, it has {len(listed)}")
    problems = []
    for close in listed:
        through = close["through"]
        if not through.endswith("T23:59:59.999999Z"):
            sys.exit(f"close {close['period']} does not end a day: {through}")
        ours = trial_balance(base, through)
        theirs = bean_query_balances(bean_query, path, through[:10], accounts, assets)
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key, Decimal(0)) != theirs.get(key, Decimal(0)):
                problems.append(f"period {close['period']} {key[0]} {key[1]}: ledger {ours.get(key)}, "
                                f"bean-query {theirs.get(key)}")
        print(f"period {close['period']} through {through}: bean-query equals the trial balance "
              f"({len(ours)} rows)" if not problems else f"period {close['period']}: differs")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} differences between the trial balances and bean-query")


TRADING_SEED = 24
TRADES = 60
TRADERS = [("trader:a", "fifo"), ("trader:b", "lifo"), ("trader:c", "hifo"), ("trader:d", "average")]
MAKER = "market:maker"
INSTRUMENTS = ["BND", "ETF"]
# Each holding the maker sells a trader: (units, unit cost in USD), the second a day later.
HOLDINGS = [(10, "100.00"), (10, "120.00")]


def request(base, method, path, key=None, body=None):
    """(status, JSON answer) of a request, whatever its status."""
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def refused_field(status, answer, field):
    """Whether the server refused a request because it does not know `field` (a route of
    another branch): 4xx naming the field."""
    return 400 <= status < 500 and field in json.dumps(answer)


def exact_cents(value):
    """A Fraction that must be whole cents (the seeded log keeps every split exact: see
    `random_trades`), as a Decimal."""
    if (value * 100).denominator != 1:
        raise ValueError(f"{value} is not whole cents: the trading log must split exactly")
    return Decimal(value.numerator) / Decimal(value.denominator)


class LotBook:
    """An independent model of one account's lots of one instrument, written from the rules
    (docs/beancount.md): lots of one sign; a movement the other way closes lots, fifo (oldest
    first), lifo (newest first) or hifo (highest unit cost first, or for short lots the lowest
    unit proceeds first; ties oldest first); what is
    left of it opens a lot; amounts split by quantity. Realized = proceeds - cost."""

    def __init__(self, method):
        self.method, self.lots, self.opened = method, [], 0

    def order(self):
        if self.method == "lifo":
            return list(reversed(self.lots))
        if self.method == "hifo":
            # Long lots: the highest unit cost first; short lots, in mirror, the lowest unit
            # proceeds first (docs/events.md); ties oldest first.
            short = bool(self.lots) and self.lots[0]["units"] < 0
            unit = lambda lot: lot["amount"] / abs(lot["units"])  # noqa: E731
            return sorted(self.lots, key=lambda lot: (unit(lot) if short else -unit(lot), lot["seq"]))
        return list(self.lots)

    def move(self, units, amount):
        """Units > 0 bought for `amount`, < 0 sold for `amount`; returns (realized, closings)."""
        units, amount = Fraction(units), Fraction(amount)
        realized, closings, left = Fraction(0), 0, abs(units)
        if self.lots and (self.lots[0]["units"] > 0) != (units > 0):
            for lot in self.order():
                if left == 0:
                    break
                take = min(abs(lot["units"]), left)
                lot_part = Fraction(exact_cents(lot["amount"] * take / abs(lot["units"])))
                part = Fraction(exact_cents(amount * take / abs(units)))
                realized += part - lot_part if lot["units"] > 0 else lot_part - part
                lot["amount"] -= lot_part
                lot["units"] -= take if lot["units"] > 0 else -take
                left, closings = left - take, closings + 1
            self.lots = [lot for lot in self.lots if lot["units"] != 0]
        if left:
            rest = Fraction(exact_cents(amount * left / abs(units)))
            self.opened += 1
            self.lots.append({"units": left if units > 0 else -left, "amount": rest, "seq": self.opened})
        return realized, closings


def populate_trading(base, expected_path, require):
    post = lambda path, key, body: request(base, "POST", path, key, body)  # noqa: E731
    for code in INSTRUMENTS:
        expect(post("/v1/assets", f"asset-{code}", {"code": code, "scale": 0}), f"asset {code}")
    expect(post("/v1/accounts", "open-maker", {"code": MAKER, "allow_negative": True}), MAKER)
    missing, methods = [], {}
    for code, method in TRADERS:
        body = {"code": code, "allow_negative": True, "booking_method": method}
        status, answer = post("/v1/accounts", f"open-{code}", body)
        if refused_field(status, answer, "booking_method"):
            missing.append("booking_method on POST /v1/accounts")
            del body["booking_method"]
            status, answer = post("/v1/accounts", f"open-{code}-fifo", body)
        expect((status, answer), code)
        methods[code] = method if "booking_method" in body else "fifo"
        for asset, amount in [("USD", "1000000.00"), ("EUR_", "100.00")]:
            fund = {"source": "world:bank", "destination": code, "asset": asset, "amount": amount}
            expect(post("/v1/transfers", f"fund-{code}-{asset}", fund), f"fund {code}")
    books = {(code, i): LotBook(methods.get(code, "fifo")) for code in [*methods, MAKER]
             for i in INSTRUMENTS}
    day = iter(range(10_000))
    missing += holdings(post, books, day)
    expected = random_trades(post, books, day)
    missing = sorted(set(missing))
    with open(expected_path, "w") as out:
        json.dump({"methods": methods, "missing": missing, **expected}, out, indent=1)
    if missing:
        banner = ("TRADING CHECK INCOMPLETE: the server does not take " + "; ".join(missing) +
                  ". Every trader is fifo and holdings are bought from the maker by trades.")
        print(f"\n{'!' * 78}\n{banner}\n{'!' * 78}\n", file=sys.stderr)
        if require:
            sys.exit("--require-trading: " + banner)


def expect(answer, what):
    status, body = answer
    if not 200 <= status < 300:
        sys.exit(f"{what}: {status} {body}")
    return body


def trading_day(day):
    """Noon of the `day`th day from March 1 last year: after the closes `populate` makes, and
    one day per entry so that lots of one account never share a day (Beancount's LIFO orders
    lots of one day otherwise than the ledger: the export then names the lots, which this
    check could not tell from Beancount's own booking)."""
    start = datetime.datetime(time.gmtime().tm_year - 1, 3, 1, 12, tzinfo=datetime.timezone.utc)
    return (start + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def holdings(post, books, day):
    """Each trader's holdings from the maker: transfers at a stated cost, or where the server
    takes no cost, trades at that unit price. Returns what was missing."""
    missing = []
    for code, _ in TRADERS:
        for instrument in INSTRUMENTS:
            for n, (units, unit_cost) in enumerate(HOLDINGS):
                cost = f"{Decimal(unit_cost) * units:.2f}"
                body = {"source": MAKER, "destination": code, "asset": instrument,
                        "amount": str(units), "cost": {"amount": cost, "currency": "USD"},
                        "effective_at": trading_day(next(day))}
                key = f"hold-{code}-{instrument}-{n}"
                status, answer = post("/v1/transfers", key, body)
                if refused_field(status, answer, "cost"):
                    missing.append("cost on POST /v1/transfers")
                    trade = {"buyer": code, "seller": MAKER, "instrument": instrument,
                             "quantity": str(units), "price": unit_cost, "currency": "USD",
                             "effective_at": body["effective_at"]}
                    status, answer = post("/v1/trades", key + "-trade", trade)
                expect((status, answer), key)
                books[(code, instrument)].move(units, Fraction(cost))
                books[(MAKER, instrument)].move(-units, Fraction(cost))
    return missing


def random_trades(post, books, day):
    """TRADES random trades between the traders, with fees that are whole cents per unit (so
    that every split of a cost or proceeds is exact, and Beancount's unit costs, kept to 28
    digits, give the same figures as the ledger's splits at the currency's scale)."""
    rng = random.Random(TRADING_SEED)
    realized, disposals = {}, 0
    for n in range(TRADES):
        buyer, seller = rng.sample([code for code, _ in TRADERS], 2)
        instrument, units = rng.choice(INSTRUMENTS), rng.randint(1, 14)
        price = Decimal(rng.randint(8000, 13000)) / 100
        buyer_fee, seller_fee = (Decimal(rng.randint(0, 30) * units) / 100 for _ in range(2))
        fees = [{"payer": payer, "account": "broker:fees", "amount": f"{fee:.2f}"}
                for payer, fee in [(buyer, buyer_fee), (seller, seller_fee)] if fee]
        if rng.random() < 0.3:
            payer = rng.choice([buyer, seller])
            fees.append({"payer": payer, "account": "broker:fees", "asset": "EUR_", "amount": "0.35"})
        trade = {"buyer": buyer, "seller": seller, "instrument": instrument,
                 "quantity": str(units), "price": f"{price:.2f}", "currency": "USD", "fees": fees,
                 "effective_at": trading_day(next(day))}
        expect(post("/v1/trades", f"random-trade-{n}", trade), f"trade {n}")
        notional = Fraction(price) * units
        for code, moved, amount in [(buyer, units, notional + Fraction(buyer_fee)),
                                    (seller, -units, notional - Fraction(seller_fee))]:
            gained, closings = books[(code, instrument)].move(moved, amount)
            realized[f"{code} {instrument}"] = realized.get(f"{code} {instrument}", 0) + gained
            disposals += closings
    return {"realized": {k: str(exact_cents(Fraction(v))) for k, v in realized.items()},
            "disposals": disposals}


def beancount_realized(path, bean_query):
    """{(account code, instrument code): realized P&L} as bean-query sums the income accounts of
    the export (an income is minus a gain)."""
    import csv
    import subprocess
    from beancount import loader
    from beancount.core import data

    entries, errors, _options = loader.load_file(path)
    if errors:
        sys.exit(f"Beancount's loader reported {len(errors)} errors")
    names = {e.account: (e.meta["realized-account"], e.meta["realized-instrument"])
             for e in entries if isinstance(e, data.Open) and "realized-account" in e.meta}
    query = ("SELECT account, currency, sum(number) AS realized "
             "WHERE account ~ '^Income:Realized-PnL:' GROUP BY account, currency")
    answer = subprocess.run([bean_query, "-f", "csv", path, query], check=True, capture_output=True, text=True)
    realized = {}
    for row in csv.DictReader(answer.stdout.splitlines()):
        key = names[row["account"].strip()]
        realized[key] = realized.get(key, Decimal(0)) - Decimal(row["realized"].strip() or "0")
    return realized


def realized(base, path, bean_query, expected_path):
    with open(expected_path) as f:
        expected = json.load(f)
    theirs = beancount_realized(path, bean_query)
    problems, compared = [], {}
    for code, method in expected["methods"].items():
        if method == "average":
            continue  # Beancount does not book it: the export states its costs (docs/beancount.md)
        for instrument in INSTRUMENTS:
            ours = Decimal(expected["realized"].get(f"{code} {instrument}", "0"))
            got = theirs.get((code, instrument), Decimal(0))
            compared[method] = compared.get(method, 0) + 1
            if ours != got:
                problems.append(f"{code} ({method}) {instrument}: model {ours}, beancount {got}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} differences between the lot model and Beancount's realized P&L")
    books = ", ".join(f"{method} {n}" for method, n in sorted(compared.items()))
    print(f"realized P&L equal: {sum(compared.values())} account x instrument books ({books}), "
          f"{expected['disposals']} lot closings in {TRADES} trades")
    if expected["missing"]:
        print("  (not every method: the server does not take " + "; ".join(expected["missing"]) + ")")
    realized_route(base, theirs, [code for code, _ in TRADERS])


def realized_route(base, theirs, codes):
    """The ledger's own realized P&L (`GET /v1/accounts/{code}/realized`, totals per instrument
    and currency) against Beancount's, when the server has that route."""
    path = lambda code: "/v1/accounts/" + urllib.parse.quote(code, safe=":") + "/realized"  # noqa: E731
    status, _ = request(base, "GET", path(codes[0]))
    if status != 200:
        print(f"GET /v1/accounts/{{code}}/realized answers {status}: the ledger's own figures not compared")
        return
    problems, compared = [], 0
    for code in codes:
        totals = expect(request(base, "GET", path(code)), f"GET {path(code)}")["totals"]
        ledger = {row["instrument"]: Decimal(row["realized"]) for row in totals}
        for instrument in INSTRUMENTS:
            ours, got = ledger.get(instrument, Decimal(0)), theirs.get((code, instrument), Decimal(0))
            compared += 1
            if ours != got:
                problems.append(f"{code} {instrument}: ledger {ours}, beancount {got}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} differences between the ledger's realized P&L and Beancount's")
    print(f"the ledger's realized P&L (GET /v1/accounts/{{code}}/realized) equals Beancount's: {compared} books")


def tamper(path, tampered_path):
    with open(path) as export:
        lines = export.read().split("\n")
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(\S+ balance \S+\s+)(-?[0-9.]+)( ~ 0 \S+)", line)
        if match:
            number = Decimal(match[2])
            wrong = number + Decimal(1).scaleb(number.as_tuple().exponent)
            lines[i] = f"{match[1]}{wrong}{match[3]}"
            break
    else:
        sys.exit(f"no balance assertion in {path}")
    with open(tampered_path, "w") as tampered:
        tampered.write("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["populate"] and len(sys.argv) == 3:
        populate(sys.argv[2])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        compare(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["closes"] and len(sys.argv) == 5:
        closes(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1:2] == ["tamper"] and len(sys.argv) == 4:
        tamper(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["trading"] and len(sys.argv) >= 4 and sys.argv[4:] in ([], ["--require-trading"]):
        populate_trading(sys.argv[2], sys.argv[3], sys.argv[4:] == ["--require-trading"])
    elif sys.argv[1:2] == ["realized"] and len(sys.argv) == 6:
        realized(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
