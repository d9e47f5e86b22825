//! How the supervisor collects the main process's wait status and rusage: directly (`wait4` with
//! `__WALL` on our own child), or from the reaper that a closure call gets when the caller's
//! children are reaped by the kernel (`launch/reaper.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::launch::{decode_report, REPORT_LEN};
use crate::sys::{self, Reaped};

/// Who reaps the call's main process.
pub(crate) enum Reaping {
    /// The main process is our child; we reap it.
    Direct,
    /// A reaper (our child) reaps it and reports.
    Reaper {
        /// The reaper's pid.
        pid: i32,
        /// Closing it tells the reaper that we are done with the main process's pid.
        go: Option<OwnedFd>,
        /// The reaper's reports (blocking reads).
        report: OwnedFd,
    },
}

impl Reaping {
    /// Reads the main process's pid that the reaper announces right after its fork.
    pub(crate) fn announced_pid(report: &OwnedFd) -> io::Result<i32> {
        let mut pid = [0u8; 4];
        read_exact(report, &mut pid)?;
        let pid = i32::from_le_bytes(pid);
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(-pid));
        }
        Ok(pid)
    }

    /// Reaps the main process `main` (blocking; call it once it exited or was killed).
    pub(crate) fn reap(&mut self, main: i32) -> io::Result<Reaped> {
        match self {
            Reaping::Direct => sys::wait4_blocking(main),
            Reaping::Reaper { pid, go, report } => {
                drop(go.take());
                let mut bytes = [0u8; REPORT_LEN];
                let read = read_exact(report, &mut bytes);
                // The reaper exits right after its report. When the kernel reaps our children
                // itself, this wait ends with ECHILD once it has; either way nothing is left.
                let _ = sys::wait4_blocking(*pid);
                read.map(|()| decode_report(&bytes))
            }
        }
    }
}

fn read_exact(fd: &OwnedFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::read(fd.as_fd(), &mut *buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the call's reaper process ended without reporting",
                ))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
