"""Execution layer: the caller's side — Ctrl-C, a killed caller, the caller's signal handlers,
daemonic callers (multiprocessing.Pool workers) and the forkserver's life cycle.

The Ctrl-C and kill tests run the call in a separate caller process (a small script) and act on
it from here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pynisher._run import run_limited
from test_execution_limits import process_is_alive, wait_until_dead

CONTEXTS = ["fork", "spawn", "forkserver"]

CALLER_SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pynisher._run import run_limited

    def hang(pid_file):
        child = subprocess.Popen(["sleep", "60"])
        with open(pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}\\n")
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(60)

    context, pid_file = sys.argv[1], sys.argv[2]
    try:
        result = run_limited(hang, (pid_file,), {}, wall_time=50, context=context)
        print("RETURNED", result.status, flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", repr(time.time()), flush=True)
    """
)


def start_caller(ctx: str, tmp_path: Path):
    script = tmp_path / "caller.py"
    script.write_text(CALLER_SCRIPT)
    pid_file = tmp_path / "pids"
    caller = subprocess.Popen(
        [sys.executable, str(script), ctx, str(pid_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        if caller.poll() is not None or time.monotonic() > deadline:
            caller.kill()
            out, err = caller.communicate()
            pytest.fail(f"the caller never started the call: {out}\n{err}")
        time.sleep(0.01)
    call_pids = [int(p) for p in pid_file.read_text().split()]
    return caller, call_pids


@pytest.mark.timing
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_ctrl_c_raises_keyboard_interrupt_promptly_and_kills_the_call(ctx, tmp_path):
    caller, call_pids = start_caller(ctx, tmp_path)
    assert all(process_is_alive(p) for p in call_pids)
    sent_at = time.time()
    caller.send_signal(signal.SIGINT)
    out, err = caller.communicate(timeout=30)
    assert out.startswith("INTERRUPTED"), (out, err)
    latency = float(out.split()[1]) - sent_at
    # The target is 100 ms; the bound is generous for a loaded machine (see the benchmark).
    assert latency < 0.5, latency
    # KeyboardInterrupt is raised only after the call's processes are killed and reaped.
    assert [p for p in call_pids if process_is_alive(p)] == []


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_killed_caller_takes_the_call_tree_with_it(ctx, tmp_path):
    caller, call_pids = start_caller(ctx, tmp_path)
    caller.kill()
    caller.wait(timeout=30)  # not communicate(): a survivor would hold the pipes open
    assert wait_until_dead(call_pids, timeout=5) == []
    caller.stdout.close()
    caller.stderr.close()


def _handlers():
    return {
        sig: signal.getsignal(sig)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD, signal.SIGXCPU)
    }


def _custom_handler(signum, frame):  # pragma: no cover - never called
    pass


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_callers_signal_handlers_are_left_exactly_as_they_were(ctx):
    previous = signal.signal(signal.SIGTERM, _custom_handler)
    try:
        before = _handlers()
        run_limited(time.sleep, (0.01,), {}, wall_time=5, context=ctx)
        run_limited(time.sleep, (5,), {}, wall_time=0.2, grace_period=0.2, context=ctx)
        assert _handlers() == before
    finally:
        signal.signal(signal.SIGTERM, previous)


def _limited_call_in_pool_worker(ctx):
    assert multiprocessing.current_process().daemon
    result = run_limited(pow, (2, 10), {}, wall_time=10, context=ctx)
    return result.status, result.value


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_works_inside_a_daemonic_multiprocessing_pool_worker(ctx):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_limited_call_in_pool_worker, (ctx,)) == ("completed", 1024)


def test_forkserver_is_started_once_and_reused():
    from pynisher import _forkserver

    run_limited(pow, (2, 2), {}, context="forkserver")
    first = _forkserver.server_pid()
    run_limited(pow, (2, 3), {}, context="forkserver")
    assert first is not None and _forkserver.server_pid() == first


def test_forkserver_that_was_killed_is_replaced():
    from pynisher import _forkserver

    run_limited(pow, (2, 2), {}, context="forkserver")
    old = _forkserver.server_pid()
    os.kill(old, signal.SIGKILL)
    assert wait_until_dead([old], timeout=5) == []
    assert run_limited(pow, (2, 5), {}, context="forkserver").value == 32
    assert _forkserver.server_pid() not in (None, old)


def test_forkserver_exits_with_its_caller(tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(
        "from pynisher._run import run_limited\n"
        "from pynisher import _forkserver\n"
        "run_limited(pow, (2, 2), {}, context='forkserver')\n"
        "print(_forkserver.server_pid(), flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert wait_until_dead([int(out)], timeout=5) == []


def test_forkserver_calls_run_the_callers_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_limited(os.getcwd, (), {}, context="forkserver").value == str(tmp_path)
