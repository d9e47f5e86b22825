//! Cgroup leaves do not accumulate: a caller holds only the few leaves made ahead of its next
//! call or left behind by its last one, none is left once it exits (normally, or killed with a
//! guard), and a forked copy leaves its parent's alone. 10 000 calls on every backend leak no
//! descriptor, thread or zombie (issue 13's bar). Leaves of dead callers: `stale_leaves.rs`.
//!
//! A separate test binary (its own process) so that no other test's call is in flight while the
//! directories are counted; the callers whose exit is checked are helpers run in processes of
//! their own.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pynisher::{Backend, Command, Limits, MemoryMeasure, Status};

use common::leaves::leaf_parents;
use common::zombie_children;
use pynisher_testkit::{helper_process, Trials};

fn main() {
    // The guarded helper names this binary as its guard program.
    pynisher::guard::serve_if_requested();
    // A helper's run (`--ignored`, in a fresh process) must not detect cgroups before its own
    // set-up: detection sweeps stale leaves, and the sweep is what the helpers test.
    let helper_run = std::env::args().any(|a| a == "--ignored");
    let cgroups = if helper_run { None } else { leaves_lacking() };
    Trials::default()
        .needs(
            cgroups.clone(),
            "ten_thousand_calls_leak_nothing_and_a_normal_exit_leaves_no_leaf",
            ten_thousand_calls_leak_nothing_and_a_normal_exit_leaves_no_leaf,
        )
        .helper(
            "helper_makes_ten_thousand_calls",
            helper_makes_ten_thousand_calls,
        )
        .needs(
            cgroups.clone(),
            "concurrent_calls_from_eight_threads_get_their_own_leaves_and_leave_none",
            concurrent_calls_from_eight_threads_get_their_own_leaves_and_leave_none,
        )
        .helper(
            "helper_calls_from_eight_threads",
            helper_calls_from_eight_threads,
        )
        .needs(
            cgroups.clone(),
            "a_guarded_caller_killed_after_its_calls_leaves_no_leaf",
            a_guarded_caller_killed_after_its_calls_leaves_no_leaf,
        )
        .helper(
            "helper_calls_guarded_then_is_killed",
            helper_calls_guarded_then_is_killed,
        )
        .needs(
            cgroups.clone(),
            "a_guarded_callers_leaves_are_removed_by_its_guard_and_none_outlives_it",
            a_guarded_callers_leaves_are_removed_by_its_guard_and_none_outlives_it,
        )
        .helper(
            "helper_calls_guarded_then_exits",
            helper_calls_guarded_then_exits,
        )
        .needs(
            cgroups.clone(),
            "a_forked_copy_of_a_caller_leaves_its_parents_leaves_alone",
            a_forked_copy_of_a_caller_leaves_its_parents_leaves_alone,
        )
        .helper("helper_forks_after_calls", helper_forks_after_calls)
        .needs(
            cgroups,
            "a_calls_counters_do_not_include_the_previous_calls",
            a_calls_counters_do_not_include_the_previous_calls,
        )
        .run()
}

/// The cgroup backends whose leaf directories this test can find (at the usual mount points).
fn backends_with_leaf_parents() -> Vec<Backend> {
    pynisher::available_backends()
        .into_iter()
        .filter(|b| *b != Backend::ProcessGroup && !leaf_parents(*b).is_empty())
        .collect()
}

fn leaves_lacking() -> Option<String> {
    backends_with_leaf_parents().is_empty().then(|| {
        format!(
            "needs a cgroup backend with its leaves at the usual mount points; this machine has {:?}",
            pynisher::available_backends()
        )
    })
}

/// Tests that count leaves run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Leaves under `parent` that belong to this process.
fn my_leaves(parent: &Path) -> Vec<PathBuf> {
    leaves_of(parent, std::process::id())
}

