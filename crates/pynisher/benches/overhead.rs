//! Per-call overhead and wall-limit precision of the engine, each beside a baseline measured in
//! the same run (the machines are shared and noisy: compare ratios, not absolute numbers).
//!
//! Run: `cargo bench -p pynisher --bench overhead` (add `-- --quick` for fewer iterations).
//!
//! Targets (issue 2): a trivial closure ≤ 1.3× a bare fork + pipe + waitpid; wall-limit overshoot
//! p99 ≤ 5 ms over 20 runs.
//!
//! The rows without `guard` run with no guard installed: a cgroup leaf's `rmdir`s are the
//! caller's own work then. The `[cgroup…, guard]` rows run after
//! `pynisher::guard::install`, as the Python package and the CLI do: the guard removes each
//! call's leaves on its own CPU (`contain/ahead.rs`). Its work may overlap the baseline
//! call beside a guarded call; the last section compares unguarded and guarded calls alternating
//! in blocks, by the clock and by the calling thread's CPU time (`ratio`: guarded over
//! unguarded).

use std::time::{Duration, Instant};

use pynisher::{Backend, Command, Limits, Status};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Measures `f` and `baseline` alternately, call by call, so that both see the same machine
/// (shared machines drift; back-to-back series do not compare well).
fn measure_interleaved(
    iterations: usize,
    mut baseline: impl FnMut(),
    mut f: impl FnMut(),
) -> (Vec<Duration>, Vec<Duration>) {
    for _ in 0..iterations / 10 + 1 {
        baseline();
        f();
    }
    let mut base = Vec::with_capacity(iterations);
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        baseline();
        base.push(t.elapsed());
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    base.sort();
    times.sort();
    (base, times)
}

fn report(name: &str, times: &[Duration], baseline: Option<&[Duration]>) {
    let median = percentile(times, 0.5);
    let ratio = baseline
        .map(|b| {
            format!(
                "  ratio {:.2}x",
                median.as_secs_f64() / percentile(b, 0.5).as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<44} median {:>8.1} µs  p10 {:>8.1} µs  p90 {:>8.1} µs{ratio}",
        median.as_secs_f64() * 1e6,
        percentile(times, 0.1).as_secs_f64() * 1e6,
        percentile(times, 0.9).as_secs_f64() * 1e6,
    );
}

/// The floor: fork, the child writes one byte to a pipe and exits, the parent reads and reaps.
fn bare_fork_pipe_waitpid() {
    let mut fds = [0; 2];
    // SAFETY: pipe/fork/write/_exit/read/waitpid/close on our own descriptors and child; the child
    // only calls async-signal-safe functions.
    unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC);
        let pid = libc::fork();
        if pid == 0 {
            libc::write(fds[1], b"x".as_ptr().cast(), 1);
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut b = 0u8;
        libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
    }
}

