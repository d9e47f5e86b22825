//! Signal dispositions of a forked child, reset cheaply.
//!
//! A program must start with default dispositions and an empty mask (a caller that ignores SIGTERM
//! must not hand that on: it would defeat the grace period). `execve` resets every *caught*
//! signal to its default; only *ignored* ones survive it. A child that shares the caller's memory
//! until its `execve` (`sys::spawn_shared`) must not run the caller's handlers either, so the
//! caught ones are reset too, before the mask is emptied. Which signals are ignored or caught the
//! kernel tells in one read of `/proc/self/status` (`SigIgn`, `SigCgt`): a few system calls
//! instead of 64 `sigaction`s per call. Without a readable `/proc`, every signal is reset.

/// The set of ignored or caught signals (bit `n - 1` for signal `n`), from `/proc/self/status`.
/// Async-signal-safe: open, read and close into a stack buffer, no allocation.
unsafe fn ignored_or_caught_signals() -> Option<u64> {
    const PATH: &[u8] = b"/proc/self/status\0";
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
    Some(mask_of(text, b"SigIgn:")? | mask_of(text, b"SigCgt:")?)
}

/// The 16-digit hexadecimal mask after `key` in a `/proc/PID/status` text.
fn mask_of(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
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

/// In the child, before `execve`: every ignored or caught signal back to its default action, then
/// an empty signal mask.
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
        let changed = ignored_or_caught_signals().unwrap_or(u64::MAX);
        for sig in 1..libc::SIGRTMAX() {
            let bit = 1u64 << ((sig - 1) as u32 % 64);
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && changed & bit != 0 {
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
    fn the_ignored_and_caught_sets_are_read_from_the_kernel() {
        extern "C" fn handler(_: libc::c_int) {}
        // SAFETY: querying and setting SIGUSR2's and SIGWINCH's dispositions in this test process
        // only; the previous dispositions are restored.
        unsafe {
            let mut old_usr2: libc::sigaction = std::mem::zeroed();
            let mut old_winch: libc::sigaction = std::mem::zeroed();
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            let mut catch: libc::sigaction = std::mem::zeroed();
            catch.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(libc::SIGUSR2, &ignore, &mut old_usr2);
            libc::sigaction(libc::SIGWINCH, &catch, &mut old_winch);
            let with = ignored_or_caught_signals();
            libc::sigaction(libc::SIGUSR2, &old_usr2, std::ptr::null_mut());
            libc::sigaction(libc::SIGWINCH, &old_winch, std::ptr::null_mut());
            let bits = (1u64 << (libc::SIGUSR2 - 1)) | (1u64 << (libc::SIGWINCH - 1));
            assert!(with.is_some_and(|m| m & bits == bits), "{with:x?}");
            assert!(ignored_or_caught_signals().is_some_and(|m| m & bits == 0));
        }
    }
}
