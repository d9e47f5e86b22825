"""Upper bounds of the limits, checked by both APIs with the user's own parameter names.

The engine refuses values it cannot hold (durations over 100 years, more processes than the
kernel's PID_MAX_LIMIT, memory over 2**64-1 bytes), but it names its own parameters (``memory``,
``max_processes``) and prints a float such as ``1e300`` with all its digits. The API layers check
first, so that a message names what the user wrote (``mem_in_mb``, ``num_processes``) and shows
the value as written.
"""

from __future__ import annotations

from typing import Any

#: The engine's longest duration (wall time, CPU time, grace period): 100 years.
MAX_SECONDS = 100 * 365 * 86400
#: The engine's largest process-count limit (the kernel's PID_MAX_LIMIT on 64-bit Linux).
MAX_PROCESSES = 4 * 1024 * 1024
#: The largest memory limit in bytes.
MAX_BYTES = 2**64 - 1


def shown(value: Any) -> str:
    """A value as the user wrote it, short: floats in their repr (1e+300), huge ints in
    scientific notation."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"{value:.3e}"
    if isinstance(value, tuple):
        return "(" + ", ".join(shown(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def too_large(name: str, raw: Any, limit: str) -> ValueError:
    return ValueError(f"`{name}` {shown(raw)} is too large: at most {limit}")


def check_seconds(name: str, raw: Any, seconds: float) -> None:
    """``seconds`` (already converted from ``raw``) must be within the engine's 100 years."""
    if seconds > MAX_SECONDS:
        raise too_large(name, raw, f"{MAX_SECONDS} seconds (100 years)")


def check_bytes(name: str, raw: Any, size: float, unit: str = "bytes", unit_bytes: int = 1) -> None:
    """``size`` bytes (already converted from ``raw``) must fit the engine's 64-bit limit."""
    if size > MAX_BYTES:
        raise too_large(name, raw, f"{MAX_BYTES // unit_bytes} {unit} (2**64-1 bytes)")


def check_processes(name: str, raw: Any) -> None:
    if raw is not None and raw > MAX_PROCESSES:
        raise too_large(name, raw, f"{MAX_PROCESSES} (the kernel's PID_MAX_LIMIT)")
