//! The entry points: start a command or a closure under [`Limits`], then wait for its [`Outcome`].
//!
//! Starting and waiting are two steps ([`Running`]) so that a face can do work between them — the
//! Python face forks while holding the interpreter lock, then waits with it released.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::launch::{closure_body, ChildPlan, Encoded, Payload};
use crate::supervise;
use crate::{Command, CpuTime, Error, Limits, Outcome, Running, Status};

/// A snapshot of a running call, handed to [`Observer::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Time since the child was released.
    pub elapsed: Duration,
    /// CPU time of the call so far, when measured.
    pub cpu: Option<CpuTime>,
    /// Memory charged to the call now, when measured.
    pub memory: Option<u64>,
    /// Live processes of the call, when counted.
    pub processes: Option<u64>,
}

/// Hooks into the supervisor's loop: cancel a call, watch its progress.
///
/// ```
/// struct CancelAfterTwoChecks(u32);
/// impl pynisher::Observer for CancelAfterTwoChecks {
///     fn interval(&self) -> Option<std::time::Duration> {
///         Some(std::time::Duration::from_millis(10))
///     }
///     fn should_cancel(&mut self) -> bool {
///         self.0 += 1;
///         self.0 > 2
///     }
/// }
/// ```
pub trait Observer {
    /// How often the supervisor must call [`Observer::should_cancel`] and [`Observer::progress`]
    /// at the least. `None`: only when it wakes up for its own reasons. Asked when the call
    /// starts and again after each [`Observer::progress`], so an observer that wants one look
    /// (say, 5 ms into the call) returns `None` once it has had it.
    fn interval(&self) -> Option<Duration> {
        None
    }
    /// A descriptor that becomes readable when the observer has news (a signal arrived, a cancel
    /// was requested). The supervisor polls it beside the child and calls
    /// [`Observer::should_cancel`] as soon as it is readable, so a cancel takes effect at once
    /// without an [`Observer::interval`] to poll on. `should_cancel` must consume what made it
    /// readable (read the pipe, the `signalfd`, ...); it is polled only until a reason to end the
    /// call is recorded.
    ///
    /// ```
    /// use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    /// struct CancelOnByte(OwnedFd);
    /// impl pynisher::Observer for CancelOnByte {
    ///     fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
    ///         Some(self.0.as_fd())
    ///     }
    ///     fn should_cancel(&mut self) -> bool {
    ///         let mut byte = [0u8; 1];
    ///         matches!(rustix::io::read(&self.0, &mut byte), Ok(n) if n > 0)
    ///     }
    /// }
    /// ```
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Return true to end the call now; it ends with [`Status::Cancelled`].
    fn should_cancel(&mut self) -> bool {
        false
    }
    /// Called at each wake-up with fresh measurements.
    fn progress(&mut self, _progress: &Progress) {}
}

/// An [`Observer`] that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl Observer for NoObserver {}

pub(crate) fn decode_value<T>(
    mut raw: Outcome<Vec<u8>>,
    decode: fn(Vec<u8>) -> Result<T, String>,
) -> Outcome<T> {
    let bytes = raw.value.take();
    let mut outcome = raw.with_value(None);
    match bytes.map(decode) {
        Some(Ok(value)) => outcome.value = Some(value),
        Some(Err(reason)) if outcome.status == Status::Completed => {
            outcome.status = Status::ResultUndecodable { reason };
        }
        _ => {}
    }
    outcome
}

fn unit_value(_: Vec<u8>) -> Result<(), String> {
    Ok(())
}

fn raw_value(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    Ok(bytes)
}

pub(crate) fn postcard_value<T: DeserializeOwned>(bytes: Vec<u8>) -> Result<T, String> {
    postcard::from_bytes(&bytes).map_err(|e| e.to_string())
}

impl Limits {
    /// Runs a program under these limits and waits for it.
    ///
    /// ```no_run
    /// let outcome = pynisher::Limits::new()
    ///     .wall_time(std::time::Duration::from_secs(1))
    ///     .run_command(&pynisher::Command::new("sleep").arg("5"))?;
    /// assert_eq!(outcome.status, pynisher::Status::WallTimeout);
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn run_command(&self, command: &Command) -> Result<Outcome<()>, Error> {
        self.run(Payload::Exec(command.clone()), false, unit_value)
    }

