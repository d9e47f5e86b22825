"""The ``forkserver`` context: a small long-lived server forks each call's child.

Why: forking the caller costs time proportional to its memory (about 35 ms per GiB), and starting
a fresh interpreter costs tens of milliseconds. The server is a fresh, small interpreter with
pynisher already imported; forking it is cheap whatever the caller's size.

Shape::

    caller thread ──its connection (socketpair, kept): request, [STARTED], outcome──► server
    caller ──control socketpair (SEQPACKET): new connections, preloads──────────────► main loop

* The server is started once per caller process (lazily) with `subprocess`, in its own session,
  never by `multiprocessing`, so it works inside daemonic processes (Dask nanny workers,
  ``multiprocessing.Pool`` workers). The process `subprocess` starts opens a pidfd on the caller,
  forks the server and exits at once: the server is **not the caller's child** (a caller's
  ``os.wait()`` loop never waits for it). It exits when the caller exits (it watches the caller's
  pidfd) or when the control socket closes.
* Each caller thread keeps a connection to the server (made at its first call, its end passed
  over the control socket). A call is one message on it: the lengths, the head the server reads
  (limits, when the caller wants the pid), the body only the call's child reads (settings and
  the cloudpickled call), and the caller's current stdout and stderr plus the descriptors of
  multiprocessing objects among the arguments (SCM_RIGHTS). The server hands the call to a parked
  child (`pynisher._warm`) or forks one, and the outcome comes back on the same connection
  (`pynisher._forkserver_server`). A caller that hangs up or shuts its end (Ctrl-C, death)
  cancels its call: its process tree is killed; the connection is then dropped.
* The server imports the caller's function modules once (``preload``), as `multiprocessing`'s
  forkserver preloads ``__main__``, so calls find them imported.
* The server ignores SIGINT: a terminal's Ctrl-C is the caller's to handle.
* The server has an engine guard of its own (as every caller process does, `_calls.install_guard`):
  if the server is killed, the guard kills its calls' whole trees and removes their leaves.
"""

from __future__ import annotations

import atexit
import errno
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from pynisher import _calls, _core

