//! What a call may use: the [`Limits`] builder, its validation, and the options that steer how a
//! limit is enforced (soft signals, grace period, output capture, containment backend).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::named_enum;
use crate::Error;

named_enum! {
    /// Which containment backend holds the processes of a call.
    ///
    /// ```
    /// let limits = pynisher::Limits::new().backend(pynisher::Backend::ProcessGroup);
    /// assert_eq!(limits.get_backend(), pynisher::Backend::ProcessGroup);
    /// assert_eq!("cgroup1".parse(), Ok(pynisher::Backend::CgroupV1));
    /// assert_eq!(pynisher::Backend::ProcessGroup.name(), "none");
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Backend ("backend") {
        /// The strongest one available: cgroup v2, then cgroup v1, then the process group.
        #[default]
        Auto = "auto",
        /// A leaf in a writable cgroup v2 hierarchy.
        CgroupV2 = "cgroup2",
        /// Leaves in the cgroup v1 memory, cpuacct, pids and freezer hierarchies (needs root).
        CgroupV1 = "cgroup1",
        /// No cgroup: the child's own process group, `/proc` polling and rlimits (weaker, see
        /// [`crate::Guarantees`]).
        ProcessGroup = "none",
    }
}

named_enum! {
    /// What the memory limit counts.
    ///
    /// ```
    /// assert_eq!(pynisher::MemoryLimitKind::AddressSpace.to_string(), "address_space");
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum MemoryLimitKind ("memory limit kind") {
        /// Resident memory charged to the call's cgroup when a cgroup backend with a memory
        /// controller is in use; otherwise the address-space rlimit. The outcome says which one
        /// applied.
        #[default]
        Auto = "auto",
        /// Memory charged to the call's cgroup (all its processes together, swap excluded).
        Resident = "resident",
        /// `RLIMIT_AS` on every process: reserved address space, not memory in use.
        AddressSpace = "address_space",
        /// Resident memory of the call's processes, summed from `/proc` samples by the
        /// supervisor, which kills the call at the limit: what [`MemoryLimitKind::Auto`] becomes
        /// on the process-group backend (no memory controller). Reported in
        /// [`crate::Outcome::memory_limit_kind`]; it cannot be requested (ask for `Auto`).
        Sampled = "sampled",
    }
}

/// Limits and options for one call. Every limit is optional; none set means no limit.
///
/// Build it with the chained setters, then start a call with [`Limits::run_command`] or
/// [`Limits::run_closure`]. Values are checked when the call starts (or by [`Limits::validate`]):
/// nothing is started when one is invalid.
///
/// ```no_run
/// use std::time::Duration;
/// use pynisher::{Command, Limits, Status};
///
/// let outcome = Limits::new()
///     .wall_time(Duration::from_millis(1500))
///     .cpu_time(Duration::from_secs(2))
///     .memory(512 * 1024 * 1024)
///     .max_processes(16)
///     .grace_period(Duration::from_millis(200))
///     .capture_output(true)
///     .run_command(&Command::new("sleep").arg("5"))?;
/// assert_eq!(outcome.status, Status::WallTimeout);
/// # Ok::<(), pynisher::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub(crate) wall_time: Option<Duration>,
    pub(crate) cpu_time: Option<Duration>,
    pub(crate) memory: Option<u64>,
    pub(crate) memory_kind: MemoryLimitKind,
    pub(crate) max_processes: Option<u64>,
    pub(crate) grace_period: Duration,
    pub(crate) wall_signal: Option<i32>,
    pub(crate) cpu_signal: Option<i32>,
    pub(crate) capture_output: bool,
    pub(crate) output_limit: usize,
    pub(crate) result_limit: u64,
    pub(crate) backend: Backend,
    pub(crate) drain_timeout: Duration,
    pub(crate) memory_sample_interval: Duration,
    pub(crate) strict: bool,
    #[serde(default)]
    pub(crate) keep_descendants: bool,
}

