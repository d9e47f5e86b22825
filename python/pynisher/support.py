"""Which limits and start methods this platform supports (pynisher 1.x `supports` API).

=========================  =====================================================================
platform                   limits
=========================  =====================================================================
Linux, kernel >= 5.3       all: wall time, CPU time, memory, process count (wheels: x86_64 and
                           aarch64, glibc >= 2.17)
Linux, kernel < 5.3        none: the engine needs ``pidfd_open`` (Linux 5.3); every call fails
macOS, Windows, others     not yet: no wheels, and building the sdist stops with a message
=========================  =====================================================================

Every ``supports*`` function answers ``False`` where the engine cannot run.
"""

from __future__ import annotations

import sys

__all__ = [
    "contexts",
    "supports",
    "supports_walltime",
    "supports_cputime",
    "supports_memory",
    "supports_limit_decorator",
    "default_start_method",
]

#: Start methods accepted as ``context`` (same order as upstream pynisher 1.x).
contexts: list[str] = ["fork", "spawn", "forkserver"]


#: The oldest Linux kernel the engine runs on (every call waits on a pidfd: ``pidfd_open``).
MIN_KERNEL = (5, 3)


def _kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a ``uname -r`` string such as "5.15.0-91-generic"; (0, 0) if unreadable."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _is_linux() -> bool:
    """Whether the engine runs here: Linux with a kernel of at least :data:`MIN_KERNEL`."""
    import os

    return sys.platform.startswith("linux") and _kernel_version(os.uname().release) >= MIN_KERNEL


def supports_walltime() -> bool:
    """Whether wall-clock limits work here (the engine runs on Linux only)."""
    return _is_linux()


def supports_cputime() -> bool:
    """Whether CPU-time limits work here."""
    return _is_linux()


def supports_memory() -> bool:
    """Whether memory limits work here."""
    return _is_linux()


def supports_limit_decorator() -> bool:
    """Whether ``@restricted(...)`` works here.

    Upstream refuses it outside Linux because the decorated module-level function cannot be
    pickled by reference; functions are shipped with cloudpickle here, so the only condition is
    that the engine runs at all.
    """
    return _is_linux()


_FEATURES = {
    "wall_time": supports_walltime,
    "walltime": supports_walltime,
    "cpu_time": supports_cputime,
    "cputime": supports_cputime,
    "memory": supports_memory,
    "decorator": supports_limit_decorator,
}


def supports(limit: str) -> bool:
    """Check whether pynisher supports a feature on this system.

    Parameters
    ----------
    limit : "wall_time" | "cpu_time" | "memory" | "decorator"
        The feature (case-insensitive; the older spellings "walltime" / "cputime" also work).

    Raises
    ------
    ValueError
        For an unknown feature name.
    """
    func = _FEATURES.get(str(limit).lower())
    if func is None:
        raise ValueError(
            f"Not a known feature {limit!r}, must be one of "
            f"{['wall_time', 'cpu_time', 'memory', 'decorator']}"
        )
    return func()


def default_start_method() -> str:
    """The interpreter's default start method, *without* fixing it.

    ``multiprocessing.get_start_method()`` and ``multiprocessing.get_context()`` both lock the
    default context in as a side effect (a later ``set_start_method`` then fails), so ask with
    ``allow_none=True`` and fall back to the documented "first of get_all_start_methods()".
    """
    import multiprocessing  # lazily: see pynisher._v1._start_method

    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        method = multiprocessing.get_all_start_methods()[0]
    return method
