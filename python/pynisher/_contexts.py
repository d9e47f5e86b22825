"""``context`` → the engine start method a call uses (both APIs).

The engine starts a call's child three ways: ``"fork"``, ``"spawn"``, ``"forkserver"``. Users
name one of them, pass a multiprocessing context object, or pass None for the interpreter's
default start method. Libraries register start methods of their own: inside a ``joblib.Parallel``
worker (loky backend) or a ``loky.get_reusable_executor()`` worker the default is ``"loky"``.
Such methods, as a default or as a context object, are mapped to the closest engine method:

* ``"loky"`` and ``"loky_init_main"`` start a fresh interpreter and ship the function with
  cloudpickle: ``"spawn"`` does the same.
* Any other method name a library registers: ``"spawn"`` too (a fresh interpreter works wherever
  the library's own method did; fork would copy state the library chose not to copy).

A start-method *string* given explicitly must be one of the engine's three (as in pynisher 1.x);
anything else is a ``ValueError`` naming ``context`` and the value.
"""

from __future__ import annotations

from typing import Any, Tuple

__all__ = ["ENGINE_METHODS", "default_method", "engine_method", "fixed_method", "resolve"]

#: The start methods the engine implements (same order as upstream's `pynisher.contexts`).
ENGINE_METHODS = ("fork", "spawn", "forkserver")

#: Start methods registered by libraries → the engine method that behaves closest.
_CLOSEST = {"loky": "spawn", "loky_init_main": "spawn"}


def engine_method(name: str) -> str:
    """The engine start method for a multiprocessing start method name (see the module doc)."""
    if name in ENGINE_METHODS:
        return name
    return _CLOSEST.get(name, "spawn")


def _default_context() -> Tuple[str, Any]:
    """The interpreter's default start method and context object, *without* fixing it.

    ``multiprocessing.get_context()`` locks the default in as a side effect when none was set
    (a later ``set_start_method`` then fails), so it is only asked once a default is set.
    """
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        method = multiprocessing.get_all_start_methods()[0]
        return method, multiprocessing.get_context(method)
    return method, multiprocessing.get_context()


def resolve(context: Any) -> Tuple[str, Any]:
    """``context`` → (engine start method, a context object for introspection).

    Never fixes the interpreter's default start method as a side effect.
    """
    # Imported here, not at module level: `import pynisher` also happens in every spawned child
    # that unpickles a wrapper from this package, and multiprocessing costs ~15 ms to import.
    import multiprocessing
    import multiprocessing.context

    if context is None or isinstance(context, multiprocessing.context.DefaultContext):
        method, ctx = _default_context()
        return engine_method(method), ctx
    if isinstance(context, str):
        if context not in ENGINE_METHODS:
            raise ValueError(f"`context` {context!r} must be in {list(ENGINE_METHODS)}")
        return context, multiprocessing.get_context(context)
    get = getattr(context, "get_start_method", None)
    if not callable(get):
        raise ValueError(
            f"`context` {context!r} must be a start method name in {list(ENGINE_METHODS)}"
            " or a multiprocessing context"
        )
    method = get()
    if not isinstance(method, str):
        raise ValueError(f"`context` {context!r} has no start method name (got {method!r})")
    return engine_method(method), context


def fixed_method(context: Any) -> Any:
    """The engine start method ``context`` always stands for (a method name, a context object
    other than the default one), or None when it follows the interpreter's default and must be
    looked up at each call. ``context`` is already checked by `resolve`."""
    if isinstance(context, str):
        return context
    if context is None:
        return None
    import multiprocessing.context

    if isinstance(context, multiprocessing.context.DefaultContext):
        return None
    return engine_method(context.get_start_method())


def default_method() -> str:
    """The engine start method of the interpreter's default, as `resolve(None)` gives it,
    without the context object (asked on every call of an API object made with
    ``context=None``; never fixes the default)."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        method = multiprocessing.get_all_start_methods()[0]
    return engine_method(method)
