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

Beancount names are mapped back to ledger codes by the `ledger-code` metadata the export puts on
every `open` and `commodity`, not by re-implementing the mapping.
"""

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

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
    accounts = {e.account: e.meta["ledger-code"] for e in entries if isinstance(e, data.Open)}
    assets = {e.currency: e.meta["ledger-code"] for e in entries if isinstance(e, data.Commodity)}
    real_root = realization.realize(entries)
    balances = {}
    for name, code in accounts.items():
        inventory = realization.get(real_root, name).balance
        for position in inventory:
            balances[(code, assets[position.units.currency])] = position.units.number
    return sorted(accounts.values()), balances


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
        if number:
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
    accounts = {e.account: e.meta["ledger-code"] for e in entries if isinstance(e, data.Open)}
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
    else:
        sys.exit(__doc__)
