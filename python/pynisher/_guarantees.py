"""Backend choice and weaker guarantees, shared by both APIs (pure Python: importing it does not
load the native engine).

* `resolve_backend`: ``backend=`` or the environment variable ``PYNISHER_BACKEND`` (for code you
  cannot edit), checked against the names of the command line's ``--backend``.
* `warn_weaknesses`: one `PynisherWarning` per process and kind of weakness (see
  `CallResult.weaknesses`), so that a weaker guarantee is said aloud once, not on every call.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Optional, Set, Tuple

from pynisher.exceptions import PynisherWarning

#: Chooses the backend of every call that does not pass ``backend=``.
BACKEND_ENV = "PYNISHER_BACKEND"


def resolve_backend(backend: Optional[str]) -> str:
    """The backend a call uses: ``backend`` when given, else ``$PYNISHER_BACKEND``, else "auto";
    an unknown name is a ValueError naming where it came from."""
    source = "backend"
    if backend is None:
        backend = getenv(BACKEND_ENV) or "auto"
        source = BACKEND_ENV
    names = _backend_names()
    if backend not in names:
        raise ValueError(f"invalid value for {source}: {backend!r} (one of {', '.join(names)})")
    return backend


def getenv(name: str) -> Optional[str]:
    """``os.environ.get(name)``, read on every call's path. ``os.environ.get`` runs four Python
    functions of `os` (and builds two KeyErrors when the variable is unset): in a process that
    forks on every call each first touches pages again, a dozen page faults (~40 µs). This reads
    the dictionary of bytes that `os.environ` keeps current (CPython's ``os.environ._data``) and
    falls back to ``os.environ.get`` where there is none."""
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict or not _BYTES_ENVIRON:
        return os.environ.get(name)
    value = data.get(name.encode(_FS_ENCODING, "surrogateescape"))
    return None if value is None else value.decode(_FS_ENCODING, "surrogateescape")


_FS_ENCODING = sys.getfilesystemencoding()
_BYTES_ENVIRON = os.name == "posix"

_BACKENDS: Tuple[str, ...] = ()


def _backend_names() -> Tuple[str, ...]:
    """The engine's backend names, as the command line's --backend takes them (the engine is
    loaded at the first call, not when this module is imported)."""
    global _BACKENDS
    if not _BACKENDS:
        from pynisher import _core

        _BACKENDS = tuple(_core.BACKENDS)
    return _BACKENDS


#: (pid, weakness name) pairs already warned about: one warning per process and kind.
_WARNED: Set[Tuple[int, str]] = set()


def warn_weaknesses(result: Any, stacklevel: int) -> None:
    """Emits one `PynisherWarning` per process and kind of weakness of ``result`` (a
    `CallResult`), naming the backend and what is weaker. ``stacklevel`` is the caller's own."""
    weaknesses = result.weaknesses
    if not weaknesses:
        return
    pid = os.getpid()
    for name, description in weaknesses.items():
        if (pid, name) in _WARNED:
            continue
        _WARNED.add((pid, name))
        warnings.warn(
            f"pynisher backend {result.backend!r}: {description} ({name}; strict=True refuses "
            "such calls)",
            PynisherWarning,
            stacklevel=stacklevel + 1,
        )
