//! A closure's child is a copy of its caller, std's stdout buffer included: what the caller
//! printed without a newline must come out once (the caller's), not a second time from the child,
//! and what the closure printed without a newline must still come out.
//!
//! The caller runs in a fresh process of its own (a helper), so that its real stdout, not the test
//! harness's capture, is what is checked.

use pynisher::Limits;
use pynisher_testkit::{helper_process, Trials};

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
        .test(
            "a_line_unfinished_at_init_is_printed_once_not_by_every_zygote_call",
            a_line_unfinished_at_init_is_printed_once_not_by_every_zygote_call,
        )
        .helper(
            "helper_prints_without_newline_then_inits",
            helper_prints_without_newline_then_inits,
        )
        .run_one_at_a_time()
}

/// What helper `name` printed on its stdout, in a fresh process (it must succeed).
fn helper_stdout(name: &str) -> String {
    let out = helper_process(name).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

fn a_callers_unflushed_stdout_is_printed_once_and_the_closures_too() {
    let text = helper_stdout("helper_prints_without_newline_then_calls");
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
    // SAFETY: the closure only prints, and this helper runs alone in its process (one test at a
    // time), so no other thread holds the stdout lock at the fork.
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

fn a_line_unfinished_at_init_is_printed_once_not_by_every_zygote_call() {
    let text = helper_stdout("helper_prints_without_newline_then_inits");
    assert_eq!(text.matches("before-init;").count(), 1, "{text}");
    assert_eq!(text.matches("calls-done").count(), 1, "{text}");
}

fn triple(n: u32) -> u32 {
    n * 3
}

fn helper_prints_without_newline_then_inits() {
    use std::io::Write;

    print!("before-init;");
    pynisher::init().unwrap();
    for n in 0..3 {
        assert_eq!(Limits::new().run_fn(triple, n).unwrap().value, Some(n * 3));
    }
    println!("calls-done");
    std::io::stdout().flush().unwrap();
}
