"""Limited calls inside Ray tasks (a local Ray instance: raylet, GCS and worker processes).

Ray workers are not daemonic, so upstream pynisher could start its child there too, but every
wall timeout came back ~5 s late (wall_time=2 returned after 7.0 s), and a worker SIGKILLed by
`ray.cancel(force=True)` left the limited child running with no limit enforced
(shared/research/python-peers.md). Here: the right outcome for each kind of call, wall timeouts
on time, no process of a limited call left behind, and the limited child killed with its
force-cancelled Ray worker. The child's own children are killed too when Ray leaves pynisher's
watchdog alive; with Ray's default `kill_child_processes_on_worker_exit` they may survive (see
`test_force_cancel_kills_the_limited_call`).

Ray runs in a separate interpreter, like the Dask cluster in test_dask.py: its threads, processes
and process-wide hooks stay out of the pytest process. It listens on loopback only and sends no
usage statistics.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
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
# (kind, context): the default start method mixed with spawn and forkserver.
CALLS = [("ok", None), ("wall", None), ("memory", None), ("raise", None), ("cpu", None),
         ("ok", "spawn"), ("wall", "forkserver"), ("memory", "spawn"), ("raise", "forkserver"),
         ("ok", "forkserver")]
# Limited functions that start a `sleep 60` grandchild, then hang / raise / burn CPU.
TREES = {"hang": "WallTimeoutException", "raise": "ValueError", "busy": "CpuTimeoutException"}
KINDS_V0 = ["ok", "wall", "memory"]
WALL_LIMIT = 0.5  # the wall_time of the "wall" calls (`limited` in SCRIPT)

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import ray

    calls, trees, kinds_v0, workdir = (json.loads(sys.argv[1]), json.loads(sys.argv[2]),
                                       json.loads(sys.argv[3]), sys.argv[4])

    def ppid_of(pid):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return int(fh.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            return None

    def descendants(root):
        parent = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                pp = ppid_of(int(name))
                if pp is not None:
                    parent[int(name)] = pp
        found, frontier = set(), {root}
        while frontier:
            frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
            found |= frontier
        return sorted(found)

    def alive_after(pids, seconds):
        # The pids still alive (not gone, not a zombie) after waiting up to `seconds` for them.
        deadline = time.monotonic() + seconds
        while True:
            alive = {}
            for p in pids:
                try:
                    with open(f"/proc/{p}/stat") as fh:
                        state = fh.read().rsplit(")", 1)[1].split()[0]
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if state != "Z":
                    alive[p] = state
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    @ray.remote(max_retries=0)
    def limited(kind, context):
        import multiprocessing
        import pynisher
        import pyn_helpers as h
        calls = {
            "ok": (h.add, dict(wall_time=5), (1, 2)),
            "wall": (h.sleep_and_return, dict(wall_time=0.5), (30,)),
            "memory": (h.hog, dict(memory=(100, "MB")), (500,)),
            "cpu": (h.busy_forever, dict(cpu_time=0.5), ()),
            "raise": (h.raise_value_error, {}, ("x",)),
        }
        func, limits, args = calls[kind]
        lim = pynisher.limit(func, context=context, **limits)
        start = time.monotonic()
        try:
            outcome = f"value:{lim(*args)}"
        except Exception as e:
            outcome = type(e).__name__
        elapsed = time.monotonic() - start
        return {"outcome": outcome, "elapsed": elapsed, "child": lim._pid,
                "child_state": h.proc_state(lim._pid), "child_running": h.running(lim._pid),
                "worker": os.getpid(),
                "daemon": multiprocessing.current_process().daemon}

    @ray.remote(max_retries=0)
    def tree(then, pidfile):
        import pynisher
        import pyn_helpers as h
        limits = {"busy": dict(cpu_time=0.5)}.get(then, dict(wall_time=1))
        try:
            pynisher.limit(h.spawn_sleep_then, **limits)(pidfile, then)
            outcome = "returned"
        except Exception as e:
            outcome = type(e).__name__
        with open(pidfile) as fh:
            pids = [int(p) for p in fh.read().split()]
        return {"outcome": outcome, "pids": pids, "states": [h.proc_state(p) for p in pids]}

    @ray.remote(max_retries=0)
    def limited_v0(kind):
        import pyn_helpers as h
        return h.limited_task_v0(kind)

    @ray.remote(max_retries=0)
    def hang_in_limited_call(pidfile):
        import pynisher
        import pyn_helpers as h
        # fork: the limited child is the worker's own child (found through its ppid below).
        pynisher.limit(h.spawn_sleep_then, wall_time=60, context="fork")(pidfile, "hang")

    def force_cancel(tag):
        # SIGKILL the caller mid-call: ray.cancel(force=True) kills the worker process.
        pidfile = os.path.join(workdir, f"cancel-{tag}")
        ref = hang_in_limited_call.remote(pidfile)
        deadline = time.monotonic() + 30
        pids = []
        while time.monotonic() < deadline and len(pids) < 2:
            time.sleep(0.05)
            if os.path.exists(pidfile):
                with open(pidfile) as fh:
                    text = fh.read()
                if text.endswith("\\n"):  # written completely
                    pids = [int(p) for p in text.split()]
        assert len(pids) == 2, f"the limited call did not start: {pids}"
        worker = ppid_of(pids[0])
        tree_pids = descendants(worker)  # the limited child, its sleep, pynisher's helpers
        ray.cancel(ref, force=True)
        try:
            ray.get(ref, timeout=30)
            outcome = "returned"
        except Exception as e:
            outcome = type(e).__name__
        # Checked while Ray still runs: its shutdown would kill the worker's process anyway.
        alive = alive_after([worker] + tree_pids, 5)
        for pid in alive:  # what the kill left behind must not outlive the test
            if pid != worker:
                os.kill(pid, 9)
        return {"outcome": outcome, "call": pids, "worker": worker, "tree": tree_pids,
                "alive": alive}

    def start_ray(**kwargs):
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=os.path.join(workdir, "ray"), object_store_memory=100 * 2**20,
                 log_to_driver=False, configure_logging=False, **kwargs)

    if __name__ == "__main__":
        t0 = time.monotonic()
        start_ray()
        out = {"init": time.monotonic() - t0}
        try:
            start = time.monotonic()
            refs = [limited.remote(kind, ctx) for kind, ctx in calls]
            refs += [tree.remote(then, os.path.join(workdir, f"tree-{then}")) for then in trees]
            refs += [limited_v0.remote(kind) for kind in kinds_v0]
            got = ray.get(refs, timeout=90)
            out["v1"] = got[:len(calls)]
            out["trees"] = got[len(calls):len(calls) + len(trees)]
            out["v0"] = got[len(calls) + len(trees):]
            out["elapsed"] = time.monotonic() - start
            out["cancel_default"] = force_cancel("default")
        finally:
            ray.shutdown()
        # Again on a Ray that leaves a dead worker's children alone: pynisher's own clean-up.
        start_ray(_system_config={"kill_child_processes_on_worker_exit": False})
        try:
            out["cancel_no_ray_kill"] = force_cancel("no-ray-kill")
        finally:
            ray.shutdown()
        print("RESULT " + json.dumps(out), flush=True)
    """
)


