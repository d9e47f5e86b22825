//! Signal dispositions of a forked child, reset cheaply.
//!
//! A program must start with default dispositions and an empty mask (a caller that ignores SIGTERM
//! must not hand that on: it would defeat the grace period). `execve` already resets every
//! *caught* signal to its default; only *ignored* ones survive it. So before an exec only the
//! ignored signals need a `sigaction`, and which those are the kernel tells in one read of
//! `/proc/self/status` (`SigIgn`): three system calls instead of 64 `sigaction`s per call. Without
//! a readable `/proc`, every signal is reset as before.

/// The set of ignored signals (bit `n - 1` for signal `n`), from `/proc/self/status`.
/// Async-signal-safe: open, read and close into a stack buffer, no allocation.
unsafe fn ignored_signals() -> Option<u64> {
    const PATH: &[u8] = b"/proc/self/status\0";
    const KEY: &[u8] = b"SigIgn:";
    let mut buf = [0u8; 4096];
    // SAFETY: open/read/close are async-signal-safe; the path is a static C string and the
    // buffer is ours, read into its unfilled tail only.
    let len = unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut len = 0usize;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    };
    let text = &buf[..len];
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut mask = 0u64;
    let mut digits = 0;
    for &c in text[at..].iter().skip_while(|c| c.is_ascii_whitespace()) {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        mask = (mask << 4) | u64::from(v);
        digits += 1;
    }
    (digits == 16).then_some(mask)
}

/// In the child, before `execve`: every ignored signal back to its default action (a caught one is
/// reset by `execve` itself), and an empty signal mask.
///
/// # Safety
/// Only in a forked child that will `execve` next: it changes the process's signal dispositions.
/// Async-signal-safe.
pub(crate) unsafe fn reset_for_exec() {
    // SAFETY: sigaction/sigprocmask on this (forked, single-threaded) process with stack data;
    // `ignored_signals` is async-signal-safe.
    unsafe {
        let mut default_action: libc::sigaction = std::mem::zeroed();
        default_action.sa_sigaction = libc::SIG_DFL;
        let ignored = ignored_signals().unwrap_or(u64::MAX);
        for sig in 1..libc::SIGRTMAX() {
            let bit = 1u64 << ((sig - 1) as u32 % 64);
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && ignored & bit != 0 {
                libc::sigaction(sig, &default_action, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignored_set_is_read_from_the_kernel() {
        // SAFETY: querying and setting SIGUSR2's disposition in this test process only; the
        // previous disposition is restored.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGUSR2, &ignore, &mut old);
            let with = ignored_signals();
            libc::sigaction(libc::SIGUSR2, &old, std::ptr::null_mut());
            let bit = 1u64 << (libc::SIGUSR2 - 1);
            assert!(with.is_some_and(|m| m & bit != 0), "{with:x?}");
            assert!(ignored_signals().is_some_and(|m| m & bit == 0));
        }
    }
}
