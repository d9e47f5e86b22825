"""Calls made from several threads at once must not slow each other down.

A fork-context child is a copy of the whole caller, taken by one thread while the others are in
the middle of their own calls: it must neither hold what those calls wait for (end of file on a
pipe) nor keep their pipe ends open.
"""

from __future__ import annotations

import threading
import time

from pynisher._run import run_limited

import pyn_helpers as h


def test_spawn_calls_are_not_stalled_by_fork_calls_from_another_thread() -> None:
    stop = threading.Event()
    fork_errors: list = []

    def fork_calls() -> None:
        while not stop.is_set():
            try:
                # Children that live a while, so that some are alive whenever a spawn call starts.
                run_limited(h.sleep_and_return, (3.0,), {}, wall_time=10.0, context="fork")
            except BaseException as err:  # reported below, not swallowed
                fork_errors.append(err)
                return

    forkers = [threading.Thread(target=fork_calls) for _ in range(16)]
    for t in forkers:
        t.start()
    slow = []
    try:
        for i in range(60):
            res = run_limited(h.add, (i,), {"b": 1}, wall_time=2.0, context="spawn")
            if res.status != "completed" or res.value != i + 1:
                slow.append((i, res.status, res.wall_time))
    finally:
        stop.set()
        for t in forkers:
            t.join()
    assert not fork_errors
    assert slow == [], f"spawn calls that did not complete within 2 s: {slow}"
