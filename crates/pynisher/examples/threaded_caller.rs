//! A multi-threaded program limiting functions: 8 threads each make 25 limited calls through the
//! threaded path (`pynisher::init` + `Limits::run_fn`), plus one call that exceeds a 1 s wall
//! limit. It checks every value and status itself; the last line it prints is
//! `threaded: N calls ok, M wall timeouts, from 8 threads`, and it exits 0 only if all are right.
//!
//! Run: `cargo run --release -p pynisher --example threaded_caller`

use std::time::Duration;

use pynisher::{Limits, Status};

const THREADS: u64 = 8;
const CALLS_PER_THREAD: u64 = 25;

/// Steps of the Collatz sequence from `n` down to 1 (the work a limited call does).
fn collatz_steps(n: u64) -> u32 {
    let (mut n, mut steps) = (n, 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// Sleeps far past the wall limit.
fn oversleep(seconds: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(seconds));
    seconds
}

/// What one thread saw: calls right, wall timeouts right, and what was wrong.
type Tally = (u64, u64, Vec<String>);

fn one_thread(thread: u64, limits: Limits) -> Tally {
    let (mut ok, mut timeouts, mut wrong) = (0, 0, Vec::new());
    for i in 0..CALLS_PER_THREAD {
        let n = thread * 1000 + i + 1;
        match limits.run_fn(collatz_steps, n) {
            Ok(o) if o.status == Status::Completed && o.value == Some(collatz_steps(n)) => ok += 1,
            other => wrong.push(format!("thread {thread}, collatz_steps({n}): {other:?}")),
        }
    }
    match limits.run_fn(oversleep, 30) {
        Ok(o) if o.status == Status::WallTimeout && o.value.is_none() && o.killed => timeouts += 1,
        other => wrong.push(format!("thread {thread}, oversleep(30): {other:?}")),
    }
    (ok, timeouts, wrong)
}

/// Runs the 8 threads and reports; true when every value and status was right.
pub fn run() -> bool {
    let limits = Limits::new()
        .wall_time(Duration::from_secs(1))
        .memory(256 << 20);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let limits = limits.clone();
            std::thread::spawn(move || one_thread(t, limits))
        })
        .collect();
    let (mut ok, mut timeouts, mut wrong) = (0, 0, Vec::new());
    for t in threads {
        match t.join() {
            Ok((o, w, bad)) => {
                ok += o;
                timeouts += w;
                wrong.extend(bad);
            }
            Err(_) => wrong.push("a thread panicked".into()),
        }
    }
    for line in &wrong {
        println!("wrong: {line}");
    }
    println!("threaded: {ok} calls ok, {timeouts} wall timeouts, from {THREADS} threads");
    wrong.is_empty() && ok == THREADS * CALLS_PER_THREAD && timeouts == THREADS
}

fn main() {
    // First in main, before any thread: forks the zygote that runs every limited call.
    if let Err(e) = pynisher::init() {
        eprintln!("pynisher::init: {e}");
        std::process::exit(2);
    }
    if !run() {
        std::process::exit(1);
    }
}
