#!/usr/bin/env bash
# A high-availability ledger on loopback, in one scratch directory: etcd, three PostgreSQL nodes
# run by Patroni with synchronous replication (strict: every acknowledged commit is on two nodes),
# HAProxy routing a primary port and a replicas port by Patroni's health checks, and three
# `ledger serve` nodes (one writer, two followers that forward writes to it and read from the
# replicas). The production topology it models is in docs/deployment.md.
#
#   scripts/cluster.sh up              # start everything; prints the URLs (stderr) and `status`
#   scripts/cluster.sh status          # one JSON object (below)
#   scripts/cluster.sh kill NODE       # kill -9: ledgerN, pgN (its postmaster), etcd, haproxy
#   scripts/cluster.sh pause NODE      # SIGSTOP of the same process (pgN: with its children); `resume NODE`: SIGCONT
#   scripts/cluster.sh start NODE      # start a killed ledgerN, etcd or haproxy (or pgN's Patroni)
#   scripts/cluster.sh sql NODE SQL    # run SQL as the superuser on PostgreSQL node pgN
#   scripts/cluster.sh down            # stop everything and remove the scratch directory
#
# `status` prints {"ledgers": [{"name", "url", "role"}], "postgres": [{"name", "role", "port"}],
# "haproxy": {"primary": URL, "replicas": URL}, "admin_key": "lk_…"}, with ledger roles writer,
# follower or down and PostgreSQL roles primary, sync_standby, replica or down.
#
# The scratch directory is $LEDGER_CLUSTER_DIR (default /tmp/ledger-cluster). Installs the Debian
# packages it needs (patroni, etcd-server, haproxy, postgresql) when they are missing; as root,
# PostgreSQL (which refuses root) runs as the `postgres` user.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${LEDGER_CLUSTER_DIR:-/tmp/ledger-cluster}
state="$dir/state.json"
ledger="$root/target/release/ledger"
nodes=(1 2 3)
# Bounds on waiting for the parts to come up.
up_bound_s=120

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
get() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$state" "$1"; }

as_postgres=()
[ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)

install_missing() {
    local missing=()
    command -v patroni >/dev/null 2>&1 || missing+=(patroni)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    # The packages start their own services; this cluster runs its own, on its own ports.
    # (Only by service: an etcd found by name may be another cluster's.)
    systemctl stop etcd postgresql haproxy 2>/dev/null || service etcd stop 2>/dev/null || true
}

pg_bin() { dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)"; }

