//! The cgroup v2 backend: one fresh leaf per call in a writable v2 hierarchy.
//!
//! Even without any controller the leaf gives complete membership (every descendant, however it
//! detaches), exact tree-wide CPU time (`cpu.stat` `usage_usec`), and an atomic kill
//! (`cgroup.kill`, then `cgroup.events` `populated 0`). With the `memory` controller the limit is
//! `memory.max` (and `memory.swap.max` 0, so swap cannot extend it), OOM kills come from
//! `memory.events` and the peak from `memory.peak`; with `pids` the process limit is `pids.max`.
//! Without them the memory limit falls back to `RLIMIT_AS` and the process limit to the
//! supervisor's polling of the live process count; the guarantees say so.
//!
//! The leaf is made ahead and removed behind (`ahead.rs`). A program is created in it
//! (`clone3` with `CLONE_INTO_CGROUP`); a closure's child, forked, joins it itself by writing `0`
//! to the leaf's `cgroup.procs` that the supervisor opened before the fork (see
//! docs/cgroups.md for why a closure is not cloned into its leaf).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::ahead::{Pool, Prepared, Ready, Register, Registration};

use super::cgroupfs::{
    cg_err, cgroup_containment, count_lines, has_subdirs, holds_only, keyed, kill_until_empty,
    leaf_name, open_dir, open_in, open_in_rw, pids_in, pids_max_value, pread, pread_all,
    procs_recursive, read_keyed, read_u64, remove_tree, send_signal, signal_every, survivors_error,
    write_file, KILL_BUDGET,
};
use super::detect::V2Env;
use super::{CallContainer, MainProcess, Remains, Sample};
use crate::{Backend, Containment, CpuTime, Error, Limits, MemoryLimitKind};

/// The v2 leaves made ahead of calls, and those left behind (`ahead.rs`).
static AHEAD: Pool<V2Leaf> = Pool::new();

/// One call's leaf, with the files the call reads and joins through already open.
pub(super) struct V2Leaf {
    leaf: PathBuf,
    /// The leaf directory, for `clone3(CLONE_INTO_CGROUP)`.
    dir: File,
    cpu_stat: File,
    /// `cgroup.procs`, open for reading (the live count, through `pread` at offset 0) and
    /// writing (the adoption, or the child's own join): one `open` per call, not two.
    procs: File,
    events: File,
    memory_current: Option<File>,
}

impl V2Leaf {
    /// Makes a fresh leaf under `env.parent` and opens its files.
    fn make(env: &V2Env) -> Result<Self, Error> {
        let leaf = env.parent.join(leaf_name());
        std::fs::create_dir(&leaf).map_err(|e| cg_err(&leaf, e))?;
        let opened = (|| {
            // The directory (also for `clone3`), and its files opened relative to it.
            let dir = open_dir(&leaf)?;
            let memory_current = if env.has_memory {
                Some(open_in(&dir, &leaf, "memory.current", false)?)
            } else {
                None
            };
            Ok::<_, Error>(V2Leaf {
                cpu_stat: open_in(&dir, &leaf, "cpu.stat", false)?,
                procs: open_in_rw(&dir, &leaf, "cgroup.procs")?,
                events: open_in(&dir, &leaf, "cgroup.events", false)?,
                memory_current,
                dir,
                leaf: leaf.clone(),
            })
        })();
        if opened.is_err() {
            let _ = std::fs::remove_dir(&leaf);
        }
        opened
    }
}

impl Prepared for V2Leaf {
    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.leaf.clone()]
    }
}

/// One call's leaf in a cgroup v2 hierarchy.
pub(crate) struct CgroupV2Container {
    env: V2Env,
    made: V2Leaf,
    leaf: PathBuf,
    /// The guard registration of the leaf, kept until it is removed.
    registration: Option<Registration>,
    procs_buf: Vec<u8>,
    has_memory: bool,
    has_pids: bool,
    has_kill: bool,
    enforce_memory: bool,
    enforce_pids: bool,
    notes: Vec<String>,
    closed: bool,
    /// Leave processes still in the leaf running (`keep_processes`).
    kept: bool,
    /// `kill_all` found the leaf empty. Nothing enters an empty leaf again (only a process of
    /// the call could join it through the file the child joined by), so `close` needs no second
    /// look.
    emptied: bool,
}

