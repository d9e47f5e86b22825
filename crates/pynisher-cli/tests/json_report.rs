//! The JSON report (`pynisher-report/1`): written where `--json` says, parseable, and carrying every
//! documented field with the right types.

mod common;

use common::{read_report, run, TempDir};
use serde_json::Value;

/// Every top-level field documented in `--help` and docs/cli.md.
const FIELDS: [&str; 24] = [
    "schema",
    "pynisher_version",
    "command",
    "status",
    "exit_status",
    "message",
    "limits",
    "program",
    "soft_signal_sent",
    "killed",
    "cancel_signal",
    "spawn_error",
    "error",
    "wall_time_s",
    "cpu_time_s",
    "cpu_measure",
    "peak_memory_bytes",
    "memory_measure",
    "memory_limit_kind",
    "oom_kills",
    "processes_refused",
    "leftovers_killed",
    "output",
    "containment",
];

#[test]
fn the_report_file_round_trips_with_every_documented_field() {
    let dir = TempDir::new("report");
    let path = dir.path_str("r.json");
    let result = run(&[
        &format!("--json={path}"),
        "--wall-time",
        "1m30s",
        "--cpu-time",
        "10s",
        "--memory",
        "1GiB",
        "--max-processes",
        "64",
        "--",
        "sh",
        "-c",
        "echo hello; exit 7",
    ]);
    assert_eq!(result.code, Some(7), "{result:?}");
    assert_eq!(result.stdout, "hello\n", "the report went to the file only");
    let report = read_report(&dir.join("r.json"));
    let object = report.as_object().unwrap();
    for field in FIELDS {
        assert!(object.contains_key(field), "missing {field}: {report:#}");
    }
    assert_eq!(report["schema"], "pynisher-report/1");
    assert_eq!(report["status"], "completed");
    assert_eq!(report["exit_status"], 7);
    assert_eq!(report["program"]["exit_code"], 7);
    assert_eq!(report["program"]["signal"], Value::Null);
    assert_eq!(
        report["command"],
        serde_json::json!(["sh", "-c", "echo hello; exit 7"])
    );
    assert_eq!(report["limits"]["wall_time_s"], 90.0);
    assert_eq!(report["limits"]["cpu_time_s"], 10.0);
    assert_eq!(report["limits"]["memory_bytes"], 1u64 << 30);
    assert_eq!(report["limits"]["max_processes"], 64);
    assert_eq!(report["limits"]["grace_period_s"], 2.0);
    assert_eq!(report["limits"]["soft_signal"], libc::SIGTERM);
    assert_eq!(report["limits"]["backend"], "auto");
    assert!(report["wall_time_s"].as_f64().unwrap() > 0.0);
    let cpu = &report["cpu_time_s"];
    let (user, system, total) = (
        cpu["user"].as_f64().unwrap(),
        cpu["system"].as_f64().unwrap(),
        cpu["total"].as_f64().unwrap(),
    );
    assert!((user + system - total).abs() < 1e-6, "{cpu}");
    assert!(matches!(
        report["cpu_measure"].as_str(),
        Some("cgroup" | "process_tree")
    ));
    assert!(matches!(
        report["memory_measure"].as_str(),
        Some("cgroup_peak" | "max_rss_of_one_process")
    ));
    let backend = report["containment"]["backend"].as_str().unwrap();
    assert!(
        ["cgroup2", "cgroup1", "none"].contains(&backend),
        "{backend}"
    );
    let guarantees = &report["containment"]["guarantees"];
    for flag in [
        "all_descendants_contained",
        "exact_tree_cpu_time",
        "tree_memory_limit",
        "kernel_process_limit",
    ] {
        assert!(guarantees[flag].is_boolean(), "{flag}: {guarantees}");
    }
    assert!(guarantees["notes"].is_array());
    assert_eq!(report["output"]["stdout"]["destination"], "inherit");
    assert_eq!(report["oom_kills"], 0);
    assert_eq!(report["leftovers_killed"], 0);
}

#[test]
fn json_without_a_file_is_the_last_line_of_stdout_after_the_program_output() {
    let result = run(&["--json", "--quiet", "--", "sh", "-c", "echo program output"]);
    assert_eq!(result.code, Some(0), "{result:?}");
    let mut lines = result.stdout.lines();
    assert_eq!(lines.next(), Some("program output"));
    let report: Value = serde_json::from_str(lines.next().expect("a report line")).unwrap();
    assert_eq!(lines.next(), None, "the report is one line");
    assert_eq!(report["schema"], "pynisher-report/1");
    assert_eq!(report["status"], "completed");
}

#[test]
fn a_spawn_failure_is_reported_with_its_errno() {
    let dir = TempDir::new("spawnfail");
    let path = dir.path_str("r.json");
    let result = run(&[&format!("--json={path}"), "--", "/nonexistent/prog"]);
    assert_eq!(result.code, Some(127));
    let report = read_report(&dir.join("r.json"));
    assert_eq!(report["status"], "spawn_failed");
    assert_eq!(report["exit_status"], 127);
    assert_eq!(report["spawn_error"]["errno"], libc::ENOENT);
}

#[test]
fn an_unavailable_backend_is_a_pynisher_error_in_the_report() {
    // The process group can never limit resident memory: always a pynisher error, exit 125.
    let dir = TempDir::new("backend");
    let path = dir.path_str("r.json");
    let marker = dir.path_str("started");
    let result = run(&[
        &format!("--json={path}"),
        "--backend",
        "none",
        "--memory",
        "1GiB",
        "--memory-kind",
        "resident",
        "--",
        "sh",
        "-c",
        &format!("touch {marker}"),
    ]);
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(result.stderr.contains("unavailable"), "{result:?}");
    assert!(
        result.stderr.contains("--memory-kind address-space"),
        "the hint names the flag: {result:?}"
    );
    assert!(!dir.join("started").exists(), "the program ran");
    let report = read_report(&dir.join("r.json"));
    assert_eq!(report["schema"], "pynisher-report/1");
    assert_eq!(report["status"], "error");
    assert_eq!(report["exit_status"], 125);
    assert!(
        report["error"].as_str().unwrap().contains("unavailable"),
        "{report:#}"
    );
    assert_eq!(report["containment"], Value::Null);
    assert_eq!(report["limits"]["memory_kind"], "resident");
}
