//! End-to-end behaviour of the cgroup backends through the public API, on real cgroups.
//!
//! Every test runs on each cgroup backend this machine has (cgroup v1 needs root; cgroup v2 needs
//! a writable hierarchy) and is reported ignored, with the reason, when it has none. Test programs
//! are `python3 -c` scripts, every one of them bounded in time, memory and forks.

use std::time::{Duration, Instant};

use pynisher::{Backend, Command, CpuMeasure, Limits, MemoryLimitKind, MemoryMeasure, Status};

use pynisher_testkit::{lacking_if_empty, Trials};

const MIB: u64 = 1 << 20;

fn cgroup_backends() -> Vec<Backend> {
    pynisher::available_backends()
        .into_iter()
        .filter(|b| *b != Backend::ProcessGroup)
        .collect()
}

/// The backends with a memory controller (cgroup v1, or v2 with `memory` delegated).
fn memory_backends() -> Vec<Backend> {
    cgroup_backends()
        .into_iter()
        .filter(|b| {
            let limits = Limits::new()
                .backend(*b)
                .memory(1 << 30)
                .memory_kind(MemoryLimitKind::Resident);
            limits
                .run_command(&Command::new("true"))
                .is_ok_and(|o| o.memory_limit_kind == Some(MemoryLimitKind::Resident))
        })
        .collect()
}

fn python(script: &str) -> Command {
    Command::new("python3").arg("-c").arg(script)
}

/// Alive and not a zombie.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

