//! The library's own failures, kept apart from the child's fate ([`crate::Outcome`]).

use std::io;

/// Something pynisher itself could not do. A child that crashed, timed out or ran out of memory is
/// *not* an error: that is an [`crate::Outcome`] with a [`crate::Status`].
///
/// ```
/// let err = pynisher::Limits::new().wall_time(std::time::Duration::ZERO).validate().unwrap_err();
/// assert!(err.to_string().contains("wall_time"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit or option had a value that cannot be honoured; nothing was started.
    #[error("invalid value for {param}: {value:?} ({reason})")]
    InvalidLimit {
        /// The parameter's name as the caller knows it (`wall_time`, `memory`, …).
        param: &'static str,
        /// The rejected value, as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A system call the supervisor needs failed (pipe, fork, pidfd, poll, …). The message names
    /// the step; the operating system's error is the [`std::error::Error::source`] (see
    /// [`Error::chain`]).
    #[error("{what} failed")]
    Sys {
        /// What was being attempted, e.g. `creating the result pipe`.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The requested containment backend is not available on this machine.
    #[error("containment backend {backend} is unavailable: {reason}")]
    BackendUnavailable {
        /// The backend that was asked for.
        backend: &'static str,
        /// What is missing.
        reason: String,
    },
    /// Strict mode ([`crate::Limits::strict`]): the backend cannot fully enforce the call's
    /// limits; nothing was started.
    #[error("strict mode: backend {backend} cannot fully enforce this call: {}", describe(.weaknesses))]
    NotEnforceable {
        /// The backend that would have held the call.
        backend: &'static str,
        /// What it would have enforced less strongly.
        weaknesses: Vec<crate::Weakness>,
    },
    /// A cgroup file could not be written or read.
    #[error("cgroup {path}")]
    Cgroup {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// `run_closure` was called from a process with more than one thread, where forking is unsafe.
    #[error("the calling process has {threads} threads; forking it to run a closure is unsafe (call pynisher::init() first in main and use Limits::run_fn, or the unsafe spawn_closure_unchecked if the closure only touches fork-safe state)")]
    ThreadedCaller {
        /// How many threads `/proc/self/task` listed.
        threads: usize,
    },
    /// The argument of [`crate::Limits::spawn_fn`] could not be encoded (postcard); nothing was
    /// started.
    #[error("encoding the argument failed: {0}")]
    Encode(String),
    /// [`crate::Limits::spawn_fn`] from a multi-threaded process that never called
    /// [`crate::init`]; nothing was started.
    #[error("pynisher::init() was not called first in main, and the process now has {threads} threads (a zygote cannot be forked from it safely)")]
    NotInitialized {
        /// How many threads `/proc/self/task` listed.
        threads: usize,
    },
    /// [`crate::init`] was called when the process already had several threads; no zygote was
    /// started.
    #[error("pynisher::init() was called when the process already had {threads} threads; call it first in main, before any thread starts")]
    InitTooLate {
        /// How many threads `/proc/self/task` listed.
        threads: usize,
    },
    /// The function given to [`crate::Limits::spawn_fn`] is not in code the zygote has (a library
    /// loaded after [`crate::init`]); nothing was started.
    #[error("the function at {address:#x} is not in code loaded before pynisher::init()")]
    FunctionNotInZygote {
        /// The function's address in this process.
        address: usize,
    },
    /// The zygote did not take the request (it was killed, or the process is shutting down).
    #[error("the zygote process could not be reached")]
    ZygoteUnreachable {
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The call's supervisor process failed; the text is its error.
    #[error("the call's supervisor process failed: {message}")]
    Supervisor {
        /// What went wrong there, with its causes.
        message: String,
    },
    /// The running kernel lacks a system call that every call needs: `pidfd_open`, Linux 5.3
    /// (2019). Older kernels are not supported; nothing was left running.
    #[error(
        "this kernel (Linux {running}) lacks {syscall}: pynisher needs Linux {needed} or newer"
    )]
    KernelTooOld {
        /// The missing system call.
        syscall: &'static str,
        /// The first Linux version that has it.
        needed: &'static str,
        /// The running kernel's release (`uname -r`).
        running: String,
    },
    /// The outcome of this [`crate::Running`] was already returned by `try_wait`.
    #[error("the outcome of this call was already taken")]
    OutcomeTaken,
}

fn describe(weaknesses: &[crate::Weakness]) -> String {
    let all: Vec<&str> = weaknesses.iter().map(|w| w.describe()).collect();
    all.join("; ")
}

impl Error {
    pub(crate) fn sys(what: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Sys {
            what,
            source: source.into(),
        }
    }

    /// A failed `pidfd_open`: `ENOSYS` means a kernel older than 5.3, the project's floor.
    pub(crate) fn pidfd_open(source: io::Error) -> Self {
        if source.raw_os_error() != Some(libc::ENOSYS) {
            return Error::sys("pidfd_open", source);
        }
        let running = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| r.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Error::KernelTooOld {
            syscall: "pidfd_open",
            needed: "5.3",
            running,
        }
    }

    pub(crate) fn invalid(
        param: &'static str,
        value: impl ToString,
        reason: impl ToString,
    ) -> Self {
        Error::InvalidLimit {
            param,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl Error {
    /// The error followed by each of its causes, `: `-separated: how a face shows an [`Error`] to
    /// its user (the error's own message leaves its cause to [`std::error::Error::source`], so a
    /// chain printer does not show it twice).
    ///
    /// ```
    /// let err = pynisher::Limits::new().memory(0).validate().unwrap_err();
    /// assert_eq!(err.chain().to_string(), err.to_string());
    /// ```
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }
}

/// Displays an [`Error`] with its causes; see [`Error::chain`].
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(&'a Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_error_shows_its_cause_once_in_the_chain() {
        let err = Error::sys("pidfd_open", io::Error::from_raw_os_error(libc::ESRCH));
        assert_eq!(err.to_string(), "pidfd_open failed");
        let chain = err.chain().to_string();
        assert!(chain.starts_with("pidfd_open failed: "), "{chain}");
        assert_eq!(chain.matches("No such process").count(), 1, "{chain}");
    }
}
