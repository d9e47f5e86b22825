//! What registering a call with the guard costs a call: a trivial closure and `true` on the
//! process-group backend, guarded and not, measured call by call in the same run.
//!
//! Run: `cargo bench -p pynisher --bench guard_overhead` (add `-- --quick` for fewer iterations).

use std::time::{Duration, Instant};

use pynisher::guard::{self, GuardProgram};
use pynisher::{Backend, Command, Limits};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    // This bench binary is its own guard program.
    guard::serve_if_requested();
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 200 } else { 2000 };
    let program = GuardProgram::current_exe();
    guard::install(program.clone()).expect("the guard starts");
    for backend in [Backend::ProcessGroup, Backend::Auto] {
        let limits = Limits::new().backend(backend);
        let closure = || {
            // SAFETY: this bench has a single thread.
            let running = unsafe { limits.spawn_closure_unchecked(|| 1u8) }.unwrap();
            running.wait().unwrap();
        };
        let command = || {
            limits.run_command(&Command::new("true")).unwrap();
        };
        for (what, call) in [("closure", &closure as &dyn Fn()), ("true", &command)] {
            let (mut plain, mut guarded) = (Vec::new(), Vec::new());
            for i in 0..iterations + iterations / 10 {
                // Alternate which goes first, so that neither always follows the other.
                let timed = |on: bool| {
                    if on {
                        guard::install_deferred(program.clone());
                    } else {
                        guard::uninstall();
                    }
                    let t = Instant::now();
                    call();
                    t.elapsed()
                };
                let (p, g) = if i % 2 == 0 {
                    let p = timed(false);
                    (p, timed(true))
                } else {
                    let g = timed(true);
                    (timed(false), g)
                };
                if i >= iterations / 10 {
                    plain.push(p);
                    guarded.push(g);
                }
            }
            let (p, g) = (median(plain), median(guarded));
            println!(
                "{:<8} {what:<8} unguarded median {:>8.1} µs  guarded median {:>8.1} µs  ratio {:.3}x",
                backend.name(),
                p.as_secs_f64() * 1e6,
                g.as_secs_f64() * 1e6,
                g.as_secs_f64() / p.as_secs_f64()
            );
        }
    }
}
