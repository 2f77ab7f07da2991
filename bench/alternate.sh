#!/usr/bin/env bash
# Two workloads of one build in turn on one server, round after round, so that a noisy machine
# and a growing database weigh on both alike: prints each round's figures and the ratio of the
# medians (B ÷ A). What `effective ÷ transfers` in compare.sh measures once, measured over rounds:
#
#   bench/alternate.sh transfers effective [rounds=4] [duration_s=15] [release_dir=target/release]
#
# Needs PostgreSQL's server binaries and python3, curl.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 WORKLOAD_A WORKLOAD_B [rounds=4] [duration_s=15] [release_dir]" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-4} duration_s=${4:-15}
dir=$(cd "${5:-$(dirname "$0")/../target/release}" && pwd)

source "$(dirname "$0")/servers.sh"
trap servers_stop EXIT
postgres_start ledger-alternate
"${psql_[@]}" "$pg_bin/createdb" alternate
ledger_start "$dir/ledger" alternate
"$dir/ledger-bench" --addr "$ledger_addr" --accounts 10000 --requests 1 --quiet --no-check >/dev/null
results="$work/results.txt"
for round in $(seq 1 "$rounds"); do
    for workload in "$a" "$b"; do
        line=$("$dir/ledger-bench" --addr "$ledger_addr" --no-setup --accounts 10000 --clients 64 \
            --duration-s "$duration_s" --quiet --json --workload "$workload" | tail -n 1)
        echo "$workload $line" >>"$results"
        echo "   round $round, $workload: $(python3 -c 'import json,sys; print("%.0f transfers/s, check %s" % (json.loads(sys.argv[1])["transfers_per_s"], json.loads(sys.argv[1])["check"]))' "$line")" >&2
    done
done
python3 - "$results" "$a" "$b" <<'PY'
import json, statistics, sys
rows = [l.split(" ", 1) for l in open(sys.argv[1])]
by = {}
for name, line in rows:
    by.setdefault(name, []).append(json.loads(line)["transfers_per_s"])
a, b = sys.argv[2], sys.argv[3]
ma, mb = statistics.median(by[a]), statistics.median(by[b])
print(f"{a}: median {ma:,.0f} transfers/s ({', '.join(f'{x:,.0f}' for x in by[a])})")
print(f"{b}: median {mb:,.0f} transfers/s ({', '.join(f'{x:,.0f}' for x in by[b])})")
print(f"{b} ÷ {a}: {mb / ma:.3f}")
PY
