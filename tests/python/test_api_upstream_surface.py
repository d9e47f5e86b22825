"""pynisher 1.0.10's surface beyond the call itself: `Pynisher._process` (a psutil.Process of the
call's child), `terminate_child_processes=False` (the function's descendants outlive the call, on
every backend), `pynisher.util.terminate_process*`, and the historic module paths."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import time

import psutil
import pytest

import pynisher
from pynisher import WallTimeoutException, _core, limit
from pynisher._run import run_limited

import pyn_helpers as h
from test_execution_limits import process_is_alive, wait_until_dead


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_process_is_a_psutil_process_of_the_calls_child(context: str) -> None:
    lf = limit(h.child_pid_and_sleeper, wall_time=10, context=context)
    assert lf._process is None
    child_pid, sleeper = lf()
    assert isinstance(lf._process, psutil.Process)
    assert lf._process.pid == child_pid != os.getpid()
    assert not lf._process.is_running()
    with pytest.raises(psutil.NoSuchProcess):
        lf._process.children(recursive=True)
    assert wait_until_dead([sleeper], 2.0) == []


def test_process_read_during_the_call_names_the_running_child(context: str) -> None:
    import threading

    lf = limit(h.sleep_and_return, wall_time=10, context=context)
    seen: list = []

    def watch() -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            process = lf._process
            if process is not None:
                seen.append((process, process.is_running(), process.pid))
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert lf(1.0) == 1.0
    watcher.join()
    assert seen, "no handle while the call ran"
    process, running, pid = seen[0]
    assert running and pid == lf._pid != os.getpid()
    assert lf._process is process and not process.is_running()


def test_process_survives_pickling_after_a_call_and_follows_later_calls() -> None:
    import pickle

    lf = limit(os.getpid, wall_time=10, context="fork")
    first = lf()
    copy = pickle.loads(pickle.dumps(lf))
    assert copy._process is not None and copy._process.pid == first
    assert not copy._process.is_running()
    second = copy()
    assert copy._process.pid == second != first
    assert lf._process.pid == first  # the original keeps its own


@pytest.mark.parametrize("backend", _core.available_backends())
def test_keep_descendants_leaves_them_running_after_a_returning_call_on_every_backend(backend: str) -> None:
    res = run_limited(h.spawn_sleep_and_return, backend=backend, context="fork", keep_descendants=True, memory=2**30)
    assert res.status == "completed" and res.backend == backend, res
    try:
        time.sleep(0.1)
        assert process_is_alive(res.value), f"{backend}: the sleeper died with the call"
        assert res.leftovers_killed == 0
    finally:
        _kill(res.value)
    assert wait_until_dead([res.value], 3.0) == []
    # The next call on that backend works (a leaf kept for the survivor does not get in the way).
    assert run_limited(h.add, (1, 2), backend=backend).value == 3


@pytest.mark.parametrize("backend", _core.available_backends())
def test_keep_descendants_still_kills_everything_on_a_limit(backend: str, tmp_path) -> None:
    pidfile = tmp_path / "pids"
    res = run_limited(h.spawn_sleep_then, (str(pidfile), "hang"), backend=backend, wall_time=0.5, keep_descendants=True)
    assert res.status == "wall_timeout", res
    pids = [int(p) for p in pidfile.read_text().split()]
    assert wait_until_dead(pids, 2.0) == []


def test_terminate_child_processes_false_keeps_the_functions_children(context: str) -> None:
    for raising in (False, True):
        lf = limit(h.child_pid_and_sleeper, wall_time=10, context=context, terminate_child_processes=False)
        if raising:
            with pytest.raises(ValueError) as info:
                lf("raise")
            _, sleeper = info.value.args[0]
        else:
            _, sleeper = lf()
        try:
            assert process_is_alive(sleeper), (context, raising)
        finally:
            _kill(sleeper)


def test_terminate_child_processes_true_kills_them(context: str) -> None:
    _, sleeper = limit(h.child_pid_and_sleeper, wall_time=10, context=context)()
    assert wait_until_dead([sleeper], 2.0) == []


def test_terminate_child_processes_false_does_not_keep_them_past_a_wall_timeout() -> None:
    lf = limit(h.spawn_sleep_then, wall_time=0.5, terminate_child_processes=False)
    with pytest.raises(WallTimeoutException):
        lf("/dev/null", "hang")
    assert not lf._process.is_running()


def test_historic_module_paths_import() -> None:
    from pynisher.limit_function_call import TimeoutException, enforce_limits
    from pynisher.pynisher import EMPTY, Pynisher, limit as limit2, restricted

    assert Pynisher is pynisher.Pynisher and limit2 is pynisher.limit and EMPTY is pynisher.EMPTY
    assert restricted is pynisher.restricted
    assert enforce_limits is pynisher.enforce_limits and TimeoutException is pynisher.TimeoutException


def test_util_terminate_helpers_have_upstreams_signatures() -> None:
    from pynisher.util import terminate_process, terminate_process_tree

    assert list(inspect.signature(terminate_process).parameters) == [
        "pid", "sig", "timeout", "children", "parent", "on_terminate"
    ]
    assert list(inspect.signature(terminate_process_tree).parameters) == [
        "pid", "sig", "timeout", "include_parent", "on_terminate"
    ]


def test_util_terminate_process_kills_a_tree_and_tolerates_a_gone_process() -> None:
    from pynisher.util import terminate_process

    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"])
    time.sleep(0.2)
    children = psutil.Process(parent.pid).children(recursive=True)
    assert children
    gone, alive = terminate_process(parent.pid, children=True, parent=True, timeout=2)
    assert alive == [] and {p.pid for p in gone} >= {parent.pid} | {c.pid for c in children}
    parent.wait(timeout=5)
    assert terminate_process(parent.pid, children=False) == ([], [])
