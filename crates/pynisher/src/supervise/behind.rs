//! A completed closure's outcome at its result, the exit and cleanup behind.
//!
//! A closure's child writes its result frame and `_exit(0)`s (`launch/closure.rs`). For a forked
//! interpreter the exit (tearing down a copied address space of tens of MiB) is the expensive
//! part of a trivial call. When the frame is whole and no reason is recorded, the call is
//! *completed*: [`outcome_at_result`] measures it from the container's counters, records the
//! completion, sends SIGKILL to the whole tree (not waiting for it) and gives the outcome; what
//! waits for the teardown — reaping the main process, the container's "wait until empty", the
//! subreaper's group zombies, the last of a diagnostic stderr, closing the leaf — is [`Behind`],
//! done by [`Behind::finish`] or, at the latest, by its `Drop`.
//!
//! Taken only where nothing is lost: a closure with a result channel, no captured output (that
//! needs end of file), no `keep_descendants`, a container that counts CPU itself and tells
//! without a `/proc` walk that the main process is the call's only one
//! ([`crate::contain::CallContainer::kill_lone_main`]: the cgroup backends) — other processes
//! must be dead when the call returns, so a call that left any ends at its exit as before.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags};

use super::classify::{classify, Facts};
use super::start::Started;
use crate::contain::MainProcess;
use crate::sys;
use crate::transport::FrameReader;
use crate::{CpuMeasure, MemoryMeasure, Outcome};

/// What is left of a call whose outcome was taken at its result: its main process to reap, its
/// container to empty and close. [`Behind::finish`] does that (blocking until the killed tree is
/// gone); dropping it does the same, so nothing can be forgotten.
///
/// Until then the call's main process (killed) may still exist, as a zombie of the caller once
/// its teardown ended.
#[must_use = "dropping it waits for the call's teardown; keep it to do that later"]
#[derive(Default)]
pub struct Behind {
    started: Option<Started>,
}

impl std::fmt::Debug for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behind")
            .field("pid", &self.started.as_ref().map(|s| s.pid.as_raw_pid()))
            .finish()
    }
}

impl Behind {
    /// Nothing left behind (the call ended at its exit, or it was a call supervised elsewhere).
    pub fn none() -> Self {
        Behind { started: None }
    }

    pub(super) fn of(started: Started) -> Self {
        Behind {
            started: Some(started),
        }
    }

    /// Whether there is still something to wait for.
    pub fn is_pending(&self) -> bool {
        self.started.is_some()
    }

    /// The pid of the call's main process while it is not reaped.
    pub fn pid(&self) -> Option<i32> {
        self.started.as_ref().map(|s| s.pid.as_raw_pid())
    }

    /// Reaps the killed main process, waits until the container is empty, reaps the call's
    /// orphans (when this process is a subreaper), forwards what is left of a diagnostic stderr
    /// and closes the container. Blocks for the teardown of the call's processes.
    pub fn finish(mut self) {
        if let Some(started) = self.started.take() {
            finish_behind(started);
        }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            finish_behind(started);
        }
    }
}

fn finish_behind(mut started: Started) {
    let pid = started.pid.as_raw_pid();
    let _ = started.reaping.reap(pid);
    started.reaped = true;
    let _ = started.container.kill_all(MainProcess::Reaped);
    if sys::is_subreaper() {
        sys::reap_group_zombies(pid);
    }
    if let Some(mut stderr) = started.stderr.take() {
        // Forwarded to the caller's stderr (diagnostic only); everything is dead now, so end of
        // file comes unless an escapee holds the pipe: bounded like the drain.
        let deadline = Instant::now() + started.limits.drain_timeout;
        let mut buf = [0u8; 4096];
        loop {
            stderr.read_available(&mut buf);
            let Some(fd) = stderr.fd.as_ref() else { break };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let fd: BorrowedFd<'_> = fd.as_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let _ = poll(&mut fds, Some(&ts));
        }
    }
    started.closed = true;
    let _ = started.container.close();
    // Dropping `started` now tells the guard the call is over.
}

/// Whether a call can be completed at its result (see the module's header).
pub(super) fn possible(started: &Started) -> bool {
    started.is_closure
        && started.wants_result
        && started.stdout.is_none()
        && (started.stderr.is_none() || started.stderr_diagnostic_only)
        && !started.limits.keep_descendants
}

/// The completed call's outcome, taken now that its result frame is whole and no reason is
/// recorded: measured, then killed (not waited for). `Err` (the frame handed back, nothing sent)
/// when the container cannot count CPU itself or the main process is not alone: the call then
/// ends at its exit.
pub(super) fn outcome_at_result(
    started: &mut Started,
    result: FrameReader,
    ended_at: Instant,
) -> Result<Outcome<Vec<u8>>, FrameReader> {
    // Measure first: the counters of a live call are final once its frame is written (its child
    // only exits after it).
    let Some(cpu_time) = started.container.final_cpu() else {
        return Err(result);
    };
    let (peak_memory, memory_measure) = match started.container.memory_peak() {
        Some(peak) => (Some(peak), started.container.memory_measure()),
        None => (
            peak_resident(started.pid.as_raw_pid()),
            MemoryMeasure::MaxRssOfOneProcess,
        ),
    };
    let oom_kills = started.container.oom_kills();
    let processes_refused = started.container.processes_refused();
    // The reason is the completion (the whole frame, nothing recorded); then the kill, sent
    // only when the main process is alone (what else is left must be dead when the call
    // returns: the call then ends at its exit, as before).
    if !started.container.kill_lone_main(started.pid) {
        return Err(result);
    }
    // As in `Loop::kill`: reach the main process through its pidfd too (not reaped: it is ours).
    let _ = rustix::process::pidfd_send_signal(&started.pidfd, rustix::process::Signal::KILL);
    let (status, value) = classify(Facts {
        recorded: None,
        // The child ran its closure: its set-up succeeded.
        setup_error: None,
        program: started.program.clone(),
        memory_limited: started.limits.memory.is_some(),
        oom_kills,
        processes_refused,
        allocation_failed: false,
        received: result.finish(),
        wants_result: true,
        signal: None,
    });
    // The diagnostic stderr is read in `Behind` (it is not reported).
    Ok(Outcome {
        status,
        value,
        // What the child exits with right after its frame (`launch/closure.rs`); the kill only
        // spares us waiting for that exit.
        exit_code: Some(0),
        signal: None,
        soft_signal_sent: None,
        killed: false,
        wall_time: ended_at - started.released_at,
        cpu_time,
        cpu_measure: CpuMeasure::Cgroup,
        peak_memory,
        memory_measure,
        memory_limit_kind: started.memory_limit_kind,
        oom_kills,
        processes_refused,
        leftovers_killed: 0,
        output_drain_timed_out: false,
        stdout: None,
        stderr: None,
        containment: started.container.containment(),
        weaknesses: std::mem::take(&mut started.weaknesses),
    })
}

/// The main process's peak resident memory (`VmHWM`), in bytes: what `wait4`'s `ru_maxrss` gives
/// for it at the exit.
fn peak_resident(pid: i32) -> Option<u64> {
    let text = sys::read_proc_text(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