# Starts a command in a session of its own (so that `down` can end its whole process group) with
# its output in a log; records its pid under `name`.
spawn() { # name log command...
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >>"$logfile" 2>&1 < /dev/null &
    echo "$!" >"$dir/$name.pid"
}
pid_of() { cat "$dir/$1.pid" 2>/dev/null; }
alive() { local pid; pid=$(pid_of "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

write_state() {
    python3 - "$dir" "$state" <<'PY'
import json, secrets, socket, sys
d, path = sys.argv[1], sys.argv[2]
socks = [socket.socket() for _ in range(14)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
state = {
    "dir": d,
    "etcd": {"client": ports[0], "peer": ports[1]},
    "postgres": [{"name": f"pg{i}", "port": ports[2 + i], "rest": ports[5 + i]} for i in (1, 2, 3)],
    "haproxy": {"primary": ports[9], "replicas": ports[10]},
    "ledgers": [{"name": f"ledger{i}", "port": ports[10 + i]} for i in (1, 2, 3)],
    "passwords": {k: secrets.token_hex(16) for k in ("superuser", "replication", "ledger")},
    "admin_key": "lk_" + secrets.token_hex(32),
}
json.dump(state, open(path, "w"), indent=1)
PY
}

primary_url() { echo "postgres://ledger:$(get 's["passwords"]["ledger"]')@127.0.0.1:$(get 's["haproxy"]["primary"]')/ledger"; }
replicas_url() { echo "postgres://ledger:$(get 's["passwords"]["ledger"]')@127.0.0.1:$(get 's["haproxy"]["replicas"]')/ledger"; }

start_etcd() {
    local client peer
    client=$(get 's["etcd"]["client"]')
    peer=$(get 's["etcd"]["peer"]')
    spawn etcd "$dir/etcd.log" etcd --name etcd --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "etcd=http://127.0.0.1:$peer" --initial-cluster-state new
}

write_patroni_config() { # i
    local i=$1 node="$dir/pg$1"
    mkdir -p "$node"
    python3 - "$state" "$i" "$(pg_bin)" >"$node/patroni.yml" <<'PY'
import json, sys
s, i, bin_dir = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
me = s["postgres"][i - 1]
d, pw = s["dir"], s["passwords"]
node = f'{d}/pg{i}'
# JSON is YAML: the configuration written as JSON needs no YAML library here.
config = {
    "scope": "ledger",
    "name": me["name"],
    "restapi": {"listen": f'127.0.0.1:{me["rest"]}', "connect_address": f'127.0.0.1:{me["rest"]}'},
    "etcd3": {"hosts": [f'127.0.0.1:{s["etcd"]["client"]}']},
    "bootstrap": {
        "dcs": {
            # Fast failover: loop_wait + 2 * retry_timeout <= ttl.
            "ttl": 10, "loop_wait": 1, "retry_timeout": 4,
            "maximum_lag_on_failover": 1048576,
            # A crashed primary's postmaster is failed over at once, not restarted in place: the
            # synchronous standby has every acknowledged commit.
            "master_start_timeout": 0, "primary_start_timeout": 0,
            "synchronous_mode": True, "synchronous_mode_strict": True, "synchronous_node_count": 1,
            "postgresql": {
                "use_pg_rewind": True, "use_slots": True,
                "parameters": {
                    "max_connections": 200, "wal_level": "replica", "hot_standby": "on",
                    "hot_standby_feedback": "on", "wal_log_hints": "on", "max_wal_senders": 10,
                    "max_replication_slots": 10, "shared_buffers": "512MB",
                    "synchronous_commit": "on",
                },
            },
        },
        "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
        "post_bootstrap": f'{d}/post_bootstrap.sh',
    },
    "postgresql": {
        "listen": f'127.0.0.1:{me["port"]}',
        "connect_address": f'127.0.0.1:{me["port"]}',
        "data_dir": f'{node}/data',
        "bin_dir": bin_dir,
        "pgpass": f'{node}/pgpass',
        "authentication": {
            "superuser": {"username": "postgres", "password": pw["superuser"]},
            "replication": {"username": "replicator", "password": pw["replication"]},
            "rewind": {"username": "postgres", "password": pw["superuser"]},
        },
        "parameters": {"unix_socket_directories": node},
        "pg_hba": [
            "local all all trust",
            "host replication replicator 127.0.0.1/32 scram-sha-256",
            "host all all 127.0.0.1/32 scram-sha-256",
        ],
        # A new replica is copied at once, not after a spread checkpoint of minutes.
        "basebackup": [{"checkpoint": "fast"}],
        "remove_data_directory_on_rewind_failure": True,
        "remove_data_directory_on_diverged_timelines": True,
    },
}
print(json.dumps(config, indent=1))
PY
}

write_post_bootstrap() {
    cat >"$dir/post_bootstrap.sh" <<EOF
#!/bin/sh
# Run by Patroni once, on the first primary, with a superuser connection string.
set -e
psql "\$1" -v ON_ERROR_STOP=1 -qc "CREATE ROLE ledger LOGIN PASSWORD '$(get 's["passwords"]["ledger"]')'"
psql "\$1" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE ledger OWNER ledger"
# The writer reads the synchronous standbys' positions in pg_stat_replication.
psql "\$1" -v ON_ERROR_STOP=1 -qc "GRANT pg_monitor TO ledger"
EOF
    chmod 755 "$dir/post_bootstrap.sh"
}

start_patroni() { # i
    spawn "patroni$1" "$dir/pg$1/patroni.log" "${as_postgres[@]}" patroni "$dir/pg$1/patroni.yml"
}

write_haproxy_config() {
    python3 - "$state" >"$dir/haproxy.cfg" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
servers = lambda: "\n".join(f'    server {p["name"]} 127.0.0.1:{p["port"]} check port {p["rest"]}' for p in s["postgres"])
print(f"""global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s
    # Checked every 500 ms; down after 2 failures. A server marked down has its sessions cut:
    # a ledger's session to a demoted primary must end, not linger.
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
listen primary
    bind 127.0.0.1:{s["haproxy"]["primary"]}
    option httpchk GET /primary
    http-check expect status 200
{servers()}
frontend replicas
    bind 127.0.0.1:{s["haproxy"]["replicas"]}
    # Replicas while any is healthy; otherwise any node that can serve reads (the primary).
    use_backend replicas_only if {{ nbsrv(replicas_only) gt 0 }}
    default_backend readable
backend replicas_only
    balance roundrobin
    option httpchk GET /replica
    http-check expect status 200
{servers()}
backend readable
    option httpchk GET /read-only
    http-check expect status 200
{servers()}""")
PY
}

start_haproxy() { spawn haproxy "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"; }

start_ledger() { # i
    local i=$1 port
    port=$(get "s['ledgers'][$((i - 1))]['port']")
    spawn "ledger$i" "$dir/ledger$i.log" env RUST_LOG=info DATABASE_URL="$(primary_url)" \
        LEDGER_BOOTSTRAP_ADMIN_KEY="$(get 's["admin_key"]')" \
        "$ledger" serve --listen "127.0.0.1:$port" --advertise-url "http://127.0.0.1:$port" \
        --read-database-url "$(replicas_url)"
}

# --- status ----------------------------------------------------------------------------------

status_json() {
    python3 - "$state" "$dir" <<'PY'
import json, os, sys, urllib.error, urllib.request
s, d = json.load(open(sys.argv[1])), sys.argv[2]
def fetch(url):
    try:
        return json.load(urllib.request.urlopen(url, timeout=2))
    except urllib.error.HTTPError as e:
        try:
            return json.load(e)
        except Exception:
            return None
    except Exception:
        return None
def alive(name):
    try:
        os.kill(int(open(f"{d}/{name}.pid").read()), 0)
        return True
    except Exception:
        return False
members = {}
for p in s["postgres"]:
    found = fetch(f'http://127.0.0.1:{p["rest"]}/cluster')
    if found and found.get("members"):
        members = {m["name"]: m for m in found["members"]}
        break
roles = {"leader": "primary", "master": "primary", "primary": "primary", "standby_leader": "primary",
         "sync_standby": "sync_standby", "replica": "replica"}
def pg_role(name):
    m = members.get(name)
    if not m or m.get("state") not in ("running", "streaming"):
        return "down"
    return roles.get(m.get("role"), "down")
def ledger_role(l):
    r = fetch(f'http://127.0.0.1:{l["port"]}/readyz')
    if not r:
        return "down", None
    return ("writer" if r.get("role") == "writer" else "follower"), r.get("position")
ledgers = []
for l in s["ledgers"]:
    role, position = ledger_role(l)
    ledgers.append({"name": l["name"], "url": f'http://127.0.0.1:{l["port"]}', "role": role,
                    "position": position, "pid_alive": alive(l["name"])})
pw = s["passwords"]["ledger"]
print(json.dumps({
    "ledgers": ledgers,
    "postgres": [{"name": p["name"], "role": pg_role(p["name"]), "port": p["port"],
                  "patroni": f'http://127.0.0.1:{p["rest"]}'} for p in s["postgres"]],
    "haproxy": {"primary": f'postgres://ledger:{pw}@127.0.0.1:{s["haproxy"]["primary"]}/ledger',
                "replicas": f'postgres://ledger:{pw}@127.0.0.1:{s["haproxy"]["replicas"]}/ledger'},
    "etcd": f'http://127.0.0.1:{s["etcd"]["client"]}',
    "admin_key": s["admin_key"],
    "dir": d,
}))
PY
}

wait_until() { # description seconds python-condition-over-status
    local what=$1 deadline=$((SECONDS + $2)) condition=$3
    while [ $SECONDS -lt "$deadline" ]; do
        if status_json | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($condition) else 1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.3
    done
    log "not within $2 s: $what"
    return 1
}
pg_healthy='sorted(p["role"] for p in s["postgres"]) == ["primary", "replica", "sync_standby"]'
ledgers_ready='sorted(l["role"] for l in s["ledgers"]) == ["follower", "follower", "writer"]'

# --- commands --------------------------------------------------------------------------------

pg_sql() { # node sql
    local port
    port=$(get "next(p['port'] for p in s['postgres'] if p['name']=='$1')")
    PGCONNECT_TIMEOUT=2 PGPASSWORD=$(get 's["passwords"]["superuser"]') "$(pg_bin)/psql" -h 127.0.0.1 -p "$port" -U postgres -d ledger -Atqc "$2"
}

process_of() { # node -> the pid that kill/pause/resume act on
    case "$1" in
        ledger[123]|etcd|haproxy) pid_of "$1" ;;
        pg[123]) head -n 1 "$dir/$1/data/postmaster.pid" 2>/dev/null ;;
        *) die "no node named $1 (ledger1-3, pg1-3, etcd, haproxy)" ;;
    esac
}

