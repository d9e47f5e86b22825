//! The fallback backend: no cgroup. The call is the child's process group plus every descendant
//! found by walking `/proc` from the main process.
//!
//! Weaker than a cgroup, and the outcome says so: a descendant that is orphaned (its parent died)
//! *and* left the process group (`setsid`) is invisible; CPU time of processes that exited without
//! being waited for by a member of the call is lost; the process limit is enforced by counting at
//! each poll, so a fast fork burst can exceed it between polls.
//!
//! The memory limit (kind `Auto`) counts resident memory as runsolver does: every sample sums the
//! resident sets (`/proc/PID/stat` field 24, already read for the CPU time) of the call's live
//! processes, less what a forked closure's process held at the fork (the caller's pages it shares;
//! a cgroup does not charge those either), and the supervisor kills at the limit. The sampled sum
//! counts a page shared by several processes of the call once per process (more than a cgroup
//! would: never too little). `RLIMIT_AS` stays only as a backstop (see `supervisor.rs`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rustix::process::Pid;

use super::{CallContainer, MainProcess, Sample};
use crate::sys::{self, ProcStat};
use crate::{
    Backend, Containment, CpuTime, Error, Guarantees, Limits, MemoryLimitKind, MemoryMeasure,
};

/// The process-group container of one call.
pub(crate) struct ProcessGroupContainer {
    /// The call's process group (the main process's pid), known once the child is adopted.
    pgid: Option<Pid>,
    ticks_per_second: u64,
    page_size: u64,
    /// Whether the memory limit is enforced by sampling (a limit of kind `Auto` was set).
    sampling: bool,
    /// Resident bytes the main process held when it was forked (0 for a program: exec drops them).
    inherited: Option<u64>,
    /// Highest sampled memory of the call.
    peak: u64,
    /// The main process was reaped and its group found empty: it stays empty (nobody can join a
    /// group that has no member), so later looks need no probe.
    group_gone: bool,
    notes: Vec<String>,
}

impl ProcessGroupContainer {
    pub(crate) fn new(limits: &Limits) -> Result<Self, Error> {
        let sampling = limits.memory.is_some() && limits.memory_kind == MemoryLimitKind::Auto;
        let memory_note = if sampling {
            format!(
                "the memory limit counts resident memory sampled down to every {:?} near the \
                 limit (a spike between samples can pass); RLIMIT_AS stays as a generous backstop",
                limits.memory_sample_interval
            )
        } else {
            "a memory limit is RLIMIT_AS on each process (address space, not memory in use)".into()
        };
        Ok(ProcessGroupContainer {
            pgid: None,
            ticks_per_second: sys::clock_ticks_per_second().max(1),
            page_size: sys::page_size(),
            sampling,
            inherited: None,
            peak: 0,
            group_gone: false,
            notes: vec![
                "no cgroup: a descendant that leaves the process group (setsid) and is orphaned is not seen, not counted and not killed".into(),
                "CPU time of descendants that exit unwaited-for is lost".into(),
                memory_note,
                "the process limit is checked by polling; a fork burst can exceed it briefly".into(),
            ],
        })
    }

    /// Resident memory of the live members, less what the main process inherited.
    fn resident_of(&self, members: &[ProcStat]) -> u64 {
        let pages: u64 = members
            .iter()
            .filter(|p| p.state != b'Z')
            .map(|p| p.rss_pages)
            .sum();
        (pages * self.page_size).saturating_sub(self.inherited.unwrap_or(0))
    }

    /// Whether any process still belongs to the call's process group. The kernel does not reuse
    /// a pid while any process has it as its process group id, so this holds even after the
    /// group's leader (the main process) has been reaped.
    fn group_alive(&self) -> bool {
        self.pgid
            .is_some_and(|pgid| sys::group_exists(pgid.as_raw_pid()))
    }

    /// The main process (while unreaped), its descendants, the members of its process group and
    /// their descendants.
    fn members(&mut self, main: MainProcess) -> Vec<ProcStat> {
        let main = main.pid().map(|pid| pid.as_raw_pid());
        if main.is_none() && (self.group_gone || !self.group_alive()) {
            // The main process is reaped and its group is empty: nothing can be left that a walk
            // could find (its children were re-parented away when it exited). This skips a
            // `/proc` scan on every call that leaves nothing behind.
            self.group_gone = true;
            return Vec::new();
        }
        let pgid = self.pgid.map(Pid::as_raw_pid);
        let all = sys::all_proc_stats();
        let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, p) in all.iter().enumerate() {
            children.entry(p.ppid).or_default().push(i);
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, p)| main == Some(p.pid) || pgid == Some(p.pgrp))
            .map(|(i, _)| i)
            .collect();
        let mut members = Vec::new();
        while let Some(i) = stack.pop() {
            let p = all[i];
            if !seen.insert(p.pid) {
                continue;
            }
            members.push(p);
            if let Some(kids) = children.get(&p.pid) {
                stack.extend(kids.iter().copied());
            }
        }
        members
    }

    fn ticks(&self, ticks: u64) -> Duration {
        Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / self.ticks_per_second)
    }

    /// CPU of the members: each live process's exact clock (all threads) plus the tick-counted
    /// time of the children it reaped; a zombie's own time from its stat line.
    fn cpu_of(&self, members: &[ProcStat]) -> CpuTime {
        let mut user = Duration::ZERO;
        let mut system = Duration::ZERO;
        for p in members {
            user += self.ticks(p.cutime);
            system += self.ticks(p.cstime);
            let exact = (p.state != b'Z')
                .then(|| sys::process_cpu_clock(p.pid))
                .flatten();
            match exact {
                Some(own) => {
                    // Split the exact total by the tick ratio of the stat line.
                    let ticks = p.utime + p.stime;
                    let share = if ticks == 0 {
                        1.0
                    } else {
                        p.utime as f64 / ticks as f64
                    };
                    let own_user = own.mul_f64(share);
                    user += own_user;
                    system += own.saturating_sub(own_user);
                }
                None => {
                    user += self.ticks(p.utime);
                    system += self.ticks(p.stime);
                }
            }
        }
        CpuTime { user, system }
    }
}

