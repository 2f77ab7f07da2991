#!/usr/bin/env python3
"""CPU time per part of the stack, read from /proc before and after a run.

    bench/cpu.py snapshot PG_DATA LEDGER_PID >before.json      # before a run
    bench/cpu.py snapshot PG_DATA LEDGER_PID >after.json       # after it
    bench/cpu.py diff before.json after.json                   # {"ledger_ms": …, "writer_ms": …}

The parts:
  - `ledger`: the `ledger serve` process, all its threads;
  - `writer`: the PostgreSQL backends of the ledgers' writers (`ledger-writer:<ledger>` in
    pg_stat_activity);
  - `projector`: the backends of the asynchronous projectors (`ledger-projector:<ledger>`);
  - `postgres_other`: every other PostgreSQL process (read pools, relays, the WAL writer, the
    checkpointer, the postmaster), including backends that ended during the run: the postmaster
    reaps them, so their time is in its children's time (`cutime`, `cstime`).
The load generator counts its own (`cpu_ms` in ledger-bench's JSON): it starts and ends inside
the run, so it is not here.

Linux only; clock ticks from os.sysconf, so the resolution is 10 ms per process.
"""

import json
import os
import subprocess
import sys

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(ppid, own ticks, reaped children's ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its closing paren is fixed.
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, utime + stime, cutime + cstime


def application_names(pg_data):
    """pid -> application_name of every PostgreSQL session, through psql on the data dir's socket."""
    socket_dir = pg_data_socket(pg_data)
    out = subprocess.run(
        [os.environ.get("PSQL", "psql"), "-h", socket_dir, "-d", "postgres", "-AtF", "\t", "-c",
         "SELECT pid, application_name FROM pg_stat_activity"],
        check=True, capture_output=True, text=True,
        env={**os.environ, "PGUSER": os.environ.get("PGUSER", "bench")},
    ).stdout
    names = {}
    for line in out.splitlines():
        pid, _, name = line.partition("\t")
        names[int(pid)] = name
    return names


def pg_data_socket(pg_data):
    # postmaster.pid: line 1 the pid, line 5 the socket directory.
    with open(os.path.join(pg_data, "postmaster.pid")) as f:
        lines = f.read().splitlines()
    return lines[4]


def postmaster_pid(pg_data):
    with open(os.path.join(pg_data, "postmaster.pid")) as f:
        return int(f.readline())


def snapshot(pg_data, ledger_pid):
    postmaster = postmaster_pid(pg_data)
    names = application_names(pg_data)
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        s = stat(int(entry))
        if s and s[0] == postmaster:
            children[int(entry)] = {"ticks": s[1], "name": names.get(int(entry), "")}
    own = stat(postmaster)
    ledger = stat(ledger_pid)
    return {
        "postmaster": {"ticks": own[1], "reaped_ticks": own[2]},
        "backends": {str(pid): c for pid, c in children.items()},
        "ledger_ticks": ledger[1] if ledger else 0,
    }


def part(name):
    if name.startswith("ledger-writer:"):
        return "writer"
    if name.startswith("ledger-projector:"):
        return "projector"
    return "postgres_other"


def diff(before, after):
    ms = {"ledger": 0.0, "writer": 0.0, "projector": 0.0, "postgres_other": 0.0}
    ms["ledger"] = (after["ledger_ticks"] - before["ledger_ticks"]) * TICK_MS
    for pid, b in after["backends"].items():
        earlier = before["backends"].get(pid, {}).get("ticks", 0)
        ms[part(b["name"])] += (b["ticks"] - earlier) * TICK_MS
    # Backends that ended during the run: the reaped time holds all of theirs, of which the part
    # before the run was already counted in `before`.
    ended = sum(b["ticks"] for pid, b in before["backends"].items() if pid not in after["backends"])
    reaped = after["postmaster"]["reaped_ticks"] - before["postmaster"]["reaped_ticks"]
    own = after["postmaster"]["ticks"] - before["postmaster"]["ticks"]
    ms["postgres_other"] += (reaped - ended + own) * TICK_MS
    return {f"{k}_ms": round(v, 1) for k, v in ms.items()}


def main(argv):
    if len(argv) == 4 and argv[1] == "snapshot":
        print(json.dumps(snapshot(argv[2], int(argv[3]))))
    elif len(argv) == 4 and argv[1] == "diff":
        with open(argv[2]) as b, open(argv[3]) as a:
            print(json.dumps(diff(json.load(b), json.load(a))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
