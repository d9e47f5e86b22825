"""Shared set-up of the Python test suite.

* The tests exercise the *installed* `pynisher` package (``pip install .`` / the venv script);
  this file never puts the source tree on ``sys.path``. If `pynisher` is importable but not
  installed as a distribution, the run stops, unless PYNISHER_ALLOW_SOURCE=1 says that is meant.
* This directory goes on PYTHONPATH so that "spawn"/"forkserver" children and Pool/Dask workers
  can import `pyn_helpers` (the test target functions) by reference, like users' own modules.
* The report header shows which pynisher is under test and the engine backend in use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import pynisher  # noqa: E402

_backend: Optional[str] = None


def engine_backend() -> str:
    """The containment backend the engine uses here ("cgroup2", "cgroup1" or "none")."""
    global _backend
    if _backend is None:
        from pynisher._run import run_limited

        _backend = run_limited(int, (), {}, wall_time=10.0, context="fork").backend
    return _backend


def _installed_version() -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("pynisher")
    except PackageNotFoundError:
        return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing: asserts on elapsed time; may be sensitive to a loaded machine")
    if _installed_version() is None and os.environ.get("PYNISHER_ALLOW_SOURCE") != "1":
        pytest.exit(
            f"pynisher imported from {pynisher.__file__} is not an installed distribution; install it"
            " (pip install . or the project's venv script) or set PYNISHER_ALLOW_SOURCE=1",
            returncode=4,
        )


def pytest_report_header(config: pytest.Config) -> str:
    try:
        backend = engine_backend()
    except Exception as e:  # the header must not hide the real failures behind this one
        backend = f"unavailable ({type(e).__name__}: {e})"
    return (
        f"pynisher {_installed_version() or '(source tree)'} from {Path(pynisher.__file__).parent}"
        f"; engine backend: {backend}; python {sys.version.split()[0]}"
    )


@pytest.fixture(params=pynisher.contexts)
def context(request: pytest.FixtureRequest) -> str:
    """Every start method."""
    return request.param


@pytest.fixture
def prepare_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """The keyword arguments of every `_run.prepare` call from now on, with the cache of limits
    prepared lately emptied: a test sees which calls prepared their limits anew."""
    from pynisher import _run

    made: list = []
    real = _run.prepare

    def counting(**kwargs):
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(_run, "prepare", counting)
    monkeypatch.setattr(_run, "_prepared_lately", {})
    return made


@pytest.fixture
def backend() -> str:
    return engine_backend()


def skip_unless_resident_memory(context: str) -> None:
    """Skip a test that needs memory headroom in a *forked* child when the engine has no cgroup:
    its fallback, the address-space limit, counts every mapping inherited from the caller."""
    if context == "fork" and engine_backend() == "none":
        pytest.skip("no cgroup backend: the address-space limit counts the caller's mappings under fork")
