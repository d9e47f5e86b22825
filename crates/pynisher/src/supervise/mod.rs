//! Waiting, enforcing, ending: the supervisor loop, bounded output draining, and classification.

mod classify;
mod drain;
mod reaping;
mod start;
mod supervisor;

pub(crate) use start::{start, Started};
pub(crate) use supervisor::supervise;
