//! Calls made by a caller whose SIGCHLD action has `SA_NOCLDWAIT` (children are reaped by the
//! kernel): the supervisor must still read the call's exact status.

mod common;
mod sigchld;

fn no_child_wait() {
    // SAFETY: sets this process's SIGCHLD action; every test of this binary wants the same.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        action.sa_flags = libc::SA_NOCLDWAIT;
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
    }
}

#[test]
fn calls_report_exact_results_when_the_caller_sets_sa_nocldwait() {
    sigchld::every_kind_of_call_reports_exactly(no_child_wait);
}

#[test]
fn leftovers_are_killed_when_the_caller_sets_sa_nocldwait() {
    sigchld::leftovers_are_killed(no_child_wait);
}
