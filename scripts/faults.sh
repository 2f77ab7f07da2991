#!/usr/bin/env bash
# Crash and outage survival: runs the ledger under load of concurrent transfers, breaks it in
# each of the ways below, lets it recover, and holds it to what its clients were told. Prints one
# markdown table and exits non-zero if any scenario fails.
#
#   scripts/faults.sh            # the longer run, for people (about 5 minutes after the build)
#   scripts/faults.sh --short    # every scenario with shorter loads, for CI (under 4 minutes)
#
# Scenarios (each on a PostgreSQL cluster of its own, provisioned by `ledger serve --data-dir`):
#   1  kill -9 of `ledger serve` mid-load, then a restart
#   2  PostgreSQL stopped (`pg_ctl stop -m immediate`) mid-load, then started again; the ledger
#      is not restarted
#   3a the writer's PostgreSQL backend terminated mid-batch (pg_terminate_backend), three times
#   3b the writer's statements blocked past its statement timeout (a table locked from outside)
#   3c the read pool exhausted (one connection, many slow readers: whole-log audits) while
#      writes go on
#   4  a second `ledger serve` on the same database follows (forwarding writes to the first),
#      then takes over from a kill -9
#
# Every scenario is then checked by `ledger-bench --verify` on the journals of its clients: each
# write answered 2xx is in the log at its position; none answered with an error is; a write
# whose outcome is unknown (connection cut, or 503 commit_outcome_unknown) is retried with its
# key and that answer is authoritative; every answer is replayed unchanged (status and body, with
# Idempotent-Replayed: true); positions have no gaps; each asset's balances sum to zero; the hash
# chain verifies; no answer is a 5xx other than 503, none to a write took longer than 10 s, and no
# request went unanswered for its timeout (15 s; 60 s for the whole-log audits of 3c).
#
# Needs PostgreSQL's server binaries (apt-get install -y postgresql), python3 and curl.
set -euo pipefail

load_s=30
accounts=10000
for arg in "$@"; do
    case "$arg" in
        --short) load_s=9; accounts=2000 ;;
        *) echo "usage: $0 [--short]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# Every server starts with this admin key (the first start stores it), and ledger-bench sends it:
# the faults are survived with authentication on, as in production.
LEDGER_API_KEY="lk_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export LEDGER_API_KEY LEDGER_BOOTSTRAP_ADMIN_KEY="$LEDGER_API_KEY"
cd "$root"
cargo build --release --locked -q -p api -p ledger-bench
ledger="$root/target/release/ledger"
bench="$root/target/release/ledger-bench"
pg_bin=$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")")

work=$(mktemp -d /tmp/ledger-faults.XXXXXX)
chmod 755 "$work" # when root, PostgreSQL runs as an unprivileged user that must reach it
results="$work/results.jsonl"
: >"$results"
started_at=$(date +%s)

