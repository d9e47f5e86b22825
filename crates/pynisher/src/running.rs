//! [`Running`]: a started call, supervised either by the thread that waits (the fork path:
//! `run_closure`, `spawn_command`) or by its own supervisor process (the zygote path: `spawn_fn`).
//!
//! Both kinds offer the same handle: `wait`, `try_wait`, `kill`, and a descriptor to wait on
//! ([`AsFd`]) so that one thread can watch many calls.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::call::decode_value;
use crate::supervise::{self, Behind, Started};
use crate::zygote::RemoteCall;
use crate::{Error, NoObserver, Observer, Outcome, Progress};

/// A started call. Wait for it with [`Running::wait`] (or poll it with [`Running::try_wait`]);
/// dropping it unwaited kills the call's processes and reaps them, so nothing outlives it.
///
/// Its descriptor ([`AsFd`]) becomes readable when [`Running::try_wait`] has news:
/// - for a call started by [`crate::Limits::spawn_fn`], when the call's own supervisor process has
///   sent the outcome (it enforces every limit by itself, whoever waits);
/// - for a call started in this process (`spawn_command`, `spawn_closure_unchecked`), when the main
///   process has exited. Such a call is supervised by the thread that waits: `try_wait` enforces
///   the wall-time limit when it falls due, but the CPU-time and process-count limits are only
///   sampled inside [`Running::wait`]. Use `spawn_fn` to supervise many calls from one thread.
///
/// ```
/// use std::time::Duration;
/// let limits = pynisher::Limits::new().wall_time(Duration::from_secs(5));
/// let mut running = limits.spawn_fn(|n: u64| n * 2, 21)?;
/// let outcome = loop {
///     if let Some(outcome) = running.try_wait()? {
///         break outcome;
///     }
///     std::thread::sleep(Duration::from_millis(1));
/// };
/// assert_eq!(outcome.value, Some(42));
/// # Ok::<(), pynisher::Error>(())
/// ```
pub struct Running<T> {
    /// The main process's pid, kept from the start so that it stays known once the call ended.
    pid: i32,
    inner: Option<Inner>,
    /// A duplicate of the descriptor to wait on, which stays readable once the call has ended.
    /// A local call's is made only when it ends by [`Running::try_wait`] or [`Running::kill`]:
    /// until then [`AsFd`] lends the call's own pidfd (a system call fewer for a call that is
    /// simply waited for).
    wake: Option<OwnedFd>,
    decode: fn(Vec<u8>) -> Result<T, String>,
    _value: PhantomData<fn() -> T>,
}

enum Inner {
    /// Supervised here, by whoever waits.
    Local(Started),
    /// Supervised by its own process, reached over a socket.
    Remote(RemoteCall),
    /// Ended by [`Running::kill`] on the local path; the outcome waits to be collected.
    Ended(Outcome<Vec<u8>>),
}

impl<T> std::fmt::Debug for Running<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("pid", &self.pid()).finish()
    }
}

/// Ends the call at its first look ([`Running::kill`] on the local path).
struct CancelNow;
impl Observer for CancelNow {
    fn interval(&self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
    fn should_cancel(&mut self) -> bool {
        true
    }
}

fn readable_now(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(Error::sys("poll", e)),
    }
}

impl<T> Running<T> {
    pub(crate) fn local(
        started: Started,
        decode: fn(Vec<u8>) -> Result<T, String>,
    ) -> Result<Self, Error> {
        Ok(Running {
            pid: started.pid().as_raw_pid(),
            inner: Some(Inner::Local(started)),
            wake: None,
            decode,
            _value: PhantomData,
        })
    }

