//! Children forked ahead of their calls (`Limits::park_closure_bytes`, `Parked::release`), on
//! every backend this machine has.

mod common;

use std::time::{Duration, Instant};

use common::{backends, on};
use pynisher::{Error, Status};

/// Whether `pid` is a live process (a zombie or no process at all is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_until_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    !alive(pid)
}

#[test]
fn a_parked_child_runs_nothing_before_its_release() {
    for b in backends() {
        let marker =
            std::env::temp_dir().join(format!("pynisher-parked-{}-{b:?}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let path = marker.clone();
        // SAFETY: the closure writes a file with std::fs (no lock another test thread holds).
        let parked = unsafe {
            on(b).park_closure_bytes(
                || {},
                move || {
                    std::fs::write(&path, b"ran").map_err(|e| e.to_string())?;
                    Ok(b"done".to_vec())
                },
            )
        }
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !marker.exists(),
            "{b:?}: the parked child ran its closure before the release"
        );
        assert!(alive(parked.pid()), "{b:?}");
        let o = parked.release(&on(b)).unwrap().wait().unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        assert_eq!(o.value.as_deref(), Some(&b"done"[..]), "{b:?}");
        assert!(marker.exists(), "{b:?}");
        let _ = std::fs::remove_file(&marker);
    }
}

#[test]
fn the_wall_clock_of_a_parked_child_starts_at_its_release() {
    for b in backends() {
        let limits = on(b).wall_time(Duration::from_millis(300));
        // SAFETY: the closure only sleeps.
        let parked = unsafe {
            limits.park_closure_bytes(
                || {},
                || {
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(Vec::new())
                },
            )
        }
        .unwrap();
        // Parked longer than the wall-time limit: none of it counts.
        std::thread::sleep(Duration::from_millis(500));
        let o = parked.release(&limits).unwrap().wait().unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        assert!(
            o.wall_time < Duration::from_millis(300),
            "{b:?}: {:?}",
            o.wall_time
        );
    }
}

fn cpu_rlimit() -> Result<Vec<u8>, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a local.
    unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut lim) };
    Ok(lim.rlim_cur.to_le_bytes().to_vec())
}

#[test]
fn a_released_child_gets_the_cpu_limit_of_its_call_not_of_its_fork() {
    for b in backends() {
        // SAFETY: the closure only calls getrlimit.
        let parked = unsafe { on(b).park_closure_bytes(|| {}, cpu_rlimit) }.unwrap();
        let call = on(b)
            .cpu_time(Duration::from_secs(5))
            .grace_period(Duration::from_secs(1));
        assert!(parked.fits(&call), "{b:?}");
        let o = parked.release(&call).unwrap().wait().unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        let soft = u64::from_le_bytes(o.value.unwrap().try_into().unwrap());
        // The backstop: the CPU limit plus the grace period plus 2 s.
        assert_eq!(soft, 8, "{b:?}");
    }
}

#[test]
fn a_parked_child_that_does_not_fit_the_call_is_refused_and_removed() {
    for b in backends() {
        let parked_for = on(b).memory(512 << 20);
        // SAFETY: the closure only returns.
        let parked = unsafe { parked_for.park_closure_bytes(|| {}, || Ok(Vec::new())) }.unwrap();
        let pid = parked.pid();
        let other = on(b).memory(256 << 20);
        assert!(!parked.fits(&other), "{b:?}");
        match parked.release(&other) {
            Err(Error::InvalidLimit { param, .. }) => assert_eq!(param, "limits", "{b:?}"),
            other => panic!("{b:?}: expected a refusal, got {other:?}"),
        }
        assert!(
            wait_until_gone(pid),
            "{b:?}: the refused child {pid} is still alive"
        );
    }
}

#[test]
fn dropping_a_parked_child_kills_and_reaps_it() {
    for b in backends() {
        let before = common::zombie_children();
        // SAFETY: the closure only returns.
        let parked = unsafe { on(b).park_closure_bytes(|| {}, || Ok(Vec::new())) }.unwrap();
        let pid = parked.pid();
        drop(parked);
        assert!(!alive(pid), "{b:?}: the dropped child {pid} is still alive");
        assert!(
            common::zombie_children() <= before,
            "{b:?}: a zombie was left"
        );
    }
}

#[test]
fn a_parked_child_prepares_in_its_container_before_its_release() {
    for b in backends() {
        let marker =
            std::env::temp_dir().join(format!("pynisher-prepared-{}-{b:?}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let path = marker.clone();
        // SAFETY: the closures read /proc and write a file with std::fs (no lock another test
        // thread holds).
        let parked = unsafe {
            on(b).park_closure_bytes(
                move || {
                    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                    let _ = std::fs::write(&path, cgroup);
                },
                || {
                    Ok(std::fs::read_to_string("/proc/self/cgroup")
                        .unwrap_or_default()
                        .into_bytes())
                },
            )
        }
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        let prepared_in = std::fs::read_to_string(&marker).expect("the parked child prepared");
        let o = parked.release(&on(b)).unwrap().wait().unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        // Prepared where the call then runs: its own container (the same cgroups).
        assert_eq!(prepared_in.as_bytes(), o.value.unwrap().as_slice(), "{b:?}");
        let _ = std::fs::remove_file(&marker);
    }
}

#[test]
fn a_parked_child_holds_no_pipe_end_of_a_call_in_flight() {
    for b in backends() {
        // A call in flight whose stdin is fed by us: it ends only when the write end closes.
        let running = on(b)
            .wall_time(Duration::from_secs(3))
            .capture_output(true)
            .spawn_command(
                &pynisher::Command::new("cat").stdin(pynisher::Stdin::Bytes(b"fed".to_vec())),
            )
            .unwrap();
        // Forked while that call is in flight: a copy of the caller, pipe ends included.
        // SAFETY: the closure only returns.
        let parked = unsafe { on(b).park_closure_bytes(|| {}, || Ok(Vec::new())) }.unwrap();
        let o = running.wait().unwrap();
        assert_eq!(
            o.status,
            Status::Completed,
            "{b:?}: the parked child kept cat's stdin open"
        );
        assert_eq!(o.stdout.map(|c| c.bytes), Some(b"fed".to_vec()), "{b:?}");
        drop(parked);
    }
}
