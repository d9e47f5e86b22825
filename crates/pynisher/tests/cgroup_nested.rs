//! A call made from inside a call (a closure that uses pynisher itself) gets a leaf nested in the
//! outer call's leaf, and the outer call's clean-up removes both (the outer leaf's removal is
//! deferred to a later idle time or the exit, so the caller is a helper process whose exit is
//! checked).
//!
//! Its own test binary: the closure child is forked while no other test thread can hold a lock.

use std::time::Duration;

use pynisher::{Backend, Command, Limits, Status};

use pynisher_testkit::{helper_process, lacking_if_empty, Trials};

fn main() {
    let lacking = lacking_if_empty(
        &cgroup_backends(),
        "a cgroup backend",
        pynisher::available_backends(),
    );
    Trials::default()
        .needs(
            lacking,
            "a_call_inside_a_call_is_nested_in_the_outer_leaf_and_cleaned_up_with_it",
            a_call_inside_a_call_is_nested_in_the_outer_leaf_and_cleaned_up_with_it,
        )
        .helper("helper_calls_inside_a_call", helper_calls_inside_a_call)
        .needs(
            (!pynisher::available_backends().contains(&Backend::CgroupV1))
                .then(|| "needs the cgroup1 backend (a v1 freezer)".to_string()),
            "a_nested_leaf_left_frozen_inside_a_killed_call_does_not_keep_it_alive",
            a_nested_leaf_left_frozen_inside_a_killed_call_does_not_keep_it_alive,
        )
        .run()
}

/// A nested call's supervisor killed between its own freeze and thaw leaves its leaf FROZEN; the
/// outer call's kill must still end the processes in it (they cannot die while frozen).
fn a_nested_leaf_left_frozen_inside_a_killed_call_does_not_keep_it_alive() {
    // The call makes a freezer cgroup below its own leaf, puts a sleeper in it, freezes it, and
    // sleeps past its wall-time limit.
    let script = r#"
        leaf=/sys/fs/cgroup/freezer$(sed -n 's/^[0-9]*:freezer://p' /proc/self/cgroup)/nested
        mkdir "$leaf" || exit 3
        sleep 100 &
        echo $! > "$leaf/cgroup.procs" || exit 4
        echo FROZEN > "$leaf/freezer.state" || exit 5
        sleep 100
    "#;
    let outcome = Limits::new()
        .backend(Backend::CgroupV1)
        .wall_time(Duration::from_millis(500))
        .run_command(&Command::new("sh").arg("-c").arg(script))
        .expect("the outer call ends, frozen nested leaf and all");
    assert_eq!(outcome.status, Status::WallTimeout, "{outcome:?}");
}

fn cgroup_backends() -> Vec<Backend> {
    pynisher::available_backends()
        .into_iter()
        .filter(|b| *b != Backend::ProcessGroup)
        .collect()
}

fn a_call_inside_a_call_is_nested_in_the_outer_leaf_and_cleaned_up_with_it() {
    let helper = helper_process("helper_calls_inside_a_call")
        .spawn()
        .unwrap();
    let pid = helper.id();
    let out = helper.wait_with_output().unwrap();
    assert!(out.status.success(), "the helper failed");
    // The outer leaves (with the inner ones' parent directories in them) are gone.
    let leftovers: Vec<String> = [
        "/sys/fs/cgroup/unified/pynisher",
        "/sys/fs/cgroup/pids/pynisher",
        "/sys/fs/cgroup/freezer/pynisher",
        "/sys/fs/cgroup/cpuacct/pynisher",
    ]
    .iter()
    .filter_map(|d| std::fs::read_dir(d).ok())
    .flatten()
    .filter_map(Result::ok)
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .filter(|n| n.starts_with(&format!("call-{pid}-")))
    .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn helper_calls_inside_a_call() {
    for backend in cgroup_backends() {
        let outer = Limits::new()
            .backend(backend)
            .wall_time(Duration::from_secs(20));
        // SAFETY: the only other thread is the test harness's main thread, waiting for this test.
        let running = unsafe {
            outer.spawn_closure_unchecked(move || {
                let inner = Limits::new()
                    .backend(backend)
                    .capture_output(true)
                    .run_command(&Command::new("cat").arg("/proc/self/cgroup"));
                match inner {
                    Ok(o) => (
                        o.status.name().to_string(),
                        o.containment.backend.name().to_string(),
                        o.stdout.map(|c| c.text()).unwrap_or_default(),
                    ),
                    Err(e) => ("error".into(), e.to_string(), String::new()),
                }
            })
        }
        .unwrap();
        let outcome = running.wait().unwrap();
        assert_eq!(
            outcome.status,
            Status::Completed,
            "{backend:?}: {outcome:?}"
        );
        let (status, used, cgroups) = outcome.value.unwrap();
        assert_eq!(status, "completed", "{backend:?}: {used}");
        assert_eq!(used, backend.name());
        // The inner process sits in call-…/pynisher/call-… in the hierarchies the backend uses.
        let nested = cgroups
            .lines()
            .filter(|l| l.matches("call-").count() == 2)
            .count();
        assert!(nested >= 1, "{backend:?}: not nested:\n{cgroups}");
        eprintln!("{backend:?} inner cgroups:\n{cgroups}");
    }
}
