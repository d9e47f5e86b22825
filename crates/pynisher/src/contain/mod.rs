//! Containment backends: where the processes of a call live, how they are measured and killed.
//!
//! Dependencies run one way: `select` (the Auto rule) → the backends (`cgroup_v1`, `cgroup_v2`,
//! `process_group`) → `detect` (what this machine offers; `delegation` decides where v2 leaves
//! go) and `cgroupfs` (cgroup file I/O and the leaf lifecycle); `backend` defines the trait they
//! all implement; `ahead` makes cgroup leaves before calls need them and removes them after.

mod ahead;
mod backend;
mod cgroup_v1;
mod cgroup_v2;
mod cgroupfs;
mod delegation;
mod detect;
mod emergency;
mod passed_over;
mod process_group;
mod select;
#[cfg(test)]
mod test_support;

pub use ahead::one_call_per_process;
pub(crate) use ahead::{
    at_exit_wait_for_guard, leave_nothing_behind, Guarded, Register, Registration,
};
pub(crate) use backend::{CallContainer, MainProcess, Sample};
pub(crate) use detect::{sweep_deferred, sweep_in_forked_guard};
pub(crate) use emergency::{destroy, remove_emptied, Remains};
pub(crate) use select::open;
pub use select::{available_backends, preferred_backend};
