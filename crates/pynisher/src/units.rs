//! Human units for sizes and durations, shared by every face so that `"512MiB"` and `"1m30s"` mean
//! the same everywhere. Every parser names the parameter in its error.

use std::time::Duration;

use crate::Error;

/// Splits `text` into its leading number (a sign, digits with at most one dot, an exponent such as
/// `e3`) and the rest. No unit starts with `e`, so `1e3` is a number, not `1` in unit `e3`.
fn split_number(text: &str) -> (&str, &str) {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > digits {
            i = j;
        }
    }
    text.split_at(i)
}

/// Parses a size such as `512MiB`, `2GiB`, `1.5G`, `100MB`, `4096` (bytes), `1e9` or `64k`.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024; decimal suffixes (`kB`/`KB`, `MB`,
/// `GB`, `TB`) are powers of 1000; a bare letter (`k`, `M`, `G`, `T`) is binary, as in `ulimit` and
/// `prlimit`. A number without a unit counts bytes and must be whole (`0.5` is refused rather than
/// read as one byte); with a unit a fraction is rounded to the nearest byte (`1.3k` is 1331 bytes).
/// Zero, negative, NaN and values beyond `u64` are rejected with an error naming `param`.
///
/// ```
/// assert_eq!(pynisher::units::parse_size("memory", "512MiB").unwrap(), 512 * 1024 * 1024);
/// assert_eq!(pynisher::units::parse_size("memory", "1.5k").unwrap(), 1536);
/// assert_eq!(pynisher::units::parse_size("memory", "1e3").unwrap(), 1000);
/// assert!(pynisher::units::parse_size("memory", "0.5").is_err());
/// assert!(pynisher::units::parse_size("memory", "12 parsecs").is_err());
/// ```
pub fn parse_size(param: &'static str, text: &str) -> Result<u64, Error> {
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed);
    let unit = unit.trim();
    let value: f64 = number
        .parse()
        .map_err(|_| Error::invalid(param, text, "not a number followed by a size unit"))?;
    if value < 0.0 {
        return Err(Error::invalid(
            param,
            text,
            "must be greater than zero (a negative size is not allowed)",
        ));
    }
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
    if multiplier == 1.0 && value.fract() != 0.0 {
        return Err(Error::invalid(
            param,
            text,
            format!(
                "not a whole number of bytes; a size without a unit counts bytes \
                 (for example {number}GiB or {number}MiB)"
            ),
        ));
    }
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

/// Parses a duration such as `1m30s`, `1.5s`, `250ms`, `2h`, `90` (seconds), `1e3ms` or `1d`.
///
/// Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`; several may be chained (`1h2m3.5s`). Zero, negative
/// and unparseable values are rejected with an error naming `param`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pynisher::units::parse_duration("wall_time", "1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(pynisher::units::parse_duration("wall_time", "250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(pynisher::units::parse_duration("wall_time", "1e3ms").unwrap(), Duration::from_secs(1));
/// assert!(pynisher::units::parse_duration("wall_time", "0s").is_err());
/// ```
pub fn parse_duration(param: &'static str, text: &str) -> Result<Duration, Error> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(Error::invalid(param, text, "empty duration"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let (number, after) = split_number(rest);
        if number.is_empty() {
            return Err(Error::invalid(
                param,
                text,
                "expected a number such as 1.5s, 250ms or 1m30s",
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| Error::invalid(param, text, "not a number"))?;
        if value < 0.0 {
            return Err(Error::invalid(
                param,
                text,
                "must be greater than zero (a negative duration is not allowed)",
            ));
        }
        rest = after;
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c == '+' || c == '-')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = rest[unit_end..].trim_start();
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
    fn sizes_refuse_fractional_bytes_and_negatives_and_accept_exponents() {
        let err = parse_size("memory", "0.5").unwrap_err().to_string();
        assert!(
            err.contains("memory") && err.contains("whole number of bytes"),
            "{err}"
        );
        let err = parse_size("memory", "-5M").unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
        assert_eq!(parse_size("memory", "1e3").unwrap(), 1000);
        assert_eq!(parse_size("memory", "1.5e3 k").unwrap(), 1536000);
        assert_eq!(parse_size("memory", "0.5GiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("memory", "1.3k").unwrap(), 1331);
    }

    #[test]
    fn durations_accept_exponents_and_name_negatives() {
        assert_eq!(
            parse_duration("t", "1e3ms").unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(parse_duration("t", "2E1").unwrap(), Duration::from_secs(20));
        let err = parse_duration("t", "-1s").unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
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
