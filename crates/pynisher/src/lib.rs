//! Run a function or a command in a child process under memory, CPU-time, wall-time and
//! process-count limits; get back its result, or exactly why it did not finish.
//!
//! **Platform:** Linux only (pidfd, `/proc`, cgroups; kernel 5.3+, 5.7+ for the fastest cgroup v2
//! path). **Containment backends**, chosen per call ([`Limits::backend`], [`Backend::Auto`] picks
//! the strongest available) and reported in every [`Outcome`] with what they guarantee: a cgroup
//! v2 leaf (a writable or delegated hierarchy), cgroup v1 leaves (root), or the call's process
//! group with `/proc` polling and rlimits (always available, weaker: see [`Guarantees`]).
//!
//! # Functions, from any program: `init()` first in `main`
//!
//! Forking a process that has several threads is unsafe (the child may need a lock another thread
//! held). Call [`init`] first in `main`, before any thread starts: it forks a small *zygote* while
//! the program has one thread. [`Limits::run_fn`] / [`Limits::spawn_fn`] then work from any thread
//! and any runtime: the zygote forks a supervisor per call, which forks the call's process,
//! enforces the limits and sends the [`Outcome`] back. The function is a plain `fn(A) -> T`
//! (non-capturing closures coerce), `A` and `T` are `Serialize + DeserializeOwned`, and it sees the
//! program as it was when `init` ran. Without `init`, a program that still has one thread starts
//! the zygote on first use; one with several threads gets [`Error::NotInitialized`], never
//! undefined behaviour.
//!
//! ```
//! use std::time::Duration;
//! use pynisher::{Limits, Status};
//!
//! fn main() -> Result<(), pynisher::Error> {
//!     pynisher::init()?; // first, before any thread
//!     let limits = Limits::new().wall_time(Duration::from_secs(2)).memory(512 << 20);
//!     let workers: Vec<_> = (0..4u64)
//!         .map(|n| {
//!             let limits = limits.clone();
//!             std::thread::spawn(move || limits.run_fn(|n: u64| (1..=n + 10).product::<u64>(), n))
//!         })
//!         .collect();
//!     for w in workers {
//!         let outcome = w.join().unwrap()?;
//!         assert_eq!(outcome.status, Status::Completed);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Many calls from one thread: [`Running::try_wait`], [`Running::kill`] and the descriptor of a
//! [`Running`] ([`std::os::fd::AsFd`], readable when the outcome is in); with the `tokio` feature,
//! `Running::wait_async` awaits a call without a thread per call.
//!
//! # The `#[limit]` attribute (feature `macros`, on by default)
//!
//! ```
//! #[pynisher::limit(wall_time = "2s", memory = "512MiB")]
//! fn factorial(n: u64) -> u64 {
//!     (1..=n).product()
//! }
//!
//! assert_eq!(factorial(20)?, 2432902008176640000);
//! # Ok::<(), pynisher::CallError>(())
//! ```
//!
//! # Closures and commands
//!
//! [`Limits::run_command`] runs a program (fork + exec: safe from any thread).
//! [`Limits::run_closure`] forks the caller itself to run any closure, without serializing it, and
//! refuses a multi-threaded caller ([`Error::ThreadedCaller`]); the `unsafe`
//! [`Limits::spawn_closure_unchecked`] is for callers who know their closure only touches
//! fork-safe state.
//!
//! ```
//! use std::time::Duration;
//! use pynisher::{Limits, Status};
//!
//! let limits = Limits::new().wall_time(Duration::from_secs(2));
//! let outcome = limits.run_closure(|| (1..=10u64).product::<u64>())?;
//! assert_eq!(outcome.status, Status::Completed);
//! assert_eq!(outcome.value, Some(3628800));
//! # Ok::<(), pynisher::Error>(())
//! ```
//!
//! The map of the crate is in `docs/architecture.md`: limits are set before the fork in `contain/`
//! (the call's cgroup leaf) and in the child by `launch/child.rs` (rlimits), kills are decided in
//! `supervise/supervisor.rs`, results are decoded in `transport.rs` and `call.rs`; the threaded
//! path is in `zygote/`.

#![warn(missing_docs)]

mod call;
mod contain;
mod error;
mod function;
pub mod guard;
mod launch;
mod limited;
mod limits;
mod names;
mod outcome;
mod parked;
mod running;
mod supervise;
mod sys;
pub mod transport;
pub mod units;
mod weakness;
mod zygote;

pub use call::{NoObserver, Observer, Progress};
pub use contain::{available_backends, one_call_per_process, preferred_backend};
pub use error::{Error, ErrorChain};
pub use launch::{Command, Stdin};
#[doc(hidden)]
pub use limited::__macro;
pub use limited::CallError;
pub use limits::{
    Backend, Limits, MemoryLimitKind, DEFAULT_MEMORY_SAMPLE_INTERVAL, DEFAULT_OUTPUT_LIMIT,
    DEFAULT_RESULT_LIMIT, MAX_PROCESSES,
};
pub use names::UnknownName;
pub use outcome::{
    Captured, Containment, CpuMeasure, CpuTime, Guarantees, MemoryMeasure, Outcome, Status,
};
pub use parked::Parked;
/// Runs the function's body in a child process under limits: calling it returns
/// `Result<T, CallError>` instead of `T`.
///
/// Keys (all optional): `wall_time`, `cpu_time`, `grace_period` (duration strings such as `"2s"`,
/// `"1500ms"`), `memory` (`"512MiB"` or a number of bytes), `max_processes` (a number),
/// `capture_output` (`true`/`false`), `backend` (`"auto"`, `"cgroup2"`, `"cgroup1"`, `"none"`).
/// An unknown key or a non-literal value is a compile error; a value that does not parse is
/// [`CallError::Pynisher`] naming the key and the value.
///
/// The function must be a free, non-generic, non-async `fn` whose arguments and return type are
/// `Serialize + DeserializeOwned`; its body becomes a plain `fn` run by [`Limits::run_fn`], so
/// the rules of the threaded path hold ([`init`] first in `main` in a multi-threaded program).
///
/// Why `Result<T, CallError>`: the caller gets the value with `?`, and when there is none the
/// error says whether pynisher could not run the call ([`CallError::Pynisher`]) or why the call
/// ended without a value ([`CallError::Ended`], with the whole [`Outcome`]).
///
/// ```
/// use pynisher::{CallError, Status};
///
/// #[pynisher::limit(wall_time = "300ms")]
/// fn sleepy(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// assert_eq!(sleepy(1).unwrap(), 1);
/// let err = sleepy(10_000).unwrap_err();
/// assert_eq!(err.status(), Some(&Status::WallTimeout));
/// ```
#[cfg(feature = "macros")]
pub use pynisher_macros::limit;
pub use running::Running;
pub use supervise::Behind;
pub use sys::become_subreaper;
pub use weakness::Weakness;
pub use zygote::init;
