//! What another process needs to empty a call's container after the call's supervisor died:
//! plain data (paths and a process group), and the code that acts on it. The guard
//! (`crate::guard`) keeps one [`Remains`] per call in flight and runs [`destroy`] on each when the
//! caller dies.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroupfs::{empty_and_remove, try_remove_tree};

/// How long [`destroy`] keeps killing and removing before it gives up on a leaf.
const BUDGET: Duration = Duration::from_secs(3);

/// Everything of one call that must die with its caller, as data another process can use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remains {
    /// The call's cgroup leaves (v1: one per hierarchy, the freezer's first; v2: one), as raw
    /// path bytes.
    pub leaves: Vec<Vec<u8>>,
    /// The call's process group, once the child exists (0 before).
    pub pgid: i32,
}

impl Remains {
    /// The remains of a call whose only handle is its process group (learnt after the fork).
    pub(crate) fn process_group() -> Self {
        Self::default()
    }

    /// The remains of a call held in cgroup leaves (a v1 freezer leaf first: emptying it
    /// empties the others).
    pub(crate) fn cgroups(leaves: &[PathBuf]) -> Self {
        Remains {
            leaves: leaves.iter().map(|l| bytes(l)).collect(),
            pgid: 0,
        }
    }

    /// Whether the process group is the only handle (then the guard must know it before the
    /// child may run: see `supervise::start`).
    pub(crate) fn needs_process_group(&self) -> bool {
        self.leaves.is_empty()
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// SIGKILLs every process of the call and removes its leaves. A process that joins a leaf while
/// this runs (a child still on its way in) keeps the leaf busy, so the kill is repeated until
/// every leaf is gone or the budget is spent; a child that finds its leaf removed cannot join
/// and exits.
pub(crate) fn destroy(remains: &Remains) {
    if remains.pgid > 1 {
        crate::sys::kill_group(remains.pgid, libc::SIGKILL);
    }
    let deadline = Instant::now() + BUDGET;
    let mut left: Vec<PathBuf> = remains.leaves.iter().map(|l| path(l)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|leaf| empty_and_remove(leaf).is_err());
    }
}

/// Removes the emptied leaves of a call that is over (the guard, on `Remove`), without
/// waiting: the leaves still busy (the last process's teardown not yet done) stay in
/// `remains`, for a retry. True when none is left.
pub(crate) fn remove_emptied(remains: &mut Remains) -> bool {
    remains
        .leaves
        .retain(|leaf| try_remove_tree(&path(leaf)).is_err());
    remains.leaves.is_empty()
}