cmd_up() {
    [ ! -e "$state" ] || die "$dir holds a cluster already: scripts/cluster.sh down first"
    install_missing
    if [ ! -x "$ledger" ] || [ -z "${LEDGER_CLUSTER_NO_BUILD:-}" ]; then
        (cd "$root" && cargo build --release --locked -q -p api -p ledger-bench)
    fi
    mkdir -p "$dir"
    chmod 755 "$dir"
    write_state
    write_post_bootstrap
    log "etcd"
    start_etcd
    for i in "${nodes[@]}"; do
        write_patroni_config "$i"
    done
    [ ${#as_postgres[@]} -eq 0 ] || chown -R postgres "$dir"/pg?
    for i in "${nodes[@]}"; do
        log "PostgreSQL pg$i under Patroni"
        start_patroni "$i"
    done
    write_haproxy_config
    start_haproxy
    wait_until "a primary, a synchronous standby and a replica" "$up_bound_s" "$pg_healthy" || {
        tail -n 20 "$dir"/pg?/patroni.log >&2
        exit 1
    }
    for i in "${nodes[@]}"; do
        start_ledger "$i"
    done
    wait_until "a writer and two followers" "$up_bound_s" "$ledgers_ready" || {
        tail -n 20 "$dir"/ledger?.log >&2
        exit 1
    }
    status_json | python3 -c "$(cat <<'PY'
import json, sys
s = json.load(sys.stdin)
say = lambda line: print("  " + line, file=sys.stderr)
for l in s["ledgers"]:
    say(f'{l["name"]:8} {l["url"]:28} {l["role"]}')
for p in s["postgres"]:
    say(f'{p["name"]:8} postgres://127.0.0.1:{p["port"]:<6} {p["role"]:13} Patroni {p["patroni"]}')
say(f'haproxy  primary  {s["haproxy"]["primary"]}')
say(f'haproxy  replicas {s["haproxy"]["replicas"]}')
say(f'etcd     {s["etcd"]}')
say(f'admin key {s["admin_key"]}')
print(json.dumps(s))
PY
)"
}

cmd_down() {
    [ -d "$dir" ] || return 0
    local f pid
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        # The whole session: Patroni's postmaster and its children, runuser and what it runs.
        kill -CONT -- "-$pid" 2>/dev/null || true
        kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    done
    # PostgreSQL processes re-parented away from their session (none should be; be sure).
    pkill -9 -f -- "-D $dir/" 2>/dev/null || true
    pkill -9 -f -- "$dir/" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while pgrep -f -- "$dir/" >/dev/null 2>&1 && [ $SECONDS -lt "$deadline" ]; do sleep 0.1; done
    rm -rf "$dir"
}

cmd_start() { # node
    case "$1" in
        ledger[123]) start_ledger "${1#ledger}" ;;
        etcd) start_etcd ;;
        haproxy) start_haproxy ;;
        pg[123]) alive "patroni${1#pg}" || start_patroni "${1#pg}" ;;
        *) die "no node named $1" ;;
    esac
}

cmd=${1:-}
case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) [ -e "$state" ] || die "no cluster in $dir"; status_json ;;
    kill|pause|resume)
        [ $# -eq 2 ] || die "usage: $0 $cmd NODE"
        pid=$(process_of "$2")
        [ -n "$pid" ] || die "$2 has no process"
        case "$cmd" in kill) sig=-9 ;; pause) sig=-STOP ;; resume) sig=-CONT ;; esac
        targets=("$pid")
        # A frozen PostgreSQL node is its backends and WAL processes too, not the postmaster alone.
        [[ "$2" == pg* && "$cmd" != kill ]] && targets+=($(pgrep -P "$pid" || true))
        kill "$sig" "${targets[@]}"
        log "$cmd $2 (pid $pid)"
        ;;
    start) [ $# -eq 2 ] || die "usage: $0 start NODE"; cmd_start "$2" ;;
    sql) [ $# -eq 3 ] || die "usage: $0 sql pgN SQL"; pg_sql "$2" "$3" ;;
    *) echo "usage: $0 up | down | status | kill NODE | pause NODE | resume NODE | start NODE | sql pgN SQL" >&2; exit 2 ;;
esac
