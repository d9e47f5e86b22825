//! The threaded path: a zygote process forked by [`init`] while the program has one thread, which
//! forks one supervisor process per call on request. See `docs/architecture.md` ("The zygote").

mod client;
mod code;
mod server;
mod wire;

pub use client::init;
pub(crate) use client::{start_call, RemoteCall, Trampoline};
