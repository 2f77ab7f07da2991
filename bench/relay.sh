#!/usr/bin/env bash
# The relays' sustained rate to each broker on this machine, and whether a relay keeps up with the
# `batch` workload at full rate. On a throwaway PostgreSQL with `ledger serve` (bench/servers.sh),
# and RabbitMQ and NATS (JetStream) started here on loopback in scratch directories:
#
# 1. backlog: `ledger-bench --workload batch` writes for DURATION s with no relay; then each
#    relay in turn drains that backlog from position 0: events ÷ seconds until its checkpoint
#    reaches the head is its sustained rate (RabbitMQ with a durable queue bound to `#`, so that
#    every message is persisted; JetStream into its file-backed stream);
# 2. live: both relays run while `batch` writes for DURATION s; the lag in events (head −
#    checkpoint) is sampled every second, and the batch rate is compared with phase 1's.
#
#   bench/relay.sh            # 20 s of writing per phase
#   bench/relay.sh --short    # 4 s
#   LEDGER_RELAY_BIN=/tmp/old/ledger bench/relay.sh   # the relays of another build, against
#                                                     # this build's server: side by side
#
# Needs PostgreSQL's server binaries, rabbitmq-server and nats-server (apt-get install -y
# postgresql rabbitmq-server nats-server), python3, curl.
set -euo pipefail

duration_s=20
case "${1:-}" in
    --short) duration_s=4 ;;
    "") ;;
    *) echo "usage: $0 [--short]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -q -p api -p ledger-bench
ledger="$root/target/release/ledger"
bench="$root/target/release/ledger-bench"

