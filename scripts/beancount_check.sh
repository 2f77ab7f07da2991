#!/usr/bin/env bash
# The Beancount export, checked by Beancount itself: makes a test ledger over HTTP (transfers,
# trades with fees, holds posted in part, voided and expired, reversals, codes that need escaping;
# scripts/beancount_check.py), exports it with `ledger export --format beancount`, runs
# `bean-check` on the file (no errors allowed), and compares the balances Beancount realizes with
# the ledger's own (`GET /v1/accounts/{code}`) for every account and asset. Last, bean-check must
# refuse a copy with one balance off by one in its last place (its balances are exact: `~ 0`).
#
#   scripts/beancount_check.sh                    # root Assets (the default)
#   scripts/beancount_check.sh --root Liabilities # another --beancount-root
#   scripts/beancount_check.sh --keep             # keep the export and logs (in a /tmp directory)
#
# It installs beancount (pinned) from PyPI into a virtual environment under target/ (python3-venv
# through apt-get when missing; about 5 s from its wheel), builds and starts
# `target/debug/ledger serve` on a free port with a PostgreSQL cluster of its own (`--data-dir` in
# a scratch directory, `--insecure-no-auth`), and stops both at the end. Needs PostgreSQL's server
# binaries (apt-get install -y postgresql) and python3.
set -euo pipefail

root_name=Assets
keep=false
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root_name=$2; shift ;;
        --keep) keep=true ;;
        *) echo "usage: $0 [--root Assets|Liabilities|Equity|Income|Expenses] [--keep]" >&2; exit 2 ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
beancount_version=3.2.3
venv="$root/target/beancount-venv"

# Beancount, in a virtual environment of its own.
source "$root/scripts/python_tool.sh"
pinned_venv "$venv" beancount "$beancount_version"

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

echo "== ledger export --format beancount --beancount-root $root_name"
# The same data directory: the export reuses the cluster the server started.
env -u DATABASE_URL RUST_LOG=warn "$ledger" export --data-dir "$work/pg" --format beancount \
    --beancount-root "$root_name" --output "$work/ledger.beancount" 2>>"$work/export.log"

echo "== bean-check $beancount_version"
"$venv/bin/bean-check" "$work/ledger.beancount"

echo "== balances: Beancount's equal the ledger's"
"$venv/bin/python" scripts/beancount_check.py compare "$base" "$work/ledger.beancount"

echo "== bean-check refuses the export with one balance off by one in its last place"
python3 scripts/beancount_check.py tamper "$work/ledger.beancount" "$work/tampered.beancount"
if "$venv/bin/bean-check" "$work/tampered.beancount" 2>"$work/tampered.log"; then
    echo "bean-check accepted a wrong balance" >&2
    exit 1
fi
grep -m1 "Balance failed" "$work/tampered.log"
