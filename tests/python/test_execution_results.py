"""Execution layer (`pynisher._run.run_limited`): what comes back from the child, per context.

The target functions live in this module so that spawn and forkserver children import them by
reference, as they would a user's module; lambdas and closures travel by value (cloudpickle).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from pynisher._run import CallResult, run_limited

CONTEXTS = ["fork", "spawn", "forkserver"]


def add(a, b, *, c=0):
    return a + b + c


def raise_called_process_error():
    raise subprocess.CalledProcessError(3, ["solver", "--fast"], output=b"out", stderr=b"err")


class NeedsTwoArguments(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def raise_exception_that_cannot_be_unpickled():
    raise NeedsTwoArguments(7, "broken constructor for pickle")


class HoldsALock(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_exception_holding_a_lock():
    raise HoldsALock("cannot travel")


def return_a_lock():
    return threading.Lock()


def write_at_fd_level():
    os.write(1, b"c-level stdout\n")
    os.write(2, b"c-level stderr\n")
    print("python-level stdout", flush=False)
    return "done"


def exit_without_result():
    os._exit(3)


def kill_self_with_sigsegv():
    os.kill(os.getpid(), signal.SIGSEGV)


def current_sys_path_head():
    return sys.path[:3]


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_returns_the_function_value(ctx):
    result = run_limited(add, (2, 3), {"c": 4}, wall_time=30, context=ctx)
    assert isinstance(result, CallResult)
    assert result.status == "completed"
    assert result.returned is True
    assert result.value == 9
    assert result.exception is None
    assert result.exit_code == 0
    assert result.pid > 0
    assert result.context == ctx


class Count(int):
    """An int subclass: must come back as itself, not as a plain int."""


def identity(value):
    return value


SCALARS = [None, True, False, 0, -1, 2**100, 1.5, float("inf"), -0.0, 3 + 4j, "", "é\udc80", b"\x00\xff"]


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_scalar_return_values_come_back_with_their_exact_type_and_value(ctx):
    # Scalars travel marshalled, everything else pickled: both must give back what was returned.
    for value in SCALARS + [Count(5), (1, "a"), [None], {"k": 1.5}]:
        result = run_limited(identity, (value,), {}, wall_time=30, context=ctx)
        assert result.returned, (value, result)
        assert type(result.value) is type(value) and repr(result.value) == repr(value), (ctx, value)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_lambdas_and_closures_run_in_every_context(ctx):
    offset = 40

    def closure(x):
        return x + offset

    assert run_limited(closure, (2,), {}, context=ctx).value == 42
    assert run_limited(lambda: "lambda", (), {}, context=ctx).value == "lambda"


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_multi_argument_exception_round_trips_with_type_args_and_child_traceback(ctx):
    result = run_limited(raise_called_process_error, (), {}, context=ctx)
    assert result.status == "completed"
    assert result.returned is False
    err = result.exception
    assert type(err) is subprocess.CalledProcessError
    assert err.returncode == 3
    assert err.cmd == ["solver", "--fast"]
    assert err.output == b"out"
    assert err.stderr == b"err"
    assert "raise_called_process_error" in result.traceback
    assert "CalledProcessError" in result.traceback


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_exception_that_cannot_be_rebuilt_is_described_with_its_type_and_traceback(ctx):
    from pynisher.exceptions import PynisherException

    for func, type_name in [
        (raise_exception_that_cannot_be_unpickled, "NeedsTwoArguments"),
        (raise_exception_holding_a_lock, "HoldsALock"),
    ]:
        result = run_limited(func, (), {}, context=ctx)
        assert result.status == "completed"
        assert isinstance(result.exception, PynisherException), result.exception
        assert type_name in str(result.exception)
        assert func.__name__ in result.traceback


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_unpicklable_return_value_gives_a_clear_error_not_a_crash(ctx):
    from pynisher.exceptions import PynisherException

    result = run_limited(return_a_lock, (), {}, context=ctx)
    assert result.status == "completed"
    assert result.returned is False
    assert isinstance(result.exception, PynisherException)
    message = str(result.exception)
    assert "could not be pickled" in message
    assert "lock" in message.lower()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_keyboard_interrupt_raised_by_the_function_is_reported_not_raised_here(ctx):
    result = run_limited(raise_keyboard_interrupt, (), {}, context=ctx)
    assert result.status == "completed"
    assert isinstance(result.exception, KeyboardInterrupt)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_capture_output_gets_file_descriptor_level_writes(ctx):
    result = run_limited(write_at_fd_level, (), {}, capture_output=True, context=ctx)
    assert result.status == "completed"
    assert result.value == "done"
    assert b"c-level stdout\n" in result.stdout
    assert b"python-level stdout\n" in result.stdout
    assert b"c-level stderr\n" in result.stderr
    assert b"c-level stderr" not in result.stdout


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_without_capture_the_output_fields_are_none(ctx):
    result = run_limited(add, (1, 1), {}, context=ctx)
    assert result.stdout is None and result.stderr is None


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_exit_without_result_is_no_result_with_the_exit_code(ctx):
    result = run_limited(exit_without_result, (), {}, context=ctx)
    assert result.status == "no_result"
    assert result.exit_code == 3
    assert result.returned is False and result.exception is None


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_child_killed_by_a_signal_is_signaled_with_the_signal(ctx):
    result = run_limited(kill_self_with_sigsegv, (), {}, context=ctx)
    assert result.status == "signaled"
    assert result.signal == signal.SIGSEGV


@pytest.mark.parametrize("ctx", ["spawn", "forkserver"])
def test_fresh_interpreters_see_the_callers_sys_path(ctx, tmp_path):
    marker = str(tmp_path / "on-the-path")
    sys.path.insert(0, marker)
    try:
        result = run_limited(current_sys_path_head, (), {}, context=ctx)
    finally:
        sys.path.remove(marker)
    assert result.value[0] == marker


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_calls_from_a_non_main_thread_work(ctx):
    results = []
    thread = threading.Thread(
        target=lambda: results.append(run_limited(add, (20, 22), {}, wall_time=30, context=ctx))
    )
    thread.start()
    thread.join(60)
    assert results and results[0].value == 42


@pytest.mark.parametrize(
    "limits, param",
    [
        ({"wall_time": 0}, "wall_time"),
        ({"wall_time": -1.0}, "wall_time"),
        ({"cpu_time": float("nan")}, "cpu_time"),
        ({"memory": 0}, "memory"),
        ({"memory": -5}, "memory"),
        ({"max_processes": 0}, "max_processes"),
        ({"grace_period": -1}, "grace_period"),
        ({"wall_signal": signal.SIGKILL, "grace_period": 1}, "wall_signal"),
        ({"context": "thread"}, "context"),
        ({"memory_kind": "virtual"}, "memory_kind"),
        ({"backend": "docker"}, "backend"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_parameter(limits, param):
    with pytest.raises(ValueError, match=param):
        run_limited(add, (1, 2), {}, **limits)


@pytest.mark.parametrize("ctx", ["spawn", "forkserver"])
def test_unpicklable_function_raises_a_pynisher_exception_before_starting(ctx):
    from pynisher.exceptions import PynisherException

    lock = threading.Lock()
    with pytest.raises(PynisherException, match="pickle"):
        run_limited(lambda: lock, (), {}, context=ctx)


def put_on_queue(queue):
    queue.put("from the child")
    return "returned too"


def test_fork_child_delivers_what_it_put_on_a_multiprocessing_queue_argument():
    import multiprocessing

    queue = multiprocessing.get_context("fork").Queue()
    result = run_limited(put_on_queue, (queue,), {}, wall_time=30, context="fork")
    assert result.status == "completed"
    assert result.value == "returned too"
    assert queue.get(timeout=10) == "from the child"


@pytest.mark.parametrize("ctx", ["spawn", "forkserver"])
@pytest.mark.parametrize("queue_context", ["forkserver", "spawn"])
def test_fresh_interpreter_child_delivers_what_it_put_on_a_multiprocessing_queue_argument(
    ctx, queue_context
):
    import multiprocessing

    queue = multiprocessing.get_context(queue_context).Queue()
    result = run_limited(put_on_queue, (queue,), {}, wall_time=30, context=ctx)
    assert result.status == "completed", result
    assert result.value == "returned too"
    assert queue.get(timeout=10) == "from the child"


@pytest.mark.parametrize("ctx", ["spawn", "forkserver"])
def test_fork_context_queue_cannot_go_to_a_fresh_interpreter_and_says_why(ctx):
    import multiprocessing

    from pynisher.exceptions import PynisherException

    queue = multiprocessing.get_context("fork").Queue()
    with pytest.raises(PynisherException, match="fork context"):
        run_limited(put_on_queue, (queue,), {}, context=ctx)
