//! Handing the terminal to the program, and Ctrl-Z.
//!
//! The engine starts the program in its own process group. When pynisher runs in the foreground
//! of a terminal, that group is a background group: the first time the program reads the terminal
//! the kernel stops it with SIGTTIN (GNU `timeout` has the same problem and a `--foreground` flag
//! for it). So when stdin is a terminal whose foreground group is pynisher's, pynisher makes the
//! program's group the foreground group for the run (`tcsetpgrp`), continues it in case it was
//! already stopped, and takes the terminal back at the end. Terminal signals (Ctrl-C, Ctrl-\, Ctrl-Z)
//! then go straight to the program, as when it runs without pynisher.
//!
//! Ctrl-Z stops the program, not pynisher, so the shell would keep waiting for pynisher; and a
//! program of a pynisher started in the background (`&`) is stopped when it reads the terminal.
//! When stdin is its controlling terminal, pynisher therefore watches the program's state
//! ([`TerminalJob::program_stopped`], polled by the observer): when the program is stopped,
//! pynisher takes the terminal back and stops itself with SIGTSTP, so the shell shows the job as
//! stopped; when the shell continues pynisher (`fg` or `bg`), pynisher continues the program,
//! handing it the terminal again if it is in the foreground. Where no job-control shell can continue pynisher (its process group is
//! orphaned), the kernel discards that SIGTSTP and the program is simply continued: Ctrl-Z does
//! nothing, as in any shell without job control. Wall time keeps running while stopped.
//!
//! pynisher keeps SIGTTOU blocked (see [`crate::signals`]), so changing the foreground group from
//! a background group neither stops it nor leaves a signal pending.

use std::os::fd::{AsRawFd, BorrowedFd};

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the whole life of the process (we never close it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Whether pynisher's own process group is the foreground group of the terminal on stdin.
fn in_foreground() -> bool {
    let fd = stdin().as_raw_fd();
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process and terminal state.
    unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == libc::getpgrp() }
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
pub fn is_stopped(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    stat.rfind(')')
        .and_then(|close| stat[close + 1..].trim_start().chars().next())
        == Some('T')
}

/// The terminal on stdin, lent to the program's process group until [`TerminalJob::take_back`].
#[derive(Debug)]
pub struct TerminalJob {
    program: libc::pid_t,
    own_group: libc::pid_t,
    lent: bool,
}

impl TerminalJob {
    /// When stdin is pynisher's controlling terminal: makes the process group of `program` (its
    /// pid) the terminal's foreground group if pynisher's own group is, and returns the job to
    /// follow. Returns `None` and changes nothing when stdin is not a controlling terminal.
    pub fn hand_over(program: libc::pid_t) -> Option<TerminalJob> {
        let fd = stdin().as_raw_fd();
        // SAFETY: isatty and tcgetpgrp only read terminal state (tcgetpgrp fails unless the
        // terminal is our controlling terminal).
        let controlling = unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) > 0 };
        if program <= 1 || !controlling {
            return None;
        }
        let mut job = TerminalJob {
            program,
            // SAFETY: getpgrp only reads process state.
            own_group: unsafe { libc::getpgrp() },
            lent: false,
        };
        job.continue_program();
        Some(job)
    }

    /// Gives the program the terminal if pynisher holds it, then continues the program's group.
    fn continue_program(&mut self) {
        if in_foreground() {
            // SAFETY: giving our terminal to a process group of our session (the program's).
            self.lent = unsafe { libc::tcsetpgrp(stdin().as_raw_fd(), self.program) } == 0;
        }
        // SAFETY: continuing the program's process group (a no-op for running processes; a
        // program that read the terminal before it was handed over was stopped by SIGTTIN).
        unsafe { libc::kill(-self.program, libc::SIGCONT) };
    }

    /// Whether the program's first process is stopped (Ctrl-Z, or a read from the background).
    pub fn program_stopped(&self) -> bool {
        is_stopped(self.program)
    }

    /// Stops pynisher as the program was stopped, so that the shell sees the job stopped; once
    /// pynisher is continued (or at once, where nobody could continue it), continues the program.
    pub fn stop_with_program(&mut self) {
        self.reclaim();
        // SAFETY: raising a stop signal on ourselves; SIGTSTP is not blocked and keeps its default
        // action. In an orphaned process group the kernel discards it and this returns at once.
        unsafe { libc::raise(libc::SIGTSTP) };
        self.continue_program();
    }

    /// Makes pynisher's group the foreground group again, if the program holds the terminal.
    fn reclaim(&mut self) {
        if self.lent {
            // SAFETY: taking the terminal back for our own process group; SIGTTOU is blocked, so
            // this works from the background.
            unsafe { libc::tcsetpgrp(stdin().as_raw_fd(), self.own_group) };
            self.lent = false;
        }
    }

    /// Ends the loan: pynisher's group is the foreground group again.
    pub fn take_back(mut self) {
        self.reclaim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_process_is_told_from_a_running_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        assert!(!is_stopped(pid));
        // SAFETY: stopping, then killing, the child this test started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !is_stopped(pid) {
            assert!(std::time::Instant::now() < deadline, "never seen stopped");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_stopped(pid), "a reaped process is not stopped");
    }
}