/// The floor for a program: fork + execve /bin/true + waitpid, nothing else.
fn bare_fork_exec_true() {
    static PATH: &[u8] = b"/bin/true\0";
    let argv = [PATH.as_ptr().cast::<libc::c_char>(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: the child only calls execve and _exit (async-signal-safe) on static data.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// A trivial closure under `limits`, interleaved call by call with the bare fork round trip: the
/// baseline row, then the closure's row (labelled `[label]`) with its ratio.
fn closure_rows(n: usize, limits: &Limits, label: &str) {
    let (base, closure) = measure_interleaved(n, bare_fork_pipe_waitpid, || {
        let o = limits.run_closure(|| 42u32).unwrap();
        assert_eq!(o.value, Some(42));
    });
    report("  baseline: fork + pipe + waitpid", &base, None);
    report(
        &format!("  closure returning 42 [{label}]"),
        &closure,
        Some(&base),
    );
}

fn main() {
    // The guarded rows name this program as the guard.
    pynisher::guard::serve_if_requested();
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100 } else { 500 };
    println!("# per-call overhead ({n} calls each, interleaved call by call with its baseline)");
    let mut backends = vec![Backend::ProcessGroup];
    backends.extend(
        pynisher::available_backends()
            .into_iter()
            .filter(|b| *b != Backend::ProcessGroup),
    );
    for &b in &backends {
        closure_rows(n, &Limits::new().backend(b), b.name());
    }
    for &b in &backends {
        let limits = Limits::new().backend(b);
        let cmd = Command::new("/bin/true");
        let (base, times) = measure_interleaved(n / 2, bare_fork_exec_true, || {
            assert_eq!(limits.run_command(&cmd).unwrap().status, Status::Completed);
        });
        report("  baseline: fork + execve /bin/true + waitpid", &base, None);
        report(&format!("  /bin/true [{}]", b.name()), &times, Some(&base));
    }

    let runs = 20;
    let limit = Duration::from_millis(500);
    println!("\n# wall-limit overshoot: sleep 5 under a {limit:?} wall limit, {runs} runs");
    for &b in &backends {
        let limits = Limits::new().backend(b).wall_time(limit);
        let cmd = Command::new("sleep").arg("5");
        let mut overshoot: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let o = limits.run_command(&cmd).unwrap();
                assert_eq!(o.status, Status::WallTimeout);
                t.elapsed().saturating_sub(limit)
            })
            .collect();
        overshoot.sort();
        println!(
            "overshoot [{}]: min {:.2} ms  median {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            b.name(),
            overshoot[0].as_secs_f64() * 1e3,
            percentile(&overshoot, 0.5).as_secs_f64() * 1e3,
            percentile(&overshoot, 0.99).as_secs_f64() * 1e3,
            overshoot[runs - 1].as_secs_f64() * 1e3,
        );
    }
    let cgroup_backends: Vec<Backend> = backends
        .iter()
        .copied()
        .filter(|b| *b != Backend::ProcessGroup)
        .collect();
    if !cgroup_backends.is_empty() {
        // The same limit call after call, as an optimiser's trials have: each call writes it
        // into its fresh leaf (memory.limit_in_bytes and memsw on v1, memory.max on v2).
        println!("\n# per-call overhead with a memory limit of 256 MiB ({n} calls each, interleaved as above)");
    }
    for &b in &cgroup_backends {
        let limits = Limits::new().backend(b).memory(256 << 20);
        closure_rows(n, &limits, &format!("{}, memory", b.name()));
    }
    if !cgroup_backends.is_empty() {
        println!("\n# per-call overhead with a guard ({n} calls each, interleaved as above)");
        // From here on every call of this process is guarded.
        pynisher::guard::install(pynisher::guard::GuardProgram::current_exe())
            .expect("the guard starts");
    }
    for &b in &cgroup_backends {
        closure_rows(
            n,
            &Limits::new().backend(b),
            &format!("{}, guard", b.name()),
        );
    }
    if cgroup_backends.is_empty() {
        return;
    }
    // The guard's work runs in another process, where it may also overlap the baseline beside
    // it, and a leaf left behind by one call is removed in the next call's idle time: so here
    // unguarded and guarded calls alternate in blocks (the first calls of a block not counted),
    // each timed by the clock and by the calling thread's CPU time.
    println!("\n# unguarded and guarded calls alternating in blocks of 50 (ratio: guarded over unguarded)");
    let program = pynisher::guard::GuardProgram::current_exe();
    for &b in &cgroup_backends {
        let limits = Limits::new().backend(b);
        let call = || {
            let (t, cpu) = (Instant::now(), thread_cpu());
            let o = limits.run_closure(|| 42u32).unwrap();
            assert_eq!(o.value, Some(42));
            (t.elapsed(), thread_cpu() - cpu)
        };
        let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
        for _ in 0..n.div_ceil(50) {
            for (guarded, [wall, cpu]) in times.iter_mut().enumerate() {
                if guarded == 1 {
                    pynisher::guard::install_deferred(program.clone());
                } else {
                    pynisher::guard::uninstall();
                }
                for i in 0..55 {
                    let (w, c) = call();
                    if i >= 5 {
                        wall.push(w);
                        cpu.push(c);
                    }
                }
            }
        }
        let [[mut u_wall, mut u_cpu], [mut g_wall, mut g_cpu]] = times;
        for v in [&mut u_wall, &mut u_cpu, &mut g_wall, &mut g_cpu] {
            v.sort();
        }
        let name = b.name();
        report(&format!("  in blocks, wall [{name}]"), &u_wall, None);
        report(
            &format!("  in blocks, wall [{name}, guard]"),
            &g_wall,
            Some(&u_wall),
        );
        report(&format!("  in blocks, caller CPU [{name}]"), &u_cpu, None);
        let guarded = format!("  in blocks, caller CPU [{name}, guard]");
        report(&guarded, &g_cpu, Some(&u_cpu));
    }
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
