# Sourced by the benchmark scripts: a throwaway PostgreSQL in a scratch directory, durable (fsync
# and synchronous_commit on), and `ledger serve` on it, with the same settings for every script so
# their figures compare.
#
#   source bench/servers.sh; postgres_start ledger-compare   # sets $work, $pg_bin, $psql_
#   "${psql_[@]}" "$pg_bin/createdb" ledger
#   ledger_start target/release/ledger ledger                # sets $ledger_pid, $ledger_addr
#   trap servers_stop EXIT                                   # stops both, removes $work

pg_bin=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")")
run_pg=()

postgres_start() { # scratch directory prefix
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$work"
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root.
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        chown postgres "$work"
        run_pg=(runuser -u postgres --)
    fi
    echo "== PostgreSQL in $work (fsync and synchronous_commit on)" >&2
    "${run_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U bench --auth=trust -E UTF8 --locale=C >/dev/null
    "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start \
        -o "-c listen_addresses='' -c unix_socket_directories=$work -c max_connections=300 -c shared_buffers=512MB" >/dev/null
    psql_=(env PGHOST="$work" PGUSER=bench)
}

postgres_stop() {
    [ -n "${work:-}" ] || return 0
    "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}

# The ledger is measured with authentication on, as it runs in production: every server started
# here stores this admin key at its first start, and ledger-bench sends it.
LEDGER_API_KEY="lk_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export LEDGER_API_KEY LEDGER_BOOTSTRAP_ADMIN_KEY="$LEDGER_API_KEY"
ledger_pid=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ledger_start() { # ledger binary, database name [serve flags]; the log is $work/<database>.log
    local port
    port=$(free_port)
    DATABASE_URL="postgres:///$2?host=$work&user=bench" RUST_LOG=warn \
        "$1" serve --listen "127.0.0.1:$port" "${@:3}" >>"$work/$2.log" 2>&1 &
    ledger_pid=$!
    ledger_addr="127.0.0.1:$port"
    # Up to 60 s: a writer taking over a database a few benchmark rounds filled restores its state
    # from it before the node is ready.
    for _ in $(seq 1 600); do
        curl -fs "http://$ledger_addr/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$work/$2.log" >&2
    echo "ledger serve did not become ready" >&2
    return 1
}

ledger_stop() {
    [ -n "$ledger_pid" ] || return 0
    kill "$ledger_pid" 2>/dev/null && wait "$ledger_pid" 2>/dev/null || true
    ledger_pid=""
}

servers_stop() {
    ledger_stop
    postgres_stop
}
