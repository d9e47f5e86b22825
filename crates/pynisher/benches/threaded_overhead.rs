//! Per-call cost of the threaded path (`pynisher::init` + `Limits::run_fn`: zygote, per-call
//! supervisor process, socket) beside the single-threaded fork path (`Limits::run_closure`),
//! measured in the same run (shared machines drift: compare ratios, not absolute numbers).
//!
//! Run: `cargo bench -p pynisher --bench threaded_overhead` (add `-- --quick` for fewer calls).
//!
//! Target (issue 14): a call from a threaded caller ≤ 2× a `run_closure` call.
//!
//! 1. Latency, call by call: `run_fn` and `run_closure` alternate on the main thread (`run_closure`
//!    needs a single-threaded caller, so the threaded path is timed here from the same thread; its
//!    cost does not depend on how many threads the caller has).
//! 2. Throughput from 8 threads: rounds alternate between `run_closure` calls one after another
//!    (the only way the fork path can run) and the same number of `run_fn` calls spread over 8
//!    threads; per-call time = round time / calls.

use std::time::{Duration, Instant};

use pynisher::{Backend, Limits};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn report(name: &str, times: &[Duration], baseline: Option<&[Duration]>) {
    let median = percentile(times, 0.5);
    let ratio = baseline
        .map(|b| {
            format!(
                "  ratio {:.2}x",
                median.as_secs_f64() / percentile(b, 0.5).as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<52} median {:>8.1} µs  p10 {:>8.1} µs  p90 {:>8.1} µs{ratio}",
        median.as_secs_f64() * 1e6,
        percentile(times, 0.1).as_secs_f64() * 1e6,
        percentile(times, 0.9).as_secs_f64() * 1e6,
    );
}

fn echo(n: u32) -> u32 {
    n
}

fn main() {
    pynisher::init().expect("init first in main");
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100 } else { 500 };
    let mut backends = vec![Backend::ProcessGroup];
    backends.extend(
        pynisher::available_backends()
            .into_iter()
            .filter(|b| *b != Backend::ProcessGroup),
    );

    println!("# per-call latency ({n} calls each, interleaved call by call with the baseline)");
    for &b in &backends {
        let limits = Limits::new().backend(b);
        let (mut base, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n + n / 10 {
            let t = Instant::now();
            assert_eq!(limits.run_closure(|| 42u32).unwrap().value, Some(42));
            let closure = t.elapsed();
            let t = Instant::now();
            assert_eq!(limits.run_fn(echo, 42).unwrap().value, Some(42));
            let function = t.elapsed();
            if i >= n / 10 {
                base.push(closure);
                times.push(function);
            }
        }
        base.sort();
        times.sort();
        report(
            &format!("  baseline: run_closure returning 42 [{}]", b.name()),
            &base,
            None,
        );
        report(
            &format!("  run_fn returning 42 (zygote) [{}]", b.name()),
            &times,
            Some(&base),
        );
    }

    let threads = 8usize;
    let per_round = if quick { 80 } else { 200 };
    let rounds = if quick { 3 } else { 7 };
    println!(
        "\n# per-call time from {threads} threads ({rounds} rounds of {per_round} calls, alternating with \
         the baseline round)"
    );
    for &b in &backends {
        let limits = Limits::new().backend(b);
        let (mut base, mut times) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..per_round {
                assert_eq!(limits.run_closure(|| 42u32).unwrap().value, Some(42));
            }
            base.push(t.elapsed() / per_round as u32);
            let t = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let limits = limits.clone();
                    std::thread::spawn(move || {
                        for _ in 0..per_round / threads {
                            assert_eq!(limits.run_fn(echo, 42).unwrap().value, Some(42));
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            times.push(t.elapsed() / per_round as u32);
        }
        base.sort();
        times.sort();
        report(
            &format!("  baseline: run_closure, one after another [{}]", b.name()),
            &base,
            None,
        );
        report(
            &format!("  run_fn from {threads} threads [{}]", b.name()),
            &times,
            Some(&base),
        );
    }
}