/// Default time between two samples of a call's resident memory when the memory limit is
/// enforced by sampling (see `benchmarks/` for its cost and the overshoot it allows).
pub const DEFAULT_MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// The largest process-count limit: the kernel's `PID_MAX_LIMIT` on 64-bit Linux, the most
/// processes a system can have and the most `pids.max` accepts.
pub const MAX_PROCESSES: u64 = 4 * 1024 * 1024;

/// Default cap on the payload of the result frame (a closure's encoded value, or what a program run
/// with [`Limits::spawn_command_for_result`] sends): 1 GiB. The caller holds a value whole before
/// decoding it, so this bounds what one call can make the caller buffer.
pub const DEFAULT_RESULT_LIMIT: u64 = 1 << 30;

/// Default cap on captured output per stream.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time: None,
            cpu_time: None,
            memory: None,
            memory_kind: MemoryLimitKind::Auto,
            max_processes: None,
            grace_period: Duration::ZERO,
            wall_signal: None,
            cpu_signal: None,
            capture_output: false,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            result_limit: DEFAULT_RESULT_LIMIT,
            backend: Backend::Auto,
            drain_timeout: Duration::from_millis(100),
            memory_sample_interval: DEFAULT_MEMORY_SAMPLE_INTERVAL,
            strict: false,
            keep_descendants: false,
        }
    }
}

impl Limits {
    /// No limits, no capture, automatic backend, no grace period.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wall-clock limit, measured on the monotonic clock from the moment the child is released.
    pub fn wall_time(mut self, limit: Duration) -> Self {
        self.wall_time = Some(limit);
        self
    }

    /// CPU-time limit (user + system) over every process of the call, enforced by the supervisor;
    /// `RLIMIT_CPU` is set per process only as a backstop at limit + grace + 1 s.
    pub fn cpu_time(mut self, limit: Duration) -> Self {
        self.cpu_time = Some(limit);
        self
    }

    /// Memory limit in bytes; what it counts is chosen by [`Limits::memory_kind`].
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// What the memory limit counts (default: resident memory where a cgroup can enforce it).
    pub fn memory_kind(mut self, kind: MemoryLimitKind) -> Self {
        self.memory_kind = kind;
        self
    }

    /// Maximum number of live processes of the call (the first one included).
    pub fn max_processes(mut self, count: u64) -> Self {
        self.max_processes = Some(count);
        self
    }

    /// Time between the soft signal and SIGKILL on a time limit. Zero (the default) kills at once.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Soft signal sent on the wall-time limit when a grace period is set. Default: SIGTERM for
    /// commands, SIGALRM for closures.
    pub fn wall_signal(mut self, signal: i32) -> Self {
        self.wall_signal = Some(signal);
        self
    }

    /// Soft signal sent on the CPU-time limit when a grace period is set. Default: SIGTERM for
    /// commands, SIGXCPU for closures.
    pub fn cpu_signal(mut self, signal: i32) -> Self {
        self.cpu_signal = Some(signal);
        self
    }

