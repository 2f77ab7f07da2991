#!/usr/bin/env bash
# Side by side, in one run, on one PostgreSQL started here: pgbench's TPC-B (-M prepared) and the
# ledger's workloads, at the same client counts for the same duration, durable (fsync and
# synchronous_commit on). Prints one markdown table: each figure and its ratio to TPC-B; then the
# writer's phases per batch, and the CPU per transfer of each part (bench/cpu.py).
#
#   bench/compare.sh            # full: 20 s per run
#   bench/compare.sh --short    # smoke: 4 s per run, under 3 minutes after the build
#   bench/compare.sh --memory   # also: resident size of `ledger serve` holding 1,000,000 accounts
#   TIGERBEETLE=../shared/anchors/tigerbeetle/tigerbeetle bench/compare.sh
#                               # also: TigerBeetle's own benchmark at batch 1000 and 8189, in the
#                               # same run, with its CPU per transfer (bench/tigerbeetle.py)
#   bench/compare.sh --replicated   # also: transfers@64 and batch against the synchronous
#                                   # cluster of scripts/cluster.sh (Patroni, HAProxy; through the
#                                   # writer and through a follower), in turns with the single node
#
# Needs PostgreSQL's server binaries and pgbench (apt-get install -y postgresql), python3, curl.
set -euo pipefail

duration_s=20
memory=false
replicated=false
for arg in "$@"; do
    case "$arg" in
        --short) duration_s=4 ;;
        --memory) memory=true ;;
        --replicated) replicated=true ;;
        *) echo "usage: $0 [--short] [--memory] [--replicated]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -q -p api -p ledger-bench
ledger="$root/target/release/ledger"
bench="$root/target/release/ledger-bench"

source "$root/bench/servers.sh"
trap servers_stop EXIT
postgres_start ledger-compare
"${psql_[@]}" "$pg_bin/createdb" pgbench
"${psql_[@]}" "$pg_bin/createdb" ledger

results="$work/results.jsonl"
: >"$results"
record() { # name clients json
    python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d["name"]=sys.argv[1]; d["clients"]=int(sys.argv[2]); print(json.dumps(d))' "$1" "$2" "$3" >>"$results"
}

echo "== pgbench TPC-B, -M prepared, scale 10" >&2
"${psql_[@]}" "$pg_bin/pgbench" -i -q -s 10 pgbench >/dev/null 2>&1
for clients in 16 64; do
    out=$("${psql_[@]}" "$pg_bin/pgbench" -M prepared -c "$clients" -j 2 -T "$duration_s" pgbench 2>/dev/null)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
    p50=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    record "tpcb" "$clients" "{\"requests_per_s\": $tps, \"transfers_per_s\": $tps, \"latency_ms_avg\": ${p50:-0}, \"check\": null}"
    echo "   $clients clients: $tps tps" >&2
done

echo "== ledger" >&2
ledger_start "$ledger" ledger
addr=$ledger_addr
"$bench" --addr "$addr" --accounts 10000 --requests 1 --quiet --no-check >/dev/null
# The CPU each part of the stack spends during a run, from /proc (bench/cpu.py): before, after.
export PSQL="$pg_bin/psql"
cpu_before() { python3 "$root/bench/cpu.py" snapshot "$work/pg" "$ledger_pid" >"$work/cpu.before"; }
cpu_after() { # -> {"ledger_ms": …, "writer_ms": …, "projector_ms": …, "postgres_other_ms": …}
    python3 "$root/bench/cpu.py" snapshot "$work/pg" "$ledger_pid" >"$work/cpu.after"
    python3 "$root/bench/cpu.py" diff "$work/cpu.before" "$work/cpu.after"
}
merge() { python3 -c 'import json,sys; d={}; [d.update(json.loads(a)) for a in sys.argv[1:]]; print(json.dumps(d))' "$@"; }
run() { # name clients [ledger-bench flags]
    local name=$1 clients=$2
    shift 2
    local line phases cpu
    curl -fsS "http://$addr/metrics" >"$work/metrics.before"
    cpu_before
    line=$("$bench" --addr "$addr" --no-setup --accounts 10000 --clients "$clients" --duration-s "$duration_s" --quiet --json "$@" | tail -n 1)
    cpu=$(cpu_after)
    curl -fsS "http://$addr/metrics" >"$work/metrics.after"
    phases=$(python3 "$root/bench/writer_phases.py" "$work/metrics.before" "$work/metrics.after")
    line=$(merge "$line" "$phases" "$cpu")
    record "$name" "$clients" "$line"
    echo "   $name, $clients clients: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f transfers/s, p99 %.2f ms, check %s" % (d["transfers_per_s"], d["latency_ms_p99"], d["check"]))' "$line")" >&2
}
for clients in 16 64; do
    run transfers "$clients" --workload transfers
