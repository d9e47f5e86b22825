"""The pynisher 1.x API's arguments: ``wall_time`` / ``cpu_time`` / ``memory`` as 1.x accepts
them (numbers, ``(value, unit)`` tuples) turned into seconds and bytes, with errors that name the
parameter and the value the user passed."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple, Union

from pynisher._bounds import check_bytes, check_seconds, shown
from pynisher.util import memconvert, timeconvert

#: Smallest accepted ``wall_time`` / ``cpu_time`` in seconds (upstream: 1).
MIN_SECONDS = 0.01

MemoryArg = Union[int, float, Tuple[float, str], List[Any], None]
TimeArg = Union[int, float, Tuple[float, str], List[Any], None]



def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _seconds(name: str, value: TimeArg) -> Optional[float]:
    """``wall_time`` / ``cpu_time`` → seconds (int kept as int), validated, or None."""
    if value is None:
        return None
    raw = value
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not _is_number(value[0]) or not isinstance(value[1], str):
            raise ValueError(f"`{name}` {raw!r} must be seconds or a (value, unit) tuple")
        try:
            value = timeconvert(value[0], frm=value[1])
        except ValueError as e:
            raise ValueError(f"`{name}` {raw!r}: {e}") from None
        # Keep whole numbers as ints so messages read "2 seconds", not "2.0 seconds".
        if float(value).is_integer():
            value = int(value)
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"`{name}` {shown(raw)} must be a finite number of seconds")
    if not value >= MIN_SECONDS:
        raise ValueError(f"`{name}` {shown(raw)} must be >= {MIN_SECONDS} seconds")
    check_seconds(name, raw, value)
    return value


def _memory_bytes(value: MemoryArg) -> Optional[int]:
    """``memory`` → bytes (an int means bytes, as in 1.x), validated, or None."""
    if value is None:
        return None
    raw = value
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not _is_number(value[0]) or not isinstance(value[1], str):
            raise ValueError(f"`memory` {raw!r} must be bytes or a (value, unit) tuple")
        if not math.isfinite(value[0]):
            raise ValueError(f"`memory` {shown(raw)} must be a finite amount of memory")
        try:
            value = memconvert(value[0], frm=value[1])
        except ValueError as e:
            raise ValueError(f"`memory` {shown(raw)}: {e}") from None
        except OverflowError:  # finite, but too many bytes for a float
            check_bytes("memory", raw, math.inf)
    if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError(f"`memory` {shown(raw)} must be a finite number of bytes")
    assert isinstance(value, (int, float))
    check_bytes("memory", raw, value)
    value = round(value)
    if not value >= 1:
        raise ValueError(f"`memory` {shown(raw)} must be >= 1 Byte")
    return value
