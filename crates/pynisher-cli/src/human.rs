//! Durations written for people, shared by the summary line, the limits line and the live status
//! line (its own module so that `report` and `settings` both use it without importing each other).

use std::time::Duration;

/// Formats a duration for people: `0.003s`, `12.50s`, `1m30.0s`, `2h05m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.3}s")
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else if secs < 3600.0 {
        format!("{}m{:04.1}s", (secs / 60.0).floor(), secs % 60.0)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0).floor(),
            ((secs % 3600.0) / 60.0).floor()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_formatted_for_people() {
        assert_eq!(format_duration(Duration::from_millis(3)), "0.003s");
        assert_eq!(format_duration(Duration::from_millis(12_500)), "12.50s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30.0s");
        assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
    }
}
