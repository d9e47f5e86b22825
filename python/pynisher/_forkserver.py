"""The ``forkserver`` context: a small long-lived server forks a supervisor per call.

Why: forking the caller costs time proportional to its memory (about 35 ms per GiB), and starting
a fresh interpreter costs tens of milliseconds. The server is a fresh, small interpreter with
pynisher already imported; forking it is cheap whatever the caller's size.

Shape::

    caller ──control socketpair (SEQPACKET, fds passed with SCM_RIGHTS)──► server
       │                                                                    │ fork per call
       └──────────── per-call socketpair (request, then outcome) ──────► supervisor
                                                                            │ engine fork mode
                                                                            ▼
                                                                   the call's child (function)

* The server is started once per caller process (lazily, by `run`) with `subprocess` in its own
  session, never by `multiprocessing`, so it works inside daemonic processes (Dask nanny workers,
  ``multiprocessing.Pool`` workers). It exits when the caller exits (it watches the caller's pidfd)
  or when the control socket closes.
* Per call the caller makes a socketpair and passes one end, with its current stdout and stderr,
  to the server; the server forks a supervisor, which reads the request (limits, settings and the
  cloudpickled call), runs it with the engine's fork mode (`pynisher._core.run_fork`) and sends the
  outcome back. The engine's observer watches the socket: when the caller hangs up (Ctrl-C, death)
  the call is cancelled and its process tree killed.
* The server and supervisors ignore SIGINT: a terminal's Ctrl-C is the caller's to handle.
* The server is also the **janitor** of the fork and spawn contexts: those calls' children are
  children of the caller and die with it (the engine sets PDEATHSIG), but what *they* started
  would not. The caller registers each such call's process group (`Server.watch`) while it runs;
  when the caller dies, the server kills the registered groups before it exits.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from functools import partial
from typing import Any, Dict, Optional

_LENGTH = struct.Struct("<Q")
_PID = struct.Struct("<i")
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
        bootstrap = (
            "import sys; sys.path.insert(0, {!r}); from pynisher._forkserver import serve; serve()"
        ).format(package_parent)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", bootstrap, str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            theirs.close()
        self.control = ours
        self.owner = os.getpid()
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

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

    def watch(self, pgid: int) -> None:
        """Asks the server to kill process group ``pgid`` if this process dies before `unwatch`."""
        with self.lock:
            self.control.send(b"W" + _PID.pack(pgid))

    def unwatch(self, pgid: int) -> None:
        with self.lock:
            self.control.send(b"U" + _PID.pack(pgid))

    def close(self) -> None:
        """Lets the server go (end of file on its control socket) and waits for it briefly."""
        try:
            self.control.close()
        finally:
            try:
                self.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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
    return server.process.pid if server is not None and server.alive() else None


def run(func, args, kwargs, limits: Dict[str, Any], soft: Dict[str, Optional[int]]) -> Dict[str, Any]:
    """Runs one call through the server; returns the engine's outcome dict (see `_core`)."""
    from pynisher import _run

    blob = _run.encode_call_or_raise(func, args, kwargs, "forkserver")
    request = pickle.dumps((limits, _run.call_settings(soft), blob), protocol=pickle.HIGHEST_PROTOCOL)
    conn, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            _get_server().submit(theirs)
        except OSError:
            # The server went away between the liveness check and the send: once more, afresh.
            shutdown()
            _get_server().submit(theirs)
        theirs.close()
        try:
            _send_message(conn, request)
            reply = _recv_message(conn)
        except KeyboardInterrupt:
            _cancel(conn)
            raise
        except (OSError, EOFError) as err:
            raise _run._library_error(f"the forkserver's supervisor went away: {err}", err) from err
    finally:
        theirs.close()
        conn.close()
    kind, body = pickle.loads(reply)
    if kind == "ok":
        return body
    if kind == "value_error":
        raise ValueError(body)
    if kind == "engine_error":
        from pynisher import _core

        raise _core.EngineError(body)
    raise _run._library_error(f"the forkserver's supervisor failed: {body}")


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


