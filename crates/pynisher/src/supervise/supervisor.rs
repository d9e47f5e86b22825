//! The supervisor: waits on the started child's pidfd (`start.rs`) with `poll` and monotonic
//! deadlines, reading every pipe while it waits. **This is where a kill is decided**
//! (`Loop::record`): the reason is recorded first, then the soft signal or SIGKILL is sent.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use super::behind::{self, Behind};
use super::classify::{classify, Facts};
use super::start::Started;
use crate::contain::Sample;
use crate::sys;
use crate::transport::{FrameReader, Received};
use crate::{
    CpuMeasure, CpuTime, Error, Limits, MemoryLimitKind, MemoryMeasure, Observer, Outcome,
    Progress, Status,
};

/// The text Rust's default allocation-error handler prints before it aborts.
const ALLOC_FAILURE_TEXT: &str = "memory allocation of ";

/// The state of one supervision loop.
struct Loop {
    recorded: Option<Status>,
    soft_signal_sent: Option<i32>,
    grace_deadline: Option<Instant>,
    killed: bool,
    last_sample: Sample,
}

impl Loop {
    /// Records why the call must end, then acts: the soft signal and a grace deadline for a time
    /// limit with a grace period, SIGKILL to the whole call otherwise. The first reason wins.
    fn record(&mut self, reason: Status, started: &mut Started, now: Instant) -> Result<(), Error> {
        if self.recorded.is_some() {
            return Ok(());
        }
        let soft = match reason {
            Status::WallTimeout => {
                Some(started.limits.wall_signal.unwrap_or(if started.is_closure {
                    libc::SIGALRM
                } else {
                    libc::SIGTERM
                }))
            }
            Status::CpuTimeout => {
                Some(started.limits.cpu_signal.unwrap_or(if started.is_closure {
                    libc::SIGXCPU
                } else {
                    libc::SIGTERM
                }))
            }
            _ => None,
        };
        self.recorded = Some(reason);
        match soft {
            Some(signal) if !started.limits.grace_period.is_zero() => {
                started.container.signal_all(signal);
                self.soft_signal_sent = Some(signal);
                self.grace_deadline = Some(now + started.limits.grace_period);
                Ok(())
            }
            _ => self.kill(started),
        }
    }

    fn kill(&mut self, started: &mut Started) -> Result<(), Error> {
        self.killed = true;
        self.grace_deadline = None;
        let killed = started.container.kill_all(started.main()).map(|_| ());
        // The main process may still be on its way into its leaf (a closure child joins it
        // itself after the release), where the container's kill cannot see it: reach it through
        // its pidfd as well (not reaped yet, so it cannot be another process).
        let _ = rustix::process::pidfd_send_signal(&started.pidfd, rustix::process::Signal::KILL);
        killed
    }
}

/// The fastest a call is assumed to grow its resident memory (page faults on a few CPUs); a
/// sampled memory limit is sampled at least this often for what is left under the limit.
const FASTEST_MEMORY_GROWTH: f64 = 8.0 * (1u64 << 30) as f64;
/// The longest time between two samples of a sampled memory limit.
const LONGEST_MEMORY_SAMPLE: Duration = Duration::from_millis(100);

