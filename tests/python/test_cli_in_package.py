"""The `pynisher` command line as a Python install provides it: the bundled Rust binary behind
`pynisher._cli.binary_path()`, the `pynisher` console script and `python -m pynisher`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pynisher._cli

SCRIPTS = Path(sys.executable).parent


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_binary_path_is_an_executable_pynisher_binary() -> None:
    path = pynisher._cli.binary_path()
    assert os.path.isabs(path) and os.access(path, os.X_OK)
    with open(path, "rb") as fh:
        assert fh.read(4) == b"\x7fELF"
    done = _run([path, "--version"])
    assert done.returncode == 0 and done.stdout.startswith("pynisher "), done


@pytest.mark.parametrize(
    "front",
    [
        pytest.param(lambda: [str(SCRIPTS / "pynisher")], id="console-script"),
        pytest.param(lambda: [sys.executable, "-m", "pynisher"], id="python-m"),
    ],
)
def test_python_fronts_give_the_binarys_exit_codes_and_reports(front) -> None:
    argv = front()
    if argv[0] != sys.executable and not os.access(argv[0], os.X_OK):
        pytest.skip(f"no console script at {argv[0]} (package not installed into this venv)")
    # wall-time limit → 124, the summary line on stderr, exactly as from the binary itself.
    ours = _run(argv + ["--wall-time", "300ms", "--", "sleep", "5"])
    direct = _run([pynisher._cli.binary_path(), "--wall-time", "300ms", "--", "sleep", "5"])
    assert ours.returncode == direct.returncode == 124, (ours, direct)
    assert "wall-time limit" in ours.stderr
    # the program's own exit status passes through; bad flags are the binary's usage error (2).
    assert _run(argv + ["--", "sh", "-c", "exit 7"]).returncode == 7
    bad = _run(argv + ["--wall-time", "soon", "--", "true"])
    assert bad.returncode == _run([pynisher._cli.binary_path(), "--wall-time", "soon", "--", "true"]).returncode
    assert "--wall-time" in bad.stderr


def test_a_build_without_the_binary_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pynisher._cli, "_BINARY", tmp_path / "_bin" / "pynisher")
    with pytest.raises(FileNotFoundError, match="cargo install --path crates/pynisher-cli"):
        pynisher._cli.binary_path()
    # The console script reports it and exits 127 (command not found), not with a traceback.
    code = (
        "import sys, pathlib, pynisher._cli as c;"
        f"c._BINARY = pathlib.Path({str(tmp_path)!r}) / 'pynisher';"
        "sys.argv = ['pynisher', '--help']; c.main()"
    )
    done = _run([sys.executable, "-c", code])
    assert done.returncode == 127
    assert done.stderr.startswith("pynisher: the pynisher command-line binary is not part of this install")
    assert "Traceback" not in done.stderr

