//! How a call ended: [`Status`] (the one reason) and [`Outcome`] (the reason plus every measurement).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::named_enum;
use crate::{Backend, MemoryLimitKind};

/// Why the call ended. Exactly one reason; the raw facts (exit code, signal, counters) are in
/// [`Outcome`] beside it.
///
/// The reason comes from pynisher's own accounting first (which limit it enforced, recorded before
/// it sent any signal), then from signs of memory exhaustion (a cgroup OOM kill, an allocation
/// failure under an address-space limit), and only then from the exit code or signal.
///
/// ```
/// let status = pynisher::Status::Signaled { signal: 11 };
/// assert!(!status.is_limit());
/// assert!(pynisher::Status::WallTimeout.is_limit());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Status {
    /// A command exited by itself (with any exit code, see [`Outcome::exit_code`]), or a closure
    /// returned a value (in [`Outcome::value`]).
    Completed,
    /// The wall-time limit was reached; pynisher ended the call.
    WallTimeout,
    /// The CPU-time limit was reached; pynisher ended the call.
    CpuTimeout,
    /// The memory limit was reached (see [`Outcome::memory_limit_kind`] for what it counted).
    MemoryLimit,
    /// The call had more live processes than allowed.
    ProcessLimit,
    /// The main process was killed by a signal that pynisher did not send for a limit.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// A closure's process exited (by itself) without sending its result.
    NoResult,
    /// The closure panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The program could not be started; `errno` says why (2 = not found, 13 = not executable, …).
    SpawnFailed {
        /// The `errno` of the failed `exec` or set-up step.
        errno: i32,
        /// A human explanation, e.g. `exec "solver": No such file or directory`.
        message: String,
    },
    /// The closure's result arrived but could not be decoded.
    ResultUndecodable {
        /// Why decoding failed.
        reason: String,
    },
    /// The caller cancelled the call (e.g. Ctrl-C); pynisher ended it.
    Cancelled,
}

impl Status {
    /// True for the statuses that mean pynisher enforced one of the limits.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Status::WallTimeout | Status::CpuTimeout | Status::MemoryLimit | Status::ProcessLimit
        )
    }

    /// A stable lower-case name (`completed`, `wall_timeout`, …) used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::WallTimeout => "wall_timeout",
            Status::CpuTimeout => "cpu_timeout",
            Status::MemoryLimit => "memory_limit",
            Status::ProcessLimit => "process_limit",
            Status::Signaled { .. } => "signaled",
            Status::NoResult => "no_result",
            Status::Panicked { .. } => "panicked",
            Status::SpawnFailed { .. } => "spawn_failed",
            Status::ResultUndecodable { .. } => "result_undecodable",
            Status::Cancelled => "cancelled",
        }
    }
}

/// CPU time consumed by the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in kernel mode.
    pub system: Duration,
}

impl CpuTime {
    /// User + system.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = pynisher::CpuTime { user: Duration::from_secs(1), system: Duration::from_secs(2) };
    /// assert_eq!(t.total(), Duration::from_secs(3));
    /// ```
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

named_enum! {
    /// How [`Outcome::cpu_time`] was measured.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CpuMeasure ("CPU measure") {
        /// The cgroup's usage counter: every process that ever ran in the call, exact.
        Cgroup = "cgroup",
        /// The main process's rusage (itself and the descendants it waited for) plus the last
        /// `/proc` sample of descendants still alive; orphans re-parented away from the call are
        /// missed.
        ProcessTree = "process_tree",
    }
}

named_enum! {
    /// How [`Outcome::peak_memory`] was measured.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MemoryMeasure ("memory measure") {
        /// The cgroup's high-water mark of charged memory (all processes together, page cache and
        /// tmpfs included): `memory.peak` (v2) or `memory.max_usage_in_bytes` (v1).
        CgroupPeak = "cgroup_peak",
        /// The largest resident set of any single process of the call (`ru_maxrss`), not a sum;
        /// it also counts pages inherited from the caller by a forked closure.
        MaxRssOfOneProcess = "max_rss_of_one_process",
        /// The highest of the supervisor's samples of the call's resident memory: the sum of the
        /// resident sets of its live processes (shared pages once per process that maps them),
        /// less the anonymous memory a forked closure's process started with. A spike between
        /// two samples is missed, except in a closure's main process, whose own high-water mark
        /// (`ru_maxrss` less what it started with) is the floor of this peak.
        Sampled = "sampled",
    }
}

/// Bytes captured from one output stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Captured {
    /// The bytes kept: all of them, or the head and the tail joined by a marker line when
    /// [`Captured::truncated`].
    pub bytes: Vec<u8>,
    /// Whether bytes were dropped because the stream exceeded the output limit.
    pub truncated: bool,
    /// How many bytes the stream carried in total.
    pub total_bytes: u64,
}

