#!/usr/bin/env python3
"""Independent verifier of a ledger export.

Reads the NDJSON that `ledger export` writes, recomputes the hash chain from the genesis value as
docs/audit.md specifies it, and recomputes every balance from the postings. Standard library only,
and no code shared with the server, so the server's encoder is never only checking itself.

    python3 tools/verify_export.py export.ndjson [--prev-hash HEX] [--expect-head HEX]

Prints one JSON object: events, head position and hash, the first broken position (if any), and
the balances per account and asset. Exit status 1 when the chain breaks, a posting does not fit
its asset, or an asset's balances do not sum to zero.
"""
import argparse
import hashlib
import json
import sys
from decimal import Decimal

GENESIS = hashlib.sha256(b"ledger:genesis:v1").digest()
DOMAIN = b"ledger:event:v1\n"


def canonical(value):
    """Keys sorted by code point (= UTF-8 byte order), no whitespace, minimal escaping."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def event_bytes(e):
    head = "\n".join(
        [str(e["position"]), e["event_id"], e["type"], str(e["schema_version"]), e["recorded_at"]]
    )
    return (
        DOMAIN
        + head.encode("utf-8")
        + b"\n"
        + canonical(e["payload"]).encode("utf-8")
        + b"\n"
        + canonical(e["metadata"]).encode("utf-8")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--prev-hash", help="hash before the first exported event (hex)")
    parser.add_argument("--expect-head", help="fail unless the last hash equals this (hex)")
    args = parser.parse_args()

    previous = bytes.fromhex(args.prev_hash) if args.prev_hash else GENESIS
    scales, balances, problems = {}, {}, []
    expected_position, head_position, broken = None, 0, None
    with open(args.export, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            e = json.loads(line)
            if expected_position is not None and e["position"] != expected_position:
                broken = broken or expected_position
                problems.append(f"line {number}: position {e['position']}, expected {expected_position}")
                break
            if expected_position is None and not args.prev_hash and e["position"] != 1:
                problems.append("the export does not start at position 1: pass --prev-hash")
                broken = e["position"]
                break
            computed = hashlib.sha256(previous + event_bytes(e)).digest()
            if computed.hex() != e["hash"]:
                broken = e["position"]
                problems.append(f"position {e['position']}: hash does not match content and predecessor")
                break
            previous, head_position, expected_position = computed, e["position"], e["position"] + 1

            payload = e["payload"]
            if e["type"] == "AssetDefined":
                scales[payload["asset"]] = payload["scale"]
            # Money moves with posted transactions and trades, and with the posting of a pending
            # one; a pending transaction only reserves (docs/audit.md).
            moves = e["type"] == "PendingPosted" or (
                e["type"] in ("TransactionPosted", "TradeExecuted") and not payload.get("pending", False))
            for posting in payload.get("postings", []) if moves else []:
                asset, amount = posting["asset"], Decimal(posting["amount"])
                if asset not in scales or amount <= 0 or -amount.as_tuple().exponent > scales[asset]:
                    problems.append(f"position {e['position']}: posting {posting} does not fit {asset}")
                for account, sign in ((posting["source"], -1), (posting["destination"], 1)):
                    key = (account, asset)
                    balances[key] = balances.get(key, Decimal(0)) + sign * amount

    totals = {}
    for (account, asset), amount in balances.items():
        totals[asset] = totals.get(asset, Decimal(0)) + amount
    for asset, total in sorted(totals.items()):
        if total != 0:
            problems.append(f"balances of {asset} sum to {total}, not zero")
    head_hash = previous.hex()
    if args.expect_head and broken is None and head_hash != args.expect_head:
        problems.append(f"head hash {head_hash} is not the expected {args.expect_head}")

    def shown(account, asset, amount):
        scale = scales.get(asset, 0)
        return str(amount.quantize(Decimal(1).scaleb(-scale))) if scale else str(amount.quantize(Decimal(1)))

    print(json.dumps({
        "intact": broken is None,
        "head_position": head_position,
        "head_hash": head_hash,
        "first_broken_position": broken,
        "problems": problems,
        "balances": {f"{account} {asset}": shown(account, asset, amount)
                     for (account, asset), amount in sorted(balances.items())},
    }, indent=1, sort_keys=True))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
