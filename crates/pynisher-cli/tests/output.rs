//! A program flooding its output: pass-through stays fast, capture into a file stays bounded.

mod common;
use pynisher_testkit::{lacking_programs, Trials};

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{finish, pynisher, read_report, TempDir};

const FLOOD: &str = "yes | head -c 300M";
const FLOOD_BYTES: u64 = 300 << 20;

fn a_flood_passes_through_to_dev_null_untouched() {
    let start = Instant::now();
    let output = pynisher()
        .args(["--wall-time", "60s", "--", "sh", "-c", FLOOD])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let result = finish(output, start.elapsed());
    assert_eq!(result.code, Some(0), "{result:?}");
    assert!(result.elapsed < Duration::from_secs(30), "{result:?}");
}

fn a_flood_into_a_file_is_bounded_by_the_output_limit_and_reported_truncated() {
    let dir = TempDir::new("flood");
    let out = dir.path_str("out.txt");
    let report = dir.path_str("r.json");
    let start = Instant::now();
    let output = pynisher()
        .args([
            "--stdout",
            &out,
            "--output-limit",
            "1MiB",
            &format!("--json={report}"),
            "--wall-time",
            "60s",
            "--",
            "sh",
            "-c",
            &format!("{FLOOD}; echo to-stderr >&2"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let result = finish(output, start.elapsed());
    assert_eq!(result.code, Some(0), "{result:?}");
    assert_eq!(result.stdout, "", "stdout went to the file");
    assert!(
        result.stderr.starts_with("to-stderr\n"),
        "stderr without a file is replayed: {result:?}"
    );
    assert!(result.stderr.contains("stdout truncated"), "{result:?}");
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size >= 1 << 20, "kept less than the limit: {size}");
    assert!(size <= (1 << 20) + 4096, "kept more than the limit: {size}");
    let head = std::fs::read(&out).unwrap();
    assert!(head.starts_with(b"y\ny\ny\n"));
    let report = read_report(&dir.join("r.json"));
    let stdout = &report["output"]["stdout"];
    assert_eq!(stdout["destination"], "file");
    assert_eq!(stdout["truncated"], true);
    assert_eq!(stdout["total_bytes"], FLOOD_BYTES);
    assert_eq!(stdout["written_bytes"], size);
    let stderr = &report["output"]["stderr"];
    assert_eq!(stderr["destination"], "replayed");
    assert_eq!(stderr["truncated"], false);
    assert_eq!(stderr["total_bytes"], 10);
}

fn small_output_is_written_whole_to_both_files() {
    let dir = TempDir::new("files");
    let out = dir.path_str("out.txt");
    let err = dir.path_str("err.txt");
    let output = pynisher()
        .args([
            "--quiet",
            "--stdout",
            &out,
            "--stderr",
            &err,
            "--",
            "sh",
            "-c",
            "echo one; echo two >&2; exit 4",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{output:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "two\n");
}

fn main() {
    let yes_and_head = lacking_programs(&["yes", "head"]);
    Trials::default()
        .needs(
            yes_and_head.clone(),
            "a_flood_passes_through_to_dev_null_untouched",
            a_flood_passes_through_to_dev_null_untouched,
        )
        .needs(
            yes_and_head.clone(),
            "a_flood_into_a_file_is_bounded_by_the_output_limit_and_reported_truncated",
            a_flood_into_a_file_is_bounded_by_the_output_limit_and_reported_truncated,
        )
        .needs(
            yes_and_head.clone(),
            "small_output_is_written_whole_to_both_files",
            small_output_is_written_whole_to_both_files,
        )
        .run()
}
