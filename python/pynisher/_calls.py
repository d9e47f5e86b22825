"""What every way of running a call needs, below both `_run` (the execution layer) and
`_forkserver` (which `_run` uses): the library's own error, the call encoded for another
interpreter with its settings, the interpreter to start, and this process's engine guard
(installed once, at import: see "The guard" in docs/architecture.md)."""

from __future__ import annotations

import marshal
import os
import pickle
import sys
from typing import Any, Dict, Optional, Tuple

from pynisher import _core, _encode, _worker, exceptions


def library_error(message: str, cause: Optional[BaseException] = None) -> BaseException:
    err = exceptions.PynisherException(message)
    err.__cause__ = cause
    return err


def interpreter(context: str) -> str:
    """``sys.executable``, which the spawn and forkserver start methods run; a clear
    PynisherException when this interpreter does not know its own path (embedded interpreters)."""
    if not sys.executable:
        raise library_error(
            f"the {context!r} start method starts a Python interpreter, but sys.executable is empty "
            "here (an embedded interpreter?); set sys.executable or use context='fork'"
        )
    return sys.executable


def call_settings(soft: Dict[str, Optional[int]], limits: Dict[str, Any]) -> Dict[str, Any]:
    """What a fresh or foreign interpreter needs to find and run the call like the caller would."""
    return {
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "wall_signal": soft["wall_signal"],
        "cpu_signal": soft["cpu_signal"],
        "end_descendants": not limits.get("keep_descendants"),
    }


def encode_call_or_raise(func, args, kwargs, context: str, with_fds: bool = False) -> Any:
    """The call pickled for another interpreter (with the descriptors of multiprocessing objects
    when ``with_fds``: then a (bytes, fds) pair); unpicklable calls raise PynisherException."""
    try:
        if with_fds:
            return _encode.encode_call_with_fds(func, args, kwargs)
        return _encode.encode_call(func, args, kwargs)
    except Exception as err:
        raise library_error(
            f"Could not pickle the function or its arguments for the {context!r} context "
            f"({type(err).__name__}: {err}); use context='fork' or make them picklable",
            err,
        ) from err


def _guard_program() -> tuple:
    """The program that guards this process's calls (see "The guard" in docs/architecture.md):
    the ``pynisher`` binary shipped in the package when it is there, else this interpreter in
    isolated mode (``-I -S``) loading nothing but ``pynisher._core``."""
    package = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(package, "_bin", "pynisher")
    if os.access(binary, os.X_OK):
        return binary, []
    core = os.path.abspath(_core.__file__ or "")
    bootstrap = (
        "import importlib.util as u; s = u.spec_from_file_location('pynisher._core', {!r}); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); m._guard_main()"
    ).format(core)
    return sys.executable, ["-I", "-S", "-c", bootstrap]


def install_guard() -> None:
    if sys.executable:
        program, args = _guard_program()
        _core.install_guard(program, args)


def decode_result(data: bytes) -> Tuple[bool, Any, Optional[BaseException], str]:
    """The caller's side of the child's result: ``(returned, value, exception, traceback_text)``.

    Failures to decode, unpicklable return values and unpicklable exceptions come back as a
    `pynisher.exceptions.PynisherException` in ``exception`` that says what happened.
    """
    try:
        if data[:1] == _worker.SCALAR:
            return True, marshal.loads(memoryview(data)[1:]), None, ""
        message = pickle.loads(data)
    except BaseException as err:
        return (
            False,
            None,
            exceptions.PynisherException(
                f"The result of the call could not be unpickled in the caller: {_worker._describe(err)}"
            ),
            "",
        )
    tag = message[0]
    if tag == "returned":
        return True, message[1], None, ""
    if tag == "raised":
        return False, None, message[1], message[2]
    if tag == "unpicklable_return":
        _, type_name, reason = message
        return (
            False,
            None,
            exceptions.PynisherException(
                f"The function returned a value of type {type_name} that could not be pickled "
                f"to send it back: {reason}"
            ),
            "",
        )
    if tag == "unpicklable_exception":
        _, type_name, text, tb, reason = message
        return (
            False,
            None,
            exceptions.PynisherException(
                f"The function raised {type_name}: {text} (the exception itself could not be "
                f"sent back: {reason})"
            ),
            tb,
        )
    return (
        False,
        None,
        exceptions.PynisherException(f"Unknown result message {tag!r} from the child"),
        "",
    )


install_guard()
_worker._children_check = _core.has_children
