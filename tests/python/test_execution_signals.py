"""Execution layer: signal dispositions.

* A caller that ignores SIGCHLD (daemons and some frameworks do; programs they start inherit it)
  still gets every call's exact result, in every context.
* A forked child (fork, forkserver) keeps the dispositions the interpreter had, as
  multiprocessing's fork does: a write to a closed pipe raises BrokenPipeError, a write past
  RLIMIT_FSIZE raises OSError(EFBIG), and signal.getsignal agrees with the kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pynisher._run import run_limited
from test_execution_limits import wait_until_dead

CONTEXTS = ["fork", "spawn", "forkserver"]

SIGCHLD_IGNORING_CALLER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    from pynisher._run import run_limited

    def answer():
        return 6 * 7

    def exit_3():
        os._exit(3)

    def burn():
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
        return "burned"

    def sleep_long():
        time.sleep(10)

    def leave_a_sleeper():
        return subprocess.Popen(["sleep", "1000"]).pid

    ctx = sys.argv[1]
    out = {}
    r = run_limited(answer, context=ctx, wall_time=30)
    out["answer"] = [r.status, r.value]
    r = run_limited(exit_3, context=ctx, wall_time=30)
    out["exit"] = [r.status, r.exit_code]
    r = run_limited(burn, context=ctx, wall_time=30)
    out["burn"] = [r.status, r.value, r.cpu_time]
    r = run_limited(sleep_long, context=ctx, wall_time=0.5)
    out["sleep"] = [r.status]
    r = run_limited(leave_a_sleeper, context=ctx, wall_time=30)
    out["sleeper"] = [r.status, r.value]
    print(json.dumps(out), flush=True)
    """
)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_calls_keep_their_exact_result_when_the_caller_ignores_sigchld(ctx, tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(SIGCHLD_IGNORING_CALLER)
    done = subprocess.run(
        [sys.executable, str(script), ctx], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["answer"] == ["completed", 42]
    assert out["exit"] == ["no_result", 3]
    status, value, cpu = out["burn"]
    assert (status, value) == ("completed", "burned")
    assert cpu >= 0.28
    assert out["sleep"] == ["wall_timeout"]
    status, sleeper = out["sleeper"]
    assert status == "completed"
    assert wait_until_dead([sleeper], 2.0) == [], f"the call's leftover {sleeper} is still alive"


def closed_pipe_and_file_size():
    import errno
    import os
    import resource
    import signal
    import tempfile

    found = {}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        os.write(write_end, b"x")
        found["pipe"] = "no error"
    except BrokenPipeError:
        found["pipe"] = "BrokenPipeError"
    finally:
        os.close(write_end)

    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    with tempfile.TemporaryFile() as f:
        try:
            os.write(f.fileno(), b"x" * 4096)
            os.write(f.fileno(), b"x" * 4096)
            found["fsize"] = "no error"
        except OSError as e:
            found["fsize"] = errno.errorcode.get(e.errno, str(e.errno))

    with open("/proc/self/status") as status:
        ignored = int(next(line for line in status if line.startswith("SigIgn")).split()[1], 16)
    found["agree"] = [
        (signal.getsignal(s) == signal.SIG_IGN) == bool(ignored & (1 << (s - 1)))
        for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM)
    ]
    return found


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_child_keeps_the_interpreters_dispositions_so_pipes_and_file_limits_raise(ctx):
    r = run_limited(closed_pipe_and_file_size, context=ctx, wall_time=30)
    assert r.status == "completed", (r.status, r.signal, r.traceback)
    assert r.value == {"pipe": "BrokenPipeError", "fsize": "EFBIG", "agree": [True] * 4}
