//! A watchdog process that kills the program's process group if pynisher dies without finishing
//! (e.g. SIGKILL).
//!
//! The engine gives the program's first process `PR_SET_PDEATHSIG(SIGKILL)`, but that reaches only
//! that process: its children (a shell's `sleep &`) would be re-parented and live on. So pynisher
//! starts a guard: itself (`/proc/self/exe`) again, in guard mode (see [`is_guard`]), in its own
//! process group so that terminal signals do not reach it, with the read end of a pipe as stdin:
//!
//! * pynisher starts the guard right after the program (so the guard never delays the program's
//!   start) and writes the program's pid, its process-group id (the engine calls `setpgid(0, 0)`);
//! * when the run is over (the engine has killed and reaped the tree), pynisher writes one byte and
//!   the guard exits without doing anything;
//! * if the pipe reaches end of file first, pynisher died: the guard sends SIGKILL to the program's
//!   process group and exits.
//!
//! The guard is spawned (`posix_spawn`, so pynisher's memory is not copied) rather than forked:
//! a fork made every page pynisher wrote afterwards a copy-on-write fault and cost about 1 ms per
//! run. pynisher does not wait for the guard; it is re-parented when pynisher exits.
//!
//! Limits: a descendant that left the process group (`setsid`) is not reached by the guard; with a
//! cgroup backend the engine's next run empties a dead supervisor's leaf.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use std::os::unix::process::CommandExt;

/// The environment variable that puts the pynisher binary in guard mode. It is set only in the
/// guard's environment, never in pynisher's or the program's.
const GUARD_ENV: &str = "PYNISHER_INTERNAL_GUARD";

/// The byte that tells the guard the run ended normally.
const DONE: u8 = b'.';

/// The parent's end of the guard.
#[derive(Debug)]
pub struct Guard {
    stdin: ChildStdin,
    // Kept so the guard is not reaped by anyone else and its pid stays ours; never waited for.
    _child: Child,
}

impl Guard {
    /// Starts the guard process, armed to kill the process group of `program_pid` should pynisher
    /// die before [`Guard::dismiss`].
    pub fn start(program_pid: i32) -> io::Result<Guard> {
        let mut child = Command::new("/proc/self/exe")
            .arg0("pynisher-guard")
            .env(GUARD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no pipe"))?;
        stdin.write_all(&program_pid.to_ne_bytes())?;
        Ok(Guard {
            stdin,
            _child: child,
        })
    }

    /// Tells the guard the run is over: it exits without killing anything.
    pub fn dismiss(mut self) {
        let _ = self.stdin.write_all(&[DONE]);
    }
}

/// Whether this process was started as a guard (checked first thing in `main`).
pub fn is_guard() -> bool {
    std::env::var_os(GUARD_ENV).is_some()
}

/// The guard's whole life: wait for a target, then for the done byte or end of file.
pub fn guard_main() -> ! {
    let mut input = io::stdin().lock();
    let mut target = [0u8; 4];
    if input.read_exact(&mut target).is_ok() {
        let pgid = i32::from_ne_bytes(target);
        let mut done = [0u8; 1];
        let finished = loop {
            match input.read(&mut done) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(1) => break done[0] == DONE,
                _ => break false,
            }
        };
        if !finished && pgid > 1 {
            // End of file without the done byte: pynisher died mid-run.
            // SAFETY: kill has no memory-safety preconditions; the group is the program's.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    std::process::exit(0)
}