def _reap() -> int:
    """Reaps finished supervisors; returns how many are still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            return 1


class _ServerState:
    def __init__(self, control: socket.socket, caller_fd: Optional[int]) -> None:
        self.control = control
        self.caller_fd = caller_fd
        self.watched: set = set()
        self.running = 0

    def handle_one(self) -> bool:
        """Handles one control message; False when the control socket is closed."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 16, 3)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not message:
            return False
        try:
            kind = message[:1]
            if kind == b"W":
                self.watched.add(_PID.unpack(message[1:5])[0])
            elif kind == b"U":
                self.watched.discard(_PID.unpack(message[1:5])[0])
            elif kind == b"C" and len(fds) == 3:
                _fork_supervisor(fds, self.control, self.caller_fd)
                self.running = 1
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def kill_watched(self) -> None:
        """The caller is gone (or let us go): what it was still running dies with it. Reads
        the registrations still queued first (the caller may have died before we read them)."""
        self.control.setblocking(False)
        for _ in range(100_000):
            try:
                message, fds, _, _ = socket.recv_fds(self.control, 16, 3)
            except OSError:
                break
            for fd in fds:
                os.close(fd)
            if not message:
                break
            if message[:1] == b"W":
                self.watched.add(_PID.unpack(message[1:5])[0])
            elif message[:1] == b"U":
                self.watched.discard(_PID.unpack(message[1:5])[0])
        for pgid in self.watched:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass


def serve() -> None:
    """The server's main loop (``argv[1]`` is the caller's pid)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    caller = int(sys.argv[1])
    control = socket.socket(fileno=int(os.environ.pop(_CONTROL_FD_ENV)))
    try:
        caller_fd: Optional[int] = os.pidfd_open(caller)
    except (AttributeError, OSError):
        caller_fd = None  # old kernel, or the caller is gone: the control socket's EOF tells
    state = _ServerState(control, caller_fd)
    try:
        if os.getppid() != caller:
            return
        # Import now what every call needs, so that supervisors inherit it.
        from pynisher import _core, _run, _worker  # noqa: F401

        try:
            import cloudpickle  # noqa: F401  (lambdas and closures arrive pickled by value)
        except ImportError:
            pass

        poller = select.poll()
        poller.register(control, select.POLLIN)
        if caller_fd is not None:
            poller.register(caller_fd, select.POLLIN)
        while True:
            events = poller.poll(1000 if state.running else None)
            state.running = _reap()
            for fd, _ in events:
                if fd == caller_fd or not state.handle_one():
                    return
    finally:
        state.kill_watched()


def _fork_supervisor(fds, control: socket.socket, caller_fd: Optional[int]) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            control.close()
            if caller_fd is not None:
                os.close(caller_fd)
            _supervise(*fds)
            code = 0
        finally:
            os._exit(code)


def _supervise(conn_fd: int, stdout_fd: int, stderr_fd: int) -> None:
    """One call, in a child of the server: read the request, run it, send the outcome."""
    from pynisher import _core, _worker

    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    for fd in (stdout_fd, stderr_fd):
        if fd > 2:
            os.close(fd)
    conn = socket.socket(fileno=conn_fd)
    try:
        request = _recv_message(conn)
    except (OSError, EOFError):
        return
    reply: Any
    try:
        limits, settings, blob = pickle.loads(request)
        child = partial(_worker.execute_blob, settings, blob)
        reply = ("ok", _core.run_fork(child, limits, cancel_fd=conn.fileno()))
    except ValueError as err:
        reply = ("value_error", str(err))
    except _core.EngineError as err:
        reply = ("engine_error", str(err))
    except BaseException as err:
        reply = ("error", f"{type(err).__name__}: {err}")
    try:
        _send_message(conn, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass  # the caller is gone; the call is already over
