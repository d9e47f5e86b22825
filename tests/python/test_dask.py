"""A real Dask `LocalCluster` (worker processes, default settings: daemonic workers under a
nanny) running limited calls: upstream pynisher could not start its child there.

The cluster runs in a separate interpreter: importing `distributed` installs tblib's exception
pickling process-wide, which must not change what the other test modules see.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time

import pytest

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
KINDS_V0 = ["ok", "wall", "memory", "ok"]

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import distributed
    import pyn_helpers as h

    kinds, kinds_v0 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    if __name__ == "__main__":
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        with cluster, distributed.Client(cluster) as client:
            daemonic = list(client.run(h.is_daemon).values())
            start = time.monotonic()
            v1 = client.gather(client.map(h.limited_task, kinds, pure=False))
            elapsed = time.monotonic() - start
            v0 = client.gather(client.map(h.limited_task_v0, kinds_v0, pure=False))
        print(json.dumps({"daemonic": daemonic, "v1": v1, "v0": v0, "elapsed": elapsed}))
    """
)


@pytest.fixture(scope="module")
def cluster_run() -> dict:
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("dask[distributed] is not installed")
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(KINDS), json.dumps(KINDS_V0)],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["total"] = time.monotonic() - started
    return result


def test_workers_are_daemonic(cluster_run: dict) -> None:
    # The premise: the tasks run in daemonic processes, where multiprocessing.Process fails.
    assert cluster_run["daemonic"] == [True, True]


def test_twenty_limited_tasks_on_local_cluster(cluster_run: dict) -> None:
    assert cluster_run["v1"] == [EXPECTED[k] for k in KINDS]
    # 4 wall (0.5 s) + 2 cpu (0.5 s) + the rest fast, on 2 workers: far below these bounds.
    assert cluster_run["elapsed"] < 30, cluster_run["elapsed"]
    assert cluster_run["total"] < 90, cluster_run["total"]


def test_enforce_limits_on_local_cluster(cluster_run: dict) -> None:
    assert cluster_run["v0"] == ["0", "TimeoutException:None", "MemoryLimitException:None", "0"]
