//! Starting a call: the child is forked (or cloned) with everything prepared before, placed in
//! its container, registered with the guard and released. [`Started`] is the call from then on;
//! dropping it kills, reaps and cleans up, which makes it the one way out of every call that did
//! not finish normally.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::process::Pid;

use super::drain::{BoundedCapture, OutputPipe, StdinFeed};
use super::reaping::Reaping;
use crate::contain::{self, CallContainer, MainProcess};
use crate::guard;
use crate::launch::{child_main, reaper_main, ChildFds, ChildPlan, ReaperFds, ReleaseRecord};
use crate::sys;
use crate::{Error, Limits, MemoryLimitKind, Stdin, Weakness};

/// Size of the window kept of a stderr that is only watched for an allocation failure.
const DIAGNOSTIC_WINDOW: usize = 8 * 1024;

/// A child that has been forked, adopted by its container and released.
///
/// Dropping it is the one way out of every call that did not finish normally (an error in the
/// supervisor, a panicking [`Observer`], an unwaited [`crate::Running`]): it kills the whole call,
/// reaps the main process and removes the container, on every backend.
pub(crate) struct Started {
    /// The main process's pid, which is also the call's process group id (that outlives the
    /// main process while any member of the group is alive).
    pub(super) pid: Pid,
    pub(super) pidfd: OwnedFd,
    pub(super) reaping: Reaping,
    /// The main process has been reaped (its pid is no longer the call's).
    pub(super) reaped: bool,
    /// The container has been closed.
    pub(super) closed: bool,
    pub(super) released_at: Instant,
    pub(super) container: Box<dyn CallContainer>,
    pub(super) limits: Limits,
    pub(super) program: String,
    pub(super) is_closure: bool,
    pub(super) wants_result: bool,
    pub(super) memory_limit_kind: Option<MemoryLimitKind>,
    pub(super) weaknesses: Vec<Weakness>,
    pub(super) stdout: Option<OutputPipe>,
    pub(super) stderr: Option<OutputPipe>,
    /// Whether stderr is read only to spot an allocation failure (then it is not reported).
    pub(super) stderr_diagnostic_only: bool,
    pub(super) result: Option<OwnedFd>,
    pub(super) stdin: Option<StdinFeed>,
    pub(super) setup_error: OwnedFd,
    /// The call's registration with the guard: dropped (the guard told the call is over) after
    /// the container is closed, so it is the last field.
    pub(super) _guard: Option<contain::Registration>,
}

impl Started {
    /// The main process's pid (also after it has been reaped: then it names the call's
    /// process group, or nothing).
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// The main process for the container: its pid only while it is not reaped.
    pub(super) fn main(&self) -> MainProcess {
        if self.reaped {
            MainProcess::Reaped
        } else {
            MainProcess::Unreaped(self.pid)
        }
    }

    /// The main process's pidfd: readable once it has exited.
    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// When the wall-time limit falls due, if there is one.
    pub(crate) fn wall_deadline(&self) -> Option<Instant> {
        self.limits.wall_time.map(|w| self.released_at + w)
    }

    /// Ends an unwaited call: kill everything, reap, clean up (what dropping it does).
    pub(crate) fn abandon(self) {
        drop(self);
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.container.kill_all(self.main());
            // As in `Loop::kill`: the main process may not be in its leaf yet.
            let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
            let _ = self.reaping.reap(self.pid.as_raw_pid());
            self.reaped = true;
        }
        if !self.closed {
            let _ = self.container.kill_all(MainProcess::Reaped);
            let _ = self.container.close();
            self.closed = true;
        }
    }
}

fn output_pipe(
    fd: OwnedFd,
    limit: usize,
    forward: Option<BorrowedFd<'static>>,
) -> Result<OutputPipe, Error> {
    sys::set_pipe_nonblocking(fd.as_fd())
        .map_err(|e| Error::sys("configuring an output pipe", e))?;
    Ok(OutputPipe {
        fd: Some(fd),
        capture: BoundedCapture::new(limit),
        forward,
    })
}

/// Forks the child, places it in its container, and releases it.
pub(crate) fn start(limits: &Limits, plan: ChildPlan<'_>) -> Result<Started, Error> {
    fork_call(limits, plan, false).map(|(started, _)| started)
}

