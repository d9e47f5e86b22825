"""The forkserver's server side (see `pynisher._forkserver` for the shape and the caller's side).

One thread, the main loop, reads the control socket (new connections, preloads) and the callers'
connections (one per caller thread; a request is one message: lengths, the head for the server,
the body for the call's child, and descriptors). Per request it hands the call to a parked child
(`pynisher._warm`) or forks one (`pynisher._core.start_fork`, interpreter lock held across the
fork as `os.fork` does), passes the wait to a finisher thread of the engine's side
(`_core.send_outcome_when_done`: it waits, and writes the outcome to the caller's connection,
without the interpreter lock), and forks the next parked child (when: below). The finisher
reports the call done on the done pipe (after the outcome, the child's exit and cleanup); the
main loop then closes the call's descriptors and listens to the connection again. The server
never unpickles the call itself (the body): the call's child does.

When the next warm child is forked matters: glibc's `fork` holds the allocator's locks in the
server for its whole length (about 0.5-1 ms here), and a finisher that allocates or frees in that
time (it does, between the call's result and its outcome) waits for it. So a call that is the only
one in flight is left alone: the refill comes once it is reported done, or once it has run for
`REFILL_DEFER` (`_ServerState.refill_wait`); with several calls in flight (caller threads) the
refill follows the hand-off.

Every fork leaves the server's pages shared with the child, so the first write to each copies it;
a request's path wrote about 60 such pages (~2 us each here). After an idle refill the server
rehearses that path with the last request's head (`_ServerState.rehearse`), so the copies are
made before the next request rather than during it.
"""

from __future__ import annotations

import array
import fcntl
import gc
import os
import pickle
import select
import signal
import socket
import sys
import time
from functools import partial
from typing import Any, Dict, List, Optional, Set, Tuple

from pynisher import _core, _warm, _worker
from pynisher._forkserver import (
    _CONTROL_FD_ENV,
    _HEAD,
    _LENGTH,
    _PID,
    _recv_exactly,
    _send_message,
)

#: The most descriptors a request may carry: the caller's stdout and stderr, and those of the
#: multiprocessing objects among the call's arguments.
_MAX_FDS = 2 + 64
_ANCILLARY = socket.CMSG_LEN(_MAX_FDS * array.array("i").itemsize)
#: A request's first read (a longer one is read on).
_FIRST_READ = 4096
#: How long the refill waits for the outcome of a call that is the only one in flight (see the
#: module doc): a short call's outcome comes first, a long call's refill is not kept waiting.
REFILL_DEFER = 0.005


