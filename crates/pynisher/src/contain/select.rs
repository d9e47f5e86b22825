//! Choosing the backend for a call, and the cgroup file-system plumbing both cgroup backends share.
//!
//! # How [`Backend::Auto`] chooses
//!
//! A limit *needs* a controller when the kernel must enforce it: the `memory` controller for a
//! memory limit of kind [`MemoryLimitKind::Auto`] or [`MemoryLimitKind::Resident`], the `pids`
//! controller for a process limit. In order, the first that applies wins:
//!
//! 1. **cgroup v2** when a writable v2 hierarchy gives our leaves every controller the limits need
//!    and also the `memory` controller (so the peak is measured), or when there is no cgroup v1.
//! 2. **cgroup v1** when we are root and the `memory`, `cpuacct`, `pids` and `freezer` hierarchies
//!    are mounted and writable.
//! 3. **controller-less cgroup v2** when a v2 hierarchy is writable at all: membership, exact CPU
//!    time and `cgroup.kill` still hold; the memory limit becomes `RLIMIT_AS` per process and the
//!    process limit is enforced by the supervisor's polling.
//! 4. **process group** otherwise.
//!
//! A v2 hierarchy without a memory controller ranks below v1 even for calls without limits: v1
//! measures the peak memory of the call, and a closure child (which cannot be *created* in its
//! cgroup, see `supervisor.rs`) joins a v1 leaf by itself without the grace period that moving a
//! process into a v2 cgroup costs (5–16 ms per call here).
//!
//! A memory limit of the explicit kind [`MemoryLimitKind::Resident`] that no cgroup can enforce is
//! an [`Error::BackendUnavailable`] naming what is missing, never a silent downgrade to the
//! address-space limit. A forced backend that does not work here is the same error, with the
//! reason.
//!
//! # Where leaves live
//!
//! Our own cgroup is read from `/proc/self/cgroup` (one line per v1 hierarchy, `0::` for v2) and
//! located under its mount point from `/proc/self/mountinfo`. Leaves are created as
//! `<own cgroup>/pynisher/call-<supervisor pid>-<counter>`. The first time a process uses a
//! hierarchy, leaves whose supervisor is dead are emptied (SIGKILL) and removed, so a crashed
//! caller's leftovers do not accumulate.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cgroup_v1::CgroupV1Container;
use super::cgroup_v2::CgroupV2Container;
use super::CallContainer;
use crate::{Backend, Error, Limits, MemoryLimitKind};

/// The backends that work on this machine for this process, strongest first.
///
/// A cgroup v2 hierarchy with the `memory` and `pids` controllers ranks above cgroup v1; a v2
/// hierarchy without them ranks below it (it still contains every descendant and measures CPU
/// exactly). [`Backend::ProcessGroup`] is always last and always present.
///
/// ```
/// let backends = pynisher::available_backends();
/// assert_eq!(backends.last(), Some(&pynisher::Backend::ProcessGroup));
/// ```
pub fn available_backends() -> Vec<Backend> {
    let env = environment();
    let mut out = Vec::new();
    let v2_full = env.v2.as_ref().is_ok_and(|v2| v2.has_memory && v2.has_pids);
    if v2_full {
        out.push(Backend::CgroupV2);
    }
    if env.v1.is_ok() {
        out.push(Backend::CgroupV1);
    }
    if env.v2.is_ok() && !v2_full {
        out.push(Backend::CgroupV2);
    }
    out.push(Backend::ProcessGroup);
    out
}