source "$root/bench/servers.sh"
wait_port() { for _ in $(seq 1 900); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
broker_pids=()
stop_all() {
    for pid in "${relay_pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    for pid in "${broker_pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    [ -n "${epmd_port:-}" ] && ERL_EPMD_PORT=$epmd_port epmd -kill >/dev/null 2>&1 || true
    servers_stop
}
relay_pids=()
trap stop_all EXIT
postgres_start ledger-relay-bench
"${psql_[@]}" "$pg_bin/createdb" ledger
ledger_start "$ledger" ledger
database_url="postgres:///ledger?host=$work&user=bench"
sql() { "${psql_[@]}" "$pg_bin/psql" -XAtq -d ledger -c "$1"; }

echo "== RabbitMQ and NATS in $work" >&2
amqp_port=$(free_port); epmd_port=$(free_port); mkdir -p "$work/rabbitmq"
printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users = none\n' "$amqp_port" >"$work/rabbitmq/rabbitmq.conf"
echo '[].' >"$work/rabbitmq/enabled_plugins"
HOME="$work/rabbitmq" RABBITMQ_NODENAME="bench$amqp_port@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$amqp_port RABBITMQ_DIST_PORT=$(free_port) ERL_EPMD_PORT=$epmd_port \
    RABBITMQ_CONFIG_FILE="$work/rabbitmq/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$work/rabbitmq/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$work/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$work/rabbitmq/log" \
    /usr/lib/rabbitmq/bin/rabbitmq-server >"$work/rabbitmq/out.log" 2>&1 &
broker_pids+=($!)
nats_port=$(free_port)
nats-server --jetstream --addr 127.0.0.1 --port "$nats_port" --store_dir "$work/nats" >"$work/nats.log" 2>&1 &
broker_pids+=($!)
wait_port "$amqp_port" && wait_port "$nats_port"
amqp="amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
nats="nats://127.0.0.1:$nats_port"
# A durable queue bound to every event, so that RabbitMQ persists each message as it would for a
# real consumer (a topic exchange with no queue bound drops them).
python3 - "$amqp_port" <<'PY'
import socket, struct, sys
# AMQP 0-9-1 by hand, just enough to declare the exchange, a durable queue and its binding.
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def frame(t, ch, payload): s.sendall(struct.pack(">BHI", t, ch, len(payload)) + payload + b"\xce")
def read():
    h = b""
    while len(h) < 7: h += s.recv(7 - len(h))
    t, ch, n = struct.unpack(">BHI", h); p = b""
    while len(p) < n + 1: p += s.recv(n + 1 - len(p))
    return p[:-1]
def shortstr(x): return bytes([len(x)]) + x
def longstr(x): return struct.pack(">I", len(x)) + x
def method(ch, cls, mid, args): frame(1, ch, struct.pack(">HH", cls, mid) + args)
s.sendall(b"AMQP\x00\x00\x09\x01"); read()
method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") + longstr(b"\x00guest\x00guest") + shortstr(b"en_US"))
tune = read()
method(0, 10, 31, tune[4:12])  # accept the server's channel-max, frame-max and heartbeat
method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"); read()
method(1, 20, 10, shortstr(b"")); read()
method(1, 40, 10, struct.pack(">H", 0) + shortstr(b"ledger.events") + shortstr(b"topic") + b"\x02" + struct.pack(">I", 0)); read()
method(1, 50, 10, struct.pack(">H", 0) + shortstr(b"bench") + b"\x02" + struct.pack(">I", 0)); read()
method(1, 50, 20, struct.pack(">H", 0) + shortstr(b"bench") + shortstr(b"ledger.events") + shortstr(b"#") + b"\x00" + struct.pack(">I", 0)); read()
PY

"$bench" --addr "$ledger_addr" --accounts 10000 --requests 1 --quiet --no-check >/dev/null
batch() { "$bench" --addr "$ledger_addr" --no-setup --accounts 10000 --clients 4 --duration-s "$duration_s" --workload batch --batch-size 1000 --quiet --json --no-check | tail -n 1 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["transfers_per_s"])'; }
checkpoint() { sql "SELECT COALESCE((SELECT position FROM projection_checkpoints WHERE name = 'relay:$1'), 0)"; }
sink_name() { python3 -c 'import sys; u=sys.argv[1]; s,r=u.split("://",1); r=r.split("?")[0].rsplit("@",1)[-1]; print(s+"://"+r)' "$1"; }
relay_bin=${LEDGER_RELAY_BIN:-$ledger}
start_relay() { RUST_LOG=warn "$relay_bin" relay --to "$1" --database-url "$database_url" 2>>"$work/relay.log" & relay_pids+=($!); }

echo "== phase 1: $duration_s s of batch with no relay, then each relay drains the backlog" >&2
batch_alone=$(batch)
head=$(sql "SELECT position FROM projection_head")
declare -A drain_rate
for to in "$amqp" "$nats"; do
    name=$(sink_name "$to")
    started=$(date +%s.%N)
    start_relay "$to"
    while [ "$(checkpoint "$name")" -lt "$head" ]; do sleep 0.05; done
    elapsed=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(date +%s.%N)")
    drain_rate[$name]=$(python3 -c "print('%.0f' % ($head / $elapsed))")
    echo "   $name: $head events in ${elapsed:0:6} s" >&2
done

echo "== phase 2: $duration_s s of batch with both relays running" >&2
lag_log="$work/lag.tsv"; : >"$lag_log"
amqp_name=$(sink_name "$amqp"); nats_name=$(sink_name "$nats")
# The head and both checkpoints from one snapshot, so that no lag reads negative.
( while true; do
    sql "SELECT h.position, COALESCE(a.position, 0), COALESCE(n.position, 0) FROM projection_head h
         LEFT JOIN projection_checkpoints a ON a.name = 'relay:$amqp_name'
         LEFT JOIN projection_checkpoints n ON n.name = 'relay:$nats_name'" | tr '|' ' ' >>"$lag_log"
    sleep 1
  done ) &
sampler=$!
batch_with_relays=$(batch)
kill "$sampler" 2>/dev/null || true
head=$(sql "SELECT position FROM projection_head")
caught_up_started=$(date +%s.%N)
for to in "$amqp" "$nats"; do
    while [ "$(checkpoint "$(sink_name "$to")")" -lt "$head" ]; do sleep 0.05; done
done
catch_up_s=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$caught_up_started" "$(date +%s.%N)")

python3 - "$lag_log" "$batch_alone" "$batch_with_relays" "$catch_up_s" "${drain_rate[$(sink_name "$amqp")]}" "${drain_rate[$(sink_name "$nats")]}" <<'PY'
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 3]
alone, with_relays, catch_up, amqp_rate, nats_rate = sys.argv[2:7]
lag = lambda i: [r[0] - r[i] for r in rows]
def summary(xs):
    if not xs: return "–"
    half = len(xs) // 2
    return f"max {max(xs):,}, first half max {max(xs[:half] or [0]):,}, second half max {max(xs[half:]):,}"
print("| relay | drains a backlog at (events/s) | lag while `batch` writes (events, sampled each second) |")
print("| --- | ---: | --- |")
print(f"| RabbitMQ (durable queue, persistent, publisher confirms) | {int(amqp_rate):,} | {summary(lag(1))} |")
print(f"| NATS JetStream (file storage, acks) | {int(nats_rate):,} | {summary(lag(2))} |")
print()
print(f"`batch` alone: {int(alone):,} transfers/s; with both relays running: {int(with_relays):,} transfers/s "
      f"({int(with_relays) / int(alone):.2f} ×); both relays at the head {catch_up} s after the load stopped.")
PY
