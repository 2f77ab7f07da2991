"""Where the writer's time went during one run, from two scrapes of its /metrics (before and
after): milliseconds per committed batch for each phase, commands per batch, and the p99 of the
asynchronous projections' lag (from the histogram's buckets). Prints one JSON object.

    python3 bench/writer_phases.py before.txt after.txt
"""
import json
import re
import sys

SERIES = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$')


def scrape(path):
    values = {}
    for line in open(path):
        m = SERIES.match(line.strip())
        if m:
            values[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return values


def lag_p99_ms(before, after):
    """The 99th percentile of the projection lag over the run, across projections: the smallest
    bucket bound holding 99 % of the pages applied meanwhile (None when none was)."""
    buckets = {}
    for (name, labels), value in after.items():
        if name != "ledger_projection_lag_seconds_bucket":
            continue
        le = re.search(r'le="([^"]+)"', labels).group(1)
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0) + value - before.get((name, labels), 0)
    total = buckets.get(float("inf"), 0)
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * total:
            return None if bound == float("inf") else bound * 1000
    return None


def main():
    before, after = scrape(sys.argv[1]), scrape(sys.argv[2])
    delta = lambda key: after.get(key, 0) - before.get(key, 0)
    batches = delta(("ledger_writer_batches_total", ""))
    phases = {}
    for phase in ("decide", "hash", "rows", "write"):
        seconds = delta(("ledger_writer_phase_seconds_total", f'{{phase="{phase}"}}'))
        phases[phase] = round(seconds * 1000 / batches, 3) if batches else None
    commands = delta(("ledger_batch_size_sum", ""))
    print(json.dumps({
        "writer_ms_per_batch": phases,
        "commands_per_batch": round(commands / batches, 1) if batches else None,
        "projection_lag_ms_p99": lag_p99_ms(before, after),
    }))


main()
