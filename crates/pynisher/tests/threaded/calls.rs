//! The functions the threaded test's calls run (plain fns: they cross to the zygote by address),
//! and the table of one call per status.

use std::time::{Duration, Instant};

use pynisher::{Limits, MemoryLimitKind, Running, Status};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) weights: Vec<f64>,
}

pub(crate) fn summarize(job: Job) -> (u32, String, f64) {
    (job.id, job.name.to_uppercase(), job.weights.iter().sum())
}

pub(crate) fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub(crate) fn burn_cpu(seconds: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    x
}

pub(crate) fn allocate_mib(mib: usize) -> usize {
    let v = vec![1u8; mib << 20];
    std::hint::black_box(&v);
    v.len()
}

pub(crate) fn start_sleepers(count: u32) -> u32 {
    for _ in 0..count {
        let _ = std::process::Command::new("sleep").arg("2").spawn();
    }
    std::thread::sleep(Duration::from_secs(1));
    count
}

pub(crate) fn segfault(_: ()) -> u8 {
    // A closure child keeps the caller's dispositions, and Rust's runtime handles SIGSEGV (stack
    // overflow detection; for a raised signal its handler just returns): die by it explicitly.
    // SAFETY: changing a disposition and raising a signal in our own (disposable) process.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    0
}

pub(crate) fn exit_without_value(code: i32) -> u8 {
    std::process::exit(code)
}

pub(crate) fn panic_with(n: u32) -> u8 {
    panic!("the answer is {n}")
}

/// A value whose encoding always fails in the call's process.
#[derive(Debug, Deserialize)]
pub(crate) struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

pub(crate) fn unencodable(_: ()) -> Unencodable {
    Unencodable
}

// The status table, shared by the threaded and the tokio tests.

pub(crate) type Summary = (Status, Option<String>);

/// A started call of any value type, waited on either way.
pub(crate) trait Call: Send {
    fn wait_blocking(self: Box<Self>) -> Summary;
    #[cfg(feature = "tokio")]
    fn wait_tokio(
        self: Box<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Summary> + Send>>;
}

impl<T: std::fmt::Debug + Send + 'static> Call for Running<T> {
    fn wait_blocking(self: Box<Self>) -> Summary {
        let o = self.wait().expect("waiting works");
        (o.status, o.value.map(|v| format!("{v:?}")))
    }
    #[cfg(feature = "tokio")]
    fn wait_tokio(
        self: Box<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Summary> + Send>> {
        Box::pin(async move {
            let o = self.wait_async().await.expect("waiting works");
            (o.status, o.value.map(|v| format!("{v:?}")))
        })
    }
}

/// One call per status, each beside the status and value it must end with.
pub(crate) fn one_call_per_status() -> Vec<(Summary, Box<dyn Call>)> {
    let wall = Limits::new().wall_time(Duration::from_millis(300));
    let job = Job {
        id: 7,
        name: "job".into(),
        weights: vec![1.5, 2.0],
    };
    let mut cancelled = wall
        .clone()
        .wall_time(Duration::from_secs(30))
        .spawn_fn(sleep_ms, 60_000)
        .unwrap();
    cancelled.kill().unwrap();
    let quiet = Limits::new().capture_output(true);
    vec![
        (
            (Status::Completed, Some("(7, \"JOB\", 3.5)".into())),
            Box::new(Limits::new().spawn_fn(summarize, job).unwrap()),
        ),
        (
            (Status::WallTimeout, None),
            Box::new(wall.spawn_fn(sleep_ms, 10_000).unwrap()),
        ),
        (
            (Status::CpuTimeout, None),
            Box::new(
                Limits::new()
                    .cpu_time(Duration::from_millis(300))
                    .wall_time(Duration::from_secs(20))
                    .spawn_fn(burn_cpu, 10)
                    .unwrap(),
            ),
        ),
        (
            (Status::MemoryLimit, None),
            Box::new(
                quiet
                    .clone()
                    .memory(100 << 20)
                    .memory_kind(MemoryLimitKind::AddressSpace)
                    .spawn_fn(allocate_mib, 300)
                    .unwrap(),
            ),
        ),
        (
            (Status::ProcessLimit, None),
            Box::new(
                Limits::new()
                    .max_processes(4)
                    .wall_time(Duration::from_secs(10))
                    .spawn_fn(start_sleepers, 20)
                    .unwrap(),
            ),
        ),
        (
            (
                Status::Signaled {
                    signal: libc::SIGSEGV,
                },
                None,
            ),
            Box::new(Limits::new().spawn_fn(segfault, ()).unwrap()),
        ),
        (
            (Status::NoResult, None),
            Box::new(Limits::new().spawn_fn(exit_without_value, 3).unwrap()),
        ),
        (
            (
                Status::Panicked {
                    message: "the answer is 42".into(),
                },
                None,
            ),
            Box::new(quiet.spawn_fn(panic_with, 42).unwrap()),
        ),
        (
            (
                Status::ResultUndecodable {
                    reason: String::new(),
                },
                None,
            ),
            Box::new(Limits::new().spawn_fn(unencodable, ()).unwrap()),
        ),
        ((Status::Cancelled, None), Box::new(cancelled)),
    ]
}

/// The status must match; the value only for a completed call (a call over its process limit on a
/// cgroup backend had its forks refused and may still return).
/// postcard does not keep a custom encoding error's text, so only the kind of that one is compared.
pub(crate) fn check(expected: &Summary, got: &Summary) {
    if matches!(expected.0, Status::ResultUndecodable { .. }) {
        assert_eq!(expected.0.name(), got.0.name(), "got {got:?}");
    } else {
        assert_eq!(
            expected.0,
            got.0,
            "expected {:?}, got {got:?}",
            expected.0.name()
        );
    }
    if expected.0 == Status::Completed {
        assert_eq!(expected.1, got.1);
    }
}
