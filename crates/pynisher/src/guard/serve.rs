//! The guard's side: become the guard (fork once, so the guard is re-parented away from the
//! caller), then watch the caller and the message socket until the caller dies.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{RecvFlags, SendFlags};

use super::protocol::{Message, FLUSHED, HELLO_LEN};
use crate::contain::{destroy, remove_emptied, Remains};

/// The environment variable that makes [`serve_if_requested`] become the guard. The engine sets
/// it only in the guard program's environment.
pub const GUARD_ENV: &str = "PYNISHER_INTERNAL_GUARD";

/// How long a dead caller's process-group call may take to report its group.
const GROUP_WAIT: Duration = Duration::from_secs(1);

/// How often a leaf still busy after its call (`Remove`) is tried again: often at first (the
/// last process's teardown takes a moment), rarely after [`BUSY_FOR_LONG`].
const RETRY_SOON: Duration = Duration::from_millis(2);
const RETRY_LATER: Duration = Duration::from_millis(100);
const BUSY_FOR_LONG: Duration = Duration::from_secs(2);

/// What the guard holds: the calls not yet over, and the leaves of calls over that it has yet
/// to remove.
#[derive(Default)]
struct Held {
    calls: HashMap<u64, Remains>,
    /// Emptied leaves still busy, with when their removal was asked for.
    behind: Vec<(Remains, Instant)>,
}

impl Held {
    /// Tries the busy leaves again; how long to wait before the next try (`None`: no leaf).
    fn retry(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.behind.retain_mut(|(r, _)| !remove_emptied(r));
        let young = self
            .behind
            .iter()
            .any(|(_, since)| now.duration_since(*since) < BUSY_FOR_LONG);
        match (self.behind.is_empty(), young) {
            (true, _) => None,
            (false, true) => Some(RETRY_SOON),
            (false, false) => Some(RETRY_LATER),
        }
    }
}

impl Held {
    /// Waits (bounded by [`BUSY_FOR_LONG`]) until every leaf handed over is removed.
    fn finish_removals(&mut self) {
        let deadline = Instant::now() + BUSY_FOR_LONG;
        while self.retry().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Becomes this caller's guard if this process was started as one (the engine sets
/// [`GUARD_ENV`]), and never returns then; returns at once otherwise. A program that names
/// itself as the [`super::GuardProgram`] calls this first thing in `main`.
///
/// ```no_run
/// // First thing in `main`:
/// pynisher::guard::serve_if_requested();
/// pynisher::guard::install(pynisher::guard::GuardProgram::current_exe())?;
/// // ... calls ...
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_if_requested() {
    if std::env::var_os(GUARD_ENV).is_none() {
        return;
    }
    become_guard()
}

/// The guard program's part, in a process whose fd 0 is the guard's end of the socket and whose
/// parent is the caller (the program the caller ran, or a fork of the caller): forks the guard,
/// exits in the intermediate, and serves in the guard.
pub(super) fn become_guard() -> ! {
    // The caller gave us its end of the socket as stdin. Our parent is the caller, alive now
    // unless we were re-parented already; a pidfd opened while getppid() still names it is the
    // caller's for sure (its pid cannot be reused while we are its unreaped child).
    let caller_pid = rustix::process::getppid();
    let caller = caller_pid
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok())
        .filter(|_| rustix::process::getppid() == caller_pid);
    // SAFETY: fork(2) in a process that is single-threaded here (the guard program calls this
    // before it starts any thread, a forked caller had one thread); the child only continues
    // this function.
    match unsafe { libc::fork() } {
        0 => {}
        // SAFETY: _exit ends this intermediate process at once, without running anything else;
        // the caller waits for exactly that.
        pid => unsafe { libc::_exit(i32::from(pid < 0)) },
    }
    // Own session: a terminal's Ctrl-C or hang-up for the caller does not reach the guard.
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    yield_to_callers();
    // SAFETY: fd 0 is the socket the caller passed us and nothing else in this process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let _ = rustix::net::send(
        &socket,
        &pid.to_ne_bytes()[..HELLO_LEN],
        SendFlags::NOSIGNAL,
    );
    // A guard forked from its caller sweeps the stale leaves the caller's detection left to it.
    let sweeping = crate::contain::sweep_deferred();
    serve(socket.as_fd(), caller.as_ref().map(|c| c.as_fd()));
    if let Some(sweep) = sweeping {
        let _ = sweep.join();
    }
    // SAFETY: _exit ends the guard without running the host program's exit handlers (a Python
    // interpreter's, when the guard program is one).
    unsafe { libc::_exit(0) }
}

