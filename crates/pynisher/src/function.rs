//! The threaded path's entry points: [`Limits::spawn_fn`] and [`Limits::run_fn`] run a plain
//! `fn(A) -> T` through the zygote (see [`crate::init`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::postcard_value;
use crate::zygote::{self, Trampoline};
use crate::{Error, Limits, Outcome, Running};

/// Runs in the call's process: decodes the argument, calls `function` (an `fn(A) -> T`), encodes
/// the value.
fn trampoline<A: DeserializeOwned, T: Serialize>(
    function: usize,
    argument: &[u8],
) -> Result<Vec<u8>, String> {
    // SAFETY: `function` is the address of an `fn(A) -> T` taken in `spawn_fn::<A, T>`, the only
    // place that names `trampoline::<A, T>`; the call's process is a copy of the same image.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> T>(function) };
    let argument: A = postcard::from_bytes(argument)
        .map_err(|e| format!("the argument could not be decoded: {e}"))?;
    postcard::to_stdvec(&f(argument)).map_err(|e| e.to_string())
}

impl Limits {
    /// Runs `f(arg)` under these limits in a child process and waits for its value; safe from a
    /// program with any number of threads. See [`Limits::spawn_fn`].
    ///
    /// ```
    /// let outcome = pynisher::Limits::new().run_fn(|n: u64| (1..=n).product::<u64>(), 10)?;
    /// assert_eq!(outcome.value, Some(3628800));
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn run_fn<A, T>(&self, f: fn(A) -> T, arg: A) -> Result<Outcome<T>, Error>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        self.spawn_fn(f, arg)?.wait()
    }

    /// Starts `f(arg)` under these limits in a child process; safe from a program with any number
    /// of threads.
    ///
    /// The call is forked by the zygote that [`crate::init`] started (if `init` was not called
    /// and the process still has one thread, it is called now; with several threads this fails
    /// with [`Error::NotInitialized`]). The zygote forks a supervisor process for the call, which
    /// forks the call's process, enforces the limits and sends the [`Outcome`] back: the statuses
    /// are those of [`Limits::run_closure`].
    ///
    /// What must hold, and what happens otherwise:
    /// - `f` is a plain `fn` (a closure that captures nothing coerces to one) in code loaded
    ///   before `init` ran; else [`Error::FunctionNotInZygote`]. Its value crosses back with
    ///   postcard (`T: Serialize + DeserializeOwned`), and so does `arg` on the way in.
    /// - The function runs in a copy of the program as it was when `init` ran, not as it is now:
    ///   statics changed since then, open files and threads are not there. Pass what it needs in
    ///   `arg`. Its stdout and stderr are the program's at `init` (or captured, see
    ///   [`Limits::capture_output`]).
    /// - Starting blocks until the call's process runs (about a millisecond); waiting does not
    ///   need to block: see [`Running::try_wait`] and `Running::wait_async`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pynisher::{Limits, Status};
    ///
    /// let limits = Limits::new().wall_time(Duration::from_millis(200));
    /// let calls: Vec<_> = (0..4u64)
    ///     .map(|ms| limits.spawn_fn(|ms: u64| std::thread::sleep(Duration::from_millis(ms * 1000)), ms))
    ///     .collect::<Result<_, _>>()?;
    /// let statuses: Vec<Status> = calls
    ///     .into_iter()
    ///     .map(|c| c.wait().map(|o| o.status))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(statuses[0], Status::Completed);
    /// assert!(statuses[1..].iter().all(|s| *s == Status::WallTimeout));
    /// # Ok::<(), pynisher::Error>(())
    /// ```
    pub fn spawn_fn<A, T>(&self, f: fn(A) -> T, arg: A) -> Result<Running<T>, Error>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        self.validate()?;
        let argument = postcard::to_stdvec(&arg).map_err(|e| Error::Encode(e.to_string()))?;
        let call =
            zygote::start_call(self, trampoline::<A, T> as Trampoline, f as usize, argument)?;
        Running::remote(call, postcard_value::<T>)
    }
}
