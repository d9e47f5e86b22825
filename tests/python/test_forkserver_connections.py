"""A forkserver caller thread's connection (``pynisher._forkserver``): a thread keeps one
connection to the server for all its calls; the server closes its end when the thread is gone;
a cancelled call drops the connection and the thread's next call makes a new one."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import threading
import time

import pytest

import pyn_helpers as h
import pynisher
from pynisher import _forkserver


def _sockets(pid: int) -> set:
    """The inodes of the sockets process ``pid`` holds."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _settles(pid: int, expected: int, seconds: float = 5.0) -> int:
    """The number of sockets ``pid`` holds once it is ``expected`` (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    count = len(_sockets(pid))
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        count = len(_sockets(pid))
    return count


def _steady(pid: int) -> int:
    """The number of sockets ``pid`` holds, once two looks 0.2 s apart agree (the server's guard
    starts after the first call, and a parked child's socket comes and goes with calls)."""
    count = len(_sockets(pid))
    for _ in range(50):
        time.sleep(0.2)
        previous, count = count, len(_sockets(pid))
        if count == previous:
            break
    return count


@pytest.fixture
def getpid():
    _forkserver.shutdown()
    yield pynisher.limit(os.getpid, wall_time=10, context="forkserver")
    _forkserver.shutdown()


def test_a_thread_keeps_one_connection_for_its_calls_and_the_server_closes_it_when_the_thread_ends(
    getpid,
) -> None:
    getpid()
    server = _forkserver.server_pid()
    assert server is not None
    before = _steady(server)
    mine = len(_sockets(os.getpid()))
    pids: list = []
    during: list = []

    def calls() -> None:
        pids.append(getpid())
        during.append((len(_sockets(os.getpid())), _settles(server, before + 1)))
        pids.extend(getpid() for _ in range(20))
        during.append((len(_sockets(os.getpid())), _settles(server, before + 1)))

    thread = threading.Thread(target=calls)
    thread.start()
    thread.join()
    assert len(set(pids)) == 21, "every call runs in a fresh process"
    # One more socket on each side while the thread lives (its connection), the same after 20
    # more calls: not one per call.
    assert during == [(mine + 1, before + 1)] * 2, (mine, before, during)
    del thread
    gc.collect()
    assert _settles(server, before) == before, "the server closes a finished thread's connection"


def test_a_call_cancelled_by_an_exception_drops_the_connection_and_the_next_call_works(
    getpid,
) -> None:
    sleeper = pynisher.limit(time.sleep, wall_time=30, context="forkserver")
    getpid()
    server = _forkserver.server_pid()
    assert server is not None
    before = _steady(server)
    mine = len(_sockets(os.getpid()))

    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted):
            sleeper(20)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The interrupted call's connection is gone on both sides (the server closes its end once
    # the cancelled call is over)...
    assert len(_sockets(os.getpid())) == mine - 1
    assert _settles(server, before - 1) == before - 1
    # ... and the next call makes a new one and runs.
    assert getpid() not in (None, server)
    assert len(_sockets(os.getpid())) == mine
    assert _settles(server, before) == before


def test_a_parked_child_holds_none_of_the_callers_connections(getpid) -> None:
    ran = {getpid()}
    server = _forkserver.server_pid()
    assert server is not None
    ran.add(getpid())
    alone = _steady(h.parked_child(server, ran))  # once it has prepared
    # Three more threads with connections of their own, kept open while the next child parks.
    release = threading.Event()
    ready = threading.Barrier(4)

    def hold() -> None:
        ran.add(getpid())
        ready.wait()
        release.wait()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    ready.wait()
    try:
        assert _steady(server) >= 3, "the server holds the threads' connections"
        ran.add(getpid())  # a warm call: the next child is parked while the three connections are open
        parked = h.parked_child(server, ran)
        assert _steady(parked) == alone, "the parked child let go of the server's sockets"
    finally:
        release.set()
        for t in threads:
            t.join()


@pytest.mark.parametrize("size", [10, 5000, 3_000_000])
def test_a_request_longer_than_the_servers_first_read_arrives_whole(getpid, size: int) -> None:
    # The server reads a request's first 4 KiB at once and the rest after: arguments of any size
    # come through intact, on the same kept connection.
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    limited = pynisher.limit(_digest, wall_time=30, context="forkserver")
    assert limited(payload) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert limited(b"") == (0, hashlib.sha256(b"").hexdigest())


def _digest(data: bytes) -> tuple:
    import hashlib

    return len(data), hashlib.sha256(data).hexdigest()


@pytest.fixture
def messages(monkeypatch):
    """The tags of the messages the caller receives from the server (b"S": the call's pid,
    b"O": its outcome), in order."""
    seen: list = []
    receive = _forkserver._recv_message

    def recording(sock):
        message = receive(sock)
        seen.append(message[:1])
        return message

    monkeypatch.setattr(_forkserver, "_recv_message", recording)
    return seen


def test_a_short_call_of_an_api_object_wakes_its_caller_once_and_still_names_its_child(
    getpid, messages
) -> None:
    pid = getpid()
    assert messages == [b"O"]
    assert getpid._process is not None and getpid._process.pid == pid != os.getpid()


def test_a_longer_call_of_an_api_object_tells_its_caller_the_pid_while_it_runs(messages) -> None:
    lf = pynisher.limit(h.sleep_and_return, wall_time=10, context="forkserver")
    assert lf(4 * _forkserver.TELL_SLOT_PID_AFTER) == 4 * _forkserver.TELL_SLOT_PID_AFTER
    assert messages == [b"S", b"O"]


def test_an_on_start_callback_gets_the_pid_before_the_outcome_however_short_the_call(messages) -> None:
    from pynisher._run import run_limited

    seen: list = []
    result = run_limited(os.getpid, (), {}, wall_time=10.0, context="forkserver", on_start=seen.append)
    assert messages == [b"S", b"O"]
    assert seen == [result.value] and result.value != os.getpid()
