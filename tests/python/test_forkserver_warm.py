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
import time

import pytest

import pyn_helpers as h
import pynisher
from pynisher import MemoryLimitException, WallTimeoutException, _forkserver


def _alive(pid: int) -> bool:
    """A live process (a zombie waiting for PID 1 to reap it is not, nor a call's child killed
    at its result and still tearing down)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and not h.on_its_way_out(pid)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def _children(pid: int) -> set:
    kids: set = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids |= {int(p) for p in f.read().split()}
        except OSError:
            pass
    return {k for k in kids if _alive(k)}


def _parked_child(server: int, timeout: float = 10.0) -> int:
    """The server's parked child: once no call is in flight, its one live child that is not its
    guard (the guard is not the server's child: it is started detached)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(server)
        if len(kids) == 1:
            return kids.pop()
        time.sleep(0.01)
    raise AssertionError(f"the server {server} has no parked child: {_children(server)}")


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
        parked = _parked_child(server)
        pids.append(getpid())
        # The call ran in the child parked before it was made, not in a child forked for it.
        assert pids[-1] == parked
    assert len(set(pids)) == len(pids)
    assert server not in pids and os.getpid() not in pids


def test_a_released_child_gets_its_calls_cpu_limit_not_the_one_it_was_parked_with(fresh_server) -> None:
    unlimited = pynisher.limit(resource.getrlimit, wall_time=10, context="forkserver")
    assert unlimited(resource.RLIMIT_CPU)[0] == resource.RLIM_INFINITY
    parked = _parked_child(_forkserver.server_pid())
    limited = pynisher.limit(resource.getrlimit, wall_time=10, cpu_time=5, context="forkserver")
    soft, _ = limited(resource.RLIMIT_CPU)
    assert soft != resource.RLIM_INFINITY and soft >= 5
    assert not _alive(parked) or parked not in _children(_forkserver.server_pid())


def test_the_wall_time_of_a_call_in_a_parked_child_is_its_own(fresh_server) -> None:
    pynisher.limit(h.add, wall_time=30, context="forkserver")(1, 2)
    _parked_child(_forkserver.server_pid())
    time.sleep(0.5)  # parked longer than the next call's limit: none of it counts
    assert pynisher.limit(h.sleep_and_return, wall_time=2, context="forkserver")(0.2) == 0.2
    with pytest.raises(WallTimeoutException):
        pynisher.limit(h.sleep_and_return, wall_time=0.3, context="forkserver")(30)


def test_changing_the_memory_limit_between_calls_discards_the_parked_child(fresh_server) -> None:
    big = pynisher.limit(h.hog, memory=(400, "MB"), wall_time=20, context="forkserver")
    small = pynisher.limit(h.hog, memory=(100, "MB"), wall_time=20, context="forkserver")
    assert big(150) == 150 * 2**20
    server = _forkserver.server_pid()
    parked_for_big = _parked_child(server)
    with pytest.raises(MemoryLimitException):
        small(150)
    # The child parked for 400 MB could not take a 100 MB call: it is gone, not reused.
    assert _gone_within(parked_for_big, 5)
    assert big(150) == 150 * 2**20
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
    from test_forkserver_warm import _parked_child
    from test_guard import cgroup_leaves
    pynisher.limit(os.getpid, wall_time=10, memory=(512, "MB"), context="forkserver")()
    server = _forkserver.server_pid()
    parked = _parked_child(server)
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
    getpid()
    server = _forkserver.server_pid()
    parked = _parked_child(server)
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
