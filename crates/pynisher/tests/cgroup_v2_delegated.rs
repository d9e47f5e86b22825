//! Calls from a delegated, non-root cgroup v2 (a systemd `Delegate=yes` unit, a container's
//! cgroup, a user's delegated subtree) — issue 8 item 0 and issue 11 item 1.
//!
//! These need a pure cgroup v2 machine with controllers, and a process started in a delegated
//! cgroup in a known state, so they are `#[ignore]`d here and run by `scripts/cgroup2-suite.sh`
//! inside the VM of `cgroup2-vm.sh` (as root and as the cgroup's unprivileged owner), each test
//! in a fresh process (`--exact`): detection, which may move the caller, happens once per
//! process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pynisher::{Backend, Command, CpuMeasure, Limits, MemoryLimitKind, MemoryMeasure, Status};

const MIB: u64 = 1 << 20;

/// This process's cgroup v2 directory.
fn own_cgroup() -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("in a cgroup v2 hierarchy");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| f[1].to_string())
        .expect("a cgroup2 mount");
    Path::new(&mount).join(path.trim_start_matches('/'))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn words(path: &Path) -> Vec<String> {
    let mut w: Vec<String> = read(path).split_whitespace().map(str::to_string).collect();
    w.sort();
    w
}

fn procs(dir: &Path) -> Vec<u32> {
    read(&dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The state of a cgroup that must not change behind its owner's back.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    kind: String,
    subtree_control: Vec<String>,
}

fn snapshot(dir: &Path) -> Snapshot {
    Snapshot {
        kind: read(&dir.join("cgroup.type")),
        subtree_control: words(&dir.join("cgroup.subtree_control")),
    }
}

fn sh(script: &str) -> Command {
    Command::new("/bin/sh").arg("-c").arg(script)
}

/// Alive and not a zombie (the VM's PID 1 reaps orphans when it gets to it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

#[test]
#[ignore = "needs a delegated cgroup v2 with controllers: run by scripts/cgroup2-suite.sh in the VM"]
fn beside_other_processes_auto_works_without_controllers_and_leaves_the_callers_cgroup_untouched() {
    let base = own_cgroup();
    let me = std::process::id();
    let others: Vec<u32> = procs(&base).into_iter().filter(|&p| p != me).collect();
    assert!(
        !others.is_empty() && base.join("cgroup.type").exists(),
        "set-up: {} must be a non-root cgroup shared with other processes",
        base.display()
    );
    let before = snapshot(&base);
    assert_eq!(before.kind, "domain");
    // Issue 8 item 0: these used to exit with `cgroup.procs: Operation not supported`, after
    // detection had turned this cgroup into a `domain threaded` one.
    for limits in [
        Limits::new(),
        Limits::new().memory(100 * MIB).max_processes(8),
    ] {
        let outcome = limits.run_command(&Command::new("/bin/true")).unwrap();
        assert_eq!(outcome.status, Status::Completed, "{outcome:?}");
        assert_eq!(outcome.containment.backend, Backend::CgroupV2);
        let g = &outcome.containment.guarantees;
        assert!(g.all_descendants_contained && g.exact_tree_cpu_time);
        assert!(!g.tree_memory_limit && !g.kernel_process_limit, "{g:?}");
        assert!(
            g.notes.iter().any(|n| n.contains("other process")),
            "the fallback is said aloud: {:?}",
            g.notes
        );
    }
    // A memory limit falls back to the address-space limit and still works.
    let outcome = Limits::new()
        .memory(100 * MIB)
        .run_command(&sh("dd if=/dev/zero of=/dev/null bs=300M count=1"))
        .unwrap();
    assert_eq!(
        outcome.memory_limit_kind,
        Some(MemoryLimitKind::AddressSpace)
    );
    assert_ne!(outcome.exit_code, Some(0), "{outcome:?}");
    // An explicit resident limit cannot be honoured here and is refused, not downgraded.
    let refused = Limits::new()
        .memory(100 * MIB)
        .memory_kind(MemoryLimitKind::Resident)
        .run_command(&Command::new("/bin/true"));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(snapshot(&base), before, "the caller's cgroup changed");
    assert_eq!(own_cgroup(), base, "the caller was moved");
}

#[test]
#[ignore = "needs a delegated cgroup v2 with controllers: run by scripts/cgroup2-suite.sh in the VM"]
fn alone_in_a_delegated_cgroup_the_caller_moves_into_its_own_leaf_and_calls_get_every_controller() {
    let base = own_cgroup();
    let me = std::process::id();
    assert_eq!(
        procs(&base),
        vec![me],
        "set-up: this process must be alone in {}",
        base.display()
    );
    let offered = words(&base.join("cgroup.controllers"));
    assert!(
        offered.iter().any(|c| c == "memory") && offered.iter().any(|c| c == "pids"),
        "set-up: {} must offer memory and pids: {offered:?}",
        base.display()
    );
    let before = snapshot(&base);
    assert_eq!(before.kind, "domain");

    // Programs in C (dd) and sh, not python: the VM emulates the CPU, 10-40x slower.
    // Exact peak: dd's one 50 MiB buffer, filled by read(2).
    let outcome = Limits::new()
        .memory(100 * MIB)
        .run_command(&sh(
            "dd if=/dev/zero of=/dev/null bs=50M count=1 2>/dev/null",
        ))
        .unwrap();
    assert_eq!(outcome.status, Status::Completed, "{outcome:?}");
    assert_eq!(outcome.containment.backend, Backend::CgroupV2);
    assert_eq!(outcome.memory_limit_kind, Some(MemoryLimitKind::Resident));
    assert_eq!(outcome.memory_measure, MemoryMeasure::CgroupPeak);
    let peak = outcome.peak_memory.unwrap();
    assert!((50 * MIB..60 * MIB).contains(&peak), "peak {peak}");
    let g = &outcome.containment.guarantees;
    assert!(g.tree_memory_limit && g.all_descendants_contained, "{g:?}");
    assert!(
        g.notes.iter().any(|n| n.contains("moved")),
        "the move is reported: {:?}",
        g.notes
    );

    // memory.max: a 300 MiB buffer under 100 MiB is a memory limit.
    let outcome = Limits::new()
        .memory(100 * MIB)
        .run_command(&sh("dd if=/dev/zero of=/dev/null bs=300M count=1"))
        .unwrap();
    assert_eq!(outcome.status, Status::MemoryLimit, "{outcome:?}");
    assert!(outcome.oom_kills >= 1);
    assert!(outcome.peak_memory.unwrap() <= 100 * MIB);

    // CPU time over child processes: two spinning children share one limit.
    let outcome = Limits::new()
        .cpu_time(Duration::from_secs(1))
        .wall_time(Duration::from_secs(60))
        .run_command(&sh(
            "sh -c 'while :; do :; done' & sh -c 'while :; do :; done' & wait",
        ))
        .unwrap();
    assert_eq!(outcome.status, Status::CpuTimeout, "{outcome:?}");
    assert_eq!(outcome.cpu_measure, CpuMeasure::Cgroup);
    let cpu = outcome.cpu_time.total();
    assert!(cpu >= Duration::from_secs(1), "early at {cpu:?}");

    // pids.max refuses forks: a process limit, enforced by the kernel.
    let outcome = Limits::new()
        .max_processes(4)
        .wall_time(Duration::from_secs(60))
        .run_command(&sh("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"))
        .unwrap();
    assert_eq!(outcome.status, Status::ProcessLimit, "{outcome:?}");
    assert!(outcome.processes_refused > 0);
    assert!(outcome.containment.guarantees.kernel_process_limit);

    // An escapee (its own session, parent gone) is killed with the call.
    let outcome = Limits::new()
        .wall_time(Duration::from_secs(60))
        .capture_output(true)
        .run_command(&sh("setsid sleep 60 & echo $!"))
        .unwrap();
    assert_eq!(outcome.status, Status::Completed, "{outcome:?}");
    assert_eq!(outcome.leftovers_killed, 1);
    let escapee: u32 = outcome.stdout.unwrap().text().trim().parse().unwrap();
    assert!(!alive(escapee), "escapee {escapee} survived");

    // The caller is now in a leaf of its own; its first cgroup kept its type, holds no process,
    // and hands down exactly the controllers our leaves use.
    let now = own_cgroup();
    assert_ne!(now, base);
    assert!(now.starts_with(base.join("pynisher")), "{}", now.display());
    let after = snapshot(&base);
    assert_eq!(after.kind, before.kind);
    let mut expected = before.subtree_control.clone();
    for c in ["memory", "pids"] {
        if !expected.iter().any(|e| e == c) {
            expected.push(c.to_string());
        }
    }
    expected.sort();
    assert_eq!(after.subtree_control, expected);
    assert!(procs(&base).is_empty());
    assert_eq!(read(&now.join("cgroup.type")), "domain");
    // A program the caller starts itself (not as a call) is born in the caller's leaf, and its
    // own calls find the leaves beside it, with the controllers: the CLI, given by the suite.
    let cli = std::env::var("PYNISHER_CLI").expect("PYNISHER_CLI: the pynisher binary");
    let report = std::env::temp_dir().join(format!("delegated-cli-{me}.json"));
    let status = std::process::Command::new(cli)
        .arg(format!("--json={}", report.display()))
        .args([
            "--memory",
            "100MiB",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
        ])
        .args(["bs=300M", "count=1"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let json = std::fs::read_to_string(&report).unwrap();
    assert_eq!(status.code(), Some(123), "{json}");
    assert!(json.contains("\"tree_memory_limit\": true"), "{json}");
    // Later calls get their leaves beside the caller's leaf.
    let outcome = Limits::new()
        .memory(64 * MIB)
        .capture_output(true)
        .run_command(&Command::new("/bin/cat").arg("/proc/self/cgroup"))
        .unwrap();
    let text = outcome.stdout.unwrap().text();
    assert!(text.contains("/pynisher/call-"), "{text}");
}
