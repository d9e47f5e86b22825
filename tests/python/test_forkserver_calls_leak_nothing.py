"""Issue 13's leak bar for the Python forkserver context: thousands of calls, from one thread and
from several, leave the caller and its server with the descriptors and threads they had after the
first calls, the server with no zombie and at most a few cgroup leaves, and nothing once the
caller has exited (the fork context's counterpart: ``test_fork_calls_leak_nothing.py``).

The calls run in a fresh interpreter that reports what it saw as JSON. ``CALLS`` calls from the
main thread, then ``CALLS`` more spread over 4 threads (each thread keeps a connection to the
server while it lives). Set ``PYNISHER_LEAK_CALLS=10000`` to run the full bar by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from leak_probes import leaves_of

CALLS = int(os.environ.get("PYNISHER_LEAK_CALLS", "2000"))

HELPER = textwrap.dedent(
    """
    import json, sys, threading
    import pynisher
    from pynisher import _forkserver
    from leak_probes import most_leaves_per_parent, steady, zombie_children

    def ident(i):
        return i

    calls = int(sys.argv[1])
    limited = pynisher.limit(ident, wall_time=5, memory=(256, "MB"), context="forkserver", warnings=False)

    def many(n):
        for i in range(n):
            assert limited(i) == i, i

    # What later calls reuse exists after these: the server, its guard, finisher threads, and
    # four threads' connections (closed by the server when the threads end).
    many(10)
    workers = [threading.Thread(target=many, args=(10,)) for _ in range(4)]
    [t.start() for t in workers]
    [t.join() for t in workers]
    del workers
    server = _forkserver.server_pid()
    fds, threads = steady("/proc/self/fd"), steady("/proc/self/task")
    server_fds, server_threads = steady(f"/proc/{server}/fd"), steady(f"/proc/{server}/task")
    most_leaves = 0
    for round in range(10):
        many(calls // 20)
        workers = [threading.Thread(target=many, args=(calls // 80,)) for _ in range(4)]
        [t.start() for t in workers]
        [t.join() for t in workers]
        del workers
        most_leaves = max(most_leaves, most_leaves_per_parent(server))
    print(json.dumps({
        "server": server,
        "backend": limited.outcome.backend,
        "fds": [fds, steady("/proc/self/fd")],
        "threads": [threads, steady("/proc/self/task")],
        "server_fds": [server_fds, steady(f"/proc/{server}/fd")],
        "server_threads": [server_threads, steady(f"/proc/{server}/task")],
        "server_zombies": zombie_children(server),
        "most_leaves": most_leaves,
    }))
    """
)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_thousands_of_forkserver_calls_from_threads_leak_no_descriptor_thread_zombie_or_leaf():
    done = subprocess.run(
        [sys.executable, "-c", HELPER, str(CALLS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["fds"][1] == seen["fds"][0], ("caller descriptors", seen)
    assert seen["threads"][1] == seen["threads"][0], ("caller threads", seen)
    assert seen["server_fds"][1] == seen["server_fds"][0], ("server descriptors", seen)
    assert seen["server_threads"][1] <= seen["server_threads"][0] + 2, ("server threads", seen)
    assert seen["server_zombies"] == 0, seen
    if seen["backend"] in ("cgroup1", "cgroup2"):
        # Per leaf parent, between rounds: the parked child's, and those made ahead or left
        # behind for later removal (some per thread that was calling): bounded, whatever the
        # number of calls.
        assert 1 <= seen["most_leaves"] <= 8, seen
    # The caller exited normally: its server follows, and removes what it made.
    assert _gone_within(seen["server"], 10), seen
    deadline = time.monotonic() + 10
    while leaves_of(seen["server"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leaves_of(seen["server"]) == []


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
