"""The execution layer: run one function call in a child process under limits.

`run_limited` is the only entry point the API modules use; its contract is
``docs/python-internal-interface.md``. It chooses how the child starts (``fork``, ``spawn``,
``forkserver``), hands the limits to the engine (`pynisher._core`), and turns the engine's outcome
into a `CallResult`. It decides nothing about which exception a user sees.
"""

from __future__ import annotations

import marshal
import os
import signal
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Optional

from pynisher import _core, _worker
from pynisher._calls import (
    call_settings,
    decode_result,
    encode_call_or_raise,
    interpreter,
    library_error,
)
from pynisher._guarantees import BACKEND_ENV, getenv, resolve_backend

CONTEXTS = ("fork", "spawn", "forkserver")
#: What an API object passes as ``on_start`` to keep its calls' pids: the fork context writes
#: it without calling into Python (see `_core.ChildSlot`); the others call it.
ChildSlot = _core.ChildSlot
_MEMORY_KINDS = tuple(_core.MEMORY_KINDS)


@dataclass(frozen=True)
class CallResult:
    """How one call ended and what it used (see ``docs/python-internal-interface.md``).

    Two halves: ``outcome``, the engine's outcome exactly as the binding builds it (its one
    definition is `_core._RawOutcome`; every key reads as an attribute: ``result.status``,
    ``result.wall_time``, ``result.weaknesses``, ...), and what the function itself did, decoded
    here from the child's result frame (``returned``, ``value``, ``exception``, ``traceback``).
    A field the engine adds reaches Python through the binding alone.
    """

    outcome: _core._RawOutcome
    context: str = "fork"
    returned: bool = False
    #: The function's return value (the outcome's ``value`` is its encoded form).
    value: Any = None
    exception: Optional[BaseException] = None
    traceback: str = ""

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the outcome's keys.
        if name != "outcome":
            outcome = self.__dict__.get("outcome")
            if outcome is not None and name in outcome:
                return outcome[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def cpu_time(self) -> float:
        """User + system CPU seconds of the call."""
        return self.cpu_user + self.cpu_system


def _backends_here() -> str:
    return ", ".join(_core.available_backends())


def _limits_dict(
    *,
    wall_time: Optional[float],
    cpu_time: Optional[float],
    memory: Optional[int],
    memory_kind: str,
    max_processes: Optional[int],
    grace_period: float,
    wall_signal: Optional[int],
    cpu_signal: Optional[int],
    capture_output: bool,
    output_limit: Optional[int],
    backend: Optional[str],
    strict: bool = False,
    keep_descendants: bool = False,
) -> Dict[str, Any]:
    if memory_kind not in _MEMORY_KINDS:
        raise ValueError(f"invalid value for memory_kind: {memory_kind!r} (one of {_MEMORY_KINDS})")
    backend = resolve_backend(backend)
    if grace_period is None:
        grace_period = 0.0
    return {
        "wall_time": wall_time,
        "cpu_time": cpu_time,
        "memory": memory,
        "memory_kind": memory_kind,
        "max_processes": max_processes,
        "grace_period": grace_period,
        "wall_signal": wall_signal,
        "cpu_signal": cpu_signal,
        "capture_output": bool(capture_output),
        "output_limit": output_limit,
        "backend": backend,
        "strict": bool(strict),
        "keep_descendants": bool(keep_descendants),
    }


def _soft_signals(limits: Dict[str, Any]) -> Dict[str, Optional[int]]:
    """The signals the child should turn into timeout exceptions: only with a grace period
    (without one the engine kills at once and sends no soft signal).

    Sets the function defaults (SIGALRM, SIGXCPU) in ``limits`` too: the engine would default to
    SIGTERM for the spawn context, which runs a program.
    """
    limits["wall_signal"] = int(limits["wall_signal"] or signal.SIGALRM)
    limits["cpu_signal"] = int(limits["cpu_signal"] or signal.SIGXCPU)
    if not limits["grace_period"]:
        return {"wall_signal": None, "cpu_signal": None}
    return {
        "wall_signal": limits["wall_signal"] if limits["wall_time"] else None,
        "cpu_signal": limits["cpu_signal"] if limits["cpu_time"] else None,
    }


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT: cancel every call in flight, in every thread (each ends with its processes gone
    and raises KeyboardInterrupt), then raise KeyboardInterrupt here as Python's default does."""
    cancel_all_calls()
    signal.default_int_handler(signum, frame)


def cancel_all_calls() -> None:
    """Cancels every call of this process in flight now, in any thread and context."""
    _core.cancel_all()
    from pynisher import _forkserver

    _forkserver.cancel_in_flight()


def _install_interrupt_handler() -> None:
    # Only over Python's own default (never over a handler the program chose), and only from the
    # main thread (the only one that may set handlers).
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
    except (ValueError, OSError):
        pass


_install_interrupt_handler()


def _fork_settings(limits: Dict[str, Any], soft: Dict[str, Optional[int]]) -> tuple:
    """`_worker.execute`'s arguments after the call's own, for a fork-context child."""
    return (
        soft["wall_signal"],
        soft["cpu_signal"],
        limits["capture_output"],
        True,
        not limits.get("keep_descendants"),
    )


# Looked up once: the fork path's per-call code reads module globals only (each module or
# attribute reached per call is a page the forked caller touches, ~1 µs of copy-on-write each).
_execute_in_child = _worker.execute
_run_fork_core = _core.run_fork
_SCALAR = _worker.SCALAR
_unmarshal = marshal.loads


def _spawn_argv() -> list:
    # Import the worker as a top-level module from the package's directory, not as
    # `pynisher._worker`: importing the package would run `pynisher/__init__.py` (the whole API)
    # in every spawned child for nothing. The worker needs only the standard library; the caller's
    # sys.path replaces the child's before the function is unpickled. The package's directory
    # leaves sys.path at once: its module `pynisher.py` would shadow the package itself.
    bootstrap = "import sys; sys.path.insert(0, {!r}); import _worker; del sys.path[0]; _worker.main()".format(
        os.path.dirname(os.path.abspath(_worker.__file__))
    )
    return [interpreter("spawn"), "-c", bootstrap]


class _FdHandOver:
    """Hands the descriptors of multiprocessing arguments (a Queue's pipes) to a spawned call:
    its child connects to this abstract unix socket (address in its settings) and receives them
    with SCM_RIGHTS. Only the call's own process gets them (checked with SO_PEERCRED)."""

    def __init__(self, fds: list) -> None:
        import socket
        import threading

        self.fds = fds
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(b"\0pynisher-fds-" + os.urandom(12).hex().encode())
        self.sock.listen(4)
        self.address: bytes = self.sock.getsockname()
        self.pid: Optional[int] = None
        self.started = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def expect(self, pid: int) -> None:
        self.pid = pid
        self.started.set()

    def _serve(self) -> None:
        import socket
        import struct

        try:
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                    peer = struct.unpack("3i", creds)[0]
                    if self.started.wait(10) and peer == self.pid:
                        socket.send_fds(conn, [b"F"], self.fds)
                        return
        except OSError:
            return  # closed: the call is over

    def close(self) -> None:
        self.sock.close()


def _run_spawn(func, args, kwargs, limits, soft, user_on_start=None) -> _core._RawOutcome:
    import pickle

    mp_loaded = "multiprocessing.context" in sys.modules
    if mp_loaded:
        blob, fds = encode_call_or_raise(func, args, kwargs, "spawn", with_fds=True)
    else:
        blob, fds = encode_call_or_raise(func, args, kwargs, "spawn"), []
    settings = call_settings(soft, limits)
    hand_over = _FdHandOver(fds) if fds else None
    if hand_over is not None:
        settings["fd_address"] = hand_over.address
    request = _worker.frame_request(pickle.dumps((settings, blob), protocol=pickle.HIGHEST_PROTOCOL))
    try:

        def on_start(pid: int) -> None:
            if user_on_start is not None:
                user_on_start(pid)
            if hand_over is not None:
                hand_over.expect(pid)

        return _core.run_command(_spawn_argv(), limits, stdin=request, on_start=on_start)
    finally:
        if hand_over is not None:
            hand_over.close()


def _result_from(raw: _core._RawOutcome, context: str) -> CallResult:
    data = raw["value"]
    returned, value, exception, tb = False, None, None, ""
    if data is not None:
        if data[:1] == _SCALAR:
            # `decode_result`'s common case (a returned scalar), inline: one function less.
            try:
                returned, value = True, _unmarshal(data[1:])
            except Exception:
                returned, value, exception, tb = decode_result(data)
        else:
            returned, value, exception, tb = decode_result(data)
    # The outcome's keys as plain attributes as well (the fields win): reading one then skips
    # `__getattr__`, which is reached only after an AttributeError was built. Made as one copy of
    # the outcome (sized for the fields too), not by the dataclass's __init__ and then a merge: on
    # the fork path every object made or freed per call costs page faults.
    fields: Dict[str, Any] = dict(raw)
    fields["outcome"] = raw
    fields["context"] = context
    fields["returned"] = returned
    fields["value"] = value
    fields["exception"] = exception
    fields["traceback"] = tb
    result = object.__new__(CallResult)
    object.__setattr__(result, "__dict__", fields)
    return result


class Prepared:
    """A call's limits, checked and turned into what the engine takes, once: `prepare` makes
    one, `run_prepared` runs any number of calls with it (an API object that calls the same
    function under the same limits many times prepares once). Read-only."""

    __slots__ = ("context", "limits", "soft", "fork_settings", "engine_limits")

    def __init__(self, context: str, limits: Dict[str, Any], soft: Dict[str, Optional[int]]) -> None:
        self.context = context
        self.limits = limits
        self.soft = soft
        self.fork_settings = _fork_settings(limits, soft)
        #: The limits in the engine's form, for the fork context (not read from the dict again
        #: on each call, in a caller that has just forked).
        self.engine_limits = _core.PreparedLimits(limits)


def prepare(
    *,
    wall_time: Optional[float] = None,
    cpu_time: Optional[float] = None,
    memory: Optional[int] = None,
    memory_kind: str = "auto",
    max_processes: Optional[int] = None,
    grace_period: float = 0.0,
    wall_signal: Optional[int] = None,
    cpu_signal: Optional[int] = None,
    capture_output: bool = False,
    output_limit: Optional[int] = None,
    context: str = "fork",
    backend: Optional[str] = None,
    strict: bool = False,
    keep_descendants: bool = False,
) -> Prepared:
    """Checks the limits of `run_limited` (same parameters, same `ValueError`) without running
    anything. ``backend`` None is resolved now (``$PYNISHER_BACKEND`` as it is now)."""
    if context not in CONTEXTS:
        raise ValueError(f"invalid value for context: {context!r} (one of {CONTEXTS})")
    limits = _limits_dict(
        wall_time=wall_time,
        cpu_time=cpu_time,
        memory=memory,
        memory_kind=memory_kind,
        max_processes=max_processes,
        grace_period=grace_period,
        wall_signal=wall_signal,
        cpu_signal=cpu_signal,
        capture_output=capture_output,
        output_limit=output_limit,
        backend=backend,
        strict=strict,
        keep_descendants=keep_descendants,
    )
    _core.check_limits(limits)
    return Prepared(context, limits, _soft_signals(limits))


def run_limited(
    func: Callable[..., Any],
    args: tuple = (),
    kwargs: Optional[dict] = None,
    *,
    wall_time: Optional[float] = None,
    cpu_time: Optional[float] = None,
    memory: Optional[int] = None,
    memory_kind: str = "auto",
    max_processes: Optional[int] = None,
    grace_period: float = 0.0,
    wall_signal: Optional[int] = None,
    cpu_signal: Optional[int] = None,
    capture_output: bool = False,
    output_limit: Optional[int] = None,
    context: str = "fork",
    backend: Optional[str] = None,
    strict: bool = False,
    keep_descendants: bool = False,
    on_start: Optional[Callable[[int], None]] = None,
) -> CallResult:
    """Runs ``func(*args, **kwargs)`` in a child process under the given limits.

    Raises `ValueError` (naming the parameter) for invalid values, `KeyboardInterrupt` after the
    call's processes are killed and reaped when Ctrl-C arrives during the call,
    `pynisher.exceptions.NotEnforceableError` when ``strict`` and the backend cannot fully enforce
    the limits (nothing runs), and `pynisher.exceptions.PynisherException` for the library's own
    failures. Never leaves a process of the call alive (with ``keep_descendants``: none but the
    function's own descendants, and only when its process ended by itself). ``backend`` None
    means ``$PYNISHER_BACKEND`` or "auto". ``on_start(pid)`` is called once the call's child
    exists, before it is waited for.
    """
    if context not in CONTEXTS:
        raise ValueError(f"invalid value for context: {context!r} (one of {CONTEXTS})")
    _refuse_while_preparing_main()
    settings = (
        wall_time,
        cpu_time,
        memory,
        memory_kind,
        max_processes,
        grace_period,
        wall_signal,
        cpu_signal,
        capture_output,
        output_limit,
        context,
        backend,
        strict,
        keep_descendants,
        getenv(BACKEND_ENV) if backend is None else None,
    )
    # Types too: 1 == 1.0 == True, but prepare may accept one and refuse another.
    key = (settings, tuple(map(type, settings)))
    try:
        prepared, kept = _prepared_lately.get(key), True
    except TypeError:  # an unhashable value: prepare says what is wrong with it, or runs it
        prepared, kept = None, False
    if prepared is None:
        prepared = prepare(
            wall_time=wall_time,
            cpu_time=cpu_time,
            memory=memory,
            memory_kind=memory_kind,
            max_processes=max_processes,
            grace_period=grace_period,
            wall_signal=wall_signal,
            cpu_signal=cpu_signal,
            capture_output=capture_output,
            output_limit=output_limit,
            context=context,
            backend=backend,
            strict=strict,
            keep_descendants=keep_descendants,
        )
        if kept:
            if len(_prepared_lately) >= _PREPARED_KEPT:
                _prepared_lately.clear()  # atomic, unlike evicting one while threads add
            _prepared_lately[key] = prepared
    return _execute(prepared, func, args, {} if kwargs is None else kwargs, on_start)


#: How many sets of limits `run_limited` keeps prepared (then it starts over).
_PREPARED_KEPT = 32
#: `run_limited`'s recent limits, prepared (`Prepared` is read-only, so calls can share one): a
#: caller that repeats the same limits (the 0.x API's `enforce_limits` object, a loop) checks them
#: once, as `Pynisher` does. Keyed by every keyword argument with its type, and by
#: ``$PYNISHER_BACKEND`` when ``backend`` is None (prepare resolves it).
_prepared_lately: Dict[tuple, Prepared] = {}


def run_prepared(
    prepared: Prepared,
    func: Callable[..., Any],
    args: tuple = (),
    kwargs: Optional[dict] = None,
    on_start: Optional[Callable[[int], None]] = None,
) -> CallResult:
    """`run_limited` with limits checked by `prepare`: the same call, the same outcome and
    errors."""
    _refuse_while_preparing_main()
    return _execute(prepared, func, args, {} if kwargs is None else kwargs, on_start)


def _refuse_while_preparing_main() -> None:
    if getenv(_worker.PREPARING_MAIN_ENV):
        # As multiprocessing refuses to start a process while a child imports the main script.
        raise RuntimeError(
            "a pynisher call was made while a spawn/forkserver child ran the caller's main script "
            "as __mp_main__; guard the script's top-level code with `if __name__ == \"__main__\":`"
        )


def _execute(prepared: Prepared, func, args, kwargs, on_start) -> CallResult:
    context = prepared.context
    try:
        if context == "fork":
            # A forked child inherits unflushed buffers and would print them a second time
            # (`_worker.flush_std_streams`, inline: one function less on this path).
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None:
                        stream.flush()
                except Exception:
                    pass
            raw = _run_fork_core(
                partial(_execute_in_child, func, args, kwargs, *prepared.fork_settings),
                prepared.engine_limits,
                on_start=on_start,
            )
        elif context == "spawn":
            raw = _run_spawn(func, args, kwargs, prepared.limits, prepared.soft, on_start)
        else:
            from pynisher import _forkserver

            raw = _forkserver.run(func, args, kwargs, prepared.limits, prepared.soft, on_start)
    except _core.NotEnforceableError as err:
        from pynisher.exceptions import NotEnforceableError

        message, names = err.args
        refused = NotEnforceableError(
            f"pynisher refused the call (strict=True): {message}; the backends that work here, "
            f"strongest first: {_backends_here()}; pass strict=False to accept weaker guarantees"
        )
        refused.weaknesses = tuple(names)
        raise refused from err
    except OSError as err:
        # The library's own failure (descriptors exhausted, the interpreter or its forkserver
        # could not be started), never the function's: say so, with the cause attached.
        raise library_error(
            f"pynisher could not run the call ({context!r} start method): {type(err).__name__}: {err}", err
        ) from err
    except _core.EngineError as err:
        hint = ""
        if "is unavailable" in str(err):
            hint = f"; the backends that work here, strongest first: {_backends_here()}"
        raise library_error(f"pynisher could not run the call: {err}{hint}", err) from err
    return _result_from(raw, context)
