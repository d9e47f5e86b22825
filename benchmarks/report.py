#!/usr/bin/env python3
"""The benchmark report: measures pynisher beside its peers and draws the figures of
``docs/benchmarks.md`` (PNG, matplotlib).

Figures (each names the machine, the date and this command):

1. ``latency.png``   per-call latency of a trivial function per start method, this pynisher
   against upstream pynisher 1.0.10, pebble, loky, ``multiprocessing.Pool`` and the bare
   ``os.fork`` + pipe + ``waitpid`` floor;
2. ``caller_rss.png`` latency versus the caller's resident memory (50 MiB ... 2 GiB);
3. ``overshoot.png`` how long after a 0.5 s wall-time limit the CLI returns, against GNU
   ``timeout``; and the CLI's start-up cost over ``timeout``;
4. ``throughput.png`` calls per second from 1, 2 and 4 threads of one caller, and from 2 callers.

Every measurement runs in a fresh interpreter (``--inner``), as in ``python_bench.py``, whose
helpers it uses. Run from the repository root after ``bash scripts/dev-env.sh`` and
``cargo build --release -p pynisher-cli``::

    .venv/bin/python benchmarks/report.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/report.py --quick    # fewer repetitions, for a try

It installs what it needs and the project does not (matplotlib, pebble, loky) into the running
interpreter's environment, and upstream pynisher into ``.venv-upstream`` (``python_bench.py``).
Numbers go to ``docs/img/benchmarks.json``, figures to ``docs/img/*.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "docs" / "img"
sys.path.insert(0, str(HERE))

import python_bench as pb  # noqa: E402

PEER_PACKAGES = {"matplotlib": "matplotlib==3.11.2", "pebble": "pebble==5.2.3", "loky": "loky==3.7.0"}
RERUN = ".venv/bin/python benchmarks/report.py"
LIMITS = {"wall_time": 10, "memory": (2, "GB")}


# ------------------------------------------------------------------------------------------
# Inner measurements (fresh interpreter each)
# ------------------------------------------------------------------------------------------


def _limited(context):
    import _bench_target

    import pynisher

    return pynisher.limit(_bench_target.trivial, context=context, **LIMITS)


def _peer_call(peer):
    import _bench_target

    trivial = _bench_target.trivial
    if peer == "pebble_process":
        from pebble import concurrent

        call_once = concurrent.process(timeout=10)(trivial)
        return lambda: call_once().result(), None
    if peer == "pebble_pool":
        from pebble import ProcessPool

        pool = ProcessPool(max_workers=1)
        return lambda: pool.schedule(trivial, timeout=10).result(), pool.stop
    if peer == "loky":
        from loky import get_reusable_executor

        executor = get_reusable_executor(max_workers=1)
        return lambda: executor.submit(trivial).result(), None
    if peer == "mp_pool":
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(1)
        return lambda: pool.apply(trivial), pool.terminate
    raise SystemExit(f"unknown peer {peer}")


def inner_latency(kind, name, n, hold_mib):
    held = pb._hold_memory(hold_mib)  # noqa: F841
    if kind == "pynisher":
        call, stop = _limited(name), None
    elif kind == "peer":
        call, stop = _peer_call(name)
    elif kind == "bare":
        return pb.inner_bare_fork(n, hold_mib)
    else:
        raise SystemExit(f"unknown kind {kind}")
    try:
        return pb._time_calls(call, n)
    finally:
        if stop:
            stop()


def inner_paired(context, n, hold_mib, think_ms=0.0):
    """This pynisher and the bare fork floor, call by call in one caller: the ratio column.
    ``think_ms``: the caller's own work before each timed call (``python_bench``)."""
    held = pb._hold_memory(hold_mib)  # noqa: F841
    limited = _limited(context)

    return pb.interleaved_with_bare_fork(limited, n, think_ms / 1000)


def inner_throughput(context, threads, seconds, start_at):
    limited = _limited(context)
    limited()  # warm: the forkserver starts, imports are done
    return pb.calls_per_second(limited, threads, seconds, start_at)


