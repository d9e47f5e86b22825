//! The reaper: the call's parent when the caller's children are reaped by the kernel.
//!
//! When the caller ignores SIGCHLD (or its action has `SA_NOCLDWAIT`), the kernel reaps a child
//! whose exit signal is SIGCHLD the moment it exits, and its wait status and rusage are lost. A
//! child created without an exit signal is exempt — but `execve` gives every process the SIGCHLD
//! exit signal again, and a closure needs glibc's `fork` (its `atfork` handlers, malloc locks, the
//! thread's cached id), which always uses SIGCHLD. So in such a caller the supervisor forks this
//! small reaper instead, which sets the default SIGCHLD action for itself only, creates the real
//! child (glibc's `fork` for a closure, `sys::clone_quiet` for a program), and tells the
//! supervisor the real child's pid. When the real child has exited it waits (without reaping, so
//! the pid stays the call's) until the supervisor says it is done with that pid, then reaps it and
//! reports the exact wait status and rusage.
//!
//! The reaper runs in its own process group, outside the call's container (a kill of the call
//! must not kill its reaper), with every signal blocked (the caller's handlers must never run in
//! it). Without a guard it dies with the supervisor (`PR_SET_PDEATHSIG`), which takes the real
//! child with it; with one, the guard kills the real child when the caller dies, and the reaper
//! then reaps it and exits.

use std::os::fd::RawFd;

use super::child::{child_main, die_with_parent, ChildFds, ChildPlan, SETUP_FAILED_EXIT};
use crate::sys::Reaped;

/// The reaper's pipes, both ends of each open at fork time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaperFds {
    /// The reaper writes the real child's pid (or `-errno`), then the final report.
    pub report_read: RawFd,
    pub report_write: RawFd,
    /// Closed by the supervisor once it no longer uses the real child's pid: the reaper may reap.
    pub go_read: RawFd,
    pub go_write: RawFd,
}

/// Length of the final report: the wait status, then the `rusage` of the real child.
pub(crate) const REPORT_LEN: usize = 4 + std::mem::size_of::<libc::rusage>();

/// Decodes the final report (written by this same program image, so the layout is ours).
pub(crate) fn decode_report(report: &[u8; REPORT_LEN]) -> Reaped {
    let status = i32::from_le_bytes(report[..4].try_into().expect("4 bytes"));
    // SAFETY: the bytes after the status are a `libc::rusage` copied bytewise by `reaper_main`;
    // rusage is plain old data, and read_unaligned needs no alignment.
    let usage: libc::rusage = unsafe { std::ptr::read_unaligned(report[4..].as_ptr().cast()) };
    Reaped::from_wait(status, &usage)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes all of `bytes`. Async-signal-safe.
fn write_all(fd: RawFd, bytes: &[u8]) {
    let mut written = 0;
    while written < bytes.len() {
        // SAFETY: write(2) of our own buffer to a descriptor we own.
        let n = unsafe { libc::write(fd, bytes[written..].as_ptr().cast(), bytes.len() - written) };
        if n > 0 {
            written += n as usize;
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

/// The reaper's side of the fork. Never returns.
///
/// # Safety
/// Must be called only in the child right after the fork (glibc's `fork` when `plan` is a
/// closure), with `plan` and `fds` as for `child_main`. It makes only async-signal-safe calls; the
/// real child runs `child_main`.
pub(crate) unsafe fn reaper_main(plan: &mut ChildPlan<'_>, fds: &ChildFds, pipes: ReaperFds) -> ! {
    // SAFETY: process attributes of our own process (group, death signal, mask, SIGCHLD action)
    // and descriptors the parent opened for us; no memory but our own stack locals is touched.
    let (old_mask, old_sigchld) = unsafe {
        libc::close(pipes.report_read);
        libc::close(pipes.go_write);
        // Out of the caller's group: a terminal's Ctrl-C or a kill of the caller's group must not
        // end the reaper before it reports.
        libc::setpgid(0, 0);
        // Die with the supervisor unless a guard watches the caller (as `child_main` does).
        die_with_parent(fds);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old_mask: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old_mask);
        let mut default_action: libc::sigaction = std::mem::zeroed();
        default_action.sa_sigaction = libc::SIG_DFL;
        let mut old_sigchld: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, &default_action, &mut old_sigchld);
        (old_mask, old_sigchld)
    };
    // SAFETY: getpid(2) has no preconditions.
    let reaper_pid = unsafe { libc::getpid() };
    let child = if plan.exec.is_some() {
        // SAFETY: the child only restores what the reaper changed and runs `child_main`, which
        // is async-signal-safe up to execve.
        unsafe { crate::sys::clone_quiet(None) }.unwrap_or(-1)
    } else {
        // SAFETY: glibc's fork in a single-threaded process; the child only restores what the
        // reaper changed (its mask and SIGCHLD action, so the closure sees the caller's) and runs
        // `child_main`, whose contract our caller upholds.
        unsafe { libc::fork() }
    };
    if child == 0 {
        // SAFETY: see above; the closed descriptors are the reaper's, not the call's.
        unsafe {
            libc::close(pipes.report_write);
            libc::close(pipes.go_read);
            libc::sigaction(libc::SIGCHLD, &old_sigchld, std::ptr::null_mut());
            libc::sigprocmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
            let fds = ChildFds {
                parent_pid: reaper_pid,
                ..*fds
            };
            child_main(plan, &fds)
        }
    }
    let announced = if child < 0 { -errno() } else { child };
    write_all(pipes.report_write, &announced.to_le_bytes());
    if child < 0 {
        // SAFETY: _exit ends the reaper without touching the caller's copied state.
        unsafe { libc::_exit(SETUP_FAILED_EXIT) }
    }
    // SAFETY: closing descriptors of our own process (the caller's and the call's copies, which
    // the reaper must not keep open), waiting for our own child, reading and writing our pipes,
    // and _exit; every pointer is to a local.
    unsafe {
        let (low, high) = if pipes.report_write < pipes.go_read {
            (pipes.report_write, pipes.go_read)
        } else {
            (pipes.go_read, pipes.report_write)
        };
        let close_range = |first: i32, last: u32| {
            if first as i64 <= last as i64 {
                libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, 0);
            }
        };
        if low > 0 {
            close_range(0, (low - 1) as u32);
        }
        close_range(low + 1, (high - 1) as u32);
        close_range(high + 1, libc::c_uint::MAX);

        // Learn of the exit without reaping: until the supervisor closes the go pipe, the pid is
        // still the call's (a zombie), so killing or sampling it cannot hit another process.
        let mut info: libc::siginfo_t = std::mem::zeroed();
        while libc::waitid(
            libc::P_PID,
            child as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        ) != 0
            && errno() == libc::EINTR
        {}
        let mut byte = 0u8;
        while libc::read(pipes.go_read, (&mut byte as *mut u8).cast(), 1) < 0
            && errno() == libc::EINTR
        {}

        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        while libc::wait4(child, &mut status, 0, &mut usage) < 0 && errno() == libc::EINTR {}
        let mut report = [0u8; REPORT_LEN];
        report[..4].copy_from_slice(&status.to_le_bytes());
        std::ptr::copy_nonoverlapping(
            (&usage as *const libc::rusage).cast::<u8>(),
            report[4..].as_mut_ptr(),
            std::mem::size_of::<libc::rusage>(),
        );
        write_all(pipes.report_write, &report);
        libc::_exit(0)
    }
}