/// Makes the guard (and the threads it starts) a batch task: woken by a caller's message, it
/// no longer preempts the caller on the caller's CPU (a wake-up preemption put the guard's
/// `rmdir`s, ~75 µs, on every call's path on this 2-core VM); it still gets its fair share of
/// the CPU, so a dead caller's calls are ended as before.
fn yield_to_callers() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param on our stack; pid 0 is this thread. A failure
    // leaves the normal policy, which is only slower.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// Watches until the caller is gone, then ends every call still registered.
fn serve(socket: BorrowedFd<'_>, caller: Option<BorrowedFd<'_>>) {
    let mut held = Held::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut wait: Option<Duration> = None;
    if caller.is_some() {
        loop {
            let mut fds = vec![PollFd::new(&socket, PollFlags::IN)];
            if let Some(c) = caller.as_ref() {
                fds.push(PollFd::new(c, PollFlags::IN));
            }
            match poll(&mut fds, wait.map(timespec).as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
            let caller_gone = fds.get(1).is_some_and(|f| !f.revents().is_empty());
            let socket_ready = !fds[0].revents().is_empty();
            drop(fds);
            if socket_ready && !read_messages(socket, &mut held, &mut buf) {
                break;
            }
            wait = held.retry();
            if caller_gone {
                break;
            }
        }
    }
    // The caller is gone (or never was ours): what it queued before it died is still readable.
    read_messages(socket, &mut held, &mut buf);
    // A process-group call's child sends its group itself, right after the fork: one forked just
    // before the caller died may not have run yet. Wait for it (bounded: if the caller died
    // before forking, no message comes).
    let deadline = Instant::now() + GROUP_WAIT;
    while held
        .calls
        .values()
        .any(|r| r.needs_process_group() && r.pgid == 0)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(&socket, PollFlags::IN)];
        let _ = poll(
            &mut fds,
            Some(&timespec(left.min(Duration::from_millis(10)))),
        );
        if !read_messages(socket, &mut held, &mut buf) {
            break;
        }
    }
    for remains in held.calls.values() {
        destroy(remains);
    }
    // Emptied leaves still busy: waited for (and emptied, should anything have got in).
    for (remains, _) in &held.behind {
        destroy(remains);
    }
}

/// Applies every message queued now; false at end of file (no sender left).
fn read_messages(socket: BorrowedFd<'_>, held: &mut Held, buf: &mut [u8]) -> bool {
    loop {
        match rustix::net::recv(socket, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return false,
            Ok((n, _)) => match Message::decode(&buf[..n]) {
                Some(Message::Call { id, remains }) => {
                    held.calls.insert(id, remains);
                }
                Some(Message::Group { id, pgid }) => {
                    if let Some(r) = held.calls.get_mut(&id) {
                        r.pgid = pgid;
                    }
                }
                Some(Message::Over { id }) => {
                    held.calls.remove(&id);
                }
                Some(Message::Remove { id }) => {
                    if let Some(mut remains) = held.calls.remove(&id) {
                        if !remove_emptied(&mut remains) {
                            held.behind.push((remains, Instant::now()));
                        }
                    }
                }
                Some(Message::Flush) => {
                    held.finish_removals();
                    let _ = rustix::net::send(socket, FLUSHED, SendFlags::NOSIGNAL);
                }
                None => {}
            },
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(_) => return false,
        }
    }
}
