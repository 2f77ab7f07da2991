# Sourced by the benchmark scripts: a throwaway PostgreSQL in a scratch directory, durable (fsync
# and synchronous_commit on), the same settings for every script so their figures compare.
#
#   source bench/postgres.sh; postgres_start ledger-compare   # sets $work, $pg_bin, $psql_
#   ... createdb through "${psql_[@]}" "$pg_bin/createdb" <name>; connect with host=$work&user=bench
#   postgres_stop                                           # in the script's EXIT trap

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