/// Leaves under `parent` made by process `pid`.
fn leaves_of(parent: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("call-{pid}-");
    std::fs::read_dir(parent)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Every leaf parent of every cgroup backend here.
fn all_leaf_parents() -> Vec<PathBuf> {
    backends_with_leaf_parents()
        .into_iter()
        .flat_map(leaf_parents)
        .collect()
}

/// Runs a helper in a fresh process; returns its pid and what it printed once it has ended.
fn run_helper_process(name: &str) -> (u32, std::process::ExitStatus, String) {
    let child = helper_process(name)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (pid, out.status, text)
}

/// Waits (bounded) until process `pid` has no leaf left anywhere; the leaves left otherwise.
fn leaves_left_by(pid: u32, within: Duration) -> Vec<PathBuf> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left: Vec<PathBuf> = all_leaf_parents()
            .iter()
            .flat_map(|p| leaves_of(p, pid))
            .collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ten_thousand_calls_leak_nothing_and_a_normal_exit_leaves_no_leaf() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pid, status, out) = run_helper_process("helper_makes_ten_thousand_calls");
    assert!(status.success(), "{out}");
    // A normal exit: the exit handler removed what was made ahead and left behind.
    let left = leaves_left_by(pid, Duration::ZERO);
    assert!(left.is_empty(), "left behind after exit: {left:?}");
}

/// Issue 13's leak bar, on every backend: 10 000 closure calls (and some programs) leave the
/// caller with the descriptors, threads and leaves it had after its first calls, and no zombie.
fn helper_makes_ten_thousand_calls() {
    let count = |dir: &str| std::fs::read_dir(dir).unwrap().count();
    for backend in pynisher::available_backends() {
        let parents = leaf_parents(backend);
        let limits = Limits::new()
            .backend(backend)
            .memory(64 << 20)
            .max_processes(8)
            .wall_time(Duration::from_secs(5));
        let call = |i: u32| {
            let outcome = limits.run_closure(move || i).unwrap();
            assert_eq!(outcome.value, Some(i), "{backend:?} call {i}: {outcome:?}");
            assert_eq!(outcome.containment.backend, backend);
        };
        // The first calls open what every later call reuses (the leaves made ahead and their files).
        (0..10).for_each(call);
        let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
        for i in 0..10_000 {
            call(i);
            if i % 100 == 0 {
                let outcome = limits.run_command(&Command::new("true")).unwrap();
                assert_eq!(outcome.status, Status::Completed, "{backend:?} call {i}");
            }
            // One made ahead for the next call, one left behind by this one.
            for parent in &parents {
                let held = my_leaves(parent);
                assert!(held.len() <= 2, "{backend:?} call {i}: {held:?}");
            }
        }
        assert_eq!(count("/proc/self/fd"), fds, "{backend:?}: descriptors");
        assert_eq!(count("/proc/self/task"), threads, "{backend:?}: threads");
        assert_eq!(zombie_children(), 0, "{backend:?}: zombies");
    }
}

fn concurrent_calls_from_eight_threads_get_their_own_leaves_and_leave_none() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pid, status, out) = run_helper_process("helper_calls_from_eight_threads");
    assert!(status.success(), "{out}");
    let left = leaves_left_by(pid, Duration::ZERO);
    assert!(left.is_empty(), "left behind after exit: {left:?}");
}

fn helper_calls_from_eight_threads() {
    for backend in backends_with_leaf_parents() {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let limits = Limits::new()
                        .backend(backend)
                        .max_processes(4)
                        .wall_time(Duration::from_secs(5))
                        .capture_output(true);
                    let mut names = Vec::new();
                    for i in 0..100 {
                        // The call reports the leaf it ran in.
                        let outcome = limits
                            .run_command(&Command::new("cat").arg("/proc/self/cgroup"))
                            .unwrap();
                        assert_eq!(outcome.status, Status::Completed, "thread {t} call {i}");
                        let text = outcome.stdout.unwrap().text();
                        let leaves: HashSet<&str> = text
                            .lines()
                            .filter_map(|l| l.rsplit('/').next())
                            .filter(|n| n.starts_with("call-"))
                            .collect();
                        assert_eq!(leaves.len(), 1, "{backend:?}: {text}");
                        names.extend(leaves.into_iter().map(str::to_string));
                    }
                    names
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            all.extend(t.join().unwrap());
        }
        assert_eq!(all.len(), 800, "{backend:?}: calls shared a leaf");
        // At most one made ahead and one left behind per thread that was in a call at once.
        for parent in leaf_parents(backend) {
            let held = my_leaves(&parent);
            assert!(held.len() <= 16, "{backend:?}: {held:?}");
        }
    }
}

