"""The caller's open files and multiprocessing objects, used inside the limited function.

auto-sklearn (0.x API) passes a ``context.Queue()`` to its target and reads the result from it;
upstream ran the target in a ``multiprocessing.Process``, where this works
(docs/python-internal-interface.md, "Requests" 1).
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time

import pytest

import pynisher

import pyn_helpers as h
from pyn_helpers import assert_gone

def test_caller_file_at_fd_3_is_intact_in_fork_child(tmp_path) -> None:
    code = textwrap.dedent(
        f"""
        import os, pynisher
        log = open({str(tmp_path / "log.txt")!r}, "w")   # a fresh interpreter's first file: fd 3
        assert log.fileno() == 3, log.fileno()

        def work():
            log.write("written by the function\\n")
            log.flush()
            return os.readlink("/proc/self/fd/3")

        print(pynisher.limit(work, wall_time=10, context="fork")())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "log.txt")
    assert (tmp_path / "log.txt").read_text() == "written by the function\n"


def test_queue_argument_receives_what_the_function_put(context: str) -> None:
    ctx = multiprocessing.get_context(context)
    queue = ctx.Queue()
    obj = pynisher.enforce_limits(wall_time_in_s=10, context=ctx)(h.put_on_queue)
    obj(queue=queue, value=21)
    assert obj.exit_status == 0
    assert queue.get(timeout=5) == 42
    # Also when the caller's own feeder thread for this queue already ran before the fork.
    queue.put("from the caller")
    assert queue.get(timeout=5) == "from the caller"
    obj(queue=queue, value=1)
    assert obj.exit_status == 0
    assert queue.get(timeout=5) == 2


def test_queue_argument_with_the_1x_api() -> None:
    queue = multiprocessing.get_context("fork").Queue()
    assert pynisher.limit(h.put_on_queue, wall_time=10, context="fork")(queue, 5) is None
    assert queue.get(timeout=5) == 10


@pytest.mark.parametrize("inner", ["fork", "spawn"])
def test_daemonic_multiprocessing_child_is_gone_after_the_call(context: str, inner: str) -> None:
    pid = pynisher.limit(h.start_mp_process, wall_time=10, context=context)(inner, True)
    assert_gone(pid)


def test_non_daemonic_multiprocessing_child_does_not_block_the_result(context: str) -> None:
    # Upstream sent the result, then killed the function's children: the call returned at once.
    start = time.monotonic()
    pid = pynisher.limit(h.start_mp_process, wall_time=2, context=context)("fork", False)
    assert time.monotonic() - start < 1.5
    assert_gone(pid)
