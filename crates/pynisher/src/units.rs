//! Human units for sizes and durations, shared by every face so that `"512MiB"` and `"1m30s"` mean
//! the same everywhere. Every parser names the parameter in its error.

use std::time::Duration;

use crate::Error;

/// Parses a size such as `512MiB`, `2GiB`, `1.5G`, `100MB`, `4096` (bytes) or `64k`.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024; decimal suffixes (`kB`/`KB`, `MB`,
/// `GB`, `TB`) are powers of 1000; a bare letter (`k`, `M`, `G`, `T`) is binary, as in `ulimit` and
/// `prlimit`. Zero, negative, NaN and values beyond `u64` are rejected with an error naming `param`.
///
/// ```
/// assert_eq!(pynisher::units::parse_size("memory", "512MiB").unwrap(), 512 * 1024 * 1024);
/// assert_eq!(pynisher::units::parse_size("memory", "1.5k").unwrap(), 1536);
/// assert!(pynisher::units::parse_size("memory", "12 parsecs").is_err());
/// ```
pub fn parse_size(param: &'static str, text: &str) -> Result<u64, Error> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    let multiplier: f64 = match unit {
        "" | "B" | "b" => 1.0,
        "k" | "K" | "KiB" | "kiB" => 1024.0,
        "M" | "m" | "MiB" => 1024.0 * 1024.0,
        "G" | "g" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "t" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => {
            return Err(Error::invalid(
                param,
                text,
                "unknown size unit; use B, KiB, MiB, GiB, TiB (or kB, MB, GB, TB)",
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| Error::invalid(param, text, "not a number followed by a size unit"))?;
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(Error::invalid(param, text, "too large"));
    }
    let bytes = bytes.round() as u64;
    if bytes == 0 {
        return Err(Error::invalid(param, text, "must be at least one byte"));
    }
    Ok(bytes)
}

/// Parses a duration such as `1m30s`, `1.5s`, `250ms`, `2h`, `90` (seconds) or `1d`.
///
/// Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`; several may be chained (`1h2m3.5s`). Zero, negative
/// and unparseable values are rejected with an error naming `param`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pynisher::units::parse_duration("wall_time", "1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(pynisher::units::parse_duration("wall_time", "250ms").unwrap(), Duration::from_millis(250));
/// assert!(pynisher::units::parse_duration("wall_time", "0s").is_err());
/// ```
pub fn parse_duration(param: &'static str, text: &str) -> Result<Duration, Error> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(Error::invalid(param, text, "empty duration"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(Error::invalid(
                param,
                text,
                "expected a number such as 1.5s, 250ms or 1m30s",
            ));
        }
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| Error::invalid(param, text, "not a number"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let seconds = match unit {
            "" | "s" | "sec" | "secs" => 1.0,
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => {
                return Err(Error::invalid(
                    param,
                    text,
                    "unknown duration unit; use ns, us, ms, s, m, h or d",
                ))
            }
        };
        total += value * seconds;
    }
    duration_from_secs_f64(param, total).map_err(|_| match total {
        t if t <= 0.0 => Error::invalid(param, text, "must be greater than zero"),
        _ => Error::invalid(param, text, "too large"),
    })
}

/// Converts seconds given as a float (as Python passes them) into a [`Duration`], rejecting zero,
/// negative, NaN and infinite values with an error naming `param`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pynisher::units::duration_from_secs_f64("cpu_time", 0.5).unwrap(), Duration::from_millis(500));
/// assert!(pynisher::units::duration_from_secs_f64("cpu_time", f64::NAN).is_err());
/// ```
pub fn duration_from_secs_f64(param: &'static str, seconds: f64) -> Result<Duration, Error> {
    if seconds.is_nan() {
        return Err(Error::invalid(param, seconds, "not a number"));
    }
    if seconds <= 0.0 {
        return Err(Error::invalid(param, seconds, "must be greater than zero"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| Error::invalid(param, seconds, "too large"))
}

/// Formats a byte count for people: `512.0 MiB`.
///
/// ```
/// assert_eq!(pynisher::units::format_size(1536), "1.5 KiB");
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("memory", "2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("memory", "100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("memory", "4096").unwrap(), 4096);
        assert_eq!(parse_size("memory", " 64 k ").unwrap(), 65536);
    }

    #[test]
    fn sizes_reject_zero_garbage_and_overflow_naming_the_parameter() {
        for bad in [
            "0",
            "",
            "-5M",
            "abc",
            "5 parsecs",
            "1e30T",
            "99999999999999999999999T",
        ] {
            let err = parse_size("memory", bad).unwrap_err().to_string();
            assert!(err.contains("memory"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_chain_units() {
        assert_eq!(
            parse_duration("t", "1h2m3.5s").unwrap(),
            Duration::from_millis(3_723_500)
        );
        assert_eq!(parse_duration("t", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("t", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn durations_reject_zero_negative_and_garbage() {
        for bad in ["0", "0s", "-1s", "", "s", "1 fortnight", "nan"] {
            let err = parse_duration("wall_time", bad).unwrap_err().to_string();
            assert!(err.contains("wall_time"), "{bad}: {err}");
        }
        assert!(duration_from_secs_f64("x", f64::INFINITY).is_err());
        assert!(duration_from_secs_f64("x", -0.5).is_err());
        assert!(duration_from_secs_f64("x", 1e30).is_err());
    }
}
