"""The pynisher 0.x API: `enforce_limits`.

Reproduces the API of the original pynisher README (0.6.x): ``enforce_limits(...)`` returns a
decorator; the decorated object is called like the function, returns its value or None, and
afterwards tells what happened through ``result``, ``exit_status``, ``wall_clock_time``,
``stdout``, ``stderr``, ``exitcode``, ``os_errno``, ``resources_function`` and
``resources_pynisher``.

Deliberate, documented deviations from 0.6.4:

* Limits may be floats (0.6 crashed the child on a float); they must be > 0.
* ``mem_in_mb`` (MiB) is enforced on the call's *resident* memory via a cgroup where available,
  otherwise as an address-space limit (``RLIMIT_AS``), which is what 0.6 always used.
* ``num_processes`` caps the processes of the call (through the engine), also for root, for whom
  0.6's ``RLIMIT_NPROC`` did nothing.
* The whole process tree of the call is killed when the call ends (0.6 leaked grandchildren on
  wall-clock timeouts), and Ctrl-C raises ``KeyboardInterrupt`` in the caller after killing it
  (0.6 swallowed it).
* ``capture_output`` captures at the file-descriptor level, so output of C code and of child
  processes is included.
* ``context`` also accepts a start-method name; 0.6 needed a context object.
* ``os_errno`` is reset at every call (0.6 kept a stale value).
* The exception classes share the `pynisher.exceptions.PynisherException` base (0.6: plain
  ``Exception`` subclasses); ``exit_status is X`` comparisons are unaffected.
* Debug messages that 0.6 logged in the child ("function returned properly", "return value") are
  logged by the caller after the call, with the same text.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stub) signal.signal without its enum wrapping
import errno as _errno
import functools
import math
import resource
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Type, Union

from pynisher._bounds import check_bytes, check_processes, check_seconds, shown
from pynisher._guarantees import resolve_backend, warn_weaknesses
from pynisher._v1 import _start_method
from pynisher.exceptions import (
    AnythingException,
    CpuTimeoutException,
    MemorylimitException,
    NotEnforceableError,
    PynisherError,
    PynisherException,
    SignalException,
    SubprocessException,
    TimeoutException,
)

if TYPE_CHECKING:
    import logging

__all__ = ["enforce_limits"]

ExitStatus = Union[int, Type[PynisherException]]


class _Debug:
    """Formats and sends a 0.x debug message, only when the logger would keep it.

    The text is built with ``str.format`` and handed to ``logger.debug`` as one string, as 0.x
    did (tests of 0.x users compare those exact strings); building it is skipped when nobody
    listens, because the arguments of a call (auto-sklearn passes whole datasets) can be costly
    to render.
    """

    def __init__(self, logger: Any) -> None:
        check = getattr(logger, "isEnabledFor", None)
        try:
            self.enabled = True if check is None else bool(check(10))  # 10 == logging.DEBUG
        except Exception:
            self.enabled = True
        self.logger = logger

    def __call__(self, template: str, *args: Any) -> None:
        if self.enabled:
            self.logger.debug(template.format(*args) if args else template)


def _positive(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` {shown(value)} must be a finite number or None")
    if not value > 0:
        raise ValueError(f"`{name}` {shown(value)} must be > 0")
    if name == "mem_in_mb":
        check_bytes(name, value, value * 2**20, "MiB", 2**20)
    else:
        check_seconds(name, value, value)
    return value


def _on_quit(signum: int, frame: Any) -> None:
    raise SignalException()


class _QuitToSignalException:
    """Runs in the child: turns SIGQUIT into `SignalException` like 0.6's child handler did."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # `_signal.signal`, not `signal.signal`: the latter converts the previous handler to an
        # enum member, and in a forked child every object that touches is a copied page (~60
        # page faults per call). It raises ValueError off the main thread, as the check did.
        try:
            _set_handler(_SIGQUIT, _on_quit)
        except (OSError, ValueError):  # not fatal: SIGQUIT then keeps its default action
            pass
        return self.func(*args, **kwargs)


