//! The memory limit seen from the shell: exit status 123, the summary line and the report. It
//! needs a cgroup that can limit resident memory (root on cgroup v1, or a delegated cgroup v2 with
//! the memory controller) and python3; without them it is reported ignored, with the reason.

mod common;

use common::{run, run_with_report, TempDir};
use pynisher_testkit::Trials;

fn main() {
    let lacking = if python().is_none() {
        Some("needs python3 to allocate memory with".to_string())
    } else {
        resident_memory_lacking()
    };
    Trials::default()
        .needs(
            lacking,
            "the_memory_limit_exits_123",
            the_memory_limit_exits_123,
        )
        .run()
}

/// `Some(why)` when no backend here can limit resident memory (pynisher says which work here).
fn resident_memory_lacking() -> Option<String> {
    let result = run(&[
        "--memory",
        "1GiB",
        "--memory-kind",
        "resident",
        "--",
        "true",
    ]);
    (result.code == Some(125)).then(|| {
        format!(
            "needs a cgroup that can limit resident memory: {}",
            result.stderr.trim()
        )
    })
}

/// A real Python interpreter (not a pyenv shim, which forks helpers), for a memory hog.
fn python() -> Option<String> {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn the_memory_limit_exits_123() {
    let python = python().expect("checked in main");
    let dir = TempDir::new("memory");
    // Resident memory, so that the kernel's OOM kill decides; a Python MemoryError under an
    // address-space limit is only an exit code 1 that nothing can tell from any other failure.
    let (result, report) = run_with_report(
        &dir,
        &[
            "--memory",
            "100MiB",
            "--memory-kind",
            "resident",
            "--wall-time",
            "30s",
            "--",
            &python,
            "-c",
            "import time; b = b'x' * (400 << 20); time.sleep(5)",
        ],
    );
    assert_eq!(result.code, Some(123), "{result:?}\n{report:#}");
    assert_eq!(report["status"], "memory_limit");
    assert_eq!(report["memory_limit_kind"], "resident", "{report:#}");
    assert!(report["oom_kills"].as_u64().unwrap() >= 1, "{report:#}");
    assert!(
        result.stderr.contains("memory limit (100.0 MiB) reached"),
        "{result:?}"
    );
}
