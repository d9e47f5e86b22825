//! Handing the terminal to the program.
//!
//! The engine starts the program in its own process group. When pynisher runs in the foreground
//! of a terminal, that group is a background group: the first time the program reads the terminal
//! the kernel stops it with SIGTTIN (GNU `timeout` has the same problem and a `--foreground` flag
//! for it). So when stdin is a terminal whose foreground group is pynisher's, pynisher makes the
//! program's group the foreground group for the run (`tcsetpgrp`), continues it in case it was
//! already stopped, and takes the terminal back at the end. Terminal signals (Ctrl-C, Ctrl-\) then
//! go straight to the program, as when it runs without pynisher.
//!
//! pynisher keeps SIGTTOU blocked (see [`crate::signals`]), so changing the foreground group from
//! a background group neither stops it nor leaves a signal pending.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The terminal on stdin, lent to the program's process group until [`Foreground::take_back`].
#[derive(Debug)]
pub struct Foreground {
    own_group: libc::pid_t,
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the whole life of the process (we never close it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl Foreground {
    /// Makes `program_group` the terminal's foreground group, if stdin is a terminal whose
    /// foreground group is pynisher's own. Returns `None` (and changes nothing) otherwise.
    pub fn hand_over(program_group: libc::pid_t) -> Option<Foreground> {
        let fd = stdin().as_raw_fd();
        // SAFETY: isatty, tcgetpgrp and getpgrp only read process and terminal state.
        let (is_tty, foreground, own_group) =
            unsafe { (libc::isatty(fd) == 1, libc::tcgetpgrp(fd), libc::getpgrp()) };
        if !is_tty || foreground != own_group || program_group <= 1 {
            return None;
        }
        // SAFETY: giving our terminal to a process group of our session (the program's); a
        // program that already tried to read was stopped by SIGTTIN, so continue its group.
        unsafe {
            if libc::tcsetpgrp(fd, program_group) != 0 {
                return None;
            }
            libc::kill(-program_group, libc::SIGCONT);
        }
        Some(Foreground { own_group })
    }

    /// Makes pynisher's group the foreground group again.
    pub fn take_back(self) {
        // SAFETY: taking the terminal back for our own process group; SIGTTOU is blocked, so this
        // works from the background.
        unsafe { libc::tcsetpgrp(stdin().as_raw_fd(), self.own_group) };
    }
}
