"""The caller's side of a call's encoding, for spawn and forkserver: the call as cloudpickle bytes,
multiprocessing objects with their descriptors (forkserver), and the caller's main script.

The child's side (decoding, running the main script as ``__mp_main__``) is `pynisher._worker`, which
must stay cheap to import in every spawn child; this module is imported by the caller only.

multiprocessing pickles functions and classes of the main script by reference, and its spawn
and forkserver children run the script as `__mp_main__` first (`multiprocessing.spawn.prepare`:
the `if __name__ == "__main__":` block does not run), so those references resolve to the real
objects. Only then can the child pickle them by reference in turn: an Enum of the script put on
a multiprocessing Queue by the function, a result holding an instance of a script class.

Here: when the call refers to objects of a main script that a child can run (a file, or a
module run with -m), it is pickled twice -- the script's objects by reference, and all by value
(cloudpickle) -- behind the marker `_MAIN`. The child runs the script as `__mp_main__` and
takes the first; if running the script fails (an unguarded script that makes pynisher calls or
starts processes at its top level, as multiprocessing would refuse too), it takes the second, as
before. Calls that do not refer to the main script are pickled once, as before.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Tuple

from pynisher._worker import _MAIN, _PROTOCOL, InheritedFd

try:
    import _pickle as pickle
except ImportError:  # pragma: no cover - other interpreters
    import pickle  # type: ignore[no-redef]


class FdCollector:
    """multiprocessing's spawning-Popen interface, collecting the descriptors to send."""

    DupFd = InheritedFd

    def __init__(self) -> None:
        self.fds: List[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1


def encode_call_with_fds(
    func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]
) -> Tuple[bytes, List[int]]:
    """`encode_call`, letting multiprocessing objects through with their descriptors (forkserver
    only: the descriptors must be sent with the request)."""
    mp_context = sys.modules.get("multiprocessing.context")
    mp_reduction = sys.modules.get("multiprocessing.reduction")
    if mp_context is None or mp_reduction is None:
        return encode_call(func, args, kwargs), []
    import io

    collector = FdCollector()
    previous = mp_context.get_spawning_popen()  # type: ignore[attr-defined]
    mp_context.set_spawning_popen(collector)  # type: ignore[attr-defined]
    try:

        def dump(main_by_reference: bool) -> Tuple[bytes, bool]:
            buffer = io.BytesIO()
            pickler = _main_aware(_multiprocessing_pickler())(buffer, protocol=_PROTOCOL)
            pickler.main_by_reference = main_by_reference
            pickler.dump((func, args, kwargs))
            return buffer.getvalue(), pickler.main_refs

        return _encode_for_main(dump), collector.fds
    finally:
        mp_context.set_spawning_popen(previous)  # type: ignore[attr-defined]


_MP_PICKLER: Any = None


def _multiprocessing_pickler() -> Any:
    """cloudpickle's Pickler with multiprocessing's own reducers (Connections, sockets, ...) in
    front, as `multiprocessing.reduction.ForkingPickler` pickles for a spawned process."""
    global _MP_PICKLER
    if _MP_PICKLER is None:
        from collections import ChainMap
        from multiprocessing.reduction import ForkingPickler

        import cloudpickle  # type: ignore[import-untyped]

        class MultiprocessingCloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
            dispatch_table = ChainMap(
                ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
                cloudpickle.Pickler.dispatch_table,
            )

        _MP_PICKLER = MultiprocessingCloudPickler
    return _MP_PICKLER


