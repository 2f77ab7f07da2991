# Sourced (after setting `root`, the checkout) by the scripts that drive a `ledger serve` of their
# own with a Python tool from PyPI
# (scripts/schemathesis.sh, scripts/beancount_check.sh, scripts/console_check.sh), and by
# scripts/test.sh and .ci/run for the Python tools the tests run.

# pinned_venv VENV NAME VERSION: a virtual environment at VENV with NAME==VERSION installed from
# PyPI (python3-venv through apt-get when missing); one that already has that version is kept.
pinned_venv() {
    local venv=$1 name=$2 version=$3 installed
    installed=$("$venv/bin/pip" show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
    [ "$installed" = "$version" ] && return 0
    fresh_venv "$venv" "$name==$version"
}

# beancount_venv ROOT: Beancount and bean-query (a package of its own since Beancount 3), pinned, in
# a virtual environment beside the build (<target>/beancount-venv); prints its path. The Rust
# tests of the Beancount export run its bean-check and bean-query too (scripts/test.sh).
beancount_venv() {
    local venv="${CARGO_TARGET_DIR:-$1/target}/beancount-venv"
    local beancount_version=3.2.3 beanquery_version=0.2.0
    pinned_venv "$venv" beancount "$beancount_version" >&2
    if [ "$("$venv/bin/pip" show beanquery 2>/dev/null | sed -n 's/^Version: //p')" != "$beanquery_version" ]; then
        "$venv/bin/pip" install -q "beanquery==$beanquery_version" "beancount==$beancount_version" >&2
    fi
    echo "$venv"
}

# jsonschema_venv ROOT: the JSON Schema validator of tools/validate_events.py (jsonschema and its
# date-time checker, pinned in tools/validate_events.requirements.txt) in a virtual environment
# beside the build (<target>/jsonschema-venv); prints its path. The Rust tests of the event
# schemas run it too (JSONSCHEMA_PYTHON, set by scripts/test.sh).
jsonschema_venv() {
    local venv="${CARGO_TARGET_DIR:-$1/target}/jsonschema-venv"
    requirements_venv "$venv" "$1/tools/validate_events.requirements.txt" >&2
    echo "$venv"
}

# requirements_venv VENV FILE: a virtual environment at VENV with FILE's pinned requirements
# installed from PyPI; one whose installed set already matches FILE is kept.
requirements_venv() {
    local venv=$1 file=$2
    [ -f "$venv/requirements.txt" ] && cmp -s "$venv/requirements.txt" "$file" && return 0
    fresh_venv "$venv" -r "$file"
    cp "$file" "$venv/requirements.txt"
}

# fresh_venv VENV PIP_ARGS…: a new virtual environment at VENV (python3-venv through apt-get when
# missing) with `pip install PIP_ARGS…` done in it.
fresh_venv() {
    local venv=$1
    shift
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "python3-venv missing: installing" >&2
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$@"
}

# free_port: a TCP port free on loopback now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_ready BASE_URL PID LOG: returns when BASE_URL/readyz answers 200 (within 60 s); exits
# with the server's log if the process PID ends first.
wait_ready() {
    local base=$1 pid=$2 log=$3
    for _ in $(seq 1 120); do
        if python3 -c "import urllib.request; urllib.request.urlopen('$base/readyz', timeout=2)" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            echo "ledger serve exited" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "ledger serve was not ready within 60 s" >&2
    exit 1
}

# build_ledger: builds the `ledger` binary (debug) and prints its path (under CARGO_TARGET_DIR
# when that is set).
build_ledger() {
    cargo build --locked -q -p api --bin ledger
    echo "${CARGO_TARGET_DIR:-$root/target}/debug/ledger"
}

# scratch_dir NAME: makes and prints a new directory /tmp/ledger-NAME.XXXXXX for the server's
# cluster and logs.
scratch_dir() {
    local work
    work=$(mktemp -d "/tmp/ledger-$1.XXXXXX")
    chmod 755 "$work" # when root, PostgreSQL runs as an unprivileged user that must reach it
    echo "$work"
}

# finish STATUS [KEEP]: stops the server $server_pid if one was started (SIGTERM: the ledger stops
# the PostgreSQL cluster it started), then removes $work, or keeps it (and says where) when STATUS
# is a failure or KEEP is true. For `trap 'finish $?' EXIT`.
finish() {
    local status=$1 keep=${2:-false}
    if [ -n "${server_pid:-}" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" = 0 ] && [ "$keep" = false ]; then
        rm -rf "$work"
    else
        echo "logs kept in $work" >&2
    fi
}