impl CallContainer for ProcessGroupContainer {
    fn containment(&self) -> Containment {
        Containment {
            backend: Backend::ProcessGroup,
            guarantees: Guarantees {
                all_descendants_contained: false,
                exact_tree_cpu_time: false,
                tree_memory_limit: false,
                kernel_process_limit: false,
                notes: self.notes.clone(),
            },
        }
    }

    fn enforces_memory(&self) -> bool {
        false
    }

    fn enforces_processes(&self) -> bool {
        false
    }

    fn samples_memory(&self) -> bool {
        self.sampling
    }

    fn set_inherited_memory(&mut self, bytes: u64) {
        self.inherited = Some(bytes);
    }

    fn memory_measure(&self) -> MemoryMeasure {
        MemoryMeasure::Sampled
    }

    fn child_waits_for_adoption(&self) -> bool {
        false
    }

    fn adopt(&mut self, pid: i32) -> Result<(), Error> {
        // The child calls setpgid(0, 0) itself; set it from here too so that the group exists
        // before the child is released (the classic race of process-group launchers).
        // SAFETY: setpgid on our own unreleased child; no memory is touched.
        unsafe {
            libc::setpgid(pid, pid);
        }
        self.pgid = Pid::from_raw(pid);
        Ok(())
    }

    fn sample(&mut self, main: MainProcess) -> Sample {
        let members = self.members(main);
        let live = members.iter().filter(|p| p.state != b'Z').count() as u64;
        let memory = self.resident_of(&members);
        self.peak = self.peak.max(memory);
        Sample {
            cpu: Some(self.cpu_of(&members)),
            live_processes: Some(live),
            memory_current: Some(memory),
        }
    }

    fn record_main_max_rss(&mut self, bytes: u64) {
        // Only a forked closure's high-water mark is its own (less what it shared with the
        // caller from the fork on, as in the samples): after an execve the kernel keeps the
        // larger of the new program's and the pre-exec image's, which is the caller's size.
        if let Some(inherited) = self.inherited {
            self.peak = self.peak.max(bytes.saturating_sub(inherited));
        }
    }

    fn memory_peak(&mut self) -> Option<u64> {
        // Without a sampled limit the samples are too sparse (or absent) to be a peak.
        self.sampling.then_some(self.peak)
    }

    fn oom_kills(&mut self) -> u64 {
        0
    }

    fn processes_refused(&mut self) -> u64 {
        0
    }

    fn signal_all(&mut self, signal: i32) {
        if let Some(pgid) = self.pgid {
            sys::kill_group(pgid.as_raw_pid(), signal);
        }
    }

    fn kill_all(&mut self, main: MainProcess) -> Result<u64, Error> {
        // Stop the group first so that nobody forks or exits (re-parenting its children away)
        // while we look; kill everything found, and look again only while the walk finds
        // processes outside the group (a new child of a group member is in the group, so the
        // group kill already covers it).
        let pgid = self.pgid.map(Pid::as_raw_pid);
        let kill_group = |signal| {
            if let Some(pgid) = pgid {
                sys::kill_group(pgid, signal);
            }
        };
        let mut killed: HashSet<i32> = HashSet::new();
        for _ in 0..50 {
            let members = self.members(main);
            if members.is_empty() {
                break;
            }
            kill_group(libc::SIGSTOP);
            let live: Vec<&ProcStat> = members.iter().filter(|p| p.state != b'Z').collect();
            for p in &live {
                if Some(p.pgrp) != pgid {
                    sys::kill_pid(p.pid, libc::SIGSTOP);
                }
            }
            for p in &live {
                sys::kill_pid(p.pid, libc::SIGKILL);
                killed.insert(p.pid);
            }
            kill_group(libc::SIGKILL);
            if live.iter().all(|p| Some(p.pgrp) == pgid) {
                break;
            }
        }
        if killed.is_empty() && self.group_gone {
            // Nothing was found and the group is empty (no zombie of it either: a zombie is
            // still a member): nothing to wait for, nothing to reap.
            return Ok(0);
        }
        // SIGKILL is delivered when the process next runs: wait (bounded) until every killed
        // process is gone or a zombie, so that "the call returned" means "they are dead".
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for &pid in &killed {
            while sys::proc_stat(pid).is_some_and(|p| p.state != b'Z' && p.state != b'X')
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // Orphans re-parented to us (when we are a subreaper) are ours to reap — but never the
        // main process, which the supervisor reaps itself (for its status and rusage): reaping
        // the whole group is only safe once the main process is reaped.
        let main = main.pid().map(|pid| pid.as_raw_pid());
        if sys::is_subreaper() {
            if let (None, Some(pgid)) = (main, pgid) {
                sys::reap_group_zombies(pgid);
            }
            for &pid in &killed {
                if Some(pid) != main {
                    sys::reap_if_child(pid);
                }
            }
        }
        if let Some(main) = main {
            killed.remove(&main);
        }
        Ok(killed.len() as u64)
    }

    fn final_cpu(&mut self) -> Option<CpuTime> {
        None
    }

    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
