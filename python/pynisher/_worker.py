"""The child's side of a call: run the function, encode what happened, send it back.

Used three ways:

* **fork** and **forkserver**: `execute` / `execute_blob` run inside the forked child (the engine
  sends the bytes they return as the result frame);
* **spawn**: a fresh interpreter loads this file as a top-level module (not through the
  ``pynisher`` package, whose ``__init__`` imports the whole API) and calls `main`, which reads a
  length-prefixed request from stdin, runs it, and writes one result frame on the descriptor named by
  ``PYNISHER_RESULT_FD``.

The encoded result is a pickle of one tagged tuple (see `pynisher._calls.decode_result` for the
parent's side):

* ``("returned", value)``
* ``("raised", exception, traceback_text)``
* ``("unpicklable_return", type_name, reason)``
* ``("unpicklable_exception", type_name, message, traceback_text, reason)``

or, for a returned value of an exact scalar type (None, bool, int, float, complex, str, bytes),
`SCALAR` followed by the value in `marshal`'s format: the C pickler starts every dump with a
4 KiB buffer, and in a child forked from the caller that allocation alone copied a dozen pages
(a third of the result's cost for a trivial call).

Everything here must stay cheap to import: it runs in every spawn child. So the module imports
only ``os``, ``sys``, ``marshal`` (built in) and the C pickler at load time (``signal``, ``traceback``, ``typing`` and
``cloudpickle`` cost milliseconds each and are imported only when needed).
"""

from __future__ import annotations

import marshal
import os
import sys

try:
    import _pickle as pickle  # the C pickler alone: the `pickle` module also imports `re`
except ImportError:  # pragma: no cover - other interpreters
    import pickle  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

#: The environment variable naming the result descriptor (mirrors the engine's RESULT_FD_ENV).
RESULT_FD_ENV = "PYNISHER_RESULT_FD"
#: Result frame header (see transport.rs): magic, version 1, kind 0 (value), then the payload
#: length as 8 little-endian bytes.
_FRAME_PREFIX = b"PYNR\x01\x00"

_PROTOCOL = 5


def _dumps(obj: Any) -> bytes:
    """Pickles with the C pickler; falls back to cloudpickle for what only it can handle
    (lambdas, closures, classes defined in ``__main__`` of a spawned child)."""
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except Exception:
        import cloudpickle  # type: ignore[import-untyped]

        return cloudpickle.dumps(obj, protocol=_PROTOCOL)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def flush_std_streams() -> None:
    """Flushes stdout and stderr, ignoring a closed or broken stream."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _soft_signal_handler(exception_name: str) -> "Callable[[int, Any], None]":
    def handler(signum: int, frame: Any) -> None:
        import signal

        from pynisher import exceptions

        # Named here, not when installed: the install is on every call's path, the signal is not.
        signame = signal.Signals(signum).name
        cls = getattr(exceptions, exception_name)
        raise cls(
            f"{exception_name}: pynisher sent {signame} at the limit; the call is killed after "
            "its grace period"
        )

    return handler


def install_soft_signal_handlers(wall_signal: Optional[int], cpu_signal: Optional[int]) -> None:
    """Makes the soft signals of the grace period raise inside the function: the wall-time
    signal raises `WallTimeoutException`, the CPU-time one `CpuTimeoutException`."""
    import signal

    for signum, exception_name in (
        (cpu_signal, "CpuTimeoutException"),
        (wall_signal, "WallTimeoutException"),
    ):
        if signum:
            signal.signal(signum, _soft_signal_handler(exception_name))


def _ignore_soft_signals(wall_signal: Optional[int], cpu_signal: Optional[int]) -> None:
    """After the function ended, a late soft signal must not break sending its result."""
    if not (wall_signal or cpu_signal):
        return
    import signal

    for signum in (wall_signal, cpu_signal):
        if signum:
            try:
                signal.signal(signum, signal.SIG_IGN)
            except (OSError, ValueError):
                pass


#: First byte of an encoded result that is a marshalled scalar (a pickle starts with 0x80).
SCALAR = b"S"
#: The exact types `_encode_returned` sends with marshal (no subclass: marshal would lose it).
_SCALAR_TYPES = (type(None), bool, int, float, complex, str, bytes)


def _encode_returned(value: Any) -> bytes:
    if type(value) in _SCALAR_TYPES:
        return SCALAR + marshal.dumps(value)
    try:
        return pickle.dumps(("returned", value), _PROTOCOL)
    except Exception:
        pass
    try:
        import cloudpickle  # type: ignore[import-untyped]

        return cloudpickle.dumps(("returned", value), protocol=_PROTOCOL)
    except Exception as err:
        return _dumps(("unpicklable_return", _type_name(value), _describe(err)))


def _encode_raised(exc: BaseException, tb: str) -> bytes:
    try:
        data = _dumps(("raised", exc, tb))
        # An exception may pickle but not unpickle (a constructor whose arguments are not in
        # `args`); find out here, where the traceback can still be reported.
        pickle.loads(data)
        return data
    except BaseException as err:
        try:
            message = str(exc)
        except Exception:
            message = "<str() failed>"
        return _dumps(("unpicklable_exception", _type_name(exc), message, tb, _describe(err)))


def rebind_std_streams() -> None:
    """Points ``sys.stdout`` / ``sys.stderr`` at descriptors 1 and 2.

    For a forked child whose output is captured: the parent's stream objects may write elsewhere
    than the descriptors (pytest's capture, a notebook kernel), and the capture is at the
    descriptor level. Line-buffered, so that what was printed before a kill is not lost.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name, None)
        encoding = getattr(old, "encoding", None) or "utf-8"
        errors = getattr(old, "errors", None) or "backslashreplace"
        try:
            setattr(
                sys,
                name,
                open(fd, "w", encoding=encoding, errors=errors, closefd=False, buffering=1),
            )
        except OSError:
            pass


