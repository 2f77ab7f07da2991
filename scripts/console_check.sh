#!/usr/bin/env bash
# The web console in a real browser: Playwright (from PyPI) drives Debian's Chromium against a
# real `ledger serve` with authentication on and a PostgreSQL cluster of its own
# (tests/console/conftest.py). Every page must load with no browser error; balances, roll-ups,
# the live stream and the audit's verdicts must equal the API's.
#
#   scripts/console_check.sh                # every browser test
#   scripts/console_check.sh --short       # the same (the suite is short; CI runs this)
#   scripts/console_check.sh --screenshots # also rewrite docs/console/*.png from this run
#   scripts/console_check.sh -- -k live    # anything after -- goes to pytest
#   LEDGER_CONSOLE_DIR=api/console scripts/console_check.sh  # the console from the folder, not the binary
#
# Installs Chromium (apt-get) when missing, and Playwright and pytest (pinned in
# tests/console/requirements.txt) into a virtual environment beside the build ($CARGO_TARGET_DIR, or
# target/ when that is unset, as for the binary). Playwright uses
# /usr/bin/chromium: it downloads no browser of its own.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
screenshots=$(mktemp -d /tmp/ledger-console-shots.XXXXXX)
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --short) ;;
        --screenshots) screenshots="$root/docs/console" ;;
        --) shift; pytest_args=("$@"); break ;;
        *) echo "usage: $0 [--short] [--screenshots] [-- PYTEST_ARGS…]" >&2; exit 2 ;;
    esac
    shift
done

if [ ! -x /usr/bin/chromium ]; then
    echo "chromium missing: installing" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

source "$root/scripts/python_tool.sh"
venv="${CARGO_TARGET_DIR:-$root/target}/console-venv"
requirements_venv "$venv" "$root/tests/console/requirements.txt"

ledger=$(build_ledger)
echo "== browser tests (screenshots in $screenshots)" >&2
LEDGER_BIN="$ledger" CHROMIUM=/usr/bin/chromium CONSOLE_SCREENSHOT_DIR="$screenshots" \
    "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/console "${pytest_args[@]}"
