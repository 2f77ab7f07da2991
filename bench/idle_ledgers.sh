#!/usr/bin/env bash
# What idle ledgers cost: `ledger serve` on a throwaway PostgreSQL; N ledgers are created and each
# is used once (an asset defined, an account opened: its writer, projectors and pools start), then
# left alone until every book has stopped (--ledger-idle-stop-ms); then each is used once more and
# left alone again. Prints, before, at the peak and after each round, the server's resident size,
# its runtime's live tasks and its PostgreSQL sessions.
#
#   bench/idle_ledgers.sh          # 1,000 ledgers
#   bench/idle_ledgers.sh 100
#   bench/idle_ledgers.sh 1000 3   # each ledger used again in 3 more rounds (default 1)
#
# Needs PostgreSQL's server binaries (apt-get install -y postgresql), python3, curl.
set -euo pipefail

ledgers=${1:-1000}
more_rounds=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -q -p api
source "$root/bench/servers.sh"
trap servers_stop EXIT
postgres_start ledger-idle
"${psql_[@]}" "$pg_bin/createdb" ledger
port=$(free_port)
DATABASE_URL="postgres:///ledger?host=$work&user=bench" RUST_LOG=warn \
    "$root/target/release/ledger" serve --listen "127.0.0.1:$port" \
    --ledger-idle-stop-ms 2000 --ledger-books-open-max 64 >"$work/ledger.log" 2>&1 &
ledger_pid=$!
ledger_addr="127.0.0.1:$port"
for _ in $(seq 1 200); do
    curl -fs "http://$ledger_addr/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

python3 - "$ledger_addr" "$ledger_pid" "$ledgers" "$work" "$more_rounds" <<'PY'
import json, subprocess, sys, time, urllib.request, os
addr, pid, count, work, more = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
key = os.environ["LEDGER_API_KEY"]
def call(method, path, body=None, idem=None):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idem:
        headers["Idempotency-Key"] = idem
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{addr}{path}", data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.read().decode()
def metric(name):
    for line in call("GET", "/metrics").splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def sessions():
    out = subprocess.run(["psql", "-h", work, "-U", "bench", "-d", "ledger", "-tAc",
                          "SELECT count(*) FROM pg_stat_activity WHERE datname = 'ledger' AND pid <> pg_backend_pid()"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())
def threads():
    return len(os.listdir(f"/proc/{pid}/task"))
def reading():
    return {"rss_mib": round(rss_mib(), 1), "tasks": metric("ledger_runtime_tasks_alive"),
            "books_open": metric("ledger_books_open"), "pg_sessions": sessions(), "threads": threads()}
rows = [("before", reading())]
started = time.time()
peak = None
for i in range(count):
    name = f"l{i}"
    call("POST", "/v1/ledgers", {"name": name}, f"create-{name}")
    call("POST", f"/v1/ledgers/{name}/assets", {"code": "USD", "scale": 2}, "usd")
    call("POST", f"/v1/ledgers/{name}/accounts", {"code": "a:cash"}, "open")
    if i % 100 == 99:
        r = reading()
        if peak is None or r["pg_sessions"] > peak["pg_sessions"]:
            peak = r
        print(f"{i + 1} ledgers used ({time.time() - started:.0f} s)", file=sys.stderr)
rows.append(("while in use (the busiest reading)", peak or reading()))
deadline = time.time() + 300
while metric("ledger_books_open") > 0 and time.time() < deadline:
    time.sleep(1)
rows.append((f"{count:,} ledgers, all idle", reading()))
# Every ledger used once more: memory that is only the allocator's high-water mark is reused,
# and does not grow again; memory kept per ledger would.
for again in range(more):
    for i in range(count):
        call("POST", f"/v1/ledgers/l{i}/accounts", {"code": f"b{again}:cash"}, f"open-b{again}")
    deadline = time.time() + 300
    while metric("ledger_books_open") > 0 and time.time() < deadline:
        time.sleep(1)
    rows.append((f"all used once more (round {again + 2}), then idle again", reading()))
print(f"| {count:,} ledgers | resident MiB | runtime tasks | books open | PostgreSQL sessions | threads |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for label, r in rows:
    print(f'| {label} | {r["rss_mib"]} | {r["tasks"]} | {r["books_open"]} | {r["pg_sessions"]} | {r["threads"]} |')
print(f"\nCreating and using {count:,} ledgers took {time.time() - started:.0f} s in all (with the wait for idle books).")
PY