_set_handler = _signal.signal
_SIGQUIT = int(signal.SIGQUIT)


class enforce_limits:  # noqa: N801 - the 0.x name
    """Limit the resources of every call of a function (pynisher 0.x API).

    Use as a decorator or a wrapper factory::

        @pynisher.enforce_limits(wall_time_in_s=2)
        def f(t): ...

        obj = pynisher.enforce_limits(wall_time_in_s=2, capture_output=True)(f)
        result = obj(t)          # the return value, or None on any failure
        obj.exit_status          # 0, or the exception *class* (compare with `is`)

    Parameters
    ----------
    mem_in_mb : float | None
        Memory limit in MiB (× 1024 × 1024 bytes). Enforced on resident memory via a cgroup where
        available, otherwise as an address-space limit (upstream 0.x: ``RLIMIT_AS``).
    cpu_time_in_s : float | None
        CPU-time limit in seconds. SIGXCPU is sent first; SIGKILL follows after the grace period.
    wall_time_in_s : float | None
        Wall-clock limit in seconds. SIGALRM is sent first; SIGKILL follows after the grace period.
    num_processes : int | None
        Maximum number of processes of the call (the function's process included).
    grace_period_in_s : float | None
        Time between the soft signal (SIGXCPU / SIGALRM, raised inside the function as
        `CpuTimeoutException` / `TimeoutException` so it can clean up) and SIGKILL. None → 0.
        The reported ``exit_status`` is right with or without a grace period.
    logger : logging.Logger | None
        Receives the debug messages of 0.x. None → the ``"pynisher"`` logger.
    capture_output : bool
        Capture the child's stdout and stderr (file-descriptor level) into ``obj.stdout`` and
        ``obj.stderr`` (str); otherwise those are None.
    context : multiprocessing context | "fork" | "spawn" | "forkserver" | None
        Start method; None = the interpreter's default (not fixed as a side effect). A start
        method that a library registered ("loky" in joblib / loky workers) runs as "spawn".
    backend : "auto" | "cgroup2" | "cgroup1" | "none" | None
        Containment backend (as the command line's ``--backend``); None = the environment
        variable ``PYNISHER_BACKEND``, else "auto".
    strict : bool
        Raise `NotEnforceableError` instead of running a call whose limits the backend cannot
        fully enforce. Otherwise the call runs and one `PynisherWarning` per process and kind of
        weakness says what is weaker.

    Integer and float values are accepted (0.x required ints); all limits must be > 0.

    ``exit_status`` after a call is ``0`` or one of: `CpuTimeoutException`,
    `TimeoutException` (wall clock), `MemorylimitException`, `SubprocessException` (the function
    raised ``OSError``; see ``os_errno``), `PynisherError` (internal), `SignalException` (SIGQUIT),
    `AnythingException` (anything else: another exception, a fatal signal, no result).

    Beyond 0.x, after a call: ``outcome`` (how it ended and what it used, see
    ``docs/python-api.md``), and from it ``backend``, ``guarantees``, ``weaknesses``,
    ``cpu_time`` (seconds, the whole tree) and ``peak_memory`` (bytes) with ``memory_measure``.
    """

    def __init__(
        self,
        mem_in_mb: Optional[float] = None,
        cpu_time_in_s: Optional[float] = None,
        wall_time_in_s: Optional[float] = None,
        num_processes: Optional[int] = None,
        grace_period_in_s: Optional[float] = None,
        logger: Optional[logging.Logger] = None,
        capture_output: bool = False,
        context: Any = None,
        backend: Optional[str] = None,
        strict: bool = False,
    ) -> None:
        self.mem_in_mb = _positive("mem_in_mb", mem_in_mb)
        self.cpu_time_in_s = _positive("cpu_time_in_s", cpu_time_in_s)
        self.wall_time_in_s = _positive("wall_time_in_s", wall_time_in_s)
        if num_processes is not None and (
            isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1
        ):
            raise ValueError(f"`num_processes` {shown(num_processes)} must be an int >= 1 or None")
        check_processes("num_processes", num_processes)
        self.num_processes = num_processes
        grace = 0 if grace_period_in_s is None else grace_period_in_s
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < math.inf:
            raise ValueError(f"`grace_period_in_s` {shown(grace_period_in_s)} must be a finite number >= 0 or None")
        check_seconds("grace_period_in_s", grace_period_in_s, grace)
        self.grace_period_in_s = grace
        if logger is None:
            # Imported here: logging costs milliseconds to import, and spawned children that
            # unpickle this module's wrapper never log.
            import logging

            logger = logging.getLogger("pynisher")
        self.logger = logger
        self.capture_output = bool(capture_output)
        self.context = context
        _start_method(context)  # validates; resolved at each call (None = the default then)
        # None = $PYNISHER_BACKEND or "auto", looked up at each call; a name is checked now.
        self.backend = None if backend is None else resolve_backend(backend)
        self.strict = bool(strict)

        log = _Debug(self.logger)
        if self.mem_in_mb is not None:
            log("Restricting your function to {} mb memory.", self.mem_in_mb)
        if self.cpu_time_in_s is not None:
            log("Restricting your function to {} seconds cpu time.", self.cpu_time_in_s)
        if self.wall_time_in_s is not None:
            log("Restricting your function to {} seconds wall time.", self.wall_time_in_s)
        if self.num_processes is not None:
            log("Restricting your function to {} threads/processes.", self.num_processes)
        log("Allowing a grace period of {} seconds.", self.grace_period_in_s)

    def __call__(self, func: Callable[..., Any]) -> "_LimitedFunction":
        """Wrap ``func``; the returned object is called like ``func``."""
        return _LimitedFunction(self, func)


