//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod leaves;

use std::time::{Duration, Instant};

use pynisher::{Backend, Limits};

/// Whether `pid` is a live process (not gone, not a zombie waiting for PID 1 to reap it).
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Waits up to `within` for `pid` to be dead (killed processes take a moment to exit).
pub fn dead_within(pid: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !is_alive(pid)
}

/// Every backend that works on this machine; the process group always does.
pub fn backends() -> Vec<Backend> {
    let mut all = pynisher::available_backends();
    if !all.contains(&Backend::ProcessGroup) {
        all.push(Backend::ProcessGroup);
    }
    all
}

/// Limits on the given backend.
pub fn on(backend: Backend) -> Limits {
    Limits::new().backend(backend)
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Number of zombie children of this process.
pub fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let ppid = f.next()?;
                    Some(state == "Z" && ppid == me)
                })
                .unwrap_or(false)
        })
        .count()
}

/// A shell one-liner command.
pub fn sh(script: &str) -> pynisher::Command {
    pynisher::Command::new("sh").arg("-c").arg(script)
}

/// A python3 one-liner command.
pub fn py(script: &str) -> pynisher::Command {
    pynisher::Command::new("python3").arg("-c").arg(script)
}

/// Python code burning `secs` seconds of CPU time in one process.
pub fn burn_cpu_py(secs: f64) -> String {
    format!("import time\nt=time.process_time()\nwhile time.process_time()-t<{secs}: pass\n")
}

/// Tests that burn CPU take this lock so that they do not slow each other down on a 2-core machine
/// (their wall-time assertions assume the CPUs are theirs).
pub fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
