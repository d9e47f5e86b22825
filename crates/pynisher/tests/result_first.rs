//! A completed closure's outcome at its result (`Running::wait_result_first`): the outcome comes
//! while the main process is still ours (killed, not reaped), a call that left other processes
//! ends at its exit (they are dead when it returns), and the `Behind` step leaves no process,
//! zombie, leaf or descriptor behind, over many calls. On the process-group fallback (and for
//! anything but a plain closure) the call ends at its exit.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{dead_within, is_alive, on, open_fds, zombie_children};
use pynisher::{Backend, Behind, Limits, NoObserver, Outcome, Status};
use pynisher_testkit::Trials;

fn main() {
    let cgroups: Vec<Backend> = cgroup_backends();
    let lacking = cgroups
        .is_empty()
        .then(|| "needs a cgroup backend: none here".to_string());
    Trials::default()
        .needs(
            lacking.clone(),
            "the_outcome_comes_before_the_main_process_is_reaped",
            the_outcome_comes_before_the_main_process_is_reaped,
        )
        .needs(
            lacking.clone(),
            "a_grandchild_is_dead_when_the_outcome_comes",
            a_grandchild_is_dead_when_the_outcome_comes,
        )
        .needs(
            lacking.clone(),
            "dropping_behind_waits_for_the_teardown",
            dropping_behind_waits_for_the_teardown,
        )
        .needs(
            lacking,
            "a_thousand_calls_leak_nothing",
            a_thousand_calls_leak_nothing,
        )
        .test(
            "the_process_group_backend_and_captured_output_end_at_the_exit",
            the_process_group_backend_and_captured_output_end_at_the_exit,
        )
        // One at a time: the tests count this process's descriptors and zombies.
        .run_one_at_a_time()
}

fn cgroup_backends() -> Vec<Backend> {
    pynisher::available_backends()
        .into_iter()
        .filter(|b| *b != Backend::ProcessGroup)
        .collect()
}

fn call<T, F>(limits: &Limits, f: F) -> (Outcome<T>, Behind)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> T,
{
    // SAFETY: the test binary's harness threads hold no lock the closures need (they only
    // compute, fork or sleep through libc).
    unsafe { limits.spawn_closure_unchecked(f) }
        .unwrap()
        .wait_result_first(&mut NoObserver)
        .unwrap()
}

/// The state letter of `/proc/PID/stat`, `None` when the pid is gone.
fn state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_string)
}

/// The call's leaf directories of `pid` (from `/proc/PID/cgroup`), under the cgroup mounts.
fn leaves_of(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("pynisher"))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mount = if controllers.is_empty() {
                "/sys/fs/cgroup".to_string()
            } else {
                let first = controllers.split(',').find(|c| !c.starts_with("name="))?;
                format!("/sys/fs/cgroup/{first}")
            };
            Some(PathBuf::from(format!("{mount}{path}")))
        })
        .collect()
}

/// A call whose child has a slow exit (64 MiB of its own to free), so that the supervisor sees
/// the result before the exit: a child that exits before the supervisor even wakes up ends at its
/// exit (nothing left to wait for), which a loaded machine may make happen; tried a few times.
fn slow_exit_call(limits: &Limits) -> (Outcome<u32>, Behind) {
    for _ in 0..20 {
        let (outcome, behind) = call(limits, || {
            let mut big = vec![0u8; 64 << 20];
            for page in big.chunks_mut(4096) {
                page[0] = 1;
            }
            std::mem::forget(big);
            6u32 * 7
        });
        if behind.is_pending() {
            return (outcome, behind);
        }
    }
    panic!("20 calls whose exit frees 64 MiB all ended at their exit");
}

