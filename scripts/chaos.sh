#!/usr/bin/env bash
# High availability under faults: for each fault below, a fresh cluster (scripts/cluster.sh:
# etcd, three PostgreSQL nodes under Patroni with synchronous replication, HAProxy, three ledger
# nodes), journaled load on all three ledger nodes (writes through followers are forwarded to the
# writer; the mixed load reads its own writes back with min_position from replicas), the fault,
# its healing, and then the checks. Prints one markdown table and exits non-zero if a fault fails.
#
#   scripts/chaos.sh            # 30 s loads, the writer paused for 30 s (about 12 minutes)
#   scripts/chaos.sh --short    # 12 s loads, paused for 12 s, for CI (about 6 minutes)
#   scripts/chaos.sh --short writer-kill etcd-kill   # only the faults named
#
# Faults:
#   writer-kill        kill -9 of the writer node: another node is the writer within 2 s
#   writer-pause       SIGSTOP of the writer node, then SIGCONT: another is the writer within
#                      10 s; the woken node appends nothing (fenced by its lease) and follows
#   pg-primary-kill    kill -9 of the PostgreSQL primary's postmaster: Patroni promotes the
#                      synchronous standby; writes resume within 30 s
#   sync-standby-kill  kill -9 of the synchronous standby's postmaster: the replica becomes
#                      synchronous and writes go on
#   etcd-kill          kill -9 of etcd, back after a while: never two primaries; writes may pause
#   replica-behind     replay paused on every replica: reads with min_position past it answer 409
#                      after the wait bound, never stale data; reads without it report the older
#                      position they reflect
#   ledger-transfer-kill  kill -9 of the writer node with transfers between two ledgers in flight
#                      (besides the usual load): every transfer ends posted on both sides or
#                      voided on both, and the settlement accounts mirror each other
#
# After each fault: `ledger-bench --verify` on the three journals (every write answered 2xx is in
# the log at its position, none answered with an error is, writes of unknown outcome are retried
# with their key, replays are identical, no read is older than its min_position, positions have no
# gaps, the chain verifies, every asset sums to zero), all three nodes answer the same balances at
# the same min_position, and, with the ledgers stopped, `ledger replay` equals the live
# projections. The unavailability window is from the fault to the first write sent after it that
# was acknowledged; the longest gap is the longest time after the fault with no write acknowledged.
set -euo pipefail

load_s=30
pause_s=30
accounts=2000
clients=8
faults=()
for arg in "$@"; do
    case "$arg" in
        --short) load_s=12; pause_s=12; accounts=500; clients=4 ;;
        writer-kill|writer-pause|pg-primary-kill|sync-standby-kill|etcd-kill|replica-behind|ledger-transfer-kill) faults+=("$arg") ;;
        *) echo "usage: $0 [--short] [fault ...]" >&2; exit 2 ;;
    esac
