//! The cgroup v1 backend: one fresh leaf per call in each of the `memory`, `cpuacct`, `pids` and
//! `freezer` hierarchies (root only).
//!
//! - memory: `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` at the same value when swap
//!   accounting exists, so swap cannot extend the limit); the kernel OOM killer stays on and its
//!   kills are counted by `memory.oom_control` `oom_kill`; the peak is `memory.max_usage_in_bytes`.
//!   Pages the child inherited from the caller stay charged to the caller (charges do not move).
//! - CPU: `cpuacct.usage` is the exact sum of run time of every task that ever ran in the leaf;
//!   the user/system split comes from `cpuacct.stat`, which is tick-sampled, so only the
//!   proportion is taken from it.
//! - processes: `pids.max`, refused forks from `pids.events` `max`. It counts threads too. The
//!   `pids` leaf is made only for a call with a process limit (one mkdir, migration and rmdir less
//!   per call otherwise; the live count comes from the freezer leaf either way).
//! - kill: freeze, SIGKILL everything listed, thaw; repeat until empty. Frozen tasks cannot fork,
//!   so a fork bomb cannot outrun the kill.
//!
//! The memory, cpuacct and freezer leaves of a call are made ahead and removed behind
//! (`ahead.rs`); a pids leaf is made and removed on the call's own path (only calls with a
//! process limit have one). The child joins every leaf itself, writing `0` to the `tasks` files
//! the supervisor opened before the fork.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ahead::{Pool, Prepared, Ready, Register, Registration};
use super::cgroupfs::{
    cg_err, cgroup_containment, count_lines, holds_only, keyed, kill_until_empty, leaf_name,
    open_dir, open_in, pids_in, pids_max_value, pread, pread_all, procs_recursive, read_keyed,
    remove_tree, send_signal, signal_every, survivors_error, write_file, KILL_BUDGET,
};
use super::detect::V1Env;
use super::{CallContainer, MainProcess, Remains, Sample};
use crate::{Backend, Containment, CpuTime, Error, Limits, MemoryLimitKind};

/// The v1 leaves made ahead of calls, and those left behind (`ahead.rs`).
static AHEAD: Pool<V1Leaves> = Pool::new();

/// One call's leaves in the memory, cpuacct and freezer hierarchies (fewer directories where
/// hierarchies are co-mounted), with the files the call reads and joins through already open.
pub(super) struct V1Leaves {
    memory: PathBuf,
    freezer: PathBuf,
    /// The distinct directories, as made.
    dirs: Vec<PathBuf>,
    cpu_usage: File,
    cpu_stat: File,
    mem_usage: File,
    mem_peak: File,
    oom_control: File,
    /// The freezer leaf directory: its link count says whether it has cgroups below it, and its
    /// `cgroup.procs` is opened relative to it at each look (`read_procs`).
    freezer_dir: File,
    /// Each directory's `tasks`, open for writing: the child joins through them.
    tasks: Vec<File>,
}

impl V1Leaves {
    /// Makes fresh leaves under `env`'s parents and opens their files.
    fn make(env: &V1Env) -> Result<Self, Error> {
        let name = leaf_name();
        let memory = env.memory.join(&name);
        let cpuacct = env.cpuacct.join(&name);
        let freezer = env.freezer.join(&name);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in [&memory, &cpuacct, &freezer] {
            if dirs.contains(dir) {
                continue;
            }
            if let Err(e) = std::fs::create_dir(dir) {
                remove_made(&dirs);
                return Err(cg_err(dir, e));
            }
            dirs.push(dir.clone());
        }
        let opened = (|| {
            // Each control file is opened relative to its directory (no walk of the whole path).
            let (mem_dir, cpu_dir, freezer_dir) =
                (open_dir(&memory)?, open_dir(&cpuacct)?, open_dir(&freezer)?);
            let mut tasks = Vec::with_capacity(dirs.len());
            for (dir, path) in [
                (&mem_dir, &memory),
                (&cpu_dir, &cpuacct),
                (&freezer_dir, &freezer),
            ] {
                if !tasks.iter().any(|(p, _)| *p == path) {
                    tasks.push((path, open_in(dir, path, "tasks", true)?));
                }
            }
            let tasks = tasks.into_iter().map(|(_, f)| f).collect();
            Ok::<_, Error>(V1Leaves {
                cpu_usage: open_in(&cpu_dir, &cpuacct, "cpuacct.usage", false)?,
                cpu_stat: open_in(&cpu_dir, &cpuacct, "cpuacct.stat", false)?,
                mem_usage: open_in(&mem_dir, &memory, "memory.usage_in_bytes", false)?,
                mem_peak: open_in(&mem_dir, &memory, "memory.max_usage_in_bytes", false)?,
                oom_control: open_in(&mem_dir, &memory, "memory.oom_control", false)?,
                memory: memory.clone(),
                freezer: freezer.clone(),
                dirs: dirs.clone(),
                freezer_dir,
                tasks,
            })
        })();
        opened.inspect_err(|_| remove_made(&dirs))
    }

