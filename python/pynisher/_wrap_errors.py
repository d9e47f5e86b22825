"""``wrap_errors`` of the 1.x API: validation in the caller, matching in the child.

Runs *in the child*, as upstream's did: the parent only ever unpickles a `PynisherException`,
never the original exception type, so the caller does not import the module that defines it
(upstream's "namespace pollution" feature, e.g. not importing sklearn).
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Dict, List, Optional, Union

from pynisher.exceptions import (
    CpuTimeoutException,
    MemoryLimitException,
    PynisherException,
    RemoteTraceback,
    WallTimeoutException,
)

_WRAP_KEYS = ("memory", "wall_time", "cpu_time", "pynisher")


def _check_wrap_entry(entry: Any) -> None:
    if isinstance(entry, str) or (isinstance(entry, type) and issubclass(entry, BaseException)):
        return
    if isinstance(entry, tuple) and len(entry) in (2, 3):
        _check_wrap_entry(entry[0])
        if all(isinstance(code, int) for code in entry[1:]):
            return
    raise ValueError(
        f"`wrap_errors` entry {entry!r} must be an exception class, a class name,"
        " (ExcType, errno) or (ExcType, errno, winerror)"
    )


def _wrap_entries(value: Any) -> List[Any]:
    """A dict value or list of `wrap_errors` → list of entries (a lone tuple entry allowed)."""
    if isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], int):
        value = [value]
    if isinstance(value, (str, type)):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"`wrap_errors` value {value!r} must be a list of exception classes or names")
    entries = list(value)
    for entry in entries:
        _check_wrap_entry(entry)
    return entries


def _normalise_wrap_errors(wrap_errors: Any) -> Union[bool, Dict[str, List[Any]]]:
    if isinstance(wrap_errors, bool):
        return wrap_errors
    if isinstance(wrap_errors, (list, tuple, set, frozenset)):
        return {"pynisher": _wrap_entries(list(wrap_errors))}
    if isinstance(wrap_errors, dict):
        unknown = [k for k in wrap_errors if k not in _WRAP_KEYS]
        if unknown:
            raise ValueError(
                f"`wrap_errors` has unknown key in {list(wrap_errors)}, each must be in {list(_WRAP_KEYS)}"
            )
        return {k: _wrap_entries(v) for k, v in wrap_errors.items()}
    raise ValueError(f"`wrap_errors` {wrap_errors!r} must be a bool, a list or a dict")


# --------------------------------------------------------------------------------------------
# child side of `wrap_errors`


def _matches(err: BaseException, entry: Any) -> bool:
    if isinstance(entry, str):
        return any(cls.__name__ == entry for cls in type(err).__mro__)
    if isinstance(entry, type):
        return isinstance(err, entry)
    # (ExcType, errno) or (ExcType, errno, winerror); "winerror" is the real attribute name.
    if not _matches(err, entry[0]) or getattr(err, "errno", None) != entry[1]:
        return False
    return len(entry) == 2 or getattr(err, "winerror", None) == entry[2]


def _wrap_error(
    err: Exception,
    wrap_errors: Union[bool, Dict[str, List[Any]]],
    memory: bool,
    cpu_time: bool,
    wall_time: bool,
) -> Optional[PynisherException]:
    """The pynisher exception ``err`` becomes under ``wrap_errors``, or None to keep ``err``."""
    message = f"Wrapped Exception {type(err).__name__} - {err}"
    # A MemoryError under a memory limit is the limit, whatever `wrap_errors` says.
    if memory and isinstance(err, MemoryError):
        return MemoryLimitException(message)
    if wrap_errors is True:
        return PynisherException(message)
    if wrap_errors is False:
        return None
    rules = (
        ("cpu_time", cpu_time, CpuTimeoutException),
        ("wall_time", wall_time, WallTimeoutException),
        ("memory", memory, MemoryLimitException),
        ("pynisher", True, PynisherException),
    )
    for key, active, exc_type in rules:
        if active and any(_matches(err, entry) for entry in wrap_errors.get(key, ())):
            return exc_type(message)
    return None


class _WrapErrors:
    """Calls the function *in the child* and applies ``wrap_errors`` there.

    Doing it child-side means the parent only ever unpickles a `PynisherException`, never the
    original exception type, so the caller's process does not import the module that defines it
    (upstream's "namespace pollution" feature, e.g. not importing sklearn).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        wrap_errors: Union[bool, Dict[str, List[Any]]],
        memory: bool,
        cpu_time: bool,
        wall_time: bool,
    ) -> None:
        self.func = func
        self.wrap_errors = wrap_errors
        self.memory = memory
        self.cpu_time = cpu_time
        self.wall_time = wall_time

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.func(*args, **kwargs)
        except PynisherException:
            raise
        except Exception as err:
            wrapped = _wrap_error(err, self.wrap_errors, self.memory, self.cpu_time, self.wall_time)
            if wrapped is None:
                raise
            original = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        # Raised outside the `except` block and with the original only as *text*: some pickle
        # reducers (tblib, installed by dask.distributed) also pickle __cause__ / __context__,
        # which would ship the original exception -- and import its module -- in the parent.
        wrapped.__cause__ = RemoteTraceback(original)
        raise wrapped
