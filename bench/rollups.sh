#!/usr/bin/env bash
# Roll-up reads at scale: how long `GET /v1/balances` and `GET /v1/accounts/tree` take the server
# with 1,000,000 accounts spread over a tree of codes (issue 15: under 50 ms). On a throwaway
# PostgreSQL with `ledger serve` (bench/servers.sh):
#
# 1. setup: `ledger-bench --codes tree` opens the accounts over HTTP (`broker:f<firm>:client:
#    c<i>:cash` over 100 firms, and one in a hundred `bank:b<i>`) and funds each with USD and AAPL
#    through the batch endpoint; then waits until the `rollups` projection has caught up with the
#    log (its lag in /readyz);
# 2. each request SAMPLES times on one keep-alive connection (curl, loopback), after WARMUP
#    unmeasured ones: the server's own time (its `Server-Timing` header, taken from before
#    authentication to the response) and curl's time_total; median, p99 and max in ms;
# 3. the plans of the roll-up queries the server ran, EXPLAIN (ANALYZE, BUFFERS) by auto_explain,
#    so that they can be seen to be index range scans, not sums over accounts.
#
#   bench/rollups.sh            # 1,000,000 accounts (the setup takes most of the time)
#   bench/rollups.sh --short    # 20,000 accounts, under a minute after the build
#
# The table goes to stdout, progress to stderr. Needs PostgreSQL's server binaries
# (apt-get install -y postgresql), python3, curl ≥ 7.84 (for %header{}).
set -euo pipefail

accounts=1000000
case "${1:-}" in
    --short) accounts=20000 ;;
    "") ;;
    *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac
# Measured requests per request type, and unmeasured ones before them.
samples=${ROLLUPS_SAMPLES:-300}
warmup=20

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -q -p api -p ledger-bench
target="${CARGO_TARGET_DIR:-$root/target}/release"
ledger="$target/ledger"
bench="$target/ledger-bench"

source "$root/bench/servers.sh"
trap servers_stop EXIT
postgres_start ledger-rollups
"${psql_[@]}" "$pg_bin/createdb" ledger
sql() { "${psql_[@]}" "$pg_bin/psql" -XAtq -d ledger -c "$1"; }
ledger_start "$ledger" ledger
base="http://$ledger_addr"
auth=(-H "Authorization: Bearer $LEDGER_API_KEY")

# The rollups projection's lag in events, from /readyz (absent: not known yet).
rollups_lag() {
    curl -fsS "$base/readyz" | python3 -c '
import json, sys
lags = [p["lag_events"] for p in json.load(sys.stdin)["projections"] if p["name"] == "rollups"]
print(lags[0] if lags else -1)'
}

echo "== setup: $accounts accounts in a tree of codes, each funded with USD and AAPL" >&2
started=$(date +%s.%N)
"$bench" --addr "$ledger_addr" --codes tree --accounts "$accounts" --requests 1 --quiet --no-check >/dev/null
written=$(date +%s.%N)
until [ "$(rollups_lag)" = 0 ]; do sleep 0.2; done
caught_up=$(date +%s.%N)
events=$(sql "SELECT position FROM projection_head")
setup=$(python3 -c 'import sys; a, b, c = map(float, sys.argv[1:]); print(f"{b - a:.0f} s writing, then {c - b:.0f} s until the rollups projection caught up")' \
    "$started" "$written" "$caught_up")
echo "   $events events; $setup" >&2

# Codes the requests ask about (ledger-bench's `tree` shape): firm 7, and one of its clients.
leaf="broker:f7:client:c700:cash"
wide="broker:f7:client"
under_wide=$(curl -fsS "${auth[@]}" "$base/v1/balances?prefix=$wide" | python3 -c 'import json, sys; print(json.load(sys.stdin)["accounts"])')
# A later page under the wide prefix, half way through it (20 pages at most): follow
# next_cursor that many pages of 100.
page_hops=$(( under_wide / 200 < 20 ? (under_wide / 200 > 0 ? under_wide / 200 : 1) : 20 ))
cursor=""
for _ in $(seq 1 "$page_hops"); do
    cursor=$(curl -fsS "${auth[@]}" "$base/v1/accounts/tree?prefix=$wide${cursor:+&cursor=$cursor}" |
        python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)["next_cursor"] or "", safe=""))')
done