    /// Capture the child's stdout and stderr (bounded by [`Limits::output_limit`]) instead of
    /// letting them go to the caller's.
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.capture_output = capture;
        self
    }

    /// Cap on captured bytes per stream; the head and the tail are kept, the middle dropped.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Cap on the result frame's payload in bytes (default [`DEFAULT_RESULT_LIMIT`], 1 GiB). The
    /// caller checks the frame as it arrives: junk is refused at its first byte, a frame that
    /// announces more than this at its header, and the call is then killed and ends with
    /// [`crate::Status::ResultUndecodable`] saying why; nothing beyond is buffered.
    ///
    /// ```
    /// let limits = pynisher::Limits::new().result_limit(64 << 20);
    /// assert_eq!(limits.get_result_limit(), 64 << 20);
    /// ```
    pub fn result_limit(mut self, bytes: u64) -> Self {
        self.result_limit = bytes;
        self
    }

    /// Which containment backend to use (default [`Backend::Auto`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How long to keep reading output after the main process exited, when a descendant still
    /// holds the pipes open (default 100 ms).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Shortest time between two samples of the call's resident memory where the memory limit is
    /// enforced by sampling ([`MemoryLimitKind::Sampled`], the process-group backend): far below
    /// the limit the supervisor samples less often (no later than the call could fill the
    /// headroom at 8 GiB/s, at most every 100 ms), near it at this interval. Shorter catches
    /// spikes sooner and costs the supervisor more CPU (default
    /// [`DEFAULT_MEMORY_SAMPLE_INTERVAL`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let limits = pynisher::Limits::new().memory_sample_interval(Duration::from_millis(5));
    /// assert_eq!(limits.get_memory_sample_interval(), Duration::from_millis(5));
    /// ```
    pub fn memory_sample_interval(mut self, interval: Duration) -> Self {
        self.memory_sample_interval = interval;
        self
    }

    /// Refuse to start a call whose limits the backend cannot fully enforce (any
    /// [`crate::Weakness`]): the call fails with [`Error::NotEnforceable`] naming what is weaker,
    /// and nothing is started, as BenchExec's `runexec` does. Off by default: the call runs and
    /// its outcome lists the weaknesses.
    ///
    /// ```
    /// let limits = pynisher::Limits::new()
    ///     .backend(pynisher::Backend::ProcessGroup)
    ///     .strict(true);
    /// let err = limits.run_command(&pynisher::Command::new("true")).unwrap_err();
    /// assert!(matches!(err, pynisher::Error::NotEnforceable { .. }));
    /// ```
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The configured memory sampling interval.
    pub fn get_memory_sample_interval(&self) -> Duration {
        self.memory_sample_interval
    }
    /// Whether strict mode is on.
    pub fn get_strict(&self) -> bool {
        self.strict
    }

    /// Leaves the call's other processes running when its first process ends on its own (default
    /// `false`: everything is killed). For pynisher 1.x's `terminate_child_processes=False`.
    ///
    /// Only a call that ended by itself keeps them: a limit, a cancellation or an engine error
    /// still kills the whole call. On a cgroup backend the survivors stay in the call's leaf, whose
    /// limits keep applying to them; the leaf is not removed while they live (the sweep of stale
    /// leaves removes it, killing what is left, once this process is gone). On the
    /// process-group backend they simply live on.
    ///
    /// ```
    /// let limits = pynisher::Limits::new().keep_descendants(true);
    /// assert!(limits.get_keep_descendants());
    /// ```
    pub fn keep_descendants(mut self, keep: bool) -> Self {
        self.keep_descendants = keep;
        self
    }

    /// Whether the call's descendants outlive it (see [`Limits::keep_descendants`]).
    pub fn get_keep_descendants(&self) -> bool {
        self.keep_descendants
    }

    /// The configured wall-time limit.
    pub fn get_wall_time(&self) -> Option<Duration> {
        self.wall_time
    }
    /// The configured CPU-time limit.
    pub fn get_cpu_time(&self) -> Option<Duration> {
        self.cpu_time
    }
    /// The configured memory limit in bytes.
    pub fn get_memory(&self) -> Option<u64> {
        self.memory
    }
    /// What the memory limit counts.
    pub fn get_memory_kind(&self) -> MemoryLimitKind {
        self.memory_kind
    }
    /// The configured process-count limit.
    pub fn get_max_processes(&self) -> Option<u64> {
        self.max_processes
    }
    /// The configured grace period.
    pub fn get_grace_period(&self) -> Duration {
        self.grace_period
    }
    /// Whether output is captured.
    pub fn get_capture_output(&self) -> bool {
        self.capture_output
    }
    /// The cap on the result frame's payload.
    pub fn get_result_limit(&self) -> u64 {
        self.result_limit
    }
    /// The configured backend.
    pub fn get_backend(&self) -> Backend {
        self.backend
    }

    /// Checks every value; the error names the first bad parameter and its value.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(pynisher::Limits::new().wall_time(Duration::from_millis(1)).validate().is_ok());
    /// let err = pynisher::Limits::new().memory(0).validate().unwrap_err();
    /// assert!(err.to_string().contains("memory"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let positive = |param: &'static str, d: Option<Duration>| match d {
            Some(d) if d.is_zero() => Err(Error::invalid(param, "0s", "must be greater than zero")),
            _ => Ok(()),
        };
        positive("wall_time", self.wall_time)?;
        positive("cpu_time", self.cpu_time)?;
        if self.memory == Some(0) {
            return Err(Error::invalid("memory", 0, "must be at least one byte"));
        }
        if self.memory_kind == MemoryLimitKind::Sampled {
            return Err(Error::invalid(
                "memory_kind",
                "sampled",
                "sampled is how an outcome reports a limit enforced by sampling; ask for auto",
            ));
        }
        if self.memory_sample_interval < Duration::from_millis(1)
            || self.memory_sample_interval > Duration::from_secs(10)
        {
            return Err(Error::invalid(
                "memory_sample_interval",
                format!("{:?}", self.memory_sample_interval),
                "must be between 1ms and 10s",
            ));
        }
        if self.max_processes == Some(0) {
            return Err(Error::invalid(
                "max_processes",
                0,
                "must be at least 1 (the call's own process)",
            ));
        }
        if let Some(n) = self.max_processes.filter(|&n| n > MAX_PROCESSES) {
            return Err(Error::invalid(
                "max_processes",
                n,
                format!(
                    "at most {MAX_PROCESSES} (the kernel's PID_MAX_LIMIT: no system can hold more \
                     processes, and pids.max cannot be set higher)"
                ),
            ));
        }
        for (param, sig) in [
            ("wall_signal", self.wall_signal),
            ("cpu_signal", self.cpu_signal),
        ] {
            if let Some(sig) = sig {
                if !(1..=64).contains(&sig) || sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    return Err(Error::invalid(
                        param,
                        sig,
                        "not a catchable signal number (1-64, not KILL or STOP)",
                    ));
                }
            }
        }
        if self.output_limit < 2 {
            return Err(Error::invalid(
                "output_limit",
                self.output_limit,
                "must be at least 2 bytes",
            ));
        }
        // Deadlines are computed as Instant + Duration; refuse what would overflow it.
        let now = std::time::Instant::now();
        for (param, d) in [
            ("wall_time", self.wall_time),
            ("cpu_time", self.cpu_time),
            ("grace_period", Some(self.grace_period)),
            ("drain_timeout", Some(self.drain_timeout)),
        ] {
            if let Some(d) = d {
                if now.checked_add(d).is_none() || d > Duration::from_secs(100 * 365 * 86400) {
                    return Err(Error::invalid(
                        param,
                        format!("{d:?}"),
                        "too large (over 100 years)",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_rejected_with_the_parameter_name() {
        let cases = [
            (Limits::new().wall_time(Duration::ZERO), "wall_time"),
            (Limits::new().cpu_time(Duration::ZERO), "cpu_time"),
            (Limits::new().memory(0), "memory"),
            (Limits::new().max_processes(0), "max_processes"),
            (Limits::new().wall_signal(libc::SIGKILL), "wall_signal"),
            (Limits::new().cpu_signal(99), "cpu_signal"),
            (Limits::new().wall_time(Duration::MAX), "wall_time"),
            (
                Limits::new().memory_kind(MemoryLimitKind::Sampled),
                "memory_kind",
            ),
            (
                Limits::new().memory_sample_interval(Duration::ZERO),
                "memory_sample_interval",
            ),
            (Limits::new().cpu_time(Duration::MAX), "cpu_time"),
            (Limits::new().grace_period(Duration::MAX), "grace_period"),
            (Limits::new().drain_timeout(Duration::MAX), "drain_timeout"),
            (
                Limits::new().max_processes(MAX_PROCESSES + 1),
                "max_processes",
            ),
        ];
        for (limits, param) in cases {
            let err = limits.validate().unwrap_err().to_string();
            assert!(err.contains(param), "{err}");
        }
    }

    #[test]
    fn sub_second_limits_are_accepted() {
        Limits::new()
            .wall_time(Duration::from_millis(10))
            .cpu_time(Duration::from_millis(10))
            .validate()
            .unwrap();
    }
}
