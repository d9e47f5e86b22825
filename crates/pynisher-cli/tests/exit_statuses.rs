//! Each way a program can end, seen from the shell: pynisher's exit status, its summary line and
//! the report's status.

mod common;

use std::time::Duration;

use common::{run, run_with_report, TempDir};

#[test]
fn a_program_that_exits_by_itself_passes_its_code_through() {
    let result = run(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(result.code, Some(3), "{result:?}");
    assert!(
        result.stderr.contains("pynisher: completed, exit code 3"),
        "{result:?}"
    );
    let result = run(&["--", "true"]);
    assert_eq!(result.code, Some(0), "{result:?}");
}

#[test]
fn the_program_output_passes_through_by_default() {
    let result = run(&["--quiet", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(result.code, Some(0));
    assert_eq!(result.stdout, "out\n");
    assert_eq!(result.stderr, "err\n", "--quiet prints no summary");
}

#[test]
fn the_wall_time_limit_exits_124_soon_after_the_limit() {
    let dir = TempDir::new("wall");
    let (result, report) = run_with_report(&dir, &["--wall-time", "300ms", "--", "sleep", "5"]);
    assert_eq!(result.code, Some(124), "{result:?}");
    assert_eq!(report["status"], "wall_timeout");
    let wall = report["wall_time_s"].as_f64().unwrap();
    assert!(wall >= 0.3, "ended before the limit: {wall}");
    assert!(wall < 2.0, "ended long after the limit: {wall}");
    assert!(result.elapsed >= Duration::from_millis(300));
    assert!(result.elapsed < Duration::from_secs(3), "{result:?}");
    assert!(
        result.stderr.contains("wall-time limit (0.300s) reached"),
        "{result:?}"
    );
}

#[test]
fn the_cpu_time_limit_exits_124_after_that_much_cpu() {
    let dir = TempDir::new("cpu");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--cpu-time",
            "500ms",
            "--wall-time",
            "20s",
            "--",
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    assert_eq!(result.code, Some(124), "{result:?}");
    assert_eq!(report["status"], "cpu_timeout");
    let cpu = report["cpu_time_s"]["total"].as_f64().unwrap();
    assert!(cpu >= 0.5, "stopped before the CPU limit: {cpu}");
    assert!(cpu < 3.0, "stopped long after the CPU limit: {cpu}");
    assert!(result.elapsed < Duration::from_secs(10), "{result:?}");
}

#[test]
fn the_process_limit_exits_122() {
    // Refused forks (cgroup pids.max) or polling (process group): the same status either way.
    for backend in ["auto", "none"] {
        let dir = TempDir::new("processes");
        let (result, report) = run_with_report(
            &dir,
            &[
                "--backend",
                backend,
                "--max-processes",
                "4",
                "--wall-time",
                "20s",
                "--",
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; wait",
            ],
        );
        assert_eq!(result.code, Some(122), "{backend}: {result:?}\n{report:#}");
        assert_eq!(report["status"], "process_limit");
        assert!(
            result.stderr.contains("process limit (4) reached"),
            "{backend}: {result:?}"
        );
        assert!(
            result.elapsed < Duration::from_secs(3),
            "{backend}: {result:?}"
        );
    }
}

#[test]
fn a_program_killed_by_a_signal_exits_128_plus_the_signal() {
    let result = run(&["--", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(result.code, Some(128 + libc::SIGUSR1), "{result:?}");
    assert!(result.stderr.contains("killed by SIGUSR1"), "{result:?}");
}

#[test]
fn a_missing_program_exits_127() {
    let result = run(&["--", "/nonexistent/program-pynisher-test"]);
    assert_eq!(result.code, Some(127), "{result:?}");
    assert!(result.stderr.contains("could not start"), "{result:?}");
    let result = run(&["--", "no-such-program-pynisher-test"]);
    assert_eq!(result.code, Some(127), "{result:?}");
}

#[test]
fn a_program_that_is_not_executable_exits_126() {
    let dir = TempDir::new("noexec");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    // Without the execute bit. (root may still be refused: exec needs at least one x bit.)
    let result = run(&["--", script.to_str().unwrap()]);
    assert_eq!(result.code, Some(126), "{result:?}");
    let result = run(&["--", dir.join("").to_str().unwrap()]);
    assert_eq!(result.code, Some(126), "a directory: {result:?}");
}

#[test]
fn a_soft_signal_lets_the_program_clean_up_within_the_grace_period() {
    let dir = TempDir::new("soft");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--wall-time",
            "300ms",
            "--grace",
            "3s",
            "--signal",
            "USR1",
            "--",
            "sh",
            "-c",
            "trap 'echo cleaned up; exit 0' USR1; while :; do sleep 0.05; done",
        ],
    );
    assert_eq!(result.code, Some(124), "{result:?}");
    assert_eq!(report["soft_signal_sent"], libc::SIGUSR1);
    assert!(result.stdout.contains("cleaned up"), "{result:?}");
    assert!(
        result.elapsed < Duration::from_millis(2500),
        "waited out the grace period: {result:?}"
    );
}

#[test]
fn a_program_ignoring_the_soft_signal_is_killed_after_the_grace_period() {
    let dir = TempDir::new("grace");
    let (result, report) = run_with_report(
        &dir,
        &[
            "--wall-time",
            "200ms",
            "--grace",
            "400ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.05; done",
        ],
    );
    assert_eq!(result.code, Some(124), "{result:?}");
    assert_eq!(report["soft_signal_sent"], libc::SIGTERM);
    assert_eq!(report["killed"], true);
    let wall = report["wall_time_s"].as_f64().unwrap();
    assert!(wall >= 0.6, "killed before limit + grace: {wall}");
    assert!(wall < 3.0, "{wall}");
}

#[test]
fn verbose_without_a_terminal_prints_the_limits_but_no_live_line() {
    let result = run(&[
        "--verbose",
        "--wall-time",
        "5s",
        "--memory",
        "1GiB",
        "--",
        "true",
    ]);
    assert_eq!(result.code, Some(0));
    assert!(
        result.stderr.contains("with wall 5.000s, memory 1.0 GiB"),
        "{result:?}"
    );
    assert!(!result.stderr.contains('\r'), "{result:?}");
}

#[test]
fn a_program_killed_by_sigint_makes_pynisher_end_by_sigint_too() {
    // So that an interactive shell treats Ctrl-C during `pynisher … -- prog` as it would during
    // `prog` alone (stopping a loop); the shell still sees 130.
    use std::os::unix::process::ExitStatusExt;
    let status = common::pynisher()
        .args(["--quiet", "--", "sh", "-c", "kill -INT $$"])
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

#[test]
fn a_closed_stderr_pipe_does_not_change_the_exit_status() {
    // `pynisher … 2>&1 | head -1`: the reader is gone when pynisher prints its summary.
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just created these descriptors and nothing else owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    let status = common::pynisher()
        .args(["--", "sh", "-c", "exit 3"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");
}

/// Runs `pynisher ARGS` the way a daemon that ignores SIGCHLD would start it: the ignored
/// disposition survives `execve`.
fn run_ignoring_sigchld(args: &[&str]) -> common::Run {
    use std::os::unix::process::CommandExt;
    let start = std::time::Instant::now();
    let mut command = common::pynisher();
    command.args(args).stdin(std::process::Stdio::null());
    // SAFETY: signal(2) is async-signal-safe; it only changes the about-to-exec child.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    common::finish(command.output().expect("pynisher starts"), start.elapsed())
}

#[test]
fn a_program_started_by_a_caller_ignoring_sigchld_keeps_its_exit_code_and_leaves_nothing() {
    for backend in pynisher::available_backends() {
        let name = backend.name();
        let result = run_ignoring_sigchld(&["--backend", name, "--", "sh", "-c", "exit 7"]);
        assert_eq!(result.code, Some(7), "{name}: {result:?}");
        assert!(
            result.stderr.contains("completed, exit code 7"),
            "{name}: {result:?}"
        );

        let dir = TempDir::new("sigchld-leftover");
        let pidfile = dir.path_str("pid");
        let script = format!("sleep 1000 & echo $! > {pidfile}; exit 0");
        let result = run_ignoring_sigchld(&["--backend", name, "--", "sh", "-c", &script]);
        assert_eq!(result.code, Some(0), "{name}: {result:?}");
        let pids = common::wait_for_pids(&dir.join("pid"), 1, Duration::from_secs(1));
        common::assert_all_gone(&[(pids[0], "sleep")], Duration::from_secs(2));

        let result = run_ignoring_sigchld(&[
            "--backend",
            name,
            "--wall-time",
            "300ms",
            "--",
            "sleep",
            "5",
        ]);
        assert_eq!(result.code, Some(124), "{name}: {result:?}");
    }
}
