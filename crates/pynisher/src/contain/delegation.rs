//! Where a cgroup v2 call's leaves go, and how the `memory` and `pids` controllers reach them,
//! without harming the cgroup the caller runs in.
//!
//! The caller's own cgroup (`base`, from `/proc/self/cgroup`) is usually a systemd unit, a
//! delegated scope, a container's cgroup or a SLURM job step. Leaves go in `base/pynisher/`. Two
//! kernel rules decide what they can get:
//!
//! - *No internal processes*: a non-root cgroup that holds processes cannot enable a domain
//!   controller (`memory`) for its children (EBUSY).
//! - *Threaded mode*: enabling a threaded controller (`pids`) in a populated non-root cgroup is
//!   accepted, but turns it into a `domain threaded` cgroup whose domain children (our leaves)
//!   then refuse processes (EOPNOTSUPP). The caller's cgroup would be damaged for good.
//!
//! So we never write a control file of a cgroup that holds processes we do not own, and we write
//! `memory` and `pids` together in one write (the kernel vets them together: EBUSY for both).
//! The controllers reach our leaves in one of three ways:
//!
//! 1. `base` is the root cgroup (no `cgroup.type` file): it is exempt from the rule; leaves get
//!    what the root already hands down. We do not change the root's `subtree_control`.
//! 2. The caller is **alone** in `base` (its `cgroup.procs`, and every cgroup below, list only
//!    this process) and `base` offers controllers it does not hand down: the caller moves itself
//!    into `base/pynisher/caller-<pid>-<start>`, then `base` and `base/pynisher` hand down
//!    `memory` and `pids`. Nothing else lived in `base`, so nothing else is affected. From then on
//!    `/proc/self/cgroup` shows the caller leaf; processes the caller starts later are born there;
//!    `base` can take no new process directly (the kernel refuses, as for any cgroup that hands
//!    controllers down), and `base`'s `cgroup.type` stays `domain`.
//! 3. Otherwise (others share `base`) no controller is handed down; the leaves still give
//!    membership, exact CPU time and `cgroup.kill`, and the outcome's notes say why the limits
//!    fall back.
//!
//! A process started inside a caller leaf (a program the caller ran) puts its leaves beside the
//! caller leaf, in `base/pynisher/`, and so gets the same controllers.

use std::path::{Path, PathBuf};

use super::cgroupfs::{caller_leaf_name, procs_recursive};

/// The controllers our leaves want, in the order they are written.
const CONTROLLERS: [&str; 2] = ["memory", "pids"];

/// Where the leaves go and what detection has to say about it.
pub(super) struct LeafParent {
    pub dir: PathBuf,
    pub notes: Vec<String>,
}

/// Prepares the directory under which this process's v2 leaves go (see the module doc).
pub(super) fn prepare(base: &Path) -> Result<LeafParent, String> {
    if let Some(dir) = home_of_caller_leaf(base) {
        return Ok(LeafParent {
            dir,
            notes: Vec::new(),
        });
    }
    let is_root = !base.join("cgroup.type").exists();
    if !is_root {
        let kind = read_trimmed(&base.join("cgroup.type"));
        if kind != "domain" {
            return Err(format!(
                "{} is a `{kind}` cgroup (threaded mode): the cgroups below it cannot hold \
                 processes of their own",
                base.display()
            ));
        }
    }
    let dir = base.join("pynisher");
    let mut notes = Vec::new();
    let missing = missing_controllers(base);
    if !missing.is_empty() && !is_root {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let procs = procs_recursive(base);
        if procs == [me] {
            notes.extend(move_caller_and_hand_down(base, &dir, &missing)?);
        } else {
            let others = procs.iter().filter(|&&p| p != me).count();
            notes.push(format!(
                "cgroup v2: {} holds {others} other process(es), so its {} controller(s) cannot \
                 be handed down to the call's leaf without moving them; the caller is moved into \
                 a leaf of its own only when it is alone there",
                base.display(),
                missing.join(" and ")
            ));
        }
    } else if !missing.is_empty() {
        notes.push(format!(
            "cgroup v2: the root cgroup does not hand down {}; pynisher does not change the \
             root's cgroup.subtree_control",
            missing.join(" and ")
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    hand_down(&dir);
    Ok(LeafParent { dir, notes })
}

/// When `base` is a caller leaf (`<x>/pynisher/caller-…`), the `pynisher` directory beside it.
fn home_of_caller_leaf(base: &Path) -> Option<PathBuf> {
    let name = base.file_name()?.to_str()?;
    let parent = base.parent()?;
    (name.starts_with("caller-")
        && parent.file_name()? == "pynisher"
        && is_writable(&parent.join("cgroup.procs")))
    .then(|| parent.to_path_buf())
}

/// Moves this process (alone in `base`) into a caller leaf below `dir`, then enables `missing`
/// in `base`. Returns the notes for the outcome.
fn move_caller_and_hand_down(
    base: &Path,
    dir: &Path,
    missing: &[&str],
) -> Result<Vec<String>, String> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let home = dir.join(caller_leaf_name());
    std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    if let Err(e) = std::fs::write(home.join("cgroup.procs"), me.to_string()) {
        let _ = std::fs::remove_dir(&home);
        return Ok(vec![format!(
            "cgroup v2: could not move the caller into {} ({e}); no controller is handed down",
            home.display()
        )]);
    }
    let moved = format!(
        "cgroup v2: the caller (pid {me}) moved from {} into {} so that its {} controller(s) \
         reach the call's leaf",
        base.display(),
        home.display(),
        missing.join(" and ")
    );
    // One write: the kernel vets domain and threaded controllers together, so a process that
    // joined `base` meanwhile makes the whole write fail (EBUSY) rather than thread `base`.
    let change: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    match std::fs::write(base.join("cgroup.subtree_control"), change.join(" ")) {
        Ok(()) => Ok(vec![moved]),
        Err(e) => Ok(vec![
            moved,
            format!(
                "cgroup v2: {} refused to hand down {} ({e}); the leaf has no controllers",
                base.display(),
                missing.join(" and ")
            ),
        ]),
    }
}

/// Enables in our own `dir` (which holds no process) every wanted controller it receives.
fn hand_down(dir: &Path) {
    if !procs_only(dir).is_empty() {
        // Someone put a process here; writing could thread it.
        return;
    }
    let missing = missing_controllers(dir);
    if missing.is_empty() {
        return;
    }
    let change: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    let _ = std::fs::write(dir.join("cgroup.subtree_control"), change.join(" "));
}

/// The wanted controllers that `dir` offers (`cgroup.controllers`) but does not hand down.
fn missing_controllers(dir: &Path) -> Vec<&'static str> {
    let offered = read_words(&dir.join("cgroup.controllers"));
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    CONTROLLERS
        .into_iter()
        .filter(|c| offered.iter().any(|o| o == c) && !enabled.iter().any(|e| e == c))
        .collect()
}

/// The processes directly in `dir` (not below it).
fn procs_only(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub(super) fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub(super) fn is_writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}
