"""Signals reach the caller's Python handlers while it waits for a limited call.

The wait (interpreter lock released) makes Python's wake-up descriptor a pipe the engine polls, so
a signal wakes it at once; the previous wake-up descriptor is restored afterwards. When someone
else holds the wake-up descriptor (asyncio, a user), it is left alone and the wait checks for
signals on an interval instead.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

import pynisher
from pyn_helpers import sleep_and_return


def _usr1_during_call(context: str, delay: float, call_time: float):
    """Calls a sleeping function; sends SIGUSR1 to this process `delay` s in. Returns the
    monotonic times (handler ran, call returned)."""
    ran = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: ran.append(time.monotonic()))
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        limited = pynisher.limit(sleep_and_return, wall_time=30, context=context)
        timer.start()
        assert limited(call_time) == call_time
        returned = time.monotonic()
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert len(ran) == 1
    return ran[0], returned


def test_a_signal_handler_runs_during_the_wait_and_the_call_goes_on(context: str) -> None:
    handled, returned = _usr1_during_call(context, delay=0.3, call_time=2.0)
    # The handler ran while the call was still running (not when it returned), and did not end it.
    assert returned - handled > 1.0, f"handler ran {returned - handled:.2f} s before the return"


def test_the_wake_up_descriptor_is_free_again_after_a_call(context: str) -> None:
    pynisher.limit(sleep_and_return, wall_time=30, context=context)(0.01)
    assert signal.set_wakeup_fd(-1) == -1


def test_a_wake_up_descriptor_someone_else_holds_is_kept_and_signals_still_arrive(
    context: str,
) -> None:
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    old = signal.set_wakeup_fd(mine.fileno())
    try:
        handled, returned = _usr1_during_call(context, delay=0.3, call_time=1.5)
        assert returned - handled > 0.5
        assert signal.set_wakeup_fd(mine.fileno()) == mine.fileno(), "wake-up descriptor replaced"
        # The owner saw the signal, as it would have without pynisher.
        theirs.setblocking(False)
        assert signal.SIGUSR1 in theirs.recv(64)
    finally:
        signal.set_wakeup_fd(old)
        mine.close()
        theirs.close()


@pytest.mark.parametrize("context", ["fork"])
def test_nothing_leaks_when_many_calls_are_woken(context: str) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        _usr1_during_call(context, delay=0.02, call_time=0.1)
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2  # the process's one wake pipe
