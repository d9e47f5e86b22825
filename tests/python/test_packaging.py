"""The installed distribution: a version every `pynisher>=1.0.x` client accepts, and its metadata.

pip must keep this package when a client asks for upstream's 1.x (SMAC3: ``pynisher>=1.0.0``,
amltk: ``>=1.0.10``) instead of swapping in upstream. Checked offline: ``--no-index`` makes pip
decide from what is installed alone.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution

import pytest

import pynisher


def test_version_is_2_0_0_in_the_module_and_the_metadata() -> None:
    assert pynisher.__version__ == "2.0.0"
    assert distribution("pynisher").version == "2.0.0"


def test_metadata_has_a_long_description_license_urls_and_classifiers() -> None:
    meta = distribution("pynisher").metadata
    assert "pynisher runs a function or a command" in (meta.get_payload() or meta["Description"] or "")
    assert meta["Description-Content-Type"].startswith("text/markdown")
    assert meta["License-Expression"] == "MIT" or meta["License"] == "MIT"
    assert any(url.startswith("Repository, ") for url in meta.get_all("Project-URL") or [])
    classifiers = meta.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "psutil>=5.9" in (meta.get_all("Requires-Dist") or [])


@pytest.mark.parametrize("requirement", ["pynisher>=1.0.10", "pynisher>=1.0.0", "pynisher>=1.0,<3"])
def test_pip_keeps_this_package_for_an_upstream_1x_requirement(requirement: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--disable-pip-version-check", requirement],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Requirement already satisfied: pynisher" in proc.stdout, proc.stdout
    assert "Would install" not in proc.stdout, proc.stdout