# name|path: what each row of the table measures.
requests=(
    "balances, whole ledger|/v1/balances"
    "balances, whole ledger, asset=USD|/v1/balances?asset=USD"
    "balances, root \`broker\`|/v1/balances?prefix=broker"
    "balances, root \`broker\`, asset=USD|/v1/balances?prefix=broker&asset=USD"
    "balances, firm \`broker:f7\`|/v1/balances?prefix=broker:f7"
    "balances, \`$wide\`|/v1/balances?prefix=$wide"
    "balances, one account \`$leaf\`|/v1/balances?prefix=$leaf"
    "balances, one account, asset=AAPL|/v1/balances?prefix=$leaf&asset=AAPL"
    "tree, top|/v1/accounts/tree"
    "tree, under \`broker\` (100 children)|/v1/accounts/tree?prefix=broker"
    "tree, under \`$wide\` ($under_wide children), first page of 100|/v1/accounts/tree?prefix=$wide"
    "tree, under \`$wide\`, page $((page_hops + 1)) of 100 (cursor)|/v1/accounts/tree?prefix=$wide&cursor=$cursor"
    "tree, under \`$wide\`, first page of 1000|/v1/accounts/tree?prefix=$wide&limit=1000"
)

timings="$work/timings.tsv"
: >"$timings"
# One curl, one keep-alive connection, $2 requests to $1: status, curl's time_total in s, and the
# Server-Timing header, one line each.
sample() {
    local args=() i
    for i in $(seq 1 "$2"); do args+=(-o /dev/null "$base$1"); done
    curl -sS "${auth[@]}" -w '%{http_code}\t%{time_total}\t%header{server-timing}\n' "${args[@]}"
}
echo "== $samples requests of each kind (after $warmup unmeasured)" >&2
for request in "${requests[@]}"; do
    name=${request%%|*}
    path=${request#*|}
    sample "$path" "$warmup" >/dev/null
    sample "$path" "$samples" | sed "s|^|$name\t|" >>"$timings"
done

python3 - "$timings" "$accounts" "$events" "$samples" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
accounts, events, samples = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
by = {}
for name, status, total_s, timing in rows:
    if status != "200":
        sys.exit(f"{name}: HTTP {status}")
    server_ms = float(timing.split("dur=")[1].split(";")[0].split(",")[0])
    by.setdefault(name, []).append((server_ms, float(total_s) * 1000))
def stats(xs):
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return f"{statistics.median(xs):.2f} | {p99:.2f} | {xs[-1]:.2f}"
print(f"{accounts:,} accounts ({events:,} events), {samples} requests of each kind, one keep-alive connection:")
print()
print("| request | server median ms | server p99 ms | server max ms | curl median ms | curl p99 ms | curl max ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
worst = 0.0
for name, xs in by.items():
    server, total = [x[0] for x in xs], [x[1] for x in xs]
    worst = max(worst, max(server))
    print(f"| {name} | {stats(server)} | {stats(total)} |")
print()
print(f"Slowest server time of all: {worst:.2f} ms (target: under 50 ms).")
PY

echo "== the plans of the roll-up queries (auto_explain, on a restarted server)" >&2
# auto_explain for the sessions of a restarted server only, so that it cost nothing above.
sql "ALTER DATABASE ledger SET session_preload_libraries = 'auto_explain'"
sql "ALTER DATABASE ledger SET auto_explain.log_min_duration = 0"
sql "ALTER DATABASE ledger SET auto_explain.log_analyze = on"
sql "ALTER DATABASE ledger SET auto_explain.log_buffers = on"
ledger_stop
ledger_start "$ledger" ledger
base="http://$ledger_addr"
log_from=$(wc -l <"$work/pg.log")
for path in "/v1/balances?asset=USD" "/v1/accounts/tree?prefix=$wide&cursor=$cursor"; do
    curl -fsS "${auth[@]}" -o /dev/null "$base$path"
done
echo
echo "Plans at $accounts accounts (\`/v1/balances?asset=USD\`, then a later page of \`/v1/accounts/tree?prefix=$wide\`):"
echo
echo '```'
tail -n +"$((log_from + 1))" "$work/pg.log" | python3 -c '
import re, sys
# A log entry starts with its timestamp; auto_explain writes "LOG:  duration: … plan:", then the
# query text and the plan on the lines after it.
entries = []
for line in sys.stdin:
    if re.match(r"\d{4}-\d\d-\d\d ", line):
        entries.append([line.split("LOG:  ", 1)[-1].rstrip()])
    elif entries:
        # A page of prefixes bound as an array literal: its first ones are enough to read.
        line = re.sub(r"\x27\{([^}]{80})[^}]*\}\x27", lambda m: "\x27{" + m.group(1) + "…}\x27", line)
        entries[-1].append(line.rstrip())
for entry in entries:
    text = "\n".join(entry)
    if "plan:" in entry[0] and "rollup" in text:
        print(text)
        print()
'
echo '```'
