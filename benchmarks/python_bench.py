#!/usr/bin/env python3
"""Python benchmark: this pynisher against upstream pynisher 1.0.10, side by side, in one run.

Measures, per start method (fork, spawn, forkserver):

* per-call overhead of a trivial function, through the public API (``pynisher.limit``) and, for
  this pynisher, through the execution layer alone (``pynisher._run.run_limited``);
* the floor: a bare ``os.fork`` + pipe + ``waitpid`` round trip;
* how the forkserver and fork costs change between a 50 MiB and a 2 GiB caller;
* how long after a 1 s wall-time limit a call returns;
* how long after SIGINT a caller gets KeyboardInterrupt (this pynisher only).

Every (implementation, measurement) runs in a fresh interpreter (upstream leaks one
``multiprocessing`` child record per call, which slows later calls). Upstream is installed from
PyPI into ``.venv-upstream`` by this script. Run from the repository root after
``bash scripts/dev-env.sh``::

    .venv/bin/python benchmarks/python_bench.py            # full run (about 5 minutes)
    .venv/bin/python benchmarks/python_bench.py --quick    # fewer repetitions
    .venv/bin/python benchmarks/python_bench.py --json results.json

Not a test: it prints numbers and the target checks; it fails only if something cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UPSTREAM_VENV = ROOT / ".venv-upstream"
UPSTREAM_SPEC = "pynisher==1.0.10"
CONTEXTS = ["fork", "spawn", "forkserver"]
MiB = 1024 * 1024


# ------------------------------------------------------------------------------------------
# Inner measurements (run in a fresh interpreter each)
# ------------------------------------------------------------------------------------------


def _stats(samples):
    samples = sorted(samples)
    n = len(samples)
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "p10_ms": samples[n // 10] * 1e3,
        "p90_ms": samples[min(n - 1, (n * 9) // 10)] * 1e3,
        "n": n,
    }


def _time_calls(call, n, warmup=5):
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return _stats(samples)


def _hold_memory(mib):
    if not mib:
        return None
    block = bytearray(mib * MiB)
    block[:: 4096] = b"\x01" * len(block[:: 4096])  # touch every page: resident
    return block


def inner_overhead(api, context, n, hold_mib):
    held = _hold_memory(hold_mib)  # noqa: F841  (kept alive during the measurement)
    import _bench_target

    if api == "limit":
        import pynisher

        limited = pynisher.limit(_bench_target.trivial, wall_time=10, memory=(2, "GB"), context=context)
        call = limited
    elif api == "run_limited":
        from pynisher._run import run_limited

        def call():
            result = run_limited(
                _bench_target.trivial, (), {}, wall_time=10.0, memory=2 * 1024**3, context=context
            )
            assert result.value == 42, result

    else:
        raise SystemExit(f"unknown api {api}")
    assert call() == 42 or api == "run_limited"
    return _time_calls(call, n)


def bare_fork_round_trip():
    """The floor: os.fork, the child writes one byte to a pipe and exits, the parent reads and reaps."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"4")
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)