impl Captured {
    /// The captured bytes as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// What the containment backend of a call guarantees. Every outcome carries one, so a report never
/// claims more than the mechanism gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guarantees {
    /// Every descendant, including ones that `setsid` and double-fork, is a member of the call.
    pub all_descendants_contained: bool,
    /// CPU time counts every process that ever ran in the call, exited ones and escapees included.
    pub exact_tree_cpu_time: bool,
    /// The memory limit counts resident memory of all processes together.
    pub tree_memory_limit: bool,
    /// The process limit is enforced by the kernel at fork time (not by polling).
    pub kernel_process_limit: bool,
    /// Human notes on what the backend cannot see or do.
    pub notes: Vec<String>,
}

/// Which containment held the call, and what it guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containment {
    /// The backend that was used (never [`Backend::Auto`]).
    pub backend: Backend,
    /// What that backend guarantees.
    pub guarantees: Guarantees,
}

/// Everything known about a finished call: why it ended and what it used.
///
/// `T` is the closure's return type (`()` for commands).
///
/// ```no_run
/// let outcome = pynisher::Limits::new().run_command(&pynisher::Command::new("true"))?;
/// println!("{} in {:?}, {:?} CPU", outcome.status.name(), outcome.wall_time, outcome.cpu_time.total());
/// # Ok::<(), pynisher::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome<T> {
    /// Why the call ended.
    pub status: Status,
    /// The closure's return value, when it completed.
    pub value: Option<T>,
    /// The main process's exit code, when it exited by itself. An outcome taken at the result
    /// ([`crate::Running::wait_result_first`]) has `Some(0)`, what the child exits with right
    /// after its result (the kill only spares waiting for that exit).
    pub exit_code: Option<i32>,
    /// The signal that ended the main process, when one did (whoever sent it).
    pub signal: Option<i32>,
    /// The soft signal pynisher sent on a time limit before the grace period, if any.
    pub soft_signal_sent: Option<i32>,
    /// Whether pynisher had to SIGKILL the call (after a limit, a cancel, or to clear leftovers).
    pub killed: bool,
    /// Monotonic time from the child's release to the end of the call's main process (to its
    /// whole result, for an outcome taken there).
    pub wall_time: Duration,
    /// CPU time of the call.
    pub cpu_time: CpuTime,
    /// How `cpu_time` was measured.
    pub cpu_measure: CpuMeasure,
    /// Peak memory of the call in bytes, when measured.
    pub peak_memory: Option<u64>,
    /// How `peak_memory` was measured.
    pub memory_measure: MemoryMeasure,
    /// What the memory limit counted, when one was set.
    pub memory_limit_kind: Option<MemoryLimitKind>,
    /// How many times the kernel's OOM killer killed a process of the call (cgroup backends).
    pub oom_kills: u64,
    /// How many forks the process limit refused (cgroup backends).
    pub processes_refused: u64,
    /// How many processes of the call were still alive after the main process ended and were killed.
    pub leftovers_killed: u64,
    /// Whether output draining stopped at the drain timeout because a descendant held a pipe open.
    pub output_drain_timed_out: bool,
    /// Captured stdout, when capture was on.
    pub stdout: Option<Captured>,
    /// Captured stderr, when capture was on.
    pub stderr: Option<Captured>,
    /// Which containment held the call and what it guarantees.
    pub containment: Containment,
    /// What this call asked for that its backend enforced less strongly (empty with a cgroup
    /// that has every controller the limits need).
    pub weaknesses: Vec<crate::Weakness>,
}

impl<T> Outcome<T> {
    /// The same outcome carrying `value` instead (used when a face decodes values itself).
    pub fn with_value<U>(self, value: Option<U>) -> Outcome<U> {
        Outcome {
            status: self.status,
            value,
            exit_code: self.exit_code,
            signal: self.signal,
            soft_signal_sent: self.soft_signal_sent,
            killed: self.killed,
            wall_time: self.wall_time,
            cpu_time: self.cpu_time,
            cpu_measure: self.cpu_measure,
            peak_memory: self.peak_memory,
            memory_measure: self.memory_measure,
            memory_limit_kind: self.memory_limit_kind,
            oom_kills: self.oom_kills,
            processes_refused: self.processes_refused,
            leftovers_killed: self.leftovers_killed,
            output_drain_timed_out: self.output_drain_timed_out,
            stdout: self.stdout,
            stderr: self.stderr,
            containment: self.containment,
            weaknesses: self.weaknesses,
        }
    }
}
