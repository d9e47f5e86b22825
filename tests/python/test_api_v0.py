"""The 0.x API (`enforce_limits`) with real child processes, per start method.

`exit_status` must be 0 or the exception *class* (callers compare with `is`), for every start
method, with and without a grace period.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import pynisher
from pynisher import (
    AnythingException,
    CpuTimeoutException,
    MemorylimitException,
    SignalException,
    SubprocessException,
    TimeoutException,
    enforce_limits,
)

import pyn_helpers as h

from conftest import engine_backend, skip_unless_resident_memory

# ---- the seed document's two examples, verbatim ---------------------------------------------

EXAMPLE_1 = '''\
import pynisher
import time

# using it as a decorator for every call to this function
@pynisher.enforce_limits(wall_time_in_s=2)
def my_function (t):
    time.sleep(t)
    return(t)

for t in range(5):
    print(my_function(t))
'''

EXAMPLE_2 = '''\
import pynisher
import time

def my_function (t):
    print("Going to sleep for %f seconds" % t)
    time.sleep(t)
    return(t)

for t in range(5):
    obj = pynisher.enforce_limits(wall_time_in_s=2, capture_output=True)(my_function)
    result = obj(t)
    print(
        result, obj.result, obj.exit_status, obj.wall_clock_time,
        obj.stdout, obj.stderr, obj.exitcode,
    )
'''

SEED_DOCUMENT = Path(__file__).resolve().parents[3] / "shared" / "seed" / "pynisher-README.txt"


def test_examples_are_the_seed_documents() -> None:
    if not SEED_DOCUMENT.exists():
        pytest.skip(f"seed document not found at {SEED_DOCUMENT}")
    text = SEED_DOCUMENT.read_text()
    for example in (EXAMPLE_1, EXAMPLE_2):
        assert example.strip() in text


# Every example under every start method, all at once: they mostly sleep (5 calls, ~7 s each).
RUNS = [(n, m) for n in (1, 2) for m in ("default", *pynisher.contexts)]


@pytest.fixture(scope="module")
def example_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("seed")
    # Each file is written once, before any interpreter starts: rewriting it per run raced with
    # the runs already started (one that read it between truncate and write ran an empty script).
    paths = {n: d / f"example_{n}.py" for n in (1, 2)}
    for n, path in paths.items():
        path.write_text(EXAMPLE_1 if n == 1 else EXAMPLE_2)
    procs = {}
    for n, method in RUNS:
        path = paths[n]
        if method == "default":
            argv = [sys.executable, str(path)]  # verbatim: the interpreter's default start method
        else:
            prelude = (
                f"import multiprocessing, runpy; multiprocessing.set_start_method({method!r}); "
                f"runpy.run_path({str(path)!r}, run_name='__main__')"
            )
            argv = [sys.executable, "-c", prelude]
        procs[(n, method)] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        outputs[key] = (proc.returncode, out, err)
    return outputs


@pytest.mark.parametrize("method", ["default", *pynisher.contexts])
def test_seed_example_1(method: str, example_outputs: dict) -> None:
    rc, out, err = example_outputs[(1, method)]
    assert rc == 0, err
    lines = out.splitlines()
    # t=2 sleeps exactly as long as the limit: either outcome is right.
    assert lines[:2] == ["0", "1"] and lines[2] in ("2", "None") and lines[3:] == ["None", "None"], (
        f"rc={rc} out={out!r} err={err!r}"
    )


EX2_LINE = re.compile(
    r"^(?P<result>\S+) (?P<obj_result>\S+) (?P<status>0|<class '[\w.]+'>) (?P<wall>[0-9.e+-]+) "
    r"Going to sleep for (?P<t>[0-9.]+) seconds\n  (?P<exitcode>-?\d+)$",
    re.M,
)


@pytest.mark.parametrize("method", ["default", *pynisher.contexts])
def test_seed_example_2(method: str, example_outputs: dict) -> None:
    rc, out, err = example_outputs[(2, method)]
    assert rc == 0, err
    rows = [m.groupdict() for m in EX2_LINE.finditer(out)]
    assert [float(r["t"]) for r in rows] == [0, 1, 2, 3, 4], f"rc={rc} out={out!r} err={err!r}"
    for t, row in enumerate(rows):
        wall = float(row["wall"])
        success = (row["result"], row["obj_result"], row["status"], row["exitcode"]) == (str(t), str(t), "0", "0")
        timeout = (row["result"], row["obj_result"], row["status"]) == (
            "None", "None", "<class 'pynisher.exceptions.TimeoutException'>")
        if t < 2:
            assert success and t <= wall < t + 1.5, row
        elif t == 2:
            # Sleeps exactly as long as the limit: either outcome, and on a timeout the child
            # may have exited (0) in the same instant as the deadline passed.
            assert success or timeout, row
        else:
            assert timeout and 2 <= wall < 3 and int(row["exitcode"]) < 0, row


# ---- exit_status for every outcome, per start method ----------------------------------------


def _ctx(context: str):
    # auto-sklearn passes a multiprocessing context object; strings are tested separately.
    return multiprocessing.get_context(context)


def test_success(context: str) -> None:
    skip_unless_resident_memory(context)
    obj = enforce_limits(wall_time_in_s=10, mem_in_mb=500, cpu_time_in_s=10, context=_ctx(context))(h.add)
    assert obj(1, b=2) == 3
    assert obj.result == 3
    assert obj.exit_status == 0 and obj.exit_status is not False
    assert obj.exitcode == 0
    assert obj.stdout is None and obj.stderr is None
    assert isinstance(obj.wall_clock_time, float) and 0 < obj.wall_clock_time < 10
    assert isinstance(obj.resources_function, resource.struct_rusage)
    assert isinstance(obj.resources_pynisher, resource.struct_rusage)
    assert obj.os_errno is None


def test_wall_timeout(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=0.5, context=_ctx(context))(h.sleep_and_return)
    assert obj(30) is None
    assert obj.exit_status is TimeoutException
    assert obj.result is None
    assert obj.exitcode == -signal.SIGKILL  # no grace period: killed at once
    assert 0.5 <= obj.wall_clock_time < 3


def test_wall_timeout_grace_period_lets_function_clean_up(context: str, tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    obj = enforce_limits(wall_time_in_s=0.5, grace_period_in_s=2, context=_ctx(context))(h.clean_up_on_timeout)
    # The function catches the SIGALRM exception and even returns: the status is still the timeout.
    assert obj(str(marker), "wall") is None
    assert obj.exit_status is TimeoutException
    assert marker.read_text() == "WallTimeoutException"
    assert obj.wall_clock_time < 2.5


def test_wall_timeout_grace_period_ignored_signal(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=0.5, grace_period_in_s=0.5, context=_ctx(context))(
        h.ignore_soft_signals_and_sleep)
    assert obj(30) is None
    assert obj.exit_status is TimeoutException
    assert obj.exitcode == -signal.SIGKILL
    assert 1.0 <= obj.wall_clock_time < 3  # SIGKILL came after limit + grace


def test_cpu_timeout(context: str) -> None:
    obj = enforce_limits(cpu_time_in_s=0.5, context=_ctx(context))(h.busy_forever)
    assert obj() is None
    assert obj.exit_status is CpuTimeoutException
    assert obj.wall_clock_time < 5


def test_cpu_timeout_grace_period_lets_function_clean_up(context: str, tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    obj = enforce_limits(cpu_time_in_s=0.5, grace_period_in_s=2, context=_ctx(context))(h.clean_up_on_timeout)
    assert obj(str(marker), "cpu") is None
    assert obj.exit_status is CpuTimeoutException
    assert marker.read_text() == "CpuTimeoutException"


def test_memory_limit(context: str) -> None:
    obj = enforce_limits(mem_in_mb=100, context=_ctx(context))(h.hog)
    assert obj(500) is None
    assert obj.exit_status is MemorylimitException
    assert obj.exit_status is pynisher.MemorylimitException
    assert obj.exit_status in (TimeoutException, MemorylimitException)  # auto-sklearn's check


def test_memory_enough(context: str) -> None:
    skip_unless_resident_memory(context)
    obj = enforce_limits(mem_in_mb=300, context=_ctx(context))(h.hog)
    assert obj(20) == 20 * 2**20 and obj.exit_status == 0


def test_memory_error_raised_by_function(context: str) -> None:
    obj = enforce_limits(mem_in_mb=1000, context=_ctx(context))(h.raise_memory_error)
    assert obj() is None
    assert obj.exit_status is MemorylimitException


def test_os_error_is_subprocess_exception(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=10, context=_ctx(context))(h.raise_file_not_found)
    assert obj() is None
    assert obj.exit_status is SubprocessException
    assert obj.os_errno == errno.ENOENT


def test_sigquit_is_signal_exception(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=10, context=_ctx(context))(h.kill_self)
    assert obj(signal.SIGQUIT) is None
    assert obj.exit_status is SignalException


def test_other_exception_is_anything_exception(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=10, capture_output=True, context=_ctx(context))(h.raise_value_error)
    assert obj("nope") is None
    assert obj.exit_status is AnythingException
    assert obj.exitcode == 1  # what the 0.x child's uncaught exception exited with
    assert "ValueError: nope" in obj.stderr  # the traceback, where 0.x printed it


def test_killed_by_signal_is_anything_exception(context: str) -> None:
    obj = enforce_limits(wall_time_in_s=10, context=_ctx(context))(h.kill_self)
    assert obj(signal.SIGKILL) is None
    assert obj.exit_status is AnythingException
    assert obj.exitcode == -signal.SIGKILL


def test_exit_without_result_is_anything_exception(context: str) -> None:
    obj = enforce_limits(context=_ctx(context))(h.exit_with)
    assert obj(3) is None
    assert obj.exit_status is AnythingException
    assert obj.exitcode == 3


def test_unpicklable_return_is_anything_exception(context: str) -> None:
    obj = enforce_limits(context=_ctx(context))(h.return_lock)
    assert obj() is None
    assert obj.exit_status is AnythingException


def test_exception_that_cannot_travel_is_anything_exception(context: str) -> None:
    obj = enforce_limits(capture_output=True, context=_ctx(context))(h.raise_undecodable)
    assert obj() is None
    assert obj.exit_status is AnythingException
    assert "BadInitError" in obj.stderr


def test_num_processes(context: str) -> None:
    if engine_backend() == "none":
        pytest.skip("no cgroup backend here: the process cap is RLIMIT_NPROC, which root ignores")
    obj = enforce_limits(num_processes=3, wall_time_in_s=20, context=_ctx(context))(h.fork_sleepers)
    assert obj(10) is None
    assert obj.exit_status is SubprocessException
    assert obj.os_errno == errno.EAGAIN
    ok = enforce_limits(num_processes=10, wall_time_in_s=20, context=_ctx(context))(h.fork_sleepers)
    assert ok(3) == 3 and ok.exit_status == 0


def test_capture_output_at_fd_level(context: str) -> None:
    obj = enforce_limits(capture_output=True, wall_time_in_s=10, context=_ctx(context))(h.print_everywhere)
    assert obj(5) == 5
    for text in ("py-stdout", "fd-stdout", "from-child-process"):
        assert text in obj.stdout
    for text in ("py-stderr", "fd-stderr"):
        assert text in obj.stderr
    assert isinstance(obj.stdout, str) and isinstance(obj.stderr, str)


# ---- wrapper behaviour ------------------------------------------------------------------------


def test_attributes_reset_between_calls() -> None:
    obj = enforce_limits(wall_time_in_s=10)(h.raise_given)
    assert obj(FileNotFoundError(errno.ENOENT, "gone")) is None
    assert obj.exit_status is SubprocessException and obj.os_errno == errno.ENOENT
    obj.func = h.add
    assert obj(1, 2) == 3
    assert obj.exit_status == 0 and obj.os_errno is None and obj.result == 3


def test_decorator_keeps_function_identity() -> None:
    @enforce_limits(wall_time_in_s=5)
    def documented(x: int) -> int:
        """Doc."""
        return x

    assert documented.__name__ == "documented" and documented.__doc__ == "Doc."
    assert documented(4) == 4


def test_wrapping_a_callable_object_with_clashing_attributes() -> None:
    class Target:
        def __init__(self) -> None:
            self.func = "not the function"
            self.result = "not the result"

        def __call__(self, x: int) -> int:
            return x + 1

    obj = enforce_limits(wall_time_in_s=10)(Target())
    assert obj(1) == 2 and obj.result == 2 and obj.exit_status == 0


@pytest.mark.parametrize("method", pynisher.contexts)
def test_context_as_string(method: str) -> None:
    obj = enforce_limits(wall_time_in_s=10, context=method)(h.has_parent_marker)
    import json

    json._pynisher_test_marker = True  # type: ignore[attr-defined]
    try:
        assert obj() is (method == "fork")  # the start method really is the one asked for
    finally:
        del json._pynisher_test_marker  # type: ignore[attr-defined]


def test_float_limits_are_accepted() -> None:
    obj = enforce_limits(wall_time_in_s=0.3, mem_in_mb=200.5, cpu_time_in_s=2.5)(h.sleep_and_return)
    assert obj(30) is None and obj.exit_status is TimeoutException
    assert obj.wall_clock_time < 2


def test_child_processes_gone_after_wall_timeout(tmp_path: Path) -> None:
    from pyn_helpers import assert_gone

    pidfile = tmp_path / "pids"
    obj = enforce_limits(wall_time_in_s=0.5)(h.spawn_sleep_then)
    obj(str(pidfile), "hang")
    assert obj.exit_status is TimeoutException
    for pid in map(int, pidfile.read_text().split()):
        assert_gone(pid)  # 0.6 left the grandchild running


# ---- logger -----------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logger():
    log = logging.getLogger("pynisher-test-v0")
    log.setLevel(logging.DEBUG)
    handler = ListHandler()
    log.addHandler(handler)
    log.messages = handler.messages  # type: ignore[attr-defined]
    yield log
    log.removeHandler(handler)


def test_logger_messages_success(logger) -> None:
    limits = enforce_limits(mem_in_mb=100, cpu_time_in_s=2, wall_time_in_s=3, num_processes=4, logger=logger)
    assert logger.messages == [
        "Restricting your function to 100 mb memory.",
        "Restricting your function to 2 seconds cpu time.",
        "Restricting your function to 3 seconds wall time.",
        "Restricting your function to 4 threads/processes.",
        "Allowing a grace period of 0 seconds.",
    ]
    del logger.messages[:]
    assert limits(h.add)(1, b=2) == 3
    assert logger.messages == [
        "Function called with argument: (1,), {'b': 2}",
        "function returned properly: (3, 0)",
        "return value: (3, 0)",
    ]


def test_logger_messages_failures(logger) -> None:
    obj = enforce_limits(grace_period_in_s=1, logger=logger)(h.kill_self)
    assert "Allowing a grace period of 1 seconds." in logger.messages
    obj(signal.SIGKILL)
    assert logger.messages[-1] == (
        "Your function call closed the pipe prematurely -> Subprocess probably got an uncatchable signal.")
    obj = enforce_limits(logger=logger)(h.raise_file_not_found)
    obj()
    assert logger.messages[-1] == f"return value: (None, {SubprocessException!r}, {errno.ENOENT})"
    # auto-sklearn's log parser counts these lines:
    assert re.search(r"return value:\s+", logger.messages[-1])


def test_default_logger_is_the_pynisher_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pynisher"):
        enforce_limits(wall_time_in_s=7)(h.add)(1, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "pynisher"]
    assert "Restricting your function to 7 seconds wall time." in messages
    assert "return value: (2, 0)" in messages


class CountingRepr:
    reprs = 0

    def __repr__(self) -> str:
        CountingRepr.reprs += 1
        return "CountingRepr()"


def test_arguments_not_formatted_when_debug_is_off(logger) -> None:
    big = CountingRepr()
    logger.setLevel(logging.INFO)
    CountingRepr.reprs = 0
    enforce_limits(wall_time_in_s=10, logger=logger, context="fork")(lambda x: x)(big)
    assert CountingRepr.reprs == 0 and logger.messages == []
    logger.setLevel(logging.DEBUG)
    enforce_limits(wall_time_in_s=10, logger=logger, context="fork")(lambda x: x)(big)
    assert CountingRepr.reprs > 0
    assert "Function called with argument: (CountingRepr(),), {}" in logger.messages


def test_mock_logger_sees_the_callers_messages_of_0x() -> None:
    # As upstream's test_liblinear_svc: a mock logger (its child-side copy was invisible in 0.x)
    # gets exactly the caller's messages when the child is killed past its grace period.
    from unittest import mock

    log = mock.Mock()
    obj = enforce_limits(cpu_time_in_s=0.5, grace_period_in_s=0.5, logger=log)(h.ignore_sigxcpu_and_burn)
    assert obj() is None
    assert obj.exit_status is CpuTimeoutException
    assert obj.exitcode == -signal.SIGKILL
    assert [c.args[0] for c in log.debug.call_args_list] == [
        "Restricting your function to 0.5 seconds cpu time.",
        "Allowing a grace period of 0.5 seconds.",
        "Function called with argument: (), {}",
        "Your function call closed the pipe prematurely -> Subprocess probably got an uncatchable signal.",
    ]
    log = mock.Mock()
    enforce_limits(wall_time_in_s=0.3, logger=log)(h.sleep_and_return)(30)
    # A wall timeout ended in 0.x's poll, without a message.
    assert [c.args[0] for c in log.debug.call_args_list][-1] == "Function called with argument: (30,), {}"


def test_uncaught_traceback_goes_to_stderr_without_capture(capfd) -> None:
    obj = enforce_limits(wall_time_in_s=10)(h.raise_value_error)
    obj("visible")
    assert obj.exit_status is AnythingException
    assert "ValueError: visible" in capfd.readouterr().err


def test_repeated_calls_of_an_enforce_limits_function_prepare_its_limits_once(prepare_calls) -> None:
    made = prepare_calls
    limited = enforce_limits(wall_time_in_s=10, mem_in_mb=1024)(pow)
    assert [limited(2, n) for n in range(4)] == [1, 2, 4, 8]
    assert limited.exit_status == 0
    assert len(made) == 1
