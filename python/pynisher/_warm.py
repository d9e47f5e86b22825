"""The forkserver's warm children: a child forked ahead of the next call, parked.

The server (`_forkserver_server`) keeps a child forked with the engine's `park_fork` (a copy of
the server's interpreter in a fresh container of its own, reset after the fork, warmed up by a
call that does nothing, blocked before it runs anything of a call), made for the limits of the
last call. A call whose limits it fits (all but the per-call ones: wall and CPU time, grace
period, soft signals) is handed to it: the engine releases it with the call's limits (its
rlimits, the wall clock from now), then the call's body (still pickled) and descriptors go to it
over a socket of its own; the next warm child is forked when the server's main loop decides
(`_forkserver_server._ServerState.refill_wait`: after a lone call's outcome, or right after the
hand-off when other calls are in flight). A call they do not fit (another memory limit, backend,
capture) discards them (killed, reaped, containers removed) and is started the cold way. Every
call still runs in a process no other call touched.

When the server exits (its caller exited or closed the connection), it discards its parked
children; if the server is killed, its engine guard kills them as any call of the server (and a
parked child's release pipe closes, so it exits on its own).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from pynisher import _calls, _core

_LENGTH = struct.Struct("<Q")
#: Set to "0" in the caller's environment (read when its server starts) to start every call the
#: cold way: the benchmarks' same-run baseline, and a way out should parking misbehave somewhere.
ENABLED_ENV = "PYNISHER_FORKSERVER_WARM"

#: Runs a call in a child: (settings, blob, fds, capture_output) -> the encoded result, where fds
#: are [stdout, stderr, passed...].
RunCall = Callable[[Dict[str, Any], bytes, List[int], bool], bytes]
#: In a child of the server: closes the server's descriptors it inherited, all but the given ones.
CloseInherited = Callable[[Set[int]], None]
#: Reads a length-prefixed request and the descriptors sent with its first bytes.
RecvRequest = Callable[[socket.socket], Tuple[bytes, List[int]]]


class _Warm:
    """One parked child and the server's end of its socket."""

    def __init__(self, parked: "_core.ParkedCall", sock: socket.socket, limits: Dict[str, Any]) -> None:
        self.parked = parked
        self.sock = sock
        self.limits = limits


class WarmPool:
    """The server's parked child, made for the limits of the last call (see
    `_forkserver_server` for when it is forked)."""

    def __init__(
        self, run_call: RunCall, close_inherited: CloseInherited, recv_request: RecvRequest, parked_fds: Set[int]
    ) -> None:
        self.run_call = run_call
        self.close_inherited = close_inherited
        self.recv_request = recv_request
        #: The server's ends of the parked children's sockets (closed in every call's child).
        self.parked_fds = parked_fds
        self.parked: List[_Warm] = []
        self.enabled = os.environ.get(ENABLED_ENV, "1") != "0"
        #: The limits to park children for (those of the last call started), if any.
        self.wanted: Optional[Dict[str, Any]] = None

    def needs_refill(self) -> bool:
        return self.wanted is not None and not self.parked

    def refill(self) -> None:
        """Forks one more warm child (after a warm hand-off, or when the server's main loop has
        nothing else to do: see `_forkserver_server`)."""
        limits = self.wanted
        if limits is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.parked_fds.add(ours.fileno())
        try:
            child = _WarmChild(self.run_call, self.close_inherited, self.recv_request, theirs.fileno())
            parked = _core.park_fork(child, limits, child.prepare)
        except Exception:
            # Limits a parked child cannot take (the call itself reported what was wrong): the
            # next calls start the cold way.
            self.wanted = None
            self._close(ours)
            return
        finally:
            theirs.close()
        self.parked.append(_Warm(parked, ours, limits))

    def start(
        self,
        limits: Dict[str, Any],
        body: "bytes | memoryview",
        fds: List[int],
        capture: bool,
    ) -> Optional["_core.StartedCall"]:
        """Hands the call to a parked child if one fits ``limits``; None if none fits (parked
        children that do not fit are discarded: they were all made for other limits). From now
        on children are parked for ``limits``."""
        self.wanted = limits if self.enabled else None
        if not self.parked:
            return None
        warm = self.parked.pop()
        if warm.limits != limits and not warm.parked.fits(limits):
            self.discard_one(warm)
            self.discard_all(keep_wanted=True)
            return None
        # The call goes into the child's socket before the release, as far as it fits without
        # waiting: released, the child finds it there instead of sleeping again until it comes.
        try:
            rest = _send_call_ahead(warm.sock, body, fds, capture)
        except OSError:
            rest = None  # the child is gone already: its outcome says why
        try:
            started = warm.parked.release(limits)
        except BaseException:
            self.discard_one(warm)
            raise
        try:
            if rest:
                warm.sock.sendall(rest)
        except OSError:
            pass  # as above
        self._close(warm.sock)
        return started

    def discard_all(self, keep_wanted: bool = False) -> None:
        """Discards every parked child (the server is exiting, or the limits changed)."""
        parked, self.parked = self.parked, []
        if not keep_wanted:
            self.wanted = None
        for warm in parked:
            self.discard_one(warm)

    def discard_one(self, warm: _Warm) -> None:
        warm.parked.discard()
        self._close(warm.sock)

    def _close(self, sock: socket.socket) -> None:
        self.parked_fds.discard(sock.fileno())
        sock.close()