pids=()        # every process started here, killed at the end
clusters=()    # every data directory, stopped at the end
cleanup() {
    local status=$?
    [ "$status" = 0 ] || keep_work=true
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for dir in "${clusters[@]}"; do pg_ctl_ "$dir" -m immediate -w stop >/dev/null 2>&1 || true; done
    if [ "${keep_work:-false}" = true ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

log() { echo "[$(($(date +%s) - started_at))s] $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# pg_ctl on a cluster the ledger provisioned, as the user that owns it (PostgreSQL refuses root).
pg_ctl_() {
    local dir=$1
    shift
    local as=()
    [ "$(id -u)" = 0 ] && as=(runuser -u "$(stat -c %U "$dir")" --)
    (cd / && "${as[@]}" "$pg_bin/pg_ctl" -D "$dir" "$@")
}
socket_dir() { cat "$1/ledger-socket-dir"; }
# The URL `ledger serve` uses for its own cluster (see infrastructure/src/local_postgres.rs).
database_url() { echo "postgres:///ledger?host=$(socket_dir "$1")&port=5432&user=ledger"; }
sql() { # data_dir sql
    "$pg_bin/psql" -h "$(socket_dir "$1")" -p 5432 -U ledger -d ledger -Atqc "$2"
}
pg_start() { # data_dir: with the options `ledger serve` starts it with
    pg_ctl_ "$1" -l "$1.log" -w -t 60 start \
        -o "-c listen_addresses='' -c unix_socket_directories='$(socket_dir "$1")' -c port=5432 -c max_connections=200" >/dev/null
}

readyz() { # port -> "status writer role"
    local body
    body=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$1/readyz" 2>/dev/null) || body=" 000"
    echo "${body##* } $(echo "${body% *}" | python3 -c 'import json,sys
try: d = json.load(sys.stdin); print(d.get("writer","?"), d.get("role","?"))
except Exception: print("? ?")')"
}
wait_role() { # port role seconds -> 0 when /readyz says ready with that role within the time
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        [[ "$(readyz "$1")" == "200 "*" $2" ]] && return 0
        sleep 0.2
    done
    return 1
}
wait_status() { # port wanted_http_status seconds -> 0 when /readyz answers it within the time
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        [ "$(readyz "$1" | cut -d' ' -f1)" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}

serve() { # name port [env...]: starts `ledger serve` in the background; sets $server_pid
    local name=$1 port=$2
    shift 2
    env RUST_LOG=info "$@" "$ledger" serve --listen "127.0.0.1:$port" >>"$work/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
}
serve_local() { # name port data_dir [env...]: a ledger on its own cluster, waited for
    local name=$1 port=$2 dir=$3
    shift 3
    serve "$name" "$port" LEDGER_DATA_DIR="$dir" "$@"
    clusters+=("$dir")
    wait_status "$port" 200 90 || { tail -n 30 "$work/$name.log" >&2; return 1; }
}
stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# With the ledger stopped: every projection, the asynchronous ones whose projector the fault
# interrupted included, equals its rebuild from the log (exit status 0 of `ledger replay`).
replayed() { # scenario data_dir
    local s=$1 dir=$2
    if LEDGER_DATA_DIR="$dir" "$ledger" replay >"$work/${s%% *}.replay.json" 2>>"$work/${s%% *}.replay.log"; then
        note "$s" "ledger replay: every projection equals its rebuild from the log"
    else
        fail "$s" "ledger replay: $(head -c 400 "$work/${s%% *}.replay.json")"
    fi
}

prepare() { # port: assets, accounts and money
    "$bench" --addr "127.0.0.1:$1" --accounts "$accounts" --requests 1 --quiet --no-check >/dev/null
}
load() { # name port seconds [ledger-bench flags]: journaled load in the background; sets $load_pid
    local name=$1 port=$2 seconds=$3
    shift 3
    "$bench" --addr "127.0.0.1:$port" --no-setup --accounts "$accounts" --duration-s "$seconds" \
        --quiet --journal "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 &
    load_pid=$!
    pids+=("$load_pid")
}

# Per scenario: failures of its own checks and notes, next to what --verify says.
fail() { echo "$2" >>"$work/$1.fail"; log "$1 FAILED: $2"; }
note() { echo "$2" >>"$work/$1.notes"; log "$1: $2"; }
verify() { # scenario port journals...
    local scenario=$1 port=$2
    shift 2
    local files=()
    for name in "$@"; do files+=("$work/$name.jsonl"); done
    local line
    line=$("$bench" --addr "127.0.0.1:$port" --accounts "$accounts" --verify "${files[@]}" 2>>"$work/$scenario.verify.log" | tail -n 1) || true
    [ -n "$line" ] || line='{"passed": false, "failures": ["ledger-bench --verify gave no verdict"]}'
    python3 - "$scenario" "$line" "$work" >>"$results" <<'PY'
import json, os, sys
scenario, line, work = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.loads(line)
read = lambda ext: [l for l in open(os.path.join(work, scenario + ext)).read().splitlines() if l] if os.path.exists(os.path.join(work, scenario + ext)) else []
d["scenario"], d["extra_failures"], d["notes"] = scenario, read(".fail"), read(".notes")
print(json.dumps(d))
PY
    log "$scenario verified: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("passed" if d.get("passed") else "FAILED", d.get("failures", [])[:3])' "$line")"
}
journal_codes() { # name -> "status code" counts of its answers
    python3 - "$work/$1.jsonl" <<'PY'
import collections, json, sys
c = collections.Counter()
for l in open(sys.argv[1]):
    e = json.loads(l)
    c[f'{e["status"]} {e["code"]}'] += 1
print(", ".join(f"{k}: {v}" for k, v in sorted(c.items())))
PY
}
failed_sessions() { grep -c "writer session failed" "$work/$1.log" || true; }

# ---------------------------------------------------------------------------------------------
scenario_1() {
    local s="1 kill -9 of ledger serve" dir="$work/s1/pg" port
    port=$(free_port)
    log "== $s"
    serve_local s1 "$port" "$dir"
    prepare "$port"
    load s1 "$port" "$load_s" --clients 32
    local loader=$load_pid
    sleep $((load_s / 3))
    kill -9 "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    note "$s" "killed ledger serve (pid $server_pid) at position $(sql "$dir" 'SELECT max(position) FROM events')"
    sleep 1
    local t0=$SECONDS
    serve_local s1 "$port" "$dir" || fail "$s" "the ledger did not come back after the restart"
    note "$s" "restarted; ready again in $((SECONDS - t0)) s"
    wait "$loader" || true
    verify "$s" "$port" s1
    stop_server "$server_pid"
    replayed "$s" "$dir"
}

scenario_2() {
    local s="2 PostgreSQL stopped (immediate)" dir="$work/s2/pg" port
    port=$(free_port)
    log "== $s"
    serve_local s2 "$port" "$dir"
    local pid=$server_pid
    prepare "$port"
    load s2 "$port" "$load_s" --clients 32 --workload mixed
    local loader=$load_pid
    sleep $((load_s / 3))
    pg_ctl_ "$dir" -m immediate -w stop >/dev/null
    note "$s" "pg_ctl stop -m immediate"
    local outage=$((load_s / 3)) unready=false slowest=0 probes=0 bad=0
    local deadline=$((SECONDS + outage))
    while [ $SECONDS -lt "$deadline" ]; do
        # A write and a read during the outage: each must be a quick 503.
        for request in "-X POST -H content-type:application/json -H Idempotency-Key:probe-$probes-$RANDOM -d {\"source\":\"bench:a1\",\"destination\":\"bench:a2\",\"asset\":\"USD\",\"amount\":\"1.00\"} http://127.0.0.1:$port/v1/transfers" \
            "http://127.0.0.1:$port/v1/accounts/bench:a1"; do
            # shellcheck disable=SC2086
            read -r code took < <(curl -s -o /dev/null --max-time 15 -H "Authorization: Bearer $LEDGER_API_KEY" -w '%{http_code} %{time_total}\n' $request || true) || true
            probes=$((probes + 1))
            [ "$code" = 503 ] || bad=$((bad + 1))
            slowest=$(python3 -c "print(max($slowest, ${took:-99}))")
        done
        [ "$(readyz "$port" | cut -d' ' -f1)" = 503 ] && unready=true
        sleep 0.3
    done
    [ "$unready" = true ] && note "$s" "/readyz answered 503 during the outage" || fail "$s" "/readyz never turned unready"
    [ "$bad" = 0 ] || fail "$s" "$bad of $probes probe requests during the outage were not 503"
    python3 -c "import sys; sys.exit(0 if $slowest <= 5 else 1)" || fail "$s" "a probe during the outage took $slowest s (bound 5 s)"
    note "$s" "$probes probe writes and reads during the outage: all 503 within ${slowest} s"
    pg_start "$dir"
    local t0=$SECONDS
    if wait_status "$port" 200 30 && kill -0 "$pid" 2>/dev/null; then
        note "$s" "PostgreSQL started again; the same ledger process was ready $((SECONDS - t0)) s later"
    else
        fail "$s" "the ledger did not recover by itself within 30 s"
    fi
    wait "$loader" || true
    note "$s" "answers: $(journal_codes s2)"
    python3 - "$work/s2.jsonl" <<'PY' || fail "$s" "a 503 took longer than 5 s"
import json, sys
sys.exit(0 if max([e["ms"] for e in map(json.loads, open(sys.argv[1])) if e["status"] == 503] or [0]) <= 5000 else 1)
PY
    verify "$s" "$port" s2
    stop_server "$pid"
    replayed "$s" "$dir"
}

scenario_3() {
    local dir="$work/s3/pg" port s
    port=$(free_port)

    s="3a writer's backend terminated"
    log "== $s"
    serve_local s3a "$port" "$dir"
    prepare "$port"
    load s3a "$port" "$load_s" --clients 32
    local loader=$load_pid killed=0 pid
    for _ in 1 2 3; do
        sleep $((load_s / 4))
        # The writer's lock is the advisory lock 0x6c65_6467_6572 (classid 0x6c65, objid
        # 0x64676572); the projector holds another one, which must not be picked instead.
        pid=$(sql "$dir" "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND classid = 27749 AND objid = 1684497778")
        [ -n "$pid" ] && [ "$(sql "$dir" "SELECT pg_terminate_backend($pid)")" = t ] && killed=$((killed + 1))
    done
    wait "$loader" || true
    [ "$killed" = 3 ] && note "$s" "terminated the writer's backend 3 times" || fail "$s" "terminated the writer's backend only $killed times"
    note "$s" "writer sessions failed and recovered: $(failed_sessions s3a); answers: $(journal_codes s3a)"
    wait_status "$port" 200 10 || fail "$s" "not ready 10 s after the last termination"
    verify "$s" "$port" s3a
    stop_server "$server_pid"

    s="3b writer statement timeout"
    log "== $s"
    serve_local s3b "$port" "$dir" LEDGER_WRITER_STATEMENT_TIMEOUT_MS=1000
    load s3b "$port" "$load_s" --clients 32
    loader=$load_pid
    sleep $((load_s / 3))
    # Blocks every write of the writer (and its reload) for 3 s, three times its timeout.
    sql "$dir" "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;" >/dev/null
    note "$s" "held an exclusive lock on events for 3 s (writer statement timeout 1 s)"
    wait "$loader" || true
    local failures
    failures=$(failed_sessions s3b)
    [ "$failures" -gt 0 ] && note "$s" "writer batches failed on the timeout: $failures; answers: $(journal_codes s3b)" \
        || fail "$s" "the writer never failed a batch"
    wait_status "$port" 200 10 || fail "$s" "not ready 10 s after the lock was released"
    verify "$s" "$port" s3b
    stop_server "$server_pid"

    s="3c read pool exhausted"
    log "== $s"
    serve_local s3c "$port" "$dir" LEDGER_DB_POOL_MAX=1
    load s3c "$port" "$load_s" --clients 16
    loader=$load_pid
    load s3c-reads "$port" "$load_s" --clients 16 --workload reads --request-timeout-ms 60000
    wait "$loader" "$load_pid" || true
    note "$s" "one read connection, 16 clients auditing the whole log; writes: $(journal_codes s3c); reads: $(journal_codes s3c-reads)"
    wait_status "$port" 200 10 || fail "$s" "not ready after the readers stopped"
    verify "$s" "$port" s3c s3c-reads
    stop_server "$server_pid"
}

scenario_4() {
    local s="4 second server takes over" dir="$work/s4/pg" first second
    first=$(free_port)
    second=$(free_port)
    log "== $s"
    serve_local s4-first "$first" "$dir"
    local first_pid=$server_pid
    prepare "$first"
    serve s4-second "$second" DATABASE_URL="$(database_url "$dir")"
    local second_pid=$server_pid
    load s4-first "$first" "$load_s" --clients 32
    local loader=$load_pid
    sleep $((load_s / 4))
    local state
    state=$(readyz "$second")
    [ "$state" = "200 standby follower" ] && note "$s" "second server: /readyz 200, a follower" || fail "$s" "second server's /readyz said '$state', not '200 standby follower'"
    load s4-standby "$second" 2 --clients 8
    wait "$load_pid" || true
    local codes
    codes=$(journal_codes s4-standby)
    if [[ "$codes" =~ ^"201 None: "[0-9]+$ ]]; then
        note "$s" "writes to the follower, forwarded to the writer: $codes"
    else
        fail "$s" "writes to the follower were not all forwarded and acknowledged: $codes"
    fi
    sleep $((load_s / 4))
    kill -9 "$first_pid"
    local head t0=$SECONDS
    head=$(sql "$dir" 'SELECT max(position) FROM events')
    if wait_role "$second" writer 30; then
        note "$s" "killed the first at position $head; the second was the writer $((SECONDS - t0)) s later"
    else
        fail "$s" "the second server did not take over within 30 s"
    fi
    load s4-second "$second" $((load_s / 2)) --clients 32
    wait "$load_pid" "$loader" || true
    local after
    after=$(sql "$dir" 'SELECT max(position) FROM events')
    [ "$after" -gt "$head" ] && note "$s" "the second continued the log from $head to $after" || fail "$s" "the second wrote nothing"
    verify "$s" "$second" s4-first s4-standby s4-second
    stop_server "$second_pid"
    replayed "$s" "$dir"
}

scenario_1
scenario_2
scenario_3
scenario_4

if python3 - "$results" "$(($(date +%s) - started_at))" "$load_s" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mark = lambda ok: "yes" if ok else "NO"
frac = lambda a, b: f"{a}/{b}"
print("| scenario | writes acknowledged | acknowledged found in log | errors-not-in-log | sum per asset zero | chain verifies | retries replay original | result |")
print("| --- | ---: | ---: | ---: | --- | --- | ---: | --- |")
failed = []
for r in rows:
    ok = bool(r.get("passed")) and not r["extra_failures"]
    if not ok:
        failed.append(r)
    print(f'| {r["scenario"]} | {r.get("acknowledged", 0)} | {frac(r.get("acknowledged_in_log", 0), r.get("acknowledged", 0))} | '
          f'{frac(r.get("errors_not_in_log", 0), r.get("errors", 0))} | {mark(r.get("sum_zero"))} | {mark(r.get("chain_intact"))} | '
          f'{frac(r.get("replays_identical", 0), r.get("replays", 0))} | {"PASS" if ok else "FAIL"} |')
print()
for r in rows:
    print(f'- {r["scenario"]}: {r.get("unknown", 0)} writes of unknown outcome retried '
          f'({r.get("unknown_resolved_in_log", 0)} of them were in the log), log head {r.get("head")}, '
          f'positions contiguous: {mark(r.get("positions_contiguous"))}, slowest answer to a write {r.get("max_answer_ms")} ms, '
          f'slowest 503 {r.get("max_503_ms")} ms, other 5xx: {r.get("server_errors")}')
    for n in r["notes"]:
        print(f"  - {n}")
    for f in r.get("failures", []) + r["extra_failures"]:
        print(f"  - FAILED: {f}")
print()
print(f"Loads of {sys.argv[3]} s per phase; the whole run took {sys.argv[2]} s.")
sys.exit(1 if failed else 0)
PY
then
    exit 0
fi
exit 1