done
[ ${#faults[@]} -gt 0 ] || faults=(writer-kill writer-pause pg-primary-kill sync-standby-kill etcd-kill replica-behind ledger-transfer-kill)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -q -p api -p ledger-bench
ledger="$root/target/release/ledger"
bench="$root/target/release/ledger-bench"
cluster="$root/scripts/cluster.sh"

work=$(mktemp -d /tmp/ledger-chaos.XXXXXX)
chmod 755 "$work"
results="$work/results.jsonl"
: >"$results"
started_at=$(date +%s)
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    [ -n "${LEDGER_CLUSTER_DIR:-}" ] && "$cluster" down >/dev/null 2>&1 || true
    if [ "$status" != 0 ] || [ "${keep_work:-false}" = true ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

log() { echo "[$(($(date +%s) - started_at))s] $*" >&2; }
now_ms() { date +%s%3N; }
fail() { echo "$2" >>"$work/$1.fail"; keep_work=true; log "$1 FAILED: $2"; }
note() { echo "$2" >>"$work/$1.notes"; log "$1: $2"; }

status() { "$cluster" status 2>>"$work/status.log"; }
# One field of the cluster's status: a python expression over `s`.
field() { status | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
ledger_url() { field "next(l['url'] for l in s['ledgers'] if l['name']=='$1')"; }
ledger_with_role() { field "' '.join(l['name'] for l in s['ledgers'] if l['role']=='$1')"; }
pg_with_role() { field "' '.join(p['name'] for p in s['postgres'] if p['role']=='$1')"; }
addr() { local url; url=$(ledger_url "$1"); echo "${url#http://}"; }

# Polls `condition` (a command) every 100 ms for at most $2 seconds; how long it took, in ms.
wait_for() { # description seconds command...
    local what=$1 bound_ms=$(($2 * 1000)) t0
    shift 2
    t0=$(now_ms)
    while ! "$@" >/dev/null 2>&1; do
        if [ $(($(now_ms) - t0)) -ge "$bound_ms" ]; then
            waited_ms=-1
            log "not within $((bound_ms / 1000)) s: $what"
            return 1
        fi
        sleep 0.1
    done
    waited_ms=$(($(now_ms) - t0))
}
writer_other_than() { local w; w=$(ledger_with_role writer); [ -n "$w" ] && [ "$w" != "$1" ]; }
is_role() { [ "$(field "next(l['role'] for l in s['ledgers'] if l['name']=='$1')")" = "$2" ]; }
role_moved() { local n; n=$(pg_with_role "$1"); [ -n "$n" ] && [ "$n" != "$2" ]; }
pg_healthy() { [ -n "$(pg_with_role primary)" ] && [ -n "$(pg_with_role sync_standby)" ] && [ -n "$(pg_with_role replica)" ]; }
all_ledgers_up() { [ "$(field "sum(l['role'] != 'down' for l in s['ledgers'])")" = 3 ] && [ -n "$(ledger_with_role writer)" ]; }

# Injects the fault (a cluster.sh command) and notes when: the unavailability window starts here.
strike() { "$cluster" "$@" >/dev/null; fault_ms=$(now_ms); }

load() { # fault name ledger [flags]: journaled load in the background
    local fault=$1 name=$2 node=$3
    shift 3
    "$bench" --addr "$(addr "$node")" --no-setup --accounts "$accounts" --duration-s "$load_duration_s" \
        --clients "$clients" --quiet --journal "$work/$fault-$name.jsonl" \
        --request-timeout-ms "$request_timeout_ms" "$@" >"$work/$fault-$name.out" 2>&1 &
    pids+=($!)
    load_pids+=($!)
}

# ---------------------------------------------------------------------------------------------
# The faults: each injects, waits for what must happen, heals, and notes what it saw.

inject_writer_kill() {
    local f=$1 w
    w=$(ledger_with_role writer)
    strike kill "$w"
    if wait_for "a new writer" 10 writer_other_than "$w"; then
        note "$f" "killed $w (the writer); $(ledger_with_role writer) was the writer ${waited_ms} ms later"
        [ "$waited_ms" -le 2000 ] || fail "$f" "the takeover took ${waited_ms} ms (bound 2000 ms)"
    else
        fail "$f" "no other node became the writer within 10 s"
    fi
    sleep $((load_s / 4))
    "$cluster" start "$w" >/dev/null
    wait_for "$w back as a follower" 30 is_role "$w" follower || fail "$f" "$w did not rejoin as a follower"
}

inject_writer_pause() {
    local f=$1 w t0
    w=$(ledger_with_role writer)
    t0=$SECONDS
    strike pause "$w"
    if wait_for "a new writer" 10 writer_other_than "$w"; then
        note "$f" "paused $w (the writer); $(ledger_with_role writer) was the writer ${waited_ms} ms later"
    else
        fail "$f" "no other node became the writer within 10 s of the pause"
    fi
    sleep $((pause_s - (SECONDS - t0) > 0 ? pause_s - (SECONDS - t0) : 0))
    "$cluster" resume "$w" >/dev/null
    if wait_for "$w to follow" 10 is_role "$w" follower; then
        note "$f" "resumed $w after ${pause_s} s; it followed ${waited_ms} ms later ($(grep -c 'writer session failed' "$LEDGER_CLUSTER_DIR/$w.log" || true) failed session(s) in its log)"
    else
        fail "$f" "$w did not rejoin as a follower within 10 s of waking"
    fi
}

# Kills the postmaster of the PostgreSQL node with `role`; waits for another to take the role
# (within 30 s) and for the cluster to heal (within 90 s).
kill_pg_with_role() { # fault role
    local f=$1 role=$2 victim
    victim=$(pg_with_role "$role")
    strike kill "$victim"
    if wait_for "another $role" 30 role_moved "$role" "$victim"; then
        note "$f" "killed the postmaster of $victim ($role); $(pg_with_role "$role") was $role ${waited_ms} ms later"
    else
        fail "$f" "no other PostgreSQL node became $role within 30 s"
    fi
    if wait_for "three healthy PostgreSQL nodes" 90 pg_healthy; then
        note "$f" "$victim rejoined as $(field "next(p['role'] for p in s['postgres'] if p['name']=='$victim')") ${waited_ms} ms later"
    else
        fail "$f" "the cluster did not heal within 90 s"
    fi
}
inject_pg_primary_kill() { kill_pg_with_role "$1" primary; }
inject_sync_standby_kill() { kill_pg_with_role "$1" sync_standby; }

# Every PostgreSQL node that answers and is not in recovery: a primary.
primaries() {
    local n count=0
    for n in pg1 pg2 pg3; do
        [ "$("$cluster" sql "$n" "SELECT NOT pg_is_in_recovery()" 2>/dev/null)" = t ] && count=$((count + 1))
    done
    echo "$count"
}

inject_etcd_kill() {
    local f=$1 most=0 polls=0 n deadline
    strike kill etcd
    deadline=$((SECONDS + load_s / 2))
    while [ $SECONDS -lt "$deadline" ]; do
        n=$(primaries)
        polls=$((polls + 1))
        [ "$n" -gt "$most" ] && most=$n
        sleep 0.5
    done
    if [ "$most" -le 1 ]; then
        note "$f" "etcd down for $((load_s / 2)) s: at most $most primary in $polls polls of every PostgreSQL node (pg_is_in_recovery)"
    else
        fail "$f" "$most PostgreSQL nodes were primary at once while etcd was down"
    fi
    "$cluster" start etcd >/dev/null
    wait_for "three healthy PostgreSQL nodes" 90 pg_healthy && note "$f" "etcd back; the cluster was healthy ${waited_ms} ms later" \
        || fail "$f" "the cluster did not heal within 90 s of etcd's return"
}

patroni_maintenance() { # true|false
    curl -sf -XPATCH -d "{\"pause\": $1}" "$(field "next(p['patroni'] for p in s['postgres'] if p['role']=='primary')")/config" >/dev/null
}

inject_replica_behind() {
    local f=$1 r position code reported node
    local replicas
    replicas="$(pg_with_role sync_standby) $(pg_with_role replica)"
    # Patroni resumes a paused replay within a second of its own; in maintenance mode it leaves
    # the replicas as they are (and attempts no failover) until the mode ends.
    patroni_maintenance true
    for r in $replicas; do "$cluster" sql "$r" "SELECT pg_wal_replay_pause()" >/dev/null; done
    fault_ms=$(now_ms)
    note "$f" "replay paused on $replicas"
    # A write through the writer, then reads of it on every node.
    position=$(curl -s --max-time 10 "$(ledger_url "$(ledger_with_role writer)")/v1/transfers" \
        -H "Authorization: Bearer $LEDGER_API_KEY" -H 'content-type: application/json' \
        -H "Idempotency-Key: chaos-behind-$RANDOM$RANDOM" \
        -d '{"source":"bench:a1","destination":"bench:a2","asset":"USD","amount":"1.00"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')
    for node in ledger1 ledger2 ledger3; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $LEDGER_API_KEY" \
            "$(ledger_url "$node")/v1/accounts/bench:a2?min_position=$position")
        [ "$code" = 409 ] || fail "$f" "$node answered $code, not 409, to a read past the paused replicas"
        reported=$(curl -s -D - -o /dev/null --max-time 10 -H "Authorization: Bearer $LEDGER_API_KEY" \
            "$(ledger_url "$node")/v1/accounts/bench:a2" | tr -d '\r' | awk -F': ' 'tolower($1)=="ledger-position" {print $2}')
        [ -n "$reported" ] && [ "$reported" -lt "$position" ] ||
            fail "$f" "$node reported position '$reported' for a read without min_position; the write is at $position and the replicas are paused"
    done
    note "$f" "write at $position: every node answered 409 position_not_reached with min_position, and an older Ledger-Position without"
    sleep $((load_s / 4))
    for r in $replicas; do "$cluster" sql "$r" "SELECT pg_wal_replay_resume()" >/dev/null; done
    patroni_maintenance false
    for node in ledger1 ledger2 ledger3; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $LEDGER_API_KEY" \
            "$(ledger_url "$node")/v1/accounts/bench:a2?min_position=$position")
        [ "$code" = 200 ] || fail "$f" "$node answered $code to the read once replay resumed"
    done
    note "$f" "replay resumed: the read with min_position answered 200 on every node"
}

# Transfers between two ledgers (`ledger-bench --workload ledger-transfers`: bench-l0 and
# bench-l1, whose writer is the node they were set up through) sent to the writer node, which is
# killed with some in flight; then every transfer must end posted on both sides or voided on both.
inject_ledger_transfer_kill() {
    local f=$1 w
    w=$(ledger_with_role writer)
    "$bench" --addr "$(addr "$w")" --no-setup --no-check --accounts 50 --clients 8 --duration-s "$load_s" \
        --quiet --workload ledger-transfers >"$work/$f-transfers.out" 2>&1 &
    local transfers_pid=$!
    sleep $((load_s / 4))
    inject_writer_kill "$f"
    wait "$transfers_pid" || true
    local url
    url=$(ledger_url "$(ledger_with_role writer)")
    python3 - "$url" "$LEDGER_API_KEY" >>"$work/$f.notes" 2>>"$work/$f.fail" <<'PY' || true
import json, sys, time, urllib.error, urllib.request
url, key = sys.argv[1], sys.argv[2]
get = lambda path: json.load(urllib.request.urlopen(urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"}), timeout=30))
def every():
    items, after = [], None
    while True:
        page = get("/v1/ledger-transfers?limit=1000" + (f"&after={after}" if after else ""))
        items += page["items"]
        after = page.get("next_after")
        if not after:
            return items
deadline = time.time() + 90
while True:
    transfers = every()
    open_ = [t for t in transfers if t["state"] not in ("posted", "voided")]
    if not open_ or time.time() > deadline:
        break
    time.sleep(0.5)
if open_:
    print(f"{len(open_)} of {len(transfers)} ledger transfers still open 90 s after the kill", file=sys.stderr)
def status(ledger, id_):
    try:
        return get(f"/v1/ledgers/{ledger}/transactions/{id_}")["status"]
    except urllib.error.HTTPError as e:
        return "absent" if e.code == 404 else f"HTTP {e.code}"
posted = voided = mismatches = 0
for t in transfers:
    sides = (status(t["source_ledger"], t["source_transaction"]), status(t["destination_ledger"], t["destination_transaction"]))
    if t["state"] == "posted":
        posted += 1
        ok = sides == ("posted", "posted")
    else:
        voided += 1
        ok = all(s in ("voided", "absent") for s in sides)
    if not ok:
        mismatches += 1
        print(f"ledger transfer {t['id']} is {t['state']} but its sides are {sides}", file=sys.stderr)
print(f"ledger transfers: {len(transfers)}, both posted {posted}, both voided {voided}, mismatches {mismatches}")
PY
    local mirror
    mirror=$(DATABASE_URL=$(field "s['haproxy']['primary']") "$ledger" verify --all-ledgers 2>>"$work/$f.verify-all.log" | tail -n 1) || true
    if python3 -c 'import json,sys; m=json.loads(sys.argv[1])["settlement_mirror"]; sys.exit(0 if m["holds"] and m["checked"] else 1)' "$mirror" 2>/dev/null; then
        note "$f" "ledger verify --all-ledgers: every chain verifies and the settlement accounts mirror each other"
    else
        fail "$f" "ledger verify --all-ledgers: $mirror"
    fi
}

# ---------------------------------------------------------------------------------------------

# The same balances on every node at the same min_position.
same_balances() {
    local f=$1
    python3 - "$LEDGER_API_KEY" $(for n in ledger1 ledger2 ledger3; do ledger_url "$n"; done) <<'PY' >>"$work/$f.notes" 2>>"$work/$f.fail" || true
import json, sys, urllib.error, urllib.request
key, urls = sys.argv[1], sys.argv[2:]
get = lambda url: json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"}), timeout=30))
# The writer's last commit: every node must answer from at least there.
def readyz(url):
    try:
        return json.load(urllib.request.urlopen(f"{url}/readyz", timeout=30))
    except urllib.error.HTTPError as e:  # 503: not ready, still a JSON body
        return json.load(e)
head = max(readyz(u)["position"] for u in urls)
def balances(url):
    out, cursor = {}, None
    while True:
        q = f"{url}/v1/accounts?limit=1000&min_position={head}" + (f"&cursor={cursor}" if cursor else "")
        page = get(q)
        for a in page["items"]:
            out[a["code"]] = sorted((b["asset"], b["balance"]) for b in a["balances"])
        cursor = page.get("next_cursor")
        if not cursor:
            return out
seen = [balances(u) for u in urls]
if all(s == seen[0] for s in seen):
    print(f"all three nodes answered the same balances of {len(seen[0])} accounts at min_position {head}")
else:
    print("the nodes answered different balances at the same min_position", file=sys.stderr)
PY
}

# With every ledger stopped (replay takes the writer's lock), rebuild the projections and compare.
replay_equals_live() {
    local f=$1 url verdict
    url=$(field "s['haproxy']['primary']")
    for n in ledger1 ledger2 ledger3; do "$cluster" kill "$n" >/dev/null 2>&1 || true; done
    verdict=$(DATABASE_URL="$url" "$ledger" replay 2>>"$work/$f.replay.log" | tail -n 1) || true
    if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["identical"] else 1)' "$verdict" 2>/dev/null; then
        note "$f" "ledger replay: identical to the live projections"
    else
        fail "$f" "ledger replay differs from the live projections: $verdict"
    fi
}

run_fault() {
    local f=$1
    log "== $f"
    export LEDGER_CLUSTER_DIR="$work/$f"
    if ! "$cluster" up >"$work/$f.status.json" 2>"$work/$f.up.log"; then
        tail -n 30 "$work/$f.up.log" >&2
        fail "$f" "the cluster did not come up"
        echo "{\"fault\": \"$f\", \"passed\": false, \"failures\": []}" >>"$results"
        return
    fi
    LEDGER_API_KEY=$(field "s['admin_key']")
    export LEDGER_API_KEY
    "$bench" --addr "$(addr ledger1)" --accounts "$accounts" --requests 1 --quiet --no-check >/dev/null
    if [ "$f" = ledger-transfer-kill ]; then
        for l in bench-l0 bench-l1; do
            "$bench" --addr "$(addr "$(ledger_with_role writer)")" --ledger "$l" --accounts 50 --requests 1 --quiet --no-check >/dev/null
        done
    fi
    # A paused node holds its own clients until it wakes: only then may an answer take that long.
    # The load outlasts the fault, so that writes after the healing are measured too: the pause,
    # or etcd's absence and Patroni's ttl.
    request_timeout_ms=15000 answer_bound_ms=10000 load_duration_s=$load_s
    case "$f" in
        writer-pause)
            request_timeout_ms=$(((pause_s + 15) * 1000)) answer_bound_ms=$(((pause_s + 10) * 1000))
            load_duration_s=$((load_s + pause_s)) ;;
        etcd-kill) load_duration_s=$((load_s + load_s / 2 + 15)) ;;
    esac
    load_pids=()
    load "$f" l1 ledger1
    load "$f" l2 ledger2
    load "$f" l3 ledger3 --workload mixed
    sleep $((load_s / 3))
    fault_ms=$(now_ms)
    "inject_${f//-/_}" "$f"
    wait "${load_pids[@]}" || true
    wait_for "all three ledgers up" 30 all_ledgers_up || fail "$f" "not every ledger node was up after healing"
    local verdict
    verdict=$("$bench" --addr "$(addr "$(ledger_with_role writer)")" --accounts "$accounts" \
        --answer-bound-ms "$answer_bound_ms" \
        --verify "$work/$f"-l?.jsonl 2>>"$work/$f.verify.log" | tail -n 1) || true
    [ -n "$verdict" ] || verdict='{"passed": false, "failures": ["ledger-bench --verify gave no verdict"]}'
    same_balances "$f"
    replay_equals_live "$f"
    python3 - "$f" "$verdict" "$work" "$fault_ms" >>"$results" <<'PY'
import glob, json, os, sys
f, line, work, fault_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = json.loads(line)
lines = lambda ext: [l for l in open(os.path.join(work, f + ext)).read().splitlines() if l] if os.path.exists(os.path.join(work, f + ext)) else []
# The first write sent after the fault that was acknowledged: how long writes were unavailable.
# And the longest time from the fault on in which no write was acknowledged anywhere: a fault
# whose effect comes later (etcd's loss demotes the primary only after Patroni's ttl) shows there.
first, acked, last = None, [], fault_ms
for path in glob.glob(os.path.join(work, f + "-l?.jsonl")):
    for e in map(json.loads, open(path)):
        last = max(last, e.get("at_ms", 0))
        sent = e.get("at_ms", 0) - e["ms"]
        if e.get("key") and e.get("status") in (200, 201):
            acked.append(e["at_ms"])
            if sent >= fault_ms:
                first = e["at_ms"] if first is None else min(first, e["at_ms"])
# The last answer of the load closes the last gap: an outage that lasts to the end counts too.
after = sorted([fault_ms, last] + [t for t in acked if t >= fault_ms])
d["fault"], d["extra_failures"], d["notes"] = f, lines(".fail"), lines(".notes")
d["unavailable_ms"] = None if first is None else first - fault_ms
d["longest_gap_ms"] = max((b - a for a, b in zip(after, after[1:])), default=None)
print(json.dumps(d))
PY
    "$cluster" down >/dev/null 2>&1 || fail "$f" "cluster.sh down failed"
    unset LEDGER_CLUSTER_DIR
}

for f in "${faults[@]}"; do run_fault "$f"; done

python3 - "$results" "$(($(date +%s) - started_at))" "$load_s" "$pause_s" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mark = lambda ok: "yes" if ok else "NO"
print("| fault | writes acknowledged | acknowledged found | lost | unavailable | longest gap | sum per asset zero | chain verifies | result |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
failed = False
for r in rows:
    ok = bool(r.get("passed")) and not r.get("extra_failures")
    failed |= not ok
    acked, found = r.get("acknowledged", 0), r.get("acknowledged_in_log", 0)
    seconds = lambda k: "n/a" if r.get(k) is None else f'{r[k] / 1000:.1f} s'
    print(f'| {r["fault"]} | {acked} | {found} | {acked - found} | {seconds("unavailable_ms")} | '
          f'{seconds("longest_gap_ms")} | {mark(r.get("sum_zero"))} | '
          f'{mark(r.get("chain_intact"))} | {"PASS" if ok else "FAIL"} |')
print()
for r in rows:
    print(f'- {r["fault"]}: {r.get("unknown", 0)} writes of unknown outcome retried, {r.get("reads", 0)} reads '
          f'({r.get("reads_unavailable", 0)} unavailable, {r.get("reads_stale", 0)} stale), log head {r.get("head")}, '
          f'slowest answer to a write {r.get("max_answer_ms")} ms; answers by code: {r.get("errors_by_code", {})}')
    for n in r.get("notes", []):
        print(f"  - {n}")
    for x in r.get("failures", []) + r.get("extra_failures", []):
        print(f"  - FAILED: {x}")
print()
print(f"Loads of {sys.argv[3]} s per fault on each of three nodes, the writer paused for {sys.argv[4]} s; "
      f"the whole run took {sys.argv[2]} s.")
sys.exit(1 if failed else 0)
PY
