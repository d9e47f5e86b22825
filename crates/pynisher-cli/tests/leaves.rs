//! What a `pynisher` run leaves in the cgroup hierarchies once it has exited: nothing. On a
//! cgroup backend its call's emptied leaves are removed by its guard after pynisher exits (off the
//! command's exit path), or by the stale-leaf sweep of a pynisher process that starts first.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{call_leaves, pynisher, TempDir};

#[test]
fn a_finished_run_leaves_no_cgroup_leaf_behind_once_it_has_exited() {
    let dir = TempDir::new("leaves");
    let file = dir.path_str("cgroup");
    for backend in ["auto", "cgroup1"] {
        let status = pynisher()
            .args(["--backend", backend, "--", "sh", "-c"])
            .arg(format!("cat /proc/self/cgroup > {file}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{backend}: {status:?}");
        let leaves = call_leaves(&std::fs::read_to_string(&file).unwrap());
        assert!(
            !leaves.is_empty(),
            "this machine has a cgroup backend (root, cgroup v1): the call must run in a leaf"
        );
        // The guard removes them right after pynisher's exit: bounded, never left for good.
        let deadline = Instant::now() + Duration::from_secs(3);
        while leaves.iter().any(|l| l.exists()) {
            assert!(
                Instant::now() < deadline,
                "{backend}: leaves left behind: {leaves:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The freezer hierarchy's `pynisher` leaf parent of this process (cgroup v1).
fn freezer_leaf_parent() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "freezer")
                .then(|| path.trim_start_matches('/').to_string())
        })
        .expect("this machine has cgroup v1 (root): a freezer hierarchy");
    PathBuf::from("/sys/fs/cgroup/freezer")
        .join(path)
        .join("pynisher")
}

#[test]
fn a_stale_leaf_of_a_dead_owner_is_swept_by_the_runs_guard() {
    // No process has a pid above PID_MAX_LIMIT (4194304): the owner is dead.
    let parent = freezer_leaf_parent();
    std::fs::create_dir_all(&parent).unwrap();
    let stale = parent.join(format!("call-4194305-1-{}", std::process::id()));
    std::fs::create_dir(&stale).unwrap();
    let status = pynisher()
        .args(["--backend", "cgroup1", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The sweep is the forked guard's, after the program started: bounded, never left for good.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stale.exists() {
        if Instant::now() >= deadline {
            let _ = std::fs::remove_dir(&stale);
            panic!("the stale leaf {} was not swept", stale.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
