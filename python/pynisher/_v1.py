"""The pynisher 1.x API: `Pynisher` / `limit`, `restricted`, `EMPTY`.

Behaves like pynisher 1.0.10 except for these deliberate, documented deviations:

* Times may be floats (``wall_time=0.5``) down to `MIN_SECONDS`; upstream required whole seconds
  ``>= 1`` (bare floats only half-worked there). ``(value, unit)`` time tuples are converted
  exactly instead of being rounded to whole seconds.
* Memory limits use the engine's ``"auto"`` kind: the *resident* memory of the whole call, via a
  cgroup where one is available, else the address-space limit (``RLIMIT_AS``) that upstream always
  used. A forked child is therefore no longer charged for the parent's mappings.
* Wall-clock timeouts are raised within milliseconds of the limit (upstream: about 5 s late), and
  the call's whole process tree is gone when the call returns, on every path.
* ``wrap_errors``: class entries match with ``isinstance`` (upstream matched only names), names
  match any class in the exception's MRO, ``(ExcType, errno)`` 2-tuples work, the ``"wall_time"``
  key works. When a memory limit is set, a ``MemoryError`` in the function becomes
  `MemoryLimitException` even with ``wrap_errors=True`` (1.0.10 measured a
  ``PynisherException`` there, which made SMAC3 report an out-of-memory trial as a crash).
* A child exception is re-raised with its type and args intact; its traceback text is attached as
  ``__cause__`` (an instance of the same type built from the text when that type accepts it, else a
  `pynisher.exceptions.RemoteTraceback`). Upstream broke on multi-argument exceptions.
* ``restricted`` honours every argument, including ``context``, and works with ``"spawn"``
  (functions travel with cloudpickle).
* ``terminate_child_processes=False`` leaves the function's descendants running after a call
  whose function ended by itself (returned or raised); a limit or Ctrl-C still kills the whole
  tree. ``forceful_keyboard_interrupt=False`` is accepted for compatibility; Ctrl-C always kills
  the call's tree.
* No signal handler is ever installed in the calling process (1.0.10 replaced the caller's
  SIGTERM handler on every call).
* ``warnings`` are emitted with `warnings.warn` (category `PynisherWarning`) in the caller instead
  of being printed on the child's stderr.
"""

from __future__ import annotations

import signal
import sys
import warnings as _warnings
from functools import wraps
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Literal,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from pynisher import _contexts
from pynisher._guarantees import BACKEND_ENV, getenv, resolve_backend, warn_weaknesses
from pynisher._v1_arguments import MIN_SECONDS, MemoryArg, TimeArg, _memory_bytes, _seconds
from pynisher._wrap_errors import _normalise_wrap_errors, _WrapErrors
from pynisher.exceptions import (
    CpuTimeoutException,
    MemoryLimitException,
    PynisherException,
    PynisherWarning,
    RemoteTraceback,
    TimeoutException,
    WallTimeoutException,
)
from pynisher.support import (
    supports,
    supports_cputime,
    supports_memory,
    supports_walltime,
)
from pynisher.util import callstring

if sys.version_info >= (3, 10):
    from typing import ParamSpec

    P = ParamSpec("P")
else:  # pragma: no cover - typing nicety only
    P = TypeVar("P")

__all__ = ["EMPTY", "Pynisher", "limit", "restricted", "MIN_SECONDS"]

T = TypeVar("T")

#: Below this memory limit a fresh interpreter can hardly run; `warnings=True` says so.
_LOW_MEMORY_BYTES = 32 * 2**20

WrapErrors = Union[bool, List[Any], Tuple[Any, ...], Dict[str, Any]]


class _EMPTY:
    """Type of `EMPTY`, the value a call returns with ``raises=False`` when it has no result."""

    _instance: Optional["_EMPTY"] = None

    def __new__(cls) -> "_EMPTY":
        # A singleton, so `result is EMPTY` holds even for copies.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EMPTY"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        # Pickles as a reference to the module-level name: identity survives a round-trip.
        return "EMPTY"


#: Returned by a call with ``raises=False`` when the function produced no result.
EMPTY = _EMPTY()


def _start_method(context: Any) -> Tuple[str, Any]:
    """``context`` → (engine start method, context object); see `pynisher._contexts`."""
    return _contexts.resolve(context)


