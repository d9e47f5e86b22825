//! Containment backends: where the processes of a call live, how they are measured and killed.

mod backend;
mod cgroup_v1;
mod cgroup_v2;
mod process_group;
mod select;

pub(crate) use backend::{CallContainer, Sample};
pub use select::available_backends;
pub(crate) use select::open;
