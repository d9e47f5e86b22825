//! Children forked ahead of their calls (the warm path of a fork server).
//!
//! [`Limits::park_closure_bytes`] forks the child now, into a fresh container of its own, where
//! it blocks before running anything of `f`. [`Parked::release`] later gives it the call's limits
//! and lets it run: the per-call rlimits travel in the release record, and the wall clock starts
//! at the release. What was fixed at the fork (the backend and the container's limits, memory,
//! process count, output capture) must be what the call asks ([`Parked::fits`]); a parked child
//! that does not fit is dropped, which kills it and removes its container, like an unwaited call.

use crate::launch::{closure_body, ChildPlan, Encoded, Payload};
use crate::supervise::{self, ParkedStart};
use crate::{Error, Limits, Running};

/// A closure child forked ahead of its call, blocked in its own container until
/// [`Parked::release`]. Dropping it kills and reaps it and removes its container.
pub struct Parked {
    inner: ParkedStart,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

fn raw_bytes(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    Ok(bytes)
}

impl Limits {
    /// Forks a child that will run `f`, in a fresh container made for these limits, and parks it
    /// before `f` runs (see [`Parked`]); `f` returns the bytes to send back, as for
    /// [`Limits::spawn_closure_bytes`]. Once in its container the child runs `prepare` (work
    /// that would otherwise be on the call's path: an interpreter's after-fork reset), then
    /// waits: `prepare` runs without the per-call rlimits and before the wall clock starts.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let template = pynisher::Limits::new().memory(256 << 20);
    /// // SAFETY: this example has one thread.
    /// let parked = unsafe { template.park_closure_bytes(|| {}, || Ok(b"42".to_vec())) }?;
    /// // Later: the call's own limits (same memory, its own wall time).
    /// let call = template.clone().wall_time(Duration::from_secs(1));
    /// assert!(parked.fits(&call));
    /// let outcome = parked.release(&call)?.wait()?;
    /// assert_eq!(outcome.value.as_deref(), Some(&b"42"[..]));
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    ///
    /// # Safety
    /// As for [`Limits::spawn_closure_unchecked`].
    pub unsafe fn park_closure_bytes<P, F>(&self, prepare: P, f: F) -> Result<Parked, Error>
    where
        P: FnOnce(),
        F: FnOnce() -> Result<Vec<u8>, String>,
    {
        self.validate()?;
        let mut plan = ChildPlan::new(
            self,
            Payload::Closure(closure_body(move |_: &mut [u8]| f().map(Encoded::Heap))),
        )?;
        plan.prepare = Some(Box::new(prepare));
        Ok(Parked {
            inner: supervise::park(self, plan)?,
        })
    }
}

impl Parked {
    /// The parked child's pid (also its process group on the process-group backend).
    pub fn pid(&self) -> i32 {
        self.inner.pid().as_raw_pid()
    }

    /// Whether this child can take a call under `limits`: all but the per-call limits (wall and
    /// CPU time, grace period, soft signals, result cap, drain timeout, sampling interval) equal
    /// those it was parked with.
    pub fn fits(&self, limits: &Limits) -> bool {
        self.inner.fits(limits)
    }

    /// Lets the child run under `limits` and supervises it like any started call. Limits it does
    /// not [fit](Parked::fits) are an [`Error::InvalidLimit`] naming `limits`; on every error
    /// the child is killed and its container removed.
    pub fn release(self, limits: &Limits) -> Result<Running<Vec<u8>>, Error> {
        let started = self.inner.release(limits)?;
        Running::local(started, raw_bytes)
    }
}
