"""Every limit, for real, as an ordinary user (issue 11 item 5): the command line and the Python
package run as an unprivileged user created here (CI runs as root), who cannot write any cgroup,
so the automatic backend is the process group: memory by sampling, CPU over child processes,
wall time, process count, the inherited-address-space case, and strict mode.

Skipped, with the reason, where no user can be created (not root, no useradd/setpriv) or the
project is not readable by other users (a clone made with umask 077).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

import pynisher
import pynisher._cli

USER = "pynisher-tester"
HERE = Path(__file__).resolve().parent
MIB = 2**20


def _traversable_ancestors(paths: List[Path]) -> List[Tuple[Path, int]]:
    """Gives "others" search (x) permission on every ancestor directory of `paths` that lacks it
    (a clone under /root, say), returning the old modes to restore. Nothing becomes readable that
    was not: only the way through."""
    changed: List[Tuple[Path, int]] = []
    for path in paths:
        for d in reversed(path.parents):
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH and (d, mode) not in changed:
                d.chmod(mode | stat.S_IXOTH)
                changed.append((d, mode))
    return changed


class AsUser:
    """Runs commands as the unprivileged user, in a scratch directory the user owns."""

    def __init__(self, pw: pwd.struct_passwd, home: Path) -> None:
        self.pw = pw
        self.home = home

    def run(self, argv: List[str], timeout: float = 90) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(HERE),
        }
        wrapper = [
            "setpriv",
            f"--reuid={self.pw.pw_uid}",
            f"--regid={self.pw.pw_gid}",
            "--init-groups",
            "--",
        ]
        return subprocess.run(
            wrapper + argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.home
        )

    def python(self, script: str, timeout: float = 90) -> Dict:
        """Runs `script` with the project's interpreter as the user; it prints one JSON line."""
        done = self.run([sys.executable, "-c", textwrap.dedent(script)], timeout)
        assert done.returncode == 0, done
        return json.loads(done.stdout.strip().splitlines()[-1])

    def cli(self, args: List[str], timeout: float = 90) -> Tuple[subprocess.CompletedProcess, Dict]:
        """Runs the `pynisher` command as the user; returns its run and its JSON report."""
        report = self.home / "report.json"
        if report.exists():
            report.unlink()
        done = self.run([pynisher._cli.binary_path(), f"--json={report}", *args], timeout)
        return done, json.loads(report.read_text())


@pytest.fixture(scope="module")
def as_user() -> Iterator[AsUser]:
    if os.geteuid() != 0:
        pytest.skip("not root: an unprivileged test user cannot be created (CI runs this as root)")
    for tool in ("useradd", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} here: cannot create or become an unprivileged user")
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            capture_output=True,
            text=True,
        )
        # 9: the name exists (another run created it meanwhile).
        if made.returncode not in (0, 9):
            pytest.skip(f"useradd {USER} failed: {made.stderr.strip()}")
        pw = pwd.getpwnam(USER)
    package = Path(pynisher.__file__).resolve().parent
    changed = _traversable_ancestors([Path(sys.executable).resolve(), package, HERE])
    home = Path(tempfile.mkdtemp(prefix="pynisher-user-"))
    os.chown(home, pw.pw_uid, pw.pw_gid)
    user = AsUser(pw, home)
    try:
        check = user.run([sys.executable, "-c", "import pynisher._core, pyn_helpers; print('ok')"])
        if check.returncode != 0:
            pytest.skip(f"the project is not readable by user {USER}: {check.stderr.strip()[-300:]}")
        yield user
    finally:
        shutil.rmtree(home, ignore_errors=True)
        for d, mode in reversed(changed):
            d.chmod(mode)


def test_the_user_is_unprivileged_and_gets_no_cgroup(as_user: AsUser) -> None:
    out = as_user.python(
        """
        import json, os, pynisher._core
        print(json.dumps({"uid": os.geteuid(), "backends": pynisher._core.available_backends()}))
        """
    )
    assert out["uid"] == as_user.pw.pw_uid != 0
    assert out["backends"] == ["none"], out


# ---- the command line ------------------------------------------------------------------------

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"


@pytest.mark.parametrize(
    "args, exit_status, status",
    [
        pytest.param(
            ["--memory", "100MiB", "--", sys.executable, "-c",
             "import time; b = bytearray(b'x') * (300 << 20); time.sleep(10)"],
            123, "memory_limit", id="memory-sampled",
        ),
        pytest.param(
            ["--memory", "4MiB", "--", sys.executable, "-c", "import time; time.sleep(10)"],
            123, "memory_limit", id="memory-tiny",
        ),
        pytest.param(
            ["--cpu-time", "1s", "--", "sh", "-c",
             f"for i in 1 2 3; do {sys.executable} -c '{BURN}'; done"],
            124, "cpu_timeout", id="cpu-over-child-processes",
        ),
        pytest.param(["--wall-time", "0.5s", "--", "sleep", "10"], 124, "wall_timeout", id="wall"),
        pytest.param(
            ["--max-processes", "4", "--", "sh", "-c", "for i in $(seq 20); do sleep 3 & done; wait"],
            122, "process_limit", id="process-count",
        ),
    ],
)
def test_the_command_line_enforces_every_limit_for_an_ordinary_user(
    as_user: AsUser, args: List[str], exit_status: int, status: str
) -> None:
    done, report = as_user.cli(["--wall-time", "30s", *args] if "--wall-time" not in args else args)
    assert done.returncode == exit_status, (done, report)
    assert report["status"] == status, report
    assert report["containment"]["backend"] == "none"
    summary = [line for line in done.stderr.splitlines() if line.startswith("pynisher:")]
    assert len(summary) == 1 and "weaker guarantees (backend none): escapees not contained" in summary[0], done
    if status == "memory_limit":
        assert report["memory_limit_kind"] == "sampled" and report["memory_measure"] == "sampled"


