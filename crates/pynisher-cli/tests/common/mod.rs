//! Helpers shared by the integration tests: running the built `pynisher`, temporary directories,
//! and telling live processes from zombies and vanished ones.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `pynisher` binary built for these tests.
pub fn pynisher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pynisher"))
}

/// What one run of `pynisher` produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal, when it was killed by one.
    pub signal: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// Runs `pynisher ARGS` with stdin closed and waits for it.
pub fn run(args: &[&str]) -> Run {
    let start = Instant::now();
    let output = pynisher()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("pynisher starts");
    finish(output, start.elapsed())
}

/// Turns an [`Output`] into a [`Run`].
pub fn finish(output: Output, elapsed: Duration) -> Run {
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: output.status.code(),
        signal: output.status.signal(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after the test (no spaces: paths go into shell scripts).
    pub fn new(name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pynisher-cli-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory as text, for shell commands.
    pub fn path_str(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses a JSON report file.
pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the report file exists");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is JSON ({e}): {text}"))
}

/// Whether a program is on `PATH`.
pub fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The state letter of a process (`R`, `S`, `Z`, …) and its command name, or `None` when it is gone.
pub fn process_state(pid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let state = stat[close + 2..].chars().next()?;
    Some((state, comm))
}

/// True while `pid` is a live (not zombie) process whose command name is `comm`. A zombie is dead:
/// it only waits for its parent (or PID 1, which reaps orphans late here) to collect it.
pub fn is_alive(pid: i32, comm: &str) -> bool {
    matches!(process_state(pid), Some((state, name)) if state != 'Z' && name == comm)
}

/// Waits up to `timeout` for `path` to hold at least `count` whitespace-separated pids.
pub fn wait_for_pids(path: &Path, count: usize, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<i32> = text
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if pids.len() >= count && text.ends_with('\n') {
                return pids;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not get {count} pids in time",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until none of `pids` is alive, or panics after `timeout` naming the survivors.
pub fn assert_all_gone(pids: &[(i32, &str)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<_> = pids
            .iter()
            .filter(|(pid, comm)| is_alive(*pid, comm))
            .collect();
        if alive.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for (pid, comm) in &alive {
                // Do not leave them behind for the next test.
                // SAFETY: kill with a pid we just saw alive running the expected command.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
                eprintln!("survivor {pid} ({comm}): {:?}", process_state(*pid));
            }
            panic!("processes still alive after {timeout:?}: {alive:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process group of `pid`, or `None` when it is gone.
pub fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].split_whitespace().nth(2)?.parse().ok()
}

/// Runs pynisher with `--json` into `dir` before `args`; returns the run and the parsed report.
pub fn run_with_report(dir: &TempDir, args: &[&str]) -> (Run, serde_json::Value) {
    let report = dir.path_str("report.json");
    let json = format!("--json={report}");
    let mut all = vec![json.as_str()];
    all.extend_from_slice(args);
    let result = run(&all);
    let value = read_report(&dir.join("report.json"));
    (result, value)
}

/// The call leaves (`…/call-…`) named in a `/proc/<pid>/cgroup` text, as directories under their
/// hierarchies' mount points (`/sys/fs/cgroup/<controllers>`, or `unified` for cgroup v2 on a
/// hybrid layout, `/sys/fs/cgroup` itself on a pure v2 one), whether they still exist or not.
pub fn call_leaves(cgroup_text: &str) -> Vec<PathBuf> {
    let mut leaves = Vec::new();
    for line in cgroup_text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if !path.contains("/call-") {
            continue;
        }
        let hierarchy = if controllers.is_empty() {
            "unified".to_string()
        } else {
            controllers.replace("name=", "")
        };
        let mount = Path::new("/sys/fs/cgroup").join(hierarchy);
        let base = if mount.is_dir() {
            mount
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        leaves.push(PathBuf::from(format!("{}{path}", base.display())));
    }
    leaves
}