fn the_outcome_comes_before_the_main_process_is_reaped() {
    for b in cgroup_backends() {
        let (outcome, behind) = slow_exit_call(&on(b));
        assert_eq!(outcome.status, Status::Completed, "{b:?}");
        assert_eq!(outcome.value, Some(42), "{b:?}");
        assert_eq!(outcome.exit_code, Some(0), "{b:?}");
        assert_eq!(outcome.signal, None, "{b:?}");
        assert!(!outcome.killed, "{b:?}");
        assert_eq!(outcome.leftovers_killed, 0, "{b:?}");
        let pid = behind
            .pid()
            .expect("a completed closure leaves its exit behind");
        // Not reaped yet: the pid is still there (dying, or a zombie once its teardown ended).
        assert!(state(pid).is_some(), "{b:?}: {pid} already reaped");
        assert!(
            dead_within(pid, Duration::from_secs(5)),
            "{b:?}: {pid} not killed"
        );
        let leaves = leaves_of(pid);
        behind.finish();
        assert_eq!(
            state(pid),
            None,
            "{b:?}: {pid} not reaped by the behind step"
        );
        assert_eq!(zombie_children(), 0, "{b:?}");
        for leaf in leaves {
            let procs = std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
            assert!(procs.trim().is_empty(), "{b:?}: {leaf:?} holds {procs}");
        }
    }
}

fn a_grandchild_is_dead_when_the_outcome_comes() {
    for b in cgroup_backends() {
        let (outcome, behind) = call(&on(b), || {
            // SAFETY: fork in the single-threaded closure child; the grandchild only sleeps.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                loop {
                    // SAFETY: async-signal-safe; ends only with the kill.
                    unsafe { libc::pause() };
                }
            }
            pid
        });
        assert_eq!(outcome.status, Status::Completed, "{b:?}");
        let grandchild = outcome.value.unwrap();
        assert!(grandchild > 0);
        assert_eq!(outcome.leftovers_killed, 1, "{b:?}");
        assert!(outcome.killed, "{b:?}");
        // Dead when the outcome is there, not only once the behind step ran: such a call ends at
        // its exit.
        assert!(
            !is_alive(grandchild),
            "{b:?}: grandchild {grandchild} alive"
        );
        assert!(!behind.is_pending(), "{b:?}");
        behind.finish();
        assert_eq!(zombie_children(), 0, "{b:?}");
    }
}

fn dropping_behind_waits_for_the_teardown() {
    for b in cgroup_backends() {
        let (outcome, behind) = slow_exit_call(&on(b));
        assert_eq!(outcome.value, Some(42), "{b:?}");
        let pid = behind.pid().expect("pending");
        drop(behind);
        assert_eq!(state(pid), None, "{b:?}: {pid} not reaped by the drop");
    }
}

fn a_thousand_calls_leak_nothing() {
    for b in cgroup_backends() {
        let limits = on(b).wall_time(Duration::from_secs(30));
        // Warm up (the pool of leaves ahead, the thread's buffers).
        for _ in 0..5 {
            call(&limits, || 0u32).1.finish();
        }
        let fds = open_fds();
        // Half finished at once, half a call later (the way a caller defers it).
        let mut pending: Option<Behind> = None;
        for i in 0..1000u32 {
            let (outcome, behind) = call(&limits, move || i);
            assert_eq!(outcome.value, Some(i), "{b:?}");
            if let Some(earlier) = pending.take() {
                earlier.finish();
            }
            if i % 2 == 0 {
                behind.finish();
            } else {
                pending = Some(behind);
            }
        }
        drop(pending);
        assert_eq!(open_fds(), fds, "{b:?}: descriptors leaked");
        assert_eq!(zombie_children(), 0, "{b:?}");
        // SAFETY: waitpid with WNOHANG on any child: no memory is shared.
        let any = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(any, -1, "{b:?}: a child of ours is left");
    }
}

fn the_process_group_backend_and_captured_output_end_at_the_exit() {
    let (outcome, behind) = call(&on(Backend::ProcessGroup), || 5u32);
    assert_eq!(outcome.value, Some(5));
    assert!(
        !behind.is_pending(),
        "the process group has no cheap tree-wide kill"
    );
    for b in cgroup_backends() {
        let (outcome, behind) = call(&on(b).capture_output(true), || 5u32);
        assert_eq!(outcome.value, Some(5), "{b:?}");
        assert!(
            !behind.is_pending(),
            "{b:?}: captured output needs the end of file"
        );
        let (outcome, behind) = call(&on(b).keep_descendants(true), || 5u32);
        assert_eq!(outcome.value, Some(5), "{b:?}");
        assert!(
            !behind.is_pending(),
            "{b:?}: keep_descendants ends at the exit"
        );
    }
}