fn a_guarded_caller_killed_after_its_calls_leaves_no_leaf() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pid, status, out) = run_helper_process("helper_calls_guarded_then_is_killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{out}");
    let held: usize = out
        .lines()
        .find_map(|l| l.split_once("leaves held: ").map(|(_, n)| n))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the helper did not report its leaves: {out}"));
    assert!(held > 0, "the helper held no leaf when it was killed");
    // The guard empties and removes what was registered: prepared and pending leaves alike.
    let left = leaves_left_by(pid, Duration::from_secs(5));
    assert!(left.is_empty(), "left behind by a killed caller: {left:?}");
}

fn helper_calls_guarded_then_is_killed() {
    pynisher::guard::install(pynisher::guard::GuardProgram::current_exe()).unwrap();
    for backend in backends_with_leaf_parents() {
        let limits = Limits::new().backend(backend).max_processes(8);
        for _ in 0..5 {
            let outcome = limits.run_command(&Command::new("true")).unwrap();
            assert_eq!(outcome.status, Status::Completed);
        }
    }
    let held: usize = all_leaf_parents().iter().map(|p| my_leaves(p).len()).sum();
    println!("leaves held: {held}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: raise(2) on our own process; SIGKILL cannot be caught, no handler runs.
    unsafe { libc::raise(libc::SIGKILL) };
}

fn a_guarded_callers_leaves_are_removed_by_its_guard_and_none_outlives_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pid, status, out) = run_helper_process("helper_calls_guarded_then_exits");
    assert!(status.success(), "{out}");
    // A normal exit waits for the guard to remove what it was handed.
    let left = leaves_left_by(pid, Duration::ZERO);
    assert!(left.is_empty(), "left behind after exit: {left:?}");
}

/// With a guard, each call's emptied leaves are handed to the guard, which removes them while
/// the caller does nothing more (`contain/ahead.rs`); the next call's leaves are made ahead.
fn helper_calls_guarded_then_exits() {
    pynisher::guard::install(pynisher::guard::GuardProgram::current_exe()).unwrap();
    let count = |dir: &str| std::fs::read_dir(dir).unwrap().count();
    let counter = |leaf: &Path| -> u64 {
        let name = leaf.file_name().unwrap().to_string_lossy().into_owned();
        name.rsplit('-').next().unwrap().parse().unwrap()
    };
    for backend in backends_with_leaf_parents() {
        let parents = leaf_parents(backend);
        let limits = Limits::new().backend(backend).max_processes(8);
        let mut fds = 0;
        for i in 0..1000u32 {
            // The first calls open what every later call reuses (the leaf made ahead, its files).
            fds = if i == 10 { count("/proc/self/fd") } else { fds };
            let outcome = limits.run_closure(move || i).unwrap();
            assert_eq!(outcome.value, Some(i), "{backend:?} call {i}: {outcome:?}");
            // One made ahead, this call's in removal, and what a guard short of CPU (other callers
            // holding the cgroup lock) lags behind: not a pile that grows with the calls.
            for held in parents.iter().map(|p| my_leaves(p)) {
                assert!(held.len() <= 100, "{backend:?} call {i}: {held:?}");
            }
        }
        assert_eq!(count("/proc/self/fd"), fds, "{backend:?}: descriptors");
        let leaf_of_call = limits // the leaf a call ran in, from the call itself
            .run_closure(|| {
                let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
                let line = own.lines().find(|l| l.contains("/call-")).unwrap();
                line.rsplit('/').next().unwrap().to_string()
            })
            .unwrap()
            .value
            .unwrap();
        let used = counter(Path::new(&leaf_of_call));
        // (A v1 pids leaf is made and removed on the call's own path.)
        for parent in parents
            .iter()
            .filter(|p| !p.starts_with("/sys/fs/cgroup/pids"))
        {
            // Without another call of ours: the guard removes the used leaf; the next call's
            // leaf is there, made ahead, never used.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let held = loop {
                let held = my_leaves(parent);
                let settled = held.len() == 1 && held.iter().all(|l| counter(l) > used);
                if settled || std::time::Instant::now() >= deadline {
                    break held;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            assert_eq!(held.len(), 1, "{backend:?} after {leaf_of_call}: {held:?}");
            assert!(
                held.iter().all(|l| counter(l) > used && l.is_dir()),
                "{backend:?} after {leaf_of_call}: {held:?}"
            );
        }
    }
}

fn a_forked_copy_of_a_caller_leaves_its_parents_leaves_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pid, status, out) = run_helper_process("helper_forks_after_calls");
    assert!(status.success(), "{out}");
    let left = leaves_left_by(pid, Duration::ZERO);
    assert!(left.is_empty(), "left behind after exit: {left:?}");
}