def _work_for(seconds):
    """The caller's own work between calls (an optimiser's bookkeeping): CPU, not a sleep."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def interleaved_with_bare_fork(limited, n, think=0.0):
    """``limited()`` and the bare fork floor, alternating call by call in one caller (same caller
    state, same machine load): their timing stats. ``think``: seconds of the caller's own work
    (untimed) before each timed call, so that what a call leaves to do after it returns (a
    forkserver's next warm child) is done beside that work, as it would be in a real caller,
    rather than beside the next timed call."""
    for _ in range(5):
        limited()
        bare_fork_round_trip()
    ours, floor = [], []
    for _ in range(n):
        if think:
            _work_for(think)
        start = time.perf_counter()
        limited()
        ours.append(time.perf_counter() - start)
        if think:
            _work_for(think)
        start = time.perf_counter()
        bare_fork_round_trip()
        floor.append(time.perf_counter() - start)
    return {"ours": _stats(ours), "bare": _stats(floor)}


def inner_bare_fork(n, hold_mib):
    held = _hold_memory(hold_mib)  # noqa: F841
    return _time_calls(bare_fork_round_trip, n)


def inner_fork_vs_bare(n):
    """This pynisher's fork context and the bare fork floor, alternating call by call in one
    process (same caller state, same machine load)."""
    import pynisher
    import _bench_target

    limited = pynisher.limit(_bench_target.trivial, wall_time=10, context="fork")

    return interleaved_with_bare_fork(limited, n)


def inner_forkserver_vs_bare(n, think_ms=0.0):
    """The forkserver context (wall_time and memory set) and the bare fork floor, alternating
    call by call in one caller, with ``think_ms`` of the caller's own work before each call. The
    server's warm children are on unless the environment says PYNISHER_FORKSERVER_WARM=0 (the
    cold baseline: a child forked per call)."""
    import pynisher
    import _bench_target

    limited = pynisher.limit(_bench_target.trivial, wall_time=10, memory=(2, "GB"), context="forkserver")
    getpid = pynisher.limit(os.getpid, wall_time=10, memory=(2, "GB"), context="forkserver")

    stats = interleaved_with_bare_fork(limited, n, think_ms / 1000)
    pids = [getpid() for _ in range(20)]
    return {**stats, "fresh_pids": len(set(pids)) == len(pids)}


def calls_per_second(limited, threads, seconds, start_at):
    """Calls of ``limited`` (a trivial function returning 42) from ``threads`` threads of this
    caller for ``seconds``, starting at the wall-clock time ``start_at`` (so that callers in other
    processes run at the same time): ``{"calls", "seconds"}``."""
    import threading

    counts = [0] * threads
    stop = threading.Event()

    def work(i):
        while not stop.is_set():
            assert limited() == 42
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    time.sleep(max(0.0, start_at - time.time()))
    begin = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return {"calls": sum(counts), "seconds": time.perf_counter() - begin}


def inner_throughput(threads, seconds, start_at):
    """Trivial forkserver calls (wall_time and memory set) from ``threads`` threads of this
    caller for ``seconds``, starting at the wall-clock time ``start_at``."""
    import pynisher
    import _bench_target

    limited = pynisher.limit(_bench_target.trivial, wall_time=10, memory=(2, "GB"), context="forkserver")
    limited()  # the server is up
    return calls_per_second(limited, threads, seconds, start_at)


def inner_walltime(context, reps):
    import pynisher
    import _bench_target

    pynisher.limit(_bench_target.trivial, context=context)()  # warm: server start, imports
    overshoots = []
    for _ in range(reps):
        limited = pynisher.limit(_bench_target.sleeper, wall_time=1, context=context)
        start = time.perf_counter()
        try:
            limited(30)
        except pynisher.WallTimeoutException:
            pass
        overshoots.append(time.perf_counter() - start - 1.0)
    return {
        "overshoot_ms": [o * 1e3 for o in overshoots],
        "median_overshoot_ms": statistics.median(overshoots) * 1e3,
    }


CTRL_C_CALLER = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import pynisher, _bench_target
    limited = pynisher.limit(_bench_target.sleeper, wall_time=60, context=sys.argv[1])
    limited(0.01)  # warm (starts the forkserver, imports)
    print("READY", flush=True)
    try:
        limited(30)
    except KeyboardInterrupt:
        print("INTERRUPTED", repr(time.time()), flush=True)
    """
)


def inner_ctrl_c(context, reps):
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "caller.py"
        script.write_text(CTRL_C_CALLER)
        for _ in range(reps):
            caller = subprocess.Popen(
                [sys.executable, str(script), context], stdout=subprocess.PIPE, text=True
            )
            assert caller.stdout.readline().strip() == "READY"
            time.sleep(0.3)  # the call is running now
            sent = time.time()
            caller.send_signal(signal.SIGINT)
            out, _ = caller.communicate(timeout=30)
            latencies.append((float(out.split()[1]) - sent) * 1e3)
    return {"latency_ms": latencies, "median_latency_ms": statistics.median(latencies)}


def inner_main(argv):
    what = argv[0]
    if what == "overhead":
        api, context, n, hold = argv[1], argv[2], int(argv[3]), int(argv[4])
        result = inner_overhead(api, context, n, hold)
    elif what == "bare":
        result = inner_bare_fork(int(argv[1]), int(argv[2]))
    elif what == "fork_vs_bare":
        result = inner_fork_vs_bare(int(argv[1]))
    elif what == "forkserver_vs_bare":
        result = inner_forkserver_vs_bare(int(argv[1]), float(argv[2]) if len(argv) > 2 else 0.0)
    elif what == "throughput":
        result = inner_throughput(int(argv[1]), float(argv[2]), float(argv[3]))
    elif what == "walltime":
        result = inner_walltime(argv[1], int(argv[2]))
    elif what == "ctrl_c":
        result = inner_ctrl_c(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown measurement {what}")
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------
# Outer driver
# ------------------------------------------------------------------------------------------


def ensure_upstream() -> Path:
    python = UPSTREAM_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import pynisher, importlib.metadata as m; print(m.version('pynisher'))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.strip() != UPSTREAM_SPEC.split("==")[1]:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", UPSTREAM_SPEC],
            check=True,
        )
    return python