# --------------------------------------------------------------------------------------------
# re-raising in the parent


def _traceback_cause(err: BaseException, tb: str) -> BaseException:
    """The ``__cause__`` carrying the child's traceback text.

    Like upstream, an instance of the error's own type built from the text when that works and
    reads back as the text; otherwise (multi-argument constructors such as
    ``CalledProcessError(returncode, cmd)``, or types whose str() is not the message)
    a `RemoteTraceback`.
    """
    try:
        cause = type(err)(tb)
        if isinstance(cause, BaseException) and str(cause) == tb:
            return cause
    except Exception:
        pass
    return RemoteTraceback(tb)


_FAILURES = {
    "spawn_failed": "could not start the child process",
    "result_undecodable": "could not decode what the function returned or raised",
    "panicked": "internal error of the engine",
    "cancelled": "the call was cancelled",
    "process_limit": "the function exceeded the process limit",
}


def _fmt(x: Optional[float]) -> str:
    """Seconds as written by the user: 2 → "2", 0.5 → "0.5"."""
    return f"{x:g}" if isinstance(x, float) else str(x)


class Pynisher(Generic[P, T]):
    """Run a function in a child process under memory, CPU-time and wall-time limits.

    ``Pynisher(func, **limits)(*args, **kwargs)`` calls ``func(*args, **kwargs)`` in a fresh
    child process and returns its result, or raises:

    * `WallTimeoutException` (a `TimeoutException`) when ``wall_time`` ran out,
    * `CpuTimeoutException` (a `TimeoutException`) when ``cpu_time`` ran out,
    * `MemoryLimitException` (a `PynisherException` *and* a ``MemoryError``) when ``memory``
      ran out, including a ``MemoryError`` raised inside the function while a limit is set,
    * the function's own exception, same type and args, with the child traceback as
      ``__cause__``,
    * `PynisherException` when the child died without a result for another reason.

    With ``raises=False`` every failure returns `EMPTY` instead. ``limit`` is the same class.

    Parameters
    ----------
    func : Callable
        The function to limit. Under "spawn"/"forkserver" it (and its arguments) travel with
        cloudpickle, so lambdas and closures work.
    name : str | None
        A name for the call, shown in error messages.
    memory : int | (value, unit) | None
        Memory limit; an int is **bytes**; units "B", "KB", "MB", "GB" (binary, case-insensitive).
        Enforced on the call's resident memory via a cgroup where available, otherwise as an
        address-space limit (upstream always used ``RLIMIT_AS``).
    cpu_time : float | (value, unit) | None
        CPU-time limit in seconds; units "s", "m", "h". Floats >= `MIN_SECONDS` are accepted
        (upstream: whole seconds >= 1).
    wall_time : float | (value, unit) | None
        Wall-clock limit in seconds, same units as ``cpu_time``.
    context : "fork" | "spawn" | "forkserver" | multiprocessing context | None
        Start method; None = the interpreter's default (not fixed as a side effect). A start
        method that a library registered ("loky" in joblib / loky workers) runs as "spawn".
    raises : bool
        False → failures return `EMPTY` instead of raising.
    warnings : bool
        Emit warnings (``warnings.warn``, category `PynisherWarning`) for limits that are
        unsupported here or too small to start a process.
    wrap_errors : bool | list | dict
        Convert the function's exceptions *in the child* into pynisher exceptions: True wraps
        every exception into `PynisherException`; a list wraps the listed ones; a dict maps the
        keys "memory", "cpu_time", "wall_time", "pynisher" to lists of entries, each an exception
        class (``isinstance``), a class name, ``(ExcType, errno)`` or
        ``(ExcType, errno, winerror)``; a key only applies while its limit is set.
    terminate_child_processes : bool
        True (default): every process of the call is killed when it ends. False: the function's
        own descendants keep running after a call whose function ended by itself (a limit or
        Ctrl-C still kills them all).
    forceful_keyboard_interrupt : bool
        Accepted for compatibility; Ctrl-C always kills the call's process tree and raises
        ``KeyboardInterrupt`` in the caller.
    backend : "auto" | "cgroup2" | "cgroup1" | "none" | None
        Containment backend (as the command line's ``--backend``); None = the environment
        variable ``PYNISHER_BACKEND``, else "auto".
    strict : bool
        Refuse to run a call whose limits the backend cannot fully enforce: raise
        `NotEnforceableError` naming what would be weaker. Otherwise the call runs and, with
        ``warnings=True``, one `PynisherWarning` per process and kind of weakness says so.

    After a call, ``outcome`` holds how it ended and what it used (see ``docs/python-api.md``).
    """

    WallTimeoutException = WallTimeoutException
    CpuTimeoutException = CpuTimeoutException
    MemoryLimitException = MemoryLimitException
    PynisherException = PynisherException
    TimeoutException = TimeoutException

    # For type checkers: with raises=True (the default) a call returns T; otherwise T | EMPTY.
    @overload
    def __init__(
        self: "Pynisher[P, T]",
        func: Callable[P, T],
        *,
        name: Optional[str] = ...,
        memory: MemoryArg = ...,
        cpu_time: TimeArg = ...,
        wall_time: TimeArg = ...,
        context: Any = ...,
        raises: Literal[True] = ...,
        warnings: bool = ...,
        wrap_errors: WrapErrors = ...,
        terminate_child_processes: bool = ...,
        forceful_keyboard_interrupt: bool = ...,
        backend: Optional[str] = ...,
        strict: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: "Pynisher[P, Union[T, _EMPTY]]",
        func: Callable[P, T],
        *,
        name: Optional[str] = ...,
        memory: MemoryArg = ...,
        cpu_time: TimeArg = ...,
        wall_time: TimeArg = ...,
        context: Any = ...,
        raises: bool,
        warnings: bool = ...,
        wrap_errors: WrapErrors = ...,
        terminate_child_processes: bool = ...,
        forceful_keyboard_interrupt: bool = ...,
        backend: Optional[str] = ...,
        strict: bool = ...,
    ) -> None: ...

    def __init__(
        self,
        func: Callable[P, T],
        *,
        name: Optional[str] = None,
        memory: MemoryArg = None,
        cpu_time: TimeArg = None,
        wall_time: TimeArg = None,
        context: Any = None,
        raises: bool = True,
        warnings: bool = True,
        wrap_errors: WrapErrors = False,
        terminate_child_processes: bool = True,
        forceful_keyboard_interrupt: bool = True,
        backend: Optional[str] = None,
        strict: bool = False,
    ) -> None:
        if not callable(func):
            raise ValueError(f"`func` ({func}) must be callable")
        self.func = func
        self.name = name
        self.memory: Optional[int] = _memory_bytes(memory)
        self.cpu_time: Optional[float] = _seconds("cpu_time", cpu_time)
        self.wall_time: Optional[float] = _seconds("wall_time", wall_time)
        _start_method(context)  # validates
        # None stays None: the interpreter's default is looked up at each call, so a later
        # multiprocessing.set_start_method() applies, as it does for multiprocessing itself.
        self._context = context
        #: The start method when ``context`` fixes it (else looked up at each call).
        self._fixed_method: Optional[str] = _contexts.fixed_method(context)
        self.raises = raises
        self.warnings = warnings
        self._wrap_errors = _normalise_wrap_errors(wrap_errors)
        self.wrap_errors = wrap_errors
        self.terminate_child_processes = terminate_child_processes
        self.forceful_keyboard_interrupt = forceful_keyboard_interrupt
        # None = $PYNISHER_BACKEND or "auto", looked up at each call; a name is checked now.
        self.backend: Optional[str] = None if backend is None else resolve_backend(backend)
        self.strict = bool(strict)
        #: How the most recent call ended and what it used (`CallResult`: status, wall_time,
        #: cpu_time, peak_memory, memory_measure, backend, guarantees, weaknesses, ...).
        self.outcome: Optional[Any] = None
        #: pid of the child of the most recent call (gone by the time the call returns).
        self._pid: Optional[int] = None
        #: Where the engine records each call's child (`pynisher._core.ChildSlot`, made at the
        #: first call): `_process` builds its handle from it when first asked for.
        self._slot: Optional[Any] = None
        self._handle: Optional[Any] = None
        #: Which call (the slot's count) `_handle` is for.
        self._handle_for = 0
        #: (settings, `pynisher._run.Prepared`) of the most recent call (see `_prepared`).
        self._prepared_for: Optional[Tuple[Any, Any]] = None
        #: (limits, warnings) of `_warn_about_limits` for the limits it last saw.
        self._limit_warnings: Tuple[Any, List[str]] = (None, [])

    @property
    def context(self) -> Any:
        """The multiprocessing context whose start method the calls use."""
        return _start_method(self._context)[1]

    @property
    def _start_method(self) -> str:
        if self._fixed_method is not None:
            return self._fixed_method
        return _start_method(self._context)[0]

    @property
    def _process(self) -> Optional[Any]:
        """`psutil.Process` of the most recent call's child (as upstream), or None before the
        first call. Built when first asked for, not on every call's path (psutil's look at /proc
        cost a quarter of a trivial call): asked during the call, it names the running child;
        after it, the child has ended (a forkserver's may still be on its way out, killed: its
        outcome comes at its result) and the handle says so (not running, `children()` raises
        `psutil.NoSuchProcess`), as one taken at the start would."""
        seen = None if self._slot is None else self._slot.get()
        if seen is not None and seen[0] != self._handle_for:
            count, pid, ended = seen
            self._handle = _ended_process(pid) if ended else _live_process(pid)
            self._handle_for = count
        return self._handle

    @_process.setter
    def _process(self, handle: Optional[Any]) -> None:
        seen = None if self._slot is None else self._slot.get()
        self._handle_for = 0 if seen is None else seen[0]
        self._handle = handle

    def __enter__(self) -> "Pynisher[P, T]":
        """Use as ``with limit(f, ...) as lf: lf(x)``; nothing to set up or tear down."""
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{k}={v!r}"
            for k, v in (("memory", self.memory), ("cpu_time", self.cpu_time), ("wall_time", self.wall_time))
            if v is not None
        )
        return f"Pynisher({getattr(self.func, '__qualname__', self.func)!r}, {limits}, context={self._start_method!r})"

    @staticmethod
    def supports(limit: str) -> bool:
        """Whether a feature ("wall_time", "cpu_time", "memory", "decorator") works here."""
        return supports(limit)

    def _warn_about_limits(self) -> None:
        # Warned at every call (as upstream); what to say is worked out once per set of limits.
        limits = (self.memory, self.cpu_time, self.wall_time)
        seen, messages = self._limit_warnings
        if seen != limits:
            messages = _limit_warnings(*limits)
            self._limit_warnings = (limits, messages)
        for message in messages:
            _warnings.warn(message, PynisherWarning, stacklevel=3)

    def _prepared(self, run: Any) -> Any:
        """The call's limits checked once (`pynisher._run.prepare`) and kept while the settings
        they come from (attributes, ``$PYNISHER_BACKEND``, the default start method) stay the
        same."""
        backend = self.backend
        key = (
            self.wall_time,
            self.cpu_time,
            self.memory,
            self._fixed_method or _contexts.default_method(),
            backend,
            getenv(BACKEND_ENV) if backend is None else None,
            self.strict,
            self.terminate_child_processes,
        )
        cached = self._prepared_for
        if cached is not None and cached[0] == key:
            return cached[1]
        prepared = run.prepare(
            wall_time=self.wall_time,
            cpu_time=self.cpu_time,
            memory=self.memory,
            memory_kind="auto",
            context=key[3],
            backend=backend,
            strict=self.strict,
            keep_descendants=not self.terminate_child_processes,
        )
        self._prepared_for = (key, prepared)
        return prepared

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the function in a limited child process and return its result (see class doc)."""
        run = _run_module or _execution_layer()
        if self.warnings and (
            self._limit_warnings[1] or self._limit_warnings[0] != (self.memory, self.cpu_time, self.wall_time)
        ):
            self._warn_about_limits()
        target: Callable[..., Any] = self.func
        if self._wrap_errors is not False:
            target = _WrapErrors(
                self.func,
                self._wrap_errors,
                memory=self.memory is not None,
                cpu_time=self.cpu_time is not None,
                wall_time=self.wall_time is not None,
            )
        slot = self._slot
        if slot is None:
            slot = self._slot = run.ChildSlot()
        try:
            # The slot as `on_start`: the fork context records the pid without a Python call.
            result = run.run_prepared(self._prepared(run), target, args, kwargs, slot)
        finally:
            slot.end()  # over: its pid may name another process soon
            if self._handle is not None:
                seen = slot.get()
                if seen is not None and seen[0] == self._handle_for:
                    # A handle taken during the call: over too (a forkserver's child may still
                    # be on its way out, killed: its outcome comes at its result).
                    _mark_ended(self._handle)
        self._pid = getattr(result, "pid", None)
        self.outcome = result
        if self.warnings and result.weaknesses:
            warn_weaknesses(result, stacklevel=2)
        if result.status == "completed" and result.returned:
            return result.value
        return self._outcome(result, args, kwargs)

    # ---------------------------------------------------------------------------------------

    def _callstring(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        text = callstring(self.func, *args, **kwargs)
        return f"[{self.name}] {text}" if self.name else text

    def _outcome(self, res: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """Turn the engine's CallResult into a return value or a raised exception."""
        status = res.status
        if status == "completed" and res.returned:
            return res.value
        if not self.raises:
            return EMPTY
        call = self._callstring(args, kwargs)
        err: BaseException
        if status == "completed":
            self._raise_child_exception(res.exception, res.traceback, call)
        if status == "wall_timeout":
            err = WallTimeoutException(
                f"Your function took longer than {_fmt(self.wall_time)} seconds to run.\n{call}"
            )
        elif status == "cpu_timeout":
            err = CpuTimeoutException(f"Did not finish in cpu time ({_fmt(self.cpu_time)}s)\n{call}")
        elif status == "memory_limit":
            err = MemoryLimitException(f"Not enough memory to run function ({self.memory}B).\n{call}")
        elif status == "signaled":
            err = self._signaled(res.signal, call)
        elif status == "no_result":
            if res.exit_code == 0:
                err = PynisherException(
                    "Function ended properly but no result was received."
                    f" Got exitcode 0 from subprocess that ran:\n{call}"
                )
            else:
                err = PynisherException(
                    f"Unknown reason for exitcode {res.exit_code}, no result or error received"
                    f" from subprocess that ran:\n{call}"
                )
        else:
            # process_limit (never requested by this API), panicked, spawn_failed,
            # result_undecodable, cancelled: the library's own failure.
            what = _FAILURES.get(status, "the call failed")
            detail = f": {res.message}" if getattr(res, "message", None) else ""
            err = PynisherException(f"pynisher: {what} ({status}){detail}\n{call}")
        raise err

    def _signaled(self, sig: Optional[int], call: str) -> Exception:
        if sig == signal.SIGSEGV and self.memory is not None:
            # Allocation failures under an address-space limit often surface as SIGSEGV in C code.
            return MemoryLimitException(
                "The function exited with a segmentation fault (SIGSEGV) while a memory limit"
                f" ({self.memory}B) was set; presumably it ran out of memory.\n{call}"
            )
        if sig == getattr(signal, "SIGXCPU", None) and self.cpu_time is not None:
            return CpuTimeoutException(f"Did not finish in cpu time ({_fmt(self.cpu_time)}s)\n{call}")
        try:
            signame = signal.Signals(sig).name  # type: ignore[arg-type]
        except (ValueError, TypeError):
            signame = str(sig)
        code = -sig if isinstance(sig, int) else sig
        return PynisherException(
            f"Unknown reason for exitcode {code} (killed by {signame}), no result or error"
            f" received from subprocess that ran:\n{call}"
        )

    def _raise_child_exception(self, err: Optional[BaseException], tb: str, call: str) -> None:
        if err is None:
            raise PynisherException(f"The function ended without a result or an error:\n{call}")
        if self.memory is not None and isinstance(err, MemoryError) and not isinstance(err, MemoryLimitException):
            if tb:
                err.__cause__ = RemoteTraceback(tb)
            raise MemoryLimitException(f"Not enough memory to run function ({self.memory}B).\n{call}") from err
        if not isinstance(err, Exception):
            # SystemExit / KeyboardInterrupt / GeneratorExit from the child must not end or
            # interrupt the *caller*; report them as a failed call.
            raise PynisherException(
                f"The function raised {type(err).__name__}({', '.join(map(repr, err.args))}):\n{call}"
            ) from (RemoteTraceback(tb) if tb else None)
        if tb:
            raise err from _traceback_cause(err, tb)
        raise err


