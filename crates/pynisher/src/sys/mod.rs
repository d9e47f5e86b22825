//! Thin wrappers over the system calls the engine needs that std does not offer.

pub(crate) mod inflight;
mod linux;

pub use linux::become_subreaper;
pub(crate) use linux::*;