def _send_call_ahead(sock: socket.socket, body: "bytes | memoryview", fds: List[int], capture: bool) -> memoryview:
    """Sends what a parked child receives once released (the length, whether the engine captures
    the output, the call's body, and ``fds``: the caller's stdout and stderr, the passed ones)
    as far as the socket takes it without waiting (the child reads only once released): the
    rest of the body, to send after the release."""
    socket.send_fds(sock, [_LENGTH.pack(len(body) + 1), b"\1" if capture else b"\0"], fds)
    body = memoryview(body)
    try:
        sent = sock.send(body, socket.MSG_DONTWAIT)
    except BlockingIOError:
        sent = 0
    return body[sent:]


def dup_or_devnull(fd: int) -> int:
    """A copy of ``fd``, or of /dev/null when ``fd`` is closed (for a rehearsal's stdout and stderr)."""
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


#: A call that does nothing (``int()``), run by a parked child to warm up (see `_WarmChild.prepare`).
_IDLE_CALL = pickle.dumps((int, (), {}), protocol=pickle.HIGHEST_PROTOCOL)


class _WarmChild:
    """The parked child's side (it runs only in the child)."""

    def __init__(
        self, run_call: RunCall, close_inherited: CloseInherited, recv_request: RecvRequest, sock_fd: int
    ) -> None:
        self.run_call = run_call
        self.close_inherited = close_inherited
        self.recv_request = recv_request
        self.sock_fd = sock_fd
        self.sock: Optional[socket.socket] = None

    def prepare(self) -> None:
        """While parked, before the call's wall clock starts: walks the path a call takes once
        (received over a socket with the caller's stdout and stderr, unpickled, run) with a call
        that does nothing, so that the pages it writes (reference counts, the allocator's, the
        frames') are this child's own copies before the call needs them: a forked child's first
        write to each page copies it, and those copies were most of a trivial warm call's time
        (perf: page faults ~50 % of the children's samples; receiving alone faulted 33 pages)."""
        # The server's descriptors (other calls', connections, ...) go now, not on the call's path.
        self.close_inherited({self.sock_fd})
        self.sock = socket.socket(fileno=self.sock_fd)
        receiving, sending = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with receiving, sending:
            std = [dup_or_devnull(1), dup_or_devnull(2)]  # as a call brings the caller's
            try:
                # Settings as a caller makes them: applying them is on the path too.
                settings = _calls.call_settings({"wall_signal": None, "cpu_signal": None}, {})
                payload = pickle.dumps((settings, _IDLE_CALL), protocol=pickle.HIGHEST_PROTOCOL)
                sending.sendall(_send_call_ahead(sending, payload, std, False))
            finally:
                for fd in std:
                    os.close(fd)
            self._receive_and_run(receiving)

    def __call__(self) -> bytes:
        """Once released: receives the call (its payload, the caller's stdout and stderr, and
        the descriptors passed with it), then runs it."""
        return self._receive_and_run(self.sock if self.sock is not None else socket.socket(fileno=self.sock_fd))

    def _receive_and_run(self, sock: socket.socket) -> bytes:
        try:
            payload, fds = self.recv_request(sock)
        finally:
            sock.close()
        settings, blob = pickle.loads(memoryview(payload)[1:])
        return self.run_call(settings, blob, fds, payload[:1] == b"\1")
