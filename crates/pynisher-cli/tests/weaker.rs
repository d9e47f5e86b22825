//! Without a cgroup (`--backend none`, what an ordinary user gets on a machine without a delegated
//! cgroup): the memory limit counts sampled resident memory and is reported as memory, the summary
//! line says in the same line what is weaker, and `--strict` refuses to run (issue 11 items 2, 3).

mod common;

use common::TempDir;

/// `common::run_with_report` on the process-group backend, under a 30 s wall limit.
fn run_with_report(dir: &TempDir, args: &[&str]) -> (common::Run, serde_json::Value) {
    let mut all = vec!["--backend", "none", "--wall-time", "30s"];
    all.extend_from_slice(args);
    common::run_with_report(dir, &all)
}

fn weakness_names(report: &serde_json::Value) -> Vec<String> {
    report["containment"]["weaknesses"]
        .as_array()
        .expect("weaknesses")
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn touching_past_the_memory_limit_without_a_cgroup_exits_123_as_a_memory_limit() {
    let dir = TempDir::new("sampled");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--memory",
            "100MiB",
            "--",
            "python3",
            "-c",
            "import time; b = bytearray(b'x') * (300 << 20); time.sleep(10)",
        ],
    );
    assert_eq!(result.code, Some(123), "{result:?}\n{report:#}");
    assert_eq!(report["status"], "memory_limit");
    assert_eq!(report["memory_limit_kind"], "sampled");
    assert_eq!(report["memory_measure"], "sampled");
    assert!(report["peak_memory_bytes"].as_u64().unwrap() >= 100 << 20);
    assert_eq!(
        weakness_names(&report),
        ["escapees_not_contained", "memory_sampled"]
    );
    let summary: Vec<&str> = result
        .stderr
        .lines()
        .filter(|l| l.starts_with("pynisher:"))
        .collect();
    assert_eq!(summary.len(), 1, "{result:?}");
    assert!(
        summary[0].starts_with("pynisher: memory limit (100.0 MiB) reached"),
        "{result:?}"
    );
    assert!(
        summary[0].ends_with(
            "; weaker guarantees (backend none): escapees not contained, memory sampled"
        ),
        "{result:?}"
    );
}

#[test]
fn a_tiny_memory_limit_is_a_memory_limit_not_a_loader_failure() {
    // Issue 11: `--memory 4MiB -- python3` reported "completed, exit code 127" (the loader's mmap
    // failed under RLIMIT_AS). The interpreter's own resident memory is past 4 MiB.
    let dir = TempDir::new("tiny");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--memory",
            "4MiB",
            "--",
            "python3",
            "-c",
            "import time; time.sleep(10)",
        ],
    );
    assert_eq!(result.code, Some(123), "{result:?}\n{report:#}");
    assert_eq!(report["status"], "memory_limit");
}

#[test]
fn reserving_address_space_is_not_using_memory() {
    // 1 GiB mapped, 20 MiB touched, under 100 MiB: completes (an address-space limit refused it).
    let dir = TempDir::new("reserve");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--memory",
            "100MiB",
            "--",
            "python3",
            "-c",
            "import mmap; m = mmap.mmap(-1, 1 << 30); m[: 20 << 20] = b'x' * (20 << 20)",
        ],
    );
    assert_eq!(result.code, Some(0), "{result:?}\n{report:#}");
    assert_eq!(report["status"], "completed");
}

#[test]
fn strict_refuses_to_run_what_the_backend_cannot_fully_enforce() {
    let dir = TempDir::new("strict");
    let marker = dir.path_str("ran");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--strict",
            "--max-processes",
            "4",
            "--",
            "touch",
            marker.as_str(),
        ],
    );
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(
        result.stderr.contains(
            "pynisher: strict mode: backend none cannot fully enforce this call: no cgroup"
        ),
        "{result:?}"
    );
    assert!(result.stderr.contains("polling"), "{result:?}");
    assert!(result.stderr.contains("without --strict"), "{result:?}");
    assert_eq!(report["status"], "error");
    assert!(!dir.join("ran").exists(), "the program must not have run");
}

#[test]
fn without_limits_that_need_more_the_summary_names_only_the_escapees() {
    let dir = TempDir::new("plain");
    let (result, report) = run_with_report(&dir, &["--", "true"]);
    assert_eq!(result.code, Some(0), "{result:?}");
    assert_eq!(weakness_names(&report), ["escapees_not_contained"]);
    assert!(
        result
            .stderr
            .trim_end()
            .ends_with("; weaker guarantees (backend none): escapees not contained"),
        "{result:?}"
    );
}