fn helper_forks_after_calls() {
    let run = |backend| {
        let outcome = Limits::new()
            .backend(backend)
            .run_command(&Command::new("true"))
            .unwrap();
        assert_eq!(outcome.status, Status::Completed);
    };
    for backend in backends_with_leaf_parents() {
        run(backend);
    }
    let ours: Vec<PathBuf> = all_leaf_parents()
        .iter()
        .flat_map(|p| my_leaves(p))
        .collect();
    assert!(!ours.is_empty(), "no leaf made ahead or left behind");
    // SAFETY: the child only makes calls through the engine and exits; the helper runs its test
    // on one thread (--test-threads=1), so the child is a complete copy.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let ok = std::panic::catch_unwind(|| {
            for backend in backends_with_leaf_parents() {
                run(backend);
            }
        })
        .is_ok();
        // A normal exit: the exit handler runs in the copy too (it must touch only its own).
        // SAFETY: exit(3) ends this forked copy, running its exit handlers.
        unsafe { libc::exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a pointer to a local.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    let gone: Vec<&PathBuf> = ours.iter().filter(|l| !l.exists()).collect();
    assert!(
        gone.is_empty(),
        "the forked copy removed its parent's {gone:?}"
    );
    let copy_left = leaves_left_by(child as u32, Duration::ZERO);
    assert!(copy_left.is_empty(), "the copy left {copy_left:?}");
    // The parent's prepared leaves still serve it.
    for backend in backends_with_leaf_parents() {
        run(backend);
    }
}

fn a_calls_counters_do_not_include_the_previous_calls() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let busy = Command::new("python3").args([
        "-c",
        "import time\nb = bytearray(96 << 20)\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
    ]);
    for backend in backends_with_leaf_parents() {
        let limits = Limits::new().backend(backend);
        let first = limits.run_command(&busy).unwrap();
        assert_eq!(first.status, Status::Completed, "{first:?}");
        assert!(
            first.cpu_time.total() >= Duration::from_millis(300),
            "{first:?}"
        );
        let second = limits.run_command(&Command::new("true")).unwrap();
        assert_eq!(second.status, Status::Completed);
        assert!(
            second.cpu_time.total() < Duration::from_millis(100),
            "{backend:?}: {:?}",
            second.cpu_time
        );
        // The peak of the call's cgroup (a v2 hierarchy without the memory controller measures
        // none).
        let cgroup_peaks = (first.memory_measure == MemoryMeasure::CgroupPeak)
            .then_some((first.peak_memory, second.peak_memory));
        if let Some((Some(a), Some(b))) = cgroup_peaks {
            assert!(a >= 96 << 20, "{backend:?}: first peak {a}");
            assert!(b < 32 << 20, "{backend:?}: second peak {b} after {a}");
        }
    }
}
