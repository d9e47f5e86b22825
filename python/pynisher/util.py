"""Unit conversion and formatting helpers (same names and behaviour as pynisher 1.0.10)."""

from __future__ import annotations

import os
import resource
import signal
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, Union

if TYPE_CHECKING:
    import psutil

__all__ = ["memconvert", "timeconvert", "callstring", "Monitor", "terminate_process", "terminate_process_tree"]

# Binary units, as in pynisher 1.x: "KB" means KiB, "MB" MiB, "GB" GiB.
_MEM_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}
_TIME_UNITS = {"s": 1, "m": 60, "h": 60 * 60}


def memconvert(x: float, *, frm: str = "B", to: str = "B") -> float:
    """Convert a memory amount between the units "B", "KB", "MB" and "GB" (case-insensitive).

    The units are binary (1 KB = 1024 B). A result in bytes is rounded to an ``int``; any other
    target unit gives a float.

    >>> memconvert(1, frm="GB")
    1073741824
    >>> memconvert(512, frm="mb", to="gb")
    0.5
    """
    try:
        u_from = _MEM_UNITS[frm.upper()]
        u_to = _MEM_UNITS[to.upper()]
    except KeyError as e:
        raise ValueError(f"Unknown memory unit {e.args[0]!r}, use one of {list(_MEM_UNITS)}") from None
    as_target = x * u_from / u_to
    # Fractional bytes make no sense, as upstream: round to whole bytes.
    if to.upper() == "B":
        return round(as_target)
    return as_target


def timeconvert(x: float, *, frm: str = "s", to: str = "s") -> float:
    """Convert a time amount between the units "s", "m" and "h" (case-insensitive).

    >>> timeconvert(1.5, frm="m")
    90.0
    """
    try:
        u_from = _TIME_UNITS[frm.lower()]
        u_to = _TIME_UNITS[to.lower()]
    except KeyError as e:
        raise ValueError(f"Unknown time unit {e.args[0]!r}, use one of {list(_TIME_UNITS)}") from None
    return x * u_from / u_to


def callstring(f: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Render a call of ``f`` with the given arguments as text, e.g. ``"f(1, 2, x=3)"``.

    Used in error messages. Arguments are shown with ``str()`` like upstream.
    """
    parts = [str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
    param_str = ", ".join(parts)
    if isinstance(f, partial):
        name = getattr(f.func, "__name__", str(f.func))
    elif hasattr(f, "__qualname__"):
        name = f.__qualname__
    elif hasattr(f, "__class__"):
        name = f.__class__.__name__
    else:  # pragma: no cover - every object has __class__
        name = str(f)
    return f"{name}({param_str})"


ProcessLike = Union[int, None, "psutil.Process"]


def _as_process(pid: ProcessLike) -> "psutil.Process":
    import psutil

    return pid if isinstance(pid, psutil.Process) else psutil.Process(pid)


def terminate_process(
    pid: ProcessLike = None,
    sig: int = signal.SIGTERM,
    timeout: int = 5,
    children: bool = True,
    parent: bool = False,
    on_terminate: Optional[Callable[["psutil.Process"], Any]] = None,
) -> Tuple[List["psutil.Process"], List["psutil.Process"]]:
    """Sends ``sig`` to a process (pynisher 1.0.10's helper, same signature and behaviour).

    With ``children=True`` this is `terminate_process_tree` (``include_parent=parent``).
    Otherwise only the process itself gets ``sig``; survivors after ``timeout`` seconds are
    SIGKILLed. Returns psutil's ``(gone, alive)`` lists. A process that is already gone is not an
    error (upstream raised ``psutil.NoSuchProcess`` there when it vanished in between).
    pynisher's own calls never need this: the engine kills a call's processes.
    """
    if children:
        return terminate_process_tree(pid=pid, include_parent=parent, sig=sig, timeout=timeout, on_terminate=on_terminate)
    import psutil

    try:
        process = _as_process(pid)
        process.send_signal(sig)
    except psutil.NoSuchProcess:
        return ([], [])
    gone, alive = psutil.wait_procs([process], timeout=timeout, callback=on_terminate)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs([process], timeout=timeout, callback=on_terminate)


def terminate_process_tree(
    pid: ProcessLike = None,
    sig: int = signal.SIGTERM,
    timeout: int = 5,
    include_parent: bool = True,
    on_terminate: Optional[Callable[["psutil.Process"], Any]] = None,
) -> Tuple[List["psutil.Process"], List["psutil.Process"]]:
    """Sends ``sig`` to the descendants of a process (and the process itself with
    ``include_parent``), SIGKILLs what is left after ``timeout`` seconds, waits for all of them,
    and returns psutil's ``(gone, alive)`` lists (pynisher 1.0.10's helper).

    ``pid`` None means this process; then ``include_parent=True`` raises ``RuntimeError``.
    """
    import psutil

    this = pid.pid if isinstance(pid, psutil.Process) else (os.getpid() if pid is None else pid)
    if this == os.getpid() and include_parent:
        raise RuntimeError(f"Can't kill this process ({pid}) from within itself")
    process: Optional[psutil.Process] = None
    try:
        process = _as_process(this if pid is None else pid)
        targets = process.children(recursive=True)
    except psutil.NoSuchProcess:
        targets = []
    if include_parent and process is not None:
        targets.append(process)
    for p in targets:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(targets, timeout=timeout, callback=on_terminate)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs(targets, timeout=None, callback=on_terminate)


class Monitor:
    """Memory use and address-space limit of a process (upstream's psutil-based helper).

    Reads ``/proc`` directly, so psutil is not needed.

    Parameters
    ----------
    pid : int | None
        The process to look at; None = this process.
    """

    def __init__(self, pid: Optional[int] = None) -> None:
        self.pid = os.getpid() if pid is None else pid

    def memory(self, units: str = "B", *, kind: str = "vms") -> float:
        """Current memory use: ``kind`` "vms" (virtual size) or "rss" (resident), in ``units``
        ("B", "KB", "MB", "GB", case-insensitive)."""
        fields = {"vms": "VmSize:", "rss": "VmRSS:"}
        if kind not in fields:
            raise ValueError(f"No memory kind {kind}, use one of {list(fields)}")
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(fields[kind]):
                    kib = int(line.split()[1])
                    return memconvert(kib * 1024, frm="B", to=units)
        raise ValueError(f"/proc/{self.pid}/status has no {fields[kind]} line")

    def memlimit(self, units: str = "B") -> Optional[Tuple[float, float]]:
        """The (soft, hard) address-space limit (``RLIMIT_AS``; -1 = unlimited) in ``units``."""
        if self.pid == os.getpid():
            limits = resource.getrlimit(resource.RLIMIT_AS)
        else:
            limits = _rlimit_as_of(self.pid)
        if units.upper() == "B":
            return limits
        return (
            limits[0] if limits[0] < 0 else memconvert(limits[0], frm="B", to=units),
            limits[1] if limits[1] < 0 else memconvert(limits[1], frm="B", to=units),
        )


def _rlimit_as_of(pid: int) -> Tuple[int, int]:
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max address space"):
                soft, hard = line.split()[3:5]
                return (
                    -1 if soft == "unlimited" else int(soft),
                    -1 if hard == "unlimited" else int(hard),
                )
    return (-1, -1)
