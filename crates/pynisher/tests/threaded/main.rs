//! The threaded path (`pynisher::init` + `Limits::spawn_fn`) driven from a program with many
//! threads and from a tokio runtime: values, every status, try_wait/kill/fd, no leaks.
//!
//! This test has its own `main` (`harness = false`): `init()` must run before any thread, and
//! libtest starts its threads before any test runs. The tests then run under libtest-mimic, one
//! at a time.

mod calls;
#[path = "../common/mod.rs"]
mod common;
/// The example, compiled in: one test runs its code in a process of its own.
#[allow(dead_code)]
#[path = "../../examples/threaded_caller.rs"]
mod threaded_caller;

use std::time::{Duration, Instant};

use pynisher::{Backend, Error, Limits, Running, Status};

use calls::*;
use common::{dead_within, is_alive, open_fds};
use pynisher_testkit::Trials;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Live children of `pid` (zombies included: they are leaks too).
fn children_of(pid: u32) -> Vec<u32> {
    let parent = pid.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    Some(rest.split_whitespace().nth(1)? == parent)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The zygote: the one child of this process.
fn zygote_pid() -> u32 {
    let children = children_of(std::process::id());
    assert_eq!(children.len(), 1, "children of the test: {children:?}");
    children[0]
}

/// Waits up to 2 s for the zygote to have no children (a call's supervisor exits right after it
/// sent the outcome).
fn zygote_has_no_children() -> bool {
    let zygote = zygote_pid();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if children_of(zygote).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    children_of(zygote).is_empty()
}

// ---- the tests ----

fn values_come_back_to_eight_threads() {
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    let id = t * 100 + i;
                    let job = Job {
                        id,
                        name: format!("t{t}-{i}"),
                        weights: vec![f64::from(i); 3],
                    };
                    let o = Limits::new()
                        .wall_time(Duration::from_secs(10))
                        .run_fn(summarize, job)
                        .unwrap();
                    assert_eq!(o.status, Status::Completed);
                    assert_eq!(o.value, Some((id, format!("T{t}-{i}"), 3.0 * f64::from(i))));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn every_status_from_a_multi_threaded_caller() {
    // Keep other threads alive while calling, so the caller really is multi-threaded.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    assert!(thread_count() >= 4);
    let _cpu = common::cpu_heavy();
    let waiters: Vec<_> = one_call_per_status()
        .into_iter()
        .map(|(expected, call)| std::thread::spawn(move || (expected, call.wait_blocking())))
        .collect();
    for w in waiters {
        let (expected, got) = w.join().unwrap();
        check(&expected, &got);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
}

#[cfg(feature = "tokio")]
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

#[cfg(feature = "tokio")]
fn every_status_awaited_on_a_tokio_runtime() {
    let _cpu = common::cpu_heavy();
    let rt = runtime(2);
    rt.block_on(async {
        let tasks: Vec<_> = one_call_per_status()
            .into_iter()
            .map(|(expected, call)| {
                tokio::spawn(async move { (expected, call.wait_tokio().await) })
            })
            .collect();
        for t in tasks {
            let (expected, got) = t.await.unwrap();
            check(&expected, &got);
        }
    });
}

#[cfg(feature = "tokio")]
fn tokio_waits_do_not_take_a_thread_per_call() {
    let rt = runtime(2);
    let before = thread_count();
    let max_threads = rt.block_on(async {
        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                tokio::spawn(async move {
                    Limits::new()
                        .wall_time(Duration::from_secs(20))
                        .spawn_fn(sleep_ms, 400 + i)
                        .unwrap()
                        .wait_async()
                        .await
                        .unwrap()
                })
            })
            .collect();
        // While the 40 calls sleep, count this process's threads.
        let mut max = 0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            max = max.max(thread_count());
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let o = t.await.unwrap();
            assert_eq!(
                (o.status, o.value),
                (Status::Completed, Some(400 + i as u64))
            );
        }
        max
    });
    assert!(
        max_threads <= before + 2,
        "{max_threads} threads with 40 calls in flight (before: {before})"
    );
}

