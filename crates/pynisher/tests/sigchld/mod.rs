//! The checks shared by the tests whose caller ignores SIGCHLD (`sigchld_ignored.rs`,
//! `sigchld_nocldwait.rs`). Each of those is its own test binary: the disposition is process-wide.

use std::time::Duration;

use crate::common::{backends, burn_cpu_py, is_alive, on, py, sh, zombie_children};
use pynisher::Status;

/// Calls of every kind on every backend, with the exit status, CPU time, value and status exact.
pub fn every_kind_of_call_reports_exactly(setup: fn()) {
    setup();
    for b in backends() {
        let o = on(b).run_command(&sh("exit 7")).unwrap();
        assert_eq!(
            (o.status.clone(), o.exit_code),
            (Status::Completed, Some(7)),
            "{b:?}"
        );

        let o = on(b).run_command(&sh("kill -TERM $$")).unwrap();
        assert_eq!(
            o.status,
            Status::Signaled {
                signal: libc::SIGTERM
            },
            "{b:?}"
        );

        let o = on(b).run_command(&py(&burn_cpu_py(0.3))).unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        assert!(
            o.cpu_time.total() >= Duration::from_millis(280),
            "{b:?}: {:?}",
            o.cpu_time
        );

        let o = on(b)
            .wall_time(Duration::from_millis(200))
            .run_command(&sh("sleep 5"))
            .unwrap();
        assert_eq!(o.status, Status::WallTimeout, "{b:?}");

        // SAFETY: the closures touch no lock another test thread may hold.
        let o = unsafe { on(b).spawn_closure_unchecked(|| 6 * 7u64) }
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            (o.status.clone(), o.value),
            (Status::Completed, Some(42)),
            "{b:?}"
        );

        // SAFETY: the closure only computes and reads its CPU clock.
        let o = unsafe {
            on(b).spawn_closure_unchecked(|| {
                let mut x = 0u64;
                while own_cpu_time() < Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                x > 0
            })
        }
        .unwrap()
        .wait()
        .unwrap();
        assert_eq!(
            (o.status.clone(), o.value),
            (Status::Completed, Some(true)),
            "{b:?}"
        );
        assert!(
            o.cpu_time.total() >= Duration::from_millis(250),
            "{b:?}: {:?}",
            o.cpu_time
        );

        // SAFETY: as above; abort ends this child process only.
        let o = unsafe { on(b).spawn_closure_unchecked(|| -> u8 { libc::abort() }) }
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            o.status,
            Status::Signaled {
                signal: libc::SIGABRT
            },
            "{b:?}"
        );

        // SAFETY: the closure only sleeps.
        let o = unsafe {
            on(b)
                .wall_time(Duration::from_millis(200))
                .spawn_closure_unchecked(|| {
                    std::thread::sleep(Duration::from_secs(5));
                    0u8
                })
        }
        .unwrap()
        .wait()
        .unwrap();
        assert_eq!(o.status, Status::WallTimeout, "{b:?}");

        // SAFETY: the closure panics; the hook writes the message into this test's own output
        // capture, a buffer no other thread holds.
        let o = unsafe { on(b).spawn_closure_unchecked(|| -> u8 { panic!("boom") }) }
            .unwrap()
            .wait()
            .unwrap();
        assert!(
            matches!(o.status, Status::Panicked { .. }),
            "{b:?}: {:?}",
            o.status
        );
    }
    assert_eq!(zombie_children(), 0);
}

/// A leftover of the call is killed on every backend, the process group's included.
pub fn leftovers_are_killed(setup: fn()) {
    setup();
    for b in backends() {
        let o = on(b)
            .capture_output(true)
            .run_command(&sh("sleep 1000 & echo $!"))
            .unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        let pid: i32 = o.stdout.unwrap().text().trim().parse().unwrap();
        assert!(!is_alive(pid), "{b:?}: leftover {pid} still alive");
    }
}

/// CPU time of the calling process so far.
fn own_cpu_time() -> Duration {
    // SAFETY: timespec is plain old data, filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
