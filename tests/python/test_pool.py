"""Limited calls inside `multiprocessing.Pool` workers.

Pool workers are daemonic; upstream pynisher (a `multiprocessing.Process` child) failed there with
"daemonic processes are not allowed to have children". The engine starts its own children.
"""

from __future__ import annotations

import multiprocessing

import pytest

import pyn_helpers as h

KINDS = ["ok", "wall", "memory", "cpu", "raise", "ok"]
EXPECTED = {
    "ok": "value:3",
    "wall": "WallTimeoutException",
    "memory": "MemoryLimitException",
    "cpu": "CpuTimeoutException",
    "raise": "ValueError",
}


@pytest.mark.parametrize("pool_method", ["fork", "spawn"])
def test_limit_inside_pool_workers(pool_method: str) -> None:
    with multiprocessing.get_context(pool_method).Pool(2) as pool:
        outcomes = pool.map(h.limited_task, KINDS, chunksize=1)
        daemonic = pool.apply(h.is_daemon)
    assert daemonic is True  # the premise: these really are daemonic workers
    assert outcomes == [EXPECTED[k] for k in KINDS]


def test_enforce_limits_inside_pool_workers() -> None:
    kinds = ["ok", "wall", "memory"]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outcomes = pool.map(h.limited_task_v0, kinds, chunksize=1)
    assert outcomes == ["0", "TimeoutException:None", "MemoryLimitException:None"]