fn one_thread_watches_many_calls_with_poll_and_try_wait() {
    use rustix::event::{poll, PollFd, PollFlags};
    let limits = Limits::new().wall_time(Duration::from_secs(20));
    let started = Instant::now();
    let mut pending: Vec<(u64, Running<u64>)> = (0..16u64)
        .map(|i| {
            let ms = 50 + (15 - i) * 20;
            (ms, limits.spawn_fn(sleep_ms, ms).unwrap())
        })
        .collect();
    let mut done = Vec::new();
    while !pending.is_empty() {
        let mut fds: Vec<PollFd<'_>> = pending
            .iter()
            .map(|(_, r)| PollFd::new(r, PollFlags::IN))
            .collect();
        poll(&mut fds, None).unwrap();
        let ready: Vec<usize> = (0..fds.len())
            .filter(|&i| !fds[i].revents().is_empty())
            .collect();
        drop(fds);
        assert!(!ready.is_empty());
        for i in ready.into_iter().rev() {
            if let Some(o) = pending[i].1.try_wait().unwrap() {
                let (ms, mut running) = pending.remove(i);
                assert_eq!((o.status, o.value), (Status::Completed, Some(ms)));
                assert!(matches!(running.try_wait(), Err(Error::OutcomeTaken)));
                done.push(ms);
            }
        }
    }
    assert_eq!(done.len(), 16);
    // Run side by side, not one after another (the sleeps add up to 5.2 s).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

fn kill_ends_a_call_as_cancelled_and_drop_leaves_nothing() {
    let limits = Limits::new().wall_time(Duration::from_secs(30));
    let started = Instant::now();
    let mut running = limits.spawn_fn(sleep_ms, 60_000).unwrap();
    let pid = running.pid();
    assert!(is_alive(pid));
    assert!(running.try_wait().unwrap().is_none());
    running.kill().unwrap();
    let o = running.wait().unwrap();
    assert_eq!(o.status, Status::Cancelled);
    assert!(o.killed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(dead_within(pid, Duration::from_secs(1)));

    let running = limits.spawn_fn(sleep_ms, 60_000).unwrap();
    let pid = running.pid();
    assert!(is_alive(pid));
    let dropped = Instant::now();
    drop(running);
    assert!(!is_alive(pid), "the call outlived its dropped Running");
    assert!(
        dropped.elapsed() < Duration::from_secs(5),
        "{:?}",
        dropped.elapsed()
    );
}

fn double(n: u64) -> u64 {
    n * 2
}

fn a_thousand_calls_from_eight_threads_leak_no_fds_threads_or_processes() {
    let fds = open_fds();
    let threads = thread_count();
    let limits = Limits::new().backend(Backend::ProcessGroup);
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let limits = limits.clone();
            std::thread::spawn(move || {
                for i in 0..125u64 {
                    let n = t * 1000 + i;
                    let o = limits.run_fn(double, n).unwrap();
                    assert_eq!((o.status, o.value), (Status::Completed, Some(2 * n)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(open_fds(), fds, "file descriptors leaked");
    assert_eq!(thread_count(), threads, "threads leaked");
    assert!(zygote_has_no_children(), "call supervisors left behind");
    assert_eq!(children_of(std::process::id()).len(), 1, "only the zygote");
}

#[pynisher::limit(wall_time = "5s", memory = "256MiB", backend = "none")]
fn limited_summary(job: Job, times: u32) -> (u32, String, f64) {
    let (id, name, sum) = summarize(job);
    (id, name.repeat(times as usize), sum)
}

#[pynisher::limit(wall_time = "200ms")]
fn limited_sleep(ms: u64) -> u64 {
    sleep_ms(ms)
}

#[pynisher::limit(memory = "lots")]
fn limited_with_a_bad_value() {}

fn the_limit_attribute_returns_values_and_outcomes_to_threads() {
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let job = Job {
                    id: t,
                    name: "ab".into(),
                    weights: vec![1.0, f64::from(t)],
                };
                let value = limited_summary(job, t).unwrap();
                assert_eq!(value, (t, "AB".repeat(t as usize), 1.0 + f64::from(t)));
                assert_eq!(limited_sleep(1).unwrap(), 1);
                let err = limited_sleep(5_000).unwrap_err();
                assert_eq!(err.status(), Some(&Status::WallTimeout));
                assert!(err.outcome().unwrap().killed);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let err = limited_with_a_bad_value().unwrap_err();
    assert!(matches!(
        &err,
        pynisher::CallError::Pynisher(Error::InvalidLimit { param: "memory", value, .. }) if value == "lots"
    ));
}

fn the_threaded_caller_example_gets_every_value_and_timeout_right() {
    let out = rerun_self("example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout.lines().last(),
        Some("threaded: 200 calls ok, 8 wall timeouts, from 8 threads"),
        "{stdout}"
    );
}

fn a_function_in_code_mapped_after_init_is_refused() {
    // An executable page mapped now (as a JIT or a library loaded after init would be): the zygote
    // does not have it, so a call must be refused before anything is sent.
    // SAFETY: a fresh anonymous mapping of one page; it is never executed, only its address used.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: a non-null address turned into a fn pointer that is never called (the call is
    // refused before any process could jump to it).
    let f = unsafe { std::mem::transmute::<*mut libc::c_void, fn(u8) -> u8>(page) };
    let err = Limits::new().spawn_fn(f, 1).unwrap_err();
    assert!(
        matches!(err, Error::FunctionNotInZygote { address } if address == page as usize),
        "{err:?}"
    );
    assert!(err.to_string().contains("pynisher::init()"), "{err}");
    // SAFETY: unmapping the page mapped above.
    unsafe { libc::munmap(page, 4096) };
}

fn rerun_self(mode: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .env("PYNISHER_THREADED_TEST_MODE", mode)
        .output()
        .unwrap()
}

fn mode_uninitialized() {
    let worker = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(500)));
    let err = Limits::new().run_fn(double, 1).unwrap_err();
    assert!(
        matches!(err, Error::NotInitialized { threads } if threads >= 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("pynisher::init()"), "{err}");
    let err = pynisher::init().unwrap_err();
    assert!(matches!(err, Error::InitTooLate { .. }), "{err:?}");
    let err = Limits::new().run_closure(|| 1u8).unwrap_err();
    assert!(err.to_string().contains("pynisher::init()"), "{err}");
    worker.join().unwrap();
    println!("uninitialized: ok");
}

fn without_init_a_threaded_program_gets_a_clear_error() {
    let out = rerun_self("uninitialized");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("uninitialized: ok"),
        "{out:?}"
    );
}

fn mode_caller_dies() {
    pynisher::init().unwrap();
    let running = Limits::new().spawn_fn(sleep_ms, 60_000).unwrap();
    println!("{} {}", running.pid(), zygote_pid());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // Die without running any destructor.
    // SAFETY: sending a signal to ourselves.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

fn when_the_caller_dies_its_calls_are_killed() {
    let out = rerun_self("caller-dies");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<i32> = stdout
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{out:?}");
    assert!(
        dead_within(pids[0], Duration::from_secs(2)),
        "the call survived its caller"
    );
    assert!(
        dead_within(pids[1], Duration::from_secs(2)),
        "the zygote survived its caller"
    );
}

/// A test, or `None` when it needs a feature this build lacks.
type Test = Option<fn()>;

fn main() {
    // Modes used by the tests that need a process of their own.
    match std::env::var("PYNISHER_THREADED_TEST_MODE").as_deref() {
        Ok("uninitialized") => return mode_uninitialized(),
        Ok("caller-dies") => return mode_caller_dies(),
        Ok("example") => {
            pynisher::init().unwrap();
            std::process::exit(if threaded_caller::run() { 0 } else { 1 });
        }
        _ => {}
    }
    pynisher::init().expect("init first in main");

    // Tests that need a feature are listed without it as ignored, with the reason.
    #[cfg(not(feature = "tokio"))]
    let (every_status_awaited_on_a_tokio_runtime, tokio_waits_do_not_take_a_thread_per_call) =
        (None::<fn()>, None::<fn()>);
    #[cfg(feature = "tokio")]
    let (every_status_awaited_on_a_tokio_runtime, tokio_waits_do_not_take_a_thread_per_call): (
        Test,
        Test,
    ) = (
        Some(every_status_awaited_on_a_tokio_runtime),
        Some(tokio_waits_do_not_take_a_thread_per_call),
    );
    let tests: &[(&str, Test)] = &[
        (
            "values_come_back_to_eight_threads",
            Some(values_come_back_to_eight_threads),
        ),
        (
            "every_status_from_a_multi_threaded_caller",
            Some(every_status_from_a_multi_threaded_caller),
        ),
        (
            "every_status_awaited_on_a_tokio_runtime",
            every_status_awaited_on_a_tokio_runtime,
        ),
        (
            "tokio_waits_do_not_take_a_thread_per_call",
            tokio_waits_do_not_take_a_thread_per_call,
        ),
        (
            "one_thread_watches_many_calls_with_poll_and_try_wait",
            Some(one_thread_watches_many_calls_with_poll_and_try_wait),
        ),
        (
            "kill_ends_a_call_as_cancelled_and_drop_leaves_nothing",
            Some(kill_ends_a_call_as_cancelled_and_drop_leaves_nothing),
        ),
        (
            "a_thousand_calls_from_eight_threads_leak_no_fds_threads_or_processes",
            Some(a_thousand_calls_from_eight_threads_leak_no_fds_threads_or_processes),
        ),
        (
            "the_limit_attribute_returns_values_and_outcomes_to_threads",
            Some(the_limit_attribute_returns_values_and_outcomes_to_threads),
        ),
        (
            "the_threaded_caller_example_gets_every_value_and_timeout_right",
            Some(the_threaded_caller_example_gets_every_value_and_timeout_right),
        ),
        (
            "a_function_in_code_mapped_after_init_is_refused",
            Some(a_function_in_code_mapped_after_init_is_refused),
        ),
        (
            "without_init_a_threaded_program_gets_a_clear_error",
            Some(without_init_a_threaded_program_gets_a_clear_error),
        ),
        (
            "when_the_caller_dies_its_calls_are_killed",
            Some(when_the_caller_dies_its_calls_are_killed),
        ),
    ];
    // One at a time: several tests count this process's threads, descriptors and children.
    let mut trials = Trials::default();
    for &(name, test) in tests {
        trials = match test {
            Some(test) => trials.test(name, test),
            None => trials.unavailable(
                name,
                "needs the tokio feature: cargo test --features pynisher/tokio",
            ),
        };
    }
    trials.run_one_at_a_time()
}
