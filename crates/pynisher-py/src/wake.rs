//! Wakes the engine's wait at once when Python receives a signal.
//!
//! Python's C-level signal handler only sets a flag; the Python-level handler (the one raising
//! `KeyboardInterrupt`) runs later, on the main thread, when the interpreter checks for signals.
//! While the main thread waits for a call in the engine (lock released), nothing checks. Instead of
//! waking up on a timer, the wait makes a pipe Python's *wake-up descriptor*
//! (`signal.set_wakeup_fd`, to which Python's C handler writes one byte per signal) and hands its
//! read end to the engine as the observer's wake descriptor: a signal wakes the supervisor at once,
//! which then runs Python's handlers (`PyErr_CheckSignals`) and cancels the call if one raised.
//!
//! The wake-up descriptor is process-wide and may belong to someone else (asyncio's loop, a user).
//! Then it is left alone and the wait falls back to checking on an interval. Ours is set for the
//! wait only and the previous value is restored after it; a byte that arrived in between on our
//! pipe is passed on to the previous descriptor, so its owner misses no signal.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// The process's wake pipe (read end, write end), tagged with the pid that made it: a forked child
/// inherits the static but must not share the pipe with its parent.
static PIPE: Mutex<Option<(i32, OwnedFd, OwnedFd)>> = Mutex::new(None);

/// `signal.set_wakeup_fd` and its keyword arguments, looked up once: every call's wait sets and
/// restores the descriptor, and an import per call touched a dozen pages of a caller that had
/// just forked.
static SET_WAKEUP_FD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NO_FULL_BUFFER_WARNING: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Python's wake-up descriptor pointed at our pipe for the duration of one wait.
pub(crate) struct SignalWake {
    read_fd: i32,
    write_fd: i32,
    previous: i32,
}

/// The numbers of the pipe's read and write ends. Both stay open in `PIPE` for the process's life
/// (as Python's wake-up descriptor must), so they can be borrowed without a duplicate.
fn pipe_for_this_process() -> Option<(i32, i32)> {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut slot = PIPE.lock().ok()?;
    if slot.as_ref().is_none_or(|(owner, _, _)| *owner != pid) {
        let (r, w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .ok()?;
        // A forked child keeps the inherited ends open (not ours to close: Python's wake-up
        // descriptor in the child may still name the write end, if the fork happened during a
        // wait on another thread).
        if let Some(inherited) = slot.replace((pid, r, w)) {
            std::mem::forget(inherited);
        }
    }
    let (_, r, w) = slot.as_ref()?;
    Some((r.as_raw_fd(), w.as_raw_fd()))
}

fn drain(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = rustix::io::read(fd, &mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    got
}

impl SignalWake {
    /// Points Python's wake-up descriptor at our pipe, unless another owner holds it (then
    /// `None`: the caller checks for signals on an interval). Main thread only.
    pub(crate) fn install(py: Python<'_>) -> Option<SignalWake> {
        let (read_fd, write_fd) = pipe_for_this_process()?;
        let set_wakeup_fd = SET_WAKEUP_FD.import(py, "signal", "set_wakeup_fd").ok()?;
        let kwargs = NO_FULL_BUFFER_WARNING
            .get_or_try_init(py, || -> PyResult<Py<PyDict>> {
                let kwargs = PyDict::new(py);
                kwargs.set_item("warn_on_full_buffer", false)?;
                Ok(kwargs.unbind())
            })
            .ok()?
            .bind(py);
        let wake = SignalWake {
            read_fd,
            write_fd,
            previous: -1,
        };
        drain(wake.fd());
        let previous: i32 = set_wakeup_fd
            .call((write_fd,), Some(kwargs))
            .ok()?
            .extract()
            .ok()?;
        if previous != -1 && previous != write_fd {
            // Someone else's: give it back and pass on what reached us meanwhile.
            let _ = set_wakeup_fd.call1((previous,));
            forward(previous, &drain(wake.fd()));
            return None;
        }
        Some(SignalWake { previous, ..wake })
    }

    /// The descriptor the engine polls: readable once a signal has arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the read end stays open in `PIPE` for the process's life (a pipe inherited
        // from a parent process is forgotten there, never closed).
        unsafe { BorrowedFd::borrow_raw(self.read_fd) }
    }

    /// Reads the bytes of the signals that arrived (so the pipe is quiet again).
    pub(crate) fn consume(&self) {
        drain(self.fd());
    }

    /// Makes the pipe readable (a signal was already pending before the wait began).
    pub(crate) fn poke(&self) {
        // SAFETY: `write_fd` is the pipe's write end, kept open in `PIPE` for the process's life.
        let write = unsafe { BorrowedFd::borrow_raw(self.write_fd) };
        let _ = rustix::io::write(write, &[0]);
    }

    /// Restores the previous wake-up descriptor.
    pub(crate) fn restore(self, py: Python<'_>) {
        if let Ok(set_wakeup_fd) = SET_WAKEUP_FD.import(py, "signal", "set_wakeup_fd") {
            let _ = set_wakeup_fd.call1((self.previous,));
        }
        // A wait nested in a signal handler of an outer wait leaves the bytes to the outer one.
        if self.previous != self.write_fd {
            drain(self.fd());
        }
    }
}

fn forward(fd: i32, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `fd` is the wake-up descriptor Python held a moment ago; its owner keeps it open
    // while it is registered. A failed write only loses a wake-up, never memory safety.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::write(fd, bytes);
}