/// Resolves `limits.backend` into a fresh container for one call (see the module doc for the rule).
pub(crate) fn open(limits: &Limits) -> Result<Box<dyn CallContainer>, Error> {
    let need_memory =
        limits.memory.is_some() && limits.memory_kind != MemoryLimitKind::AddressSpace;
    let must_enforce_memory =
        limits.memory.is_some() && limits.memory_kind == MemoryLimitKind::Resident;
    let need_pids = limits.max_processes.is_some();
    if limits.backend == Backend::ProcessGroup {
        if must_enforce_memory {
            return Err(Error::BackendUnavailable {
                backend: Backend::ProcessGroup.name(),
                reason: "a resident memory limit needs a cgroup memory controller, and the \
                         process-group backend has none; use MemoryLimitKind::AddressSpace for an \
                         address-space limit"
                    .to_string(),
            });
        }
        // No cgroup detection at all for the fallback: it must stay cheap and side-effect free.
        return open_process_group(limits);
    }
    let env = environment();

    let no_resident = |backend: Backend, why: &str| Error::BackendUnavailable {
        backend: backend.name(),
        reason: format!(
            "a resident memory limit needs a cgroup memory controller, and {why}; \
             use MemoryLimitKind::AddressSpace for an address-space limit"
        ),
    };

    match limits.backend {
        Backend::CgroupV2 => {
            let v2 = env
                .v2
                .as_ref()
                .map_err(|reason| Error::BackendUnavailable {
                    backend: Backend::CgroupV2.name(),
                    reason: reason.clone(),
                })?;
            if must_enforce_memory && !v2.has_memory {
                return Err(no_resident(
                    Backend::CgroupV2,
                    &format!("{} has no memory controller", v2.parent.display()),
                ));
            }
            Ok(Box::new(CgroupV2Container::open(v2, limits)?))
        }
        Backend::CgroupV1 => {
            let v1 = env
                .v1
                .as_ref()
                .map_err(|reason| Error::BackendUnavailable {
                    backend: Backend::CgroupV1.name(),
                    reason: reason.clone(),
                })?;
            Ok(Box::new(CgroupV1Container::open(v1, limits)?))
        }
        Backend::ProcessGroup => {
            if must_enforce_memory {
                return Err(no_resident(
                    Backend::ProcessGroup,
                    "the process-group backend has none",
                ));
            }
            open_process_group(limits)
        }
        Backend::Auto => {
            // Failures of a cgroup step fall through to the next step: the outcome reports which
            // containment was used, so a weaker one is never passed off as a stronger one.
            if let Ok(v2) = &env.v2 {
                let has_needed = (!need_memory || v2.has_memory) && (!need_pids || v2.has_pids);
                if has_needed && (v2.has_memory || env.v1.is_err()) {
                    if let Ok(c) = CgroupV2Container::open(v2, limits) {
                        return Ok(Box::new(c));
                    }
                }
            }
            if let Ok(v1) = &env.v1 {
                if let Ok(c) = CgroupV1Container::open(v1, limits) {
                    return Ok(Box::new(c));
                }
            }
            if must_enforce_memory {
                let why = match (&env.v1, &env.v2) {
                    (Err(v1), Err(v2)) => format!("cgroup v1: {v1}; cgroup v2: {v2}"),
                    (Err(v1), Ok(v2)) if !v2.has_memory => {
                        format!(
                            "cgroup v1: {v1}; cgroup v2: {} has no memory controller",
                            v2.parent.display()
                        )
                    }
                    _ => "no cgroup leaf could be created".to_string(),
                };
                return Err(no_resident(Backend::Auto, &why));
            }
            if let Ok(v2) = &env.v2 {
                if let Ok(c) = CgroupV2Container::open(v2, limits) {
                    return Ok(Box::new(c));
                }
            }
            open_process_group(limits)
        }
    }
}

fn open_process_group(limits: &Limits) -> Result<Box<dyn CallContainer>, Error> {
    Ok(Box::new(super::process_group::ProcessGroupContainer::new(
        limits,
    )?))
}

// ---------------------------------------------------------------------------------------------
// What this process can use, detected once per process (a forked child re-detects: its own
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
}

#[derive(Debug)]
struct Environment {
    pid: i32,
    /// `/proc/self/cgroup` as read at detection: where this process's own cgroups are.
    own: String,
    v1: Result<V1Env, String>,
    v2: Result<V2Env, String>,
}

