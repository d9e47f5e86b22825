"""Any start method: `context=None` under whatever default a library set (joblib's and loky's
workers use "loky"), and loky context objects, mapped to the closest engine start method.

The calls run for real inside `joblib.Parallel(n_jobs=2)` workers (loky backend) and
`loky.get_reusable_executor()` workers, with both APIs, including wall timeouts on time.
"""

from __future__ import annotations

import multiprocessing

import pytest

import pynisher
from pynisher import enforce_limits, limit

import pyn_helpers as h

joblib = pytest.importorskip("joblib", reason="joblib is not installed (scripts/dev-env.sh installs it)")
loky = pytest.importorskip("loky", reason="loky is not installed (scripts/dev-env.sh installs it)")

CASES = [("v1", "ok"), ("v1", "wall"), ("v1", "memory"), ("v0", "ok"), ("v0", "wall"), ("v0", "memory")]
EXPECTED = {
    ("v1", "ok"): "value:3",
    ("v1", "wall"): "WallTimeoutException",
    ("v1", "memory"): "MemoryLimitException",
    ("v0", "ok"): "0",
    ("v0", "wall"): "TimeoutException:None",
    ("v0", "memory"): "MemoryLimitException:None",  # MemorylimitException is the same class
}


def _check(results: list) -> None:
    for (api, kind), (outcome, elapsed, default) in zip(CASES, results):
        assert default == "loky", f"the worker's default start method is {default!r}"
        assert outcome == EXPECTED[(api, kind)], (api, kind, outcome)
        if kind == "wall":
            # wall_time is 0.5 s; a fresh interpreter (spawn) starts within it.
            assert 0.5 <= elapsed < 2.0, (api, kind, elapsed)


def test_calls_inside_joblib_parallel_workers_with_the_loky_default() -> None:
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(h.timed_limited_task)(api, kind) for api, kind in CASES
    )
    _check(results)


def test_calls_inside_loky_reusable_executor_workers_with_the_loky_default() -> None:
    executor = loky.get_reusable_executor(max_workers=2)
    futures = [executor.submit(h.timed_limited_task, api, kind) for api, kind in CASES]
    _check([f.result(timeout=120) for f in futures])


@pytest.mark.parametrize(
    "make_context",
    [
        lambda: loky.backend.context.get_context("loky"),
        lambda: loky.backend.context.get_context("loky_init_main"),
        lambda: joblib.externals.loky.backend.context.get_context("loky"),
    ],
    ids=["loky", "loky_init_main", "joblib-loky"],
)
def test_loky_context_objects_map_to_spawn_and_work_in_both_apis(make_context) -> None:
    ctx = make_context()
    lf = limit(h.add, wall_time=10, context=ctx)
    assert lf._start_method == "spawn"
    assert lf.context is ctx
    assert lf(1, 2) == 3
    obj = enforce_limits(wall_time_in_s=10, context=ctx)(h.add)
    assert obj(1, b=2) == 3 and obj.exit_status == 0


class _LibraryContext:
    """A context object of a start method some library registered (unknown to the engine)."""

    def get_start_method(self) -> str:
        return "somelib"


def test_a_context_object_of_an_unknown_library_method_runs_as_spawn() -> None:
    lf = limit(h.add, context=_LibraryContext())
    assert lf._start_method == "spawn"
    assert lf(2, 3) == 5


@pytest.mark.parametrize("value", ["loky", "threads", ""])
def test_an_unknown_start_method_string_is_a_value_error_naming_context_and_value(value: str) -> None:
    with pytest.raises(ValueError, match=rf"`context` '{value}' must be in \['fork', 'spawn', 'forkserver'\]"):
        limit(h.add, context=value)
    with pytest.raises(ValueError, match=rf"`context` '{value}'"):
        enforce_limits(context=value)


def test_the_default_start_method_is_never_fixed_by_resolving_it() -> None:
    before = multiprocessing.get_start_method(allow_none=True)
    limit(h.add)._start_method
    assert multiprocessing.get_start_method(allow_none=True) == before
    assert pynisher.contexts == ["fork", "spawn", "forkserver"]