class _LimitedFunction:
    """The object `enforce_limits(...)(func)` returns (0.x ``function_wrapper``)."""

    def __init__(self, limits: enforce_limits, func: Callable[..., Any]) -> None:
        self._limits = limits
        # Name and docstring only: copying func.__dict__ (callable objects have one) could
        # overwrite this wrapper's own attributes such as `func` or `result`.
        functools.update_wrapper(self, func, updated=())
        self.func = func
        self.os_errno: Optional[int] = None
        self._log = _Debug(limits.logger)
        self._reset_attributes()

    def _reset_attributes(self) -> None:
        self.result: Any = None
        self.exit_status: Optional[ExitStatus] = None
        self.resources_function: Optional[resource.struct_rusage] = None
        self.resources_pynisher: Optional[resource.struct_rusage] = None
        self.wall_clock_time: Optional[float] = None
        self.stdout: Optional[str] = None
        self.stderr: Optional[str] = None
        self.exitcode: Optional[int] = None
        self.os_errno = None
        self.outcome: Any = None
        self.backend: Optional[str] = None
        self.guarantees: Optional[Dict[str, Any]] = None
        self.weaknesses: Optional[Dict[str, str]] = None
        self.cpu_time: Optional[float] = None
        self.peak_memory: Optional[int] = None
        self.memory_measure: Optional[str] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function under the limits; return its value, or None if it failed."""
        from pynisher._run import run_limited

        lim = self._limits
        log = self._log = _Debug(lim.logger)
        self._reset_attributes()
        log("Function called with argument: {}, {}", args, kwargs)
        memory = None if lim.mem_in_mb is None else int(round(lim.mem_in_mb * 2**20))
        start = time.time()
        try:
            res = run_limited(
                _QuitToSignalException(self.func),
                args,
                kwargs,
                wall_time=lim.wall_time_in_s,
                cpu_time=lim.cpu_time_in_s,
                memory=memory,
                memory_kind="auto",
                max_processes=lim.num_processes,
                grace_period=float(lim.grace_period_in_s),
                wall_signal=signal.SIGALRM,
                cpu_signal=signal.SIGXCPU,
                capture_output=lim.capture_output,
                context=_start_method(lim.context)[0],
                backend=lim.backend,
                strict=lim.strict,
            )
        except NotEnforceableError:
            raise  # strict=True: the caller asked to be told, not to get exit_status
        except PynisherException as e:
            # The library's own failure (fork / pipe): 0.x's catch-all branch.
            log("Something else went wrong, sorry.")
            log("{}: {}", type(e).__name__, e)
            self.exit_status = PynisherError
            self._finish(start)
            if lim.capture_output:
                self.stdout, self.stderr = "", ""
            return self.result
        self._finish(start)
        self.outcome = res
        self.backend, self.guarantees, self.weaknesses = res.backend, res.guarantees, res.weaknesses
        self.cpu_time, self.peak_memory = res.cpu_time, res.peak_memory
        self.memory_measure = res.memory_measure
        warn_weaknesses(res, stacklevel=2)
        self._classify(res)
        return self.result

    def _finish(self, start: float) -> None:
        self.wall_clock_time = time.time() - start
        self.resources_function = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.resources_pynisher = resource.getrusage(resource.RUSAGE_SELF)

    def _classify(self, res: Any) -> None:
        log = self._log
        if self._limits.capture_output:
            self.stdout = (res.stdout or b"").decode(errors="replace")
            self.stderr = (res.stderr or b"").decode(errors="replace")
        if res.signal:
            self.exitcode = -int(res.signal)
        else:
            self.exitcode = res.exit_code

        status = res.status
        exc = res.exception
        if res.returned and status in ("completed", "process_limit"):
            self.result = res.value
            self.exit_status = 0
            # 0.x's child logged these two; with a real logger they reached the same handlers.
            log("function returned properly: {}", (res.value, 0))
            log("return value: {}", (res.value, 0))
            return

        if status == "completed":
            self.exit_status = self._status_of_exception(exc)
        elif status == "wall_timeout":
            self.exit_status = TimeoutException
        elif status == "cpu_timeout":
            self.exit_status = CpuTimeoutException
        elif status == "memory_limit":
            self.exit_status = MemorylimitException
        elif status == "process_limit":
            # 0.x: fork() failing under RLIMIT_NPROC surfaced as an OSError (EAGAIN).
            self.exit_status = SubprocessException
            self.os_errno = exc.errno if isinstance(exc, OSError) else _errno.EAGAIN
        elif status in ("signaled", "no_result"):
            self.exit_status = AnythingException
        else:
            log("Something else went wrong, sorry.")
            if getattr(res, "message", None):
                log("{}: {}", status, res.message)
            self.exit_status = PynisherError
            return

        if self.exit_status is AnythingException and exc is not None:
            self._report_uncaught(res.traceback)
        if exc is not None and self.exit_status is not AnythingException:
            # 0.x's child caught this exception and sent (None, status[, errno]), logging it.
            handled: Tuple[Any, ...] = (None, self.exit_status)
            if self.os_errno is not None:
                handled += (self.os_errno,)
            log("return value: {}", handled)
        elif status != "wall_timeout":
            # 0.x's child died without sending anything (killed, or an uncaught exception):
            # the caller read EOF. (A wall timeout ended in 0.x's poll instead: no message.)
            log("Your function call closed the pipe prematurely -> Subprocess probably got an uncatchable signal.")

    def _status_of_exception(self, exc: Optional[BaseException]) -> ExitStatus:
        """The exit_status 0.x's child reported for an exception escaping the function."""
        if isinstance(exc, MemoryError):
            return MemorylimitException
        if isinstance(exc, OSError):
            self.os_errno = exc.errno
            return SubprocessException
        if isinstance(exc, CpuTimeoutException):
            return CpuTimeoutException
        if isinstance(exc, TimeoutException):
            return TimeoutException
        if isinstance(exc, SignalException):
            return SignalException
        return AnythingException

    def _report_uncaught(self, tb: str) -> None:
        """0.x did not transport other exceptions: its child printed the traceback on its stderr
        and exited with 1. Reproduce what the caller could observe."""
        if self.exitcode == 0:
            self.exitcode = 1
        if not tb:
            return
        if self._limits.capture_output:
            self.stderr = (self.stderr or "") + tb
        else:
            sys.stderr.write(tb)