fn environment() -> Arc<Environment> {
    static CACHE: Mutex<Option<Arc<Environment>>> = Mutex::new(None);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = cache.as_ref() {
        if env.pid == pid {
            return env.clone();
        }
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
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
        },
        _ => detect(pid, own),
    }
}

fn detect(pid: i32, own_text: String) -> Environment {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mounts);
    let own = parse_proc_cgroup(&own_text);
    Environment {
        pid,
        v1: detect_v1(&own, &mounts),
        v2: detect_v2(&own, &mounts),
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

fn is_writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

fn detect_v1(own: &[(u32, Vec<String>, String)], mounts: &[Mount]) -> Result<V1Env, String> {
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
        std::fs::create_dir_all(&parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        if !is_writable(&parent.join("cgroup.procs")) {
            return Err(format!("{} is not writable", parent.display()));
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
        remove_stale_leaves(dir, false);
    }
    Ok(V1Env {
        memory,
        cpuacct,
        pids,
        freezer,
        has_memsw,
    })
}

fn detect_v2(own: &[(u32, Vec<String>, String)], mounts: &[Mount]) -> Result<V2Env, String> {
    let (_, _, path) = own
        .iter()
        .find(|(id, c, _)| *id == 0 && c.is_empty())
        .ok_or("this process is in no cgroup v2 hierarchy")?;
    let base = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| dir_in_mount(m, path))
        .ok_or("no cgroup v2 hierarchy is mounted here")?;
    // Moving the child from our cgroup into a leaf below it needs write access to the common
    // ancestor's cgroup.procs (the cgroup v2 delegation rule).
    if !is_writable(&base.join("cgroup.procs")) {
        return Err(format!(
            "{} is not writable",
            base.join("cgroup.procs").display()
        ));
    }
    let parent = base.join("pynisher");
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    // Hand memory and pids down to the leaves when our own cgroup has them. Enabling them in our
    // own cgroup fails (EBUSY) when it holds processes and is not the root: the "no internal
    // processes" rule. We do not move the caller to make room; the leaves then go without.
    let available = read_words(&base.join("cgroup.controllers"));
    let wanted: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| available.iter().any(|a| a == c))
        .collect();
    for dir in [&base, &parent] {
        let enabled = read_words(&dir.join("cgroup.subtree_control"));
        for c in &wanted {
            if !enabled.iter().any(|e| e == c) {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
    let enabled = read_words(&parent.join("cgroup.subtree_control"));
    let has = |c: &str| enabled.iter().any(|e| e == c);
    let env = V2Env {
        has_memory: has("memory"),
        has_pids: has("pids"),
        has_kill: true,
        parent,
    };
    remove_stale_leaves(&env.parent, true);
    // cgroup.kill only shows in non-root cgroups, so probe it on a leaf of our own.
    let probe = env.parent.join(leaf_name());
    let has_kill = match std::fs::create_dir(&probe) {
        Ok(()) => {
            let k = probe.join("cgroup.kill").exists();
            let _ = std::fs::remove_dir(&probe);
            k
        }
        Err(e) => {
            return Err(format!(
                "cannot create a leaf in {}: {e}",
                env.parent.display()
            ))
        }
    };
    Ok(V2Env { has_kill, ..env })
}

fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Leaves: names, creation, reading, killing, removal.

/// A fresh leaf name, unique within this process: `call-<pid>-<counter>`.
pub(super) fn leaf_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "call-{}-{}",
        rustix::process::getpid().as_raw_nonzero(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(super) fn cg_err(path: &Path, source: io::Error) -> Error {
    Error::Cgroup {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `value` to a cgroup control file (one `write`, as the kernel wants).
pub(super) fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|e| cg_err(path, e))
}

pub(super) fn open_file(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| cg_err(path, e))
}

/// Reads a small control file from offset 0 through an fd opened once: a `pread` at offset 0
/// makes the kernel regenerate the contents, so a sample costs one system call.
pub(super) fn pread<'b>(file: &File, buf: &'b mut [u8]) -> Option<&'b str> {
    let n = file.read_at(buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()
}

/// Reads a file that may be larger than a small buffer (`cgroup.procs` under a fork bomb).
pub(super) fn pread_all(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, buf.len() as u64)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of `key` in a flat keyed file (`key value` lines: cpu.stat, memory.events, …).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

pub(super) fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed(&std::fs::read_to_string(path).ok()?, key)
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Counts the lines of a `cgroup.procs` read into `buf`: the processes listed.
pub(super) fn count_lines(buf: &[u8]) -> u64 {
    buf.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The pids listed in `dir/cgroup.procs` and in every cgroup below `dir`.
pub(super) fn procs_recursive(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if has_subdirs(&d) {
            stack.extend(subdirs(&d));
        }
    }
    out
}

/// Whether a cgroup directory has child cgroups: its link count is 2 + subdirectories, so a
/// `stat` answers without listing the many control files.
fn has_subdirs(dir: &Path) -> bool {
    rustix::fs::stat(dir).map_or(true, |st| st.st_nlink > 2)
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` to `pid`; true when it was delivered.
pub(super) fn send_signal(pid: i32, signal: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with a positive pid only affects that process; no memory is shared.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// SIGKILLs every process in `dir` and below until none is listed, for at most `budget`. When
/// `freezer_state` names a v1 `freezer.state` file, each pass runs frozen so that nothing can fork
/// between reading the list and killing it. Returns the distinct pids killed and whether the
/// cgroup ended empty.
pub(super) fn kill_until_empty(
    dir: &Path,
    freezer_state: Option<&Path>,
    budget: Duration,
) -> (HashSet<i32>, bool) {
    let deadline = Instant::now() + budget;
    let mut killed = HashSet::new();
    // An empty cgroup stays empty (nothing is left inside to fork), so it needs no freezing.
    if procs_recursive(dir).is_empty() {
        return (killed, true);
    }
    loop {
        if let Some(state) = freezer_state {
            freeze_v1(state, deadline);
        }
        let pids = procs_recursive(dir);
        for &pid in &pids {
            if send_signal(pid, libc::SIGKILL) {
                killed.insert(pid);
            }
        }
        if let Some(state) = freezer_state {
            let _ = std::fs::write(state, "THAWED");
        }
        if pids.is_empty() {
            return (killed, true);
        }
        // Give the killed processes a moment to leave before listing again.
        let settle = Instant::now() + Duration::from_millis(20);
        while Instant::now() < settle {
            if procs_recursive(dir).is_empty() {
                return (killed, true);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if Instant::now() >= deadline {
            return (killed, procs_recursive(dir).is_empty());
        }
    }
}

/// Writes FROZEN and waits (bounded) until the freezer reports FROZEN rather than FREEZING.
fn freeze_v1(state: &Path, deadline: Instant) {
    if std::fs::write(state, "FROZEN").is_err() {
        return;
    }
    let limit = deadline.min(Instant::now() + Duration::from_millis(200));
    loop {
        match std::fs::read_to_string(state) {
            Ok(s) if s.trim() == "FROZEN" => return,
            Ok(_) if Instant::now() < limit => std::thread::sleep(Duration::from_micros(100)),
            _ => return,
        }
    }
}

/// Removes `dir` and every cgroup below it, deepest first, retrying briefly on EBUSY (a killed
/// process may take a moment to leave).
pub(super) fn remove_tree(dir: &Path) -> Result<(), Error> {
    if has_subdirs(dir) {
        for sub in subdirs(dir) {
            remove_tree(&sub)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(cg_err(dir, e)),
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Parses `call-<pid>-<n>` into the supervisor pid.
pub(super) fn leaf_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("call-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Empties and removes the leaves under `parent` whose supervisor process is gone.
fn remove_stale_leaves(parent: &Path, v2: bool) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    for leaf in subdirs(parent) {
        let Some(owner) = leaf
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(leaf_owner)
        else {
            continue;
        };
        if owner == me || pid_alive(owner) {
            continue;
        }
        if v2 && leaf.join("cgroup.kill").exists() {
            let _ = std::fs::write(leaf.join("cgroup.kill"), "1");
        }
        let state = leaf.join("freezer.state");
        let state = state.exists().then_some(state);
        let _ = kill_until_empty(&leaf, state.as_deref(), Duration::from_secs(1));
        let _ = remove_tree(&leaf);
    }
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
            v2: Err("parent's finding".into()),
        };
        let child = refresh(Some(&parent), 2, own.clone());
        assert_eq!(child.pid, 2);
        assert_eq!(child.v1.unwrap_err(), "parent's finding");
        // Claiming other cgroups forces a fresh detection of the real ones.
        let moved = refresh(Some(&parent), 3, format!("{own}\n"));
        assert_ne!(moved.v2.err().as_deref(), Some("parent's finding"));
    }

    #[test]
    fn leaf_names_carry_the_supervisor_pid_and_are_unique() {
        let a = leaf_name();
        let b = leaf_name();
        assert_ne!(a, b);
        let me = rustix::process::getpid().as_raw_nonzero().get();
        assert_eq!(leaf_owner(&a), Some(me));
        assert_eq!(leaf_owner("call-12-x"), None);
        assert_eq!(leaf_owner("pynisher"), None);
    }

    #[test]
    fn keyed_files_are_parsed_by_exact_key() {
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(keyed(text, "usage_usec"), Some(1500));
        assert_eq!(keyed(text, "system_usec"), Some(500));
        assert_eq!(keyed(text, "usec"), None);
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }

    #[test]
    fn forced_process_group_refuses_an_explicit_resident_memory_limit() {
        let limits = Limits::new()
            .backend(Backend::ProcessGroup)
            .memory(1 << 30)
            .memory_kind(MemoryLimitKind::Resident);
        match open(&limits) {
            Err(Error::BackendUnavailable { backend, reason }) => {
                assert_eq!(backend, "none");
                assert!(reason.contains("memory controller"), "{reason}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a process group cannot enforce resident memory"),
        }
    }

    #[test]
    fn explicit_resident_limit_on_a_controllerless_v2_is_refused() {
        let env = environment();
        let Ok(v2) = &env.v2 else {
            eprintln!("skipped: no writable cgroup v2 hierarchy");
            return;
        };
        if v2.has_memory {
            eprintln!("skipped: this cgroup v2 hierarchy has a memory controller");
            return;
        }
        let limits = Limits::new()
            .backend(Backend::CgroupV2)
            .memory(1 << 30)
            .memory_kind(MemoryLimitKind::Resident);
        let err = open(&limits).err().expect("must be refused");
        assert!(err.to_string().contains("no memory controller"), "{err}");
    }

    #[test]
    fn auto_prefers_v1_when_v2_lacks_the_memory_controller() {
        let env = environment();
        let (Ok(v2), Ok(_)) = (&env.v2, &env.v1) else {
            eprintln!("skipped: needs both a writable cgroup v2 hierarchy and cgroup v1 (root)");
            return;
        };
        if v2.has_memory {
            eprintln!("skipped: this cgroup v2 hierarchy has a memory controller");
            return;
        }
        let mut c = open(&Limits::new().memory(100 << 20)).unwrap();
        assert_eq!(c.containment().backend, Backend::CgroupV1);
        assert!(c.enforces_memory());
        c.close().unwrap();
        // Without a memory controller v2 ranks below v1 even when no limit needs a controller:
        // v1 measures the peak and lets a closure child join without a grace period.
        let mut c = open(&Limits::new()).unwrap();
        assert_eq!(c.containment().backend, Backend::CgroupV1);
        c.close().unwrap();
        let limits = Limits::new()
            .memory(100 << 20)
            .memory_kind(MemoryLimitKind::AddressSpace);
        let mut c = open(&limits).unwrap();
        assert_eq!(c.containment().backend, Backend::CgroupV1);
        assert!(!c.enforces_memory());
        c.close().unwrap();
    }

    #[test]
    fn available_backends_lists_what_this_machine_has_strongest_first() {
        let env = environment();
        let list = available_backends();
        assert_eq!(list.last(), Some(&Backend::ProcessGroup));
        assert_eq!(list.contains(&Backend::CgroupV1), env.v1.is_ok());
        assert_eq!(list.contains(&Backend::CgroupV2), env.v2.is_ok());
        eprintln!(
            "available here: {list:?}; v1: {:?}; v2: {:?}",
            env.v1, env.v2
        );
    }
}

/// Helpers for the backends' own tests: real processes held at a pipe until adopted.
#[cfg(test)]
pub(super) mod test_support {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use super::super::{CallContainer, Sample};
    use super::{environment, V1Env, V2Env};

    /// Spins in a setsid'd grandchild (ignoring every catchable signal, bounded to 30 s) while
    /// the main process exits at once.
    pub const ESCAPE_SPINNER: &str = "import os, signal, time\n\
        if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
        for s in range(1, 65):\n            try: signal.signal(s, signal.SIG_IGN)\n            \
        except Exception: pass\n        end = time.time() + 30\n        \
        while time.time() < end: pass\n    os._exit(0)\nos.wait()\n";

    /// 1000 forks, each child sleeping 3 s; failed forks are counted, not retried.
    pub const FORK_BOMB: &str = "import os, time\nfail = 0\nfor i in range(1000):\n    \
        try:\n        pid = os.fork()\n    except OSError:\n        fail += 1\n        continue\n    \
        if pid == 0:\n        time.sleep(3)\n        os._exit(0)\ntime.sleep(5)\n";

    pub fn v1_env() -> Result<V1Env, String> {
        environment().v1.clone()
    }

    pub fn v2_env() -> Result<V2Env, String> {
        environment().v2.clone()
    }

    /// A forked child blocked on a pipe before `exec`.
    pub struct Blocked {
        pid: i32,
        release: OwnedFd,
    }

    /// A released child.
    pub struct Released {
        pub pid: i32,
    }

    impl Blocked {
        pub fn pid(&self) -> i32 {
            self.pid
        }
        pub fn release(self) -> Released {
            rustix::io::write(&self.release, b"x").unwrap();
            Released { pid: self.pid }
        }
    }

    impl Released {
        /// Waits for the process and returns its raw wait status.
        pub fn wait(&self) -> i32 {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid pointer to a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            assert_eq!(r, self.pid, "waitpid failed");
            status
        }
    }

    fn which(program: &str) -> String {
        if program.contains('/') {
            return program.to_string();
        }
        for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
            let p = format!("{dir}/{program}");
            if std::path::Path::new(&p).exists() {
                return p;
            }
        }
        panic!("{program} not found");
    }

    /// Forks a child that waits for [`Blocked::release`] and then execs `program`. Everything the
    /// child needs is prepared before the fork: after it, the child only calls read and execv.
    pub fn spawn_blocked(program: &str, args: &[&str]) -> Blocked {
        let path = CString::new(which(program)).unwrap();
        let mut argv: Vec<CString> = vec![CString::new(program).unwrap()];
        argv.extend(args.iter().map(|a| CString::new(*a).unwrap()));
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let rfd = r.as_raw_fd();
        // SAFETY: the test harness is multi-threaded, so the child only makes async-signal-safe
        // calls (read, execv, _exit) on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: see above; the buffer is a local, argv_ptrs is null-terminated.
            unsafe {
                let mut b = 0u8;
                while libc::read(rfd, (&mut b as *mut u8).cast(), 1) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
                libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        drop(r);
        Blocked { pid, release: w }
    }

    /// Samples until the call has used at least `min` CPU (bounded by 10 s).
    pub fn wait_for_cpu(c: &mut dyn CallContainer, min: Duration) -> Sample {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = c.sample(0);
            if s.cpu.is_some_and(|t| t.total() >= min) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn exit_code(status: i32) -> Option<i32> {
        libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
    }

    pub fn term_signal(status: i32) -> Option<i32> {
        libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
    }
}