done
# effective: transfers@64 that each state an effective_at (an hour back), beside `transfers`: what
# accounting time costs a write (issue 23: at most 5 %).
run effective 64 --workload effective
run hot 64 --workload hot
run spread 64 --workload spread
run trades 64 --workload trades
# trades_t1: the same trades settling T+1, booked pending all through the run; the ledger settles
# them by itself at its settlement time, set to just after the run (the server restarts with it:
# state restored from the database, as after any restart). Then how long the writer takes to
# settle them all, read from the house account's pending credits (its fees) falling to zero.
# (Across midnight UTC the settlement time would be the next day's: avoid that minute.)
ledger_stop
settles_at_s=$(( $(date +%s) + duration_s + 15 ))
ledger_start "$ledger" ledger --settlement-time "$(date -u -d "@$settles_at_s" +%H:%M:%S)"
addr=$ledger_addr
run trades_t1 64 --workload trades-t1
python3 "$root/bench/settled.py" "http://$addr" "$settles_at_s" >"$work/settled.json"
echo "   trades_t1 settlement: $(cat "$work/settled.json")" >&2
run mixed 64 --workload mixed
# batch, and PostgreSQL's floor for the same rows (bench/copy_floor.py): the rows each table got
# per transfer during the run, written again by COPY into copies of those tables. The projections
# must have caught up with the runs before (lots behind `trades`, say) first, or their rows would
# count as batch's.
projections_caught_up() { # waits until every projection of the default ledger lags 0 events
    for _ in $(seq 1 "$CATCH_UP_POLLS_MAX"); do
        curl -fsS "http://$addr/readyz" | python3 -c 'import json,sys; sys.exit(any(p["lag_events"] for p in json.load(sys.stdin)["projections"]))' && return 0
        sleep 0.2 # polling the server's own figure
    done
    echo "the projections did not catch up" >&2
    return 1
}
CATCH_UP_POLLS_MAX=3000 # 10 minutes
projections_caught_up
"${psql_[@]}" python3 "$root/bench/copy_floor.py" counts ledger >"$work/rows.before"
run batch 4 --workload batch --batch-size 1000
"${psql_[@]}" python3 "$root/bench/copy_floor.py" counts ledger --settled >"$work/rows.after"
batch_transfers=$(tail -n 1 "$results" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["transfers_per_s"]*d["elapsed_s"]))')
"${psql_[@]}" python3 "$root/bench/copy_floor.py" measure ledger "$work/pg" "$work/rows.before" "$work/rows.after" "$batch_transfers" >"$work/floor.json"
echo "   COPY floor of batch's rows: $(cat "$work/floor.json")" >&2

# ledgers: the `transfers` load spread over 4 ledgers, 64 clients in all from one ledger-bench
# (client i to ledger i mod 4, as transfers@64 is one ledger-bench), each ledger checked on its
# own.
ledgers_n=4
ledger_flags=()
for i in $(seq 0 $((ledgers_n - 1))); do ledger_flags+=(--ledger "bench-l$i"); done
"$bench" --addr "$addr" "${ledger_flags[@]}" --accounts 2500 --requests 1 --quiet --no-check >/dev/null
cpu_before
line=$("$bench" --addr "$addr" "${ledger_flags[@]}" --no-setup --accounts 2500 --clients 64 \
    --duration-s "$duration_s" --quiet --json --workload transfers | tail -n 1)
line=$(merge "$line" "$(cpu_after)")
record "ledgers" 64 "$line"
echo "   ledgers (64 clients over 4 ledgers): $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f transfers/s, p99 %.2f ms, check %s" % (d["transfers_per_s"], d["latency_ms_p99"], d["check"]))' "$line")" >&2
# Transfers between two of those ledgers: a hold in each, then both posted (no check: the check
# follows one ledger's log; the tests prove these).
cpu_before
line=$("$bench" --addr "$addr" --no-setup --no-check --accounts 2500 --clients 64 --duration-s "$duration_s" \
    --quiet --json --workload ledger-transfers | tail -n 1)
