//! The guard: one small process per caller that kills the caller's calls if the caller dies
//! mid-call (SIGKILL, a crash), on every backend and for every face.
//!
//! Who starts it: the engine, at the first call after [`install`], by running the
//! [`GuardProgram`] a face names (the CLI: itself, forked rather than run again; Python: the
//! `pynisher` binary in the package; a Rust program: itself, with [`serve_if_requested`] first in
//! `main`). That program calls
//! [`serve_if_requested`], which forks once and exits: the guard is re-parented (to PID 1 or a
//! subreaper), so it is never the caller's child (a caller's `waitpid(-1)` loop cannot hang on
//! it) and it sits in its own session (a terminal's signals do not reach it).
//!
//! What it watches: the caller process through a pidfd (a process, not a thread: a call started
//! by a thread that then exits lives on), and its end of a `SOCK_SEQPACKET` socket on which the
//! engine sends one-way messages: before the fork, the call's container ([`crate`]'s cgroup
//! leaves); after the fork, on the process-group backend, the call's process group; after the
//! call, that it is over. No message waits for an answer.
//!
//! What it kills: when the caller dies, every call not yet over: `cgroup.kill` (v2) or
//! freeze-kill-thaw (v1) of its leaves, repeated until the leaves can be removed, and SIGKILL to
//! its process group; then it exits. When the caller ends normally there is nothing left to kill.
//!
//! What it cannot do: on the process-group backend a descendant that left the group (`setsid`)
//! is out of its reach; if the guard itself is killed, calls from then on run unguarded until the
//! next call starts a new one (the call's first process then dies with the caller's forking
//! thread, `PR_SET_PDEATHSIG`, as without a guard).

mod client;
mod protocol;
mod serve;

pub(crate) use client::register;
pub use client::{guard_pid, install, install_deferred, installed, uninstall, GuardProgram};
pub(crate) use protocol::GROUP_MESSAGE_LEN;
pub use serve::{serve_if_requested, GUARD_ENV};
