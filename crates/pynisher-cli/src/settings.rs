//! Turning the parsed command line into engine [`Limits`], a [`Command`] and the CLI's own
//! choices. Every error names the flag as the user wrote it.

use std::path::PathBuf;
use std::time::Duration;

use pynisher::units::{parse_duration, parse_size};
use pynisher::{Backend, Command, Limits, MemoryLimitKind, DEFAULT_OUTPUT_LIMIT};

use crate::cli::Cli;
use crate::signals::{parse_signal, signal_name};

/// Grace period between the soft signal and SIGKILL when `--grace` is not given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Where the JSON report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonDestination {
    /// One line on pynisher's stdout, after the program's own output.
    Stdout,
    /// Pretty-printed into this file.
    File(PathBuf),
}

/// The limits as the user asked for them, kept for the summary line and the report (the engine's
/// [`Limits`] has no getter for every field).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedLimits {
    /// `--wall-time`.
    pub wall_time: Option<Duration>,
    /// `--cpu-time`.
    pub cpu_time: Option<Duration>,
    /// `--memory` in bytes.
    pub memory: Option<u64>,
    /// `--memory-kind`.
    pub memory_kind: MemoryLimitKind,
    /// `--max-processes`.
    pub max_processes: Option<u64>,
    /// `--grace`, zero when `--signal KILL` was asked for.
    pub grace: Duration,
    /// The soft signal, `None` when limits kill at once (grace zero or `--signal KILL`).
    pub soft_signal: Option<i32>,
    /// `--output-limit` in bytes per stream, when output is captured.
    pub output_limit: Option<usize>,
    /// `--backend`.
    pub backend: Backend,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's limits.
    pub limits: Limits,
    /// The program to run.
    pub command: Command,
    /// The program and its arguments as text, for messages and the report.
    pub command_text: Vec<String>,
    /// The limits as asked for.
    pub requested: RequestedLimits,
    /// `--stdout FILE`.
    pub stdout_file: Option<PathBuf>,
    /// `--stderr FILE`.
    pub stderr_file: Option<PathBuf>,
    /// `--json[=FILE]`.
    pub json: Option<JsonDestination>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--verbose`.
    pub verbose: bool,
}

/// A flag value that cannot be used; the text names the flag. pynisher exits with 125.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFlag(pub String);

impl std::fmt::Display for BadFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn engine_error(error: pynisher::Error) -> BadFlag {
    BadFlag(error.to_string())
}

/// The flag that sets an engine parameter, for errors from [`Limits::validate`] (which names the
/// library's parameters: `wall_time`, `grace_period`, …).
fn flag_for(param: &str) -> &str {
    match param {
        "wall_time" => "--wall-time",
        "cpu_time" => "--cpu-time",
        "memory" => "--memory",
        "max_processes" => "--max-processes",
        "grace_period" => "--grace",
        "wall_signal" | "cpu_signal" => "--signal",
        "output_limit" => "--output-limit",
        other => other,
    }
}

/// An error of [`Limits::validate`], with the flag's name instead of the library's.
fn validation_error(error: pynisher::Error) -> BadFlag {
    match error {
        pynisher::Error::InvalidLimit {
            param,
            value,
            reason,
        } => BadFlag(format!(
            "invalid value for {}: {value:?} ({reason})",
            flag_for(param)
        )),
        other => engine_error(other),
    }
}

fn duration_flag(flag: &'static str, text: Option<&str>) -> Result<Option<Duration>, BadFlag> {
    text.map(|t| parse_duration(flag, t).map_err(engine_error))
        .transpose()
}

fn size_flag(flag: &'static str, text: Option<&str>) -> Result<Option<u64>, BadFlag> {
    text.map(|t| parse_size(flag, t).map_err(engine_error))
        .transpose()
}

/// `--grace` accepts zero (kill at once), which the engine's duration parser refuses.
fn grace_flag(text: Option<&str>) -> Result<Duration, BadFlag> {
    match text {
        None => Ok(DEFAULT_GRACE),
        Some(t)
            if t.trim()
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse::<f64>()
                == Ok(0.0) =>
        {
            Ok(Duration::ZERO)
        }
        Some(t) => Ok(parse_duration("--grace", t).map_err(engine_error)?),
    }
}

fn count_flag(flag: &'static str, text: Option<&str>) -> Result<Option<u64>, BadFlag> {
    let Some(text) = text else { return Ok(None) };
    let bad = |reason: &str| BadFlag(format!("invalid value for {flag}: \"{text}\" ({reason})"));
    // Whole numbers in any notation (`64`, `1e3`); the engine refuses counts beyond what the
    // kernel can hold, so a huge one is an error, not silently no limit.
    let trimmed = text.trim();
    let number = match trimmed.parse::<u64>() {
        Ok(n) => n as f64,
        Err(_) => trimmed
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| bad("not a number"))?,
    };
    if number < 0.0 {
        return Err(bad(
            "a negative count is not allowed; at least 1, the program's own process",
        ));
    }
    if number.fract() != 0.0 {
        return Err(bad("not a whole number"));
    }
    if number < 1.0 {
        return Err(bad("must be at least 1, the program's own process"));
    }
    if number > pynisher::MAX_PROCESSES as f64 {
        return Err(bad(&format!(
            "at most {} (the kernel's PID_MAX_LIMIT: no system can hold more processes)",
            pynisher::MAX_PROCESSES
        )));
    }
    Ok(Some(number as u64))
}

impl Settings {
    /// Checks every flag and builds the engine's limits and command.
    pub fn from_cli(cli: Cli) -> Result<Settings, BadFlag> {
        let wall_time = duration_flag("--wall-time", cli.wall_time.as_deref())?;
        let cpu_time = duration_flag("--cpu-time", cli.cpu_time.as_deref())?;
        let memory = size_flag("--memory", cli.memory.as_deref())?;
        let max_processes = count_flag("--max-processes", cli.max_processes.as_deref())?;
        let mut grace = grace_flag(cli.grace.as_deref())?;
        let signal = match cli.signal.as_deref() {
            None => libc::SIGTERM,
            Some(text) => parse_signal(text)
                .map_err(|reason| BadFlag(format!("invalid value for --signal: {reason}")))?,
        };
        if signal == libc::SIGSTOP {
            return Err(BadFlag(
                "invalid value for --signal: SIGSTOP cannot end a program".into(),
            ));
        }
        if signal == libc::SIGKILL {
            if cli.grace.is_some() && !grace.is_zero() {
                return Err(BadFlag(
                    "--grace cannot be used with --signal KILL (SIGKILL cannot be handled; it ends the program at once)".into(),
                ));
            }
            grace = Duration::ZERO;
        }
        let captured = cli.stdout.is_some() || cli.stderr.is_some();
        let output_limit = match size_flag("--output-limit", cli.output_limit.as_deref())? {
            Some(_) if !captured => {
                return Err(BadFlag(
                    "--output-limit applies only with --stdout FILE or --stderr FILE (pass-through output is not captured)".into(),
                ))
            }
            Some(bytes) if bytes < 2 => {
                return Err(BadFlag(format!(
                    "invalid value for --output-limit: \"{}\" (must be at least 2 bytes)",
                    cli.output_limit.as_deref().unwrap_or_default()
                )))
            }
            Some(bytes) => Some(usize::try_from(bytes).unwrap_or(usize::MAX)),
            None if captured => Some(DEFAULT_OUTPUT_LIMIT),
            None => None,
        };
        let memory_kind = cli.memory_kind;
        let backend = cli.backend;

        let mut limits = Limits::new()
            .memory_kind(memory_kind)
            .grace_period(grace)
            .backend(backend)
            .strict(cli.strict);
        if let Some(d) = wall_time {
            limits = limits.wall_time(d);
        }
        if let Some(d) = cpu_time {
            limits = limits.cpu_time(d);
        }
        if let Some(bytes) = memory {
            limits = limits.memory(bytes);
        }
        if let Some(n) = max_processes {
            limits = limits.max_processes(n);
        }
        let soft_signal = (!grace.is_zero()).then_some(signal);
        if let Some(sig) = soft_signal {
            limits = limits.wall_signal(sig).cpu_signal(sig);
        }
        if let Some(bytes) = output_limit {
            limits = limits.capture_output(true).output_limit(bytes);
        }
        limits.validate().map_err(validation_error)?;

        let mut words = cli.command.into_iter();
        let program = words.next().ok_or_else(|| {
            BadFlag("no program given (pynisher [OPTIONS] -- PROGRAM [ARGS]...)".into())
        })?;
        if program.is_empty() {
            return Err(BadFlag("the program name is empty".into()));
        }
        let args: Vec<_> = words.collect();
        let command_text = std::iter::once(&program)
            .chain(&args)
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        let command = Command::new(&program).args(&args);

        let json = cli.json.map(|path| {
            if path.as_os_str() == "-" {
                JsonDestination::Stdout
            } else {
                JsonDestination::File(path)
            }
        });

        if let Some(JsonDestination::File(path)) = &json {
            for (flag, file) in [("--stdout", &cli.stdout), ("--stderr", &cli.stderr)] {
                if file.as_ref() == Some(path) {
                    return Err(BadFlag(format!(
                        "--json and {flag} name the same file {}",
                        path.display()
                    )));
                }
            }
        }

        Ok(Settings {
            limits,
            command,
            command_text,
            requested: RequestedLimits {
                wall_time,
                cpu_time,
                memory,
                memory_kind,
                max_processes,
                grace,
                soft_signal,
                output_limit,
                backend,
            },
            stdout_file: cli.stdout,
            stderr_file: cli.stderr,
            json,
            quiet: cli.quiet,
            verbose: cli.verbose,
        })
    }

    /// One line describing the limits, printed by `--verbose` at the start.
    pub fn describe_limits(&self) -> String {
        let r = &self.requested;
        let mut parts = Vec::new();
        if let Some(d) = r.wall_time {
            parts.push(format!("wall {}", crate::human::format_duration(d)));
        }
        if let Some(d) = r.cpu_time {
            parts.push(format!("CPU {}", crate::human::format_duration(d)));
        }
        if let Some(b) = r.memory {
            parts.push(format!("memory {}", pynisher::units::format_size(b)));
        }
        if let Some(n) = r.max_processes {
            parts.push(format!("{n} processes"));
        }
        let limits = if parts.is_empty() {
            "no limits".to_string()
        } else {
            parts.join(", ")
        };
        let ending = match r.soft_signal {
            Some(sig) => format!(
                "{} then SIGKILL after {}",
                signal_name(sig),
                crate::human::format_duration(r.grace)
            ),
            None => "SIGKILL at once".to_string(),
        };
        format!(
            "running {:?} with {limits}; on a time limit: {ending}; backend {}",
            self.command_text.join(" "),
            r.backend.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings, BadFlag> {
        let mut argv = vec!["pynisher"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--", "true"]);
        Settings::from_cli(Cli::try_parse_from(argv).expect("clap accepts these flags"))
    }

    fn error(args: &[&str]) -> String {
        settings(args).unwrap_err().0
    }

    #[test]
    fn human_units_become_engine_limits() {
        let s = settings(&[
            "--wall-time",
            "1m30s",
            "--cpu-time",
            "250ms",
            "--memory",
            "2GiB",
            "--max-processes",
            "64",
        ])
        .unwrap();
        assert_eq!(s.limits.get_wall_time(), Some(Duration::from_secs(90)));
        assert_eq!(s.limits.get_cpu_time(), Some(Duration::from_millis(250)));
        assert_eq!(s.limits.get_memory(), Some(2 << 30));
        assert_eq!(s.limits.get_max_processes(), Some(64));
        assert_eq!(s.limits.get_grace_period(), DEFAULT_GRACE);
        assert_eq!(s.requested.soft_signal, Some(libc::SIGTERM));
        assert!(!s.limits.get_capture_output());
    }

    #[test]
    fn bad_values_are_rejected_naming_the_flag() {
        for (flag, bad) in [
            ("--wall-time", "0s"),
            ("--wall-time", "1 fortnight"),
            ("--cpu-time", "-1s"),
            ("--memory", "12 parsecs"),
            ("--memory", "0"),
            ("--max-processes", "0"),
            ("--max-processes", "many"),
            ("--grace", "soon"),
            ("--signal", "NOPE"),
            ("--signal", "STOP"),
            ("--cpu-time", "99999999999d"),
            ("--wall-time", "40000d"),
            ("--grace", "99999999999d"),
        ] {
            let message = error(&[flag, bad]);
            assert!(message.contains(flag), "{flag} {bad}: {message}");
        }
    }

    #[test]
    fn grace_zero_or_signal_kill_means_no_soft_signal() {
        let s = settings(&["--grace", "0"]).unwrap();
        assert_eq!(s.requested.soft_signal, None);
        assert_eq!(s.limits.get_grace_period(), Duration::ZERO);
        let s = settings(&["--grace", "0s"]).unwrap();
        assert_eq!(s.requested.soft_signal, None);
        let s = settings(&["--signal", "KILL"]).unwrap();
        assert_eq!(s.requested.soft_signal, None);
        assert_eq!(s.limits.get_grace_period(), Duration::ZERO);
        assert!(error(&["--signal", "KILL", "--grace", "3s"]).contains("--grace"));
    }

    #[test]
    fn the_soft_signal_accepts_names_and_numbers() {
        let s = settings(&["--signal", "INT", "--grace", "5s"]).unwrap();
        assert_eq!(s.requested.soft_signal, Some(libc::SIGINT));
        assert_eq!(s.limits.get_grace_period(), Duration::from_secs(5));
        let s = settings(&["--signal", "10"]).unwrap();
        assert_eq!(s.requested.soft_signal, Some(10));
    }

    #[test]
    fn output_files_turn_on_bounded_capture() {
        let s = settings(&["--stdout", "out.txt", "--output-limit", "1KiB"]).unwrap();
        assert!(s.limits.get_capture_output());
        assert_eq!(s.requested.output_limit, Some(1024));
        let s = settings(&["--stderr", "err.txt"]).unwrap();
        assert_eq!(s.requested.output_limit, Some(DEFAULT_OUTPUT_LIMIT));
    }

    #[test]
    fn output_limit_without_an_output_file_is_rejected() {
        assert!(error(&["--output-limit", "1MiB"]).contains("--output-limit"));
        assert!(error(&["--stdout", "o", "--output-limit", "1"]).contains("--output-limit"));
    }

    #[test]
    fn json_destination_dash_is_stdout() {
        assert_eq!(
            settings(&["--json"]).unwrap().json,
            Some(JsonDestination::Stdout)
        );
        assert_eq!(
            settings(&["--json=r.json"]).unwrap().json,
            Some(JsonDestination::File("r.json".into()))
        );
    }

    #[test]
    fn the_report_and_an_output_stream_cannot_share_a_file() {
        assert!(error(&["--json=x", "--stdout", "x"]).contains("--stdout"));
        assert!(error(&["--json=x", "--stderr", "x"]).contains("--stderr"));
        assert!(settings(&["--json=x", "--stdout", "y"]).is_ok());
    }

    #[test]
    fn backends_and_memory_kinds_map_to_the_engine() {
        let s = settings(&["--backend", "none", "--memory-kind", "address-space"]).unwrap();
        assert_eq!(s.limits.get_backend(), Backend::ProcessGroup);
        assert_eq!(s.limits.get_memory_kind(), MemoryLimitKind::AddressSpace);
        let s = settings(&["--backend", "cgroup2"]).unwrap();
        assert_eq!(s.limits.get_backend(), Backend::CgroupV2);
    }
}
