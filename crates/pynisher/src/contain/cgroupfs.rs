//! The cgroup file-system plumbing both cgroup backends share: leaf names, reading and writing
//! control files, listing, killing and removing a cgroup's processes and leaves.
//!
//! Nothing here decides anything; the backends (`cgroup_v1.rs`, `cgroup_v2.rs`) and detection
//! (`detect.rs`) call in, never the other way round.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Backend, Containment, Error, Guarantees};

/// How long a backend's `kill_all` may take before it reports survivors.
pub(super) const KILL_BUDGET: Duration = Duration::from_secs(2);

/// `pids.max` accepts at most PID_MAX_LIMIT (4 Mi); anything above means no limit.
const PIDS_MAX_LIMIT: u64 = 4 * 1024 * 1024;

/// The `pids.max` value for a process limit of `n`.
pub(super) fn pids_max_value(n: u64) -> String {
    if n >= PIDS_MAX_LIMIT {
        "max".to_string()
    } else {
        n.to_string()
    }
}

/// The error for a cgroup that still holds processes after [`KILL_BUDGET`] of SIGKILLs.
pub(super) fn survivors_error(dir: &Path) -> Error {
    let left = procs_recursive(dir).len();
    cg_err(
        dir,
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{left} processes still alive after SIGKILL for {KILL_BUDGET:?}"),
        ),
    )
}

/// What a cgroup leaf guarantees: every descendant and its exact CPU time, always; memory and
/// process limits when the controllers enforce them.
pub(super) fn cgroup_containment(
    backend: Backend,
    tree_memory_limit: bool,
    kernel_process_limit: bool,
    notes: &[String],
) -> Containment {
    Containment {
        backend,
        guarantees: Guarantees {
            all_descendants_contained: true,
            exact_tree_cpu_time: true,
            tree_memory_limit,
            kernel_process_limit,
            notes: notes.to_vec(),
        },
    }
}

/// A fresh leaf name, unique across process lifetimes: `call-<pid>-<start>-<counter>`, where
/// `<start>` is the supervisor's start time (clock ticks since boot, `/proc/self/stat` field 22).
/// A pid is reused only by a process that started later, so a leaf left by a dead process that
/// had our pid never has our name, and [`leaf_owner_is_dead`] can tell the two apart.
pub(super) fn leaf_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (pid, start) = self_identity();
    format!(
        "call-{pid}-{start}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The name of the leaf a caller moves itself into (`delegation.rs`): `caller-<pid>-<start>`.
pub(super) fn caller_leaf_name() -> String {
    let (pid, start) = self_identity();
    format!("caller-{pid}-{start}")
}

/// This process's pid and start time, read once per process (a forked child reads its own).
fn self_identity() -> (i32, u64) {
    static CACHE: Mutex<Option<(i32, u64)>> = Mutex::new(None);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    match *cache {
        Some((p, start)) if p == pid => (pid, start),
        _ => {
            // /proc/self/stat of a live process always parses; 0 would only weaken the sweep
            // for this process's leaves (an owner with start 0 never matches, see below).
            let start = start_time(pid).unwrap_or(0);
            *cache = Some((pid, start));
            (pid, start)
        }
    }
}

/// Field 22 of `/proc/PID/stat` (start time, clock ticks after boot); `None` when there is no
/// such process. The command name (field 2) may hold spaces and parentheses: parse after the
/// last `)`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = crate::sys::read_proc_text(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state); field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Who made a leaf, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct LeafOwner {
    pub pid: i32,
    /// The owner's start time; `None` for names from before it was recorded (`call-<pid>-<n>`).
    pub start: Option<u64>,
}

/// Parses `call-<pid>-<start>-<n>`, `caller-<pid>-<start>` and the older `call-<pid>-<n>`.
pub(super) fn leaf_owner(name: &str) -> Option<LeafOwner> {
    let number = |s: &str| s.parse::<u64>().ok();
    if let Some(rest) = name.strip_prefix("caller-") {
        let (pid, start) = rest.split_once('-')?;
        return Some(LeafOwner {
            pid: pid.parse().ok()?,
            start: Some(number(start)?),
        });
    }
    let parts: Vec<&str> = name.strip_prefix("call-")?.split('-').collect();
    match parts[..] {
        [pid, start, n] => {
            number(n)?;
            Some(LeafOwner {
                pid: pid.parse().ok()?,
                start: Some(number(start)?),
            })
        }
        [pid, n] => {
            number(n)?;
            Some(LeafOwner {
                pid: pid.parse().ok()?,
                start: None,
            })
        }
        _ => None,
    }
}