    /// Freezer first: emptying it empties the others.
    fn remains(&self) -> Remains {
        let mut leaves = vec![self.freezer.clone()];
        leaves.extend(self.dirs.iter().filter(|l| **l != self.freezer).cloned());
        Remains::cgroups(&leaves)
    }
}

impl Prepared for V1Leaves {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }
}

fn remove_made(dirs: &[PathBuf]) {
    for made in dirs {
        let _ = std::fs::remove_dir(made);
    }
}

fn open_for_writing(path: &Path) -> Result<File, Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| cg_err(path, e))
}

/// One call's leaves in the cgroup v1 hierarchies.
pub(crate) struct CgroupV1Container {
    env: V1Env,
    made: V1Leaves,
    memory: PathBuf,
    pids: PathBuf,
    freezer: PathBuf,
    /// The distinct leaf directories (co-mounted hierarchies share one), the pids leaf included.
    leaves: Vec<PathBuf>,
    /// The pids leaf when it was made for this call and the registration does not cover it.
    uncovered: Option<PathBuf>,
    /// The guard registration of the leaves, kept until they are removed.
    registration: Option<Registration>,
    /// The pids leaf's `tasks`, open for writing, when the call made one.
    pids_tasks: Option<File>,
    procs_buf: Vec<u8>,
    enforce_memory: bool,
    enforce_pids: bool,
    notes: Vec<String>,
    closed: bool,
    /// Leave processes still in the leaf running (`keep_processes`).
    kept: bool,
    /// `kill_all` found the leaves empty. Nothing enters an empty leaf again (only a process
    /// of the call could join it through the files the child joined by), so `close` needs no
    /// second look.
    emptied: bool,
}

struct Settings {
    enforce_memory: bool,
    enforce_pids: bool,
    notes: Vec<String>,
}

impl CgroupV1Container {
    /// Takes leaves made ahead (or makes them now) and writes the call's limits into them.
    pub(super) fn open(env: &V1Env, limits: &Limits) -> Result<Self, Error> {
        let (made, registration) =
            match AHEAD.take(|l| l.memory.parent() == Some(env.memory.as_path())) {
                Some(Ready { leaf, registration }) => (leaf, registration),
                None => (V1Leaves::make(env)?, None),
            };
        let name = made.memory.file_name().unwrap_or_default().to_owned();
        let mut c = CgroupV1Container {
            env: env.clone(),
            memory: made.memory.clone(),
            pids: env.pids.join(&name),
            freezer: made.freezer.clone(),
            leaves: made.dirs.clone(),
            made,
            uncovered: None,
            registration,
            pids_tasks: None,
            procs_buf: Vec::with_capacity(256),
            enforce_memory: false,
            enforce_pids: false,
            notes: Vec::new(),
            closed: false,
            kept: false,
            emptied: false,
        };
        // From here on, an error drops `c`, which removes what was made.
        if limits.max_processes.is_some() && !c.leaves.contains(&c.pids) {
            std::fs::create_dir(&c.pids).map_err(|e| cg_err(&c.pids, e))?;
            c.leaves.push(c.pids.clone());
            c.uncovered = Some(c.pids.clone());
            c.pids_tasks = Some(open_for_writing(&c.pids.join("tasks"))?);
        }
        let settings = Self::configure(env, limits, &c.memory, &c.pids)?;
        c.enforce_memory = settings.enforce_memory;
        c.enforce_pids = settings.enforce_pids;
        c.notes = settings.notes;
        Ok(c)
    }

