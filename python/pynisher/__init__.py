"""pynisher: run a function in a child process under memory, CPU-time, wall-time and
process-count limits, and report exactly why it ended.

A drop-in for both generations of the Python library of the same name:

* the 1.x API: `limit` / `Pynisher`, `restricted`, `EMPTY`, `supports`, `contexts`, raising
  `WallTimeoutException`, `CpuTimeoutException`, `MemoryLimitException`, ... on failure;
* the 0.x API: `enforce_limits`, reporting through ``wrapper.exit_status`` (0 or an exception
  class such as `TimeoutException`, `MemorylimitException`, `AnythingException`).

Both share one exception tree (`pynisher.exceptions`) and the Rust engine underneath.
"""

from pynisher import exceptions, support, util
from pynisher._v0 import enforce_limits
from pynisher._v1 import EMPTY, Pynisher, limit, restricted
from pynisher.exceptions import (
    AnythingException,
    CpuTimeoutException,
    MemoryLimitException,
    MemorylimitException,
    NotEnforceableError,
    PynisherError,
    PynisherException,
    PynisherWarning,
    SignalException,
    SubprocessException,
    TimeoutException,
    WallTimeoutException,
)
from pynisher.support import (
    contexts,
    supports,
    supports_cputime,
    supports_limit_decorator,
    supports_memory,
    supports_walltime,
)


def __getattr__(name: str) -> str:
    # `__version__` is looked up lazily: importlib.metadata costs ~15 ms to import, and this
    # package is also imported by spawned children that only unpickle one of its classes.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pynisher")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'pynisher' has no attribute {name!r}")


__all__ = [
    # 1.x
    "Pynisher",
    "limit",
    "restricted",
    "EMPTY",
    "contexts",
    "supports",
    "supports_walltime",
    "supports_cputime",
    "supports_memory",
    "supports_limit_decorator",
    # 0.x
    "enforce_limits",
    # exceptions (both)
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
    "PynisherWarning",
    # submodules
    "exceptions",
    "support",
    "util",
]
