"""The release wheel (scripts/wheels.sh: manylinux2014 x86_64, abi3) installs into a fresh venv of
every CPython 3.9-3.13 this machine has and works there: a limited call returns its value, a wall
timeout raises, and the bundled `pynisher` command runs with its exit codes.

The wheel is taken from $PYNISHER_TEST_WHEEL or dist/ (scripts/test.sh builds it first); without
one, or without an interpreter, the test is skipped and says why.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def _wheel() -> Path:
    given = os.environ.get("PYNISHER_TEST_WHEEL")
    if given:
        return Path(given)
    arch = platform.machine()
    found = sorted(glob.glob(str(ROOT / "dist" / f"pynisher-*-cp39-abi3-*manylinux_2_17_{arch}.whl")))
    if not found:
        pytest.skip(f"no manylinux_2_17_{arch} wheel in dist/ (build it: WHEEL_TARGETS={arch} bash scripts/wheels.sh)")
    return Path(found[-1])


def _interpreter(version: str) -> "str | None":
    """A CPython `version` from PATH, the usual prefixes, or pyenv."""
    name = f"python{version}"
    candidates = [shutil.which(name)]
    candidates += [f"{p}/bin/{name}" for p in ("/usr", "/usr/local")]
    candidates += sorted(glob.glob(f"/opt/*/bin/{name}")) + sorted(glob.glob(f"/opt/python*/{version}*/bin/{name}"))
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/{name}"), reverse=True)
    for c in candidates:
        if c and os.access(c, os.X_OK):
            out = subprocess.run([c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() == version:
                return c
    return None


CALLS = r"""
import sys, time, pynisher
assert "site-packages" in pynisher.__file__, pynisher.__file__
print(pynisher.limit(lambda x: x * 2, wall_time=10, memory=(200, "MB"))(21))
try:
    pynisher.limit(time.sleep, wall_time=0.5)(10)
except pynisher.WallTimeoutException:
    print("wall-timeout")
print(pynisher.supports("memory"))
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_wheel_installs_and_runs_limited_calls(version: str, tmp_path: Path) -> None:
    wheel = _wheel()
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no CPython {version} on this machine (looked on PATH, /usr, /usr/local, /opt, pyenv)")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    vpy = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", vpy]
    if subprocess.run(pip + ["--version"], capture_output=True, env=env).returncode == 0:
        # This venv's pip installs into the new one: no pip bootstrap per interpreter (seconds).
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, env=env, timeout=300)
    else:
        # That pip no longer targets this Python (3.9): the venv gets its own bundled pip.
        subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
        pip = [vpy, "-m", "pip"]
    install = subprocess.run(
        pip + ["install", "--disable-pip-version-check", "-q", str(wheel)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    done = subprocess.run([vpy, "-c", CALLS], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "wall-timeout", "True"], done.stdout
    # The bundled command line: a wall-time limit gives 124, `python -m pynisher` runs it too.
    cli = subprocess.run([str(venv / "bin" / "pynisher"), "--wall-time", "300ms", "--", "sleep", "5"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 124, cli.stderr
    ver = subprocess.run([vpy, "-m", "pynisher", "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert ver.returncode == 0 and ver.stdout.startswith("pynisher "), ver


def test_sdist_carries_license_readme_and_no_prebuilt_binary() -> None:
    found = sorted(glob.glob(str(ROOT / "dist" / "pynisher-*.tar.gz")))
    if not found:
        pytest.skip("no sdist in dist/ (build it: bash scripts/wheels.sh)")
    import tarfile

    with tarfile.open(found[-1]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
    assert {"LICENSE", "README.md", "pyproject.toml", "crates/pynisher/build.rs"} <= names, sorted(names)
    assert not any("_bin/" in n for n in names), "the sdist must not carry a prebuilt binary"
    assert "License-File: LICENSE" in pkg_info
    assert "Description-Content-Type: text/markdown" in pkg_info and "# pynisher" in pkg_info