line=$(merge "$line" "$(cpu_after)")
record "ledger-transfers" 64 "$line"
echo "   ledger-transfers, 64 clients: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f transfers/s, p99 %.2f ms" % (d["transfers_per_s"], d["latency_ms_p99"]))' "$line")" >&2

# TigerBeetle in the same run (TIGERBEETLE: a tigerbeetle binary, e.g. the one in
# ../shared/anchors/tigerbeetle/): its own benchmark at batch 1000 and at its default 8189, with
# the CPU of its replica and client during the transfers (bench/tigerbeetle.py).
: >"$work/tigerbeetle.jsonl"
if [ -n "${TIGERBEETLE:-}" ]; then
    tb_transfers=$([ "$duration_s" -ge 20 ] && echo 2000000 || echo 200000)
    for tb_batch in 1000 8189; do
        echo "== TigerBeetle: $tb_transfers transfers, batch $tb_batch" >&2
        python3 "$root/bench/tigerbeetle.py" "$TIGERBEETLE" "$tb_transfers" "$tb_batch" >>"$work/tigerbeetle.jsonl"
        echo "   $(tail -n 1 "$work/tigerbeetle.jsonl")" >&2
    done
fi

rss_kib=$(ps -o rss= -p "$ledger_pid" | tr -d ' ')
accounts_for_rss=10002
if [ "$memory" = true ]; then
    echo "== opening 1,000,000 accounts for the memory reading" >&2
    "$bench" --addr "$addr" --accounts 1000000 --requests 1 --quiet --no-check >/dev/null
    rss_kib=$(ps -o rss= -p "$ledger_pid" | tr -d ' ')
    accounts_for_rss=1000002
    # A restart reloads the writer's state (every account, balance and open hold) from the
    # database before the node is ready: how long that takes at this size, and the size after.
    ledger_stop
    reload_started=$(date +%s.%N)
    ledger_start "$ledger" ledger
    addr=$ledger_addr
    reload_s=$(python3 -c "import sys; print(round($(date +%s.%N) - $reload_started, 1))")
    echo "   restart with $accounts_for_rss accounts: ready in $reload_s s, $(( $(ps -o rss= -p "$ledger_pid") / 1024 )) MiB" >&2
    echo "{\"reload_s\": $reload_s, \"rss_kib_after_restart\": $(ps -o rss= -p "$ledger_pid" | tr -d ' ')}" >"$work/reload.json"
fi

if [ "$replicated" = true ]; then
    # The same workloads on the replicated cluster, in turns with the single node above (still
    # running), so that the machine's drift hits both alike.
    export LEDGER_CLUSTER_DIR="$work/cluster"
    trap 'LEDGER_CLUSTER_DIR="$work/cluster" "$root/scripts/cluster.sh" down >/dev/null 2>&1 || true; servers_stop' EXIT
    echo "== the synchronous cluster (scripts/cluster.sh up)" >&2
    "$root/scripts/cluster.sh" up >"$work/cluster.json"
    node_addr() { # role -> host:port of the first ledger node with it
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(next(l["url"] for l in s["ledgers"] if l["role"]==sys.argv[2])[7:])' "$work/cluster.json" "$1"
    }
    single=$addr
    writer_addr=$(node_addr writer)
    follower_addr=$(node_addr follower)
    cluster_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_key"])' "$work/cluster.json")
    LEDGER_API_KEY=$cluster_key "$bench" --addr "$writer_addr" --accounts 10000 --requests 1 --quiet --no-check >/dev/null
    for round in 1 2; do
        for target in single writer follower; do
            case $target in
                single) addr=$single; key=$LEDGER_API_KEY ;;
                writer) addr=$writer_addr; key=$cluster_key ;;
                follower) addr=$follower_addr; key=$cluster_key ;;
            esac
            LEDGER_API_KEY=$key run "replicated:$target:transfers:$round" 64 --workload transfers
            LEDGER_API_KEY=$key run "replicated:$target:batch:$round" 4 --workload batch --batch-size 1000
        done
    done
    addr=$single
fi

