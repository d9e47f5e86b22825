//! The forkserver's outcomes, sent without the interpreter lock: [`send_outcome_when_done`] hands
//! a started call to a thread of the engine's side (no Python thread state), which waits for it,
//! encodes the outcome (postcard of [`OutcomeFrame`]) and writes it to the caller's socket itself;
//! the caller turns it into the usual outcome dict with [`decode_outcome`].
//!
//! Why: the server's main thread forks the next warm child (holding the lock) right after a
//! hand-off. A Python waiter thread needed the lock to wake up, to build the outcome dict and to
//! pickle it, so the caller's result waited for the fork; these threads never take it.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde::{Deserialize, Serialize};

use pynisher::{Behind, Observer, Outcome, Progress};

use crate::{outcome_dict, EngineError, StartedCall, Waiter};

/// First byte of an outcome message on the forkserver's call socket (the server's own error
/// replies are pickles, whose first byte is never this).
pub(crate) const OUTCOME_TAG: u8 = b'O';
/// First byte of the message that tells the caller its call's pid, before the outcome.
pub(crate) const STARTED_TAG: u8 = b'S';

/// What the server sends the caller once a call is over.
#[derive(Serialize, Deserialize)]
struct OutcomeFrame {
    /// The call's pid (the outcome dict's `pid`).
    pid: i32,
    /// The outcome, or the engine's error (the text of `EngineError`).
    outcome: Result<Outcome<Vec<u8>>, String>,
}

/// Cancels the call when the caller's socket becomes readable: it sends nothing after its
/// request, so that means it hung up or shut its end (Ctrl-C, death). Tells the caller the
/// call's pid once the call has run `tell_pid_after`, if it is set.
struct HangUpWatch {
    fd: RawFd,
    pid: i32,
    /// When to send the STARTED message (`None`: never, or sent already).
    tell_pid_after: Option<Duration>,
}

impl HangUpWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the server keeps the call's socket open until this thread reports the call
        // done on the done descriptor, which it does after its last use of the socket.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl Observer for HangUpWatch {
    fn interval(&self) -> Option<Duration> {
        self.tell_pid_after
    }

    fn progress(&mut self, progress: &Progress) {
        if self
            .tell_pid_after
            .is_some_and(|after| progress.elapsed >= after)
        {
            self.tell_pid_after = None;
            self.tell_pid();
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd())
    }

    fn should_cancel(&mut self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let fd = self.fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::RDHUP)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }
}

impl HangUpWatch {
    /// The STARTED message: the call's pid, before its outcome.
    fn tell_pid(&self) {
        let mut started = [0u8; 13];
        started[..8].copy_from_slice(&5u64.to_le_bytes());
        started[8] = STARTED_TAG;
        started[9..].copy_from_slice(&self.pid.to_le_bytes());
        send_all(self.fd(), &started);
    }
}

/// One call for a finisher thread.
struct Job {
    pid: i32,
    /// When to tell the caller the pid (a STARTED message before the outcome), if at all.
    tell_pid_after: Option<Duration>,
    waiter: Waiter,
    conn_fd: RawFd,
    done_fd: RawFd,
}

/// Finisher threads: one more is started only when every thread has a job.
struct Pool {
    state: Mutex<PoolState>,
    ready: Condvar,
}

struct PoolState {
    /// The pid that started the threads (a forked copy has none of them).
    pid: i32,
    queue: VecDeque<Job>,
    /// Threads started.
    threads: usize,
    /// Jobs queued or being finished. A finisher stops counting its job before it reports the
    /// call done: the server's next request on that connection may follow at once (woken by the
    /// report, its main thread may run before the finisher is back at the queue), and it must
    /// not find every thread counted busy and start another.
    busy: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        pid: 0,
        queue: VecDeque::new(),
        threads: 0,
        busy: 0,
    }),
    ready: Condvar::new(),
};

fn lock_pool() -> std::sync::MutexGuard<'static, PoolState> {
    POOL.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn submit(job: Job) -> std::io::Result<()> {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut state = lock_pool();
    if state.pid != pid {
        // Threads of another process (we are a fork of it): none of them exist here.
        *state = PoolState {
            pid,
            queue: VecDeque::new(),
            threads: 0,
            busy: 0,
        };
    }
    state.queue.push_back(job);
    state.busy += 1;
    if state.busy <= state.threads {
        // Woken after the lock is released: a finisher woken under it would preempt this
        // thread (often on the same CPU), find the lock held and sleep again until this thread
        // runs, which may be after the call's child has had that CPU for its whole run and exit.
        drop(state);
        POOL.ready.notify_one();
        return Ok(());
    }
    state.threads += 1;
    drop(state);
    let spawned = std::thread::Builder::new()
        .name("pynisher-finish".into())
        .spawn(finisher)
        .map(drop);
    if spawned.is_err() {
        // The job stays queued for a thread that exists (or the next one started).
        lock_pool().threads -= 1;
    }
    spawned
}

