//! The one small trait every containment backend implements, and the sample it returns.
//!
//! A backend holds the processes of one call. The supervisor (`supervise/supervisor.rs`) creates it
//! before the fork, asks it to adopt the child before the child is released to run user code,
//! samples it while the call runs, and asks it to kill everything and clean up at the end.

use rustix::process::Pid;

use crate::{Containment, CpuTime, Error};

/// The call's first process, as the supervisor knows it when it asks the container to sample or
/// kill: whether its pid is still the call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MainProcess {
    /// Alive, or a zombie not yet reaped: the pid is still the call's.
    Unreaped(Pid),
    /// Reaped by the supervisor: the pid may already belong to another process.
    Reaped,
}

impl MainProcess {
    /// The main process's pid while it is the call's.
    pub(crate) fn pid(self) -> Option<Pid> {
        match self {
            MainProcess::Unreaped(pid) => Some(pid),
            MainProcess::Reaped => None,
        }
    }
}

/// One poll's worth of measurements of the whole call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// CPU time of every process of the call that the backend can see (tree-wide).
    pub cpu: Option<CpuTime>,
    /// Processes (not threads) of the call alive now.
    pub live_processes: Option<u64>,
    /// Memory charged to the call now, in bytes.
    pub memory_current: Option<u64>,
}

/// One call's container. Created before the fork by [`crate::contain::open`].
pub(crate) trait CallContainer: Send {
    /// Name and guarantees, for the outcome.
    fn containment(&self) -> Containment;

    /// Whether the memory limit is enforced by the container (resident memory of the whole call).
    /// When false and a memory limit is set, the child gets `RLIMIT_AS` instead.
    fn enforces_memory(&self) -> bool;

    /// Whether this backend can enforce a memory limit of kind [`crate::MemoryLimitKind::Auto`]
    /// by sampling the call's resident memory ([`Sample::memory_current`]), for the supervisor to
    /// kill at the limit. Asked only when [`CallContainer::enforces_memory`] is false.
    fn samples_memory(&self) -> bool {
        false
    }

    /// Memory a forked closure's process holds from the moment of the fork (pages it shares
    /// with the caller), to leave out of the sampled memory; called before the fork.
    fn set_inherited_memory(&mut self, _bytes: u64) {}

    /// The reaped main process's high-water mark (`ru_maxrss`, in bytes), given before
    /// [`CallContainer::memory_peak`] is asked: a sampled peak takes it as its floor, since a
    /// short peak between two samples is seen by the kernel but by no sample.
    fn record_main_max_rss(&mut self, _bytes: u64) {}

    /// How [`CallContainer::memory_peak`] measures.
    fn memory_measure(&self) -> crate::MemoryMeasure {
        crate::MemoryMeasure::CgroupPeak
    }

    /// Whether the process limit is enforced by the kernel at fork time. When false, the supervisor
    /// counts live processes at every poll and kills on excess.
    fn enforces_processes(&self) -> bool;

    /// Called in the parent right after the fork, while the child is still blocked and has run no
    /// user code: make `pid` (and so all its future descendants) a member of the call.
    fn adopt(&mut self, pid: i32) -> Result<(), Error>;

    /// A cgroup directory the child can be created in directly (`clone3` with
    /// `CLONE_INTO_CGROUP`), which makes [`CallContainer::adopt`] unnecessary: moving a process
    /// into a cgroup v2 costs milliseconds (the kernel waits for an RCU grace period), creating
    /// it there costs nothing extra.
    fn birth_cgroup(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Descriptors (opened by the supervisor, inherited by the child) to which the child itself
    /// writes `0` before it runs any user code, each moving the calling thread (the child's only
    /// one) into a cgroup; when not empty, [`CallContainer::adopt`] is not called. Moving
    /// *oneself* through a v1 `tasks` file skips the kernel's global thread-group lock and its
    /// RCU grace period, which moving another process cannot; the kernel checks the permission
    /// against whoever opened the file, so the child needs no `open` of its own.
    fn self_join_fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }

    /// Takes the call's guard registration (`guard::Ticket`, boxed) to keep until the
    /// container's leaves are really removed, which may be after the call (`ahead.rs`); gives it
    /// back when the container does not need it (it has one from when its leaves were made).
    fn keep_registration(
        &mut self,
        registration: super::Registration,
    ) -> Option<super::Registration> {
        Some(registration)
    }

    /// The supervisor's idle time (after the release, before it waits): removes leaves left
    /// behind by earlier calls and prepares the next call's (`ahead.rs`), registering them with
    /// `register`.
    fn work_ahead(&mut self, _register: super::Register<'_>) {}

    /// Whether the child must wait for [`CallContainer::adopt`] before it may run user code. A
    /// backend whose membership the child establishes itself (its own process group) answers
    /// false, and the child is released before the fork, saving a round trip per call.
    fn child_waits_for_adoption(&self) -> bool {
        true
    }

    /// What the guard must kill and remove should the caller die during the call (see
    /// `crate::guard`). The default is the call's process group, learnt after the fork.
    fn remains(&self) -> super::Remains {
        super::Remains::process_group()
    }

    /// Measures the call now. `main` says whether the call's first process is still unreaped.
    fn sample(&mut self, main: MainProcess) -> Sample;

    /// High-water mark of memory charged to the call, when the backend measures it.
    fn memory_peak(&mut self) -> Option<u64>;

    /// How many processes of the call the kernel OOM killer killed.
    fn oom_kills(&mut self) -> u64;

    /// How many forks the kernel refused because of the process limit.
    fn processes_refused(&mut self) -> u64;

    /// Sends `signal` to every process of the call (used for the soft signal of a grace period).
    fn signal_all(&mut self, signal: i32);

    /// SIGKILLs every process of the call and waits (bounded) until none is alive. Returns how many
    /// processes other than the main process it found alive and killed. The main process is
    /// reaped by the supervisor, not here.
    fn kill_all(&mut self, main: MainProcess) -> Result<u64, Error>;

    /// When the call's only process is `main` (a completed closure's child, about to exit):
    /// SIGKILLs it now without waiting for it to end, and answers true. The outcome of a
    /// completed closure is then taken at its result; waiting for the exit (`kill_all`, reaping,
    /// `close`) is left behind (`supervise/behind.rs`). False, and nothing sent, when other
    /// processes are left (they must be dead when the call returns, so the call ends at its exit
    /// as before) or the backend cannot tell cheaply: the process-group fallback would need a
    /// `/proc` walk, which costs more than the exit it would save.
    fn kill_lone_main(&mut self, _main: Pid) -> bool {
        false
    }

    /// Total CPU time at the end of the call, read after everything is dead (cgroup backends), or
    /// `None` to let the supervisor use the main process's rusage.
    fn final_cpu(&mut self) -> Option<CpuTime>;

    /// Removes whatever the container created (a cgroup leaf). Called once, after `kill_all`.
    fn close(&mut self) -> Result<(), Error>;

    /// Instead of `kill_all`: the processes still in the container are to outlive the call
    /// ([`crate::Limits::keep_descendants`]); `close` then leaves a leaf that holds any.
    fn keep_processes(&mut self) {}
}
