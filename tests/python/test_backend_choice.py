"""Choosing the backend from Python, and weaker guarantees said aloud (issue 11 items 3, 4).

``backend="none"`` forces the process-group backend (what an ordinary user without a delegated
cgroup gets): its memory limit is sampled, and it cannot hold escaped descendants. The APIs then
warn once per process and kind of weakness, expose the last call's outcome, and ``strict=True``
refuses such calls.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import pynisher
from pynisher import NotEnforceableError, PynisherWarning, _guarantees
from pyn_helpers import add, hog_and_hold

CONTEXTS = list(pynisher.contexts)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch):
    """Each test starts as a process that has not warned yet, with no PYNISHER_BACKEND."""
    monkeypatch.setattr(_guarantees, "_WARNED", set())
    monkeypatch.delenv("PYNISHER_BACKEND", raising=False)


def pyn_warnings(record: list) -> list:
    return [str(w.message) for w in record if issubclass(w.category, PynisherWarning)]


@pytest.mark.parametrize("context", CONTEXTS)
def test_backend_none_enforces_memory_by_sampling_and_says_so(context: str) -> None:
    lf = pynisher.limit(hog_and_hold, memory=(100, "MB"), backend="none", context=context)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(pynisher.MemoryLimitException):
            lf(300)
    out = lf.outcome
    assert out.status == "memory_limit"
    assert out.backend == "none"
    assert out.memory_limit_kind == "sampled" and out.memory_measure == "sampled"
    assert out.peak_memory >= 100 * 2**20
    assert set(out.weaknesses) == {"escapees_not_contained", "memory_sampled"}
    messages = pyn_warnings(record)
    assert len(messages) == 2, messages
    assert any("sampling" in m and "'none'" in m for m in messages), messages
    assert any("setsid" in m for m in messages), messages


def test_each_kind_of_weakness_is_warned_once_per_process() -> None:
    lf = pynisher.limit(add, backend="none")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert lf(1, 2) == 3
        assert lf(2, 2) == 4
        assert pynisher.enforce_limits(backend="none")(add)(3, 3) == 6
    assert len(pyn_warnings(record)) == 1, pyn_warnings(record)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert pynisher.limit(add, memory=(64, "MB"), backend="none")(1) == 1
    # Only the new kind (memory by sampling) is said; the escapees were said before.
    messages = pyn_warnings(record)
    assert len(messages) == 1 and "memory_sampled" in messages[0], messages


def test_warnings_false_keeps_quiet_but_the_outcome_still_tells() -> None:
    lf = pynisher.limit(add, backend="none", warnings=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert lf(1) == 1
    assert pyn_warnings(record) == []
    assert "escapees_not_contained" in lf.outcome.weaknesses


def test_the_environment_variable_chooses_the_backend_and_backend_overrides_it(monkeypatch) -> None:
    monkeypatch.setenv("PYNISHER_BACKEND", "none")
    lf = pynisher.limit(add, warnings=False)
    assert lf(1) == 1 and lf.outcome.backend == "none"
    wrapped = pynisher.enforce_limits()(add)
    assert wrapped(1) == 1 and wrapped.backend == "none"
    auto = pynisher.limit(add, backend="auto", warnings=False)
    auto(1)
    assert auto.outcome.backend == _auto_backend()


def _auto_backend() -> str:
    from pynisher._run import run_limited

    return run_limited(add, (1,), {}, backend="auto").backend


@pytest.mark.parametrize("make", [
    lambda b: pynisher.limit(add, backend=b),
    lambda b: pynisher.enforce_limits(backend=b),
    lambda b: pynisher.restricted(backend=b)(add),
])
def test_an_unknown_backend_is_refused_naming_the_parameter_and_the_names(make) -> None:
    with pytest.raises(ValueError, match=r"invalid value for backend: 'cgroup3' \(one of auto, cgroup2, cgroup1, none\)"):
        make("cgroup3")


def test_an_unknown_backend_in_the_environment_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("PYNISHER_BACKEND", "fastest")
    with pytest.raises(ValueError, match=r"invalid value for PYNISHER_BACKEND: 'fastest'"):
        pynisher.limit(add)(1)


@pytest.mark.parametrize("context", CONTEXTS)
def test_strict_refuses_a_call_the_backend_cannot_fully_enforce(context: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    lf = pynisher.limit(Path.touch, backend="none", strict=True, context=context)
    with pytest.raises(NotEnforceableError) as info:
        lf(marker)
    text = str(info.value)
    assert "strict=True" in text and "backend none cannot fully enforce" in text
    assert "setsid" in text and "strict=False" in text
    assert info.value.weaknesses == ("escapees_not_contained",)
    assert not marker.exists(), "a refused call must not run"
    wrapped = pynisher.enforce_limits(mem_in_mb=64, backend="none", strict=True)(Path.touch)
    with pytest.raises(NotEnforceableError) as info:
        wrapped(marker)
    assert info.value.weaknesses == ("escapees_not_contained", "memory_sampled")
    assert not marker.exists()


def test_strict_runs_what_the_automatic_backend_enforces_fully() -> None:
    loose = pynisher.limit(add, memory=(64, "MB"), warnings=False)
    assert loose(1) == 1
    strict = pynisher.limit(add, memory=(64, "MB"), strict=True)
    if loose.outcome.weaknesses:
        with pytest.raises(NotEnforceableError):
            strict(1)
    else:
        assert strict(1) == 1
        assert strict.outcome.weaknesses == {}


def test_enforce_limits_exposes_the_last_calls_outcome() -> None:
    wrapped = pynisher.enforce_limits(mem_in_mb=100, backend="none")(hog_and_hold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PynisherWarning)
        assert wrapped(20, 0.2) == 20 * 2**20
    assert wrapped.exit_status == 0
    assert wrapped.backend == "none"
    assert wrapped.memory_measure == "sampled"
    assert 20 * 2**20 <= wrapped.peak_memory < 100 * 2**20
    assert wrapped.cpu_time is not None and wrapped.cpu_time >= 0
    assert set(wrapped.weaknesses) == {"escapees_not_contained", "memory_sampled"}
    assert wrapped.guarantees["all_descendants_contained"] is False
    assert wrapped.outcome.status == "completed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PynisherWarning)
        assert wrapped(300) is None
    assert wrapped.exit_status is pynisher.MemorylimitException
    assert wrapped.outcome.memory_limit_kind == "sampled"


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_caller_with_a_large_address_space_keeps_its_headroom(context: str) -> None:
    """Issue 11: a caller with a large VmSize (here 600 MiB reserved and 8 threads) used up an
    address-space limit before the function allocated anything. Under 256 MB the function must
    still get 100 MiB of real memory."""
    import mmap
    import threading

    # PROT_NONE is 0 (the mmap module has no name for it): address space, nothing usable.
    reserved = mmap.mmap(-1, 600 * 2**20, flags=mmap.MAP_PRIVATE, prot=0)
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        lf = pynisher.limit(hog_and_hold, memory=(256, "MB"), backend="none", warnings=False, context=context)
        assert lf(100, 0.1) == 100 * 2**20
        assert lf.outcome.memory_limit_kind == "sampled"
        assert lf.outcome.peak_memory < 256 * 2**20
    finally:
        stop.set()
        for t in threads:
            t.join()
        reserved.close()
