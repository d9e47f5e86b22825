//! Signals to pynisher itself: SIGINT/SIGTERM/SIGHUP end the whole limited tree and are reported;
//! SIGKILL of pynisher takes the tree down too.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{assert_all_gone, is_alive, pynisher, read_report, wait_for_pids, TempDir};

/// Starts `pynisher` on a shell that starts a `sleep 30` grandchild, then sleeps itself; returns
/// pynisher and the pids of the shell and of the grandchild, once both are running.
fn start_tree(dir: &TempDir, extra: &[&str]) -> (Child, i32, i32) {
    let pidfile = dir.path_str("pids");
    let script = format!("sleep 30 & echo $$ $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait");
    let child = pynisher()
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = wait_for_pids(&dir.join("pids"), 2, Duration::from_secs(10));
    // The background job may not have exec'd `sleep` yet when the shell writes its pid.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(is_alive(pids[0], "sh") && is_alive(pids[1], "sleep")) {
        assert!(
            Instant::now() < deadline,
            "the tree did not start: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, pids[0], pids[1])
}

fn wait_with_deadline(mut child: Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pynisher did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The backends to check: the automatic choice, and the process group that every machine has.
const BACKENDS: [&str; 2] = ["auto", "none"];

#[test]
fn sigint_sigterm_and_sighup_end_the_tree_and_are_reported_as_cancelled() {
    for backend in BACKENDS {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            let dir = TempDir::new("cancel");
            let report = dir.path_str("r.json");
            let (child, shell, grandchild) =
                start_tree(&dir, &[&format!("--json={report}"), "--backend", backend]);
            let pid = child.id() as i32;
            let sent = Instant::now();
            // SAFETY: signalling the pynisher process this test started and has not reaped.
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
            let output = wait_with_deadline(child, Duration::from_secs(5));
            let took = sent.elapsed();
            assert_eq!(
                output.status.signal(),
                Some(signal),
                "{backend}: pynisher ends itself by the signal it got: {output:?}"
            );
            assert!(
                took < Duration::from_secs(2),
                "{backend}: cancel took {took:?}"
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("cancelled by SIG"), "{stderr}");
            let report = read_report(&dir.join("r.json"));
            assert_eq!(report["status"], "cancelled");
            assert_eq!(report["cancel_signal"], signal);
            assert_eq!(report["exit_status"], 128 + signal);
            // pynisher has already reaped or killed them: no waiting needed beyond PID 1's reaping.
            assert_all_gone(
                &[(shell, "sh"), (grandchild, "sleep")],
                Duration::from_millis(200),
            );
        }
    }
}

#[test]
fn sigkill_of_pynisher_kills_the_tree() {
    for backend in BACKENDS {
        let dir = TempDir::new("sigkill");
        let (mut child, shell, grandchild) =
            start_tree(&dir, &["--wall-time", "60s", "--backend", backend]);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The grandchild is not reached by the engine's PDEATHSIG (only the first process is);
        // pynisher's guard process kills the group. Zombies waiting for PID 1 count as dead.
        assert_all_gone(
            &[(shell, "sh"), (grandchild, "sleep")],
            Duration::from_secs(1),
        );
    }
}

#[test]
fn a_cancel_signal_before_the_program_ends_is_never_lost() {
    // SIGTERM right after start: whether it lands before or after the program starts, the run
    // ends as cancelled, quickly.
    let child = pynisher()
        .args(["--quiet", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: signalling the pynisher process this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let output = wait_with_deadline(child, Duration::from_secs(5));
    assert_eq!(output.status.signal(), Some(libc::SIGTERM), "{output:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn sigkill_of_pynisher_kills_a_setsid_escapee_and_removes_the_leaves_on_a_cgroup_backend() {
    let dir = TempDir::new("escapee");
    let pidfile = dir.path_str("pids");
    // `setsid` in a background job of a non-interactive shell (not a group leader) calls
    // setsid() and execs: the sleep leaves the program's process group and session.
    let script =
        format!("setsid sleep 30 & echo $$ $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait");
    let report = dir.path_str("r.json");
    let mut child = pynisher()
        .args([
            "--wall-time",
            "60s",
            "--backend",
            "auto",
            &format!("--json={report}"),
        ])
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = wait_for_pids(&dir.join("pids"), 2, Duration::from_secs(10));
    let (shell, escapee) = (pids[0], pids[1]);
    // The escapee must really have left the group before we kill pynisher.
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::process_group(escapee) == common::process_group(shell) {
        assert!(Instant::now() < deadline, "setsid did not take effect");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{escapee}/cgroup")).unwrap_or_default();
    let leaves = common::call_leaves(&cgroup);
    assert!(
        leaves.iter().any(|l| l.is_dir()),
        "this machine has a cgroup backend (root, cgroup v1): the call must run in a leaf"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_all_gone(&[(shell, "sh"), (escapee, "sleep")], Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(3);
    while leaves.iter().any(|l| l.exists()) {
        assert!(Instant::now() < deadline, "leaves left behind: {leaves:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
