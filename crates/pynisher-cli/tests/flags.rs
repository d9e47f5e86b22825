//! Flag validation: bad values exit 125 with a message naming the flag, and nothing is started.

mod common;

use common::{run, TempDir};

#[test]
fn bad_values_exit_125_with_a_message_naming_the_flag() {
    let dir = TempDir::new("flags");
    let marker = dir.path_str("started");
    let program = format!("touch {marker}");
    for (flag, value) in [
        ("--wall-time", "0s"),
        ("--wall-time", "ten seconds"),
        ("--cpu-time", "-1s"),
        ("--cpu-time", "5 fortnights"),
        ("--memory", "2 parsecs"),
        ("--memory", "0"),
        ("--max-processes", "0"),
        ("--max-processes", "-3"),
        ("--grace", "later"),
        ("--signal", "SIGNOPE"),
        ("--signal", "99"),
        ("--backend", "docker"),
        ("--memory-kind", "virtual"),
    ] {
        let result = run(&[flag, value, "--", "sh", "-c", &program]);
        assert_eq!(result.code, Some(125), "{flag} {value}: {result:?}");
        assert!(
            result.stderr.contains(flag),
            "{flag} {value}: message does not name the flag: {}",
            result.stderr
        );
        assert!(
            !dir.join("started").exists(),
            "{flag} {value}: the program ran"
        );
    }
}

/// Runs `pynisher FLAG VALUE -- true` and returns (exit code, stderr).
fn with(flag: &str, value: &str) -> (Option<i32>, String) {
    let result = run(&["--quiet", flag, value, "--", "true"]);
    (result.code, result.stderr)
}

#[test]
fn a_fractional_byte_count_is_refused_not_rounded_to_one_byte() {
    let (code, err) = with("--memory", "0.5");
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("--memory") && err.contains("whole number of bytes"),
        "{err}"
    );
    assert!(err.contains("0.5GiB"), "the message suggests a unit: {err}");
    assert_eq!(with("--memory", "0.5GiB").0, Some(0));
}

#[test]
fn a_negative_process_count_is_called_negative() {
    let (code, err) = with("--max-processes", "-1");
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("--max-processes") && err.contains("negative"),
        "{err}"
    );
}

#[test]
fn numbers_in_exponent_notation_are_numbers() {
    for (flag, value) in [
        ("--memory", "1e9"),
        ("--wall-time", "1e1"),
        ("--cpu-time", "5e3ms"),
        ("--max-processes", "1e3"),
    ] {
        let (code, err) = with(flag, value);
        assert_eq!(code, Some(0), "{flag} {value}: {err}");
    }
}

#[test]
fn a_process_count_beyond_the_kernels_limit_is_refused_not_unlimited() {
    let (code, err) = with("--max-processes", "99999999999");
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("--max-processes") && err.contains("4194304"),
        "{err}"
    );
    assert_eq!(with("--max-processes", "4194304").0, Some(0));
}

#[test]
fn a_huge_signal_number_is_out_of_range_not_an_unknown_name() {
    let (code, err) = with("--signal", "9999999999");
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("--signal") && err.contains("out of range"),
        "{err}"
    );
    assert!(!err.contains("name"), "{err}");
}

#[test]
fn output_limit_without_an_output_file_is_refused() {
    let result = run(&["--output-limit", "1MiB", "--", "true"]);
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(result.stderr.contains("--output-limit"), "{result:?}");
}

#[test]
fn an_unknown_flag_exits_125_and_is_not_taken_for_the_program() {
    let result = run(&["--wall-tim", "1s", "--", "true"]);
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(result.stderr.contains("--wall-tim"), "{result:?}");
}

#[test]
fn a_missing_program_is_a_usage_error() {
    let result = run(&["--wall-time", "1s"]);
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(result.stderr.contains("PROGRAM"), "{result:?}");
}

#[test]
fn an_unwritable_report_file_fails_before_the_program_starts() {
    let dir = TempDir::new("unwritable");
    let marker = dir.path_str("started");
    let result = run(&[
        "--json=/nonexistent-dir/report.json",
        "--",
        "sh",
        "-c",
        &format!("touch {marker}"),
    ]);
    assert_eq!(result.code, Some(125), "{result:?}");
    assert!(result.stderr.contains("--json"), "{result:?}");
    assert!(!dir.join("started").exists());
}

#[test]
fn help_has_examples_exit_codes_and_the_report_schema() {
    let short = run(&["-h"]);
    assert_eq!(short.code, Some(0));
    assert!(short.stdout.contains("Examples:"), "{}", short.stdout);
    assert!(short.stdout.contains("124 time limit"), "{}", short.stdout);
    let long = run(&["--help"]);
    assert_eq!(long.code, Some(0));
    for needle in [
        "pynisher-report/1",
        "123      the memory limit was reached",
        "122      the process-count limit was reached",
        "peak_memory_bytes",
        "containment",
        "--wall-time <DURATION>",
    ] {
        assert!(long.stdout.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn version_is_printed() {
    let result = run(&["--version"]);
    assert_eq!(result.code, Some(0));
    assert!(result.stdout.starts_with("pynisher "), "{}", result.stdout);
}