/// Forks the child, places it in its container and releases it. With `park` (a plan with a
/// `prepare` step) that first release only lets it prepare: the release pipe's write end is
/// returned, with the record of these limits, and `super::park` writes the call's record at
/// hand-off.
pub(super) fn fork_call(
    limits: &Limits,
    mut plan: ChildPlan<'_>,
    park: bool,
) -> Result<(Started, Option<(OwnedFd, ReleaseRecord)>), Error> {
    sys::check_pidfd_open().map_err(Error::pidfd_open)?;
    let mut container = contain::open(limits)?;
    let memory_by_container = limits.memory.is_some()
        && limits.memory_kind != MemoryLimitKind::AddressSpace
        && container.enforces_memory();
    let memory_sampled = limits.memory.is_some()
        && !memory_by_container
        && limits.memory_kind == MemoryLimitKind::Auto
        && container.samples_memory();
    if memory_sampled && plan.is_closure() {
        // The forked child starts with the caller's anonymous pages: not the call's memory.
        if let Some((_, resident)) = sys::own_memory() {
            container.set_inherited_memory(resident);
        }
    }
    if !memory_by_container {
        plan.rlimit_as = match (limits.memory, memory_sampled) {
            (Some(limit), true) => Some(address_space_backstop(limit, plan.is_closure())),
            (limit, _) => limit,
        };
    }
    let memory_limit_kind = limits.memory.map(|_| {
        if memory_by_container {
            MemoryLimitKind::Resident
        } else if memory_sampled {
            MemoryLimitKind::Sampled
        } else {
            MemoryLimitKind::AddressSpace
        }
    });
    let weaknesses = Weakness::of(
        limits,
        &container.containment().guarantees,
        memory_limit_kind,
    );
    if limits.strict && !weaknesses.is_empty() {
        let _ = container.close();
        return Err(Error::NotEnforceable {
            backend: container.containment().backend.name(),
            weaknesses,
        });
    }

    // Every fallible step on the parent's ends happens before the fork, so that no error can
    // leave a forked child behind.
    let single_threaded_caller = plan.single_threaded_caller;
    let pipe = |what| sys::pipe_cloexec(!single_threaded_caller).map_err(|e| Error::sys(what, e));
    // When the kernel reaps the caller's children by itself (SIGCHLD ignored), a reaper of our
    // own stands between us and the call's process, to keep its exit status (`launch/reaper.rs`).
    let needs_reaper = sys::children_are_auto_reaped();
    // A program is created in its cgroup when the backend allows it (and no reaper stands
    // between); any other child joins by itself when the backend offers that.
    let born_in_cgroup = plan.exec.is_some() && !needs_reaper && container.birth_cgroup().is_some();
    if !born_in_cgroup {
        plan.join_cgroups(container.self_join_fds());
    }
    let child_joins_itself = !plan.join_fds.is_empty();
    let released_before_fork = !container.child_waits_for_adoption() || child_joins_itself;
    let record = plan.release_record();
    // A child released before the fork finds its record in memory and needs no release pipe; a
    // parked child does (its call's record comes at hand-off), and so does one that waits to be
    // adopted.
    let record_in_memory = released_before_fork && !park;
    let (release_read, release_write) = if record_in_memory {
        (None, None)
    } else {
        let (r, w) = pipe("creating the release pipe")?;
        (Some(r), Some(w))
    };
    // The child writes at most one 8-byte report into it: both ends may be non-blocking.
    let (error_read, error_write) = sys::pipe_cloexec_nonblocking(!single_threaded_caller)
        .map_err(|e| Error::sys("creating the set-up error pipe", e))?;
    let (stdout, stdout_child) = if limits.capture_output {
        let (r, w) = pipe("creating the stdout pipe")?;
        (Some(output_pipe(r, limits.output_limit, None)?), Some(w))
    } else {
        (None, None)
    };
    // A Rust closure that hits RLIMIT_AS aborts after printing to stderr; watch stderr for that
    // even when not capturing (forwarding it to the caller's stderr).
    let watch_stderr = plan.is_closure() && plan.rlimit_as.is_some();
    let stderr_diagnostic_only = !limits.capture_output;
    let (stderr, stderr_child) = if limits.capture_output || watch_stderr {
        let (r, w) = pipe("creating the stderr pipe")?;
        let reader = if stderr_diagnostic_only {
            // SAFETY: fd 2 outlives the call (it is the process's stderr).
            let caller_stderr = unsafe { BorrowedFd::borrow_raw(2) };
            output_pipe(r, DIAGNOSTIC_WINDOW, Some(caller_stderr))?
        } else {
            output_pipe(r, limits.output_limit, None)?
        };
        (Some(reader), Some(w))
    } else {
        (None, None)
    };
    let (result_pipe, result_child) = if plan.wants_result {
        let (r, w) = pipe("creating the result pipe")?;
        sys::set_pipe_nonblocking(r.as_fd())
            .map_err(|e| Error::sys("configuring the result pipe", e))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (stdin_feed, stdin_child) = match &plan.stdin {
        Stdin::Inherit => (None, None),
        Stdin::Null => {
            let null = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| Error::sys("opening /dev/null", e))?;
            (None, Some(null))
        }
        Stdin::Bytes(bytes) => {
            let (r, w) = pipe("creating the stdin pipe")?;
            sys::set_pipe_nonblocking(w.as_fd()).map_err(|e| Error::sys("configuring stdin", e))?;
            (
                Some(StdinFeed {
                    fd: Some(w),
                    bytes: bytes.clone(),
                    written: 0,
                }),
                Some(r),
            )
        }
    };
    let program = plan
        .exec
        .as_ref()
        .map_or_else(|| "closure".to_string(), |e| e.display.clone());
    let is_closure = plan.is_closure();
    let wants_result = plan.wants_result;
    let reaper_pipes = if needs_reaper {
        let (report_read, report_write) = pipe("creating the reaper's report pipe")?;
        let (go_read, go_write) = pipe("creating the reaper's go pipe")?;
        Some((report_read, report_write, go_read, go_write))
    } else {
        None
    };
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(|f| f.as_raw_fd());
    let output_end = |pipe: &Option<OutputPipe>| {
        pipe.as_ref()
            .and_then(|p| p.fd.as_ref())
            .map_or(-1, |f| f.as_raw_fd())
    };
    let (stdout_end, stderr_end) = (output_end(&stdout), output_end(&stderr));
    // Tell the guard what to kill should the caller die (one-way, before the fork: a child born
    // into or joining its cgroup is covered from its first instruction).
    let remains = container.remains();
    let ticket = guard::register(remains.clone());
    // On the process-group backend the child tells the guard its group itself, before it runs
    // anything else (no wait for the parent).
    let guard_group = ticket
        .as_ref()
        .filter(|_| remains.needs_process_group())
        .map(|t| t.group_message());
    let fds = ChildFds {
        release_read: raw(&release_read).unwrap_or(-1),
        released: record_in_memory.then_some(record),
        error_write: error_write.as_raw_fd(),
        stdin: raw(&stdin_child),
        stdout: raw(&stdout_child),
        stderr: raw(&stderr_child),
        result: raw(&result_child),
        supervisor_ends: [
            raw(&release_write).unwrap_or(-1),
            error_read.as_raw_fd(),
            result_pipe.as_ref().map_or(-1, |f| f.as_raw_fd()),
            stdout_end,
            stderr_end,
            stdin_feed
                .as_ref()
                .and_then(|s| s.fd.as_ref())
                .map_or(-1, |f| f.as_raw_fd()),
        ],
        others_in_flight: !single_threaded_caller,
        parent_pid: rustix::process::getpid().as_raw_nonzero().get(),
        die_with_parent: !ticket.as_ref().is_some_and(|t| t.guard_running()),
        guard_group,
    };

    if let (true, Some(release)) = (released_before_fork, &release_write) {
        rustix::io::write(release, &record.encode())
            .map_err(|e| Error::sys("releasing the child", e))?;
    }
    // A child released before the fork may run as soon as it exists: its wall clock starts
    // before the fork. (Taken after it, the clock of a program created with `CLONE_VFORK` would
    // start only when this thread gets its CPU back after the child's execve; on a busy machine
    // the program may have run for a while by then, 0.6 ms in a trace, time it got on top of its
    // limit.)
    let fork_started = Instant::now();
    let (forked, born_inside) = if plan.exec.is_some() {
        // A program (or its reaper) is created without glibc's fork bookkeeping, directly in its
        // cgroup when the backend allows it and there is no reaper.
        let birth = container
            .birth_cgroup()
            .filter(|_| !child_joins_itself && reaper_pipes.is_none());
        if birth.is_none() && reaper_pipes.is_none() && released_before_fork {
            // A program that waits for nothing of ours shares our memory until its execve, as
            // with posix_spawn: no page table is copied, and no page we write later faults.
            let mut run = || {
                // SAFETY: we are the child (sharing the caller's memory, its thread suspended
                // until our execve or exit): `child_main` writes only its own stack, makes only
                // async-signal-safe calls, resets the caught signals before unblocking any, and
                // ends in execve or _exit (the plan is a program's, with its release record
                // in memory: nothing to wait for).
                unsafe { child_main(&mut plan, &fds) }
            };
            // SAFETY: as above.
            (unsafe { sys::spawn_shared(&mut run) }.unwrap_or(-1), false)
        } else {
            // SAFETY: in the child, clone_quiet is followed only by `child_main`'s
            // async-signal-safe set-up and execve.
            match birth.map(|dir| unsafe { sys::clone_quiet(Some(dir)) }) {
                Some(Ok(pid)) => (pid, true),
                // SAFETY: as above.
                _ => (unsafe { sys::clone_quiet(None) }.unwrap_or(-1), false),
            }
        }
    } else {
        // The child is a copy of this process, std's stdout buffer included: what the caller
        // printed without a newline would come out a second time with the child's exit flush.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: fork(2) has no memory-safety preconditions by itself; in the child we only call
        // `child_main` (or the reaper, which forks once more and then calls it), async-signal-safe
        // up to the closure the caller vouched for.
        (unsafe { libc::fork() }, false)
    };
    if forked < 0 {
        return Err(Error::sys("fork", std::io::Error::last_os_error()));
    }
    if forked == 0 {
        match &reaper_pipes {
            // SAFETY: we are the child, right after glibc's fork.
            Some((report_read, report_write, go_read, go_write)) => unsafe {
                let pipes = ReaperFds {
                    report_read: report_read.as_raw_fd(),
                    report_write: report_write.as_raw_fd(),
                    go_read: go_read.as_raw_fd(),
                    go_write: go_write.as_raw_fd(),
                };
                reaper_main(&mut plan, &fds, pipes)
            },
            // SAFETY: we are the child, right after fork.
            None => unsafe { child_main(&mut plan, &fds) },
        }
    }
    if released_before_fork && reaper_pipes.is_none() && !park {
        // The child may be queued on this CPU (the other CPUs busy, or the scheduler keeping a
        // fork near its parent): then everything we do until the supervisor sleeps in its poll
        // (pidfd, adoption, the idle-time work of the next call's leaves) delays it. It needs
        // nothing more from us, so it goes first; with a CPU free elsewhere this returns at once.
        rustix::thread::sched_yield();
    }
    drop(plan);
    drop((
        release_read,
        error_write,
        stdout_child,
        stderr_child,
        result_child,
        stdin_child,
    ));

    let (pid, mut reaping) = match reaper_pipes {
        None => (forked, Reaping::Direct),
        Some((report, report_write, go_read, go)) => {
            drop((report_write, go_read));
            match Reaping::announced_pid(&report) {
                Ok(pid) => (
                    pid,
                    Reaping::Reaper {
                        pid: forked,
                        go: Some(go),
                        report,
                    },
                ),
                Err(e) => {
                    let _ = sys::wait4_blocking(forked);
                    let _ = container.close();
                    return Err(Error::sys("fork (in the call's reaper)", e));
                }
            }
        }
    };
    let give_up = |container: &mut Box<dyn CallContainer>, reaping: &mut Reaping, err: Error| {
        sys::kill_pid(pid, libc::SIGKILL);
        let _ = reaping.reap(pid);
        let _ = container.close();
        err
    };
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => return Err(give_up(&mut container, &mut reaping, Error::pidfd_open(e))),
    };
    if !born_inside && !child_joins_itself {
        if let Err(e) = container.adopt(pid) {
            return Err(give_up(&mut container, &mut reaping, e));
        }
    }
    // Release the child: from here on it runs inside its container.
    if let (false, Some(release)) = (released_before_fork, &release_write) {
        if let Err(e) = rustix::io::write(release, &record.encode()) {
            return Err(give_up(
                &mut container,
                &mut reaping,
                Error::sys("releasing the child", e),
            ));
        }
    }
    let released_at = if released_before_fork {
        fork_started
    } else {
        Instant::now()
    };
    let parked_release = release_write
        .filter(|_| park)
        .map(|release| (release, record));
    if let Some(ticket) = &ticket {
        ticket.start_guard();
    }
    // Leaves whose removal is deferred stay registered until they are gone.
    let ticket = ticket.and_then(|t| container.keep_registration(Box::new(t)));
    // Idle time while the child runs: the next call's leaves, the last call's rmdirs.
    container.work_ahead(&|remains| {
        guard::register(remains).map(|t| Box::new(t) as contain::Registration)
    });

    let started = Started {
        // `fork`/`clone` returned a pid (neither an error nor 0, checked above), and the reaper's
        // announced pid is positive (`Reaping::announced_pid`).
        pid: Pid::from_raw(pid).expect("a forked child's pid is positive"),
        pidfd,
        reaping,
        reaped: false,
        closed: false,
        released_at,
        container,
        limits: limits.clone(),
        program,
        is_closure,
        wants_result,
        memory_limit_kind,
        weaknesses,
        stdout,
        stderr,
        stderr_diagnostic_only,
        result: result_pipe,
        stdin: stdin_feed,
        setup_error: error_read,
        _guard: ticket,
    };
    Ok((started, parked_release))
}

/// `RLIMIT_AS` behind a memory limit enforced by sampling: only a backstop against an allocation
/// faster than the sampling, so generous — 8 × the limit, at least the limit + 2 GiB — and on top
/// of the address space a forked closure inherits from its caller (thread stacks, arenas and
/// reservations it never touches), which must not eat the call's headroom. A program's `exec`
/// starts from an empty address space.
fn address_space_backstop(limit: u64, inherits_address_space: bool) -> u64 {
    let headroom = limit.saturating_mul(8).max(limit.saturating_add(2 << 30));
    let inherited = if inherits_address_space {
        sys::own_memory().map_or(0, |(size, _)| size)
    } else {
        0
    };
    headroom.saturating_add(inherited)
}
