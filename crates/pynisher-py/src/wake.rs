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

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The process's wake pipe (read end, write end), tagged with the pid that made it: a forked child
/// inherits the static but must not share the pipe with its parent.
static PIPE: Mutex<Option<(i32, OwnedFd, OwnedFd)>> = Mutex::new(None);

/// Python's wake-up descriptor pointed at our pipe for the duration of one wait.
pub(crate) struct SignalWake {
    read: OwnedFd,
    write_fd: i32,
    previous: i32,
}

/// A duplicate of the read end, and the write end's number (the write end itself stays in
/// `PIPE`, open for the process's life, as Python's wake-up descriptor must).
fn pipe_for_this_process() -> Option<(OwnedFd, i32)> {
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
    Some((r.try_clone().ok()?, w.as_raw_fd()))
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
        let (read, write_fd) = pipe_for_this_process()?;
        drain(read.as_fd());
        let signal = py.import("signal").ok()?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("warn_on_full_buffer", false).ok()?;
        let previous: i32 = signal
            .call_method("set_wakeup_fd", (write_fd,), Some(&kwargs))
            .ok()?
            .extract()
            .ok()?;
        if previous != -1 && previous != write_fd {
            // Someone else's: give it back and pass on what reached us meanwhile.
            let _ = signal.call_method1("set_wakeup_fd", (previous,));
            forward(previous, &drain(read.as_fd()));
            return None;
        }
        Some(SignalWake {
            read,
            write_fd,
            previous,
        })
    }

    /// The descriptor the engine polls: readable once a signal has arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Reads the bytes of the signals that arrived (so the pipe is quiet again).
    pub(crate) fn consume(&self) {
        drain(self.read.as_fd());
    }

    /// Makes the pipe readable (a signal was already pending before the wait began).
    pub(crate) fn poke(&self) {
        // SAFETY: `write_fd` is the pipe's write end, kept open in `PIPE` for the process's life.
        let write = unsafe { BorrowedFd::borrow_raw(self.write_fd) };
        let _ = rustix::io::write(write, &[0]);
    }

    /// Restores the previous wake-up descriptor.
    pub(crate) fn restore(self, py: Python<'_>) {
        if let Ok(signal) = py.import("signal") {
            let _ = signal.call_method1("set_wakeup_fd", (self.previous,));
        }
        // A wait nested in a signal handler of an outer wait leaves the bytes to the outer one.
        if self.previous != self.write_fd {
            drain(self.read.as_fd());
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