def encode_call(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bytes:
    """The caller's side for spawn and forkserver: the call as cloudpickle bytes (lambdas and
    closures included; see `_encode_for_main` for objects of the main script). Raises whatever
    cloudpickle raises for an unpicklable call."""
    import io

    import cloudpickle  # type: ignore[import-untyped]

    def dump(main_by_reference: bool) -> Tuple[bytes, bool]:
        buffer = io.BytesIO()
        pickler = _main_aware(cloudpickle.Pickler)(buffer, protocol=_PROTOCOL)
        pickler.main_by_reference = main_by_reference
        pickler.dump((func, args, kwargs))
        return buffer.getvalue(), pickler.main_refs

    return _encode_for_main(dump)


def main_script() -> Dict[str, str]:
    """How a child finds the caller's main script, as `multiprocessing.spawn.get_preparation_data`
    tells it: ``{"name": module}`` (run with -m), ``{"path": file}``, or ``{}`` (none: -c, REPL)."""
    main = sys.modules.get("__main__")
    if main is None:
        return {}
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name is not None:
        # multiprocessing does not re-run a package's __main__ (python -m pytest, -m pkg).
        if name == "__main__" or name.endswith(".__main__"):
            return {}
        return {"name": name}
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        return {}
    if not os.path.isabs(path):
        mp_process = sys.modules.get("multiprocessing.process")
        base = getattr(mp_process, "ORIGINAL_DIR", None) or os.getcwd()
        path = os.path.join(base, path)
    path = os.path.normpath(path)
    return {"path": path} if _only_definitions_at_top_level(path) else {}


_GUARDED: Dict[Tuple[str, float], bool] = {}


def _only_definitions_at_top_level(path: str) -> bool:
    """Whether running the script as ``__mp_main__`` only defines things: its top level holds
    imports, definitions, assignments and ``if __name__ == "__main__":`` blocks, nothing else
    (a loop or a bare call there would run again in the child -- the seed README's examples do
    that, and multiprocessing cannot run them under spawn). Cached per file version."""
    try:
        key = (path, os.stat(path).st_mtime)
    except OSError:
        return False
    if key not in _GUARDED:
        import ast

        try:
            with open(path, "rb") as fh:
                tree = ast.parse(fh.read(), path)
        except (OSError, SyntaxError, ValueError):
            _GUARDED[key] = False
            return False
        allowed = (
            ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
            ast.Assign, ast.AnnAssign, ast.Pass,
        )

        def definition(node: Any) -> bool:
            if isinstance(node, allowed):
                return True
            if isinstance(node, ast.Expr):  # a docstring
                return isinstance(node.value, ast.Constant)
            if isinstance(node, ast.Try):  # try: import x / except ImportError: ...
                return all(definition(n) for n in node.body + node.orelse + node.finalbody)
            if isinstance(node, ast.If):
                return "__name__" in ast.dump(node.test) or all(
                    definition(n) for n in node.body + node.orelse
                )
            return False

        _GUARDED[key] = all(definition(node) for node in tree.body)
    return _GUARDED[key]


def _main_global(obj: Any) -> bool:
    """Whether ``obj`` is a function or class of the main script, reachable there by name."""
    import types

    if not isinstance(obj, (type, types.FunctionType)) or getattr(obj, "__module__", None) != "__main__":
        return False
    qualname = getattr(obj, "__qualname__", "")
    if not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    found: Any = sys.modules.get("__main__")
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is obj


#: `_main_aware`'s classes by base: made once, not on every call (a class statement per call
#: was a tenth of a forkserver caller's own time).
_MAIN_AWARE: Dict[Any, Any] = {}


def _main_aware(base: Any) -> Any:
    """``base`` (a cloudpickle Pickler class) pickling the main script's objects by reference
    while ``main_by_reference``; ``main_refs`` tells whether it did."""
    made = _MAIN_AWARE.get(base)
    if made is None:
        made = _MAIN_AWARE[base] = _make_main_aware(base)
    return made


def _make_main_aware(base: Any) -> Any:
    class MainAwarePickler(base):  # type: ignore[misc, valid-type]
        main_by_reference = False
        main_refs = False

        def reducer_override(self, obj: Any) -> Any:
            if self.main_by_reference and _main_global(obj):
                self.main_refs = True
                return NotImplemented  # the standard pickler: a reference `__main__.<name>`
            return super().reducer_override(obj)

    return MainAwarePickler


def _encode_for_main(dump: "Callable[[bool], Tuple[bytes, bool]]") -> bytes:
    script = main_script()
    if not script:
        return dump(False)[0]
    by_reference, refers = dump(True)
    if not refers:
        return by_reference
    by_value = dump(False)[0]
    return _MAIN + pickle.dumps((script, by_reference, by_value), protocol=_PROTOCOL)
