//! What this process can use, detected once per process: its own cgroups (`/proc/self/cgroup`),
//! where they are mounted (`/proc/self/mountinfo`), and the writable directories under which the
//! cgroup backends put their leaves.
//!
//! Our own cgroup is read from `/proc/self/cgroup` (one line per v1 hierarchy, `0::` for v2) and
//! located under its mount point from `/proc/self/mountinfo`. Leaves are created as
//! `<own cgroup>/pynisher/call-<supervisor pid>-<supervisor start time>-<counter>` (cgroup v2:
//! `delegation.rs` says how the controllers reach them, and when the caller moves). The first
//! time a process uses a hierarchy, leaves whose supervisor is provably dead (no process with its
//! pid, or one that started at another time) are emptied (SIGKILL) and removed, so a crashed
//! caller's leftovers do not accumulate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sys;

use super::cgroupfs::{leaf_name, remove_stale_leaves, OwnerVerdicts};
use super::delegation::{self, is_writable, read_words, LeafParent};

// cgroup is the call's leaf, not its parent's cgroup).

/// The cgroup v1 hierarchies a v1 container uses: the directory under which its leaves go.
#[derive(Debug, Clone)]
pub(super) struct V1Env {
    pub memory: PathBuf,
    pub cpuacct: PathBuf,
    pub pids: PathBuf,
    pub freezer: PathBuf,
    /// Whether `memory.memsw.limit_in_bytes` exists (swap accounting on).
    pub has_memsw: bool,
}

/// A writable cgroup v2 directory under which leaves go, and the controllers they get.
#[derive(Debug, Clone)]
pub(super) struct V2Env {
    pub parent: PathBuf,
    pub has_memory: bool,
    pub has_pids: bool,
    /// Whether `cgroup.kill` exists (kernel 5.14+).
    pub has_kill: bool,
    /// What detection did or could not do (a caller moved, controllers not handed down), for
    /// every call's outcome.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Environment {
    pid: i32,
    /// `/proc/self/cgroup` as read at detection: where this process's own cgroups are.
    own: String,
    pub v1: Result<V1Env, String>,
    /// Detected with the rest, or on first use when it cannot outrank cgroup v1 (see [`detect`]).
    v2: OnceLock<Result<V2Env, String>>,
    /// Where this process's cgroup v2 directory is, for a deferred v2 detection.
    v2_base: Result<PathBuf, &'static str>,
    /// Whether v2 could be chosen over v1: it offers `memory`, or v1 is unusable.
    v2_may_outrank_v1: bool,
}

impl Environment {
    /// The cgroup v2 findings, detected now if detection deferred them.
    pub fn v2(&self) -> &Result<V2Env, String> {
        self.v2
            .get_or_init(|| detect_v2(self.v2_base.clone(), &mut OwnerVerdicts::new()))
    }

    /// The cgroup v2 findings when Auto could choose v2 over v1 (v2 offers the `memory`
    /// controller, or v1 is unusable); `None` when v2 could only rank below a usable v1, so
    /// that a process that will use v1 never probes or sweeps v2.
    pub fn v2_for_auto(&self) -> Option<&Result<V2Env, String>> {
        match self.v2.get() {
            Some(found) => Some(found),
            None => self.v2_may_outrank_v1.then(|| self.v2()),
        }
    }
}

/// The process (pid; 0: none) whose stale-leaf sweeps are left to the guard it forks.
static SWEEP_IN_GUARD: AtomicI32 = AtomicI32::new(0);
/// The leaf parents whose sweep waits for that guard (it inherits this list with the fork).
static DEFERRED_SWEEPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// This process will fork its guard after its first call's release (the `pynisher` command): its
/// detection leaves the stale-leaf sweep to that guard, off the call's path. A guard that is not
/// forked in the end (it runs as a program) does not sweep: a later process's detection will.
pub(crate) fn sweep_in_forked_guard() {
    SWEEP_IN_GUARD.store(
        rustix::process::getpid().as_raw_nonzero().get(),
        Ordering::Relaxed,
    );
}

/// Removes the stale leaves under `parent`, or leaves that to this process's forked guard.
fn sweep(parent: &std::path::Path, verdicts: &mut OwnerVerdicts) {
    if SWEEP_IN_GUARD.load(Ordering::Relaxed) == rustix::process::getpid().as_raw_nonzero().get() {
        DEFERRED_SWEEPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(parent.to_path_buf());
    } else {
        remove_stale_leaves(parent, verdicts);
    }
}

/// In a guard forked from its caller: the sweeps the caller left to it, on a thread of their own
/// (a stale leaf that resists can take seconds; the guard keeps serving meanwhile). The guard
/// joins it before it exits.
pub(crate) fn sweep_deferred() -> Option<std::thread::JoinHandle<()>> {
    let parents = std::mem::take(&mut *DEFERRED_SWEEPS.lock().unwrap_or_else(|e| e.into_inner()));
    if parents.is_empty() {
        return None;
    }
    std::thread::Builder::new()
        .name("pynisher-sweep".into())
        .spawn(move || {
            let mut verdicts = OwnerVerdicts::new();
            for parent in &parents {
                remove_stale_leaves(parent, &mut verdicts);
            }
        })
        .ok()
}