    /// Starts a program under these limits; the returned [`Running`] is already released.
    pub fn spawn_command(&self, command: &Command) -> Result<Running<()>, Error> {
        self.start(Payload::Exec(command.clone()), unit_value)
    }

    /// Starts a program that sends one result frame (see [`crate::transport`]) on the file descriptor
    /// named by the environment variable [`crate::transport::RESULT_FD_ENV`]. The frame's payload becomes
    /// the outcome's value. This is how the Python face runs a fresh interpreter per call.
    pub fn spawn_command_for_result(&self, command: &Command) -> Result<Running<Vec<u8>>, Error> {
        self.start(Payload::ExecWithResult(command.clone()), raw_value)
    }

    /// Runs `f` in a forked child under these limits and returns its value.
    ///
    /// The value travels back serialized (postcard) over a dedicated pipe. Forking a process that
    /// has several threads is unsafe (another thread may hold a lock the child needs), so this
    /// refuses to run with [`Error::ThreadedCaller`] when the caller has more than one thread; see
    /// [`Limits::spawn_closure_unchecked`].
    ///
    /// ```no_run
    /// let outcome = pynisher::Limits::new().run_closure(|| 6 * 7)?;
    /// assert_eq!(outcome.value, Some(42));
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn run_closure<T, F>(&self, f: F) -> Result<Outcome<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let threads = crate::sys::thread_count();
        if threads > 1 {
            return Err(Error::ThreadedCaller { threads });
        }
        // The caller has a single thread (checked just above), so no lock can be held by a
        // thread that does not exist in the child.
        let body = move |buf: &mut [u8]| Encoded::postcard(&f(), buf);
        self.run(
            Payload::Closure(closure_body(body)),
            true,
            postcard_value::<T>,
        )
    }

    /// Starts `f` in a forked child without checking how many threads the caller has.
    ///
    /// # Safety
    /// The child is a copy of the caller with only the calling thread. `f` must not need any lock
    /// that another thread of the caller may hold at the time of the fork (the allocator of glibc
    /// is safe; `std::io::stdout()`, loggers and user mutexes may not be).
    pub unsafe fn spawn_closure_unchecked<T, F>(&self, f: F) -> Result<Running<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let body = move |buf: &mut [u8]| Encoded::postcard(&f(), buf);
        self.start(Payload::Closure(closure_body(body)), postcard_value::<T>)
    }

    /// Starts `f` in a forked child; `f` returns the bytes to send back (already encoded by the
    /// face, e.g. a pickle) or an error text that becomes [`Status::ResultUndecodable`].
    ///
    /// # Safety
    /// As for [`Limits::spawn_closure_unchecked`].
    pub unsafe fn spawn_closure_bytes<F>(&self, f: F) -> Result<Running<Vec<u8>>, Error>
    where
        F: FnOnce() -> Result<Vec<u8>, String>,
    {
        self.start(
            Payload::Closure(closure_body(move |_: &mut [u8]| f().map(Encoded::Heap))),
            raw_value,
        )
    }

    fn start<'f, T>(
        &self,
        payload: Payload<'f>,
        decode: fn(Vec<u8>) -> Result<T, String>,
    ) -> Result<Running<T>, Error> {
        Running::local(self.start_here(payload, false)?, decode)
    }

    /// Starts and waits, without the [`Running`] handle (which duplicates the pidfd for its
    /// [`std::os::fd::AsFd`]: a system call a call waited for at once does not need).
    fn run<T>(
        &self,
        payload: Payload<'_>,
        single_threaded_caller: bool,
        decode: fn(Vec<u8>) -> Result<T, String>,
    ) -> Result<Outcome<T>, Error> {
        let started = self.start_here(payload, single_threaded_caller)?;
        let raw = supervise::supervise(started, &mut NoObserver)?;
        Ok(decode_value(raw, decode))
    }

    /// Starts a call supervised by this thread. `single_threaded_caller`: the caller was checked
    /// to have one thread (see `ChildPlan::single_threaded_caller`).
    fn start_here(
        &self,
        payload: Payload<'_>,
        single_threaded_caller: bool,
    ) -> Result<supervise::Started, Error> {
        self.validate()?;
        let mut plan = ChildPlan::new(self, payload)?;
        plan.single_threaded_caller = single_threaded_caller;
        supervise::start(self, plan)
    }
}
