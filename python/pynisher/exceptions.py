"""The exception tree shared by both pynisher APIs.

One hierarchy serves the 1.x API (`limit` / `Pynisher`, where these are *raised*) and the 0.x
API (`enforce_limits`, where the *class itself* is stored in ``wrapper.exit_status`` and compared
with ``is``)::

    Exception
     └── PynisherException
          ├── TimeoutException                  (0.x: wall-clock timeout status)
          │    ├── WallTimeoutException
          │    └── CpuTimeoutException          (0.x: CPU timeout status)
          ├── MemoryLimitException (also a MemoryError)
          ├── SubprocessException               (0.x only: OSError in the child)
          ├── PynisherError                     (0.x only: internal error)
          ├── NotEnforceableError               (strict=True refused a call)
          ├── SignalException                   (0.x only: child got SIGQUIT)
          └── AnythingException                 (0.x only: child died without a result)

``MemorylimitException`` (lower-case "l", the 0.x spelling) is an alias of
``MemoryLimitException``, so ``exit_status is pynisher.MemorylimitException`` and
``isinstance(err, pynisher.MemoryLimitException)`` both work.

In 0.x these classes all derived from ``Exception`` directly; here they share the
``PynisherException`` base so that ``except pynisher.PynisherException`` catches everything the
library itself produces. Every class keeps the default ``Exception`` constructor, so instances
pickle round-trip (they travel between processes).
"""

from __future__ import annotations

__all__ = [
    "PynisherException",
    "TimeoutException",
    "WallTimeoutException",
    "CpuTimeoutException",
    "MemoryLimitException",
    "MemorylimitException",
    "SubprocessException",
    "PynisherError",
    "NotEnforceableError",
    "SignalException",
    "AnythingException",
    "RemoteTraceback",
    "PynisherWarning",
]


class PynisherException(Exception):
    """Base class of every exception pynisher raises or reports."""


class TimeoutException(PynisherException):
    """A time limit (wall-clock or CPU) was exceeded.

    In the 0.x API this class is the ``exit_status`` of a *wall-clock* timeout.
    """


class WallTimeoutException(TimeoutException):
    """The function ran longer than its wall-clock limit."""


class CpuTimeoutException(TimeoutException):
    """The function used more CPU time than its limit."""


class MemoryLimitException(PynisherException, MemoryError):
    """The function hit its memory limit.

    Also a ``MemoryError`` so that code written as ``except MemoryError`` keeps working.
    """

    def __new__(cls, *args: object, **kwargs: object) -> "MemoryLimitException":
        # Attribute lookup finds MemoryError.__new__, but the C-level constructor this class
        # inherits through its first base is BaseException's; calling the former with this class
        # raises "MemoryError.__new__(MemoryLimitException) is not safe". Pickle reducers that
        # rebuild exceptions with `cls.__new__(cls, *args)` (tblib, which dask.distributed
        # installs process-wide) do exactly that, so route __new__ to the matching constructor.
        return PynisherException.__new__(cls, *args)


#: 0.x spelling (lower-case "l"); the very same class as `MemoryLimitException`.
MemorylimitException = MemoryLimitException


class SubprocessException(PynisherException):
    """0.x API: the function raised an ``OSError``; its errno is in ``wrapper.os_errno``."""


class PynisherError(PynisherException):
    """0.x API: an internal error of pynisher itself (this should not happen)."""


class NotEnforceableError(PynisherException):
    """``strict=True`` refused a call: the backend cannot fully enforce its limits (no cgroup for
    escaped descendants, memory only by sampling, process count only by polling). Nothing ran.
    ``weaknesses`` holds the names of what would have been weaker."""

    weaknesses: tuple = ()


class SignalException(PynisherException):
    """0.x API: the child received SIGQUIT (its handler turns it into this exception)."""


class AnythingException(PynisherException):
    """0.x API: the call ended without a result and no more specific cause is known.

    Examples: the function raised an exception other than those listed above, or the child was
    killed by a signal. ``wrapper.stdout`` / ``wrapper.stderr`` (with ``capture_output``) and
    ``wrapper.exitcode`` may say more.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in the child.

    Attached as ``__cause__`` of a re-raised child exception when an instance of the child
    exception's own type cannot be built from the traceback text (for example
    ``subprocess.CalledProcessError``, whose constructor needs two arguments). Deliberately not a
    `PynisherException`, so ``except PynisherException`` never matches the cause by accident.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class PynisherWarning(UserWarning):
    """Category of the warnings pynisher emits (``warnings=True``), e.g. a limit that cannot work."""