def ours_python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def run_inner(python: Path, *args, env_extra=None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--inner", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(HERE),
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} {args} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_turn(keys, rounds, measure) -> dict:
    """``measure(key)`` for every key, ``rounds`` times over with the keys in turn, so that a drift
    of the machine's speed during the measurement reaches every key alike: ``{key: [results]}``."""
    results: dict = {key: [] for key in keys}
    for _ in range(rounds):
        for key in results:
            results[key].append(measure(key))
    return results


def calls_per_second_over(runs) -> float:
    """Calls per second over throughput runs taken together."""
    return sum(r["calls"] for r in runs) / sum(r["seconds"] for r in runs)


def best_of_rounds(python: Path, rounds: int, *args) -> dict:
    """Runs a measurement in ``rounds`` fresh interpreters; keeps the round with the lowest
    median (the one least disturbed by other load on the machine) and all round medians."""
    results = [run_inner(python, *args) for _ in range(rounds)]
    best = dict(min(results, key=lambda r: r["median_ms"]))
    best["round_medians_ms"] = [r["median_ms"] for r in results]
    return best


def fmt(stats) -> str:
    return f"{stats['median_ms']:7.2f} ms [{stats['p10_ms']:.2f}–{stats['p90_ms']:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", help="also write every number to this file")
    parser.add_argument("--inner", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner_main(args.inner)
        return

    n_fast = 60 if args.quick else 200
    n_spawn = 15 if args.quick else 40
    wall_reps = 1 if args.quick else 3
    up_wall_reps = 1 if args.quick else 2
    ours = ours_python()
    upstream = ensure_upstream()
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}

    print(f"ours: {ours}   upstream: {upstream} ({UPSTREAM_SPEC})")
    print(f"load average at start: {os.getloadavg()}\n")

    rounds = 1 if args.quick else 3
    overhead = {}
    for ctx in CONTEXTS:
        n = n_spawn if ctx == "spawn" else n_fast
        overhead[ctx] = {
            "ours_limit": best_of_rounds(ours, rounds, "overhead", "limit", ctx, n, 0),
            "ours_run_limited": best_of_rounds(ours, rounds, "overhead", "run_limited", ctx, n, 0),
            "upstream_limit": best_of_rounds(upstream, rounds, "overhead", "limit", ctx, n, 0),
        }
    bare = best_of_rounds(ours, rounds, "bare", n_fast, 0)
    pairs = [run_inner(ours, "fork_vs_bare", n_fast) for _ in range(rounds)]
    paired = min(pairs, key=lambda r: r["ours"]["median_ms"])
    out["overhead"] = overhead
    out["bare_fork"] = bare
    out["fork_vs_bare_interleaved"] = paired

    print("Per-call overhead, trivial function, wall_time=10, memory=2 GB (median [p10–p90])")
    print(f"{'context':<11} {'ours limit()':>28} {'ours run_limited()':>28} {'upstream limit()':>28} {'upstream/ours':>14}")
    for ctx in CONTEXTS:
        o = overhead[ctx]
        ratio = o["upstream_limit"]["median_ms"] / o["ours_limit"]["median_ms"]
        print(f"{ctx:<11} {fmt(o['ours_limit']):>28} {fmt(o['ours_run_limited']):>28} {fmt(o['upstream_limit']):>28} {ratio:>13.2f}x")
    print(f"{'bare fork':<11} {fmt(bare):>28}   (os.fork + pipe + waitpid, plain interpreter)")
    print(
        f"interleaved in one caller (pynisher imported): ours fork {fmt(paired['ours'])}, "
        f"bare fork {fmt(paired['bare'])}, ratio {paired['ours']['median_ms'] / paired['bare']['median_ms']:.2f}x"
    )
    print(f"(best of {rounds} fresh-interpreter rounds; round medians in --json)")

    # Warm children (the default) and the cold baseline, alternating fresh callers.
    fs_pairs: dict = {"warm": [], "cold": []}
    for _ in range(rounds):
        fs_pairs["warm"].append(run_inner(ours, "forkserver_vs_bare", n_fast))
        fs_pairs["cold"].append(
            run_inner(ours, "forkserver_vs_bare", n_fast, env_extra={"PYNISHER_FORKSERVER_WARM": "0"})
        )
    # The same with 3 ms of the caller's own work before each call: what a call leaves to do
    # after it returns (the next warm child) then overlaps the caller's work, not the next call.
    for _ in range(rounds):
        fs_pairs.setdefault("warm, 3 ms of work between calls", []).append(
            run_inner(ours, "forkserver_vs_bare", n_fast, 3.0)
        )
    fs_paired = {k: min(v, key=lambda r: r["ours"]["median_ms"] / r["bare"]["median_ms"]) for k, v in fs_pairs.items()}
    out["forkserver_vs_bare_interleaved"] = fs_paired
    for kind, label in (
        ("warm", "warm children"),
        ("cold", "cold, PYNISHER_FORKSERVER_WARM=0"),
        ("warm, 3 ms of work between calls", "warm children, 3 ms of the caller's work before each call"),
    ):
        r = fs_paired[kind]
        print(
            f"interleaved in one caller: ours forkserver ({label}) {fmt(r['ours'])}, "
            f"bare fork {fmt(r['bare'])}, ratio {r['ours']['median_ms'] / r['bare']['median_ms']:.2f}x, "
            f"fresh pid per call: {r['fresh_pids']}"
        )

    seconds = 2.0 if args.quick else 5.0
    # Each count's time in 3 runs taken in turn with the other counts'; calls/s over them together.
    runs = in_turn((1, 2, 4), 3, lambda threads: run_inner(ours, "throughput", threads, seconds / 3, 0))
    throughput: dict = {f"{t} thread{'s' if t > 1 else ''}": calls_per_second_over(r) for t, r in runs.items()}
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [str(ours), str(Path(__file__).resolve()), "--inner", "throughput", "1", str(seconds), str(start_at)],
            stdout=subprocess.PIPE, text=True, cwd=str(HERE),
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])),
        )
        for _ in range(2)
    ]
    both = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    throughput["2 processes"] = sum(r["calls"] / r["seconds"] for r in both)
    out["throughput"] = throughput
    one = throughput["1 thread"]
    print("\nThroughput, forkserver, trivial calls with wall_time and memory set (calls/s)")
    print(f"{'callers':<12} {'calls/s':>9} {'ratio':>7}")
    for label, rate in throughput.items():
        print(f"{label:<12} {rate:9.0f} {rate / one:6.2f}x")

    sizes = {"50MiB": 50, "2GiB": 2048}
    # The forkserver's rounds go over the sizes in turn; each size keeps its best round, as
    # best_of_rounds does.
    forkserver_rounds = in_turn(
        sizes, max(rounds, 2), lambda label: run_inner(ours, "overhead", "limit", "forkserver", n_fast // 2, sizes[label])
    )
    rss: dict = {}
    for label, mib in sizes.items():
        best_round = dict(min(forkserver_rounds[label], key=lambda r: r["median_ms"]))
        best_round["round_medians_ms"] = [r["median_ms"] for r in forkserver_rounds[label]]
        rss[label] = {
            "ours_forkserver": best_round,
            "ours_fork": run_inner(ours, "overhead", "limit", "fork", n_fast // 4, mib),
            "bare_fork": run_inner(ours, "bare", n_fast // 4, mib),
        }
    out["caller_size"] = rss
    print("\nCaller size (median): forkserver must stay flat; fork grows with the caller")
    print(f"{'caller':<8} {'ours forkserver':>28} {'ours fork':>28} {'bare fork':>28}")
    for label in sizes:
        r = rss[label]
        print(f"{label:<8} {fmt(r['ours_forkserver']):>28} {fmt(r['ours_fork']):>28} {fmt(r['bare_fork']):>28}")

    wall: dict = {}
    for ctx in CONTEXTS:
        wall[ctx] = {
            "ours": run_inner(ours, "walltime", ctx, wall_reps),
            "upstream": run_inner(upstream, "walltime", ctx, up_wall_reps),
        }
    out["walltime"] = wall
    print("\nReturn after a 1 s wall-time limit (time past the limit, median)")
    for ctx in CONTEXTS:
        w = wall[ctx]
        print(f"{ctx:<11} ours {w['ours']['median_overshoot_ms']:8.1f} ms    upstream {w['upstream']['median_overshoot_ms']:8.1f} ms")

    ctrl_c = {ctx: run_inner(ours, "ctrl_c", ctx, 1 if args.quick else 3) for ctx in CONTEXTS}
    out["ctrl_c"] = ctrl_c
    print("\nCtrl-C: SIGINT to KeyboardInterrupt in the caller, call tree killed (median)")
    for ctx in CONTEXTS:
        print(f"{ctx:<11} {ctrl_c[ctx]['median_latency_ms']:8.1f} ms   samples {['%.1f' % v for v in ctrl_c[ctx]['latency_ms']]}")

    fork = overhead["fork"]["ours_limit"]["median_ms"]
    checks = [
        ("fork >= 3x faster than upstream fork",
         overhead["fork"]["upstream_limit"]["median_ms"] / fork >= 3,
         f"{overhead['fork']['upstream_limit']['median_ms'] / fork:.2f}x"),
        ("fork within 1.3x of bare os.fork+pipe+waitpid (interleaved, same caller)",
         paired["ours"]["median_ms"] <= 1.3 * paired["bare"]["median_ms"],
         f"{paired['ours']['median_ms'] / paired['bare']['median_ms']:.2f}x "
         f"(vs bare fork in a plain interpreter: {fork / bare['median_ms']:.2f}x)"),
        ("forkserver (wall_time and memory set) <= 0.3x a bare os.fork round trip",
         overhead["forkserver"]["ours_limit"]["median_ms"] <= 0.3 * bare["median_ms"],
         f"{overhead['forkserver']['ours_limit']['median_ms']:.2f} ms, "
         f"ratio {overhead['forkserver']['ours_limit']['median_ms'] / bare['median_ms']:.2f}x"),
        ("forkserver (wall_time and memory set) <= 0.3x a bare os.fork round trip, interleaved in one caller",
         fs_paired["warm"]["ours"]["median_ms"] <= 0.3 * fs_paired["warm"]["bare"]["median_ms"],
         f"{fs_paired['warm']['ours']['median_ms'] / fs_paired['warm']['bare']['median_ms']:.2f}x "
         f"(cold: {fs_paired['cold']['ours']['median_ms'] / fs_paired['cold']['bare']['median_ms']:.2f}x)"),
        ("forkserver: more threads, not fewer calls/s (2 and 4 threads >= 1 thread)",
         throughput["2 threads"] >= throughput["1 thread"] and throughput["4 threads"] >= throughput["1 thread"],
         ", ".join(f"{k} {v:.0f}/s" for k, v in throughput.items())),
        ("forkserver flat 50 MiB -> 2 GiB (within 1.2x)",
         rss["2GiB"]["ours_forkserver"]["median_ms"] <= 1.2 * rss["50MiB"]["ours_forkserver"]["median_ms"],
         f"{rss['2GiB']['ours_forkserver']['median_ms'] / rss['50MiB']['ours_forkserver']['median_ms']:.2f}x"),
        ("spawn <= half of upstream spawn",
         overhead["spawn"]["ours_limit"]["median_ms"] <= 0.5 * overhead["spawn"]["upstream_limit"]["median_ms"],
         f"{overhead['spawn']['ours_limit']['median_ms'] / overhead['spawn']['upstream_limit']['median_ms']:.2f} of upstream"),
        ("wall timeout returns within 100 ms of the limit",
         all(wall[c]["ours"]["median_overshoot_ms"] <= 100 for c in CONTEXTS),
         ", ".join(f"{c} {wall[c]['ours']['median_overshoot_ms']:.0f} ms" for c in CONTEXTS)),
        ("Ctrl-C raises within 100 ms",
         all(ctrl_c[c]["median_latency_ms"] <= 100 for c in CONTEXTS),
         ", ".join(f"{c} {ctrl_c[c]['median_latency_ms']:.0f} ms" for c in CONTEXTS)),
    ]
    out["checks"] = {name: {"met": ok, "value": value} for name, ok, value in checks}
    print("\nTargets")
    for name, ok, value in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}: {value}")
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
