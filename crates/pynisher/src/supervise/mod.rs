//! Waiting, enforcing, ending: the supervisor loop, bounded output draining, and classification.

mod behind;
mod classify;
mod drain;
mod park;
mod reaping;
mod start;
mod supervisor;

pub use behind::Behind;
pub(crate) use park::{park, ParkedStart};
pub(crate) use start::{start, Started};
pub(crate) use supervisor::{supervise, supervise_result_first};
