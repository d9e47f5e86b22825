"""API surface of both generations: names, exception tree, units, validation, pickling.

No limited call runs here except where stated; see test_api_v1.py / test_api_v0.py for those.
"""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys

import pytest

import pynisher
import pynisher.exceptions
import pynisher.support
import pynisher.util
from pynisher import EMPTY, Pynisher, limit, restricted
from pynisher.util import callstring, memconvert, timeconvert

import pyn_helpers as h

V1_EXPORTS = [
    "Pynisher", "EMPTY", "limit", "restricted", "CpuTimeoutException", "MemoryLimitException",
    "PynisherException", "TimeoutException", "WallTimeoutException", "contexts", "supports",
    "supports_walltime", "supports_cputime", "supports_memory", "supports_limit_decorator",
]
V0_EXPORTS = [
    "enforce_limits", "CpuTimeoutException", "TimeoutException", "MemorylimitException",
    "SubprocessException", "PynisherError", "SignalException", "AnythingException",
]


@pytest.mark.parametrize("name", sorted(set(V1_EXPORTS + V0_EXPORTS)))
def test_exports(name: str) -> None:
    assert hasattr(pynisher, name), name


def test_exception_tree() -> None:
    E = pynisher
    assert issubclass(E.PynisherException, Exception)
    assert issubclass(E.TimeoutException, E.PynisherException)
    assert issubclass(E.WallTimeoutException, E.TimeoutException)
    assert issubclass(E.CpuTimeoutException, E.TimeoutException)
    assert issubclass(E.MemoryLimitException, E.PynisherException)
    assert issubclass(E.MemoryLimitException, MemoryError)
    assert [c.__name__ for c in E.MemoryLimitException.__mro__][:3] == [
        "MemoryLimitException", "PynisherException", "MemoryError"]
    # The 0.x spelling is the same class, so `exit_status is MemorylimitException` holds.
    assert E.MemorylimitException is E.MemoryLimitException
    for name in ("SubprocessException", "PynisherError", "SignalException", "AnythingException"):
        cls = getattr(E, name)
        assert issubclass(cls, E.PynisherException)
        assert not issubclass(cls, E.TimeoutException)
        assert getattr(pynisher.exceptions, name) is cls
    # The cause carrier is not a PynisherException, so `except PynisherException` never catches it.
    assert not issubclass(pynisher.exceptions.RemoteTraceback, E.PynisherException)


@pytest.mark.parametrize(
    "cls",
    [pynisher.PynisherException, pynisher.TimeoutException, pynisher.WallTimeoutException,
     pynisher.CpuTimeoutException, pynisher.MemoryLimitException, pynisher.SubprocessException,
     pynisher.PynisherError, pynisher.SignalException, pynisher.AnythingException,
     pynisher.exceptions.RemoteTraceback],
)
def test_exceptions_pickle_round_trip(cls: type) -> None:
    err = cls("message")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.args == ("message",)
    assert str(back) == "message"


@pytest.mark.parametrize("cls", [pynisher.MemoryLimitException, pynisher.WallTimeoutException,
                                 pynisher.AnythingException])
def test_exceptions_rebuild_with_dunder_new(cls: type) -> None:
    # tblib (installed process-wide by dask.distributed) unpickles exceptions with
    # `cls.__new__(cls, *args)`; for MemoryLimitException that used to raise TypeError.
    err = cls.__new__(cls, "message")
    assert type(err) is cls and err.args == ("message",)


def test_exceptions_survive_tblib_pickling() -> None:
    tblib_pickling = pytest.importorskip("tblib.pickling_support", reason="tblib is not installed")
    code = (
        "import pickle, tblib.pickling_support as t, pynisher\n"
        "t.install()\n"
        "for cls in (pynisher.MemoryLimitException, pynisher.WallTimeoutException):\n"
        "    e = pickle.loads(pickle.dumps(cls('m')))\n"
        "    assert type(e) is cls and e.args == ('m',), e\n"
        "print('ok')\n"
    )
    del tblib_pickling
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_class_aliases_on_pynisher() -> None:
    for name in ("WallTimeoutException", "CpuTimeoutException", "MemoryLimitException",
                 "PynisherException", "TimeoutException"):
        assert getattr(Pynisher, name) is getattr(pynisher, name)
    assert limit is Pynisher