fn finisher() {
    loop {
        let job = {
            let mut state = lock_pool();
            loop {
                if let Some(job) = state.queue.pop_front() {
                    break job;
                }
                state = POOL.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        finish(job);
    }
}

/// The calling finisher's job no longer counts (see [`PoolState::busy`]).
fn job_done() {
    let mut state = lock_pool();
    state.busy = state.busy.saturating_sub(1);
}

fn finish(job: Job) {
    let mut watch = HangUpWatch {
        fd: job.conn_fd,
        pid: job.pid,
        tell_pid_after: job.tell_pid_after,
    };
    if watch.tell_pid_after == Some(Duration::ZERO) {
        watch.tell_pid_after = None;
        watch.tell_pid();
    }
    let (outcome, behind) = match (job.waiter)(&mut watch) {
        Ok((outcome, behind)) => (Ok(outcome), behind),
        Err(err) => (Err(err.chain().to_string()), Behind::none()),
    };
    let frame = OutcomeFrame {
        pid: job.pid,
        outcome,
    };
    if let Ok(body) = postcard::to_stdvec(&frame) {
        let mut message = Vec::with_capacity(9 + body.len());
        message.extend_from_slice(&(body.len() as u64 + 1).to_le_bytes());
        message.push(OUTCOME_TAG);
        message.extend_from_slice(&body);
        send_all(watch.fd(), &message);
    }
    // The call's exit and cleanup, once its outcome is on its way (nothing of it is the
    // caller's to see: it never sees the server's children), before the call is reported done.
    behind.finish();
    job_done();
    // SAFETY: the server keeps the done pipe's write end open for its life.
    let done = unsafe { BorrowedFd::borrow_raw(job.done_fd) };
    let _ = rustix::io::write(done, &job.pid.to_le_bytes());
}

/// Writes all of `bytes` (a caller that hung up gets nothing: it cancelled).
fn send_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    use rustix::net::{send, SendFlags};
    while !bytes.is_empty() {
        match send(fd, bytes, SendFlags::NOSIGNAL) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Hands `call` to a finisher thread, which waits for the call (cancelling it when the caller's
/// socket `conn_fd` hangs up), writes the outcome message to `conn_fd` (length-prefixed, tagged
/// `b"O"`; see [`decode_outcome`]) and then the call's pid (4 bytes, little-endian) to
/// `done_fd`: only then may the server close `conn_fd`. With `tell_pid_after` (seconds) it
/// tells the caller the call's pid (a message tagged `b"S"`) once the call has run that long,
/// unless the outcome comes first (it carries the pid too): 0 tells it at once. A message the
/// caller is woken for costs a short call its speed (measured: the caller's wake-up lands
/// beside the call's child on its way out), so the API objects ask for it a little later.
/// None of this takes the interpreter lock, so the server's main thread hands the call over
/// first and forks its next child after.
#[pyfunction]
#[pyo3(signature = (call, conn_fd, done_fd, tell_pid_after=None))]
pub(crate) fn send_outcome_when_done(
    call: &StartedCall,
    conn_fd: RawFd,
    done_fd: RawFd,
    tell_pid_after: Option<f64>,
) -> PyResult<()> {
    let tell_pid_after = tell_pid_after
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds).map_err(|_| {
                PyValueError::new_err(format!(
                    "invalid value for tell_pid_after: {seconds} (seconds, 0 or more)"
                ))
            })
        })
        .transpose()?;
    let waiter = call.take_waiter()?;
    submit(Job {
        pid: call.pid,
        tell_pid_after,
        waiter,
        conn_fd,
        done_fd,
    })
    .map_err(|err| EngineError::new_err(format!("starting a thread to wait for the call: {err}")))
}

/// The outcome dict of an outcome message's body (what follows the tag); raises `EngineError`
/// when the engine failed to wait for the call.
#[pyfunction]
pub(crate) fn decode_outcome<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyDict>> {
    let frame: OutcomeFrame = postcard::from_bytes(body.as_bytes())
        .map_err(|err| PyValueError::new_err(format!("undecodable outcome message: {err}")))?;
    match frame.outcome {
        Ok(outcome) => outcome_dict(py, &outcome, frame.pid),
        Err(message) => Err(EngineError::new_err(message)),
    }
}
