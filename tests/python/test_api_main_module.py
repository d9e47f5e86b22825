"""`__main__` like multiprocessing: spawn and forkserver children run the caller's main script as
`__mp_main__` (its guarded block does not run), so the script's classes pickle by reference in the
child -- on a multiprocessing Queue and in the result -- and the caller gets its own classes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pynisher

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "main_script_objects.py"


@pytest.mark.parametrize("method", pynisher.contexts)
def test_script_enum_and_class_reach_the_caller_through_a_queue_and_the_result(method: str) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), method], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"ok {method}"


UNGUARDED = """
import pynisher

def f(x):
    return x + 1

print(pynisher.limit(f, wall_time=30, context={method!r})(1))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_an_unguarded_script_still_works_its_objects_travel_by_value(method: str, tmp_path: Path) -> None:
    # multiprocessing would fail here (the child re-runs the script's call); the call falls back
    # to shipping the script's function by value, and the script's top level prints once.
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(method=method))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n", proc.stdout + proc.stderr