def test_contexts_and_supports() -> None:
    assert pynisher.contexts == ["fork", "spawn", "forkserver"]
    for feature in ("wall_time", "cpu_time", "memory", "decorator", "WALL_TIME", "walltime", "cputime"):
        assert pynisher.supports(feature) is True
        assert Pynisher.supports(feature) is True
    for f in (pynisher.supports_walltime, pynisher.supports_cputime, pynisher.supports_memory,
              pynisher.supports_limit_decorator):
        assert f() is True
    with pytest.raises(ValueError, match="feature"):
        pynisher.supports("gpu")


def test_memconvert_timeconvert() -> None:
    assert memconvert(1, frm="GB") == 2**30
    assert memconvert(100, frm="mb") == 100 * 2**20
    assert memconvert(2**20, to="KB") == 1024.0
    assert memconvert(1.5, frm="KB") == 1536
    assert isinstance(memconvert(1.5, frm="KB"), int)
    assert timeconvert(1.5, frm="m") == 90
    assert timeconvert(2, frm="H") == 7200
    assert timeconvert(90, to="m") == 1.5
    with pytest.raises(ValueError):
        memconvert(1, frm="TB")


def test_callstring() -> None:
    import functools

    assert callstring(h.add, 1, b=2) == "add(1, b=2)"
    assert callstring(functools.partial(h.add, 1), 2) == "add(2)"
    assert callstring(h.TwoArgError, 1, "x") == "TwoArgError(1, x)"


def test_units_and_attributes() -> None:
    p = limit(h.add, memory=(1, "GB"), wall_time=(1.5, "m"), cpu_time=(2, "s"))
    assert p.memory == 2**30
    assert p.wall_time == 90
    assert p.cpu_time == 2
    assert limit(h.add, memory=1234).memory == 1234  # an int is bytes, as in 1.x
    assert limit(h.add, memory=[10, "KB"]).memory == 10240  # SMAC passes lists too
    # Deliberate deviation: float seconds are accepted and tuples are not rounded.
    assert limit(h.add, wall_time=0.5).wall_time == 0.5
    assert limit(h.add, wall_time=(1.4, "s")).wall_time == 1.4
    assert p.func is h.add and p.raises is True and p.warnings is True
    assert p.wrap_errors is False and p.terminate_child_processes is True
    assert p.forceful_keyboard_interrupt is True
    assert p.context.get_start_method() in pynisher.contexts


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"func": 3}, r"func"),
        ({"memory": 0}, r"memory"),
        ({"memory": -1}, r"memory"),
        ({"memory": (0, "MB")}, r"memory"),
        ({"memory": (1, "TB")}, r"memory"),
        ({"memory": "1GB"}, r"memory"),
        ({"cpu_time": 0}, r"cpu_time"),
        ({"cpu_time": -2}, r"cpu_time"),
        ({"cpu_time": (1, "days")}, r"cpu_time"),
        ({"wall_time": 0}, r"wall_time"),
        ({"wall_time": 0.001}, r"wall_time"),
        ({"wall_time": float("inf")}, r"wall_time"),
        ({"wall_time": True}, r"wall_time"),
        ({"context": "bogus"}, r"context"),
        ({"context": 3}, r"context"),
        ({"wrap_errors": {"disk": [ValueError]}}, r"wrap_errors"),
        ({"wrap_errors": [3]}, r"wrap_errors"),
        ({"wrap_errors": "ValueError"}, r"wrap_errors"),
    ],
)
def test_validation_names_the_parameter(kwargs: dict, pattern: str) -> None:
    func = kwargs.pop("func", h.add)
    with pytest.raises(ValueError, match=pattern):
        limit(func, **kwargs)


def test_context_accepts_objects_and_names() -> None:
    for method in pynisher.contexts:
        assert limit(h.add, context=method).context.get_start_method() == method
        ctx = multiprocessing.get_context(method)
        assert limit(h.add, context=ctx).context is ctx