/// Whether the process that made a leaf is provably gone: no process has its pid, or the one
/// that has it started at another time (the pid was reused). An old-style name without a start
/// time proves nothing while its pid lives.
pub(super) fn leaf_owner_is_dead(owner: LeafOwner) -> bool {
    match (start_time(owner.pid), owner.start) {
        (None, _) => !pid_exists(owner.pid),
        (Some(now), Some(then)) => now != then,
        (Some(_), None) => false,
    }
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

/// Opens a cgroup directory, to open its control files relative to it ([`open_in`]).
pub(super) fn open_dir(path: &Path) -> Result<File, Error> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| cg_err(path, e.into()))
}

/// Opens the control file `name` of the cgroup directory `dir` (opened from `dir_path`)
/// relative to it, for reading or writing: no walk of the whole path per file.
pub(super) fn open_in(dir: &File, dir_path: &Path, name: &str, write: bool) -> Result<File, Error> {
    use rustix::fs::{Mode, OFlags};
    let access = if write {
        OFlags::WRONLY
    } else {
        OFlags::RDONLY
    };
    rustix::fs::openat(dir, name, access | OFlags::CLOEXEC, Mode::empty())
        .map(File::from)
        .map_err(|e| cg_err(&dir_path.join(name), e.into()))
}

/// Opens the control file `name` of the cgroup directory `dir` for reading and writing.
pub(super) fn open_in_rw(dir: &File, dir_path: &Path, name: &str) -> Result<File, Error> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(dir, name, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map(File::from)
        .map_err(|e| cg_err(&dir_path.join(name), e.into()))
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

/// The pids in the text of a `cgroup.procs` (one per line).
pub(super) fn pids_in(listing: &[u8]) -> impl Iterator<Item = i32> + '_ {
    listing
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok()?.trim().parse::<i32>().ok())
}

/// The pids listed in `dir/cgroup.procs` and in every cgroup below `dir`.
pub(super) fn procs_recursive(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(listing) = std::fs::read(d.join("cgroup.procs")) {
            out.extend(pids_in(&listing));
        }
        if has_subdirs(&d) {
            stack.extend(subdirs(&d));
        }
    }
    out
}