def test_strict_on_the_command_line_refuses_for_an_ordinary_user(as_user: AsUser) -> None:
    done, report = as_user.cli(["--strict", "--memory", "100MiB", "--", "true"])
    assert done.returncode == 125, done
    assert "strict mode: backend none cannot fully enforce this call" in done.stderr
    assert report["status"] == "error"


# ---- the Python package ----------------------------------------------------------------------


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_python_memory_limit_is_sampled_and_warned_about(as_user: AsUser, context: str) -> None:
    out = as_user.python(
        f"""
        import json, warnings, pynisher
        from pyn_helpers import hog_and_hold
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            lf = pynisher.limit(hog_and_hold, memory=(100, "MB"), raises=False, context={context!r})
            lf(300)
        o = lf.outcome
        print(json.dumps({{"status": o.status, "backend": o.backend, "kind": o.memory_limit_kind,
                          "peak": o.peak_memory, "weaknesses": sorted(o.weaknesses),
                          "warned": [str(w.message) for w in record
                                     if issubclass(w.category, pynisher.PynisherWarning)]}}))
        """
    )
    assert out["status"] == "memory_limit", out
    assert out["backend"] == "none" and out["kind"] == "sampled"
    assert out["peak"] >= 100 * MIB
    assert out["weaknesses"] == ["escapees_not_contained", "memory_sampled"]
    assert len(out["warned"]) == 2 and any("sampling" in w for w in out["warned"]), out


@pytest.mark.parametrize("context", ["fork", "forkserver"])
def test_python_caller_with_a_large_address_space_keeps_its_headroom(as_user: AsUser, context: str) -> None:
    out = as_user.python(
        f"""
        import json, mmap, threading, pynisher
        from pyn_helpers import hog_and_hold
        reserved = mmap.mmap(-1, 600 << 20, flags=mmap.MAP_PRIVATE, prot=0)
        stop = threading.Event()
        threads = [threading.Thread(target=stop.wait) for _ in range(8)]
        for t in threads:
            t.start()
        size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        lf = pynisher.limit(hog_and_hold, memory=(256, "MB"), raises=False, warnings=False,
                            context={context!r})
        value = lf(100, 0.1)
        stop.set()
        print(json.dumps({{"value": value is not pynisher.EMPTY and value, "status": lf.outcome.status,
                          "caller_vmsize": size, "peak": lf.outcome.peak_memory}}))
        """
    )
    assert out["caller_vmsize"] > 600 * MIB
    assert out["status"] == "completed" and out["value"] == 100 * MIB, out
    assert out["peak"] < 256 * MIB


@pytest.mark.parametrize(
    "call, status",
    [
        pytest.param("f = pynisher.limit(burn_in_children, cpu_time=1, raises=False); f(3, 0.6)",
                     "cpu_timeout", id="cpu-over-child-processes"),
        pytest.param("f = pynisher.limit(sleep_and_return, wall_time=0.5, raises=False); f(10)",
                     "wall_timeout", id="wall"),
        pytest.param("f = pynisher.enforce_limits(num_processes=4)(fork_sleepers); f(20)",
                     "process_limit", id="process-count"),
    ],
)
def test_python_enforces_time_and_process_limits_for_an_ordinary_user(
    as_user: AsUser, call: str, status: str
) -> None:
    out = as_user.python(
        f"""
        import json, warnings, pynisher
        from pyn_helpers import burn_in_children, fork_sleepers, sleep_and_return
        warnings.simplefilter("ignore", pynisher.PynisherWarning)
        {call}
        o = f.outcome
        print(json.dumps({{"status": o.status, "backend": o.backend, "cpu": o.cpu_time}}))
        """
    )
    assert out["status"] == status, out
    assert out["backend"] == "none"
    if status == "cpu_timeout":
        assert out["cpu"] >= 1.0


def test_python_strict_refuses_for_an_ordinary_user(as_user: AsUser) -> None:
    out = as_user.python(
        """
        import json, pynisher
        try:
            pynisher.limit(abs, strict=True)(-1)
            print(json.dumps({"refused": False}))
        except pynisher.NotEnforceableError as err:
            print(json.dumps({"refused": True, "weaknesses": list(err.weaknesses), "text": str(err)}))
        """
    )
    assert out["refused"] and out["weaknesses"] == ["escapees_not_contained"], out
    assert "backends that work here, strongest first: none" in out["text"]