#: `pynisher._run`, imported at the first call rather than with `pynisher` (it loads the native
#: engine), and kept here: a function-level import runs importlib's Python code on every call.
_run_module: Any = None


def _execution_layer() -> Any:
    global _run_module
    if _run_module is None:
        from pynisher import _run

        _run_module = _run
    return _run_module


def _limit_warnings(memory: Optional[int], cpu_time: Optional[float], wall_time: Optional[float]) -> List[str]:
    """What `Pynisher` warns about before each call with these limits (``warnings=True``)."""
    messages = []
    checks = (
        (memory, supports_memory, "memory"),
        (cpu_time, supports_cputime, "cpu_time"),
        (wall_time, supports_walltime, "wall_time"),
    )
    for value, supported, label in checks:
        if value is not None and not supported():
            messages.append(f"pynisher cannot enforce `{label}` on {sys.platform}")
    if memory is not None and memory < _LOW_MEMORY_BYTES:
        messages.append(
            f"Memory limit of {memory}B is below what a Python process needs to run"
            f" (~{_LOW_MEMORY_BYTES // 2**20} MiB); the call is likely to fail, try"
            " increasing the memory limit"
        )
    return messages


def _live_process(pid: int) -> Any:
    """A `psutil.Process` for a call's child that may still run: a forkserver child may be over
    and reaped already (a quick function), a fork / spawn child only once the call returned."""
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return _ended_process(pid)


