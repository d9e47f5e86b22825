"""Bad values and the library's own failures, as the user sees them: a ValueError naming the
parameter the user passed and its value as written (never a 300-digit number, never an engine
parameter name), or a PynisherException saying what failed (never a raw OSError)."""

from __future__ import annotations

import math
import re
import resource
import subprocess
import sys
import textwrap

import pytest

import pynisher
from pynisher import PynisherException, enforce_limits, limit

import pyn_helpers as h

V1 = [
    (dict(memory=(math.inf, "MB")), r"`memory` \(inf, 'MB'\) must be a finite"),
    (dict(memory=1e300), r"`memory` 1e\+300 is too large"),
    (dict(memory=(1e300, "GB")), r"`memory` \(1e\+300, 'GB'\) is too large"),
    (dict(memory=2**70), r"`memory` 1.181e\+21 is too large"),
    (dict(wall_time=1e300), r"`wall_time` 1e\+300 is too large"),
    (dict(cpu_time=(1e300, "h")), r"`cpu_time` \(1e\+300, 'h'\) is too large"),
    (dict(wall_time=math.inf), r"`wall_time` inf must be a finite"),
]
V0 = [
    (dict(mem_in_mb=1e300), r"`mem_in_mb` 1e\+300 is too large: at most 17592186044415 MiB"),
    (dict(mem_in_mb=2**60), r"`mem_in_mb` 1.153e\+18 is too large"),
    (dict(num_processes=2**70), r"`num_processes` 1.181e\+21 is too large"),
    (dict(num_processes=5_000_000), r"`num_processes` 5000000 is too large: at most 4194304"),
    (dict(wall_time_in_s=1e300), r"`wall_time_in_s` 1e\+300 is too large"),
    (dict(cpu_time_in_s=1e300), r"`cpu_time_in_s` 1e\+300 is too large"),
    (dict(grace_period_in_s=math.inf), r"`grace_period_in_s` inf must be a finite number"),
    (dict(grace_period_in_s=1e300), r"`grace_period_in_s` 1e\+300 is too large"),
]


def _no_long_numbers(message: str) -> None:
    assert not re.search(r"\d{25,}", message), message
    for engine_name in ("max_processes", "invalid value for memory", "grace_period:"):
        assert engine_name not in message, message


@pytest.mark.parametrize("kwargs, pattern", V1, ids=[str(k) for k, _ in V1])
def test_1x_values_out_of_range_name_the_parameter_when_the_limit_is_made(kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        limit(h.add, **kwargs)
    _no_long_numbers(str(info.value))


@pytest.mark.parametrize("kwargs, pattern", V0, ids=[str(k) for k, _ in V0])
def test_0x_values_out_of_range_name_the_parameter_when_the_limit_is_made(kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        enforce_limits(**kwargs)
    _no_long_numbers(str(info.value))


def test_the_largest_accepted_values_run() -> None:
    assert enforce_limits(mem_in_mb=2**40, num_processes=4 * 1024 * 1024, wall_time_in_s=3e9)(h.add)(1, b=2) == 3
    assert limit(h.add, memory=(2**40, "MB"), wall_time=(50, "h"))(1, 2) == 3


SCRIPT = """
import sys, pynisher
sys.executable = {executable!r}
def f():
    return 1
try:
    pynisher.limit(f, wall_time=10, context={context!r})()
except pynisher.PynisherException as e:
    print("PynisherException:", e)
except BaseException as e:
    print("LEAKED", type(e).__name__, e)
"""


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
@pytest.mark.parametrize("executable", ["", "/nonexistent/python3"])
def test_a_bad_sys_executable_is_a_pynisher_exception_saying_so(context: str, executable: str) -> None:
    code = SCRIPT.format(executable=executable, context=context)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("PynisherException:"), out.stdout + out.stderr
    assert "program" not in out.stdout
    if executable:
        assert executable in out.stdout or "No such file" in out.stdout, out.stdout
    else:
        assert "sys.executable is empty" in out.stdout, out.stdout


@pytest.mark.parametrize("context", pynisher.contexts)
def test_exhausted_descriptors_are_a_pynisher_exception(context: str) -> None:
    code = textwrap.dedent(
        f"""
        import os, resource, pynisher
        def f():
            return 1
        pynisher.limit(f, wall_time=10, context={context!r})()  # warm up (the forkserver starts)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        hog = []
        try:
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        def call():
            # In a thread of its own: a forkserver caller thread keeps its connection, so only a
            # thread's first call needs new descriptors.
            try:
                pynisher.limit(f, wall_time=10, context={context!r})()
                print("RAN")
            except pynisher.PynisherException as e:
                print("PynisherException:", e)
            except BaseException as e:
                print("LEAKED", type(e).__name__, e)
        import threading
        t = threading.Thread(target=call)
        t.start()
        t.join()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("PynisherException:"), out.stdout + out.stderr
    assert "Too many open files" in out.stdout, out.stdout
