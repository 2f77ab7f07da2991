"""A `ledger serve` started by a script or a test: waiting until it is ready, and stopping it.

Shared by tools/make_vectors.py and tests/console/conftest.py: both start a real server, poll its
own readiness (`/readyz`, never a fixed time) and stop it with SIGTERM, as an operator would.
"""

import subprocess
import time
import urllib.error
import urllib.request

# Between two polls of /readyz: short against a start, which takes seconds.
POLL_S = 0.2


def wait_ready(process, base_url, log_tail, timeout_s):
    """Returns once `base_url/readyz` answers 200; raises with the log's tail if the process exits
    or the server is not ready within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ledger serve exited: {log_tail()}")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"ledger serve not ready in {timeout_s} s: {log_tail()}")


def stop(process, timeout_s):
    """SIGTERM, then SIGKILL if the server has not stopped within `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