def _prepare_forked_multiprocessing() -> Any:
    """In a forked copy of the caller, what `multiprocessing.Process._bootstrap` does in its
    children, when the caller uses multiprocessing: no inherited child records or finalizers,
    and the registered after-fork hooks run (a Queue argument gets a fresh feeder thread and
    locks). Returns `multiprocessing.util` when it did this, else None."""
    mp_process = sys.modules.get("multiprocessing.process")
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_process is None or mp_util is None:
        return None
    if mp_process._children:  # type: ignore[attr-defined]
        mp_process._children = set()  # type: ignore[attr-defined]
    if mp_util._finalizer_registry:  # type: ignore[attr-defined]
        mp_util._finalizer_registry.clear()  # type: ignore[attr-defined]
    if len(mp_util._afterfork_registry):  # type: ignore[attr-defined]
        mp_util._run_after_forkers()  # type: ignore[attr-defined]
    return mp_util


def _finish_multiprocessing() -> None:
    """Runs multiprocessing's exit finalizers as a multiprocessing child would at exit: Queue
    feeder threads are flushed and joined, so what the function put on a Queue reaches the reader.
    Unlike `multiprocessing.util._exit_function`, does not join the function's own non-daemonic
    processes (they would hold the result back; the engine ends them with the call, as upstream
    pynisher killed them after sending the result)."""
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or not mp_util._finalizer_registry:  # type: ignore[attr-defined]
        return
    try:
        mp_util._run_finalizers(0)  # type: ignore[attr-defined]
        mp_util._run_finalizers()  # type: ignore[attr-defined]
    except Exception:
        pass


def _has_children() -> bool:
    """Whether this process has a child, living or a zombie, of any of its threads: a wait that
    neither blocks nor reaps (Linux waits for the children of every thread of a process). The
    engine's check where it is loaded (fork and forkserver children): it builds no exception."""
    core = sys.modules.get("pynisher._core")
    if core is not None:
        return core.has_children()
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WSTOPPED | os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except OSError:
        return True  # cannot tell: look the slow way
    return True


#: `pynisher._core.has_children` once the package has loaded the engine (`pynisher._calls` sets
#: it): `execute` calls it directly, without `_has_children`'s frame and lookup (in a forked
#: child each Python function entered copies pages).
_children_check: Optional[Callable[[], bool]] = None


def _end_descendants(within: float = 1.0) -> None:
    """SIGKILLs every descendant of this child and reaps them, as upstream's child did before it
    exited: the function's processes are gone, not zombies of whoever adopts orphans, when the
    caller gets the result. The engine still kills whatever escaped this."""
    if not _has_children():
        return
    import ctypes
    import signal
    import time

    try:  # PR_SET_CHILD_SUBREAPER: what the kills below orphan comes back to this process
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    pids: set = set()
    for _ in range(3):  # a process forking while we look: look again
        found = _descendant_pids(os.getpid()) - pids
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pids |= found
    deadline = time.monotonic() + within
    while pids and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            pids.discard(pid)
        else:
            time.sleep(0.001)