def _ended_process(pid: int) -> Any:
    """A `psutil.Process` for a child that ended and was reaped before a handle was taken: not
    running, and `children()` raises `psutil.NoSuchProcess` (what upstream's handle reports after
    the call). Built the way `psutil.Popen` builds one for a process that may be gone."""
    import psutil

    process = psutil.Process.__new__(psutil.Process)
    try:
        process._init(pid, _ignore_nsp=True)
    except Exception:  # a psutil without these internals: no handle rather than a wrong one
        return None
    return process if _mark_ended(process) else None


def _mark_ended(process: Any) -> bool:
    """Marks a call's `psutil.Process` as ended: the pid no longer names our child, whoever has
    it now (a forkserver's child may even still be on its way out, killed: its outcome comes at
    its result). False with a psutil without these internals."""
    try:
        process._gone = True
        process._pid_reused = True
    except Exception:
        return False
    return True


#: Alias of `Pynisher` (``pynisher.limit(func, ...)``).
limit = Pynisher


def restricted(
    name: Optional[str] = None,
    *,
    memory: MemoryArg = None,
    cpu_time: TimeArg = None,
    wall_time: TimeArg = None,
    context: Any = None,
    raises: bool = True,
    warnings: bool = True,
    wrap_errors: WrapErrors = False,
    terminate_child_processes: bool = True,
    forceful_keyboard_interrupt: bool = True,
    backend: Optional[str] = None,
    strict: bool = False,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of `Pynisher`: every call of the decorated function is limited.

    .. code:: python

        @restricted(memory=(1, "GB"), wall_time=14)
        def f(x: int) -> int:
            return x * 2

    Every argument is passed on to `Pynisher` (upstream dropped ``context`` and the flags), and
    the arguments are validated when decorating. Must be called with arguments:
    ``@restricted`` alone raises ``ValueError``.
    """
    if callable(name):
        raise ValueError("Please pass arguments to decorator `@restricted`")
    if not supports("decorator"):
        raise ValueError(f"`@restricted(...)` is not supported on {sys.platform}, use `limit`")

    def decorator(func: Callable[P, T]) -> Callable[P, T]:
        limited: "Pynisher[P, Any]" = Pynisher(
            func,
            name=name,
            memory=memory,
            cpu_time=cpu_time,
            wall_time=wall_time,
            context=context,
            raises=raises,
            warnings=warnings,
            wrap_errors=wrap_errors,
            terminate_child_processes=terminate_child_processes,
            forceful_keyboard_interrupt=forceful_keyboard_interrupt,
            backend=backend,
            strict=strict,
        )

        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return limited(*args, **kwargs)

        wrapper.pynisher = limited  # type: ignore[attr-defined]  # lets callers inspect the limits
        return wrapper

    return decorator
