//! Cost and precision of the cgroup backends, measured in one run:
//!
//! 1. per-call overhead of `/bin/true` and of a trivial closure on every available backend,
//!    against a bare fork + pipe + waitpid baseline (target: cgroup ≤ 2× the baseline);
//! 2. CPU-limit overshoot over 20 runs for 1 busy thread, 4 busy threads and 3 sequential busy
//!    child processes (target: ≤ 20 ms, never early).
//!
//! Run with `cargo bench -p pynisher --bench cgroup_overhead` (as root for cgroup v1). A small C
//! spinner is compiled with `cc` into a temporary directory for part 2.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pynisher::{Backend, Command, Limits, Status};

const CALLS: usize = 300;
const RUNS: usize = 20;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// fork; the child waits on a pipe (like a call waiting for adoption), then execs or exits;
/// the parent releases it and waits.
fn bare_fork(exec: bool) -> Duration {
    let path = CString::new("/bin/true").unwrap();
    let argv = [path.as_ptr(), std::ptr::null()];
    let started = Instant::now();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    // SAFETY: the bench is single-threaded; the child only calls read, execv and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        use std::os::fd::AsRawFd;
        // SAFETY: async-signal-safe calls on data prepared before the fork.
        unsafe {
            let mut b = 0u8;
            libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            if exec {
                libc::execv(path.as_ptr(), argv.as_ptr());
            }
            libc::_exit(0);
        }
    }
    drop(r);
    rustix::io::write(&w, b"x").unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child with a pointer to a local.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    started.elapsed()
}

fn per_call(mut f: impl FnMut() -> Duration) -> Duration {
    for _ in 0..20 {
        f();
    }
    let mut times: Vec<Duration> = (0..CALLS).map(|_| f()).collect();
    median(&mut times)
}

fn timed_command(limits: &Limits) -> Duration {
    let started = Instant::now();
    let outcome = limits.run_command(&Command::new("/bin/true")).unwrap();
    assert_eq!(outcome.status, Status::Completed);
    started.elapsed()
}

fn timed_closure(limits: &Limits) -> Duration {
    let started = Instant::now();
    let outcome = limits.run_closure(|| 6 * 7).unwrap();
    assert_eq!(outcome.value, Some(42));
    started.elapsed()
}

fn spinner() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pynisher-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src = dir.join("spin.c");
    let bin = dir.join("spin");
    // spin THREADS [CPU_SECONDS_PER_THREAD]: busy threads, bounded by their own CPU time.
    std::fs::write(
        &src,
        r#"#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double budget;
static void *spin(void *a) {
    struct timespec t;
    for (;;) {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        if (budget > 0 && t.tv_sec + t.tv_nsec / 1e9 >= budget) return a;
    }
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    pthread_t th[64];
    budget = argc > 2 ? atof(argv[2]) : 30.0;
    for (int i = 1; i < n && i < 64; i++) pthread_create(&th[i], 0, spin, 0);
    spin(0);
    for (int i = 1; i < n && i < 64; i++) pthread_join(th[i], 0);
    return 0;
}
"#,
    )
    .ok()?;
    let ok = std::process::Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .ok()?
        .success();
    ok.then_some(bin)
}

fn overshoot(backend: Backend, limit: Duration, command: &Command) -> (Vec<f64>, usize) {
    let mut overs = Vec::new();
    let mut early = 0;
    for _ in 0..RUNS {
        let outcome = Limits::new()
            .backend(backend)
            .cpu_time(limit)
            .wall_time(Duration::from_secs(30))
            .run_command(command)
            .unwrap();
        let used = outcome.cpu_time.total();
        if outcome.status != Status::CpuTimeout || used < limit {
            early += 1;
        }
        overs.push((used.as_secs_f64() - limit.as_secs_f64()) * 1e3);
    }
    (overs, early)
}

fn main() {
    let backends = pynisher::available_backends();
    println!("backends here: {backends:?}");

    println!("\n== per-call overhead (median of {CALLS} calls) ==");
    let base_exec = per_call(|| bare_fork(true));
    let base_fork = per_call(|| bare_fork(false));
    println!("bare fork+pipe+exec /bin/true+waitpid: {base_exec:>10.2?}");
    println!("bare fork+pipe+_exit+waitpid:          {base_fork:>10.2?}");
    for &backend in &backends {
        let limits = Limits::new().backend(backend);
        let cmd = per_call(|| timed_command(&limits));
        let clo = per_call(|| timed_closure(&limits));
        println!(
            "{:<8} /bin/true {cmd:>10.2?} ({:.2}x bare)   closure {clo:>10.2?} ({:.2}x bare)",
            backend.name(),
            cmd.as_secs_f64() / base_exec.as_secs_f64(),
            clo.as_secs_f64() / base_fork.as_secs_f64(),
        );
    }
    // With limits that need writes into the leaf (memory and pids controllers where present).
    for &backend in &backends {
        let limits = Limits::new()
            .backend(backend)
            .memory(256 << 20)
            .max_processes(16);
        let cmd = per_call(|| timed_command(&limits));
        println!(
            "{:<8} /bin/true with memory+process limits {cmd:>10.2?} ({:.2}x bare)",
            backend.name(),
            cmd.as_secs_f64() / base_exec.as_secs_f64()
        );
    }

    let Some(spin) = spinner() else {
        println!("\nskipped CPU overshoot: cannot compile the C spinner with cc");
        return;
    };
    let limit = Duration::from_millis(300);
    println!("\n== CPU-limit overshoot, limit {limit:?}, {RUNS} runs each (ms) ==");
    let workloads = [
        ("1 thread", Command::new(&spin).arg("1")),
        ("4 threads", Command::new(&spin).arg("4")),
        (
            "3 sequential children",
            Command::new("sh").arg("-c").arg(format!(
                "for i in 1 2 3; do {} 1 0.12; done; sleep 5",
                spin.display()
            )),
        ),
    ];
    for &backend in &backends {
        for (name, command) in &workloads {
            let (mut overs, early) = overshoot(backend, limit, command);
            overs.sort_by(f64::total_cmp);
            let p99 = overs[((overs.len() * 99).div_ceil(100)).saturating_sub(1)];
            println!(
                "{:<8} {name:<22} min {:>6.2}  median {:>6.2}  p99 {:>6.2}  max {:>6.2}  early {early}",
                backend.name(),
                overs[0],
                overs[overs.len() / 2],
                p99,
                overs[overs.len() - 1],
            );
        }
    }
    let _ = std::fs::remove_dir_all(spin.parent().unwrap());
}
