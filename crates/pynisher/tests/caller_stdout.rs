//! A closure's child is a copy of its caller, std's stdout buffer included: what the caller
//! printed without a newline must come out once (the caller's), not a second time from the child,
//! and what the closure printed without a newline must still come out.
//!
//! The caller runs in a fresh process of its own (a helper), so that its real stdout, not the test
//! harness's capture, is what is checked.

use pynisher::Limits;
use pynisher_testkit::Trials;

fn main() {
    Trials::default()
        .test(
            "a_callers_unflushed_stdout_is_printed_once_and_the_closures_too",
            a_callers_unflushed_stdout_is_printed_once_and_the_closures_too,
        )
        .helper(
            "helper_prints_without_newline_then_calls",
            helper_prints_without_newline_then_calls,
        )
        .run()
}

fn a_callers_unflushed_stdout_is_printed_once_and_the_closures_too() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_prints_without_newline_then_calls",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("caller-before-call;").count(), 1, "{text}");
    assert_eq!(
        text.matches("closure-without-newline;").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("caller-after-call").count(), 1, "{text}");
}

fn helper_prints_without_newline_then_calls() {
    use std::io::Write;

    print!("caller-before-call;");
    // SAFETY: the closure only prints; the helper's other threads (the harness's) touch no lock it
    // needs at the fork.
    let outcome = unsafe {
        Limits::new().spawn_closure_unchecked(|| {
            print!("closure-without-newline;");
            7u8
        })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(outcome.value, Some(7));
    println!("caller-after-call");
    std::io::stdout().flush().unwrap();
}
