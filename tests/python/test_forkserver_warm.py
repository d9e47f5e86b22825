"""The forkserver's warm children (``pynisher._warm``): a child forked ahead of the next call,
parked in its own container, takes the call; every call still runs in a fresh process, under its
own limits; nothing is left when the caller exits or the server is killed."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pyn_helpers as h
import pynisher
from pynisher import MemoryLimitException, WallTimeoutException, _forkserver


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while h.running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not h.running(pid)


@pytest.fixture
def fresh_server():
    _forkserver.shutdown()
    yield
    _forkserver.shutdown()


def test_the_next_call_runs_in_the_parked_child_and_each_call_in_a_fresh_process(fresh_server) -> None:
    getpid = pynisher.limit(os.getpid, wall_time=10, memory=(512, "MB"), context="forkserver")
    pids = [getpid()]
    server = _forkserver.server_pid()
    for _ in range(5):
        parked = h.parked_child(server, ran=set(pids))
        pids.append(getpid())
        # The call ran in the child parked before it was made, not in a child forked for it.
        assert pids[-1] == parked
    assert len(set(pids)) == len(pids)
    assert server not in pids and os.getpid() not in pids


def _descriptors(pid: int) -> "dict[int, str]":
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return found


def test_a_parked_child_keeps_nothing_of_its_rehearsal(fresh_server) -> None:
    # Before it parks, a child rehearses a call end to end (received over a socket pair with
    # copies of stdout and stderr, unpickled, run): none of that may stay open, and its stdout
    # and stderr must still be the server's until a call brings the caller's.
    getpid = pynisher.limit(os.getpid, wall_time=10, context="forkserver")
    ran = {getpid()}
    server = _forkserver.server_pid()
    parked = h.parked_child(server, ran)
    theirs, ours = _descriptors(parked), _descriptors(server)
    # Sockets the server does not hold (the engine's guard connection it shares): its own end of
    # the socket its call comes on, nothing else.
    own = {t for t in theirs.values() if t.startswith("socket:")} - set(ours.values())
    assert len(own) == 1, theirs
    assert (theirs[1], theirs[2]) == (ours[1], ours[2])
    assert getpid() == parked


def test_the_server_keeps_nothing_of_its_rehearsals(fresh_server) -> None:
    # Idle after forking the next warm child, the server rehearses a request's path over a
    # socket pair with copies of its stdout and stderr: none of it may stay open.
    getpid = pynisher.limit(os.getpid, wall_time=10, context="forkserver")
    ran = {getpid()}
    server = _forkserver.server_pid()
    counts = []
    for _ in range(4):
        h.parked_child(server, ran)  # refilled, and so rehearsed (the server was idle)
        time.sleep(0.05)
        counts.append(len(_descriptors(server)))
        ran.add(getpid())
    assert len(set(counts)) == 1, counts


def _note_pid_then_sleep(pidfile: str, seconds: float) -> int:
    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def test_a_long_call_alone_in_flight_gets_the_next_warm_child_forked_while_it_runs(
    fresh_server, tmp_path
) -> None:
    # A lone call's refill waits for its outcome, but not past `REFILL_DEFER`: the call after a
    # long one still finds a warm child.
    from pynisher import _forkserver_server

    limited = pynisher.limit(_note_pid_then_sleep, wall_time=10, context="forkserver")
    ran = {limited(str(tmp_path / "first"), 0.0)}
    server = _forkserver.server_pid()
    h.parked_child(server, ran)
    pidfile = tmp_path / "long"
    long_call: list = []
    caller = threading.Thread(target=lambda: long_call.append(limited(str(pidfile), 1.5)))
    caller.start()
    try:
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline, "the long call did not start"
            time.sleep(0.01)
        running = int(pidfile.read_text())
        assert running not in ran
        # Well before the call ends (1.5 s), and well after REFILL_DEFER.
        assert _forkserver_server.REFILL_DEFER < 0.1
        parked = h.parked_child(server, ran | {running}, timeout=1.0)
    finally:
        caller.join()
    assert long_call == [running]
    assert limited(str(tmp_path / "next"), 0.0) == parked


def test_a_released_child_gets_its_calls_cpu_limit_not_the_one_it_was_parked_with(fresh_server) -> None:
    unlimited = pynisher.limit(h.pid_and_result, wall_time=10, context="forkserver")
    ran, (soft, _) = unlimited(resource.getrlimit, resource.RLIMIT_CPU)
    assert soft == resource.RLIM_INFINITY
    parked = h.parked_child(_forkserver.server_pid(), ran={ran})
    limited = pynisher.limit(h.pid_and_result, wall_time=10, cpu_time=5, context="forkserver")
    released, (soft, _) = limited(resource.getrlimit, resource.RLIMIT_CPU)
    assert released == parked
    assert soft != resource.RLIM_INFINITY and soft >= 5


def test_the_wall_time_of_a_call_in_a_parked_child_is_its_own(fresh_server) -> None:
    ran, _ = pynisher.limit(h.pid_and_result, wall_time=30, context="forkserver")(h.add, 1, 2)
    h.parked_child(_forkserver.server_pid(), ran={ran})
    time.sleep(0.5)  # parked longer than the next call's limit: none of it counts
    assert pynisher.limit(h.sleep_and_return, wall_time=2, context="forkserver")(0.2) == 0.2
    with pytest.raises(WallTimeoutException):
        pynisher.limit(h.sleep_and_return, wall_time=0.3, context="forkserver")(30)


def test_changing_the_memory_limit_between_calls_discards_the_parked_child(fresh_server) -> None:
    big = pynisher.limit(h.pid_and_result, memory=(400, "MB"), wall_time=20, context="forkserver")
    small = pynisher.limit(h.hog, memory=(100, "MB"), wall_time=20, context="forkserver")
    ran, allocated = big(h.hog, 150)
    assert allocated == 150 * 2**20
    server = _forkserver.server_pid()
    parked_for_big = h.parked_child(server, ran={ran})
    with pytest.raises(MemoryLimitException):
        small(150)
    # The child parked for 400 MB could not take a 100 MB call: it is gone, not reused.
    assert _gone_within(parked_for_big, 5)
    assert big(h.hog, 150)[1] == 150 * 2**20
    with pytest.raises(MemoryLimitException):
        small(150)


def _run_script(code: str) -> str:
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


_CALLER = """
    import os, sys, time
    import pynisher
    from pynisher import _forkserver
    sys.path.insert(0, {here!r})
    import pyn_helpers as h
    from test_guard import cgroup_leaves
    ran = pynisher.limit(os.getpid, wall_time=10, memory=(512, "MB"), context="forkserver")()
    server = _forkserver.server_pid()
    parked = h.parked_child(server, ran={{ran}})
    print(server, parked, *cgroup_leaves(parked))
    sys.stdout.flush()
    {then}
