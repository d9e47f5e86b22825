"""The 1.x API (`limit` / `Pynisher` / `restricted`) with real child processes, per start method."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import pynisher
from pynisher import (
    EMPTY,
    CpuTimeoutException,
    MemoryLimitException,
    PynisherException,
    TimeoutException,
    WallTimeoutException,
    limit,
    restricted,
)
from pynisher.exceptions import RemoteTraceback

import pyn_helpers as h
from pyn_helpers import assert_gone

from conftest import skip_unless_resident_memory


# ---- results ----------------------------------------------------------------------------------


def test_returns_value(context: str) -> None:
    assert limit(h.add, context=context, wall_time=10)(1, b=2) == 3
    assert limit(h.return_none, context=context)() is None


def test_lambda_and_closure(context: str) -> None:
    offset = 10
    assert limit(lambda x: x + offset, context=context, wall_time=10)(5) == 15


def test_partial_bound_method_and_callable_object(context: str) -> None:
    import functools

    assert limit(functools.partial(h.add, b=10), wall_time=10, context=context)(1) == 11
    assert limit(h.Adder(3).method, wall_time=10, context=context)(2) == 6
    assert limit(h.Adder(3), wall_time=10, context=context)(2) == 5
    with pytest.raises(WallTimeoutException, match=r"sleep_and_return\(30\)"):
        limit(functools.partial(h.sleep_and_return), wall_time=0.3, context=context)(30)


def test_large_return_value_and_argument(context: str) -> None:
    # 1.0.8 fixed a hang when the result exceeded the pipe buffer; 20 MiB each way here.
    data = limit(h.big_bytes, wall_time=30, context=context)(20)
    assert len(data) == 20 * 2**20 and data[:1] == data[-1:] == b"\x07"
    assert limit(h.length, wall_time=30, context=context)(data) == 20 * 2**20


def test_func_as_keyword_and_context_manager(context: str) -> None:
    with limit(func=h.add, wall_time=10, context=context) as lf:
        assert lf(2, 2) == 4


# ---- limits -----------------------------------------------------------------------------------


def test_wall_timeout(context: str) -> None:
    lf = limit(h.sleep_and_return, wall_time=0.5, context=context)
    start = time.monotonic()
    with pytest.raises(WallTimeoutException) as info:
        lf(30)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutException)
    assert str(info.value).startswith("Your function took longer than 0.5 seconds to run.\n")
    assert "sleep_and_return(30)" in str(info.value)
    assert 0.5 <= elapsed < 3


@pytest.mark.timing
def test_wall_timeout_returns_within_100ms_of_limit(context: str) -> None:
    wall = 0.5
    lf = limit(h.sleep_and_return, wall_time=wall, context=context)
    elapsed = []
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(WallTimeoutException):
            lf(30)
        elapsed.append(time.monotonic() - start)
    assert min(elapsed) >= wall, elapsed  # never early
    assert max(elapsed) < wall + 0.5, elapsed  # generous bound for a loaded machine
    assert sorted(elapsed)[1] < wall + 0.1, elapsed  # the median is within 100 ms


def test_cpu_timeout(context: str) -> None:
    start = time.monotonic()
    with pytest.raises(CpuTimeoutException) as info:
        limit(h.busy_forever, cpu_time=0.5, context=context)()
    assert str(info.value).startswith("Did not finish in cpu time (0.5s)")
    assert time.monotonic() - start < 5


def test_cpu_time_enough(context: str) -> None:
    assert limit(h.busy_for, cpu_time=3, context=context)(0.2) == 0.2


def test_memory_hog(context: str) -> None:
    with pytest.raises(MemoryLimitException) as info:
        limit(h.hog, memory=(100, "MB"), context=context)(500)
    assert isinstance(info.value, MemoryError)
    assert str(info.value).startswith(f"Not enough memory to run function ({100 * 2**20}B).")


def test_memory_enough(context: str) -> None:
    skip_unless_resident_memory(context)
    assert limit(h.hog, memory=(300, "MB"), context=context)(20) == 20 * 2**20


def test_memory_error_raised_in_python_under_limit(context: str) -> None:
    with pytest.raises(MemoryLimitException) as info:
        limit(h.raise_memory_error, memory=(1, "GB"), context=context)()
    # The original MemoryError is the cause, carrying the child traceback.
    assert type(info.value.__cause__) is MemoryError
    assert "raise_memory_error" in str(info.value.__cause__.__cause__)


def test_memory_error_without_limit_is_plain(context: str) -> None:
    with pytest.raises(MemoryError) as info:
        limit(h.raise_memory_error, context=context)()
    assert type(info.value) is MemoryError


def test_all_limits_together_success(context: str) -> None:
    skip_unless_resident_memory(context)
    lf = limit(h.add, memory=(1, "GB"), cpu_time=(1, "m"), wall_time=(0.5, "m"), context=context)
    assert lf(20, 22) == 42


# ---- the function's own exceptions ------------------------------------------------------------


def test_exception_round_trip(context: str) -> None:
    with pytest.raises(ValueError) as info:
        limit(h.raise_value_error, context=context)("bad config")
    assert info.value.args == ("bad config",)
    cause = info.value.__cause__
    assert type(cause) is ValueError  # like upstream: same type, built from the traceback text
    assert str(cause).startswith("Traceback (most recent call last):")
    assert "raise_value_error" in str(cause)


def test_multi_argument_exception_round_trip(context: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        limit(h.raise_called_process_error, context=context)()
    e = info.value
    assert (e.returncode, e.cmd, e.output, e.stderr) == (1, ["cmd", "arg"], "out", "err")
    assert type(e.__cause__) is RemoteTraceback
    assert "raise_called_process_error" in str(e.__cause__)

    with pytest.raises(h.TwoArgError) as info2:
        limit(h.raise_two_arg_error, context=context)()
    assert (info2.value.code, info2.value.detail, info2.value.args) == (7, "detail", (7, "detail"))


def test_custom_exception_args_preserved(context: str) -> None:
    with pytest.raises(KeyError) as info:
        limit(h.raise_given, context=context)(KeyError("apple"))
    assert info.value.args == ("apple",)
    assert "raise_given" in str(info.value.__cause__)


def test_unpicklable_return_value_is_a_clear_error(context: str) -> None:
    with pytest.raises(PynisherException) as info:
        limit(h.return_lock, context=context)()
    assert "pickl" in str(info.value).lower()
    assert limit(h.return_lock, context=context, raises=False)() is EMPTY


def test_exception_that_cannot_travel_is_a_clear_error(context: str) -> None:
    with pytest.raises(PynisherException) as info:
        limit(h.raise_unpicklable_exception, context=context)()
    assert type(info.value) is PynisherException
    assert "ValueError" in str(info.value) and "lock" in str(info.value)


def test_exception_that_cannot_be_rebuilt(context: str) -> None:
    with pytest.raises(Exception) as info:
        limit(h.raise_undecodable, context=context)()
    err = info.value
    if type(err) is h.BadInitError:
        # Where tblib's pickling support is installed (importing dask.distributed does that,
        # and a fork child inherits it) exceptions are rebuilt without calling __init__.
        assert err.args == ("a",)
    else:
        assert type(err) is PynisherException and "BadInitError" in str(err)


def test_sys_exit_in_function_does_not_exit_caller(context: str) -> None:
    with pytest.raises(PynisherException):
        limit(h.sys_exit, context=context)(3)


def test_exit_without_result(context: str) -> None:
    with pytest.raises(PynisherException, match="no result"):
        limit(h.exit_with, context=context)(0)


def test_killed_by_signal(context: str) -> None:
    with pytest.raises(PynisherException) as info:
        limit(h.kill_self, context=context)(signal.SIGKILL)
    assert not isinstance(info.value, (TimeoutException, MemoryLimitException))
    assert "-9" in str(info.value)


def test_sigsegv_under_memory_limit_counts_as_memory(context: str) -> None:
    with pytest.raises(MemoryLimitException):
        limit(h.kill_self, memory=(1, "GB"), context=context)(signal.SIGSEGV)


@pytest.mark.parametrize(
    "func, args, limits",
    [
        (h.raise_value_error, ("x",), {}),
        (h.sleep_and_return, (30,), {"wall_time": 0.3}),
        (h.busy_forever, (), {"cpu_time": 0.3}),
        (h.hog, (500,), {"memory": (100, "MB")}),
        (h.kill_self, (signal.SIGKILL,), {}),
    ],
    ids=["raise", "wall", "cpu", "memory", "killed"],
)
def test_raises_false_returns_empty(func, args, limits) -> None:
    assert limit(func, raises=False, **limits)(*args) is EMPTY


@pytest.mark.parametrize("inner", pynisher.contexts)
def test_nested_calls(context: str, inner: str) -> None:
    outer = limit(h.nested_call, wall_time=20, context=context)
    assert outer(inner, "ok") == 5
    with pytest.raises(WallTimeoutException):
        outer(inner, "wall")
    with pytest.raises(MemoryLimitException):
        outer(inner, "memory")


# ---- wrap_errors ------------------------------------------------------------------------------


def _raised(lf, *args) -> BaseException:
    with pytest.raises(BaseException) as info:
        lf(*args)
    return info.value


@pytest.mark.parametrize("wrap", [True, ["ValueError"], [ValueError], {"pynisher": [ValueError]},
                                  ["Exception"], [Exception]])
def test_wrap_errors_wraps(wrap, context: str) -> None:
    err = _raised(limit(h.raise_value_error, wrap_errors=wrap, context=context), "bad")
    assert type(err) is PynisherException
    assert str(err) == "Wrapped Exception ValueError - bad"
    # The original traceback (with the original exception) travels as text.
    assert "raise_value_error" in str(err.__cause__)


@pytest.mark.parametrize("wrap", [False, ["KeyError"], [KeyError], {"memory": [ValueError]}])
def test_wrap_errors_leaves_other_errors(wrap) -> None:
    err = _raised(limit(h.raise_value_error, wrap_errors=wrap), "bad")
    assert type(err) is ValueError


def test_wrap_errors_matches_subclasses() -> None:
    err = _raised(limit(h.raise_file_not_found, wrap_errors=[OSError]))
    assert type(err) is PynisherException
    assert "FileNotFoundError" in str(err)


def test_wrap_errors_memory_key_with_class_and_errno_tuple() -> None:
    err = _raised(limit(h.raise_given, memory=(1, "GB"), wrap_errors={"memory": [ImportError]}),
                  ImportError("failed to map segment from shared object"))
    assert type(err) is MemoryLimitException
    # Only while the memory limit is set:
    err = _raised(limit(h.raise_given, wrap_errors={"memory": [ImportError]}), ImportError("x"))
    assert type(err) is ImportError
    err = _raised(limit(h.raise_file_not_found, memory=(1, "GB"),
                        wrap_errors={"memory": [(OSError, errno.ENOENT)]}))
    assert type(err) is MemoryLimitException
    err = _raised(limit(h.raise_file_not_found, memory=(1, "GB"),
                        wrap_errors={"memory": [(OSError, errno.EACCES)]}))
    assert type(err) is FileNotFoundError


def test_wrap_errors_time_keys() -> None:
    err = _raised(limit(h.raise_timeout_error, wall_time=10, wrap_errors={"wall_time": [TimeoutError]}))
    assert type(err) is WallTimeoutException
    err = _raised(limit(h.raise_timeout_error, cpu_time=10, wrap_errors={"cpu_time": ["TimeoutError"]}))
    assert type(err) is CpuTimeoutException
    err = _raised(limit(h.raise_timeout_error, wrap_errors={"wall_time": [TimeoutError]}))
    assert type(err) is TimeoutError  # key inactive without a wall_time limit


def test_wrap_errors_true_still_reports_memory() -> None:
    # Decision (documented): a MemoryError under a memory limit is the limit, even with
    # wrap_errors=True (SMAC3's setting), so callers catching MemoryLimitException see it.
    err = _raised(limit(h.raise_memory_error, memory=(1, "GB"), wrap_errors=True))
    assert type(err) is MemoryLimitException
    err = _raised(limit(h.hog, memory=(100, "MB"), wrap_errors=True), 500)
    assert type(err) is MemoryLimitException


def test_wrap_errors_happens_in_the_child(tmp_path: Path) -> None:
    # The parent must not import the module defining the original exception.
    (tmp_path / "pollute_mod_pyn.py").write_text("class Special(Exception):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        def raise_special() -> None:
            import pollute_mod_pyn

            raise pollute_mod_pyn.Special("boom")

        err = _raised(limit(raise_special, wrap_errors=["Special"], context="fork"))
        assert type(err) is PynisherException
        assert "pollute_mod_pyn" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


# ---- restricted -------------------------------------------------------------------------------


@pytest.fixture
def parent_marker():
    json._pynisher_test_marker = True  # type: ignore[attr-defined]
    yield
    del json._pynisher_test_marker  # type: ignore[attr-defined]


@pytest.mark.parametrize("method, inherits", [("fork", True), ("spawn", False), ("forkserver", False)])
def test_restricted_honours_context(method: str, inherits: bool, parent_marker) -> None:
    decorated = restricted(context=method, wall_time=10)(h.has_parent_marker)
    assert decorated() is inherits
    assert decorated.__name__ == "has_parent_marker"


def test_restricted_on_module_level_function_under_spawn() -> None:
    assert h.decorated_spawn(21) == 42


def test_restricted_honours_other_arguments() -> None:
    quiet = restricted(raises=False, wall_time=0.3)(h.sleep_and_return)
    assert quiet(30) is EMPTY
    wrapped = restricted(wrap_errors=True)(h.raise_value_error)
    assert type(_raised(wrapped, "x")) is PynisherException
    named = restricted(name="my-task", wall_time=0.3)(h.sleep_and_return)
    assert "my-task" in str(_raised(named, 30))
    memory = restricted(memory=(100, "MB"))(h.hog)
    assert type(_raised(memory, 500)) is MemoryLimitException
    cpu = restricted(cpu_time=0.3)(h.busy_forever)
    assert type(_raised(cpu)) is CpuTimeoutException


# ---- processes and signals --------------------------------------------------------------------


def test_child_processes_are_gone_after_return(context: str) -> None:
    pid = limit(h.spawn_sleep_and_return, context=context, wall_time=10)()
    assert_gone(pid)


@pytest.mark.parametrize(
    "then, limits, exc",
    [("hang", {"wall_time": 0.5}, WallTimeoutException),
     ("raise", {}, ValueError),
     ("busy", {"cpu_time": 0.5}, CpuTimeoutException)],
)
def test_child_processes_are_gone_after_failure(then, limits, exc, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with pytest.raises(exc):
        limit(h.spawn_sleep_then, **limits)(str(pidfile), then)
    for pid in map(int, pidfile.read_text().split()):
        assert_gone(pid)


def test_caller_signal_handlers_untouched(context: str) -> None:
    def handler(signum, frame):  # pragma: no cover - never delivered
        pass

    watched = [signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGCHLD, signal.SIGXCPU, signal.SIGQUIT]
    old = {s: signal.getsignal(s) for s in watched}
    signal.signal(signal.SIGTERM, handler)
    try:
        before = {s: signal.getsignal(s) for s in watched}
        assert limit(h.add, wall_time=5, context=context)(1, 1) == 2
        with pytest.raises(WallTimeoutException):
            limit(h.sleep_and_return, wall_time=0.3, context=context)(30)
        assert {s: signal.getsignal(s) for s in watched} == before
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        for s, old_handler in old.items():
            signal.signal(s, old_handler)


def test_sigterm_still_ends_the_caller_after_calls() -> None:
    # 1.0.10 replaced the caller's SIGTERM handler, so `kill -TERM` no longer ended it.
    code = textwrap.dedent(
        """
        import os, signal, time, pynisher, pyn_helpers as h
        for _ in range(3):
            assert pynisher.limit(h.add, wall_time=5)(1, 2) == 3
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("survived SIGTERM")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGTERM, (out.returncode, out.stdout, out.stderr)


