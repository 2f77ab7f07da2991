#!/usr/bin/env python3
"""PostgreSQL's own floor for what a workload writes: the same rows, per transfer, by COPY.

    bench/copy_floor.py counts DATABASE >before.json        # rows written so far, per table
    bench/copy_floor.py counts DATABASE --settled >after.json
    bench/copy_floor.py measure DATABASE PG_DATA before.json after.json TRANSFERS   # one JSON line

`counts` reads pg_stat_user_tables (rows inserted and updated per table). Backends report those
figures when they go idle, up to PGSTAT_IDLE_S later, so `--settled` waits until they stop moving.

`measure` takes the rows the run wrote per transfer, table by table, and writes as many rows for
FLOOR_TRANSFERS_MAX transfers (or the run's, if fewer) into copies of those tables in schema
`copy_floor` (`LIKE … INCLUDING ALL`: the same columns, defaults and indexes), durably, in one
transaction: the inserted rows by binary COPY of rows the run wrote, the updated ones by an UPDATE
of as many row versions. That is what PostgreSQL needs at least to take those rows, without the
ledger's work and without the round trips of a batch; its CPU is that of the session's backend,
read from the postmaster's reaped children (the backend has ended by then), and its wall time
from the server's clock around the transaction. Needs PGHOST/PGUSER (or a socket in PG_DATA) and
psql (PSQL, or on the PATH).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time

FLOOR_TRANSFERS_MAX = 20_000
PGSTAT_IDLE_S = 10
SETTLE_BOUND_S = 30
APPLICATION = "ledger-copy-floor"
TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def psql(database, *args, input_text=None):
    return subprocess.run(
        [os.environ.get("PSQL", "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", database, "-At", *args],
        check=True, capture_output=True, text=True, input=input_text,
        env={**os.environ, "PGAPPNAME": APPLICATION}).stdout


def counts(database):
    out = psql(database, "-F", "\t", "-c",
               "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
               "WHERE schemaname <> 'copy_floor'")
    rows = (line.split("\t") for line in out.splitlines() if line)
    return {table: {"ins": int(ins), "upd": int(upd)} for table, ins, upd in rows}


def settled_counts(database):
    """The counts once every backend has reported: two readings a second apart that agree, the
    second at least PGSTAT_IDLE_S after the first reading (an idle backend reports by then)."""
    started = time.monotonic()
    last = counts(database)
    while time.monotonic() - started < SETTLE_BOUND_S:
        time.sleep(1)
        now = counts(database)
        if now == last and time.monotonic() - started >= PGSTAT_IDLE_S:
            return now
        last = now
    return last


def written(before, after):
    """{table: (inserted, updated)} for every table the run wrote."""
    delta = {}
    for table, a in after.items():
        b = before.get(table, {"ins": 0, "upd": 0})
        ins, upd = a["ins"] - b["ins"], a["upd"] - b["upd"]
        if ins > 0 or upd > 0:
            delta[table] = (ins, upd)
    return delta


def copy_name(table):
    return "copy_floor." + '"' + table.replace(".", "__") + '"'


def quoted(table):
    schema, name = table.split(".", 1)
    return f'"{schema}"."{name}"'


def prepare(database, plan, scratch):
    """Untimed: the empty copies, the files of rows to COPY, the rows to update already in."""
    statements = ["DROP SCHEMA IF EXISTS copy_floor CASCADE;", "CREATE SCHEMA copy_floor;"]
    for table, (ins, upd) in plan.items():
        statements.append(f"CREATE TABLE {copy_name(table)} (LIKE {quoted(table)} INCLUDING ALL);")
        newest = f"SELECT ctid FROM {quoted(table)} ORDER BY ctid DESC LIMIT {ins}"
        if upd:
            # Rows to update: others than those the COPY will bring, so that no key repeats.
            statements.append(f"INSERT INTO {copy_name(table)} SELECT * FROM {quoted(table)} "
                              f"WHERE ctid NOT IN ({newest}) LIMIT {upd};")
    psql(database, input_text="\n".join(statements))
    for table, (ins, _) in plan.items():
        if ins:
            psql(database, "-c", f"\\copy (SELECT * FROM {quoted(table)} ORDER BY ctid DESC LIMIT {ins}) "
                                 f"TO '{scratch}/{table}.bin' (FORMAT binary)")


def timed_script(database, plan, scratch):
    lines = ["SELECT clock_timestamp() AS t0 \\gset", "BEGIN;"]
    for table, (ins, upd) in plan.items():
        if ins:
            lines.append(f"\\copy {copy_name(table)} FROM '{scratch}/{table}.bin' (FORMAT binary)")
        if upd:
            column = psql(database, "-c",
                          f"SELECT attname FROM pg_attribute WHERE attrelid = '{quoted(table)}'::regclass "
                          "AND attnum > 0 AND NOT attisdropped ORDER BY attnum DESC LIMIT 1").strip()
            present = int(psql(database, "-c", f"SELECT count(*) FROM {copy_name(table)}").strip())
            # A row is updated once per statement: as many rounds as it takes to reach `upd`.
            for round_ in range(math.ceil(upd / max(present, 1))):
                n = min(present, upd - round_ * present)
                lines.append(f'UPDATE {copy_name(table)} SET "{column}" = "{column}" WHERE ctid IN '
                             f"(SELECT ctid FROM {copy_name(table)} LIMIT {n});")
    lines += ["COMMIT;", "SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);"]
    return "\n".join(lines)


def reaped_ticks(pg_data):
    with open(os.path.join(pg_data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    with open(f"/proc/{postmaster}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])


def session_gone(database):
    return psql(database, "-c", f"SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                f"'{APPLICATION}' AND pid <> pg_backend_pid()").strip() == "0"


def measure(database, pg_data, before, after, transfers):
    floor_transfers = min(transfers, FLOOR_TRANSFERS_MAX)
    delta = written(before, after)
    plan = {t: (round(ins * floor_transfers / transfers), round(upd * floor_transfers / transfers))
            for t, (ins, upd) in delta.items()}
    with tempfile.TemporaryDirectory(prefix="ledger-copy-floor.") as scratch:
        os.chmod(scratch, 0o755)
        prepare(database, plan, scratch)
        script = timed_script(database, plan, scratch)
        ticks = reaped_ticks(pg_data)
        seconds = float(psql(database, input_text=script).split()[-1])
        deadline = time.monotonic() + 10
        while not session_gone(database) and time.monotonic() < deadline:
            time.sleep(0.05)
        backend_ms = (reaped_ticks(pg_data) - ticks) * TICK_MS
    psql(database, "-c", "DROP SCHEMA copy_floor CASCADE")
    return {
        "floor_transfers": floor_transfers,
        "rows_per_transfer": {t: {"inserted": round(ins / transfers, 3), "updated": round(upd / transfers, 3)}
                              for t, (ins, upd) in sorted(delta.items())},
        "wall_us_per_transfer": round(seconds * 1e6 / floor_transfers, 2),
        "backend_cpu_us_per_transfer": round(backend_ms * 1000 / floor_transfers, 2),
    }


def main(argv):
    if len(argv) in (3, 4) and argv[1] == "counts":
        settle = argv[3:] == ["--settled"]
        print(json.dumps(settled_counts(argv[2]) if settle else counts(argv[2])))
    elif len(argv) == 7 and argv[1] == "measure":
        with open(argv[4]) as b, open(argv[5]) as a:
            print(json.dumps(measure(argv[2], argv[3], json.load(b), json.load(a), int(argv[6]))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