"""


@pytest.mark.parametrize("how", ["exits", "is SIGKILLed"])
def test_nothing_is_left_of_a_parked_child_when_the_caller_exits(how) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    then = "os._exit(0)" if how == "exits" else "os.kill(os.getpid(), 9)"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CALLER.format(here=here, then=then))],
        capture_output=True, text=True, timeout=60,
    )
    server, parked, *leaves = out.stdout.split()
    assert _gone_within(int(server), 10), "the server outlived its caller"
    assert _gone_within(int(parked), 10), "the parked child outlived the caller"
    deadline = time.monotonic() + 10
    while any(os.path.exists(leaf) for leaf in leaves) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [leaf for leaf in leaves if os.path.exists(leaf)]


def test_nothing_is_left_of_a_parked_child_when_the_server_is_killed(fresh_server) -> None:
    from test_guard import cgroup_leaves

    getpid = pynisher.limit(os.getpid, wall_time=10, memory=(512, "MB"), context="forkserver")
    ran = getpid()
    server = _forkserver.server_pid()
    parked = h.parked_child(server, ran={ran})
    leaves = cgroup_leaves(parked)
    os.kill(server, signal.SIGKILL)
    # The server's guard kills what the server had registered, the parked child included.
    assert _gone_within(parked, 10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(leaf) for leaf in leaves) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [leaf for leaf in leaves if os.path.exists(leaf)]
    # The next call gets a new server.
    assert getpid() != parked