fn dead_within(pid: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while is_alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "pynisher-cgtest-{}-{tag}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// The pids written one per line to `path` by a test program.
fn pids_in(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn reserving_4_gib_and_touching_50_mib_completes_under_100_mib_with_a_50_mib_peak() {
    let backends = memory_backends();
    // Like numpy's import: a large address-space reservation, little of it used.
    let script = "import mmap\n\
        m = mmap.mmap(-1, 4 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n\
        for i in range(0, 50 << 20, 4096): m[i] = 1\n";
    for backend in backends {
        let outcome = Limits::new()
            .backend(backend)
            .memory(100 * MIB)
            .run_command(&python(script))
            .unwrap();
        assert_eq!(
            outcome.status,
            Status::Completed,
            "{backend:?}: {outcome:?}"
        );
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.memory_limit_kind, Some(MemoryLimitKind::Resident));
        assert_eq!(outcome.memory_measure, MemoryMeasure::CgroupPeak);
        let peak = outcome.peak_memory.unwrap();
        assert!(
            (50 * MIB..75 * MIB).contains(&peak),
            "{backend:?}: peak {} MiB",
            peak / MIB
        );
        assert!(outcome.containment.guarantees.tree_memory_limit);
        // The same program under the address-space limit cannot even make its reservation.
        let outcome = Limits::new()
            .backend(backend)
            .memory(100 * MIB)
            .memory_kind(MemoryLimitKind::AddressSpace)
            .capture_output(true)
            .run_command(&python(script))
            .unwrap();
        assert_eq!(
            outcome.memory_limit_kind,
            Some(MemoryLimitKind::AddressSpace)
        );
        assert_ne!(outcome.exit_code, Some(0), "{backend:?}: {outcome:?}");
    }
}

fn touching_300_mib_under_100_mib_is_a_memory_limit() {
    let backends = memory_backends();
    for backend in backends {
        let outcome = Limits::new()
            .backend(backend)
            .memory(100 * MIB)
            .run_command(&python("b = b'x' * (300 << 20)"))
            .unwrap();
        assert_eq!(
            outcome.status,
            Status::MemoryLimit,
            "{backend:?}: {outcome:?}"
        );
        assert!(outcome.oom_kills >= 1);
        assert!(outcome.peak_memory.unwrap() <= 100 * MIB);
    }
}

fn two_processes_of_200_mib_under_300_mib_are_a_memory_limit_because_the_sum_counts() {
    let backends = memory_backends();
    let hog = "import time; b = b'x' * (200 << 20); time.sleep(1)";
    let script = format!("python3 -c \"{hog}\" & python3 -c \"{hog}\" & wait");
    for backend in backends {
        let outcome = Limits::new()
            .backend(backend)
            .memory(300 * MIB)
            .wall_time(Duration::from_secs(20))
            .run_command(&Command::new("sh").arg("-c").arg(&script))
            .unwrap();
        // The shell itself exits 0: only the cgroup's OOM counter tells what happened.
        assert_eq!(
            outcome.status,
            Status::MemoryLimit,
            "{backend:?}: {outcome:?}"
        );
        assert!(outcome.oom_kills >= 1);
        let peak = outcome.peak_memory.unwrap();
        assert!(
            peak > 200 * MIB && peak <= 300 * MIB,
            "peak {} MiB",
            peak / MIB
        );
    }
}

fn an_escaped_setsid_grandchild_is_counted_and_dies_with_the_call() {
    let backends = cgroup_backends();
    for backend in backends {
        let pidfile = temp_path("escape");
        // The grandchild announces its pid once it has used 0.5 s of CPU of its own; the main
        // process waits for that, then exits, leaving the grandchild spinning.
        let script = format!(
            "import os, signal, time\n\
             path = {path:?}\n\
             if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
             for s in range(1, 65):\n            try: signal.signal(s, signal.SIG_IGN)\n            \
             except Exception: pass\n        \
             while time.process_time() < 0.5: pass\n        \
             open(path + '.tmp', 'w').write(str(os.getpid()) + '\\n')\n        \
             os.rename(path + '.tmp', path)\n        \
             end = time.time() + 30\n        while time.time() < end: pass\n    os._exit(0)\n\
             os.wait()\nend = time.time() + 20\n\
             while not os.path.exists(path) and time.time() < end: time.sleep(0.01)\n",
            path = pidfile.display().to_string()
        );
        let outcome = Limits::new()
            .backend(backend)
            .wall_time(Duration::from_secs(30))
            .run_command(&python(&script))
            .unwrap();
        let pids = pids_in(&pidfile);
        let _ = std::fs::remove_file(&pidfile);
        assert_eq!(
            outcome.status,
            Status::Completed,
            "{backend:?}: {outcome:?}"
        );
        assert_eq!(outcome.cpu_measure, CpuMeasure::Cgroup);
        // At least the grandchild's own 0.5 s, although its parent never waited for it.
        assert!(
            outcome.cpu_time.total() >= Duration::from_millis(500),
            "{backend:?}: {:?}",
            outcome.cpu_time
        );
        assert_eq!(outcome.leftovers_killed, 1, "{backend:?}");
        assert_eq!(pids.len(), 1);
        assert!(
            dead_within(pids[0], Duration::from_secs(2)),
            "{backend:?}: grandchild alive"
        );
        assert!(outcome.containment.guarantees.all_descendants_contained);
    }
}

fn a_bounded_fork_bomb_is_contained_by_64_processes_and_everything_dies() {
    let backends = cgroup_backends();
    for backend in backends {
        let pidfile = temp_path("bomb");
        let script = format!(
            "import os, time\nfail = 0\nf = open({path:?}, 'w', buffering=1)\n\
             for i in range(1000):\n    try:\n        pid = os.fork()\n    \
             except OSError:\n        fail += 1\n        continue\n    \
             if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    f.write(f'{{pid}}\\n')\n\
             time.sleep(0.3)\n",
            path = pidfile.display().to_string()
        );
        let started = Instant::now();
        let outcome = Limits::new()
            .backend(backend)
            .max_processes(64)
            .wall_time(Duration::from_secs(20))
            .run_command(&python(&script))
            .unwrap();
        let pids = pids_in(&pidfile);
        let _ = std::fs::remove_file(&pidfile);
        eprintln!(
            "{backend:?}: {} forks ok, status {:?}, refused {}, leftovers killed {}, {:?}",
            pids.len(),
            outcome.status,
            outcome.processes_refused,
            outcome.leftovers_killed,
            started.elapsed()
        );
        assert!(!pids.is_empty());
        assert_eq!(
            outcome.status,
            Status::ProcessLimit,
            "{backend:?}: {outcome:?}"
        );
        if outcome.containment.guarantees.kernel_process_limit {
            assert!(pids.len() < 64, "{} forks succeeded", pids.len());
            assert!(outcome.processes_refused > 0);
            assert_eq!(outcome.leftovers_killed as usize, pids.len());
        }
        for pid in pids {
            assert!(
                dead_within(pid, Duration::from_secs(2)),
                "{backend:?}: {pid} alive"
            );
        }
    }
}

fn a_child_ignoring_every_catchable_signal_is_still_killed() {
    let backends = cgroup_backends();
    // A shell (it starts in milliseconds even on a loaded machine, where python took longer than
    // the wall limit to ignore anything) ignores every catchable signal, and so does the `sleep`
    // it runs: ignored dispositions survive fork and exec.
    let script = "for s in $(seq 1 64); do trap '' $s 2>/dev/null; done; \
                  end=$(($(date +%s) + 30)); while [ $(date +%s) -lt $end ]; do sleep 0.01; done";
    for backend in backends {
        let started = Instant::now();
        let outcome = Limits::new()
            .backend(backend)
            .wall_time(Duration::from_millis(500))
            .grace_period(Duration::from_millis(100))
            .run_command(&Command::new("sh").arg("-c").arg(script))
            .unwrap();
        assert_eq!(
            outcome.status,
            Status::WallTimeout,
            "{backend:?}: {outcome:?}"
        );
        assert_eq!(outcome.signal, Some(libc::SIGKILL));
        assert!(outcome.killed);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

fn cpu_limit_counts_every_process_and_is_never_early() {
    let backends = cgroup_backends();
    // Three sequential children of 0.3 s CPU each: only the tree-wide sum reaches 0.5 s.
    let spin =
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass";
    let script = format!("for i in 1 2 3; do python3 -c '{spin}'; done");
    for backend in backends {
        let limit = Duration::from_millis(500);
        let outcome = Limits::new()
            .backend(backend)
            .cpu_time(limit)
            .wall_time(Duration::from_secs(20))
            .run_command(&Command::new("sh").arg("-c").arg(&script))
            .unwrap();
        assert_eq!(
            outcome.status,
            Status::CpuTimeout,
            "{backend:?}: {outcome:?}"
        );
        let used = outcome.cpu_time.total();
        assert!(used >= limit, "{backend:?}: early at {used:?}");
        assert!(
            used < limit + Duration::from_millis(150),
            "{backend:?}: late at {used:?}"
        );
    }
}

fn a_closure_of_a_caller_holding_500_mib_may_allocate_600_mib_under_1_gib() {
    let backends = memory_backends();
    // The caller's pages stay charged to the caller's cgroup; only new pages count.
    let held: Vec<u8> = vec![7u8; 500 << 20];
    let held = std::hint::black_box(held);
    for backend in backends {
        let limits = Limits::new().backend(backend).memory(1 << 30);
        // SAFETY: the closure only allocates and reads memory (glibc malloc is fork-safe); the
        // test harness's other threads hold no lock it needs.
        let running = unsafe {
            limits.spawn_closure_unchecked(|| {
                let fresh = std::hint::black_box(vec![1u8; 600 << 20]);
                fresh.iter().step_by(4096).map(|&b| b as u64).sum::<u64>()
            })
        }
        .unwrap();
        let outcome = running.wait().unwrap();
        assert_eq!(
            outcome.status,
            Status::Completed,
            "{backend:?}: {outcome:?}"
        );
        assert_eq!(outcome.value, Some((600u64 << 20) / 4096));
        let peak = outcome.peak_memory.unwrap();
        assert!(peak < 700 * MIB, "peak {} MiB", peak / MIB);
    }
    assert_eq!(held[12345], 7);
}

fn a_closure_allocating_past_a_resident_limit_is_oom_killed_and_a_memory_limit() {
    let backends = memory_backends();
    for backend in backends {
        let limits = Limits::new().backend(backend).memory(100 * MIB);
        // SAFETY: the closure only allocates (glibc malloc is fork-safe).
        let running = unsafe {
            limits.spawn_closure_unchecked(|| {
                let big = std::hint::black_box(vec![1u8; 300 << 20]);
                big.len()
            })
        }
        .unwrap();
        let outcome = running.wait().unwrap();
        assert_eq!(
            outcome.status,
            Status::MemoryLimit,
            "{backend:?}: {outcome:?}"
        );
        assert_eq!(outcome.signal, Some(libc::SIGKILL));
        assert!(outcome.oom_kills >= 1);
        assert_eq!(outcome.value, None);
    }
}

fn a_resident_limit_is_refused_by_a_backend_without_a_memory_controller() {
    for backend in pynisher::available_backends() {
        if memory_backends().contains(&backend) {
            continue;
        }
        let err = Limits::new()
            .backend(backend)
            .memory(100 * MIB)
            .memory_kind(MemoryLimitKind::Resident)
            .run_command(&Command::new("true"))
            .unwrap_err();
        assert!(
            matches!(err, pynisher::Error::BackendUnavailable { .. }),
            "{backend:?}: {err}"
        );
    }
}

fn a_forced_backend_reports_itself_and_its_guarantees() {
    let backends = cgroup_backends();
    for backend in backends {
        let outcome = Limits::new()
            .backend(backend)
            .run_command(&Command::new("true"))
            .unwrap();
        assert_eq!(outcome.status, Status::Completed);
        assert_eq!(outcome.containment.backend, backend);
        let g = &outcome.containment.guarantees;
        assert!(g.all_descendants_contained && g.exact_tree_cpu_time);
        assert_eq!(outcome.cpu_measure, CpuMeasure::Cgroup);
    }
}

fn main() {
    let cgroups = lacking_if_empty(
        &cgroup_backends(),
        "a cgroup backend",
        pynisher::available_backends(),
    );
    let memory = lacking_if_empty(
        &memory_backends(),
        "a cgroup backend with a memory controller",
        pynisher::available_backends(),
    );
    Trials::default()
        .needs(
            memory.clone(),
            "reserving_4_gib_and_touching_50_mib_completes_under_100_mib_with_a_50_mib_peak",
            reserving_4_gib_and_touching_50_mib_completes_under_100_mib_with_a_50_mib_peak,
        )
        .needs(
            memory.clone(),
            "touching_300_mib_under_100_mib_is_a_memory_limit",
            touching_300_mib_under_100_mib_is_a_memory_limit,
        )
        .needs(
            memory.clone(),
            "two_processes_of_200_mib_under_300_mib_are_a_memory_limit_because_the_sum_counts",
            two_processes_of_200_mib_under_300_mib_are_a_memory_limit_because_the_sum_counts,
        )
        .needs(
            cgroups.clone(),
            "an_escaped_setsid_grandchild_is_counted_and_dies_with_the_call",
            an_escaped_setsid_grandchild_is_counted_and_dies_with_the_call,
        )
        .needs(
            cgroups.clone(),
            "a_bounded_fork_bomb_is_contained_by_64_processes_and_everything_dies",
            a_bounded_fork_bomb_is_contained_by_64_processes_and_everything_dies,
        )
        .needs(
            cgroups.clone(),
            "a_child_ignoring_every_catchable_signal_is_still_killed",
            a_child_ignoring_every_catchable_signal_is_still_killed,
        )
        .needs(
            cgroups.clone(),
            "cpu_limit_counts_every_process_and_is_never_early",
            cpu_limit_counts_every_process_and_is_never_early,
        )
        .needs(
            memory.clone(),
            "a_closure_of_a_caller_holding_500_mib_may_allocate_600_mib_under_1_gib",
            a_closure_of_a_caller_holding_500_mib_may_allocate_600_mib_under_1_gib,
        )
        .needs(
            memory.clone(),
            "a_closure_allocating_past_a_resident_limit_is_oom_killed_and_a_memory_limit",
            a_closure_allocating_past_a_resident_limit_is_oom_killed_and_a_memory_limit,
        )
        .test(
            "a_resident_limit_is_refused_by_a_backend_without_a_memory_controller",
            a_resident_limit_is_refused_by_a_backend_without_a_memory_controller,
        )
        .needs(
            cgroups.clone(),
            "a_forced_backend_reports_itself_and_its_guarantees",
            a_forced_backend_reports_itself_and_its_guarantees,
        )
        .run()
}
