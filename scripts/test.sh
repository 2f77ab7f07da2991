#!/usr/bin/env bash
# The README's test command: installs what the test suite needs from the machine when it is
# missing, then runs every test (`cargo test --locked`).
#
#   scripts/test.sh                      # every test
#   scripts/test.sh --test relays        # anything given goes to `cargo test`
#
# What the suite needs besides Rust, each from Debian's packages:
#   - PostgreSQL's server binaries (`postgresql`): the tests provision their own cluster under the
#     system temp directory and give every test a fresh database (or use DATABASE_URL);
#   - RabbitMQ and NATS (`rabbitmq-server`, `nats-server`): api/tests/relays.rs starts each broker
#     on loopback, on ports and in a scratch directory of its own;
#   - `python3`: tools/verify_export.py checks exports in the audit and CLI tests.
# And from PyPI, pinned, in virtual environments beside the build (scripts/python_tool.sh):
# Beancount (the export's tests) and jsonschema (tools/validate_events.py: the event schemas'
# tests, and every event the suite appends, checked against docs/schemas after `cargo test`).
# The tests themselves never install anything and never skip: a test whose program is missing
# fails and names the command to run. This script installs what is missing as root with apt-get
# (as scripts/cluster.sh does for its tools); run as another user it prints the command and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test.sh: the tests need ${missing[*]}; install them as root:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "test.sh: installing ${missing[*]}" >&2
    started=$(date +%s)
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    # The packages start their own services; the tests start their own servers, on ports of their
    # own, so those are stopped again (only the ones installed here).
    for package in "${missing[@]}"; do
        case "$package" in
            postgresql | rabbitmq-server | nats-server)
                systemctl stop "$package" 2>/dev/null || service "$package" stop >/dev/null 2>&1 || true
                ;;
        esac
    done
    echo "test.sh: installed ${missing[*]} in $(($(date +%s) - started)) s" >&2
fi

# Beancount's own bean-check and bean-query check the export in the Rust tests too: pinned, from
# PyPI, in a virtual environment beside the build (scripts/python_tool.sh).
source scripts/python_tool.sh
BEANCOUNT_BIN="$(beancount_venv "$PWD")/bin"
export BEANCOUNT_BIN

# The JSON Schema validator: tests/tests/event_schemas.rs runs it, and so does the check below.
JSONSCHEMA_PYTHON="$(jsonschema_venv "$PWD")/bin/python"
export JSONSCHEMA_PYTHON

# Every test database writes its ledgers' events here when the test drops it
# (infrastructure::testing::EVENTS_DIR_ENV); each one must validate against docs/schemas.
LEDGER_TEST_EVENTS_DIR=$(mktemp -d /tmp/ledger-test-events.XXXXXX)
export LEDGER_TEST_EVENTS_DIR
trap 'rm -rf "$LEDGER_TEST_EVENTS_DIR"' EXIT

cargo test --locked "$@"

events=$LEDGER_TEST_EVENTS_DIR
dropped=$(find "$events" -name '*.dropped' | wc -l)
leaked=$(find "$events" -name '*.created' | wc -l)
echo "test.sh: $dropped test databases dropped with their events exported; $leaked never dropped (their events not checked)" >&2
find "$events" -name '*.created' -exec cat {} \; -exec echo \; | sort | sed 's/^/  never dropped: /' >&2
failed=$(find "$events" -name '*.export-failed' | sort)
if [ -n "$failed" ]; then
    for file in $failed; do
        echo "test.sh: the events of $(basename "$file" .export-failed) could not be exported: $(cat "$file")" >&2
    done
    exit 1
fi
if [ -z "$(find "$events" -name '*.ndjson' -print -quit)" ]; then
    echo "test.sh: no test database was dropped with a ledger: no event to check against docs/schemas" >&2
    exit 0
fi
echo "test.sh: every event the tests appended, against docs/schemas (tools/validate_events.py)" >&2
"$JSONSCHEMA_PYTHON" tools/validate_events.py "$events"