def inner_fresh_pids(context, n):
    """A limited ``os.getpid`` returns a new pid on every call: each call runs in a process no
    other call touched."""
    import pynisher

    getpid = pynisher.limit(os.getpid, context=context, **LIMITS)
    pids = [getpid() for _ in range(n)]
    return {"calls": n, "distinct": len(set(pids)), "caller": os.getpid() in pids}


def inner_main(argv):
    what = argv[0]
    if what == "fresh_pids":
        result = inner_fresh_pids(argv[1], int(argv[2]))
    elif what == "latency":
        result = inner_latency(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif what == "paired":
        result = inner_paired(argv[1], int(argv[2]), int(argv[3]), float(argv[4]) if len(argv) > 4 else 0.0)
    elif what == "throughput":
        result = inner_throughput(argv[1], int(argv[2]), float(argv[3]), float(argv[4]))
    else:
        raise SystemExit(f"unknown measurement {what}")
    print(json.dumps(result))


def run_inner(python, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--inner", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=str(HERE), timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} {args} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# Outer driver
# ------------------------------------------------------------------------------------------


def ensure_packages():
    missing = []
    for module, spec in PEER_PACKAGES.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(spec)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing], check=True)


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def best(python, rounds, *args):
    results = [run_inner(python, *args) for _ in range(rounds)]
    key = (lambda r: r["median_ms"]) if "median_ms" in results[0] else (lambda r: r["ours"]["median_ms"])
    return min(results, key=key)


