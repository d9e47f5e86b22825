"""The ``forkserver`` context: a small long-lived server forks each call's child.

Why: forking the caller costs time proportional to its memory (about 35 ms per GiB), and starting
a fresh interpreter costs tens of milliseconds. The server is a fresh, small interpreter with
pynisher already imported; forking it is cheap whatever the caller's size.

Shape::

    caller ──control socketpair (SEQPACKET; descriptors passed with SCM_RIGHTS)──► server
       │                                                                  main loop: one thread
       └──────── per-call socketpair: request, then outcome ─────────► per call, which forks the
                                                                        call's child with the
                                                                        engine and waits for it

* The server is started once per caller process (lazily) with `subprocess`, in its own session,
  never by `multiprocessing`, so it works inside daemonic processes (Dask nanny workers,
  ``multiprocessing.Pool`` workers). The process `subprocess` starts opens a pidfd on the caller,
  forks the server and exits at once: the server is **not the caller's child** (a caller's
  ``os.wait()`` loop never waits for it). It exits when the caller exits (it watches the caller's
  pidfd) or when the control socket closes.
* Per call the caller makes a socketpair and passes one end, with its current stdout and stderr,
  to the server. A thread of the server reads the request (limits, settings, the cloudpickled
  call), starts the call with the engine's fork mode (`pynisher._core.start_fork`, interpreter
  lock held across the fork as `os.fork` does), waits for it with the lock released, and sends
  the outcome back. The wait watches the socket: when the caller hangs up (Ctrl-C, death) the
  call is cancelled and its process tree killed.
* The threads of the server only wait in the engine and pickle outcomes; they hold no lock that a
  call's child could need after the fork (the child's interpreter state is reset as after
  `os.fork`). The server imports the caller's function modules once (``preload``), as
  `multiprocessing`'s forkserver preloads ``__main__``, so calls find them imported.
* The server ignores SIGINT: a terminal's Ctrl-C is the caller's to handle.
* The server has an engine guard of its own (as every caller process does, `_calls.install_guard`):
  if the server is killed, the guard kills its calls' whole trees and removes their leaves.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from functools import partial
from typing import Any, Dict, List, Optional, Tuple

from pynisher import _calls, _core, _warm, _worker

_LENGTH = struct.Struct("<Q")
_PID = struct.Struct("<i")
#: First byte of the message that tells the caller its call's pid, before the outcome (a pickle,
#: whose first byte is never this).
_STARTED = b"S"
#: First byte of the outcome message (see `_core.decode_outcome`); the server's own error replies
#: are pickles.
_OUTCOME = b"O"
#: Environment variable telling the server its control descriptor.
_CONTROL_FD_ENV = "PYNISHER_FORKSERVER_FD"
#: How long a caller waits, after Ctrl-C, for the supervisor to confirm the tree is gone.
_CANCEL_CONFIRM_TIMEOUT = 5.0


def _send_message(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise EOFError(f"connection closed after {got} of {size} bytes")
        got += n
    return bytes(buf)


def _recv_message(sock: socket.socket) -> bytes:
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    return _recv_exactly(sock, size)


# --------------------------------------------------------------------------------------------
# Caller side
# --------------------------------------------------------------------------------------------


class _Server:
    """The caller's handle on its server process."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env[_CONTROL_FD_ENV] = str(theirs.fileno())
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # The started interpreter opens a pidfd on us (its parent, checked after opening), forks
        # the server and exits: the server is re-parented, never our child.
        bootstrap = (
            "import os, sys\n"
            "p = os.getppid()\n"
            "try:\n    fd = os.pidfd_open(p)\nexcept (AttributeError, OSError):\n    fd = -1\n"
            "if os.getppid() != p or os.fork() != 0:\n    os._exit(0)\n"
            "sys.path.insert(0, {!r})\n"
            "from pynisher._forkserver import serve\n"
            "serve(fd)\n"
        ).format(package_parent)
        try:
            intermediate = subprocess.Popen(
                [sys.executable, "-c", bootstrap],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            theirs.close()
        # It exits right after the fork (a caller reaping all its children may take it first).
        intermediate.wait()
        self.control = ours
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.preloaded: set = set()
        self.server_pid: Optional[int] = None

    def alive(self) -> bool:
        if self.owner != os.getpid() or self.control.fileno() < 0:
            return False
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        # The server's end closes only when it exits: a hang-up means it is gone.
        return not any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def pid(self) -> Optional[int]:
        """The server's pid (its first message on the control socket)."""
        if self.server_pid is None:
            poller = select.poll()
            poller.register(self.control, select.POLLIN)
            if poller.poll(10_000):
                try:
                    message = self.control.recv(16, socket.MSG_DONTWAIT)
                except OSError:
                    return None
                if message[:1] == b"I":
                    self.server_pid = _PID.unpack(message[1:5])[0]
        return self.server_pid

    def submit(self, conn: socket.socket) -> None:
        """Hands one end of a call's socketpair (and our stdout/stderr) to the server."""
        fds = [conn.fileno(), _valid_fd_or_devnull(1), _valid_fd_or_devnull(2)]
        try:
            with self.lock:
                socket.send_fds(self.control, [b"C"], fds)
        finally:
            for fd in fds[1:]:
                if fd not in (1, 2):
                    os.close(fd)

    def preload(self, func: Any) -> None:
        """Has the server import the module of ``func`` once, so that later calls find it
        imported (as `multiprocessing`'s forkserver preloads ``__main__``). Only for modules this
        process has imported already, never ``__main__`` (its functions travel by value)."""
        module = getattr(func, "__module__", None)
        if (
            not isinstance(module, str)
            or module in self.preloaded
            or module in ("__main__", "builtins")
            or module not in sys.modules
        ):
            return
        self.preloaded.add(module)
        message = b"P" + pickle.dumps((module, list(sys.path)), protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            self.control.send(message)

    def close(self) -> None:
        """Lets the server go (end of file on its control socket) and waits for it briefly."""
        pid = self.pid() if self.alive() else None
        self.control.close()
        if pid is None or pid == os.getpid():
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(1000):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        finally:
            os.close(pidfd)


_server: Optional[_Server] = None
_server_lock = threading.Lock()


def _valid_fd_or_devnull(fd: int) -> int:
    try:
        os.fstat(fd)
        return fd
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


def _get_server() -> _Server:
    global _server
    with _server_lock:
        server = _server
        if server is not None and server.alive():
            return server
        if server is not None and server.owner == os.getpid():
            # It died (killed from outside); start a new one.
            try:
                server.close()
            except OSError:
                pass
        # A server inherited through fork belongs to the parent: leave it alone, start our own.
        _server = _Server()
        atexit.register(_shutdown_at_exit, _server)
        return _server


def _forget_server_in_child() -> None:
    """A forked child has no server of its own yet, and the locks may have been held by another
    thread of the parent at the fork."""
    global _server, _server_lock, _in_flight, _in_flight_lock
    _server = None
    _server_lock = threading.Lock()
    _in_flight = {}
    _in_flight_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_server_in_child)


def _shutdown_at_exit(server: _Server) -> None:
    if server.owner == os.getpid():
        try:
            server.close()
        except OSError:
            pass


def get_server() -> Optional[_Server]:
    """This process's server (started if needed), or None when it cannot be started."""
    try:
        return _get_server()
    except OSError:
        return None


def shutdown() -> None:
    """Stops this process's server, if any (it would exit with the process anyway)."""
    global _server
    with _server_lock:
        if _server is not None and _server.owner == os.getpid():
            _server.close()
        _server = None


def server_pid() -> Optional[int]:
    """The pid of this process's running server, if it has one (for tests and benchmarks)."""
    server = _server
    return server.pid() if server is not None and server.alive() else None


def run(func, args, kwargs, limits: Dict[str, Any], soft: Dict[str, Optional[int]], on_start=None) -> Any:
    """Runs one call through the server; returns the engine's outcome dict (see `_core`)."""
    _calls.interpreter("forkserver")
    blob, fds = _calls.encode_call_or_raise(func, args, kwargs, "forkserver", with_fds=True)
    # Whether the caller wants the call's pid (a STARTED message before the outcome): one message
    # fewer each way when it does not.
    wants_pid = on_start is not None
    request = pickle.dumps(
        (limits, _calls.call_settings(soft, limits), blob, wants_pid), protocol=pickle.HIGHEST_PROTOCOL
    )
    try:
        reply = _exchange(func, request, fds, on_start)
    except ConnectionResetError:
        # The server died with our request unread (so the call never started): once more, with a
        # fresh server.
        shutdown()
        reply = _exchange(func, request, fds, on_start)
    if reply[:1] == _OUTCOME:
        # The engine's encoding, sent by the server's finisher thread (`_core.send_outcome_when_done`).
        return _core.decode_outcome(reply[1:])
    kind, body = pickle.loads(reply)
    if kind == "value_error":
        raise ValueError(body)
    if kind == "not_enforceable":
        raise _core.NotEnforceableError(*body)
    if kind == "engine_error":
        raise _core.EngineError(body)
    raise _calls.library_error(f"the forkserver's supervisor failed: {body}")


#: Sockets of the calls in flight in this process (any thread), with whether Ctrl-C cancelled
#: them (`cancel_in_flight`).
_in_flight: Dict[socket.socket, bool] = {}
_in_flight_lock = threading.Lock()


def cancel_in_flight() -> None:
    """Cancels every forkserver call of this process in flight (Ctrl-C in the main thread): each
    supervisor sees its socket's end of file, kills the call's tree and reports; the waiting
    thread then raises KeyboardInterrupt."""
    with _in_flight_lock:
        conns = list(_in_flight)
        for conn in conns:
            _in_flight[conn] = True
    for conn in conns:
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _exchange(func: Any, request: bytes, fds: List[int], on_start=None) -> bytes:
    """Sends one call to the server and waits for its outcome. Anything that interrupts the wait
    (Ctrl-C, an exception raised by a signal handler) cancels the call, and is re-raised only once
    the call's processes are gone."""
    conn, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with _in_flight_lock:
        _in_flight[conn] = False
    try:
        try:
            server = _get_server()
            server.preload(func)
            server.submit(theirs)
        except OSError:
            # The server went away between the liveness check and the send: once more, afresh.
            shutdown()
            _get_server().submit(theirs)
        theirs.close()
        try:
            prefix = _LENGTH.pack(len(request))
            if fds:
                socket.send_fds(conn, [prefix], fds)
                conn.sendall(request)
            else:
                conn.sendall(prefix + request)
            reply = _recv_message(conn)
            if reply[:1] == _STARTED:
                # The call's child exists (its pid follows); the outcome comes next.
                if on_start is not None:
                    on_start(_PID.unpack_from(reply, 1)[0])
                reply = _recv_message(conn)
        except ConnectionResetError:
            raise
        except (OSError, EOFError) as err:
            if _in_flight.get(conn):
                raise KeyboardInterrupt("the call was cancelled by Ctrl-C") from None
            raise _calls.library_error(f"the forkserver went away during the call: {err}", err) from err
        except BaseException:
            _cancel(conn)
            raise
        if _in_flight.get(conn):
            raise KeyboardInterrupt("the call was cancelled by Ctrl-C in the main thread")
        return reply
    finally:
        with _in_flight_lock:
            _in_flight.pop(conn, None)
        theirs.close()
        conn.close()


def _cancel(conn: socket.socket) -> None:
    """Tells the supervisor to cancel (end of file), then waits until it reports the call's
    processes gone, so that KeyboardInterrupt is raised only afterwards."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(_CANCEL_CONFIRM_TIMEOUT)
        _recv_message(conn)
    except (OSError, EOFError):
        pass


# --------------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------------


class _ServerState:
    """The server: a main loop reading the control socket and starting calls; each started call
    is waited for by a finisher thread of the engine's side (`_core.send_outcome_when_done`),
    which sends the outcome to the caller without the interpreter lock and then reports the call
    done on the done pipe, which the main loop reads."""

    def __init__(self, control: socket.socket, caller_fd: Optional[int]) -> None:
        self.control = control
        self.caller_fd = caller_fd
        #: Descriptors held for calls in flight (closed in every call's child but its own).
        self.call_fds: set = set()
        #: The calls in flight by pid (also their process group): their sockets and descriptors.
        self.in_flight: Dict[int, Tuple[socket.socket, List[int]]] = {}
        #: The server's ends of the parked children's sockets (closed in every call's child).
        self.parked_fds: set = set()
        #: A finisher writes a call's pid here (4 bytes) once its outcome was sent.
        self.done_read, self.done_write = os.pipe2(os.O_CLOEXEC)
        self.warm = _warm.WarmPool(partial(_call_child, self), _recv_request, self.parked_fds)

    def handle_one(self) -> bool:
        """Handles one control message; False when the control socket is closed."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 3)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not message:
            return False
        kind = message[:1]
        if kind == b"C" and len(fds) == 3:
            # Out of the way of the descriptors the engine sets up in the child (0-3).
            moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
            for fd in fds:
                os.close(fd)
            self.start_call(moved)
            return True
        for fd in fds:
            os.close(fd)
        if kind == b"P":
            _preload(message[1:])
        return True

    def start_call(self, fds: List[int]) -> None:
        """Reads a call's request and hands it to the parked child, or forks its child (in this,
        the main thread: no thread start on the way), then hands the wait to a waiter thread."""
        conn_fd, out_fd, err_fd = fds
        self.call_fds.update(fds)
        conn = socket.socket(fileno=conn_fd)
        try:
            request, passed = _recv_request(conn)
            if passed:
                fds.extend(passed)
                self.call_fds.update(passed)
            limits, settings, blob, wants_pid = pickle.loads(request)
            capture = bool(limits.get("capture_output"))
            started = self.warm.start(limits, settings, blob, fds, capture)
            warm = started is not None
            if started is None:
                child = partial(_call_child, self, settings, blob, fds, capture)
                started = _core.start_fork(child, limits)
            if wants_pid:
                try:
                    _send_message(conn, _STARTED + _PID.pack(started.pid))
                except OSError:
                    pass  # the caller hung up: the waiter sees it and cancels the call
        except (OSError, EOFError):
            self.end_call(conn, fds, None)
        except ValueError as err:
            self.end_call(conn, fds, ("value_error", str(err)))
        except _core.NotEnforceableError as err:
            self.end_call(conn, fds, ("not_enforceable", err.args))
        except _core.EngineError as err:
            self.end_call(conn, fds, ("engine_error", str(err)))
        except Exception as err:
            self.end_call(conn, fds, ("error", f"{type(err).__name__}: {err}"))
        else:
            self.in_flight[started.pid] = (conn, fds)
            try:
                _core.send_outcome_when_done(started, conn.fileno(), self.done_write)
            except _core.EngineError as err:
                del self.in_flight[started.pid]
                self.end_call(conn, fds, ("engine_error", str(err)))
                return
            if warm:
                # The next warm child is forked now, while this call's child runs on the other
                # CPU; the call's outcome does not need the interpreter lock the fork holds.
                self.warm.refill()

    def read_done(self, block: bool = False) -> None:
        """Ends the calls whose outcomes were sent (their pids on the done pipe)."""
        if not block and not select.select([self.done_read], [], [], 0)[0]:
            return
        pids = os.read(self.done_read, 4 * 256)
        for (pid,) in _PID.iter_unpack(pids[: len(pids) - len(pids) % 4]):
            entry = self.in_flight.pop(pid, None)
            if entry is not None:
                self.end_call(entry[0], entry[1], None)

    def end_calls_in_flight(self, timeout: float = 2.0) -> None:
        """The caller is gone: its calls see their sockets hang up and are cancelled by their
        finishers (the engine kills and reaps each call's tree); wait for that, then kill the
        process group of any call still listed."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.done_read], [], [], left)[0]:
                break
            self.read_done(block=True)
        for pgid in list(self.in_flight):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass

    def end_call(self, conn: socket.socket, fds: List[int], reply: Any) -> None:
        try:
            if reply is not None:
                _send_message(conn, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass  # the caller is gone; the call is already over
        finally:
            self.call_fds.difference_update(fds)
            conn.close()
            for fd in fds[1:]:
                os.close(fd)


def _preload(message: bytes) -> None:
    import importlib

    try:
        module, sys_path = pickle.loads(message)
        sys.path[:] = sys_path
        importlib.import_module(module)
    except BaseException:
        pass  # the call itself will report what is wrong with the module


def _call_child(
    state: _ServerState,
    settings: Dict[str, Any],
    blob: bytes,
    fds: List[int],
    capture_output: bool,
) -> bytes:
    """Runs in the call's child (a fork of the server): the caller's stdout and stderr unless
    the engine captures them, none of the server's other descriptors (only those passed with
    this call's request), then the call."""
    _, out_fd, err_fd = fds[:3]
    passed = fds[3:]
    if not capture_output:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
    inherited = set(state.call_fds) | set(state.parked_fds)
    inherited |= {state.control.fileno(), state.done_read, state.done_write}
    if state.caller_fd is not None:
        inherited.add(state.caller_fd)
    for fd in inherited - {0, 1, 2} - set(passed):
        try:
            os.close(fd)
        except OSError:
            pass
    return _worker.execute_blob(settings, blob, passed)


def _recv_request(conn: socket.socket) -> Tuple[bytes, List[int]]:
    """A call's request, and the descriptors sent with its first bytes (multiprocessing objects
    among the arguments)."""
    head, passed, _, _ = socket.recv_fds(conn, _LENGTH.size, 64)
    if not head:
        raise EOFError("the caller hung up before sending its request")
    if len(head) < _LENGTH.size:
        head += _recv_exactly(conn, _LENGTH.size - len(head))
    (size,) = _LENGTH.unpack(head)
    return _recv_exactly(conn, size), list(passed)


def serve(caller_fd: int) -> None:
    """The server's main loop; ``caller_fd`` is a pidfd on the caller (-1 on an old kernel)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(os.environ.pop(_CONTROL_FD_ENV)))
    caller: Optional[int] = caller_fd if caller_fd >= 0 else None
    state = _ServerState(control, caller)
    try:
        try:
            control.send(b"I" + _PID.pack(os.getpid()))
        except OSError:
            return
        # Import now what every call needs, so that call children inherit it.
        try:
            import cloudpickle  # type: ignore[import-untyped]  # noqa: F401  (lambdas and closures arrive pickled by value)
        except ImportError:
            pass
        # What exists now is never collected: call children then do not copy the pages that a
        # collection would touch.
        gc.freeze()
        poller = select.poll()
        poller.register(control, select.POLLIN)
        if caller is not None:
            poller.register(caller, select.POLLIN)
        poller.register(state.done_read, select.POLLIN)
        while True:
            # Fork the next warm child now, off the calls' path, when nothing else waits.
            events = poller.poll(0 if state.warm.needs_refill() else None)
            if not events:
                state.warm.refill()
            for fd, _ in events:
                if fd == state.done_read:
                    state.read_done(block=True)
                elif fd == caller or not state.handle_one():
                    return
    finally:
        state.warm.discard_all()
        state.end_calls_in_flight()