struct Settings {
    enforce_memory: bool,
    enforce_pids: bool,
    notes: Vec<String>,
}

impl CgroupV2Container {
    /// Takes a leaf made ahead (or makes one now) and writes the call's limits into it.
    pub(super) fn open(env: &V2Env, limits: &Limits) -> Result<Self, Error> {
        let (made, registration) = match AHEAD.take(|l| l.leaf.parent() == Some(&env.parent)) {
            Some(Ready { leaf, registration }) => (leaf, registration),
            None => (V2Leaf::make(env)?, None),
        };
        match Self::configure(env, limits, &made.leaf) {
            Ok(settings) => Ok(CgroupV2Container {
                env: env.clone(),
                leaf: made.leaf.clone(),
                made,
                registration,
                procs_buf: Vec::with_capacity(256),
                has_memory: env.has_memory,
                has_pids: env.has_pids,
                has_kill: env.has_kill,
                enforce_memory: settings.enforce_memory,
                enforce_pids: settings.enforce_pids,
                notes: settings.notes,
                closed: false,
                kept: false,
                emptied: false,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&made.leaf);
                drop(registration);
                Err(e)
            }
        }
    }

    fn configure(env: &V2Env, limits: &Limits, leaf: &std::path::Path) -> Result<Settings, Error> {
        let mut notes = env.notes.clone();
        let wants_memory = limits.memory.is_some();
        let enforce_memory = match limits.memory {
            Some(bytes)
                if limits.memory_kind != MemoryLimitKind::AddressSpace && env.has_memory =>
            {
                // The leaf is fresh (usage 0), so no limit can be below the current usage.
                write_file(&leaf.join("memory.max"), &bytes.to_string())?;
                let swap = leaf.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
                true
            }
            Some(_) if limits.memory_kind == MemoryLimitKind::AddressSpace => {
                notes.push(
                    "memory limit is RLIMIT_AS per process (address space), as requested".into(),
                );
                false
            }
            _ => false,
        };
        if !env.has_memory {
            if wants_memory
                && !enforce_memory
                && limits.memory_kind != MemoryLimitKind::AddressSpace
            {
                notes.push(
                    "no memory controller in this cgroup2 hierarchy; memory limit is RLIMIT_AS \
                     per process (address space)"
                        .into(),
                );
            }
            notes.push(
                "no memory controller in this cgroup2 hierarchy: memory is not measured by the \
                 cgroup"
                    .into(),
            );
        }
        let enforce_pids = match limits.max_processes {
            Some(n) if env.has_pids => {
                write_file(&leaf.join("pids.max"), &pids_max_value(n))?;
                notes.push("the process limit (pids.max) counts threads as well".into());
                true
            }
            Some(_) => {
                notes.push(
                    "no pids controller in this cgroup2 hierarchy; the process limit is enforced \
                     by polling the live process count"
                        .into(),
                );
                false
            }
            None => false,
        };
        if !env.has_kill {
            notes.push(
                "no cgroup.kill (kernel before 5.14): processes are killed one by one".into(),
            );
        }
        Ok(Settings {
            enforce_memory,
            enforce_pids,
            notes,
        })
    }

    fn cpu(&self) -> Option<CpuTime> {
        let mut buf = [0u8; 1024];
        let stat = pread(&self.made.cpu_stat, &mut buf)?;
        Some(split_usec(
            keyed(stat, "usage_usec")?,
            keyed(stat, "user_usec").unwrap_or(0),
        ))
    }

    fn populated(&self) -> Option<bool> {
        let mut buf = [0u8; 128];
        keyed(pread(&self.made.events, &mut buf)?, "populated").map(|v| v != 0)
    }

