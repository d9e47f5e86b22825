//! Run a closure or a command in a child process under memory, CPU-time, wall-time and
//! process-count limits; get back its result, or exactly why it did not finish.
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
//! `supervise/supervisor.rs`, results are decoded in `transport.rs` and `call.rs`.

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
mod running;
mod supervise;
mod sys;
pub mod transport;
pub mod units;
mod zygote;

pub use call::{NoObserver, Observer, Progress};
pub use contain::available_backends;
pub use error::Error;
pub use launch::{Command, Stdin};
#[doc(hidden)]
pub use limited::__macro;
pub use limited::CallError;
pub use limits::{Backend, Limits, MemoryLimitKind, DEFAULT_OUTPUT_LIMIT};
pub use names::UnknownName;
pub use outcome::{
    Captured, Containment, CpuMeasure, CpuTime, Guarantees, MemoryMeasure, Outcome, Status,
};
#[cfg(feature = "macros")]
pub use pynisher_macros::limit;
pub use running::Running;
pub use sys::become_subreaper;
pub use zygote::init;
