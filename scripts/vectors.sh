#!/usr/bin/env bash
# The verifier kit's test vectors (issue 25): tools/make_vectors.py drives a real `ledger serve`
# (its own scratch PostgreSQL) through every set and writes docs/vectors from its answers.
#
#   scripts/vectors.sh [--out DIR]   regenerate the vectors (default docs/vectors)
#   scripts/vectors.sh --check       regenerate into a scratch directory and run the independent
#                                    verifier over them: proves the command works from a fresh clone
#
# LEDGER_BIN names the server binary (default target/debug/ledger, built when missing). Progress
# goes to stderr; with --check, stdout carries the verifier's JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."

out=docs/vectors
check=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --check) check=1; shift ;;
        *) echo "usage: scripts/vectors.sh [--out DIR] [--check]" >&2; exit 2 ;;
    esac
done

bin="${LEDGER_BIN:-target/debug/ledger}"
if [ ! -x "$bin" ]; then
    echo "== $bin is missing: cargo build -p api --bin ledger" >&2
    cargo build -p api --bin ledger >&2
fi

if [ "$check" = 1 ]; then
    # A scratch copy, so that a check never touches the committed vectors.
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    out="$scratch/vectors"
fi

python3 tools/make_vectors.py --ledger-bin "$bin" --out "$out"

if [ "$check" = 1 ]; then
    echo "== verifying the regenerated vectors" >&2
    python3 tools/verify_export.py --vectors "$out"
fi