    pub(crate) fn remote(
        call: RemoteCall,
        decode: fn(Vec<u8>) -> Result<T, String>,
    ) -> Result<Self, Error> {
        let wake = call
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::sys("duplicating the call socket", e))?;
        Ok(Running {
            pid: call.pid(),
            inner: Some(Inner::Remote(call)),
            wake: Some(wake),
            decode,
            _value: PhantomData,
        })
    }

    /// The pid of the call's first process (the one running the function or program), which is
    /// also the call's process group id. Always positive: it is taken when the call starts and
    /// kept after the call ended (the process is then reaped, and the pid may name another one).
    ///
    /// ```
    /// let running = pynisher::Limits::new().spawn_fn(|n: u32| n + 1, 1)?;
    /// assert!(running.pid() > 0);
    /// let _ = running.wait()?;
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Duplicates a local call's pidfd before the call ends, so that [`AsFd`] still has a
    /// readable descriptor once the pidfd is closed.
    fn keep_wake_fd(&mut self, started: &Started) -> Result<(), Error> {
        if self.wake.is_none() {
            let fd = started
                .pidfd()
                .try_clone_to_owned()
                .map_err(|e| Error::sys("duplicating the pidfd", e))?;
            self.wake = Some(fd);
        }
        Ok(())
    }

    /// Supervises the call until it ends, and reports how.
    pub fn wait(self) -> Result<Outcome<T>, Error> {
        self.wait_observed(&mut NoObserver)
    }

    /// Like [`Running::wait`], calling `observer` while waiting. For a call started by
    /// [`crate::Limits::spawn_fn`] the [`Progress`] handed to the observer has the elapsed time
    /// only (the measurements stay with the call's supervisor process).
    pub fn wait_observed(mut self, observer: &mut dyn Observer) -> Result<Outcome<T>, Error> {
        let raw = match self.inner.take().ok_or(Error::OutcomeTaken)? {
            Inner::Local(started) => supervise::supervise(started, observer)?,
            Inner::Ended(outcome) => outcome,
            Inner::Remote(mut call) => wait_remote(&mut call, observer)?,
        };
        Ok(decode_value(raw, self.decode))
    }

    /// Like [`Running::wait_observed`], but a closure that completes gets its outcome as soon as
    /// its result is whole, before its process has exited: the call is measured then, its whole
    /// tree is sent SIGKILL, and waiting for that teardown (reaping, emptying and closing the
    /// container) is left to the returned [`Behind`] — do it with [`Behind::finish`] when it
    /// suits you (dropping it does it too). For a forked interpreter the exit is a large part of
    /// a short call.
    ///
    /// Such an outcome reports `exit_code: Some(0)` (what the child exits with right after its
    /// result) and `signal: None`; the kill that cuts the exit short is not counted in `killed`.
    /// Only on the cgroup backends, for a closure without captured output or
    /// [`crate::Limits::keep_descendants`] whose main process is the call's only one at the
    /// result; every other call (one that left other processes: they are dead when this
    /// returns) ends at its exit as with `wait`, and its `Behind` has nothing to do.
    ///
    /// ```
    /// let running = pynisher::Limits::new().spawn_fn(|n: u64| n * 2, 21)?;
    /// let (outcome, behind) = running.wait_result_first(&mut pynisher::NoObserver)?;
    /// assert_eq!(outcome.value, Some(42));
    /// behind.finish();
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn wait_result_first(
        mut self,
        observer: &mut dyn Observer,
    ) -> Result<(Outcome<T>, Behind), Error> {
        let (raw, behind) = match self.inner.take().ok_or(Error::OutcomeTaken)? {
            Inner::Local(started) => supervise::supervise_result_first(started, observer)?,
            Inner::Ended(outcome) => (outcome, Behind::none()),
            Inner::Remote(mut call) => (wait_remote(&mut call, observer)?, Behind::none()),
        };
        Ok((decode_value(raw, self.decode), behind))
    }

    /// The outcome if the call has ended, `None` if it still runs; never blocks for long (a call
    /// that just ended is reaped and its pipes drained, bounded by the drain timeout).
    ///
    /// Once it has returned the outcome, the [`Running`] is spent: further calls return
    /// [`Error::OutcomeTaken`].
    pub fn try_wait(&mut self) -> Result<Option<Outcome<T>>, Error> {
        let raw = match self.inner.take().ok_or(Error::OutcomeTaken)? {
            Inner::Ended(outcome) => outcome,
            Inner::Remote(mut call) => match call.try_outcome() {
                Ok(Some(outcome)) => outcome,
                Ok(None) => {
                    self.inner = Some(Inner::Remote(call));
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
            Inner::Local(started) => {
                let due = started.wall_deadline().is_some_and(|d| Instant::now() >= d);
                let exited = match readable_now(started.pidfd()) {
                    Ok(exited) => exited,
                    Err(e) => {
                        self.inner = Some(Inner::Local(started));
                        return Err(e);
                    }
                };
                if !(due || exited) {
                    self.inner = Some(Inner::Local(started));
                    return Ok(None);
                }
                if let Err(e) = self.keep_wake_fd(&started) {
                    self.inner = Some(Inner::Local(started));
                    return Err(e);
                }
                supervise::supervise(started, &mut NoObserver)?
            }
        };
        Ok(Some(decode_value(raw, self.decode)))
    }

    /// Ends the call now, unless it already ended for another reason: it ends with
    /// [`crate::Status::Cancelled`]. Collect the outcome with [`Running::wait`] or
    /// [`Running::try_wait`] (the descriptor becomes readable).
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut running = pynisher::Limits::new()
    ///     .spawn_fn(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000)?;
    /// running.kill()?;
    /// assert_eq!(running.wait()?.status, pynisher::Status::Cancelled);
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn kill(&mut self) -> Result<(), Error> {
        match self.inner.take().ok_or(Error::OutcomeTaken)? {
            Inner::Local(started) => {
                if let Err(e) = self.keep_wake_fd(&started) {
                    self.inner = Some(Inner::Local(started));
                    return Err(e);
                }
                let outcome = supervise::supervise(started, &mut CancelNow)?;
                self.inner = Some(Inner::Ended(outcome));
                Ok(())
            }
            Inner::Remote(mut call) => {
                let sent = call.cancel();
                self.inner = Some(Inner::Remote(call));
                sent
            }
            ended @ Inner::Ended(_) => {
                self.inner = Some(ended);
                Ok(())
            }
        }
    }

    /// Waits for the call without occupying a thread (feature `tokio`; needs a tokio runtime with
    /// I/O enabled). A call started by [`crate::Limits::spawn_fn`] is awaited on its descriptor;
    /// a call supervised in this process (`spawn_command`, the fork path) runs its supervisor on
    /// tokio's blocking pool.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")]
    /// # {
    /// pynisher::init()?; // first in main: the runtime's threads come after
    /// let rt = tokio::runtime::Builder::new_multi_thread().enable_io().build().unwrap();
    /// let outcome = rt.block_on(async {
    ///     pynisher::Limits::new().spawn_fn(|n: u32| n + 1, 41)?.wait_async().await
    /// })?;
    /// assert_eq!(outcome.value, Some(42));
    /// # }
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn wait_async(mut self) -> Result<Outcome<T>, Error>
    where
        T: Send + 'static,
    {
        use tokio::io::unix::AsyncFd;
        use tokio::io::Interest;
        if matches!(self.inner, Some(Inner::Local(_))) {
            return tokio::task::spawn_blocking(move || self.wait())
                .await
                .map_err(|e| Error::sys("joining the blocking wait", std::io::Error::other(e)))?;
        }
        let fd = self
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::sys("duplicating the call socket", e))?;
        // SAFETY: `fd` is an OwnedFd we just created and move into the AsyncFd, which keeps it
        // open and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| Error::sys("registering the call socket with tokio", e.into_parts().1))?;
        loop {
            let mut ready = fd
                .readable()
                .await
                .map_err(|e| Error::sys("waiting for the call socket", e))?;
            if let Some(outcome) = self.try_wait()? {
                return Ok(outcome);
            }
            ready.clear_ready();
        }
    }
}