def measure_latency(ours, upstream, n, rounds):
    rows = {}
    for ctx in pb.CONTEXTS:
        k = max(10, n // 5) if ctx == "spawn" else n
        rows[f"pynisher {ctx}"] = best(ours, rounds, "latency", "pynisher", ctx, k, 0)
        rows[f"upstream 1.0.10 {ctx}"] = best(upstream, rounds, "latency", "pynisher", ctx, max(10, k // 4), 0)
    for peer, label in [("pebble_process", "pebble concurrent.process"), ("pebble_pool", "pebble ProcessPool"),
                        ("loky", "loky reusable executor"), ("mp_pool", "multiprocessing.Pool(1)")]:
        rows[label] = best(ours, rounds, "latency", "peer", peer, n, 0)
    rows["bare os.fork + pipe + waitpid"] = best(ours, rounds, "latency", "bare", "-", n, 0)
    paired = {ctx: best(ours, rounds, "paired", ctx, n, 0) for ctx in ("fork", "forkserver")}
    # What a call leaves to do after it returns (the forkserver's next warm child) lands on the
    # next timed call when calls follow each other at once; a real caller works in between.
    paired["forkserver, 3 ms of the caller's work before each call"] = best(
        ours, rounds, "paired", "forkserver", n, 0, 3.0
    )
    return {"rows": rows, "paired": paired}


def measure_rss(ours, upstream, n, sizes, rounds=3):
    # The forkserver is the series that must stay flat: its rounds go over the sizes in turn, and
    # each size keeps its best round.
    forkserver = pb.in_turn(sizes, rounds, lambda mib: run_inner(ours, "latency", "pynisher", "forkserver", n, mib))
    out = {}
    for mib in sizes:
        out[mib] = {
            "pynisher forkserver": min(forkserver[mib], key=lambda r: r["median_ms"]),
            "pynisher fork": run_inner(ours, "latency", "pynisher", "fork", max(10, n // 2), mib),
            "upstream 1.0.10 fork": run_inner(upstream, "latency", "pynisher", "fork", 10, mib),
            "bare os.fork": run_inner(ours, "latency", "bare", "-", max(10, n // 2), mib),
        }
    return out


def cli_binary():
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "pynisher"
        if path.exists():
            return path
    raise SystemExit("build the CLI first: cargo build --release -p pynisher-cli")


def _time_run(argv):
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def measure_cli(reps, startup_reps, backend):
    cli = str(cli_binary())
    sleep = shutil.which("sleep")
    true = shutil.which("true")
    limit = 0.5
    overshoot = {"pynisher": [], "GNU timeout": []}
    for _ in range(reps):  # interleaved: both see the same machine
        overshoot["pynisher"].append(_time_run([cli, "--backend", backend, "--wall-time", str(limit), "--", sleep, "5"]) - limit)
        overshoot["GNU timeout"].append(_time_run(["timeout", str(limit), sleep, "5"]) - limit)
    startup = {"pynisher": [], "GNU timeout": []}
    for _ in range(startup_reps):
        startup["pynisher"].append(_time_run([cli, "--backend", backend, "--wall-time", "10", "--", true]))
        startup["GNU timeout"].append(_time_run(["timeout", "10", true]))
    return {"backend": backend, "limit_s": limit, "overshoot_s": overshoot, "startup_s": startup}


#: Each thread count's time is split into this many runs, taken in turn with the other counts'
#: (`python_bench.in_turn`).
THROUGHPUT_ROUNDS = 3


def measure_throughput(ours, seconds):
    out = {}
    for ctx in ("forkserver", "fork"):
        runs = pb.in_turn(
            (1, 2, 4),
            THROUGHPUT_ROUNDS,
            lambda threads: run_inner(ours, "throughput", ctx, threads, seconds / THROUGHPUT_ROUNDS, 0),
        )
        row = {f"{t} thread{'s' if t > 1 else ''}": pb.calls_per_second_over(r) for t, r in runs.items()}
        start_at = time.time() + 3.0  # both callers start, warm up, then go together
        env = dict(os.environ, PYTHONPATH=str(HERE))
        procs = [subprocess.Popen([str(ours), str(Path(__file__).resolve()), "--inner", "throughput", ctx, "1",
                                   str(seconds), str(start_at)], stdout=subprocess.PIPE, text=True, cwd=str(HERE), env=env)
                 for _ in range(2)]
        results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
        row["2 processes"] = sum(r["calls"] / r["seconds"] for r in results)
        out[ctx] = row
    return out


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------


def footer(fig, info):
    fig.text(0.01, 0.01, f"{info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Linux {info['kernel']}, "
             f"Python {info['python']}; measured {info['date']}, load average {info['load']:.1f}.\n"
             f"Re-run: {RERUN} (pynisher repository root)",
             fontsize=7, color="#555555")


def plot_all(data, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    OUT.mkdir(parents=True, exist_ok=True)

    # 1. latency per method
    rows = data["latency"]["rows"]
    names = sorted(rows, key=lambda k: rows[k]["median_ms"])
    med = [rows[k]["median_ms"] for k in names]
    lo = [rows[k]["median_ms"] - rows[k]["p10_ms"] for k in names]
    hi = [rows[k]["p90_ms"] - rows[k]["median_ms"] for k in names]
    colors = ["#1f77b4" if k.startswith("pynisher") else "#7f7f7f" if k.startswith("bare") else
              "#d62728" if k.startswith("upstream") else "#2ca02c" for k in names]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.barh(names, med, xerr=[lo, hi], color=colors, capsize=2)
    ax.set_xscale("log")
    ax.set_xlabel("ms per call (median, whiskers p10-p90; log scale)")
    ax.set_title("Per-call latency of a trivial function (pynisher: wall_time and memory set)")
    for y, (m, h) in enumerate(zip(med, hi)):
        ax.text((m + h) * 1.15, y, f"{m:.2f} ms", va="center", fontsize=8)
    ax.set_xlim(right=max(m + h for m, h in zip(med, hi)) * 8)
    ax.text(0.99, 0.02, "blue: pynisher; red: upstream pynisher 1.0.10;\ngreen: pools/peers (no limits); grey: floor",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    footer(fig, info)
    fig.savefig(OUT / "latency.png", dpi=110)
    plt.close(fig)

    # 2. latency vs caller RSS
    rss = data["caller_rss"]
    sizes = sorted(int(s) for s in rss)
    fig, ax = plt.subplots(figsize=(8, 5))
    for series, style in [("pynisher forkserver", "o-"), ("pynisher fork", "s-"),
                          ("upstream 1.0.10 fork", "^--"), ("bare os.fork", "x:")]:
        ax.plot(sizes, [rss[str(s) if str(s) in rss else s][series]["median_ms"] for s in sizes], style, label=series)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s} MiB" if s < 1024 else f"{s / 1024:g} GiB" for s in sizes])
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("caller's resident memory")
    ax.set_ylabel("ms per call (median, log scale)")
    ax.set_title("Latency versus the caller's size: forking the caller grows with it")
    ax.legend()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    footer(fig, info)
    fig.savefig(OUT / "caller_rss.png", dpi=110)
    plt.close(fig)

    # 3. wall-limit overshoot
    cli = data["cli"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.8))
    for name, values in cli["overshoot_s"].items():
        ms = sorted(v * 1e3 for v in values)
        ax1.plot(ms, [(i + 1) / len(ms) for i in range(len(ms))], drawstyle="steps-post", label=name)
    ax1.set_xlabel(f"ms past the {cli['limit_s']} s wall-time limit")
    ax1.set_ylabel("fraction of runs (CDF)")
    ax1.set_title("sleep 5 under a 0.5 s wall limit")
    ax1.legend()
    starts = {k: [v * 1e3 for v in vals] for k, vals in cli["startup_s"].items()}
    ax2.boxplot(list(starts.values()), showfliers=False)
    ax2.set_xticks(range(1, len(starts) + 1), list(starts))
    ax2.set_ylabel("ms for `true` (start to exit)")
    ax2.set_title(f"start-up: pynisher (backend {cli['backend']}) vs timeout")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    footer(fig, info)
    fig.savefig(OUT / "overshoot.png", dpi=110)
    plt.close(fig)

    # 4. throughput
    tp = data["throughput"]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    groups = list(next(iter(tp.values())))
    width = 0.8 / len(tp)
    for i, (ctx, row) in enumerate(tp.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [row[g] for g in groups], width, label=f"context={ctx}")
        for x, g in zip(xs, groups):
            ax.text(x, row[g], f"{row[g]:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([g + width * (len(tp) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel("limited calls per second")
    ax.set_title("Throughput: trivial limited calls from threads of one caller, and from 2 callers")
    ax.legend()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    footer(fig, info)
    fig.savefig(OUT / "throughput.png", dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot-only", action="store_true", help="redraw from docs/img/benchmarks.json")
    parser.add_argument("--calls", type=int, help="calls per latency measurement (default 200, quick 60)")
    parser.add_argument("--rounds", type=int, help="fresh-interpreter rounds per latency row (default 3)")
    parser.add_argument("--inner", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner_main(args.inner)
        return
    if args.plot_only:
        saved = json.loads((OUT / "benchmarks.json").read_text())
        plot_all(saved["data"], saved["machine"])
        write_numbers(saved["data"], saved["machine"])
        return
    ensure_packages()
    ours, upstream = pb.ours_python(), pb.ensure_upstream()
    info = machine()
    info["load"] = os.getloadavg()[0]
    n = args.calls or (60 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 3)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    data = {"latency": measure_latency(ours, upstream, n, rounds)}
    print("latency done", flush=True)
    data["caller_rss"] = measure_rss(ours, upstream, n // 2, [50, 256, 1024, 2048])
    print("caller size done", flush=True)
    data["cli"] = measure_cli(10 if args.quick else 30, 60 if args.quick else 200, "cgroup1")
    print("cli done", flush=True)
    data["throughput"] = measure_throughput(ours, 2.0 if args.quick else 5.0)
    data["fresh_pids"] = {ctx: run_inner(ours, "fresh_pids", ctx, 100) for ctx in pb.CONTEXTS}
    info["load"] = max(info["load"], os.getloadavg()[0])
    info["load_end"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "benchmarks.json").write_text(json.dumps({"machine": info, "data": data}, indent=1))
    plot_all(data, info)
    write_numbers(data, info)
    summarize(data)


DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- numbers:start (written by benchmarks/report.py) -->", "<!-- numbers:end -->"


def numbers_markdown(data, info):
    rows = data["latency"]["rows"]
    bare = rows["bare os.fork + pipe + waitpid"]["median_ms"]
    lines = [START, "",
             f"Measured {info['date']} on {info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
             f"Linux {info['kernel']}, Python {info['python']}; load average {info['load']:.1f} during the run.", "",
             "| method | median ms/call | p10 | p90 | ratio to bare fork |", "|---|---:|---:|---:|---:|"]
    for k in sorted(rows, key=lambda k: rows[k]["median_ms"]):
        r = rows[k]
        lines.append(f"| {k} | {r['median_ms']:.3f} | {r['p10_ms']:.3f} | {r['p90_ms']:.3f} | {r['median_ms'] / bare:.2f}x |")
    lines += ["", "Interleaved call by call with the bare fork in the same caller:", "",
              "| context | pynisher median ms | bare fork median ms | ratio |", "|---|---:|---:|---:|"]
    for ctx, p in data["latency"]["paired"].items():
        lines.append(f"| {ctx} | {p['ours']['median_ms']:.3f} | {p['bare']['median_ms']:.3f} | "
                     f"{p['ours']['median_ms'] / p['bare']['median_ms']:.2f}x |")
    rss = data["caller_rss"]
    sizes = sorted(int(s) for s in rss)
    series = list(rss[next(iter(rss))])
    lines += ["", "Caller size (median ms per call):", "",
              "| caller RSS | " + " | ".join(series) + " |", "|---|" + "---:|" * len(series)]
    for size in sizes:
        row = rss[str(size)] if str(size) in rss else rss[size]
        lines.append(f"| {size} MiB | " + " | ".join(f"{row[k]['median_ms']:.2f}" for k in series) + " |")
    cli = data["cli"]
    s = {k: statistics.median(v) * 1e3 for k, v in cli["startup_s"].items()}
    o = {k: sorted(v) for k, v in cli["overshoot_s"].items()}
    lines += ["", f"CLI (backend {cli['backend']}): start-up of `true` pynisher {s['pynisher']:.2f} ms, "
              f"GNU timeout {s['GNU timeout']:.2f} ms (+{s['pynisher'] - s['GNU timeout']:.2f} ms); overshoot past a "
              f"{cli['limit_s']} s wall limit: " + "; ".join(
                  f"{k} median {statistics.median(v) * 1e3:.2f} ms, p99 {v[int(0.99 * (len(v) - 1))] * 1e3:.2f} ms"
                  for k, v in o.items()) + ".", "",
              "| calls/s | " + " | ".join(next(iter(data["throughput"].values()))) + " |",
              "|---|" + "---:|" * len(next(iter(data["throughput"].values())))]
    for ctx, row in data["throughput"].items():
        lines.append(f"| context={ctx} | " + " | ".join(f"{v:.0f}" for v in row.values()) + " |")
    fresh = data.get("fresh_pids", {})
    if fresh:
        lines += ["", "A limited `os.getpid`, 100 calls: " + "; ".join(
            f"{ctx} {r['distinct']} distinct pids" for ctx, r in fresh.items()) + " (a fresh process every call)."]
    lines += ["", END]
    return "\n".join(lines)


def write_numbers(data, info):
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + numbers_markdown(data, info) + tail)


def summarize(data):
    rows = data["latency"]["rows"]
    print(f"\n{'method':<36} {'median':>10} {'p10':>9} {'p90':>9}")
    for k in sorted(rows, key=lambda k: rows[k]["median_ms"]):
        r = rows[k]
        print(f"{k:<36} {r['median_ms']:8.3f} ms {r['p10_ms']:7.3f} {r['p90_ms']:7.3f}")
    for ctx, p in data["latency"]["paired"].items():
        print(f"paired {ctx}: ours {p['ours']['median_ms']:.3f} ms, bare fork {p['bare']['median_ms']:.3f} ms, "
              f"ratio {p['ours']['median_ms'] / p['bare']['median_ms']:.2f}x")
    cli = data["cli"]
    s = {k: statistics.median(v) * 1e3 for k, v in cli["startup_s"].items()}
    o = {k: sorted(v) for k, v in cli["overshoot_s"].items()}
    print(f"CLI start-up over timeout ({cli['backend']}): +{s['pynisher'] - s['GNU timeout']:.2f} ms "
          f"(pynisher {s['pynisher']:.2f} ms, timeout {s['GNU timeout']:.2f} ms)")
    for k, v in o.items():
        print(f"overshoot {k}: median {statistics.median(v) * 1e3:.2f} ms, p99 {v[int(0.99 * (len(v) - 1))] * 1e3:.2f} ms")
    for ctx, row in data["throughput"].items():
        print(f"throughput {ctx}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in row.items()))
    for ctx, r in data.get("fresh_pids", {}).items():
        print(f"fresh pid per call, {ctx}: {r['distinct']} distinct pids in {r['calls']} calls")


if __name__ == "__main__":
    main()
