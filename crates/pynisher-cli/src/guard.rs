//! A watchdog process that kills the program's process group if pynisher dies without finishing
//! (e.g. SIGKILL).
//!
//! The engine gives the program's first process `PR_SET_PDEATHSIG(SIGKILL)`, but that reaches only
//! that process: its children (a shell's `sleep &`) would be re-parented and live on. So before
//! starting the program, pynisher forks this small guard, still single-threaded. The guard closes
//! every descendant except the read end of a pipe, then blocks reading it:
//!
//! * pynisher writes the program's pid (its process-group id, the engine calls `setpgid(0, 0)`)
//!   right after starting it;
//! * when the run is over (the engine has killed and reaped the tree), pynisher writes one byte and
//!   the guard exits without doing anything;
//! * if the pipe reaches end of file first, pynisher died: the guard sends SIGKILL to the program's
//!   process group and exits.
//!
//! Limits: a descendant that left the process group (`setsid`) is not reached by the guard; with a
//! cgroup backend the engine's next run empties a dead supervisor's leaf. A SIGKILL sent to
//! pynisher's own process group kills the guard too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The parent's end of the guard: the pipe's write end and the guard's pid.
#[derive(Debug)]
pub struct Guard {
    pipe: OwnedFd,
    pid: libc::pid_t,
}

const DONE: u8 = b'.';

impl Guard {
    /// Forks the guard. Call it while pynisher has a single thread (before the engine starts any).
    pub fn start() -> io::Result<Guard> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just created these two descriptors; nothing else owns them.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the caller is single-threaded (documented requirement), so the child is a full
        // copy; it only calls async-signal-safe functions (close_range, read, kill, _exit).
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(io::Error::last_os_error()),
            0 => guard_main(read_end.as_raw_fd()),
            pid => {
                drop(read_end);
                Ok(Guard {
                    pipe: write_end,
                    pid,
                })
            }
        }
    }

    /// Tells the guard which process group to kill should pynisher die.
    pub fn arm(&self, program_pid: i32) {
        let bytes = program_pid.to_ne_bytes();
        // SAFETY: writing 4 bytes from a live buffer to a pipe we own. A pipe write this small is
        // atomic; if it fails the guard only loses its target, the run itself is unaffected.
        unsafe { libc::write(self.pipe.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    }

    /// Tells the guard the run is over (nothing to kill) and reaps it.
    pub fn dismiss(self) {
        // SAFETY: one byte from a live buffer to a pipe we own; then waiting for our own child.
        unsafe {
            libc::write(self.pipe.as_raw_fd(), [DONE].as_ptr().cast(), 1);
            let mut status = 0;
            while libc::waitpid(self.pid, &mut status, 0) == -1
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

/// The guard's whole life, in the forked child: only async-signal-safe calls.
fn guard_main(pipe: libc::c_int) -> ! {
    // SAFETY: closing descriptors we do not need (so the guard holds no pipe or file of the run
    // open), reading into a stack buffer, signalling a process group, and exiting without running
    // any of the parent's destructors or atexit handlers.
    unsafe {
        if pipe > 0 {
            libc::syscall(libc::SYS_close_range, 0, pipe - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, pipe + 1, libc::c_uint::MAX, 0);
        let mut target = [0u8; 4];
        if read_full(pipe, &mut target) {
            let pgid = i32::from_ne_bytes(target);
            let mut done = [0u8; 1];
            if !read_full(pipe, &mut done) && pgid > 1 {
                // End of file without the done byte: pynisher died mid-run.
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        libc::_exit(0)
    }
}

/// Reads exactly `buf.len()` bytes; false on end of file or error.
///
/// # Safety
/// `fd` must be a readable descriptor. Async-signal-safe.
unsafe fn read_full(fd: libc::c_int, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the destination range lies inside `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 {
            return false;
        } else {
            // SAFETY: errno is thread-local and readable right after the failed call.
            let errno = unsafe { *libc::__errno_location() };
            if errno != libc::EINTR {
                return false;
            }
        }
    }
    true
}