    fn configure(
        env: &V1Env,
        limits: &Limits,
        memory: &Path,
        pids: &Path,
    ) -> Result<Settings, Error> {
        let mut notes = Vec::new();
        let enforce_memory = match limits.memory {
            Some(bytes) if limits.memory_kind != MemoryLimitKind::AddressSpace => {
                // The leaf is fresh (usage 0), so no limit can be below the current usage.
                let value = bytes.to_string();
                write_file(&memory.join("memory.limit_in_bytes"), &value)?;
                if env.has_memsw {
                    write_file(&memory.join("memory.memsw.limit_in_bytes"), &value)?;
                } else {
                    notes.push(
                        "swap accounting is off (no memory.memsw.*): swapped-out pages are not \
                         counted by the memory limit"
                            .to_string(),
                    );
                }
                true
            }
            Some(_) => {
                notes.push(
                    "memory limit is RLIMIT_AS per process (address space), as requested"
                        .to_string(),
                );
                false
            }
            None => false,
        };
        let enforce_pids = match limits.max_processes {
            Some(n) => {
                write_file(&pids.join("pids.max"), &pids_max_value(n))?;
                notes.push("the process limit (pids.max) counts threads as well".to_string());
                true
            }
            None => false,
        };
        Ok(Settings {
            enforce_memory,
            enforce_pids,
            notes,
        })
    }

    fn cpu(&self) -> Option<CpuTime> {
        let mut buf = [0u8; 64];
        let total: u64 = pread(&self.made.cpu_usage, &mut buf)?.trim().parse().ok()?;
        let mut buf = [0u8; 128];
        let stat = pread(&self.made.cpu_stat, &mut buf)?;
        let user = keyed(stat, "user").unwrap_or(0);
        let system = keyed(stat, "system").unwrap_or(0);
        Some(split_cpu(total, user, system))
    }

    /// The processes in the freezer leaf (not below it) into `procs_buf`, through a
    /// `cgroup.procs` opened anew relative to the open leaf directory (no walk of the whole
    /// path). Not through a file kept open: on cgroup v1 that lists what it listed at its first
    /// read until no read came for about a second (the kernel keeps the pid list of an open
    /// file), and the supervisor samples far more often.
    fn read_procs(&mut self) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        let procs = rustix::fs::openat(
            &self.made.freezer_dir,
            "cgroup.procs",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        pread_all(&File::from(procs), &mut self.procs_buf)
    }

    /// Whether `procs_buf` now lists every process in the call's leaves, read through the open
    /// leaf directory (no path lookups: on a completed call's path the look by path took six
    /// system calls); false when the leaf has cgroups below it or cannot be read (then the
    /// slower recursive look by path is needed).
    fn list_leaf(&mut self) -> bool {
        let listed = self.read_procs();
        let below = rustix::fs::fstat(&self.made.freezer_dir).map(|st| st.st_nlink > 2);
        matches!((listed, below), (Ok(()), Ok(false)))
    }

    /// Whether no process is in the call's leaves, through the open leaf directory (no path
    /// lookups): the freezer leaf lists none and has no cgroup below it (else the slower
    /// recursive look).
    fn empty(&mut self) -> bool {
        let listed = self.read_procs().map(|()| self.procs_buf.len());
        let below = rustix::fs::fstat(&self.made.freezer_dir).map(|st| st.st_nlink > 2);
        match (listed, below) {
            (Ok(0), Ok(false)) => true,
            (Ok(n), Ok(false)) if n > 0 => false,
            _ => procs_recursive(&self.freezer).is_empty(),
        }
    }