def test_call_from_a_thread() -> None:
    import threading

    results = []
    t = threading.Thread(target=lambda: results.append(limit(h.add, wall_time=5)(2, 3)))
    t.start()
    t.join(30)
    assert results == [5]


def test_concurrent_calls_from_threads(context: str) -> None:
    # Dask workers with several threads make limited calls concurrently, through one object.
    from concurrent.futures import ThreadPoolExecutor

    kinds = ["ok", "wall", "raise", "ok", "memory", "ok"] * 2
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(h.limited_task, kinds, [context] * len(kinds)))
    expected = {"ok": "value:3", "wall": "WallTimeoutException", "raise": "ValueError",
                "memory": "MemoryLimitException"}
    assert outcomes == [expected[k] for k in kinds]


def test_function_importable_from_runtime_sys_path(context: str, tmp_path: Path) -> None:
    # A module the caller found through a sys.path entry added at run time (not in PYTHONPATH),
    # as multiprocessing supports: spawn/forkserver children must find it too.
    (tmp_path / "runtime_mod_pyn.py").write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import runtime_mod_pyn

        assert limit(runtime_mod_pyn.triple, context=context, wall_time=20)(5) == 15
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("runtime_mod_pyn", None)


# ---- warnings ---------------------------------------------------------------------------------


def test_warnings_for_a_hopeless_memory_limit() -> None:
    with pytest.warns(pynisher.PynisherWarning, match="memory"):
        limit(h.add, memory=(1, "KB"), raises=False)(1, 2)


def test_no_warnings_when_disabled(capfd) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        limit(h.add, memory=(1, "KB"), raises=False, warnings=False)(1, 2)
    assert "memory" not in capfd.readouterr().err.lower()