def proc_state(pid: int) -> "str | None":
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive_after(pids: "list[int]", seconds: float) -> "dict[int, str]":
    """The pids still alive (not gone, not a zombie) after waiting up to `seconds` for them."""
    deadline = time.monotonic() + seconds
    while True:
        alive = {p: s for p in pids if (s := proc_state(p)) not in (None, "Z")}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_run() -> dict:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (scripts/dev-env.sh installs it unless PYNISHER_NO_RAY=1)")
    env = dict(os.environ)
    env.update(
        RAY_USAGE_STATS_ENABLED="0",  # no usage report
        RAY_AUTH_MODE="disabled",  # loopback-only test cluster: no token written to ~/.ray
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",  # no `uv run` detection for the workers
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pynray-", dir="/tmp") as workdir:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(CALLS), json.dumps(list(TREES)),
             json.dumps(KINDS_V0), workdir],
            capture_output=True, text=True, timeout=150, env=env,
        )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        pytest.fail(f"the Ray run failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["total"] = time.monotonic() - started
    return result


def test_limited_calls_in_ray_tasks(ray_run: dict) -> None:
    v1 = ray_run["v1"]
    assert [r["outcome"] for r in v1] == [EXPECTED[kind] for kind, _ in CALLS]
    # Ray workers are not daemonic; the tasks really ran in Ray's worker processes.
    assert all(r["daemon"] is False for r in v1)
    assert os.getpid() not in {r["worker"] for r in v1}
    # The limited child of every call was gone, a zombie awaiting its reaper, or (a forkserver
    # call, whose outcome comes at its result while its child is killed) on its way out when it
    # returned: no call's child was still running.
    assert all(isinstance(r["child"], int) for r in v1), v1
    assert [(r["child"], r["child_state"]) for r in v1 if r["child_running"]] == []
    assert alive_after([r["child"] for r in v1], 5) == {}
    # ~3 s of limits on 2 workers; Ray's start-up is outside `elapsed`.
    assert ray_run["elapsed"] < 45, ray_run["elapsed"]
    assert ray_run["total"] < 90, ray_run["total"]


@pytest.mark.timing
def test_wall_timeouts_on_time_in_ray_tasks(ray_run: dict) -> None:
    walls = [r["elapsed"] for r, (kind, _) in zip(ray_run["v1"], CALLS) if kind == "wall"]
    assert len(walls) == 2
    # Upstream returned ~5 s after the limit; forkserver start-up is included here.
    assert all(WALL_LIMIT <= t < WALL_LIMIT + 2.5 for t in walls), walls


def test_grandchildren_killed_in_ray_tasks(ray_run: dict) -> None:
    trees = ray_run["trees"]
    assert [r["outcome"] for r in trees] == list(TREES.values())
    for r in trees:
        assert len(r["pids"]) == 2, r  # the limited child and its `sleep 60`
        assert [s for s in r["states"] if s not in (None, "Z")] == [], r
    assert alive_after([p for r in trees for p in r["pids"]], 5) == {}


def test_enforce_limits_in_ray_tasks(ray_run: dict) -> None:
    assert ray_run["v0"] == ["0", "TimeoutException:None", "MemoryLimitException:None"]


def check_cancel(run: dict) -> "dict[str, str]":
    """Common checks of a force-cancelled limited call; returns what was still alive 5 s later."""
    assert run["outcome"] in ("TaskCancelledError", "WorkerCrashedError"), run
    assert set(run["call"]) <= set(run["tree"]), run  # found under the worker before the kill
    limited_child = run["call"][0]
    assert str(run["worker"]) not in run["alive"], run
    assert str(limited_child) not in run["alive"], run  # dies with its caller (PDEATHSIG)
    return run["alive"]


def test_force_cancel_kills_the_limited_call(ray_run: dict) -> None:
    # Ray's defaults. The limited child's own child (`sleep 60`) is NOT asserted on here: Ray
    # (kill_child_processes_on_worker_exit, on by default) SIGKILLs the dead worker's direct
    # children, pynisher's forkserver watchdog among them, racing its clean-up of the call's
    # process group; the sleep survived in ~4 runs of 5 on the development machine. A known gap.
    check_cancel(ray_run["cancel_default"])


def test_force_cancel_kills_the_whole_call_when_ray_lets_pynisher_clean_up(ray_run: dict) -> None:
    # kill_child_processes_on_worker_exit=False: the watchdog outlives the worker and kills the
    # call's process group, the `sleep 60` included.
    run = ray_run["cancel_no_ray_kill"]
    assert check_cancel(run) == {}, run
