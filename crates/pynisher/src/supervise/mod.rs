//! Waiting, enforcing, ending: the supervisor loop, bounded output draining, and classification.

mod classify;
mod drain;
mod reaping;
mod supervisor;

pub(crate) use supervisor::{start, supervise, Started};