def _descendant_pids(root: int) -> set:
    children: Dict[int, list] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def execute(
    func: Callable[..., Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    wall_signal: Optional[int] = None,
    cpu_signal: Optional[int] = None,
    capture_output: bool = False,
    forked_caller: bool = False,
    end_descendants: bool = False,
) -> bytes:
    """Runs ``func(*args, **kwargs)`` in the call's child and returns the encoded outcome.

    ``wall_signal`` / ``cpu_signal``: the soft signals to turn into timeout exceptions (set only
    when the call has a grace period). ``capture_output``: rebind the Python-level streams to the
    (captured) descriptors first. ``forked_caller``: this child is a fork of the caller itself
    (the fork context), so multiprocessing state inherited from it is reset as in a
    multiprocessing child. ``end_descendants``: kill and reap the function's own processes
    before the result is sent (``terminate_child_processes=True``).
    """
    # The path of a call that returns is kept short: in a forked child every Python function
    # called and every object touched first copies a page (~3 µs each), so the rare cases are
    # told apart inline and only they call out.
    if forked_caller and "multiprocessing.util" in sys.modules:
        _prepare_forked_multiprocessing()
    if capture_output:
        rebind_std_streams()
    if wall_signal or cpu_signal:
        install_soft_signal_handlers(wall_signal, cpu_signal)
    try:
        value = func(*args, **kwargs)
    except BaseException as exc:
        _ignore_soft_signals(wall_signal, cpu_signal)
        import traceback

        tb = traceback.format_exc()
        _finish_multiprocessing()
        if end_descendants:
            _end_descendants()
        flush_std_streams()
        return _encode_raised(exc, tb)
    if wall_signal or cpu_signal:
        _ignore_soft_signals(wall_signal, cpu_signal)
    if "multiprocessing.util" in sys.modules:
        _finish_multiprocessing()
    if end_descendants and (_children_check or _has_children)():
        _end_descendants()
    for stream in (sys.stdout, sys.stderr):  # flush_std_streams, inline: one frame less
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    if type(value) in _SCALAR_TYPES:  # `_encode_returned`'s common case, inline
        return SCALAR + marshal.dumps(value)
    return _encode_returned(value)


#: Descriptors a forkserver call received with its request (see `InheritedFd`).
_inherited_fds: List[int] = []


class InheritedFd:
    """Stands for a descriptor of a multiprocessing object (a Queue's pipe) in a call's pickle.

    While the forkserver context pickles a call, it poses as multiprocessing's "spawning Popen",
    so that Queues, Pipes and Locks of a spawn/forkserver multiprocessing context can be passed as
    arguments (as to a `multiprocessing.Process`); their descriptors travel with the request
    (SCM_RIGHTS) and `detach` hands them out in the call's child.
    """

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        return _inherited_fds[self.index]


# ---- the caller's main module (the caller's side: `pynisher._encode`) ------------------------

#: First byte of an encoded call that carries the main script's references (pickles start 0x80).
_MAIN = b"M"
#: Set in a child while it runs the caller's main script: pynisher calls then refuse to start.
PREPARING_MAIN_ENV = "PYNISHER_PREPARING_MAIN"


def _prepare_main(script: Dict[str, str]) -> None:
    """Runs the caller's main script as `__mp_main__` and makes it this process's `__main__`,
    exactly as a multiprocessing spawn / forkserver child does (guarded code does not run)."""
    current = sys.modules.get("__main__")
    if "path" in script and getattr(current, "__file__", None) == script["path"]:
        return  # prepared already (a forkserver child of a server that did it)
    import multiprocessing.process
    import multiprocessing.spawn

    me = multiprocessing.process.current_process()
    os.environ[PREPARING_MAIN_ENV] = "1"
    # multiprocessing's own guard: a Process started while importing the main script raises.
    me._inheriting = True  # type: ignore[attr-defined]
    try:
        if "name" in script:
            multiprocessing.spawn._fixup_main_from_name(script["name"])  # type: ignore[attr-defined]
        else:
            multiprocessing.spawn._fixup_main_from_path(script["path"])  # type: ignore[attr-defined]
    finally:
        me._inheriting = False  # type: ignore[attr-defined]
        os.environ.pop(PREPARING_MAIN_ENV, None)


def _decode_call(blob: bytes) -> Any:
    """The (func, args, kwargs) of an encoded call, preparing the main script when it refers to it."""
    if blob[:1] != _MAIN:
        return pickle.loads(blob)
    script, by_reference, by_value = pickle.loads(blob[1:])
    saved = sys.modules.get("__main__")
    try:
        _prepare_main(script)
        return pickle.loads(by_reference)
    except BaseException:
        # The script cannot be run here: the objects travel by value, as without this.
        if saved is not None:
            sys.modules["__main__"] = saved
        return pickle.loads(by_value)


def execute_blob(settings: Dict[str, Any], blob: bytes, fds: Optional[List[int]] = None) -> bytes:
    """Like `execute`, for a call encoded by `pynisher._encode.encode_call` in another process.

    ``settings``: ``sys_path`` and ``cwd`` of the caller (applied before unpickling, so the
    function's module is found), ``wall_signal`` and ``cpu_signal``. A failure to unpickle the
    call (a module missing here) is reported like an exception raised by the function.
    """
    if fds:
        _inherited_fds[:] = fds
    # The soft signals may arrive while the function's modules are still being imported (a slow
    # import on a loaded machine took longer than the wall limit): they must find the handlers
    # already installed, or their default action kills this interpreter without a word.
    wall_signal, cpu_signal = settings.get("wall_signal"), settings.get("cpu_signal")
    if wall_signal or cpu_signal:
        install_soft_signal_handlers(wall_signal, cpu_signal)
    sys_path = settings.get("sys_path")
    if sys_path is not None:
        sys.path[:] = sys_path
    cwd = settings.get("cwd")
    try:
        if cwd is not None and cwd != os.getcwd():
            os.chdir(cwd)
        func, args, kwargs = _decode_call(blob)
    except BaseException as exc:
        _ignore_soft_signals(wall_signal, cpu_signal)
        import traceback

        return _encode_raised(exc, traceback.format_exc())
    return execute(
        func,
        args,
        kwargs,
        wall_signal,
        cpu_signal,
        end_descendants=bool(settings.get("end_descendants")),
    )


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: List[bytes] = []
    got = 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            raise EOFError(f"the request ended after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def frame_request(request: bytes) -> bytes:
    """The caller's side of `read_request`: the request prefixed with its length."""
    return len(request).to_bytes(8, "little") + request


def read_request(fd: int) -> bytes:
    """Reads one length-prefixed request (see `frame_request`). Never waits for end of file: a
    fork-context child that another thread of the caller forked meanwhile may hold a copy of the
    pipe's write end for as long as it lives."""
    size = int.from_bytes(_read_exactly(fd, 8), "little")
    return _read_exactly(fd, size)


def write_frame(fd: int, payload: bytes) -> None:
    """Writes one result frame (header + payload) on ``fd``."""
    data = memoryview(_FRAME_PREFIX + len(payload).to_bytes(8, "little") + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _receive_fds(address: bytes) -> List[int]:
    """Spawned child: fetch the descriptors of multiprocessing arguments from the caller, and
    hand them to `pynisher._worker` (the module the call's pickle names), not this copy."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
        _, fds, _, _ = socket.recv_fds(sock, 1, 64)
    finally:
        sock.close()
    if __name__ != "pynisher._worker":
        import importlib

        importlib.import_module("pynisher._worker")._inherited_fds[:] = fds
    return list(fds)


def main() -> None:
    """Entry point of a spawned child: length-prefixed request on stdin, result frame on ``PYNISHER_RESULT_FD``."""
    # Loaded as the top-level module `_worker` by the bootstrap: do not shadow a user's module.
    if __name__ == "_worker":
        sys.modules.pop("_worker", None)
    fd = int(os.environ.pop(RESULT_FD_ENV))
    request = read_request(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    settings, blob = pickle.loads(request)
    fds = _receive_fds(settings["fd_address"]) if settings.get("fd_address") else None
    encoded = execute_blob(settings, blob, fds)
    write_frame(fd, encoded)
    os.close(fd)
    flush_std_streams()
    # Like a forked child: no interpreter teardown, no atexit handlers of the function's modules.
    os._exit(0)


if __name__ == "__main__":
    main()
