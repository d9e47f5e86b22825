//! Leaves left by callers that died are emptied and removed by the next process that uses the
//! hierarchy (its detection's sweep), and only those: a leaf whose owner may live is left alone, a
//! leaf name already taken is said aloud, and a cgroup v2 hierarchy that ranks below v1 is not
//! swept by a call that does not use it.
//!
//! Needs root and a writable cgroup v2 hierarchy at /sys/fs/cgroup/unified (CI's hybrid layout);
//! each check runs in a fresh process, because detection, and so the sweep, happens once per
//! process. Split from `cgroup_leaves.rs` (leaves of live callers).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use pynisher::{Backend, Command, Limits, Status};

use common::leaves::leaf_parents;
use pynisher_testkit::{helper_process, Trials};

fn main() {
    // A helper's run (`--ignored`, in a fresh process) must not detect cgroups before its own
    // set-up: detection sweeps stale leaves, and the sweep is what the helpers test.
    let helper_run = std::env::args().any(|a| a == "--ignored");
    let (v2_as_root, v2_below_v1) = if helper_run {
        (None, None)
    } else {
        (v2_as_root_lacking(), v2_below_v1_lacking())
    };
    Trials::default()
        .needs(
            v2_as_root.clone(),
            "leaves_of_a_dead_supervisor_are_emptied_and_removed_later",
            leaves_of_a_dead_supervisor_are_emptied_and_removed_later,
        )
        .helper("helper_runs_one_v2_call", helper_runs_one_v2_call)
        .needs(
            v2_as_root.clone(),
            "a_stale_leaf_of_a_dead_process_that_had_our_pid_is_swept_and_never_taken_for_ours",
            a_stale_leaf_of_a_dead_process_that_had_our_pid_is_swept_and_never_taken_for_ours,
        )
        .helper(
            "helper_meets_a_stale_leaf_of_its_own_pid",
            helper_meets_a_stale_leaf_of_its_own_pid,
        )
        .needs(
            v2_as_root,
            "a_leaf_name_that_is_already_taken_is_said_aloud_never_a_silent_downgrade",
            a_leaf_name_that_is_already_taken_is_said_aloud_never_a_silent_downgrade,
        )
        .helper(
            "helper_finds_its_leaf_names_taken",
            helper_finds_its_leaf_names_taken,
        )
        .needs(
            v2_below_v1,
            "a_v2_hierarchy_ranked_below_v1_is_not_probed_or_swept_by_an_auto_call",
            a_v2_hierarchy_ranked_below_v1_is_not_probed_or_swept_by_an_auto_call,
        )
        .helper(
            "helper_leaves_v2_alone_until_asked",
            helper_leaves_v2_alone_until_asked,
        )
        .run()
}

/// The checks run one at a time: each fakes leaves that another's sweep would remove.
static SERIAL: Mutex<()> = Mutex::new(());

/// Faking another process's leaves needs root, a writable cgroup v2 hierarchy and its leaf parent
/// at /sys/fs/cgroup/unified (a hybrid layout, as on CI).
fn v2_as_root_lacking() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root to write leaves of other processes".into());
    }
    if !pynisher::available_backends().contains(&Backend::CgroupV2) {
        return Some("needs a writable cgroup v2 hierarchy".into());
    }
    if leaf_parents(Backend::CgroupV2).is_empty() {
        return Some("needs the cgroup v2 leaf parent at /sys/fs/cgroup/unified".into());
    }
    None
}

/// The hybrid layout of CI: a usable cgroup v1 and, beside it, a writable cgroup v2 hierarchy
/// (leaf parent at /sys/fs/cgroup/unified) that does not offer `memory`, so ranks below v1.
fn v2_below_v1_lacking() -> Option<String> {
    if let Some(why) = v2_as_root_lacking() {
        return Some(why);
    }
    if !pynisher::available_backends().contains(&Backend::CgroupV1) {
        return Some("needs cgroup v1".into());
    }
    if v2_offers_memory() {
        return Some("needs a cgroup v2 hierarchy without the memory controller".into());
    }
    None
}

/// Whether this process's cgroup v2 directory offers `memory` to the leaves below it.
fn v2_offers_memory() -> bool {
    leaf_parents(Backend::CgroupV2).first().is_some_and(|p| {
        std::fs::read_to_string(p.parent().unwrap().join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == "memory")
    })
}

fn a_v2_hierarchy_ranked_below_v1_is_not_probed_or_swept_by_an_auto_call() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_helper("helper_leaves_v2_alone_until_asked");
}

fn helper_leaves_v2_alone_until_asked() {
    // Before this process's first call: an empty leaf of a dead owner (no process has a pid
    // above PID_MAX_LIMIT) in the v2 parent, which only v2's detection sweeps.
    let parent = leaf_parents(Backend::CgroupV2).into_iter().next().unwrap();
    let stale = parent.join(format!("call-4194305-1-{}", std::process::id()));
    std::fs::create_dir(&stale).unwrap();
    let outcome = Limits::new().run_command(&Command::new("true")).unwrap();
    let untouched = stale.exists();
    assert_eq!(pynisher::preferred_backend(), Backend::CgroupV1);
    let still_untouched = stale.exists();
    // Asking for the list detects v2, and its sweep removes the dead owner's leaf.
    let listed = pynisher::available_backends();
    let swept = !stale.exists();
    let _ = std::fs::remove_dir(&stale);
    assert_eq!(outcome.status, Status::Completed);
    assert_eq!(outcome.containment.backend, Backend::CgroupV1);
    let notes = &outcome.containment.guarantees.notes;
    assert!(!notes.iter().any(|n| n.contains("v2")), "{notes:?}");
    assert!(
        untouched,
        "an Auto call on v1 detected cgroup v2 (its sweep ran)"
    );
    assert!(still_untouched, "preferred_backend detected cgroup v2");
    assert_eq!(listed[..2], [Backend::CgroupV1, Backend::CgroupV2]);
    assert!(swept, "available_backends did not detect cgroup v2");
}