    /// Waits until `cgroup.events` says `populated 0`, woken by the kernel's POLLPRI on change.
    fn wait_empty(&self, deadline: Instant) -> bool {
        loop {
            match self.populated() {
                Some(false) => return true,
                None => return procs_recursive(&self.leaf).is_empty(),
                Some(true) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let ms = (deadline - now).as_millis().clamp(1, 100) as libc::c_int;
            let mut pfd = libc::pollfd {
                fd: self.made.events.as_raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            };
            // SAFETY: one valid pollfd on a file we keep open for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }

    fn kill_everything(&mut self) -> Result<u64, Error> {
        let deadline = Instant::now() + KILL_BUDGET;
        if self.populated() == Some(false) {
            self.emptied = true;
            return Ok(0);
        }
        let (killed, empty) = if self.has_kill {
            let found = procs_recursive(&self.leaf).len() as u64;
            write_file(&self.leaf.join("cgroup.kill"), "1")?;
            (found, self.wait_empty(deadline))
        } else {
            let (killed, empty) = kill_until_empty(&self.leaf, None, KILL_BUDGET);
            (killed.len() as u64, empty)
        };
        if empty {
            self.emptied = true;
            Ok(killed)
        } else {
            Err(survivors_error(&self.leaf))
        }
    }

    /// Removes the leaf now (waiting briefly if it is busy), then ends the registration.
    fn remove_leaf(&mut self) -> Result<(), Error> {
        self.closed = true;
        remove_tree(&self.leaf)?;
        self.registration = None;
        Ok(())
    }
}

/// Keeps the exact total (`usage_usec`) and takes the user part from `user_usec`.
fn split_usec(usage: u64, user: u64) -> CpuTime {
    let user = user.min(usage);
    CpuTime {
        user: Duration::from_micros(user),
        system: Duration::from_micros(usage - user),
    }
}

impl CallContainer for CgroupV2Container {
    fn containment(&self) -> Containment {
        cgroup_containment(
            Backend::CgroupV2,
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

    fn adopt(&mut self, pid: i32) -> Result<(), Error> {
        rustix::io::write(&self.made.procs, pid.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| cg_err(&self.leaf.join("cgroup.procs"), e.into()))
    }

    fn remains(&self) -> Remains {
        Remains::cgroups(std::slice::from_ref(&self.leaf))
    }

    fn birth_cgroup(&self) -> Option<BorrowedFd<'_>> {
        Some(self.made.dir.as_fd())
    }

    fn self_join_fds(&self) -> Vec<RawFd> {
        vec![self.made.procs.as_raw_fd()]
    }

    fn keep_registration(&mut self, registration: Registration) -> Option<Registration> {
        if self.registration.is_some() {
            return Some(registration);
        }
        self.registration = Some(registration);
        None
    }

    fn work_ahead(&mut self, register: Register<'_>) {
        let env = &self.env;
        AHEAD.work(|| {
            let leaf = V2Leaf::make(env).ok()?;
            let registration = register(Remains::cgroups(std::slice::from_ref(&leaf.leaf)));
            Some(Ready { leaf, registration })
        });
    }

    fn sample(&mut self, _main: MainProcess) -> Sample {
        let live = pread_all(&self.made.procs, &mut self.procs_buf)
            .ok()
            .map(|()| count_lines(&self.procs_buf));
        let memory_current = self.made.memory_current.as_ref().and_then(|f| {
            let mut buf = [0u8; 32];
            pread(f, &mut buf).and_then(|s| s.trim().parse().ok())
        });
        Sample {
            cpu: self.cpu(),
            live_processes: live,
            memory_current,
        }
    }

    fn memory_peak(&mut self) -> Option<u64> {
        if !self.has_memory {
            return None;
        }
        read_u64(&self.leaf.join("memory.peak"))
    }

    fn oom_kills(&mut self) -> u64 {
        if !self.has_memory {
            return 0;
        }
        read_keyed(&self.leaf.join("memory.events"), "oom_kill").unwrap_or(0)
    }

    fn processes_refused(&mut self) -> u64 {
        if !self.has_pids {
            return 0;
        }
        read_keyed(&self.leaf.join("pids.events"), "max").unwrap_or(0)
    }

    fn signal_all(&mut self, signal: i32) {
        signal_every(&self.leaf, signal);
    }

    fn kill_all(&mut self, _main: MainProcess) -> Result<u64, Error> {
        self.kill_everything()
    }

    fn kill_lone_main(&mut self, main: rustix::process::Pid) -> bool {
        // Through the open `cgroup.procs` (v2 lists afresh at each read) and one `stat`, not
        // a walk by path, when no cgroup is below the leaf.
        let main = main.as_raw_pid();
        let alone = if !has_subdirs(&self.leaf)
            && pread_all(&self.made.procs, &mut self.procs_buf).is_ok()
        {
            pids_in(&self.procs_buf).all(|pid| pid == main)
        } else {
            holds_only(&self.leaf, main)
        };
        if !alone {
            return false;
        }
        if self.has_kill {
            // The whole leaf, a fork racing with the listing included.
            write_file(&self.leaf.join("cgroup.kill"), "1").is_ok()
        } else {
            send_signal(main, libc::SIGKILL)
        }
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
        if self.kept && !procs_recursive(&self.leaf).is_empty() {
            // The survivors keep their leaf (and its limits) and outlive the caller, as asked:
            // the guard is told, and the stale-leaf sweep removes the leaf.
            self.closed = true;
            self.registration = None;
            return Ok(());
        }
        if !self.emptied
            && self.populated() != Some(false)
            && !procs_recursive(&self.leaf).is_empty()
            && self.kill_everything().is_err()
        {
            return self.remove_leaf();
        }
        // Empty: only the rmdir is left, for a later call's idle time (`ahead.rs`).
        self.closed = true;
        AHEAD.defer(vec![self.leaf.clone()], self.registration.take());
        Ok(())
    }
}

impl Drop for CgroupV2Container {
    fn drop(&mut self) {
        // A supervisor that bailed out between open and close must not leave a leaf (or the
        // processes in it) behind.
        if !self.closed {
            let _ = self.kill_everything();
            let _ = self.remove_leaf();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn usec_split_keeps_the_exact_total() {
        let t = split_usec(1500, 1000);
        assert_eq!(t.total(), Duration::from_micros(1500));
        assert_eq!(split_usec(10, 20).total(), Duration::from_micros(10));
    }

    /// The v2 controllers are not on the test machine's cgroup2 mount; `scripts/cgroup2-suite.sh`
    /// runs these in the VM, where they must hold (a missing controller there is a failure).
    fn v2_with(controller: &str) -> V2Env {
        let env = v2_env().expect("a writable cgroup v2 hierarchy");
        let has = match controller {
            "memory" => env.has_memory,
            _ => env.has_pids,
        };
        assert!(
            has,
            "no {controller} controller in {}",
            env.parent.display()
        );
        env
    }

    /// Tests on real cgroup v2 leaves.
    mod needs_cgroup_v2 {
        use super::*;

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy: scripts/test.sh runs it where the machine has that"]
        fn escaped_grandchild_cpu_is_counted_and_cgroup_kill_ends_it() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            let mut c = CgroupV2Container::open(&env, &Limits::new()).unwrap();
            let child = spawn_blocked("python3", &["-c", ESCAPE_SPINNER]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            assert_eq!(exit_code(child.wait()), Some(0));
            let spinning = wait_for_cpu(&mut c, Duration::from_millis(300));
            assert_eq!(spinning.live_processes, Some(1), "{spinning:?}");
            let started = Instant::now();
            assert_eq!(c.kill_all(child.main()).unwrap(), 1);
            assert!(started.elapsed() < Duration::from_millis(500));
            assert_eq!(c.populated(), Some(false));
            let cpu = c.final_cpu().unwrap().total();
            assert!(cpu >= Duration::from_millis(300), "{cpu:?}");
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy: scripts/test.sh runs it where the machine has that"]
        fn sample_rereads_fresh_cpu_through_the_open_file() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            let mut c = CgroupV2Container::open(&env, &Limits::new()).unwrap();
            spinner_sampled_twice(&mut c);
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy: scripts/test.sh runs it where the machine has that"]
        fn fallback_kill_without_cgroup_kill_empties_the_leaf() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            let env = V2Env {
                has_kill: false,
                notes: Vec::new(),
                ..env
            };
            let mut c = CgroupV2Container::open(&env, &Limits::new()).unwrap();
            let child = spawn_blocked("python3", &["-c", ESCAPE_SPINNER]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            assert_eq!(exit_code(child.wait()), Some(0));
            wait_for_cpu(&mut c, Duration::from_millis(50));
            assert_eq!(c.kill_all(child.main()).unwrap(), 1);
            assert_eq!(c.sample(MainProcess::Reaped).live_processes, Some(0));
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy: scripts/test.sh runs it where the machine has that"]
        fn dropping_an_unclosed_container_kills_and_removes_it() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            let mut c = CgroupV2Container::open(&env, &Limits::new()).unwrap();
            let child = spawn_blocked("sleep", &["30"]);
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            let leaf = c.leaf.clone();
            drop(c);
            assert!(!leaf.exists());
            assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
        }
    }

    /// What a cgroup v2 leaf without controllers reports.
    mod needs_controllerless_cgroup_v2 {
        use super::*;

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy without controllers: scripts/test.sh runs it where the machine has that"]
        fn controllerless_leaf_reports_its_fallbacks_honestly() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            assert!(
                !env.has_memory && !env.has_pids,
                "this cgroup v2 hierarchy has controllers"
            );
            let limits = Limits::new().memory(100 << 20).max_processes(8);
            let mut c = CgroupV2Container::open(&env, &limits).unwrap();
            assert!(!c.enforces_memory() && !c.enforces_processes());
            let g = c.containment().guarantees;
            assert!(g.all_descendants_contained && g.exact_tree_cpu_time);
            assert!(!g.tree_memory_limit && !g.kernel_process_limit);
            assert!(
                g.notes.iter().any(|n| n.contains("RLIMIT_AS")),
                "{:?}",
                g.notes
            );
            assert!(
                g.notes.iter().any(|n| n.contains("polling")),
                "{:?}",
                g.notes
            );
            assert_eq!(c.memory_peak(), None);
            let leaf = c.leaf.clone();
            assert!(leaf.is_dir());
            c.close().unwrap();
            // Removed in a later call's idle time.
            assert!(leaf.is_dir());
            AHEAD.work(|| None);
            assert!(!leaf.exists());
        }
    }

    /// The memory and pids controllers (run in the cgroup v2 VM).
    mod needs_cgroup_v2_controllers {
        use super::*;

        #[test]
        #[ignore = "needs cgroup v2 controllers: scripts/cgroup2-suite.sh runs it in a VM"]
        fn memory_controller_limits_counts_oom_and_peak() {
            let env = v2_with("memory");
            let mut c = CgroupV2Container::open(&env, &Limits::new().memory(100 << 20)).unwrap();
            assert!(c.enforces_memory());
            assert_eq!(read_u64(&c.leaf.join("memory.max")), Some(100 << 20));
            assert_eq!(read_u64(&c.leaf.join("memory.swap.max")), Some(0));
            // dd's one 300 MiB buffer, filled by read(2): C, not python (the VM emulates the CPU).
            let child = spawn_blocked(
                "dd",
                &["if=/dev/zero", "of=/dev/null", "bs=300M", "count=1"],
            );
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
            assert!(c.oom_kills() >= 1);
            let peak = c.memory_peak().expect("memory.peak (kernel 5.19+)");
            assert!(peak <= 100 << 20 && peak > 90 << 20, "peak {peak}");
            c.kill_all(MainProcess::Reaped).unwrap();
            c.close().unwrap();
        }

        #[test]
        #[ignore = "needs cgroup v2 controllers: scripts/cgroup2-suite.sh runs it in a VM"]
        fn pids_controller_refuses_forks_and_counts_them() {
            let env = v2_with("pids");
            let mut c = CgroupV2Container::open(&env, &Limits::new().max_processes(16)).unwrap();
            assert!(c.enforces_processes());
            assert_eq!(read_u64(&c.leaf.join("pids.max")), Some(16));
            let child = spawn_blocked(
                "sh",
                &[
                    "-c",
                    "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; wait",
                ],
            );
            c.adopt(child.pid()).unwrap();
            let child = child.release();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.processes_refused() == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(c.processes_refused() > 0);
            assert!(c.sample(child.main()).live_processes.unwrap() <= 16);
            // The shell may have given up at the refused fork (dash exits); its sleeps remain.
            assert!(c.kill_all(child.main()).unwrap() >= 2);
            child.wait();
            assert_eq!(c.sample(MainProcess::Reaped).live_processes, Some(0));
            c.close().unwrap();
        }
    }
}
