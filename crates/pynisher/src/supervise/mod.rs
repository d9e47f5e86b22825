//! Waiting, enforcing, ending: the supervisor loop, bounded output draining, and classification.

mod classify;
mod drain;
mod park;
mod reaping;
mod start;
mod supervisor;

pub(crate) use park::{park, ParkedStart};
pub(crate) use start::{start, Started};
pub(crate) use supervisor::supervise;
