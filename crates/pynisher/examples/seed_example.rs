//! The first example of the document pynisher started from, in Rust:
//!
//! ```python
//! @pynisher.enforce_limits(wall_time_in_s=2)
//! def my_function(t):
//!     time.sleep(t)
//!     return t
//!
//! for t in range(5):
//!     print(my_function(t))
//! ```
//!
//! Prints 0 and 1, then `None` three times (those calls hit the 2 s wall-time limit), each with
//! the reason and the measured wall time.
//!
//! Run: `cargo run --example seed_example`

use std::time::Duration;

use pynisher::Limits;

fn my_function(t: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(t));
    t
}

fn main() -> Result<(), pynisher::Error> {
    let limits = Limits::new().wall_time(Duration::from_secs(2));
    for t in 0..5 {
        let outcome = limits.run_closure(move || my_function(t))?;
        let shown = outcome
            .value
            .map_or_else(|| "None".to_string(), |v| v.to_string());
        println!(
            "{shown:<5} ({}, {:.3} s)",
            outcome.status.name(),
            outcome.wall_time.as_secs_f64()
        );
    }
    Ok(())
}
