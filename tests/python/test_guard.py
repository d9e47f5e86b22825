"""The guard against the caller's death, and cancellation of every call in flight.

* A caller's "reap all my children" loop (``os.wait()`` until ChildProcessError) returns after a
  call in every context: neither the guard nor the forkserver is the caller's child.
* A SIGKILLed caller takes its calls' whole trees with it; on a cgroup backend even a process that
  left the group with ``setsid``, and the call's leaves are removed.
* Ctrl-C in the main thread cancels calls made from worker threads (ThreadPoolExecutor): they end
  promptly, their trees gone.
* An exception raised by a signal handler (SystemExit from a SIGTERM handler, an alarm handler
  raising) is re-raised only once the call's tree is gone.

Every scenario runs in a separate caller process (a small script) that this test acts on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_execution_limits import process_is_alive, wait_until_dead

CONTEXTS = ["fork", "spawn", "forkserver"]

# The call's function: a child in its group and one that leaves it (setsid), then hang.
HANG = textwrap.dedent(
    """
    import os, subprocess, sys, time

    def hang(pid_file):
        child = subprocess.Popen(["sleep", "60"])
        escapee = subprocess.Popen(["sleep", "60"], start_new_session=True)
        with open(pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid} {escapee.pid}\\n")
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(60)
    """
)


def run_script(tmp_path: Path, body: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    script = tmp_path / "caller.py"
    script.write_text(HANG + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )


def start_script(tmp_path: Path, body: str, *args: str, names=("pids",)):
    script = tmp_path / "caller.py"
    script.write_text(HANG + textwrap.dedent(body))
    caller = subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pid_files = [tmp_path / name for name in names]
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in pid_files):
        if caller.poll() is not None or time.monotonic() > deadline:
            caller.kill()
            out, err = caller.communicate()
            pytest.fail(f"the caller never started its calls: {out}\n{err}")
        time.sleep(0.01)
    return caller, [int(p) for f in pid_files for p in f.read_text().split()]


def cgroup_leaves(pid: int) -> list:
    """The cgroup leaf directories (``.../call-...``) that ``pid`` is in."""
    leaves = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return leaves
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "/call-" not in path:
            continue
        hierarchy = controllers.replace("name=", "") or "unified"
        for base in (f"/sys/fs/cgroup/{hierarchy}", "/sys/fs/cgroup"):
            if os.path.isdir(base + path):
                leaves.append(base + path)
                break
    return leaves


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_callers_wait_for_all_children_loop_returns_after_a_call(ctx, tmp_path):
    body = """
    import os, sys, json
    from pynisher import _core, _forkserver
    from pynisher._run import run_limited
    assert run_limited(os.getpid, wall_time=20, context=sys.argv[1]).status == "completed"
    helpers = [p for p in (_core.guard_pid(), _forkserver.server_pid()) if p]
    reaped = []
    while True:
        try:
            reaped.append(os.wait()[0])
        except ChildProcessError:
            break
    parents = [int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) for p in helpers]
    print(json.dumps({"me": os.getpid(), "helpers": helpers, "parents": parents, "reaped": reaped}))
    """
    done = run_script(tmp_path, body, ctx, timeout=60)
    assert done.returncode == 0, done
    report = json.loads(done.stdout)
    # The guard at least (and the forkserver in that context) lives on, and none is the caller's
    # child: the loop above returned.
    assert len(report["helpers"]) == (2 if ctx == "forkserver" else 1), report
    assert report["me"] not in report["parents"], report


@pytest.mark.parametrize("backend", ["cgroup1", "none"])
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_sigkilled_caller_takes_its_calls_trees_with_it(ctx, backend, tmp_path):
    from pynisher import _core

    if backend not in _core.available_backends():
        pytest.skip(f"no {backend} backend on this machine")
    body = """
    import sys
    from pynisher._run import run_limited
    run_limited(hang, (sys.argv[2],), {}, wall_time=50, context=sys.argv[1], backend=sys.argv[3])
    """
    caller, (worker, child, escapee) = start_script(
        tmp_path, body, ctx, str(tmp_path / "pids"), backend
    )
    leaves = cgroup_leaves(worker)
    assert bool(leaves) == (backend != "none"), leaves
    caller.kill()
    caller.wait(timeout=30)
    caller.stdout.close()
    caller.stderr.close()
    # Zombies waiting for PID 1 (it reaps orphans late here) count as dead.
    assert wait_until_dead([worker, child], timeout=5) == []
    if backend == "none":
        # Out of reach on the process-group backend (documented): clean up.
        os.kill(escapee, signal.SIGKILL)
        return
    assert wait_until_dead([escapee], timeout=5) == [], "the setsid escapee survived"
    deadline = time.monotonic() + 5
    while any(os.path.isdir(leaf) for leaf in leaves) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [leaf for leaf in leaves if os.path.isdir(leaf)] == []


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_ctrl_c_cancels_the_calls_of_worker_threads(ctx, tmp_path):
    body = """
    import signal, sys, time
    from concurrent.futures import ThreadPoolExecutor
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Imported after: pynisher installs its Ctrl-C handler over Python's default one.
    from pynisher._run import run_limited
    def call(i):
        return run_limited(hang, (sys.argv[2] + str(i),), {}, wall_time=50, context=sys.argv[1])
    pool = ThreadPoolExecutor(3)
    futures = [pool.submit(call, i) for i in range(3)]
    try:
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        interrupted = time.time()
    pool.shutdown(wait=True)
    outcomes = [type(f.exception()).__name__ for f in futures]
    print("DONE", interrupted, time.time(), outcomes, flush=True)
    """
    caller, pids = start_script(
        tmp_path, body, ctx, str(tmp_path / "pids"), names=("pids0", "pids1", "pids2")
    )
    assert len(pids) == 9
    sent = time.time()
    caller.send_signal(signal.SIGINT)
    out, err = caller.communicate(timeout=30)
    assert out.startswith("DONE"), (out, err)
    _, interrupted, finished, outcomes = out.split(" ", 3)
    # Every worker's call ended (KeyboardInterrupt) promptly, not when its wall limit ran out.
    assert float(finished) - sent < 3.0, out
    assert outcomes.strip() == "['KeyboardInterrupt', 'KeyboardInterrupt', 'KeyboardInterrupt']"
    workers_and_children = [p for i, p in enumerate(pids) if i % 3 != 2]
    # The pool's threads return only once their calls' processes are killed and reaped.
    assert [p for p in workers_and_children if process_is_alive(p)] == []
    for escapee in pids[2::3]:
        if process_is_alive(escapee):
            os.kill(escapee, signal.SIGKILL)


@pytest.mark.parametrize("how", ["sigterm_handler_raises_systemexit", "alarm_handler_raises"])
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_an_exception_from_a_signal_handler_returns_only_after_the_tree_is_gone(ctx, how, tmp_path):
    body = """
    import os, signal, sys, time
    from pynisher._run import run_limited
    def stop(signum, frame):
        raise SystemExit("stopped")
    def alarm(signum, frame):
        raise RuntimeError("alarm")
    if sys.argv[3] == "alarm_handler_raises":
        signal.signal(signal.SIGALRM, alarm)
    else:
        signal.signal(signal.SIGTERM, stop)
    try:
        run_limited(hang, (sys.argv[2],), {}, wall_time=50, context=sys.argv[1])
    except BaseException as err:
        pids = [int(p) for p in open(sys.argv[2]).read().split()[:2]]
        def alive(pid):
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                return False
            return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        print("RAISED", type(err).__name__, [p for p in pids if alive(p)], flush=True)
    """
    caller, pids = start_script(tmp_path, body, ctx, str(tmp_path / "pids"), how)
    if how == "alarm_handler_raises":
        caller.send_signal(signal.SIGALRM)
    else:
        caller.send_signal(signal.SIGTERM)
    out, err = caller.communicate(timeout=30)
    expected = "RuntimeError" if how == "alarm_handler_raises" else "SystemExit"
    # The exception reaches the caller only once the call's process and its child are dead.
    assert out.strip() == f"RAISED {expected} []", (out, err)
    if process_is_alive(pids[2]):
        os.kill(pids[2], signal.SIGKILL)