def test_default_context_is_not_fixed_as_side_effect() -> None:
    # Run in a fresh interpreter: nothing there has chosen a start method yet.
    code = (
        "import multiprocessing as mp, pynisher, pyn_helpers as h\n"
        "p = pynisher.limit(h.add, wall_time=5)\n"
        "o = pynisher.enforce_limits(wall_time_in_s=5)(h.add)\n"
        "o2 = pynisher.enforce_limits()(h.has_parent_marker)\n"
        "assert p(1, 2) == 3 and o(1, 2) == 3\n"
        "assert mp.get_start_method(allow_none=True) is None, mp.get_start_method(allow_none=True)\n"
        "before = p.context.get_start_method()\n"
        "mp.set_start_method('spawn')  # would raise if pynisher had fixed the default\n"
        "import json; json._pynisher_test_marker = True\n"
        "# The default is looked up per call: objects made before set_start_method follow it.\n"
        "print(before, p.context.get_start_method(), p(1, 2),\n"
        "      pynisher.limit(h.has_parent_marker)(), o.__wrapped__ is h.add,\n"
        "      o2())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    default = multiprocessing.get_all_start_methods()[0]
    assert out.stdout.split() == [default, "spawn", "3", "False", "True", "False"]


def test_empty_sentinel() -> None:
    assert repr(EMPTY) == "EMPTY"
    assert not EMPTY
    assert pickle.loads(pickle.dumps(EMPTY)) is EMPTY
    assert type(EMPTY).__name__ == "_EMPTY"


def test_context_manager_returns_itself() -> None:
    p = limit(h.add, wall_time=5)
    with p as lf:
        assert lf is p


def test_pynisher_objects_pickle_and_still_work() -> None:
    p = limit(h.add, memory=(512, "MB"), wall_time=5, cpu_time=5, context="forkserver",
              wrap_errors={"memory": [ImportError]}, name="pickled")
    q = pickle.loads(pickle.dumps(p))
    assert (q.memory, q.wall_time, q.cpu_time, q.name) == (p.memory, p.wall_time, p.cpu_time, "pickled")
    assert q.context.get_start_method() == "forkserver"
    assert q(2, 3) == 5  # a real call with the unpickled object


def test_restricted_misuse() -> None:
    with pytest.raises(ValueError, match=r"Please pass arguments to decorator `@restricted`"):

        @restricted  # type: ignore[arg-type]
        def f(x: int) -> int:
            return x

    with pytest.raises(ValueError, match=r"wall_time"):
        restricted(wall_time=-1)(h.add)


def test_enforce_limits_validation() -> None:
    for kw, name in [({"mem_in_mb": 0}, "mem_in_mb"), ({"cpu_time_in_s": -1}, "cpu_time_in_s"),
                     ({"wall_time_in_s": "2"}, "wall_time_in_s"), ({"num_processes": 0}, "num_processes"),
                     ({"grace_period_in_s": -1}, "grace_period_in_s"), ({"context": "bogus"}, "context")]:
        with pytest.raises(ValueError, match=name):
            pynisher.enforce_limits(**kw)


def test_py_typed_ships() -> None:
    from pathlib import Path

    assert (Path(pynisher.__file__).parent / "py.typed").exists()


def test_monitor() -> None:
    import resource

    from pynisher.util import Monitor

    m = Monitor()
    vms, rss = m.memory("MB"), m.memory("mb", kind="rss")
    assert 1 < rss <= vms
    assert m.memory() == pytest.approx(vms * 2**20, rel=0.05)
    with pytest.raises(ValueError):
        m.memory(kind="swap")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    sleeper = subprocess.Popen(["sleep", "30"], preexec_fn=cap)
    try:
        assert Monitor(sleeper.pid).memlimit() == (2**30, 2**30)
        assert Monitor(sleeper.pid).memlimit("GB") == (1.0, 1.0)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_import_is_light() -> None:
    # Spawned children that unpickle one of the package's wrappers import `pynisher`: keep the
    # heavy standard modules out of that import (they cost ~15 ms each per spawned call).
    code = (
        "import sys, pynisher\n"
        "heavy = [m for m in ('multiprocessing', 'importlib.metadata', 'logging', 'subprocess') if m in sys.modules]\n"
        "print(heavy, pynisher.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    heavy, version = out.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert version.strip()
