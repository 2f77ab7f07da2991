#!/usr/bin/env python3
"""TigerBeetle's own benchmark, with the CPU its processes spend while transferring.

    bench/tigerbeetle.py TIGERBEETLE_BINARY TRANSFERS BATCH_SIZE   ->  one JSON line on stdout

`tigerbeetle benchmark` formats a data file, starts a single replica as a child process
(`tigerbeetle start`), creates accounts, sends the transfers in batches from its own client, then
runs queries. Only the transfer phase is comparable with a ledger workload, so the CPU of the
replica and of the client is read from /proc every SAMPLE_S and interpolated at the phase's
start and end: the phase ends when the benchmark prints "N batches in S s", and started S
seconds earlier. The run happens in a scratch directory that is removed afterwards.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SAMPLE_S = 0.02
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
RUN_BOUND_S = 600


def descendants(root):
    """{pid: (role, cpu seconds)} of `root` and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except OSError:
            continue  # gone between listing and reading
        parent, cpu = int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS_PER_S
        role = "replica" if b"start" in command[1:2] else "client"
        children.setdefault(parent, []).append((int(entry), role, cpu))
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        for child, role, cpu in children.get(pid, []):
            found[child] = (role, cpu)
            stack.append(child)
    return found


def at(samples, when, role):
    """CPU seconds of `role` at time `when`, interpolated between the samples around it."""
    totals = [(t, sum(cpu for r, cpu in procs.values() if r == role)) for t, procs in samples]
    before = [s for s in totals if s[0] <= when] or totals[:1]
    after = [s for s in totals if s[0] >= when] or totals[-1:]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def main():
    binary, transfers, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    scratch = tempfile.mkdtemp(prefix="ledger-tigerbeetle.")
    lines, samples = [], []
    try:
        process = subprocess.Popen(
            [binary, "benchmark", f"--transfer-count={transfers}", f"--transfer-batch-count={batch}"],
            cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), l) for l in process.stdout))
        reader.start()
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < RUN_BOUND_S:
            # The benchmark process is the client, and its child the replica: both are below us.
            procs = descendants(os.getpid())
            samples.append((time.monotonic(), procs))
            time.sleep(SAMPLE_S)
        if process.poll() is None:
            process.kill()
            sys.exit(f"tigerbeetle benchmark ran longer than {RUN_BOUND_S} s")
        reader.join()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = "".join(l for _, l in lines)
    phase = next(((t, float(m.group(1))) for t, l in lines
                  if (m := re.match(r"\d+ batches in ([0-9.]+) s", l))), None)
    accepted = re.search(r"load accepted = (\d+) tx/s", text)
    if process.returncode != 0 or phase is None or accepted is None:
        sys.exit(f"tigerbeetle benchmark failed (exit {process.returncode}):\n{text}")
    end, seconds = phase
    start = end - seconds
    replica = at(samples, end, "replica") - at(samples, start, "replica")
    client = at(samples, end, "client") - at(samples, start, "client")
    print(json.dumps({
        "transfers_per_s": int(accepted.group(1)),
        "batch_size": batch,
        "transfers": transfers,
        "elapsed_s": seconds,
        "replica_ms": replica * 1000,
        "client_ms": client * 1000,
        "p99_ms": float(m.group(1)) if (m := re.search(r"batch latency p99\s*=\s*(\d+) ms", text)) else None,
    }))


if __name__ == "__main__":
    main()