pub(super) fn environment() -> Arc<Environment> {
    static CACHE: Mutex<Option<Arc<Environment>>> = Mutex::new(None);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = cache.as_ref() {
        if env.pid == pid {
            return env.clone();
        }
    }
    let own = sys::read_proc_text("/proc/self/cgroup").unwrap_or_default();
    let env = Arc::new(refresh(cache.as_deref(), pid, own));
    *cache = Some(env.clone());
    env
}

/// The findings for process `pid` whose `/proc/self/cgroup` reads `own`. A forked child still in
/// its parent's cgroups (a per-call supervisor forked from a server) reuses the parent's findings
/// (detection costs about 250 µs); a process in other cgroups (inside a call's leaf) detects anew.
fn refresh(cached: Option<&Environment>, pid: i32, own: String) -> Environment {
    match cached {
        Some(parent) if parent.own == own => Environment {
            pid,
            own,
            v1: parent.v1.clone(),
            v2: parent.v2.clone(),
            v2_base: parent.v2_base.clone(),
            v2_may_outrank_v1: parent.v2_may_outrank_v1,
        },
        _ => detect(pid, own),
    }
}

fn detect(pid: i32, own_text: String) -> Environment {
    let mounts = sys::read_proc_text("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mounts);
    let own = parse_proc_cgroup(&own_text);
    let mut verdicts = OwnerVerdicts::new();
    let v1 = detect_v1(&own, &mounts, &mut verdicts);
    let v2_base = v2_base(&own, &mounts);
    // A v2 hierarchy that does not offer `memory` ranks below a usable v1 (cgroup v1 with the
    // usual empty cgroup2 mount beside it): its probe leaf and sweep wait until v2 is asked for.
    let v2 = OnceLock::new();
    let v2_may_outrank_v1 = v1.is_err() || offers_memory(&v2_base);
    if v2_may_outrank_v1 {
        let _ = v2.set(detect_v2(v2_base.clone(), &mut verdicts));
    }
    // Detection may have moved this process into a caller leaf (`delegation.rs`, part of the v2
    // detection): remember where it is now, so that a forked child that stays there reuses
    // these findings.
    let own_text = if v2.get().is_some() {
        sys::read_proc_text("/proc/self/cgroup").unwrap_or(own_text)
    } else {
        own_text
    };
    Environment {
        pid,
        v1,
        v2,
        v2_base,
        v2_may_outrank_v1,
        own: own_text,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    /// Super-block options: the controllers of a v1 hierarchy (`rw,cpu,cpuacct`).
    options: Vec<String>,
}

fn unescape_mount(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        if right[0] != "cgroup" && right[0] != "cgroup2" {
            continue;
        }
        out.push(Mount {
            root: unescape_mount(left[3]),
            point: PathBuf::from(unescape_mount(left[4])),
            fstype: right[0].to_string(),
            options: right[2].split(',').map(str::to_string).collect(),
        });
    }
    out
}

/// `(hierarchy id, controllers, path)` from `/proc/self/cgroup`.
fn parse_proc_cgroup(text: &str) -> Vec<(u32, Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctrls = it.next()?;
            let path = it.next()?.to_string();
            let ctrls = if ctrls.is_empty() {
                Vec::new()
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            Some((id, ctrls, path))
        })
        .collect()
}

/// The directory of cgroup `path` under mount `m`, when the mount shows that part of the hierarchy.
fn dir_in_mount(m: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if m.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(m.root.as_str())?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    Some(if rel.is_empty() {
        m.point.clone()
    } else {
        m.point.join(rel)
    })
}

fn detect_v1(
    own: &[(u32, Vec<String>, String)],
    mounts: &[Mount],
    verdicts: &mut OwnerVerdicts,
) -> Result<V1Env, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("cgroup v1 leaves need root".into());
    }
    let mut dirs = Vec::new();
    for ctrl in ["memory", "cpuacct", "pids", "freezer"] {
        let (_, _, path) = own
            .iter()
            .find(|(id, c, _)| *id != 0 && c.iter().any(|c| c == ctrl))
            .ok_or_else(|| format!("no cgroup v1 {ctrl} hierarchy in /proc/self/cgroup"))?;
        let dir = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == ctrl))
            .find_map(|m| dir_in_mount(m, path))
            .ok_or_else(|| format!("the cgroup v1 {ctrl} hierarchy is not mounted here"))?;
        let parent = dir.join("pynisher");
        // Usually made by an earlier process: one `access` says so (a `mkdir` that fails with
        // EEXIST and a `stat` would cost two more system calls per hierarchy on every start).
        if !is_writable(&parent.join("cgroup.procs")) {
            std::fs::create_dir_all(&parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            if !is_writable(&parent.join("cgroup.procs")) {
                return Err(format!("{} is not writable", parent.display()));
            }
        }
        dirs.push(parent);
    }
    let freezer = dirs.pop().unwrap_or_default();
    let pids = dirs.pop().unwrap_or_default();
    let cpuacct = dirs.pop().unwrap_or_default();
    let memory = dirs.pop().unwrap_or_default();
    let has_memsw = memory.join("memory.memsw.limit_in_bytes").exists();
    // Freezer first: the stale leaves' processes are killed there, the others are then empty.
    for dir in [&freezer, &memory, &cpuacct, &pids] {
        sweep(dir, verdicts);
    }
    Ok(V1Env {
        memory,
        cpuacct,
        pids,
        freezer,
        has_memsw,
    })
}

