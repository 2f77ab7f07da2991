#!/usr/bin/env bash
# The Beancount export, checked by Beancount itself: makes a test ledger over HTTP (transfers,
# trades with fees, holds posted in part, voided and expired, reversals, codes that need escaping,
# entries backdated into January and February of last year and two closes, the first reopened in
# between; scripts/beancount_check.py), exports it with `ledger export --format beancount`, runs
# `bean-check` on the file (no errors allowed: every entry dated the day it counts, every account
# open by then, the standing close's trial balance asserted), and compares the balances Beancount
# realizes with the ledger's own (`GET /v1/accounts/{code}`) for every account and asset, and
# bean-query's balances up to each close's last day with the ledger's trial balance as of its end
# (`GET /v1/reports/trial-balance`). Then lots: a seeded trading log (four traders, fifo, lifo,
# hifo and average, two instruments, 60 random trades with fees) whose realized P&L, as bean-query
# sums the export's income accounts, must equal an independent lot model's for the fifo, lifo and
# hifo traders, and the ledger's own (`GET /v1/accounts/{code}/realized`) when the server has that
# route. Where the server takes no booking method or cost yet, the trading log says so loudly and
# falls back to fifo traders (--require-trading: fail instead). Last, bean-check must refuse a
# copy with one balance off by one in its last place (its balances are exact: `~ 0`).
#
#   scripts/beancount_check.sh                    # root Assets (the default)
#   scripts/beancount_check.sh --root Liabilities # another --beancount-root
#   scripts/beancount_check.sh --keep             # keep the export and logs (in a /tmp directory)
#   scripts/beancount_check.sh --require-trading  # every booking method and cost, or fail
#
# It installs beancount and beanquery (pinned) from PyPI into a virtual environment beside the
# build (target/, or $CARGO_TARGET_DIR when set; the tests of infrastructure::beancount find
# bean-check there) (python3-venv through apt-get when missing; about 5 s from their wheels), builds and starts
# `target/debug/ledger serve` on a free port with a PostgreSQL cluster of its own (`--data-dir` in
# a scratch directory, `--insecure-no-auth`), and stops both at the end. Needs PostgreSQL's server
# binaries (apt-get install -y postgresql) and python3.
set -euo pipefail

root_name=Assets
keep=false
require_trading=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root_name=$2; shift ;;
        --keep) keep=true ;;
        --require-trading) require_trading=(--require-trading) ;;
        *) echo "usage: $0 [--root Assets|Liabilities|Equity|Income|Expenses] [--keep] [--require-trading]" >&2; exit 2 ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/scripts/python_tool.sh"
venv=$(beancount_venv "$root")

ledger=$(build_ledger)

work=$(scratch_dir beancount)
server_pid=
trap 'finish $? "$keep"' EXIT

port=$(free_port)
env -u DATABASE_URL RUST_LOG=warn "$ledger" serve --listen "127.0.0.1:$port" --data-dir "$work/pg" \
    --insecure-no-auth >"$work/ledger.log" 2>&1 &
server_pid=$!

base="http://127.0.0.1:$port"
wait_ready "$base" "$server_pid" "$work/ledger.log"

echo "== a test ledger over HTTP"
python3 scripts/beancount_check.py populate "$base"

echo "== a seeded trading log over HTTP"
python3 scripts/beancount_check.py trading "$base" "$work/trading.json" ${require_trading[@]+"${require_trading[@]}"}

echo "== ledger export --format beancount --beancount-root $root_name"
# The same data directory: the export reuses the cluster the server started.
env -u DATABASE_URL RUST_LOG=warn "$ledger" export --data-dir "$work/pg" --format beancount \
    --beancount-root "$root_name" --output "$work/ledger.beancount" 2>>"$work/export.log"

echo "== bean-check $("$venv/bin/pip" show beancount | sed -n "s/^Version: //p")"
"$venv/bin/bean-check" "$work/ledger.beancount"

echo "== balances: Beancount's equal the ledger's"
"$venv/bin/python" scripts/beancount_check.py compare "$base" "$work/ledger.beancount"

echo "== each close: bean-query's balances up to its last day equal the ledger's trial balance"
"$venv/bin/python" scripts/beancount_check.py closes "$base" "$work/ledger.beancount" "$venv/bin/bean-query"

echo "== realized P&L: bean-query's per income account equals an independent lot model's"
"$venv/bin/python" scripts/beancount_check.py realized "$base" "$work/ledger.beancount" "$venv/bin/bean-query" \
    "$work/trading.json"

echo "== bean-check refuses the export with one balance off by one in its last place"
python3 scripts/beancount_check.py tamper "$work/ledger.beancount" "$work/tampered.beancount"
if "$venv/bin/bean-check" "$work/tampered.beancount" 2>"$work/tampered.log"; then
    echo "bean-check accepted a wrong balance" >&2
    exit 1
fi
grep -m1 "Balance failed" "$work/tampered.log"