python3 - "$results" "$duration_s" "$rss_kib" "$accounts_for_rss" "$work/settled.json" "$work/floor.json" "$work/tigerbeetle.jsonl" "$work/reload.json" <<'PY'
import json, os, sys
floor = json.load(open(sys.argv[6]))
tigerbeetle = [json.loads(l) for l in open(sys.argv[7])]
rows = [json.loads(l) for l in open(sys.argv[1])]
replicated = [r for r in rows if r["name"].startswith("replicated:")]
rows = [r for r in rows if not r["name"].startswith("replicated:")]
duration, rss_kib, accounts = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tpcb = {r["clients"]: r["transfers_per_s"] for r in rows if r["name"] == "tpcb"}
failed = [r["name"] for r in rows if r.get("check") == "failed"]
print(f"| workload | clients | transfers/s | requests/s | p50 ms | p99 ms | p99.9 ms | × TPC-B | check |")
print(f"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    base = tpcb.get(r["clients"]) or tpcb.get(64)
    ratio = r["transfers_per_s"] / base if base else 0
    f = lambda k: f'{r[k]:.2f}' if k in r else "–"
    print(f'| {"TPC-B (pgbench)" if r["name"] == "tpcb" else r["name"]} | {r["clients"]} | {r["transfers_per_s"]:,.0f} | '
          f'{r["requests_per_s"]:,.0f} | {f("latency_ms_p50")} | {f("latency_ms_p99")} | {f("latency_ms_p999")} | '
          f'{ratio:.2f} | {r.get("check") or "–"} |')
by = {r["name"]: r for r in rows if r["clients"] == 64}
if "effective" in by and "transfers" in by:
    print()
    print(f'effective ÷ transfers (the same transfers, each stating effective_at): {by["effective"]["transfers_per_s"] / by["transfers"]["transfers_per_s"]:.2f}')
if "trades_t1" in by and "trades" in by:
    settled = json.load(open(sys.argv[5]))
    print()
    print(f'trades_t1 ÷ trades (the same trades booked pending, settling T+1): {by["trades_t1"]["transfers_per_s"] / by["trades"]["transfers_per_s"]:.2f}; '
          f'then {settled["trades"]:,} settled by the ledger in {settled["seconds"]:.1f} s after their settlement time ({settled["per_s"]:,.0f}/s)')
if "ledgers" in by and "transfers" in by:
    print()
    print(f'ledgers ÷ transfers (the same load over 4 ledgers, each with its own writer): {by["ledgers"]["transfers_per_s"] / by["transfers"]["transfers_per_s"]:.2f}')
if "hot" in by and "spread" in by and "transfers" in by:
    print()
    print(f'hot ÷ spread (the same transaction, fee to one account vs to random ones): {by["hot"]["transfers_per_s"] / by["spread"]["transfers_per_s"]:.2f}; '
          f'hot ÷ transfers: {by["hot"]["transfers_per_s"] / by["transfers"]["transfers_per_s"]:.2f}')
print()
print("Where the writer's time goes, per committed batch (its own metrics), and the asynchronous projections' lag:")
print()
print("| workload | clients | commands per batch | decide ms | hash ms | rows ms | write + commit ms | projection lag p99 ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    if "writer_ms_per_batch" not in r:
        continue
    p = r["writer_ms_per_batch"]
    g = lambda v: "–" if v is None else f"{v:.2f}"
    print(f'| {r["name"]} | {r["clients"]} | {g(r["commands_per_batch"])} | {g(p["decide"])} | {g(p["hash"])} | '
          f'{g(p["rows"])} | {g(p["write"])} | {g(r["projection_lag_ms_p99"])} |')
print()
print("CPU per transfer, µs, by part (user + system, from /proc: bench/cpu.py; the load generator's own):")
print()
print("| workload | clients | load generator | ledger | writer's backends | projector's backends | other PostgreSQL | total |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    if "ledger_ms" not in r or not r.get("transfers_per_s"):
        continue
    transfers = r["transfers_per_s"] * r["elapsed_s"]
    parts = [r.get("cpu_ms", 0), r["ledger_ms"], r["writer_ms"], r["projector_ms"], r["postgres_other_ms"]]
    print(f'| {r["name"]} | {r["clients"]} | ' + " | ".join(f"{p * 1000 / transfers:.0f}" for p in parts)
          + f' | {sum(parts) * 1000 / transfers:.0f} |')
batch = next((r for r in rows if r["name"] == "batch"), None)
if batch and "ledger_ms" in batch:
    transfers = batch["transfers_per_s"] * batch["elapsed_s"]
    total = sum(batch.get(k, 0) for k in ("cpu_ms", "ledger_ms", "writer_ms", "projector_ms", "postgres_other_ms")) * 1000 / transfers
    rows_per = sum(v["inserted"] + v["updated"] for v in floor["rows_per_transfer"].values())
    print()
    print(f'PostgreSQL\'s floor for batch\'s rows (bench/copy_floor.py: the {rows_per:.1f} rows per transfer it wrote, over '
          f'{len(floor["rows_per_transfer"])} tables, by COPY into copies with the same indexes, {floor["floor_transfers"]:,} transfers in one '
          f'durable transaction): {floor["backend_cpu_us_per_transfer"]:.1f} µs of backend CPU and {floor["wall_us_per_transfer"]:.1f} µs '
          f'of wall time per transfer; batch\'s total CPU per transfer is {total:.0f} µs, {total / max(floor["backend_cpu_us_per_transfer"], 0.01):.1f} × the floor.')
if tigerbeetle:
    print()
    print("TigerBeetle in the same run (its own `tigerbeetle benchmark`, one replica; CPU of its processes during the transfers):")
    print()
    print("| system | batch size | transfers/s | batch p99 ms | CPU µs per transfer: load generator / server / total | × TigerBeetle@1000 |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    base = next((t["transfers_per_s"] for t in tigerbeetle if t["batch_size"] == 1000), None)
    for t in tigerbeetle:
        n = t["transfers_per_s"] * t["elapsed_s"]
        c, s_ = t["client_ms"] * 1000 / n, t["replica_ms"] * 1000 / n
        print(f'| TigerBeetle | {t["batch_size"]} | {t["transfers_per_s"]:,.0f} | {t["p99_ms"]} | {c:.1f} / {s_:.1f} / {c + s_:.1f} | '
              f'{t["transfers_per_s"] / base:.2f} |')
    if batch and base:
        transfers = batch["transfers_per_s"] * batch["elapsed_s"]
        gen = batch.get("cpu_ms", 0) * 1000 / transfers
        server = sum(batch[k] for k in ("ledger_ms", "writer_ms", "projector_ms", "postgres_other_ms")) * 1000 / transfers
        print(f'| ledger `batch` | 1000 | {batch["transfers_per_s"]:,.0f} | {batch["latency_ms_p99"]:.2f} | {gen:.1f} / {server:.1f} / {gen + server:.1f} | '
              f'{batch["transfers_per_s"] / base:.2f} |')
print()
print(f"Each run {duration} s. Resident size of `ledger serve` with {accounts:,} accounts: {rss_kib / 1024:,.0f} MiB.")
if os.path.exists(sys.argv[8]):
    reload = json.load(open(sys.argv[8]))
    print(f'That is {rss_kib * 1024 / accounts:,.0f} bytes per account. After a restart the node was ready in {reload["reload_s"]} s '
          f'(the writer reloads every account, balance and open hold), holding {reload["rss_kib_after_restart"] / 1024:,.0f} MiB.')
if replicated:
    # Mean of the rounds per target and workload (two rounds: the median is the mean).
    runs = {}
    for r in replicated:
        _, target, workload, _ = r["name"].split(":")
        runs.setdefault((workload, target), []).append(r)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)
    print()
    print("Replicated: the synchronous cluster of scripts/cluster.sh (3 PostgreSQL nodes under Patroni, synchronous_mode_strict, through HAProxy), in turns with the single node:")
    print()
    print("| workload | clients | single node transfers/s | cluster via the writer | × single | via a follower (forwarded) | × single | p99 ms single / writer / follower |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for workload, clients in (("transfers", 64), ("batch", 4)):
        s_, w, f = (runs.get((workload, t), []) for t in ("single", "writer", "follower"))
        if not (s_ and w and f):
            continue
        base = mean(s_, "transfers_per_s")
        print(f'| {workload} | {clients} | {base:,.0f} | {mean(w, "transfers_per_s"):,.0f} | {mean(w, "transfers_per_s") / base:.2f} | '
              f'{mean(f, "transfers_per_s"):,.0f} | {mean(f, "transfers_per_s") / base:.2f} | '
              f'{mean(s_, "latency_ms_p99"):.1f} / {mean(w, "latency_ms_p99"):.1f} / {mean(f, "latency_ms_p99"):.1f} |')
    failed += [r["name"] for r in replicated if r.get("check") == "failed"]
if failed:
    print(f"CORRECTNESS CHECK FAILED: {', '.join(failed)}")
    sys.exit(1)
PY