const NOT_IN_V2: &str = "this process is in no cgroup v2 hierarchy";
const NO_V2_MOUNT: &str = "no cgroup v2 hierarchy is mounted here";

/// Whether a v2 detection failure is about a hierarchy that exists (worth a note when Auto
/// passes it over), not about the absence of one.
pub(super) fn v2_present(reason: &str) -> bool {
    reason != NOT_IN_V2 && reason != NO_V2_MOUNT
}

/// This process's cgroup v2 directory, or why there is none.
fn v2_base(own: &[(u32, Vec<String>, String)], mounts: &[Mount]) -> Result<PathBuf, &'static str> {
    let (_, _, path) = own
        .iter()
        .find(|(id, c, _)| *id == 0 && c.is_empty())
        .ok_or(NOT_IN_V2)?;
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| dir_in_mount(m, path))
        .ok_or(NO_V2_MOUNT)
}

/// Whether the cgroup v2 directory offers the `memory` controller (`cgroup.controllers`), the
/// condition for v2 to rank above v1.
fn offers_memory(base: &Result<PathBuf, &'static str>) -> bool {
    base.as_ref().is_ok_and(|b| {
        read_words(&b.join("cgroup.controllers"))
            .iter()
            .any(|c| c == "memory")
    })
}

fn detect_v2(
    base: Result<PathBuf, &'static str>,
    verdicts: &mut OwnerVerdicts,
) -> Result<V2Env, String> {
    let base = base?;
    // Moving the child from our cgroup into a leaf below it needs write access to the common
    // ancestor's cgroup.procs (the cgroup v2 delegation rule).
    if !is_writable(&base.join("cgroup.procs")) {
        return Err(format!(
            "{} is not writable",
            base.join("cgroup.procs").display()
        ));
    }
    let LeafParent { dir: parent, notes } = delegation::prepare(&base)?;
    let enabled = read_words(&parent.join("cgroup.subtree_control"));
    let has = |c: &str| enabled.iter().any(|e| e == c);
    let (has_memory, has_pids) = (has("memory"), has("pids"));
    sweep(&parent, verdicts);
    // Probe a leaf of our own: cgroup.kill only shows in non-root cgroups, and a leaf that is not
    // a plain `domain` (below a threaded cgroup) would refuse our processes at spawn time.
    let probe = parent.join(leaf_name());
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cannot create a leaf in {}: {e}", parent.display()))?;
    let kind = std::fs::read_to_string(probe.join("cgroup.type")).unwrap_or_default();
    let has_kill = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    if kind.trim() != "domain" {
        return Err(format!(
            "a leaf in {} would be a `{}` cgroup and could not hold processes",
            parent.display(),
            kind.trim()
        ));
    }
    Ok(V2Env {
        parent,
        has_memory,
        has_pids,
        has_kill,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_cgroup_lines_are_parsed_with_their_controllers() {
        let text =
            "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                    41 31 0:38 /sub /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw\n\
                    22 1 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(m[0].options.iter().any(|o| o == "cpuacct"));
        assert_eq!(m[1].point, PathBuf::from("/sys/fs/cgroup/uni fied"));
        assert_eq!(m[1].root, "/sub");
        assert_eq!(
            dir_in_mount(&m[1], "/sub/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/uni fied/a/b"))
        );
        assert_eq!(dir_in_mount(&m[1], "/subway"), None);
        assert_eq!(
            dir_in_mount(&m[0], "/"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
    }

    #[test]
    fn proc_cgroup_lines_give_controllers_and_paths() {
        let own = parse_proc_cgroup("4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(
            own[0],
            (4, vec!["memory".to_string()], "/process_api/x".to_string())
        );
        assert_eq!(own[1].1, vec!["cpu".to_string(), "cpuacct".to_string()]);
        assert_eq!(own[2], (0, vec![], "/user.slice".to_string()));
    }

    #[test]
    fn a_process_in_the_same_cgroups_reuses_the_findings_and_one_elsewhere_detects() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let parent = Environment {
            pid: 1,
            own: own.clone(),
            v1: Err("parent's finding".into()),
            v2: OnceLock::from(Err("parent's finding".to_string())),
            v2_base: Err(NO_V2_MOUNT),
            v2_may_outrank_v1: true,
        };
        let child = refresh(Some(&parent), 2, own.clone());
        assert_eq!(child.pid, 2);
        assert_eq!(child.v1.unwrap_err(), "parent's finding");
        // Claiming other cgroups forces a fresh detection of the real ones.
        let moved = refresh(Some(&parent), 3, format!("{own}\n"));
        assert_ne!(
            moved.v2().as_ref().err().map(String::as_str),
            Some("parent's finding")
        );
    }
}
