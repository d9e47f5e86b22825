//! How a child starts: a program to exec, or a closure to run in a forked child.

mod child;
mod closure;
mod command;
mod dispositions;
mod reaper;
mod release;

pub(crate) use child::{child_main, step, ChildFds, ChildPlan, Payload};
pub(crate) use closure::{body as closure_body, Encoded};
pub use command::{Command, Stdin};
pub(crate) use reaper::{decode_report, reaper_main, ReaperFds, REPORT_LEN};
pub(crate) use release::ReleaseRecord;