/// Whether a cgroup directory has child cgroups: its link count is 2 + subdirectories, so a
/// `stat` answers without listing the many control files.
pub(super) fn has_subdirs(dir: &Path) -> bool {
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

/// Sends `signal` to every process in `dir` and below (the soft signal of a grace period).
pub(super) fn signal_every(dir: &Path, signal: i32) {
    for pid in procs_recursive(dir) {
        send_signal(pid, signal);
    }
}

/// Sends `signal` to `pid`; true when it was delivered.
pub(super) fn send_signal(pid: i32, signal: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with a positive pid only affects that process; no memory is shared.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether `main` is the only process in `dir` and below (the cgroup of a completed closure whose
/// outcome can be taken at its result, `supervise/behind.rs`).
pub(super) fn holds_only(dir: &Path, main: i32) -> bool {
    procs_recursive(dir).iter().all(|&p| p == main)
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
            thaw_v1_tree(state);
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

/// Thaws the freezer cgroup of `state` and every one below it. A nested call's leaf below ours
/// stays FROZEN if its supervisor (one of the processes just killed) died between its own freeze
/// and thaw; its killed processes could then never die.
fn thaw_v1_tree(state: &Path) {
    let _ = std::fs::write(state, "THAWED");
    let Some(dir) = state.parent() else { return };
    if has_subdirs(dir) {
        for sub in subdirs(dir) {
            thaw_v1_tree(&sub.join("freezer.state"));
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
    match rmdir_unless_nested(dir) {
        Ok(true) => return Ok(()),
        Ok(false) => {
            for sub in subdirs(dir) {
                remove_tree(&sub)?;
            }
        }
        // Busy (a killed process may take a moment to leave) or another error: the loop below
        // retries or reports it.
        Err(_) => {}
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

/// Removes `dir` and every cgroup below it, deepest first, without waiting: an error when one is
/// still busy (its last process not yet gone) or cannot be removed.
pub(super) fn try_remove_tree(dir: &Path) -> io::Result<()> {
    if rmdir_unless_nested(dir)? {
        return Ok(());
    }
    for sub in subdirs(dir) {
        try_remove_tree(&sub)?;
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The first step of removing a cgroup tree: `rmdir` at once, as a leaf almost never has cgroups
/// below it (a `stat` per leaf less than looking first). True when `dir` is gone; false when the
/// `rmdir` failed and `dir` has cgroups below it (to remove first); the error otherwise.
fn rmdir_unless_nested(dir: &Path) -> io::Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(_) if has_subdirs(dir) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process has `pid` (one we may not signal counts: EPERM).
fn pid_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Kills every process in the cgroup `leaf` and below and removes it, from any process (a guard
/// emptying the leaves of a caller that died, or the sweep of stale leaves): `cgroup.kill` on a
/// v2 leaf (5.14+), freeze + SIGKILL + thaw on a v1 freezer leaf, SIGKILL until empty otherwise;
/// then `rmdir`, deepest first. For a v1 call, empty its freezer leaf first: its processes are
/// then gone from the other hierarchies' leaves too.
pub(crate) fn empty_and_remove(leaf: &Path) -> Result<(), Error> {
    let kill = leaf.join("cgroup.kill");
    if kill.exists() {
        let _ = std::fs::write(&kill, "1");
    }
    let state = leaf.join("freezer.state");
    let state = state.exists().then_some(state);
    let (_, empty) = kill_until_empty(leaf, state.as_deref(), KILL_BUDGET);
    if !empty {
        return Err(survivors_error(leaf));
    }
    remove_tree(leaf)
}

/// Whether each leaf owner seen by one detection's sweeps is dead: a live owner (a long-running
/// caller with many leaves, in four v1 hierarchies) costs one `/proc/<pid>/stat` read per
/// detection, not one per leaf.
pub(super) type OwnerVerdicts = std::collections::HashMap<LeafOwner, bool>;

/// Empties and removes the call leaves under `parent` whose supervisor is provably dead, and
/// removes the empty caller leaves (`delegation.rs`) of dead callers. A caller leaf is never
/// emptied by force: the caller's other processes may still live there. One directory read when
/// nothing is stale, and one owner check per distinct owner (`verdicts`, shared by the sweeps of
/// one detection).
pub(super) fn remove_stale_leaves(parent: &Path, verdicts: &mut OwnerVerdicts) {
    for leaf in subdirs(parent) {
        let Some(name) = leaf.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(owner) = leaf_owner(name) else {
            continue;
        };
        if !*verdicts
            .entry(owner)
            .or_insert_with(|| leaf_owner_is_dead(owner))
        {
            continue;
        }
        if name.starts_with("caller-") {
            let _ = std::fs::remove_dir(&leaf);
        } else {
            let _ = empty_and_remove(&leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_carry_the_supervisor_pid_and_start_time_and_are_unique() {
        let a = leaf_name();
        let b = leaf_name();
        assert_ne!(a, b);
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let owner = leaf_owner(&a).unwrap();
        assert_eq!(owner.pid, me);
        assert_eq!(owner.start, start_time(me));
        assert!(owner.start.is_some_and(|s| s > 0), "{a}");
        assert!(!leaf_owner_is_dead(owner), "{a}: we are alive");
        assert_eq!(leaf_owner("call-12-x"), None);
        assert_eq!(leaf_owner("call-12-5-6-7"), None);
        assert_eq!(leaf_owner("pynisher"), None);
        assert_eq!(
            leaf_owner("call-12-7"),
            Some(LeafOwner {
                pid: 12,
                start: None
            })
        );
        assert_eq!(
            leaf_owner(&caller_leaf_name()),
            Some(LeafOwner {
                pid: me,
                start: start_time(me)
            })
        );
    }

    #[test]
    fn a_leaf_of_an_earlier_process_with_our_pid_is_provably_dead() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let start = start_time(me).unwrap();
        // Our pid, another start time: a process that had our pid before us.
        let earlier = LeafOwner {
            pid: me,
            start: Some(start - 1),
        };
        assert!(leaf_owner_is_dead(earlier));
        // An old-style name proves nothing while its pid lives.
        assert!(!leaf_owner_is_dead(LeafOwner {
            pid: me,
            start: None
        }));
        // No process has pid 4194304 + 1 (above PID_MAX_LIMIT).
        assert!(leaf_owner_is_dead(LeafOwner {
            pid: 4_194_305,
            start: None
        }));
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
}
