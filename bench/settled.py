"""How long the ledger took to settle the trades_t1 run's trades by itself (bench/compare.sh).

    python3 bench/settled.py BASE_URL SETTLES_AT_EPOCH_S

Every trades_t1 trade pays the house account a fee, reserved until the trade settles, so the
house's pending credits in USD fall to zero exactly when the last trade has settled. Polls them
(every POLL_S, at most WAIT_MAX_S after the settlement time) and prints one JSON line:
{"trades": settled trades (the house's pending credits ÷ the fee, before), "seconds": from the
settlement time until none is pending, "per_s": trades ÷ seconds}.
"""

import json
import os
import sys
import time
import urllib.request
from decimal import Decimal

HOUSE = "bench:house"
FEE = Decimal("0.01")
POLL_S = 0.05
WAIT_MAX_S = 600


def pending_credits(base):
    request = urllib.request.Request(f"{base}/v1/accounts/{HOUSE}")
    # The key the benchmark's server was started with (bench/servers.sh), as ledger-bench sends it.
    if os.environ.get("LEDGER_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['LEDGER_API_KEY']}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        account = json.load(answer)
    for balance in account["balances"]:
        if balance["asset"] == "USD":
            return Decimal(balance.get("pending_credits") or "0")
    return Decimal(0)


def main(base, settles_at):
    before = pending_credits(base)
    if time.time() >= settles_at:
        sys.exit("settled.py: started after the settlement time; the run was longer than planned")
    while time.time() < settles_at:
        time.sleep(POLL_S)
    while pending_credits(base) > 0:
        if time.time() > settles_at + WAIT_MAX_S:
            sys.exit(f"settled.py: still pending {WAIT_MAX_S} s after the settlement time")
        time.sleep(POLL_S)
    seconds = max(time.time() - settles_at, POLL_S)
    trades = int(before / FEE)
    print(json.dumps({"trades": trades, "seconds": seconds, "per_s": trades / seconds}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
