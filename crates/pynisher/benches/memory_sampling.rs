//! What enforcing a memory limit by sampling costs, and how far a call can overshoot the limit
//! before the kill (issue 11 item 2), on the process-group backend, per sampling interval.
//!
//! Run: `cargo bench -p pynisher --bench memory_sampling` (add `-- --quick` for fewer runs).
//!
//! * **cost**: a call that computes for ~0.5 s while holding 64 MiB, with a memory limit far above
//!   (1 GiB: sampled rarely, as the headroom allows) and close above (72 MiB: sampled every
//!   `interval`, the floor), and, interleaved call by call, the same call without a limit (the
//!   baseline: no memory sampling). Printed: the supervisor thread's CPU time per second of call
//!   for each, and the `ratio` of the near-limit call's wall time to the baseline's (does sampling
//!   slow the call down?).
//! * **overshoot**: a closure that writes memory as fast as it can, 1 MiB at a time, counting
//!   in a page shared with the bench process how much it has written; killed at a 256 MiB limit.
//!   Printed: how much it had written when it died beyond the limit (true overshoot), the sampled
//!   peak, its write rate, and `ratio` = overshoot / (rate × interval) — about 1 when the kill
//!   comes one interval late at worst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pynisher::{Backend, Limits, Status};

const MIB: u64 = 1 << 20;

fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One call that computes ~0.5 s holding 64 MiB: (wall time, supervisor CPU).
fn busy_call(limits: &Limits) -> (Duration, Duration) {
    let cpu = thread_cpu();
    let t = Instant::now();
    // SAFETY: the closure only allocates and computes.
    let o = unsafe {
        limits.spawn_closure_unchecked(|| {
            let v = vec![1u8; 64 << 20];
            let until = Instant::now() + Duration::from_millis(500);
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_add(std::hint::black_box(v[(x % (64 << 20)) as usize] as u64));
            }
            x
        })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(o.status, Status::Completed, "{o:?}");
    (t.elapsed(), thread_cpu() - cpu)
}

/// One call that writes memory until killed: (bytes written at death, sampled peak, bytes/s).
fn runaway_call(limits: &Limits) -> (u64, u64, f64) {
    // SAFETY: a fresh shared anonymous page; the child writes it, we read it after its death.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    let addr = page as usize;
    let t = Instant::now();
    let runaway = move || {
        // SAFETY: the page is mapped (inherited from the bench process) and aligned; only this
        // process writes it.
        let written = unsafe { &*(addr as *const AtomicU64) };
        let mut chunks = Vec::new();
        while chunks.len() < 4096 {
            let mut v = vec![0u8; 1 << 20];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            chunks.push(v);
            written.fetch_add(1 << 20, Ordering::Relaxed);
        }
        chunks.len()
    };
    // SAFETY: the closure only allocates and writes to the shared page mapped above.
    let o = unsafe { limits.spawn_closure_unchecked(runaway) }
        .unwrap()
        .wait()
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    // SAFETY: as above; the child is dead.
    let written = unsafe { &*(addr as *const AtomicU64) }.load(Ordering::Relaxed);
    // SAFETY: unmaps the page mapped above.
    unsafe { libc::munmap(page, 4096) };
    (
        written,
        o.peak_memory.unwrap_or(0),
        written as f64 / o.wall_time.min(elapsed).as_secs_f64(),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count()
        })
        .unwrap_or(0);
    println!(
        "memory sampling on the process-group backend; {processes} processes on this machine \
         (each sample reads /proc/PID/stat of every one), {runs} runs per row, medians\n"
    );

    let intervals = [1u64, 2, 5, 10, 20, 50, 100];
    let base = Limits::new().backend(Backend::ProcessGroup);
    println!("cost: a 0.5 s computing call holding 64 MiB; supervisor CPU per second of call");
    println!(
        "{:>10}  {:>16}  {:>16}  {:>14}  {:>14}  {:>7}",
        "interval", "limit 1 GiB", "limit 72 MiB", "no limit", "wall (72 MiB)", "ratio"
    );
    for &ms in &intervals {
        let with = |limit: u64| {
            base.clone()
                .memory(limit)
                .memory_sample_interval(Duration::from_millis(ms))
        };
        let (far, near) = (with(1 << 30), with(72 * MIB));
        let (mut far_cpu, mut cpu, mut base_cpu, mut wall, mut base_wall) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let (w, c) = busy_call(&base);
            base_wall.push(w.as_secs_f64());
            base_cpu.push(c.as_secs_f64() / w.as_secs_f64());
            let (w, c) = busy_call(&far);
            far_cpu.push(c.as_secs_f64() / w.as_secs_f64());
            let (w, c) = busy_call(&near);
            wall.push(w.as_secs_f64());
            cpu.push(c.as_secs_f64() / w.as_secs_f64());
        }
        let (wall, base_wall) = (median(wall), median(base_wall));
        println!(
            "{:>8}ms  {:>13.2} ms  {:>13.2} ms  {:>11.2} ms  {:>11.1} ms  {:>6.3}x",
            ms,
            median(far_cpu) * 1e3,
            median(cpu) * 1e3,
            median(base_cpu) * 1e3,
            wall * 1e3,
            wall / base_wall
        );
    }

    let limit = 256 * MIB;
    println!("\novershoot: a closure writing memory as fast as it can, limit 256 MiB");
    println!(
        "{:>10}  {:>16}  {:>14}  {:>12}  {:>7}",
        "interval", "written - limit", "sampled peak", "write rate", "ratio"
    );
    for &ms in &intervals {
        let limited = base
            .clone()
            .memory(limit)
            .memory_sample_interval(Duration::from_millis(ms));
        let (mut over, mut peak, mut rate) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let (w, p, r) = runaway_call(&limited);
            over.push(w as f64 - limit as f64);
            peak.push(p as f64);
            rate.push(r);
        }
        let (over, rate) = (median(over), median(rate));
        println!(
            "{:>8}ms  {:>12.1} MiB  {:>10.1} MiB  {:>7.2} GiB/s  {:>6.2}x",
            ms,
            over / MIB as f64,
            median(peak) / MIB as f64,
            rate / (1u64 << 30) as f64,
            over.max(0.0) / (rate * ms as f64 / 1e3)
        );
    }
}
