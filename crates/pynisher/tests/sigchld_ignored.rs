//! Calls made by a caller that ignores SIGCHLD (`SIG_IGN`: daemons and some frameworks do this, and
//! programs started by them inherit it): the kernel must not reap the call's process before the
//! supervisor reads its status.

mod common;
mod sigchld;

fn ignore_sigchld() {
    // SAFETY: sets this process's SIGCHLD disposition; every test of this binary wants the same.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
}

#[test]
fn calls_report_exact_results_when_the_caller_ignores_sigchld() {
    sigchld::every_kind_of_call_reports_exactly(ignore_sigchld);
}

#[test]
fn leftovers_are_killed_when_the_caller_ignores_sigchld() {
    sigchld::leftovers_are_killed(ignore_sigchld);
}
