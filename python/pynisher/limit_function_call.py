"""pynisher 0.x's module path ``pynisher.limit_function_call``
(``from pynisher.limit_function_call import enforce_limits, TimeoutException``).

The 0.x API lives in `pynisher._v0`; this module only keeps the historic import path working.
"""

from pynisher._v0 import enforce_limits
from pynisher.exceptions import (
    AnythingException,
    CpuTimeoutException,
    MemorylimitException,
    PynisherError,
    SignalException,
    SubprocessException,
    TimeoutException,
)

__all__ = [
    "enforce_limits",
    "CpuTimeoutException",
    "TimeoutException",
    "MemorylimitException",
    "SubprocessException",
    "PynisherError",
    "SignalException",
    "AnythingException",
]
