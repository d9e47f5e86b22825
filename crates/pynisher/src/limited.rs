//! What `#[pynisher::limit]` expands to: [`CallError`], and the hidden helper the expansion calls.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{units, Backend, Error, Limits, Outcome, Status};

/// Why a function under `#[pynisher::limit]` returned no value: pynisher could not run it, or it
/// ran and ended without one (a limit, a panic, a crash; the [`Outcome`] says which).
///
/// ```
/// let err = pynisher::CallError::from(pynisher::Error::OutcomeTaken);
/// assert!(err.status().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// pynisher itself failed (bad limits, no zygote, …); the function did not run.
    #[error("the limited call could not run")]
    Pynisher(#[from] Error),
    /// The function's process ended without a value; the outcome has every measurement.
    #[error("the limited call ended without a value ({})", .0.status.name())]
    Ended(Box<Outcome<()>>),
}

impl CallError {
    /// Why the call ended, when it ran.
    pub fn status(&self) -> Option<&Status> {
        match self {
            CallError::Ended(outcome) => Some(&outcome.status),
            CallError::Pynisher(_) => None,
        }
    }

    /// The call's outcome, when it ran.
    pub fn outcome(&self) -> Option<&Outcome<()>> {
        match self {
            CallError::Ended(outcome) => Some(outcome),
            CallError::Pynisher(_) => None,
        }
    }
}

/// Turns an outcome into the function's value or a [`CallError`].
pub(crate) fn into_result<T>(mut outcome: Outcome<T>) -> Result<T, CallError> {
    match (outcome.status == Status::Completed, outcome.value.take()) {
        (true, Some(value)) => Ok(value),
        _ => Err(CallError::Ended(Box::new(outcome.with_value(None)))),
    }
}

/// Builds limits from the attribute's `key = "value"` pairs (the macro checked the keys).
pub(crate) fn limits_from(spec: &[(&'static str, &str)]) -> Result<Limits, Error> {
    let mut limits = Limits::new();
    for &(key, value) in spec {
        limits =
            match key {
                "wall_time" => limits.wall_time(units::parse_duration(key, value)?),
                "cpu_time" => limits.cpu_time(units::parse_duration(key, value)?),
                "grace_period" => limits.grace_period(units::parse_duration(key, value)?),
                "memory" => limits.memory(units::parse_size(key, value)?),
                "max_processes" => limits.max_processes(
                    value
                        .parse()
                        .map_err(|_| Error::invalid(key, value, "not a whole number"))?,
                ),
                "capture_output" => limits.capture_output(
                    value
                        .parse()
                        .map_err(|_| Error::invalid(key, value, "not true or false"))?,
                ),
                "backend" => limits.backend(value.parse::<Backend>().map_err(|_| {
                    Error::invalid(key, value, "not auto, cgroup2, cgroup1 or none")
                })?),
                _ => return Err(Error::invalid("limit", key, "unknown limit")),
            };
    }
    Ok(limits)
}

/// Used by the expansion of `#[pynisher::limit]`; not a public API.
#[doc(hidden)]
pub mod __macro {
    use super::*;

    /// Runs `f(arg)` under the limits `spec` describes (through [`Limits::run_fn`]).
    pub fn call<A, T>(spec: &[(&'static str, &str)], f: fn(A) -> T, arg: A) -> Result<T, CallError>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        into_result(limits_from(spec)?.run_fn(f, arg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn attribute_values_become_limits_or_errors_naming_the_key() {
        let limits = limits_from(&[
            ("wall_time", "2s"),
            ("memory", "512MiB"),
            ("max_processes", "4"),
            ("backend", "none"),
        ])
        .unwrap();
        assert_eq!(limits.get_wall_time(), Some(Duration::from_secs(2)));
        assert_eq!(limits.get_memory(), Some(512 * 1024 * 1024));
        assert_eq!(limits.get_max_processes(), Some(4));
        assert_eq!(limits.get_backend(), Backend::ProcessGroup);
        for (key, value) in [
            ("wall_time", "soon"),
            ("backend", "docker"),
            ("max_processes", "x"),
        ] {
            let err = limits_from(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(value), "{err}");
        }
    }
}
