"""A real Dask `LocalCluster` (worker processes, default settings: daemonic workers under a
nanny) running limited calls: upstream pynisher could not start its child there."""

from __future__ import annotations

import time

import pytest

import pyn_helpers as h


EXPECTED = {
    "ok": "value:3",
    "wall": "WallTimeoutException",
    "memory": "MemoryLimitException",
    "cpu": "CpuTimeoutException",
    "raise": "ValueError",
}
# 20 tasks: timeouts and memory-outs mixed in between successes.
KINDS = ["ok", "wall", "memory", "ok", "cpu", "raise", "memory", "ok", "wall", "ok",
         "memory", "raise", "ok", "cpu", "wall", "ok", "memory", "ok", "raise", "ok"]


@pytest.fixture(scope="module")
def client():
    # Imported here, not at collection: importing distributed installs tblib's exception
    # pickling process-wide, which should not change what the other test modules see.
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def test_twenty_limited_tasks_on_local_cluster(client) -> None:
    start = time.monotonic()
    futures = client.map(h.limited_task, KINDS, pure=False)
    outcomes = client.gather(futures)
    elapsed = time.monotonic() - start
    assert outcomes == [EXPECTED[k] for k in KINDS]
    # 4 wall (0.5 s) + 2 cpu (0.5 s) + the rest fast, on 2 workers: far below this bound.
    assert elapsed < 30, elapsed


def test_workers_are_daemonic(client) -> None:
    # The premise of the test above: the tasks ran in daemonic processes.
    daemonic = client.run(h.is_daemon)
    assert daemonic and all(daemonic.values())


def test_enforce_limits_on_local_cluster(client) -> None:
    outcomes = client.gather(client.map(h.limited_task_v0, ["ok", "wall", "memory", "ok"], pure=False))
    assert outcomes == ["0", "TimeoutException:None", "MemoryLimitException:None", "0"]
