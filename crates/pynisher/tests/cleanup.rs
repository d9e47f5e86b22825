//! Nothing escapes and nothing leaks: descendants die with the call, pipes are drained within
//! bounds, file descriptors and zombies do not accumulate.

mod common;

use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::{backends, dead_within, is_alive, on, open_fds, sh, zombie_children};
use pynisher::{Backend, Command, Limits, Status};

#[test]
fn a_grandchild_sleeping_forever_is_dead_when_the_call_returns() {
    for b in backends() {
        let o = on(b)
            .capture_output(true)
            .run_command(&sh("sleep 1000 & echo $!"))
            .unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        let pid: i32 = o.stdout.unwrap().text().trim().parse().unwrap();
        assert!(!is_alive(pid), "{b:?}: grandchild {pid} still alive");
        assert_eq!(o.leftovers_killed, 1, "{b:?}");
        assert_eq!(zombie_children(), 0);
    }
}

#[test]
fn a_grandchild_is_killed_when_a_limit_ends_the_call() {
    for b in backends() {
        let o = on(b)
            .wall_time(Duration::from_millis(300))
            .capture_output(true)
            .run_command(&sh("sleep 1000 & echo $!; sleep 1000"))
            .unwrap();
        assert_eq!(o.status, Status::WallTimeout);
        let pid: i32 = o.stdout.unwrap().text().trim().parse().unwrap();
        assert!(!is_alive(pid), "{b:?}: grandchild {pid} still alive");
    }
}

#[test]
fn an_escaped_descendant_holding_the_pipes_cannot_hang_the_call() {
    for b in backends() {
        let t = Instant::now();
        let o = on(b)
            .capture_output(true)
            .drain_timeout(Duration::from_millis(200))
            .run_command(&sh("setsid sh -c 'sleep 3' & echo started"))
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{b:?} {:?}",
            t.elapsed()
        );
        assert_eq!(o.status, Status::Completed);
        assert_eq!(o.stdout.unwrap().text(), "started\n");
    }
}

#[test]
fn output_floods_are_bounded_and_do_not_deadlock() {
    let limit = 1 << 20;
    // SAFETY: the closure writes to fd 1 through a raw File (no std lock) and allocates.
    let o = unsafe {
        Limits::new()
            .capture_output(true)
            .output_limit(limit)
            .wall_time(Duration::from_secs(60))
            .spawn_closure_unchecked(|| {
                let mut out = std::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(1));
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..200 {
                    out.write_all(&chunk).unwrap();
                }
                200u32
            })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(o.status, Status::Completed);
    assert_eq!(o.value, Some(200));
    let out = o.stdout.unwrap();
    assert!(out.truncated);
    assert_eq!(out.total_bytes, 200 << 20);
    assert!(out.bytes.len() <= limit + 100);
}

#[test]
fn a_thousand_calls_leak_no_descriptors_and_no_zombies() {
    let fds_before = open_fds();
    for i in 0..1000u32 {
        // SAFETY: the closure only computes.
        let o = unsafe { Limits::new().spawn_closure_unchecked(move || i * 2) }
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(o.value, Some(i * 2));
    }
    for _ in 0..100 {
        let o = Limits::new()
            .capture_output(true)
            .run_command(&Command::new("true"))
            .unwrap();
        assert_eq!(o.status, Status::Completed);
    }
    // Other tests run in parallel threads and open descriptors of their own; allow for them.
    assert!(
        open_fds() <= fds_before + 16,
        "{} -> {}",
        fds_before,
        open_fds()
    );
    assert_eq!(zombie_children(), 0);
}

#[test]
fn the_call_dies_with_its_supervisor() {
    let pidfile = std::env::temp_dir().join(format!("pynisher-orphan-{}", std::process::id()));
    let path = pidfile.clone();
    // The outer call's closure starts an inner call, records the inner child's pid, then kills
    // itself. Only the inner child's parent-death signal can end it: the outer call runs on the
    // process-group backend, which cannot see an orphan in another process group.
    // SAFETY: the closure allocates, forks through the engine and writes a file.
    let o = unsafe {
        Limits::new()
            .backend(Backend::ProcessGroup)
            .wall_time(Duration::from_secs(10))
            .spawn_closure_unchecked(move || {
                let running = Limits::new()
                    .backend(Backend::ProcessGroup)
                    .spawn_command(&Command::new("sleep").arg("100"))
                    .unwrap();
                std::fs::write(&path, running.pid().to_string()).unwrap();
                std::mem::forget(running);
                libc::kill(libc::getpid(), libc::SIGKILL);
                0u8
            })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(o.status, Status::Signaled { signal: 9 });
    let inner: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    std::fs::remove_file(&pidfile).unwrap();
    assert!(
        dead_within(inner, Duration::from_secs(2)),
        "inner {inner} survived its supervisor"
    );
}

#[test]
fn a_program_inherits_no_descriptor_beyond_stdio() {
    // A descriptor the caller forgot to mark close-on-exec must not reach the program.
    // SAFETY: dup of our own stdin descriptor; closed below.
    let leaked = unsafe { libc::dup(0) };
    assert!(leaked >= 0);
    let o = Limits::new()
        .capture_output(true)
        .run_command(&sh("ls /proc/self/fd"))
        .unwrap();
    // SAFETY: closing the descriptor we created.
    unsafe { libc::close(leaked) };
    let fds: Vec<i32> = o
        .stdout
        .unwrap()
        .text()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    // 0, 1, 2, and the directory `ls` itself opened; nothing else.
    assert!(
        fds.iter().filter(|&&fd| fd > 2).count() <= 1,
        "{fds:?} (leaked {leaked})"
    );
}

#[test]
fn a_closure_child_keeps_the_callers_descriptors_where_they_were() {
    let path = std::env::temp_dir().join(format!("pynisher-fd-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let expected = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    // SAFETY: the closure reads a link in /proc and allocates.
    let o = unsafe {
        Limits::new().spawn_closure_unchecked(move || {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }
    .unwrap()
    .wait()
    .unwrap();
    drop(file);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(o.status, Status::Completed);
    assert_eq!(o.value.unwrap(), expected.to_string_lossy());
}

/// An observer that panics on its first look at the call.
struct PanickingObserver;
impl pynisher::Observer for PanickingObserver {
    fn interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
    fn should_cancel(&mut self) -> bool {
        panic!("observer bug");
    }
}

/// Whether `pid` is a zombie child of this process (killed but never reaped).
fn is_our_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let mut f = s.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace();
        f.next() == Some("Z") && f.next() == Some(&std::process::id().to_string())
    })
}

#[test]
fn a_panicking_observer_leaves_no_process_behind() {
    for b in backends() {
        let pidfile =
            std::env::temp_dir().join(format!("pynisher-observer-{}-{b:?}", std::process::id()));
        let script = format!("sleep 1000 & echo $! > {}; sleep 1000", pidfile.display());
        let running = on(b).spawn_command(&sh(&script)).unwrap();
        let main = running.pid();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            running.wait_observed(&mut PanickingObserver)
        }));
        assert!(
            panicked.is_err(),
            "{b:?}: the observer's panic must reach the caller"
        );
        assert!(!is_alive(main), "{b:?}: main process {main} still alive");
        assert!(
            !is_our_zombie(main),
            "{b:?}: main process {main} never reaped"
        );
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&pidfile);
        assert!(
            dead_within(grandchild, Duration::from_secs(1)),
            "{b:?}: grandchild {grandchild} still alive"
        );
    }
}
