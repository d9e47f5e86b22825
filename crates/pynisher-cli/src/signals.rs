//! Signals: parsing `--signal` values, naming signals in messages, and catching the signals that
//! cancel a run (SIGINT, SIGTERM, SIGHUP) through a `signalfd`.
//!
//! The cancel signals are blocked with `sigprocmask` first thing in `main`, before any thread
//! exists, so every later thread inherits the mask and the signals stay pending until
//! [`CancelSignals::take`] reads them. The engine resets the child's signal mask, so the limited
//! program still receives them normally when someone signals it directly.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The signals that make pynisher end the limited program and report `cancelled`.
pub const CANCEL_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Signal names without the `SIG` prefix, as `kill -l` prints them on Linux.
const SIGNAL_NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The conventional name of a signal (`SIGTERM`), or `signal N` for real-time and unknown ones.
pub fn signal_name(signal: i32) -> String {
    SIGNAL_NAMES
        .iter()
        .find(|(_, number)| *number == signal)
        .map_or_else(
            || format!("signal {signal}"),
            |(name, _)| format!("SIG{name}"),
        )
}

/// Parses a signal given as a name (`TERM`, `SIGTERM`, `term`) or a number (`15`, 1–64).
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match trimmed.parse::<i32>() {
            Ok(number) if (1..=64).contains(&number) => Ok(number),
            _ => Err(format!(
                "{trimmed} is out of range: a signal number is 1-64"
            )),
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNAL_NAMES
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|(_, number)| *number)
        .ok_or_else(|| {
            format!("unknown signal name {trimmed:?} (use e.g. TERM, INT, USR1 or a number)")
        })
}

/// A `signalfd` receiving the blocked cancel signals.
#[derive(Debug)]
pub struct CancelSignals {
    fd: OwnedFd,
}

fn cancel_set() -> libc::sigset_t {
    // SAFETY: sigemptyset fully initialises the set before sigaddset reads it; both only write the
    // local variable we pass.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for signal in CANCEL_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

impl CancelSignals {
    /// Blocks SIGINT, SIGTERM and SIGHUP for the calling thread (and every thread created after)
    /// and opens a non-blocking `signalfd` that receives them. Call it before any thread exists.
    ///
    /// SIGTTOU is blocked as well (and never read): pynisher changes the terminal's foreground
    /// group from the background (see [`crate::terminal`]), which must neither stop it nor leave
    /// a signal pending.
    pub fn block_and_open() -> io::Result<Self> {
        let set = cancel_set();
        let mut blocked = set;
        // SAFETY: `blocked` is an initialised sigset (a copy of `set`).
        unsafe { libc::sigaddset(&mut blocked, libc::SIGTTOU) };
        // SAFETY: `blocked` is an initialised sigset; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; `set` is initialised; the flags are valid.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CancelSignals { fd })
    }

    /// The `signalfd`: readable when a cancel signal is pending (the engine polls it beside the
    /// program, so a cancel acts at once).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Returns the number of a cancel signal received since the last call, if any. Never blocks.
    pub fn take(&self) -> Option<i32> {
        let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is exactly one signalfd_siginfo long and owned by this frame; the fd is
        // a valid non-blocking signalfd.
        let read = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
        if read == size as isize {
            // SAFETY: the kernel wrote a whole signalfd_siginfo (checked by the length).
            let info = unsafe { info.assume_init() };
            Some(info.ssi_signo as i32)
        } else {
            None
        }
    }
}

/// Ends pynisher with `signal` the way a shell expects from a program interrupted by it (so that,
/// for instance, a shell loop stops on Ctrl-C): restore the default action, unblock, raise.
/// Falls back to `exit(128 + signal)` if the signal does not end the process.
pub fn die_by_signal(signal: i32) -> ! {
    // SAFETY: resetting a catchable signal's disposition to SIG_DFL and raising it are always
    // allowed; the sigset is initialised by sigemptyset before use.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    std::process::exit(128 + signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_with_or_without_prefix_and_by_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(libc::SIGINT));
        assert_eq!(parse_signal("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("64"), Ok(64));
    }

    #[test]
    fn unknown_names_and_out_of_range_numbers_are_rejected() {
        assert!(parse_signal("FOO").unwrap_err().contains("FOO"));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("-15").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn signal_names_round_trip_and_unknown_numbers_are_spelled_out() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(40), "signal 40");
        for (name, number) in SIGNAL_NAMES {
            assert_eq!(parse_signal(name), Ok(number));
        }
    }
}