fn leaves_of_a_dead_supervisor_are_emptied_and_removed_later() {
    // A leaf named for a supervisor pid that does not exist, holding a live process, stands for
    // the leftovers of a caller that crashed. A fresh process (a child test binary run) cleans it.
    let parents = leaf_parents(Backend::CgroupV2);
    let parent = parents.first().expect("checked by v2_as_root_lacking");
    let dead_pid = 4_000_000 + (std::process::id() % 100_000) as i32;
    let leaf = parent.join(format!("call-{dead_pid}-0"));
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    // Any other process starting on this machine may clean the leaf up while it is still empty
    // (that is the behaviour under test); try again until the sleeper is inside.
    let placed = (0..50).any(|_| {
        let _ = std::fs::create_dir(&leaf);
        std::fs::write(leaf.join("cgroup.procs"), sleeper.id().to_string()).is_ok()
    });
    assert!(placed, "could not place a process in {leaf:?}");

    // Detection (and so clean-up) happens once per process: run it in a fresh one.
    let status = helper_process("helper_runs_one_v2_call").status().unwrap();
    assert!(status.success());
    assert!(!leaf.exists(), "stale leaf {leaf:?} still there");
    let waited = sleeper.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(waited.signal(), Some(libc::SIGKILL));
}

fn helper_runs_one_v2_call() {
    let outcome = Limits::new()
        .backend(Backend::CgroupV2)
        .run_command(&Command::new("true"))
        .unwrap();
    assert_eq!(outcome.status, Status::Completed);
}

/// Field 22 of /proc/self/stat: this process's start time (clock ticks after boot).
fn own_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Runs one `#[ignore]`d helper of this file in a fresh process (detection, and so the sweep,
/// happens once per process) and asserts that it passed.
fn run_helper(name: &str) {
    let status = helper_process(name).status().unwrap();
    assert!(status.success(), "{name} failed");
}

fn a_stale_leaf_of_a_dead_process_that_had_our_pid_is_swept_and_never_taken_for_ours() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_helper("helper_meets_a_stale_leaf_of_its_own_pid");
}

fn helper_meets_a_stale_leaf_of_its_own_pid() {
    // Before this process's first call: the leftovers of an earlier process with our pid (it
    // started before us), holding a live process, as a crash would leave them.
    let parent = leaf_parents(Backend::CgroupV2).into_iter().next().unwrap();
    let me = std::process::id();
    let stale = parent.join(format!("call-{me}-{}-0", own_start_time() - 1));
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    // An old-style name (no start time) with our pid proves nothing: it must be left alone.
    let old_style = parent.join(format!("call-{me}-0"));
    std::fs::create_dir(&old_style).unwrap();

    for backend in [Backend::CgroupV2, Backend::Auto] {
        let outcome = Limits::new()
            .backend(backend)
            .run_command(&Command::new("true"))
            .unwrap();
        assert_eq!(outcome.status, Status::Completed);
        assert_ne!(outcome.containment.backend, Backend::ProcessGroup);
        let notes = &outcome.containment.guarantees.notes;
        assert!(
            !notes.iter().any(|n| n.contains("not used")),
            "{backend:?}: {notes:?}"
        );
    }
    assert!(!stale.exists(), "stale leaf {stale:?} still there");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        old_style.exists(),
        "a leaf whose owner may live was removed"
    );
    std::fs::remove_dir(&old_style).unwrap();
}

fn a_leaf_name_that_is_already_taken_is_said_aloud_never_a_silent_downgrade() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_helper("helper_finds_its_leaf_names_taken");
}

fn helper_finds_its_leaf_names_taken() {
    // Leaves named as this process will name its own (pid, start time, counter): an EEXIST that
    // cannot happen unless something is badly wrong.
    let parent = leaf_parents(Backend::CgroupV2).into_iter().next().unwrap();
    let me = std::process::id();
    let start = own_start_time();
    let taken: Vec<PathBuf> = (0..4)
        .map(|n| parent.join(format!("call-{me}-{start}-{n}")))
        .collect();
    for dir in &taken {
        std::fs::create_dir(dir).unwrap();
    }
    let outcome = Limits::new().run_command(&Command::new("true")).unwrap();
    let forced = Limits::new()
        .backend(Backend::CgroupV2)
        .run_command(&Command::new("true"));
    for dir in &taken {
        let _ = std::fs::remove_dir(dir);
    }
    assert_eq!(outcome.status, Status::Completed);
    let notes = &outcome.containment.guarantees.notes;
    // The parent's `cgroup.controllers` are what a leaf could get: without `memory`, v2 ranks
    // below a usable v1, and Auto does not look at it (nothing is passed over).
    if v2_offers_memory() || outcome.containment.backend != Backend::CgroupV1 {
        assert!(
            notes
                .iter()
                .any(|n| n.contains("cgroup v2 not used") && n.contains("exists")),
            "Auto passed cgroup v2 over without a word: {:?} {notes:?}",
            outcome.containment.backend
        );
    }
    let err = forced.expect_err("a forced cgroup v2 cannot work here");
    assert!(err.to_string().contains("exists"), "{err}");
    assert!(err.to_string().contains("cgroup"), "{err}");
}