    fn kill_everything(&mut self) -> Result<u64, Error> {
        if self.empty() {
            self.emptied = true;
            return Ok(0);
        }
        let state = self.freezer.join("freezer.state");
        let (killed, empty) = kill_until_empty(&self.freezer, Some(&state), KILL_BUDGET);
        if empty {
            self.emptied = true;
            Ok(killed.len() as u64)
        } else {
            Err(survivors_error(&self.freezer))
        }
    }

    /// Removes the leaves now (waiting briefly for busy ones), then ends the registration.
    fn remove_leaves(&mut self) -> Result<(), Error> {
        self.closed = true;
        let mut first = Ok(());
        for leaf in &self.leaves {
            if let Err(e) = remove_tree(leaf) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        if first.is_ok() {
            self.registration = None;
        }
        first
    }
}

/// Splits an exact total by the proportion of tick-sampled user and system time.
fn split_cpu(total_ns: u64, user_ticks: u64, system_ticks: u64) -> CpuTime {
    let ticks = user_ticks as u128 + system_ticks as u128;
    let user_ns = (total_ns as u128 * user_ticks as u128)
        .checked_div(ticks)
        .map_or(total_ns, |u| u as u64);
    CpuTime {
        user: Duration::from_nanos(user_ns),
        system: Duration::from_nanos(total_ns - user_ns),
    }
}

impl CallContainer for CgroupV1Container {
    fn containment(&self) -> Containment {
        cgroup_containment(
            Backend::CgroupV1,
            self.enforce_memory,
            self.enforce_pids,
            &self.notes,
        )
    }

    fn enforces_memory(&self) -> bool {
        self.enforce_memory
    }

    fn enforces_processes(&self) -> bool {
        self.enforce_pids
    }

    fn remains(&self) -> Remains {
        let mut leaves = vec![self.freezer.clone()];
        leaves.extend(self.leaves.iter().filter(|l| **l != self.freezer).cloned());
        Remains::cgroups(&leaves)
    }

    fn self_join_fds(&self) -> Vec<RawFd> {
        let made = self.made.tasks.iter().map(|f| f.as_raw_fd());
        made.chain(self.pids_tasks.as_ref().map(|f| f.as_raw_fd()))
            .collect()
    }

    fn keep_registration(&mut self, registration: Registration) -> Option<Registration> {
        if self.registration.is_some() {
            return Some(registration);
        }
        // The call's own registration covers every leaf, the pids leaf included.
        self.registration = Some(registration);
        self.uncovered = None;
        None
    }

    fn work_ahead(&mut self, register: Register<'_>) {
        let env = &self.env;
        AHEAD.work(|| {
            let leaf = V1Leaves::make(env).ok()?;
            let registration = register(leaf.remains());
            Some(Ready { leaf, registration })
        });
    }

