"""Ctrl-C during a limited call: the caller gets KeyboardInterrupt quickly and the call's tree dies.

The caller is a separate Python process (so the test runner itself is never interrupted); the
limited function starts `sleep 60` and hangs. SIGINT goes either to the caller alone
(``kill -INT``) or to its whole process group (what a terminal's Ctrl-C does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pyn_helpers import assert_gone

CALLER = textwrap.dedent(
    """
    import sys, time, pynisher, pyn_helpers as h
    api, method, pidfile = sys.argv[1:4]
    try:
        if api == "v1":
            pynisher.limit(h.spawn_sleep_then, wall_time=60, context=method)(pidfile, "hang")
        else:
            obj = pynisher.enforce_limits(wall_time_in_s=60, context=method)(h.spawn_sleep_then)
            obj(pidfile, "hang")
    except KeyboardInterrupt:
        print("KeyboardInterrupt", time.monotonic(), flush=True)
        sys.exit(0)
    print("call ended without KeyboardInterrupt", flush=True)
    """
)


@pytest.mark.timing
@pytest.mark.parametrize("target", ["process", "group"])
@pytest.mark.parametrize("api", ["v1", "v0"])
def test_ctrl_c_during_call(api: str, target: str, context: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, api, context, str(pidfile)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
            assert caller.poll() is None, caller.communicate()
            assert time.monotonic() < deadline, "the limited function never started"
            time.sleep(0.02)
        time.sleep(0.2)
        sent = time.monotonic()
        if target == "group":
            os.killpg(caller.pid, signal.SIGINT)
        else:
            os.kill(caller.pid, signal.SIGINT)
        out, err = caller.communicate(timeout=20)
    finally:
        if caller.poll() is None:
            os.killpg(caller.pid, signal.SIGKILL)
            caller.wait()
    assert caller.returncode == 0, (out, err)
    word, when = out.split()
    assert word == "KeyboardInterrupt"
    latency = float(when) - sent  # CLOCK_MONOTONIC is shared by all processes
    print(f"latency {latency * 1000:.1f} ms")
    assert latency < 0.1, f"KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT"
    for pid in map(int, pidfile.read_text().split()):
        assert_gone(pid)