/// Waits for a remote call, honouring the observer's interval and cancellation.
fn wait_remote(
    call: &mut RemoteCall,
    observer: &mut dyn Observer,
) -> Result<Outcome<Vec<u8>>, Error> {
    let mut interval = observer.interval();
    let mut cancelled = false;
    loop {
        if let Some(outcome) = call.try_outcome()? {
            return Ok(outcome);
        }
        let ts = interval.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        });
        let (call_ready, woken) = {
            let wake_fd = observer.wake_fd().filter(|_| !cancelled);
            let mut fds = vec![PollFd::new(&*call, PollFlags::IN)];
            if let Some(fd) = wake_fd.as_ref() {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::sys("poll", e)),
            }
            let woken = fds.get(1).is_some_and(|fd| !fd.revents().is_empty());
            (!fds[0].revents().is_empty(), woken)
        };
        if woken && observer.should_cancel() && !cancelled {
            call.cancel()?;
            cancelled = true;
        }
        if interval.is_some() && !call_ready {
            observer.progress(&Progress {
                elapsed: call.elapsed(),
                cpu: None,
                memory: None,
                processes: None,
            });
            if !cancelled && observer.should_cancel() {
                call.cancel()?;
                cancelled = true;
            }
            interval = observer.interval();
        }
    }
}

impl<T> AsFd for Running<T> {
    /// Readable when [`Running::try_wait`] has news (see the type's documentation).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match (&self.inner, &self.wake) {
            (Some(Inner::Local(started)), None) => started.pidfd(),
            (_, Some(wake)) => wake.as_fd(),
            // A local call keeps its pidfd until it ends, and every way it ends here first
            // keeps a duplicate (`keep_wake_fd`); remote calls have theirs from the start.
            (_, None) => unreachable!("a Running without a descriptor to wait on"),
        }
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        match self.inner.take() {
            Some(Inner::Local(started)) => started.abandon(),
            Some(Inner::Remote(call)) => call.abandon(),
            Some(Inner::Ended(_)) | None => {}
        }
    }
}
