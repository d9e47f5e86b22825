"""`pynisher.supports(...)` follows the platform table: Linux >= 5.3 everything, older kernels and
other systems nothing (the engine cannot run there)."""

from __future__ import annotations

import os
from collections import namedtuple

import pytest

import pynisher
from pynisher import support

FEATURES = ["wall_time", "cpu_time", "memory", "decorator"]
Uname = namedtuple("Uname", "sysname nodename release version machine")


def _pretend(monkeypatch: pytest.MonkeyPatch, platform: str, release: str) -> None:
    monkeypatch.setattr(support.sys, "platform", platform)
    monkeypatch.setattr(os, "uname", lambda: Uname("Linux", "host", release, "#1", "x86_64"))


@pytest.mark.parametrize("release", ["5.3.0", "5.10.0-28-amd64", "6.1.0-rc1", "5.15.0-91-generic"])
def test_linux_at_or_above_5_3_supports_every_limit(monkeypatch, release) -> None:
    _pretend(monkeypatch, "linux", release)
    assert all(pynisher.supports(f) for f in FEATURES)


@pytest.mark.parametrize("release", ["3.10.0-1160.el7.x86_64", "4.15.0-213-generic", "5.2.21", "garbage"])
def test_linux_below_5_3_supports_nothing(monkeypatch, release) -> None:
    _pretend(monkeypatch, "linux", release)
    assert not any(pynisher.supports(f) for f in FEATURES)


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_other_systems_support_nothing(monkeypatch, platform) -> None:
    _pretend(monkeypatch, platform, "6.1.0")
    assert not any(pynisher.supports(f) for f in FEATURES)
    assert not pynisher.supports_memory() and not pynisher.supports_walltime()
