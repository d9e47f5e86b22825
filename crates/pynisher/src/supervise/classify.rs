//! Turning what the supervisor recorded and what the kernel reported into one [`Status`].
//!
//! Priority: the limit pynisher itself enforced (recorded before any signal was sent) > signs of
//! memory exhaustion (a cgroup OOM kill, an allocation failure under the address-space limit) >
//! forks refused by the kernel's process limit > the result channel > the signal or exit code.
//! A signal alone never names a limit.

use crate::launch::step;
use crate::transport::Received;
use crate::Status;

/// Everything classification looks at.
#[derive(Debug)]
pub(crate) struct Facts {
    /// The reason pynisher recorded before it ended the call, if it did.
    pub recorded: Option<Status>,
    /// A failed set-up step of the child: (step, errno).
    pub setup_error: Option<(u32, i32)>,
    /// The program's name, for messages.
    pub program: String,
    /// Whether a memory limit was set.
    pub memory_limited: bool,
    /// OOM kills counted by the container.
    pub oom_kills: u64,
    /// Forks the kernel refused under the process limit.
    pub processes_refused: u64,
    /// Whether the child aborted after reporting an allocation failure under `RLIMIT_AS`.
    pub allocation_failed: bool,
    /// What arrived on the result channel (`Nothing` when there is none).
    pub received: Received,
    /// Whether the call was expected to send a result.
    pub wants_result: bool,
    /// The main process's killing signal.
    pub signal: Option<i32>,
}

/// Decides the status, and returns the result value when there is one.
pub(crate) fn classify(facts: Facts) -> (Status, Option<Vec<u8>>) {
    let Facts {
        recorded,
        setup_error,
        program,
        memory_limited,
        oom_kills,
        processes_refused,
        allocation_failed,
        received,
        wants_result,
        signal,
    } = facts;
    let value = match &received {
        Received::Value(v) => Some(v.clone()),
        _ => None,
    };
    if let Some(status) = recorded {
        return (status, value);
    }
    if let Some((which, errno)) = setup_error {
        let cause = std::io::Error::from_raw_os_error(errno);
        let message = match which {
            step::EXEC => format!("exec {program:?}: {cause}"),
            other => format!("{} for {program:?}: {cause}", step::describe(other)),
        };
        return (Status::SpawnFailed { errno, message }, None);
    }
    if memory_limited && (oom_kills > 0 || allocation_failed) {
        return (Status::MemoryLimit, value);
    }
    if processes_refused > 0 {
        // The kernel refused forks at the limit; the program then failed or coped, but the
        // limit shaped how it ended.
        return (Status::ProcessLimit, value);
    }
    match received {
        Received::Value(_) => return (Status::Completed, value),
        Received::Panic(message) => return (Status::Panicked { message }, None),
        Received::EncodeFailed(reason) | Received::Malformed(reason) => {
            return (Status::ResultUndecodable { reason }, None)
        }
        Received::Nothing => {}
    }
    if let Some(signal) = signal {
        return (Status::Signaled { signal }, None);
    }
    if wants_result {
        (Status::NoResult, None)
    } else {
        (Status::Completed, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            recorded: None,
            setup_error: None,
            program: "prog".into(),
            memory_limited: false,
            oom_kills: 0,
            processes_refused: 0,
            allocation_failed: false,
            received: Received::Nothing,
            wants_result: false,
            signal: None,
        }
    }

    #[test]
    fn a_recorded_limit_beats_the_signal_it_caused() {
        let f = Facts {
            recorded: Some(Status::CpuTimeout),
            signal: Some(libc::SIGKILL),
            ..facts()
        };
        assert_eq!(classify(f).0, Status::CpuTimeout);
    }

    #[test]
    fn sigkill_without_a_recorded_reason_is_just_a_signal() {
        let f = Facts {
            signal: Some(libc::SIGKILL),
            memory_limited: true,
            ..facts()
        };
        assert_eq!(classify(f).0, Status::Signaled { signal: 9 });
    }

    #[test]
    fn segfault_under_a_memory_limit_is_not_a_memory_limit() {
        let f = Facts {
            signal: Some(libc::SIGSEGV),
            memory_limited: true,
            ..facts()
        };
        assert_eq!(classify(f).0, Status::Signaled { signal: 11 });
    }

    #[test]
    fn an_oom_kill_under_a_memory_limit_is_the_memory_limit_even_if_main_exits_zero() {
        let f = Facts {
            memory_limited: true,
            oom_kills: 1,
            ..facts()
        };
        assert_eq!(classify(f).0, Status::MemoryLimit);
    }

    #[test]
    fn refused_forks_make_it_a_process_limit_whatever_the_exit_code() {
        let f = Facts {
            processes_refused: 3,
            ..facts()
        };
        assert_eq!(classify(f).0, Status::ProcessLimit);
    }

    #[test]
    fn exec_failure_is_spawn_failed_with_errno() {
        let f = Facts {
            setup_error: Some((step::EXEC, libc::ENOENT)),
            ..facts()
        };
        assert!(
            matches!(classify(f).0, Status::SpawnFailed { errno, .. } if errno == libc::ENOENT)
        );
    }

    #[test]
    fn a_closure_that_exits_without_result_is_no_result() {
        let f = Facts {
            wants_result: true,
            ..facts()
        };
        assert_eq!(classify(f).0, Status::NoResult);
    }
}