_LENGTH = struct.Struct("<Q")
#: A request's first bytes: the lengths of its head (for the server) and its body (for the child).
_HEAD = struct.Struct("<QQ")
_PID = struct.Struct("<i")
#: First byte of the message that tells the caller its call's pid, before the outcome (a pickle,
#: whose first byte is never this).
_STARTED = b"S"
#: First byte of the outcome message (see `_core.decode_outcome`); the server's own error replies
#: are pickles.
_OUTCOME = b"O"
#: How long a call runs before the server tells an API object's `_core.ChildSlot` its pid (a
#: STARTED message; a shorter call's pid comes with its outcome). Waking the caller for that
#: message made a short call 20-40 % slower (the wake-up lands beside the call's child on its way
#: out), and nobody can act on the pid of a call over within a few milliseconds.
TELL_SLOT_PID_AFTER = 0.005
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
            "from pynisher._forkserver_server import serve\n"
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

    def connect(self) -> socket.socket:
        """A new connection to the server (for one caller thread): our end; the server's end
        goes over the control socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                socket.send_fds(self.control, [b"C"], [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

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
    kept = getattr(_kept, "conn", None)
    _kept.conn = None
    if kept is not None:
        kept[1].close()  # our copy; the parent's stays open


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
    # When the caller wants the call's pid (a STARTED message before the outcome): a callback
    # (`run_limited`'s on_start) at once, as its contract says; an API object's slot once the
    # call has run `TELL_SLOT_PID_AFTER`, else with the outcome; nobody: never.
    if on_start is None:
        tell_pid_after = None
    elif isinstance(on_start, _core.ChildSlot):
        tell_pid_after = TELL_SLOT_PID_AFTER
    else:
        tell_pid_after = 0.0
    head = pickle.dumps((limits, tell_pid_after), protocol=pickle.HIGHEST_PROTOCOL)
    body = pickle.dumps((_calls.call_settings(soft, limits), blob), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        reply, told = _exchange(func, head, body, fds, on_start)
    except (ConnectionResetError, BrokenPipeError):
        # The server died with our request unread, or before it went out (so the call never
        # started; a child it had just forked may hold its sockets open for a moment, so it can
        # still look alive): once more, with a fresh server.
        shutdown()
        reply, told = _exchange(func, head, body, fds, on_start)
    if reply[:1] == _OUTCOME:
        # The engine's encoding, sent by the server's finisher thread (`_core.send_outcome_when_done`).
        outcome = _core.decode_outcome(reply[1:])
        if on_start is not None and not told:
            on_start(outcome["pid"])  # over before the server told it
        return outcome
    kind, body = pickle.loads(reply)
    if kind == "value_error":
        raise ValueError(body)
    if kind == "not_enforceable":
        raise _core.NotEnforceableError(*body)
    if kind == "engine_error":
        raise _core.EngineError(body)
    raise _calls.library_error(f"the forkserver's supervisor failed: {body}")


#: Connections of the calls in flight in this process (any thread), with whether Ctrl-C cancelled
#: them (`cancel_in_flight`).
_in_flight: Dict[socket.socket, bool] = {}
_in_flight_lock = threading.Lock()
#: Each thread's kept connection, as (the server it leads to, the connection); empty while a call
#: of the thread uses it (a call made meanwhile, by a signal handler, makes its own).
_kept = threading.local()


def _take_connection(server: _Server) -> socket.socket:
    kept = getattr(_kept, "conn", None)
    _kept.conn = None
    if kept is not None:
        if kept[0] is server:
            return kept[1]
        kept[1].close()  # to a server that is gone
    return server.connect()


def _keep_connection(server: _Server, conn: socket.socket) -> None:
    if getattr(_kept, "conn", None) is None:
        _kept.conn = (server, conn)
    else:
        conn.close()


def cancel_in_flight() -> None:
    """Cancels every forkserver call of this process in flight (Ctrl-C in the main thread): each
    finisher sees its connection shut, kills the call's tree and reports; the waiting thread then
    raises KeyboardInterrupt."""
    with _in_flight_lock:
        conns = list(_in_flight)
        for conn in conns:
            _in_flight[conn] = True
    for conn in conns:
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _send_request(conn: socket.socket, head: bytes, body: bytes, fds: List[int]) -> None:
    """One message: the lengths, the head and the body, with our stdout and stderr and ``fds``."""
    parts = [_HEAD.pack(len(head), len(body)), head, body]
    std = [_valid_fd_or_devnull(1), _valid_fd_or_devnull(2)]
    try:
        sent = socket.send_fds(conn, parts, std + fds, socket.MSG_NOSIGNAL)
    finally:
        for fd in std:
            if fd not in (1, 2):
                os.close(fd)
    rest = b"".join(parts)[sent:] if sent < sum(map(len, parts)) else b""
    if rest:
        conn.sendall(rest)


def _exchange(func: Any, head: bytes, body: bytes, fds: List[int], on_start=None) -> Tuple[bytes, bool]:
    """Sends one call to the server and waits for its outcome: the reply, and whether the call's
    pid came before it (``on_start`` was called). Anything that interrupts the wait (Ctrl-C, an
    exception raised by a signal handler) cancels the call, and is re-raised only once the call's
    processes are gone."""
    server = _get_server()
    try:
        server.preload(func)
        conn = _take_connection(server)
    except OSError as err:
        if err.errno in (errno.EMFILE, errno.ENFILE):
            raise  # no descriptor for a connection: the server is fine
        # The server went away between the liveness check and the send: once more, afresh.
        shutdown()
        server = _get_server()
        conn = _take_connection(server)
    with _in_flight_lock:
        _in_flight[conn] = False
    done = told = False
    try:
        try:
            _send_request(conn, head, body, fds)
        except (BrokenPipeError, ConnectionResetError):
            if _in_flight.get(conn):
                # Ctrl-C shut the connection while we sent: nothing started.
                raise KeyboardInterrupt("the call was cancelled by Ctrl-C") from None
            raise
        try:
            reply = _recv_message(conn)
            if reply[:1] == _STARTED:
                # The call's child exists (its pid follows); the outcome comes next.
                told = True
                if on_start is not None:
                    on_start(_PID.unpack_from(reply, 1)[0])
                reply = _recv_message(conn)
        except ConnectionResetError:
            raise  # the server died with our request unread: `run` tries once more
        except (OSError, EOFError) as err:
            if _in_flight.get(conn):
                raise KeyboardInterrupt("the call was cancelled by Ctrl-C") from None
            raise _calls.library_error(f"the forkserver went away during the call: {err}", err) from err
        except BaseException:
            _cancel(conn)
            raise
        if _in_flight.get(conn):
            raise KeyboardInterrupt("the call was cancelled by Ctrl-C in the main thread")
        done = True
        return reply, told
    finally:
        with _in_flight_lock:
            _in_flight.pop(conn, None)
        if done:
            _keep_connection(server, conn)
        else:
            conn.close()


def _cancel(conn: socket.socket) -> None:
    """Tells the finisher to cancel (end of file), then waits until it reports the call's
    processes gone, so that KeyboardInterrupt is raised only afterwards."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(_CANCEL_CONFIRM_TIMEOUT)
        _recv_message(conn)
    except (OSError, EOFError):
        pass
