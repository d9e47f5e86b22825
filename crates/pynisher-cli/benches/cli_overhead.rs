//! CLI overhead, measured against GNU `timeout` and a bare program in the same run:
//!
//! 1. wall-limit overshoot: `pynisher --wall-time 1s -- sleep 5` beside `timeout 1 sleep 5`
//!    (elapsed − 1 s, runs interleaved; target: pynisher's median within 1 ms of timeout's);
//! 2. start-up overhead: `pynisher -- /bin/true` beside `/bin/true` alone (ratio of medians) and
//!    beside `timeout 10 /bin/true` (GNU timeout's own start-up; target: pynisher on the cgroup
//!    backend within +0.5 ms of it).
//!
//! `cargo bench -p pynisher-cli --bench cli_overhead` builds and runs the optimised binary.
//! Set `PYNISHER_BENCH_RUNS` to change the 20 runs of part 1.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYNISHER: &str = env!("CARGO_BIN_EXE_pynisher");

/// Runs a command with all three streams on /dev/null and returns its wall time and exit code.
///
/// Without the `LD_LIBRARY_PATH` that `cargo bench` sets for the bench (four directories): the
/// dynamic loader of every program measured would first probe them and their hardware-capability
/// subdirectories, about 150 failed `openat`/`stat` per `exec`, which no shell user pays.
fn time_run(program: &str, args: &[&str]) -> (Duration, Option<i32>) {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (start.elapsed(), status.code())
}

/// min, median and 99th percentile (nearest rank) of a sample.
fn stats(sample: &mut [f64]) -> (f64, f64, f64) {
    sample.sort_by(f64::total_cmp);
    let n = sample.len();
    let median = if n % 2 == 1 {
        sample[n / 2]
    } else {
        (sample[n / 2 - 1] + sample[n / 2]) / 2.0
    };
    let p99_rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
    (sample[0], median, sample[p99_rank])
}

fn print_row(label: &str, unit: &str, sample: &mut [f64]) -> f64 {
    let (min, median, p99) = stats(sample);
    println!(
        "  {label:<58} min {min:>8.3} {unit}  median {median:>8.3} {unit}  p99 {p99:>8.3} {unit}  (n={})",
        sample.len()
    );
    median
}

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pynisher variants measured: the automatic backend (a cgroup where the machine has one) and
/// the process-group backend, which shows pynisher's cost without the cgroup set-up.
const VARIANTS: [(&str, &[&str]); 2] = [
    ("pynisher", &["--quiet"]),
    ("pynisher --backend none", &["--quiet", "--backend", "none"]),
];

fn wall_overshoot(runs: usize) {
    println!("wall-limit overshoot (elapsed - 1 s), {runs} interleaved runs each:");
    if !has_program("timeout") || !has_program("sleep") {
        println!("  SKIPPED: needs GNU timeout and sleep");
        return;
    }
    let mut gnu = Vec::with_capacity(runs);
    let mut ours: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); VARIANTS.len()];
    for _ in 0..runs {
        let (elapsed, code) = time_run("timeout", &["1", "sleep", "5"]);
        assert_eq!(code, Some(124), "timeout 1 sleep 5");
        gnu.push((elapsed.as_secs_f64() - 1.0) * 1e3);
        for ((label, flags), sample) in VARIANTS.iter().zip(&mut ours) {
            let mut args = flags.to_vec();
            args.extend_from_slice(&["--wall-time", "1s", "--", "sleep", "5"]);
            let (elapsed, code) = time_run(PYNISHER, &args);
            assert_eq!(code, Some(124), "{label} --wall-time 1s -- sleep 5");
            sample.push((elapsed.as_secs_f64() - 1.0) * 1e3);
        }
    }
    let gnu_median = print_row("timeout 1 sleep 5", "ms", &mut gnu);
    for ((label, _), sample) in VARIANTS.iter().zip(&mut ours) {
        let median = print_row(&format!("{label} --wall-time 1s -- sleep 5"), "ms", sample);
        let difference = median - gnu_median;
        println!(
            "    median difference ({label} - timeout): {difference:+.3} ms  [target: within 1 ms] {}",
            if difference.abs() <= 1.0 { "MET" } else { "NOT MET" }
        );
    }
}

fn startup_overhead(runs: usize) {
    println!("start-up overhead, {runs} interleaved runs each:");
    let mut bare = Vec::with_capacity(runs);
    let with_timeout = has_program("timeout");
    let mut gnu = Vec::with_capacity(runs);
    let mut ours: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); VARIANTS.len()];
    for _ in 0..runs {
        let (elapsed, code) = time_run("/bin/true", &[]);
        assert_eq!(code, Some(0));
        bare.push(elapsed.as_secs_f64() * 1e3);
        if with_timeout {
            let (elapsed, code) = time_run("timeout", &["10", "/bin/true"]);
            assert_eq!(code, Some(0), "timeout 10 /bin/true");
            gnu.push(elapsed.as_secs_f64() * 1e3);
        }
        for ((label, flags), sample) in VARIANTS.iter().zip(&mut ours) {
            let mut args = flags.to_vec();
            args.extend_from_slice(&["--", "/bin/true"]);
            let (elapsed, code) = time_run(PYNISHER, &args);
            assert_eq!(code, Some(0), "{label} -- /bin/true");
            sample.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    let bare_median = print_row("/bin/true", "ms", &mut bare);
    let gnu_median = with_timeout.then(|| print_row("timeout 10 /bin/true", "ms", &mut gnu));
    for ((label, _), sample) in VARIANTS.iter().zip(&mut ours) {
        let median = print_row(&format!("{label} -- /bin/true"), "ms", sample);
        println!(
            "    median overhead: {:+.3} ms, ratio {:.1}x",
            median - bare_median,
            median / bare_median
        );
        if let Some(gnu_median) = gnu_median {
            let difference = median - gnu_median;
            println!(
                "    median overhead over timeout: {difference:+.3} ms, ratio {:.2}x  [target: +0.5 ms] {}",
                median / gnu_median,
                if difference <= 0.5 { "MET" } else { "NOT MET" }
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run a quick
    // smoke version there so the bench target is still exercised.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = std::env::var("PYNISHER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 20 });
    println!("pynisher binary: {PYNISHER}");
    wall_overshoot(runs);
    startup_overhead(if quick { 5 } else { 200 });
}