class _ServerState:
    """The server's state, all of it touched by the main loop's thread only."""

    def __init__(self, control: socket.socket, caller_fd: Optional[int]) -> None:
        self.control = control
        self.caller_fd = caller_fd
        self.poller = select.poll()
        #: The callers' connections by descriptor (listened to unless a call of theirs is in flight).
        self.conns: Dict[int, socket.socket] = {}
        #: The descriptors of all the callers' connections, listened to or not (closed in every
        #: call's child).
        self.conn_fds: set = set()
        #: The descriptors received for calls in flight: stdout, stderr, passed ones (closed in
        #: every call's child but their own).
        self.call_fds: set = set()
        #: The calls in flight by pid (also their process group): their connections, descriptors
        #: and when they were started (`time.monotonic`).
        self.in_flight: Dict[int, Tuple[socket.socket, List[int], float]] = {}
        #: The server's ends of the parked children's sockets (closed in every call's child).
        self.parked_fds: set = set()
        #: A finisher writes a call's pid here (4 bytes) once the call is over: its outcome sent,
        #: its child reaped and cleaned up after.
        self.done_read, self.done_write = os.pipe2(os.O_CLOEXEC)
        #: The head of the last request (its limits), for `rehearse`.
        self.last_head: Optional[bytes] = None
        self.warm = _warm.WarmPool(_call_child, partial(_close_inherited, self), _recv_request, self.parked_fds)

    def handle_control(self) -> bool:
        """Handles one control message; False when the control socket is closed."""
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 1)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not message:
            return False
        if message[:1] == b"C" and len(fds) == 1:
            # A caller thread's connection, out of the way of the descriptors the engine sets up
            # in a child (0-3).
            fd = fcntl.fcntl(fds[0], fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fds[0])
            self.conn_fds.add(fd)
            self.listen(socket.socket(fileno=fd))
            return True
        for fd in fds:
            os.close(fd)
        if message[:1] == b"P":
            _preload(message[1:])
        return True

    def listen(self, conn: socket.socket) -> None:
        self.conns[conn.fileno()] = conn
        self.poller.register(conn, select.POLLIN)

    def hang_up(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        if self.conns.pop(fd, None) is not None:
            self.poller.unregister(fd)
        self.conn_fds.discard(fd)
        conn.close()

    def handle_request(self, fd: int) -> None:
        """Reads one request from a caller's connection and starts its call."""
        conn = self.conns[fd]
        received = _receive_request(conn)
        if received is None:
            return
        data, fds = received
        if not data or len(fds) < 2:
            # End of file: the caller's thread is gone (or cancelled its last call).
            for f in fds:
                os.close(f)
            self.hang_up(conn)
            return
        self.poller.unregister(fd)
        del self.conns[fd]
        self.call_fds.update(fds)
        try:
            limits, tell_pid_after, body, self.last_head = _split_request(conn, data)
            capture = bool(limits.get("capture_output"))
            started = self.warm.start(limits, body, fds, capture)
            warm = started is not None
            if started is None:
                child = partial(_call_child_body, self, body, fds, capture)
                started = _core.start_fork(child, limits)
        except (OSError, EOFError):
            self.end_call(conn, fds, None, hang_up=True)
        except ValueError as err:
            self.end_call(conn, fds, ("value_error", str(err)))
        except _core.NotEnforceableError as err:
            self.end_call(conn, fds, ("not_enforceable", err.args))
        except _core.EngineError as err:
            self.end_call(conn, fds, ("engine_error", str(err)))
        except Exception as err:
            self.end_call(conn, fds, ("error", f"{type(err).__name__}: {err}"))
        else:
            # The finisher takes the call at once (it tells the caller the pid when asked, and
            # waits): nothing the main thread does next is on the call's path.
            self.in_flight[started.pid] = (conn, fds, time.monotonic())
            try:
                _core.send_outcome_when_done(started, conn.fileno(), self.done_write, tell_pid_after)
            except _core.EngineError as err:
                del self.in_flight[started.pid]
                self.end_call(conn, fds, ("engine_error", str(err)))
                return
            if warm and len(self.in_flight) > 1 and not self.requests_waiting():
                # Other calls are in flight (caller threads): the next warm child is forked now,
                # while this call's child runs on the other CPU. A request already waiting is
                # served first (its own fork is as quick as a refill and a release); the idle
                # loop refills later. A call alone in flight is left to `refill_wait`.
                self.warm.refill()

    def refill_wait(self) -> Optional[float]:
        """Seconds the main loop may still wait before it forks the next warm child (0: now if
        nothing else waits), or None when no warm child is wanted. A call alone in flight gets
        its outcome first, for at most `REFILL_DEFER` (see the module doc)."""
        if not self.warm.needs_refill():
            return None
        if len(self.in_flight) != 1:
            return 0.0
        started = next(iter(self.in_flight.values()))[2]
        return max(0.0, started + REFILL_DEFER - time.monotonic())

    def rehearse(self) -> None:
        """After a fork (the next warm child's), while the server is idle: walks the path a
        request takes as far as its limits (received over a socket pair with copies of stdout and
        stderr, split, the head unpickled), with the last request's head. The fork made every
        page of the server shared with the child; the first write to each copies it, and a
        request's path wrote ~60 of them (minor faults, ~2 us each here): now the copies are
        made here, off the next call's path."""
        if self.last_head is None:
            return
        try:
            receiving, sending = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with receiving, sending:
                std = [_warm.dup_or_devnull(1), _warm.dup_or_devnull(2)]
                try:
                    socket.send_fds(sending, [_HEAD.pack(len(self.last_head), 0), self.last_head], std)
                finally:
                    for fd in std:
                        os.close(fd)
                received = _receive_request(receiving)
                if received is None:
                    return
                data, fds = received
                try:
                    _split_request(receiving, data)
                finally:
                    for fd in fds:
                        os.close(fd)
        except (OSError, EOFError):
            pass  # only a warm-up (descriptors exhausted?): the next request takes its usual path

    def requests_waiting(self) -> bool:
        """Whether a caller's connection or the control socket has something to read now."""
        done = self.done_read
        return any(fd != done for fd, _ in self.poller.poll(0))

    def read_done(self) -> None:
        """Ends the calls whose outcomes were sent (their pids on the done pipe)."""
        pids = os.read(self.done_read, 4 * 256)
        for (pid,) in _PID.iter_unpack(pids[: len(pids) - len(pids) % 4]):
            entry = self.in_flight.pop(pid, None)
            if entry is not None:
                self.end_call(entry[0], entry[1], None)

    def end_calls_in_flight(self, timeout: float = 2.0) -> None:
        """The caller is gone: its calls see their connections hang up and are cancelled by their
        finishers (the engine kills and reaps each call's tree); wait for that, then kill the
        process group of any call still listed."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.done_read], [], [], left)[0]:
                break
            self.read_done()
        for pgid in list(self.in_flight):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass

    def end_call(self, conn: socket.socket, fds: List[int], reply: Any, hang_up: bool = False) -> None:
        """After a call (or a request that started none): the reply, if any, goes to the caller;
        the call's descriptors are closed; the connection is listened to again."""
        try:
            if reply is not None:
                _send_message(conn, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            hang_up = True  # the caller is gone; the call is already over
        finally:
            self.call_fds.difference_update(fds)
            for fd in fds:
                os.close(fd)
            if hang_up:
                self.hang_up(conn)
            else:
                self.listen(conn)


def _receive_request(conn: socket.socket) -> Optional[Tuple[bytes, List[int]]]:
    """A request's first bytes (usually all of it: one read) and the descriptors sent with them
    (moved out of the way of those the engine sets up in a child, 0-3); None when there is
    nothing to read (a stale event: a descriptor closed and reused meanwhile); b"" at its end."""
    try:
        data, ancillary, _, _ = conn.recvmsg(_FIRST_READ, _ANCILLARY, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
    except BlockingIOError:
        return None
    except OSError:
        data, ancillary = b"", []
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for received in array.array("i", payload[: len(payload) - len(payload) % 4]):
                if received < 4:
                    moved = fcntl.fcntl(received, fcntl.F_DUPFD_CLOEXEC, 10)
                    os.close(received)
                    received = moved
                fds.append(received)
    return data, fds


def _split_request(conn: socket.socket, data: bytes) -> Tuple[Dict[str, Any], Optional[float], memoryview, bytes]:
    """A request's limits and when to tell the caller the pid (its head, unpickled), its body
    (for the call's child) and its head; reads the rest of a request longer than the first read."""
    if len(data) < _HEAD.size:
        data += _recv_exactly(conn, _HEAD.size - len(data))
    head_size, body_size = _HEAD.unpack_from(data)
    size = _HEAD.size + head_size + body_size
    if len(data) < size:
        data += _recv_exactly(conn, size - len(data))
    view = memoryview(data)
    head = view[_HEAD.size : _HEAD.size + head_size]
    limits, tell_pid_after = pickle.loads(head)
    return limits, tell_pid_after, view[_HEAD.size + head_size : size], bytes(head)


def _preload(message: bytes) -> None:
    import importlib

    try:
        module, sys_path = pickle.loads(message)
        sys.path[:] = sys_path
        importlib.import_module(module)
    except BaseException:
        pass  # the call itself will report what is wrong with the module


def _call_child_body(state: _ServerState, body: "bytes | memoryview", fds: List[int], capture_output: bool) -> bytes:
    """A cold call's child: none of the server's descriptors but the call's, then the call."""
    _close_inherited(state, set(fds))
    settings, blob = pickle.loads(body)
    return _call_child(settings, blob, fds, capture_output)


def _close_inherited(state: _ServerState, keep: Set[int]) -> None:
    """In a child of the server: closes the server's descriptors it inherited (other calls',
    connections, parked children's sockets, the control socket), all but ``keep``. A parked
    child does this before it parks, a cold call's child first thing."""
    inherited = state.call_fds | state.parked_fds | state.conn_fds
    inherited |= {state.control.fileno(), state.done_read, state.done_write}
    if state.caller_fd is not None:
        inherited.add(state.caller_fd)
    for fd in inherited - {0, 1, 2} - keep:
        try:
            os.close(fd)
        except OSError:
            pass


def _call_child(settings: Dict[str, Any], blob: bytes, fds: List[int], capture_output: bool) -> bytes:
    """Runs in the call's child (a fork of the server): the caller's stdout and stderr unless
    the engine captures them, then the call. ``fds``: [stdout, stderr, passed...]."""
    out_fd, err_fd = fds[:2]
    passed = fds[2:]
    if not capture_output:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
    for fd in (out_fd, err_fd):
        if fd > 2 and fd not in passed:
            os.close(fd)
    return _worker.execute_blob(settings, blob, passed)


def _recv_request(conn: socket.socket) -> Tuple[bytes, List[int]]:
    """A length-prefixed message, and the descriptors sent with its first bytes."""
    head, passed, _, _ = socket.recv_fds(conn, _LENGTH.size, _MAX_FDS)
    if not head:
        raise EOFError("the other end hung up before sending its message")
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
        poller = state.poller
        poller.register(control, select.POLLIN)
        if caller is not None:
            poller.register(caller, select.POLLIN)
        poller.register(state.done_read, select.POLLIN)
        while True:
            # Fork the next warm child off the calls' path: when nothing else waits and the
            # refill no longer waits for an outcome (`refill_wait`).
            wait = state.refill_wait()
            events = poller.poll(None if wait is None else wait * 1000)
            if not events and wait is not None:
                state.warm.refill()
                if not state.requests_waiting():
                    # (A request that came during the fork is served first: it would only wait.)
                    state.rehearse()
            for fd, _ in events:
                if fd == state.done_read:
                    state.read_done()
                elif fd == caller:
                    return
                elif fd == control.fileno():
                    if not state.handle_control():
                        return
                elif fd in state.conns:
                    state.handle_request(fd)
    finally:
        state.warm.discard_all()
        state.end_calls_in_flight()
        for conn in list(state.conns.values()):
            conn.close()