/// How long until the next CPU / process-count / memory sample. `memory_now` is the last sample
/// of a sampled memory limit (0 before the first), `None` when memory is not sampled.
fn sample_interval(
    limits: &Limits,
    container_counts_processes: bool,
    memory_now: Option<u64>,
    used: Duration,
) -> Option<Duration> {
    let mut interval: Option<Duration> = None;
    if let (Some(now), Some(limit)) = (memory_now, limits.memory) {
        // Like the CPU budget: sample no later than the call could fill what is left under the
        // limit at full speed, but never more often than the configured interval. Far below the
        // limit that is rare (cheap); near it, every interval.
        let left = limit.saturating_sub(now) as f64 / FASTEST_MEMORY_GROWTH;
        let floor = limits.memory_sample_interval;
        interval = Some(
            Duration::from_secs_f64(left.min(10.0)).clamp(floor, LONGEST_MEMORY_SAMPLE.max(floor)),
        );
    }
    if limits.max_processes.is_some() && !container_counts_processes {
        let every = Duration::from_millis(10);
        interval = Some(interval.map_or(every, |i| i.min(every)));
    }
    if let Some(limit) = limits.cpu_time {
        // The call cannot burn its remaining budget faster than on every CPU at once; sampling at
        // that pace keeps the overshoot within one short period and never fires early.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let remaining = limit.saturating_sub(used) / cpus;
        let cpu = remaining.clamp(Duration::from_millis(1), Duration::from_millis(50));
        interval = Some(interval.map_or(cpu, |i| i.min(cpu)));
    }
    interval
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the result pipe can rest until the main process exits: a closure's child writes its
/// one frame right before it exits, so once the frame is whole, a wake-up for the pipe's end of
/// file (just before the exit's) would only cost a round through `poll`. Whatever follows the
/// frame is still read, and refused, when the call is drained.
fn result_complete(started: &Started, result: &FrameReader) -> bool {
    started.is_closure && result.is_complete()
}

/// Bytes of the read buffer on the supervisor's stack: a whole small result frame (a value of
/// up to `launch::closure::INLINE` bytes and its header) fits.
const SMALL_READ: usize = 512;
/// Bytes of the thread's large read buffer.
const LARGE_READ: usize = 64 * 1024;

thread_local! {
    /// One large read buffer per thread, kept across calls: allocating and zeroing 64 KiB per call
    /// cost more than the rest of a trivial call.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where the supervisor reads pipes into: a small buffer on its stack while that is enough (a call
/// with no captured output whose result is small: after a fork, every page the caller writes
/// faults, and the stack's page is written anyway, the thread's buffer and its slot are not), the
/// thread's large one from the first read that fills the small one, or from the start when output
/// is captured.
struct ReadBuffer {
    small: [u8; SMALL_READ],
    large: Option<Vec<u8>>,
}

impl ReadBuffer {
    fn new(large_now: bool) -> Self {
        let mut buffer = ReadBuffer {
            small: [0; SMALL_READ],
            large: None,
        };
        if large_now {
            buffer.grow();
        }
        buffer
    }

    fn get(&mut self) -> &mut [u8] {
        match &mut self.large {
            Some(large) => large,
            None => &mut self.small,
        }
    }

    /// After a read of `n` bytes: a read that filled the small buffer calls for the large one.
    fn after_read(&mut self, n: usize) {
        if self.large.is_none() && n == SMALL_READ {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let mut large = READ_BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if large.len() < LARGE_READ {
            large = vec![0u8; LARGE_READ];
        }
        self.large = Some(large);
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        if let Some(large) = self.large.take() {
            READ_BUFFER.with(|b| *b.borrow_mut() = large);
        }
    }
}

/// Reads whatever the pipes hold now.
fn read_pipes(started: &mut Started, result: &mut FrameReader, buffer: &mut ReadBuffer) {
    for pipe in [started.stdout.as_mut(), started.stderr.as_mut()]
        .into_iter()
        .flatten()
    {
        pipe.read_available(buffer.get());
    }
    if let Some(fd) = started.result.as_ref() {
        loop {
            let buf = buffer.get();
            match rustix::io::read(fd.as_fd(), &mut *buf) {
                Ok(0) => {
                    started.result = None;
                    break;
                }
                Ok(n) => {
                    result.push(&buf[..n]);
                    buffer.after_read(n);
                    if result.rejected().is_some() {
                        // Not a frame we will accept: stop reading (the loop ends the call).
                        started.result = None;
                        break;
                    }
                    if result_complete(started, result) {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    started.result = None;
                    break;
                }
            }
        }
    }
}

/// Supervises a started call until it ends; returns its outcome with the raw result bytes.
pub(crate) fn supervise(
    started: Started,
    observer: &mut dyn Observer,
) -> Result<Outcome<Vec<u8>>, Error> {
    supervise_ending(started, observer, false).map(|(outcome, _)| outcome)
}

/// Like [`supervise`], but a closure that completes is given its outcome at its result, its exit
/// and cleanup left to the returned [`Behind`] (`behind.rs`); any other call ends as with
/// [`supervise`] (with nothing behind).
pub(crate) fn supervise_result_first(
    started: Started,
    observer: &mut dyn Observer,
) -> Result<(Outcome<Vec<u8>>, Behind), Error> {
    supervise_ending(started, observer, true)
}

fn supervise_ending(
    started: Started,
    observer: &mut dyn Observer,
    result_first: bool,
) -> Result<(Outcome<Vec<u8>>, Behind), Error> {
    let captures = started.stdout.is_some() || started.stderr.is_some();
    let mut buffer = ReadBuffer::new(captures);
    supervise_with_buffer(started, observer, &mut buffer, result_first)
}

fn supervise_with_buffer(
    mut started: Started,
    observer: &mut dyn Observer,
    buf: &mut ReadBuffer,
    result_first: bool,
) -> Result<(Outcome<Vec<u8>>, Behind), Error> {
    let mut state = Loop {
        recorded: None,
        soft_signal_sent: None,
        grace_deadline: None,
        killed: false,
        last_sample: Sample::default(),
    };
    let mut result = FrameReader::with_limit(started.limits.result_limit);
    let start = started.released_at;
    let wall_deadline = started.limits.wall_time.map(|w| start + w);
    let counts_processes = started.container.enforces_processes();
    let samples_memory = started.memory_limit_kind == Some(MemoryLimitKind::Sampled);
    let mut next_sample = sample_interval(
        &started.limits,
        counts_processes,
        samples_memory.then_some(0),
        Duration::ZERO,
    )
    .map(|i| start + i);
    let mut next_observe = observer.interval().map(|i| start + i);
    let mut at_result = result_first && behind::possible(&started);

    let ended_at = loop {
        let now = Instant::now();
        let mut wake = min_instant(next_sample, next_observe);
        if state.recorded.is_none() {
            wake = min_instant(wake, wall_deadline);
        }
        wake = min_instant(wake, state.grace_deadline);
        let timeout = wake.map(|w| w.saturating_duration_since(now));

        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        fds.push(PollFd::new(&started.pidfd, PollFlags::IN));
        for pipe in [started.stdout.as_ref(), started.stderr.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(fd) = pipe.fd.as_ref() {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
        }
        if let Some(fd) = started
            .result
            .as_ref()
            .filter(|_| !result_complete(&started, &result))
        {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        if let Some(fd) = started.stdin.as_ref().and_then(|s| s.fd.as_ref()) {
            fds.push(PollFd::new(fd, PollFlags::OUT));
        }
        // The observer's wake-up (a cancel, a signal) is watched until a reason is recorded.
        let wake_fd = observer.wake_fd().filter(|_| state.recorded.is_none());
        let wake_index = fds.len();
        if let Some(fd) = wake_fd.as_ref() {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let main_exited = !fds[0].revents().is_empty();
        let woken = fds
            .get(wake_index)
            .is_some_and(|fd| !fd.revents().is_empty());
        drop(fds);
        let now = Instant::now();

        read_pipes(&mut started, &mut result, buf);
        if let Some(feed) = started.stdin.as_mut() {
            let _ = feed.write_available();
        }
        if main_exited {
            break now;
        }
        if at_result
            && state.recorded.is_none()
            && result.is_complete()
            && result.rejected().is_none()
        {
            // Completed: whatever it wrote to a diagnostic stderr before its frame is forwarded
            // now, ahead of the outcome; the rest waits behind.
            if let Some(pipe) = started.stderr.as_mut() {
                pipe.read_available(buf.get());
            }
            match behind::outcome_at_result(&mut started, result, now) {
                Ok(outcome) => return Ok((outcome, Behind::of(started))),
                Err(back) => {
                    result = back;
                    at_result = false;
                }
            }
        }
        if let Some(reason) = result.rejected() {
            if state.recorded.is_none() {
                let reason = format!("the result channel was refused: {reason}");
                state.record(Status::ResultUndecodable { reason }, &mut started, now)?;
            }
        }

        if woken && observer.should_cancel() && state.recorded.is_none() {
            state.record(Status::Cancelled, &mut started, now)?;
        }
        if state.recorded.is_none() && wall_deadline.is_some_and(|d| now >= d) {
            state.record(Status::WallTimeout, &mut started, now)?;
        }
        if next_sample.is_some_and(|t| now >= t) {
            let sample = started.container.sample(started.main());
            let used = sample.cpu.map_or(Duration::ZERO, |c| c.total());
            if let (Some(limit), None) = (started.limits.cpu_time, &state.recorded) {
                if used >= limit {
                    state.record(Status::CpuTimeout, &mut started, now)?;
                }
            }
            if let (Some(max), Some(live), false) = (
                started.limits.max_processes,
                sample.live_processes,
                counts_processes,
            ) {
                if live > max && state.recorded.is_none() {
                    state.record(Status::ProcessLimit, &mut started, now)?;
                }
            }
            if let (Some(limit), Some(memory), true) =
                (started.limits.memory, sample.memory_current, samples_memory)
            {
                if memory >= limit && state.recorded.is_none() {
                    state.record(Status::MemoryLimit, &mut started, now)?;
                }
            }
            state.last_sample = sample;
            next_sample = if state.killed {
                None
            } else {
                let memory_now = samples_memory.then(|| sample.memory_current.unwrap_or(0));
                sample_interval(&started.limits, counts_processes, memory_now, used)
                    .map(|i| now + i)
            };
        }
        if next_observe.is_some_and(|t| now >= t) {
            if next_sample.is_none() {
                state.last_sample = started.container.sample(started.main());
            }
            observer.progress(&Progress {
                elapsed: now - start,
                cpu: state.last_sample.cpu,
                memory: state.last_sample.memory_current,
                processes: state.last_sample.live_processes,
            });
            if observer.should_cancel() && state.recorded.is_none() {
                state.record(Status::Cancelled, &mut started, now)?;
            }
            next_observe = observer.interval().map(|i| now + i);
        }
        if state.grace_deadline.is_some_and(|d| now >= d) && !state.killed {
            state.kill(&mut started)?;
        }
    };

    finish(started, state, result, ended_at, buf).map(|outcome| (outcome, Behind::none()))
}

/// After the main process ended: kill leftovers, drain (bounded), reap, measure, classify.
fn finish(
    mut started: Started,
    mut state: Loop,
    mut result: FrameReader,
    ended_at: Instant,
    buf: &mut ReadBuffer,
) -> Result<Outcome<Vec<u8>>, Error> {
    let pid = started.pid.as_raw_pid();
    // Reap the main process first: its rusage covers itself and what it reaped. From here on its
    // pid is not ours, so the container is told it is reaped.
    let reaped = started
        .reaping
        .reap(pid)
        .map_err(|e| Error::sys("reaping the call's main process", e));
    started.reaped = true;
    let reaped = reaped?;
    // One last look at what is left (CPU of leftovers), then kill them.
    let last = started.container.sample(started.main());
    // `keep_descendants`: a call that ended on its own (no limit, no cancellation recorded)
    // leaves its other processes running.
    let leftovers_killed = if started.limits.keep_descendants && state.recorded.is_none() {
        started.container.keep_processes();
        0
    } else {
        started.container.kill_all(started.main())?
    };
    state.killed |= leftovers_killed > 0;
    if sys::is_subreaper() {
        // The call's orphans were re-parented to us; those still in the call's process group are
        // ours to reap (the group id cannot be reused while they exist, even as zombies).
        sys::reap_group_zombies(pid);
    }

    // Read what is left; a descendant that escaped the kill may hold a pipe open, so bound it.
    let drain_deadline = Instant::now() + started.limits.drain_timeout;
    let mut drain_timed_out = false;
    loop {
        read_pipes(&mut started, &mut result, buf);
        let open: Vec<BorrowedFd<'_>> = [started.stdout.as_ref(), started.stderr.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| p.fd.as_ref().map(|f| f.as_fd()))
            .chain(started.result.as_ref().map(|f| f.as_fd()))
            .collect();
        if open.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= drain_deadline {
            drain_timed_out = true;
            break;
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let left = drain_deadline - now;
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::sys("poll", e)),
        }
    }

    let mut setup = [0u8; 8];
    let setup_error = match rustix::io::read(started.setup_error.as_fd(), &mut setup) {
        Ok(8) => Some((
            u32::from_le_bytes(setup[..4].try_into().expect("4 bytes")),
            i32::from_le_bytes(setup[4..].try_into().expect("4 bytes")),
        )),
        _ => None,
    };

    let (cpu_time, cpu_measure) = match started.container.final_cpu() {
        Some(cpu) => (cpu, CpuMeasure::Cgroup),
        None => {
            // The larger view wins: the main process's rusage (itself and what it reaped) plus
            // the leftovers seen after it exited, or the sample that decided a CPU limit
            // (processes killed since then were never reaped by a member of the call, so their
            // time is only there).
            let leftovers = last.cpu.unwrap_or_default();
            let at_exit = CpuTime {
                user: reaped.cpu.user + leftovers.user,
                system: reaped.cpu.system + leftovers.system,
            };
            let cpu = match state.last_sample.cpu {
                Some(decided) if decided.total() > at_exit.total() => decided,
                _ => at_exit,
            };
            (cpu, CpuMeasure::ProcessTree)
        }
    };
    started.container.record_main_max_rss(reaped.max_rss);
    let (peak_memory, memory_measure) = match started.container.memory_peak() {
        Some(peak) => (Some(peak), started.container.memory_measure()),
        None => (Some(reaped.max_rss), MemoryMeasure::MaxRssOfOneProcess),
    };
    let oom_kills = started.container.oom_kills();
    let processes_refused = started.container.processes_refused();
    let containment = started.container.containment();
    started.closed = true;
    started.container.close()?;

    let stdout = started.stdout.take().map(|p| p.capture.finish());
    let stderr_pipe = started.stderr.take();
    // Under a sampled limit the address-space backstop is the memory limit too.
    let allocation_failed = matches!(
        started.memory_limit_kind,
        Some(MemoryLimitKind::AddressSpace | MemoryLimitKind::Sampled)
    ) && reaped.signal == Some(libc::SIGABRT)
        && stderr_pipe
            .as_ref()
            .is_some_and(|p| p.capture.ends_with_text(ALLOC_FAILURE_TEXT));
    let stderr = if started.stderr_diagnostic_only {
        None
    } else {
        stderr_pipe.map(|p| p.capture.finish())
    };

    let received = if started.wants_result {
        result.finish()
    } else {
        Received::Nothing
    };
    let (status, value) = classify(Facts {
        recorded: state.recorded,
        setup_error,
        program: started.program.clone(),
        memory_limited: started.limits.memory.is_some(),
        oom_kills,
        processes_refused,
        allocation_failed,
        received,
        wants_result: started.wants_result,
        signal: reaped.signal,
    });

    Ok(Outcome {
        status,
        value,
        exit_code: reaped.exit_code,
        signal: reaped.signal,
        soft_signal_sent: state.soft_signal_sent,
        killed: state.killed,
        wall_time: ended_at - started.released_at,
        cpu_time: CpuTime {
            user: cpu_time.user,
            system: cpu_time.system,
        },
        cpu_measure,
        peak_memory,
        memory_measure,
        memory_limit_kind: started.memory_limit_kind,
        oom_kills,
        processes_refused,
        leftovers_killed,
        output_drain_timed_out: drain_timed_out,
        stdout,
        stderr,
        containment,
        weaknesses: std::mem::take(&mut started.weaknesses),
    })
}
