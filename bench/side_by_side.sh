#!/usr/bin/env bash
# Two builds of the ledger side by side, in one run, on one PostgreSQL started here (fsync and
# synchronous_commit on): each build gets its own database and its own server, started in turn,
# round after round, so a noisy machine slows both alike. Prints one markdown row per workload:
# the median transfers/s of each build over the rounds (every round's figure in brackets), the
# ratio of the medians, and the median p99.
#
#   git worktree add /tmp/ledger-old <rev> && (cd /tmp/ledger-old && cargo build --release -p api -p ledger-bench)
#   bench/side_by_side.sh /tmp/ledger-old/target/release target/release [rounds] [duration_s]
#
# Each directory must hold `ledger` and its `ledger-bench`. Builds from before API keys ignore the
# key both are given. Needs PostgreSQL's server binaries and python3, curl.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 OLD_RELEASE_DIR NEW_RELEASE_DIR [rounds=3] [duration_s=15]" >&2; exit 2; }
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
rounds=${3:-3}
duration_s=${4:-15}
# `batch` runs as compare.sh runs it: 4 clients, 1,000 transfers per request.
read -r -a workloads <<<"${LEDGER_SIDE_BY_SIDE_WORKLOADS:-transfers spread trades batch}"

source "$(dirname "$0")/servers.sh"
trap servers_stop EXIT
postgres_start ledger-side-by-side
for build in old new; do
    "${psql_[@]}" "$pg_bin/createdb" "$build"
done

results="$work/results.txt"
for round in $(seq 1 "$rounds"); do
    for build in old new; do
        dir=${!build}
        ledger_start "$dir/ledger" "$build"
        if [ "$round" = 1 ]; then
            "$dir/ledger-bench" --addr "$ledger_addr" --accounts 10000 --requests 1 --quiet --no-check >/dev/null
        fi
        for workload in "${workloads[@]}"; do
            shape=(--clients 64)
            [ "$workload" = batch ] && shape=(--clients 4 --batch-size 1000)
            line=$("$dir/ledger-bench" --addr "$ledger_addr" --no-setup --accounts 10000 "${shape[@]}" \
                --duration-s "$duration_s" --quiet --no-check --json --workload "$workload" | tail -n 1)
            echo "$workload $build $line" >>"$results"
            echo "   round $round, $build, $workload: $(python3 -c 'import json,sys; print("%.0f transfers/s" % json.loads(sys.argv[1])["transfers_per_s"])' "$line")" >&2
        done
        ledger_stop
    done
done

python3 - "$results" "$rounds" "$duration_s" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    workload, build, answer = line.split(" ", 2)
    runs.setdefault((workload, build), []).append(json.loads(answer))
print("| workload | clients | old transfers/s | new transfers/s | new ÷ old | old p99 ms | new p99 ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for workload in dict.fromkeys(w for w, _ in runs):
    old, new = runs[(workload, "old")], runs[(workload, "new")]
    median = lambda rows, key: statistics.median(r[key] for r in rows)
    every = lambda rows: ", ".join(f'{r["transfers_per_s"]:,.0f}' for r in rows)
    old_tps, new_tps = median(old, "transfers_per_s"), median(new, "transfers_per_s")
    clients = 4 if workload == "batch" else 64
    print(f"| {workload} | {clients} | {old_tps:,.0f} ({every(old)}) | {new_tps:,.0f} ({every(new)}) | "
          f"{new_tps / old_tps:.2f} | {median(old, 'latency_ms_p99'):.1f} | {median(new, 'latency_ms_p99'):.1f} |")
print()
print(f"Medians over {sys.argv[2]} round(s) of {sys.argv[3]} s each, the builds taking turns.")
PY