    fn adopt(&mut self, pid: i32) -> Result<(), Error> {
        // Not called while the child joins by itself (`self_join_fds`); kept for completeness.
        let pid = pid.to_string();
        for leaf in &self.leaves {
            write_file(&leaf.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn sample(&mut self, _main: MainProcess) -> Sample {
        let live = self
            .read_procs()
            .ok()
            .map(|()| count_lines(&self.procs_buf));
        let mut buf = [0u8; 32];
        let memory_current =
            pread(&self.made.mem_usage, &mut buf).and_then(|s| s.trim().parse().ok());
        Sample {
            cpu: self.cpu(),
            live_processes: live,
            memory_current,
        }
    }

    fn memory_peak(&mut self) -> Option<u64> {
        let mut buf = [0u8; 32];
        pread(&self.made.mem_peak, &mut buf)?.trim().parse().ok()
    }

    fn oom_kills(&mut self) -> u64 {
        let mut buf = [0u8; 256];
        pread(&self.made.oom_control, &mut buf)
            .and_then(|text| keyed(text, "oom_kill"))
            .unwrap_or(0)
    }

    fn processes_refused(&mut self) -> u64 {
        if !self.enforce_pids {
            // No pids leaf was made (or it may be shared with another hierarchy and hold none).
            return 0;
        }
        read_keyed(&self.pids.join("pids.events"), "max").unwrap_or(0)
    }

    fn signal_all(&mut self, signal: i32) {
        if self.list_leaf() {
            for pid in pids_in(&self.procs_buf) {
                send_signal(pid, signal);
            }
        } else {
            signal_every(&self.freezer, signal);
        }
    }

    fn kill_all(&mut self, _main: MainProcess) -> Result<u64, Error> {
        self.kill_everything()
    }

    fn kill_lone_main(&mut self, main: rustix::process::Pid) -> bool {
        // A lone process that is killed cannot fork any more: no freezer needed. One that forked
        // between the listing and the kill is found by `kill_all`, behind.
        let main = main.as_raw_pid();
        let alone = if self.list_leaf() {
            pids_in(&self.procs_buf).all(|pid| pid == main)
        } else {
            holds_only(&self.freezer, main)
        };
        alone && send_signal(main, libc::SIGKILL)
    }

    fn final_cpu(&mut self) -> Option<CpuTime> {
        self.cpu()
    }

    fn keep_processes(&mut self) {
        self.kept = true;
    }

    fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        if self.kept && !self.empty() {
            // The survivors keep their leaf (and its limits) and outlive the caller, as asked:
            // the guard is told, and the stale-leaf sweep removes the leaf.
            self.closed = true;
            self.registration = None;
            return Ok(());
        }
        // Normally already empty after kill_all; a leaf that still holds processes cannot go.
        if !self.emptied && !self.empty() && self.kill_everything().is_err() {
            return self.remove_leaves();
        }
        // Empty: only the rmdirs are left, for a later call's idle time (`ahead.rs`); what the
        // registration does not cover goes now.
        self.closed = true;
        let uncovered = self.uncovered.take();
        let mut covered = std::mem::take(&mut self.leaves);
        covered.retain(|l| Some(l) != uncovered.as_ref());
        AHEAD.defer(covered, self.registration.take());
        uncovered.map_or(Ok(()), |pids| remove_tree(&pids))
    }
}

impl Drop for CgroupV1Container {
    fn drop(&mut self) {
        // A supervisor that bailed out between open and close must not leave a leaf (or the
        // processes in it) behind.
        if !self.closed {
            let _ = self.kill_everything();
            let _ = self.remove_leaves();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cgroupfs::read_u64;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn cpu_split_keeps_the_exact_total() {
        let t = split_cpu(1_000_000_007, 3, 1);
        assert_eq!(t.total(), Duration::from_nanos(1_000_000_007));
        assert_eq!(t.user, Duration::from_nanos(750_000_005));
        assert_eq!(split_cpu(5, 0, 0).user, Duration::from_nanos(5));
    }

    /// Tests on real cgroup v1 leaves (root).
    mod needs_cgroup_v1 {
        use super::*;

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn leaves_are_created_with_limits_and_removed_on_close() {
            let env = v1_env().expect("cgroup v1 as root");
            let limits = Limits::new().memory(100 << 20).max_processes(7);
            let mut c = CgroupV1Container::open(&env, &limits).unwrap();
            assert!(c.enforces_memory() && c.enforces_processes());
            assert_eq!(
                read_u64(&c.memory.join("memory.limit_in_bytes")),
                Some(100 << 20)
            );
            assert_eq!(read_u64(&c.pids.join("pids.max")), Some(7));
            let leaves = c.leaves.clone();
            assert_eq!(leaves.len(), 4);
            assert!(leaves.iter().all(|l| l.is_dir()));
            let pids = c.pids.clone();
            c.close().unwrap();
            // The pids leaf (not made ahead) goes at once; the others in a later idle time.
            assert!(!pids.exists(), "{leaves:?}");
            assert!(c.memory.is_dir());
            AHEAD.work(|| None);
            assert!(leaves.iter().all(|l| !l.exists()));
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn address_space_kind_leaves_memory_to_the_rlimit() {
            let env = v1_env().expect("cgroup v1 as root");
            let limits = Limits::new()
                .memory(100 << 20)
                .memory_kind(MemoryLimitKind::AddressSpace);
            let mut c = CgroupV1Container::open(&env, &limits).unwrap();
            assert!(!c.enforces_memory());
            assert!(!c.containment().guarantees.tree_memory_limit);
            assert!(read_u64(&c.memory.join("memory.limit_in_bytes")).unwrap() > 1 << 40);
            // No process limit: no pids leaf.
            assert_eq!(c.leaves.len(), 3);
            assert!(!c.pids.exists());
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn escaped_grandchild_cpu_is_counted_and_it_is_killed() {
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new()).unwrap();
            let child = spawn_blocked("python3", &["-c", ESCAPE_SPINNER]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            assert_eq!(exit_code(child.wait()), Some(0));
            let spinning = wait_for_cpu(&mut c, Duration::from_millis(300));
            assert_eq!(spinning.live_processes, Some(1), "{spinning:?}");
            assert_eq!(c.kill_all(child.main()).unwrap(), 1);
            let cpu = c.final_cpu().unwrap().total();
            assert!(cpu >= Duration::from_millis(300), "{cpu:?}");
            assert_eq!(c.sample(MainProcess::Reaped).live_processes, Some(0));
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn sample_rereads_fresh_values_through_open_files() {
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new()).unwrap();
            let b = spinner_sampled_twice(&mut c);
            assert!(b.memory_current.unwrap() > 0);
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn a_process_that_joins_after_a_sample_is_counted_and_signalled() {
            // A v1 `cgroup.procs` kept open lists what it listed at its first read until no read
            // came for about a second: here the second look comes at once after the join.
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new()).unwrap();
            let first = spawn_blocked("sleep", &["30"]);
            c.adopt(first.pid()).unwrap();
            let first = first.release();
            assert_eq!(c.sample(first.main()).live_processes, Some(1));
            let second = spawn_blocked("sleep", &["30"]);
            c.adopt(second.pid()).unwrap();
            let second = second.release();
            assert_eq!(c.sample(first.main()).live_processes, Some(2));
            c.signal_all(libc::SIGTERM);
            assert_eq!(term_signal(second.wait()), Some(libc::SIGTERM));
            assert_eq!(term_signal(first.wait()), Some(libc::SIGTERM));
            assert_eq!(c.sample(MainProcess::Reaped).live_processes, Some(0));
            assert!(c.empty());
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn memory_hog_is_oom_killed_and_counted() {
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new().memory(100 << 20)).unwrap();
            let child = spawn_blocked("python3", &["-c", "b = bytearray(300 << 20)"]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
            assert_eq!(c.oom_kills(), 1);
            let peak = c.memory_peak().unwrap();
            assert!(peak <= 100 << 20 && peak > 90 << 20, "peak {peak}");
            assert_eq!(c.kill_all(MainProcess::Reaped).unwrap(), 0);
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn fork_bomb_is_capped_counted_and_killed_through_the_freezer() {
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new().max_processes(64)).unwrap();
            let child = spawn_blocked("python3", &["-c", FORK_BOMB]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while c.processes_refused() == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(c.processes_refused() > 0);
            let live = c.sample(child.main()).live_processes.unwrap();
            assert!((2..=64).contains(&live), "live {live}");
            let killed = c.kill_all(child.main()).unwrap();
            assert!(killed >= 2, "killed {killed}");
            assert_eq!(c.sample(MainProcess::Reaped).live_processes, Some(0));
            assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v1 as root: scripts/test.sh runs it where the machine has that"]
        fn dropping_an_unclosed_container_kills_and_removes_it() {
            let env = v1_env().expect("cgroup v1 as root");
            let mut c = CgroupV1Container::open(&env, &Limits::new()).unwrap();
            let child = spawn_blocked("sleep", &["30"]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            let leaves = c.leaves.clone();
            drop(c);
            assert!(leaves.iter().all(|l| !l.exists()));
            assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
        }
    }
}
