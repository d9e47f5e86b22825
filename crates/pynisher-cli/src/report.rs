//! What pynisher says when the program ended: its exit status, the one-line summary for people and
//! the versioned JSON report for machines (schema [`SCHEMA`], documented in `--help` and
//! `docs/cli.md`).

use std::time::Duration;

use pynisher::units::format_size;
use pynisher::{Captured, Outcome, Status};
use serde::{Deserialize, Serialize};

use crate::human::format_duration;
use crate::settings::{RequestedLimits, Settings};
use crate::signals::signal_name;

/// The report's schema name. Fields may be added within a version; removing a field or changing
/// its meaning bumps the number.
pub const SCHEMA: &str = "pynisher-report/1";

/// pynisher's exit statuses of its own. Everything else is the program's own code or 128+N.
pub mod exit {
    /// The process-count limit was reached.
    pub const PROCESS_LIMIT: i32 = 122;
    /// The memory limit was reached.
    pub const MEMORY_LIMIT: i32 = 123;
    /// The wall-time or CPU-time limit was reached (as GNU timeout).
    pub const TIME_LIMIT: i32 = 124;
    /// pynisher itself failed (as GNU timeout).
    pub const FAILED: i32 = 125;
    /// The program was found but could not be executed (as GNU timeout).
    pub const CANNOT_EXECUTE: i32 = 126;
    /// The program was not found (as GNU timeout).
    pub const NOT_FOUND: i32 = 127;
}

/// pynisher's exit status for an outcome. A cancelled run reports 128 + the cancel signal (pynisher
/// then ends itself by that signal, see [`crate::signals::die_by_signal`]).
pub fn exit_status(outcome: &Outcome<()>, cancel_signal: Option<i32>) -> i32 {
    match &outcome.status {
        Status::Completed => match (outcome.exit_code, outcome.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 0,
        },
        Status::WallTimeout | Status::CpuTimeout => exit::TIME_LIMIT,
        Status::MemoryLimit => exit::MEMORY_LIMIT,
        Status::ProcessLimit => exit::PROCESS_LIMIT,
        Status::Signaled { signal } => 128 + signal,
        Status::SpawnFailed { errno, .. } if *errno == libc::ENOENT => exit::NOT_FOUND,
        Status::SpawnFailed { .. } => exit::CANNOT_EXECUTE,
        Status::Cancelled => 128 + cancel_signal.unwrap_or(libc::SIGINT),
        // Closure-only statuses (no_result, panicked, result_undecodable) and any the engine adds
        // later: pynisher cannot vouch for the run.
        _ => exit::FAILED,
    }
}

/// What ended the run, in words: the first part of the summary line.
pub fn describe_status(
    outcome: &Outcome<()>,
    requested: &RequestedLimits,
    cancel_signal: Option<i32>,
) -> String {
    let limit =
        |d: Option<Duration>| d.map_or_else(String::new, |d| format!(" ({})", format_duration(d)));
    match &outcome.status {
        Status::Completed => match (outcome.exit_code, outcome.signal) {
            (Some(code), _) => format!("completed, exit code {code}"),
            (None, Some(signal)) => format!("completed, ended by {}", signal_name(signal)),
            (None, None) => "completed".to_string(),
        },
        Status::WallTimeout => format!("wall-time limit{} reached", limit(requested.wall_time)),
        Status::CpuTimeout => format!("CPU-time limit{} reached", limit(requested.cpu_time)),
        Status::MemoryLimit => format!(
            "memory limit{} reached{}",
            requested
                .memory
                .map_or_else(String::new, |b| format!(" ({})", format_size(b))),
            if outcome.oom_kills > 0 {
                format!(", {} OOM kill(s)", outcome.oom_kills)
            } else {
                String::new()
            }
        ),
        Status::ProcessLimit => format!(
            "process limit{} reached{}",
            requested
                .max_processes
                .map_or_else(String::new, |n| format!(" ({n})")),
            match outcome.processes_refused {
                0 => String::new(),
                1 => ", 1 fork refused".to_string(),
                n => format!(", {n} forks refused"),
            }
        ),
        Status::Signaled { signal } => format!("killed by {}", signal_name(*signal)),
        Status::SpawnFailed { message, .. } => format!("could not start: {message}"),
        Status::Cancelled => format!(
            "cancelled by {}",
            cancel_signal.map_or_else(|| "request".to_string(), signal_name)
        ),
        other => format!("ended without a usable status ({})", other.name()),
    }
}

/// The one-line summary printed on stderr at the end (unless `--quiet`).
pub fn summary_line(
    outcome: &Outcome<()>,
    requested: &RequestedLimits,
    cancel_signal: Option<i32>,
    output_notes: &[String],
) -> String {
    if let Status::SpawnFailed { .. } = outcome.status {
        return format!(
            "pynisher: {}",
            describe_status(outcome, requested, cancel_signal)
        );
    }
    let mut line = format!(
        "pynisher: {}; wall {}, CPU {} (user {} + sys {}), peak memory {}",
        describe_status(outcome, requested, cancel_signal),
        format_duration(outcome.wall_time),
        format_duration(outcome.cpu_time.total()),
        format_duration(outcome.cpu_time.user),
        format_duration(outcome.cpu_time.system),
        outcome
            .peak_memory
            .map_or_else(|| "unknown".to_string(), format_size),
    );
    if outcome.leftovers_killed > 0 {
        line.push_str(&format!(
            ", {} leftover process(es) killed",
            outcome.leftovers_killed
        ));
    }
    for note in output_notes {
        line.push_str("; ");
        line.push_str(note);
    }
    if !outcome.weaknesses.is_empty() {
        let weaker: Vec<String> = outcome
            .weaknesses
            .iter()
            .map(|w| w.name().replace('_', " "))
            .collect();
        line.push_str(&format!(
            "; weaker guarantees (backend {}): {}",
            outcome.containment.backend.name(),
            weaker.join(", ")
        ));
    }
    line
}

/// The limits in the report; `null` means no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsReport {
    /// `--wall-time` in seconds.
    pub wall_time_s: Option<f64>,
    /// `--cpu-time` in seconds.
    pub cpu_time_s: Option<f64>,
    /// `--memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `--memory-kind`: `auto`, `resident` or `address_space`.
    pub memory_kind: String,
    /// `--max-processes`.
    pub max_processes: Option<u64>,
    /// `--grace` in seconds (0: SIGKILL at once).
    pub grace_period_s: f64,
    /// The soft signal sent on a time limit before the grace period, or null.
    pub soft_signal: Option<i32>,
    /// `--output-limit` in bytes per stream, when output is captured.
    pub output_limit_bytes: Option<usize>,
    /// `--backend` as requested: `auto`, `cgroup2`, `cgroup1` or `none`.
    pub backend: String,
}

/// How the program's main process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramReport {
    /// Its exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, whoever sent it.
    pub signal: Option<i32>,
    /// That signal's name (`SIGTERM`).
    pub signal_name: Option<String>,
}

/// Where one output stream went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReport {
    /// `inherit` (pass-through to pynisher's own stream, not measured), `file` (captured, written
    /// to `path`) or `replayed` (captured because the other stream went to a file, then written to
    /// pynisher's own stream at the end).
    pub destination: String,
    /// The file, for `file`.
    pub path: Option<String>,
    /// Bytes the program wrote to the stream (captured streams only).
    pub total_bytes: Option<u64>,
    /// Bytes written to the destination (captured streams only).
    pub written_bytes: Option<u64>,
    /// Whether the middle of the stream was dropped at the output limit.
    pub truncated: bool,
}

impl StreamReport {
    /// A pass-through stream.
    pub fn inherited() -> Self {
        StreamReport {
            destination: "inherit".into(),
            path: None,
            total_bytes: None,
            written_bytes: None,
            truncated: false,
        }
    }

    /// A captured stream written to `path` (a file) or replayed (`None`).
    pub fn captured(captured: &Captured, path: Option<&std::path::Path>, written: u64) -> Self {
        StreamReport {
            destination: if path.is_some() { "file" } else { "replayed" }.into(),
            path: path.map(|p| p.display().to_string()),
            total_bytes: Some(captured.total_bytes),
            written_bytes: Some(written),
            truncated: captured.truncated,
        }
    }
}

/// Both output streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputReport {
    /// The program's stdout.
    pub stdout: StreamReport,
    /// The program's stderr.
    pub stderr: StreamReport,
    /// Whether reading output stopped at the drain timeout because a descendant kept a pipe open.
    pub drain_timed_out: bool,
}

/// CPU time in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// User mode.
    pub user: f64,
    /// Kernel mode.
    pub system: f64,
    /// User + system.
    pub total: f64,
}

/// Why the program could not be started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnErrorReport {
    /// The `errno` of the failed step (2: not found, 13: permission denied, 8: exec format error).
    pub errno: i32,
    /// What failed, in words.
    pub message: String,
}

/// What the containment backend guarantees, copied from the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuaranteesReport {
    /// Every descendant, even one that `setsid`s and double-forks, was held and killed.
    pub all_descendants_contained: bool,
    /// CPU time counts every process that ever ran, exited ones included.
    pub exact_tree_cpu_time: bool,
    /// The memory limit counts resident memory of all processes together.
    pub tree_memory_limit: bool,
    /// The kernel refuses forks beyond the process limit (rather than pynisher polling).
    pub kernel_process_limit: bool,
    /// What the backend cannot see or do.
    pub notes: Vec<String>,
}

/// The containment that held the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainmentReport {
    /// `cgroup2`, `cgroup1` or `none`.
    pub backend: String,
    /// What it guarantees.
    pub guarantees: GuaranteesReport,
    /// What this run asked for that the backend enforced less strongly: each a stable name
    /// (`escapees_not_contained`, `memory_sampled`, `memory_address_space`,
    /// `process_limit_polled`) and a sentence.
    #[serde(default)]
    pub weaknesses: Vec<WeaknessReport>,
}

/// One weaker guarantee of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeaknessReport {
    /// Stable name.
    pub name: String,
    /// What is weaker, in words.
    pub description: String,
}

/// The JSON report, schema [`SCHEMA`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// pynisher's version.
    pub pynisher_version: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// `completed`, `wall_timeout`, `cpu_timeout`, `memory_limit`, `process_limit`, `signaled`,
    /// `spawn_failed`, `cancelled`, or `error` (pynisher itself failed).
    pub status: String,
    /// pynisher's exit status.
    pub exit_status: i32,
    /// The summary line's description of the end.
    pub message: String,
    /// The limits as requested.
    pub limits: LimitsReport,
    /// How the main process ended (null fields when it never ran).
    pub program: ProgramReport,
    /// The soft signal sent on a time limit, if any.
    pub soft_signal_sent: Option<i32>,
    /// Whether pynisher SIGKILLed processes of the run.
    pub killed: bool,
    /// The signal that cancelled the run.
    pub cancel_signal: Option<i32>,
    /// Why the program could not be started (status `spawn_failed`).
    pub spawn_error: Option<SpawnErrorReport>,
    /// pynisher's own failure (status `error`).
    pub error: Option<String>,
    /// Wall time in seconds, from the program's start to the end of its main process.
    pub wall_time_s: f64,
    /// CPU time in seconds.
    pub cpu_time_s: CpuReport,
    /// `cgroup` or `process_tree`.
    pub cpu_measure: Option<String>,
    /// Peak memory in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// `cgroup_peak` or `max_rss_of_one_process`.
    pub memory_measure: Option<String>,
    /// What the memory limit counted: `resident`, `address_space`, or null (no limit).
    pub memory_limit_kind: Option<String>,
    /// Kernel OOM kills inside the run.
    pub oom_kills: u64,
    /// Forks refused by the process limit.
    pub processes_refused: u64,
    /// Processes still alive after the main process ended, killed by pynisher.
    pub leftovers_killed: u64,
    /// Where the output went.
    pub output: OutputReport,
    /// The containment (null when pynisher failed before starting the program).
    pub containment: Option<ContainmentReport>,
}

fn limits_report(r: &RequestedLimits) -> LimitsReport {
    LimitsReport {
        wall_time_s: r.wall_time.map(|d| d.as_secs_f64()),
        cpu_time_s: r.cpu_time.map(|d| d.as_secs_f64()),
        memory_bytes: r.memory,
        memory_kind: r.memory_kind.name().into(),
        max_processes: r.max_processes,
        grace_period_s: r.grace.as_secs_f64(),
        soft_signal: r.soft_signal,
        output_limit_bytes: r.output_limit,
        backend: r.backend.name().into(),
    }
}

impl Report {
    /// The report of a run that produced an outcome.
    pub fn from_outcome(
        settings: &Settings,
        outcome: &Outcome<()>,
        cancel_signal: Option<i32>,
        output: OutputReport,
    ) -> Report {
        let spawn_error = match &outcome.status {
            Status::SpawnFailed { errno, message } => Some(SpawnErrorReport {
                errno: *errno,
                message: message.clone(),
            }),
            _ => None,
        };
        let guarantees = &outcome.containment.guarantees;
        Report {
            schema: SCHEMA.into(),
            pynisher_version: env!("CARGO_PKG_VERSION").into(),
            command: settings.command_text.clone(),
            status: outcome.status.name().into(),
            exit_status: exit_status(outcome, cancel_signal),
            message: describe_status(outcome, &settings.requested, cancel_signal),
            limits: limits_report(&settings.requested),
            program: ProgramReport {
                exit_code: outcome.exit_code,
                signal: outcome.signal,
                signal_name: outcome.signal.map(signal_name),
            },
            soft_signal_sent: outcome.soft_signal_sent,
            killed: outcome.killed,
            cancel_signal,
            spawn_error,
            error: None,
            wall_time_s: outcome.wall_time.as_secs_f64(),
            cpu_time_s: CpuReport {
                user: outcome.cpu_time.user.as_secs_f64(),
                system: outcome.cpu_time.system.as_secs_f64(),
                total: outcome.cpu_time.total().as_secs_f64(),
            },
            cpu_measure: Some(outcome.cpu_measure.name().into()),
            peak_memory_bytes: outcome.peak_memory,
            memory_measure: Some(outcome.memory_measure.name().into()),
            memory_limit_kind: outcome.memory_limit_kind.map(|k| k.name().into()),
            oom_kills: outcome.oom_kills,
            processes_refused: outcome.processes_refused,
            leftovers_killed: outcome.leftovers_killed,
            output,
            containment: Some(ContainmentReport {
                backend: outcome.containment.backend.name().into(),
                guarantees: GuaranteesReport {
                    all_descendants_contained: guarantees.all_descendants_contained,
                    exact_tree_cpu_time: guarantees.exact_tree_cpu_time,
                    tree_memory_limit: guarantees.tree_memory_limit,
                    kernel_process_limit: guarantees.kernel_process_limit,
                    notes: guarantees.notes.clone(),
                },
                weaknesses: outcome
                    .weaknesses
                    .iter()
                    .map(|w| WeaknessReport {
                        name: w.name().into(),
                        description: w.describe().into(),
                    })
                    .collect(),
            }),
        }
    }

    /// The report of a run where pynisher itself failed (status `error`, exit status 125).
    pub fn from_error(settings: &Settings, error: &str) -> Report {
        Report {
            schema: SCHEMA.into(),
            pynisher_version: env!("CARGO_PKG_VERSION").into(),
            command: settings.command_text.clone(),
            status: "error".into(),
            exit_status: exit::FAILED,
            message: format!("pynisher failed: {error}"),
            limits: limits_report(&settings.requested),
            program: ProgramReport {
                exit_code: None,
                signal: None,
                signal_name: None,
            },
            soft_signal_sent: None,
            killed: false,
            cancel_signal: None,
            spawn_error: None,
            error: Some(error.into()),
            wall_time_s: 0.0,
            cpu_time_s: CpuReport {
                user: 0.0,
                system: 0.0,
                total: 0.0,
            },
            cpu_measure: None,
            peak_memory_bytes: None,
            memory_measure: None,
            memory_limit_kind: None,
            oom_kills: 0,
            processes_refused: 0,
            leftovers_killed: 0,
            output: OutputReport {
                stdout: StreamReport::inherited(),
                stderr: StreamReport::inherited(),
                drain_timed_out: false,
            },
            containment: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pynisher::{Backend, Containment, CpuMeasure, CpuTime, Guarantees, MemoryMeasure};

    fn outcome(status: Status) -> Outcome<()> {
        Outcome {
            status,
            value: None,
            exit_code: None,
            signal: None,
            soft_signal_sent: None,
            killed: false,
            wall_time: Duration::from_millis(1500),
            cpu_time: CpuTime {
                user: Duration::from_millis(700),
                system: Duration::from_millis(300),
            },
            cpu_measure: CpuMeasure::Cgroup,
            peak_memory: Some(3 << 20),
            memory_measure: MemoryMeasure::CgroupPeak,
            memory_limit_kind: None,
            oom_kills: 0,
            processes_refused: 0,
            leftovers_killed: 0,
            output_drain_timed_out: false,
            stdout: None,
            stderr: None,
            containment: Containment {
                backend: Backend::CgroupV1,
                guarantees: Guarantees {
                    all_descendants_contained: true,
                    exact_tree_cpu_time: true,
                    tree_memory_limit: true,
                    kernel_process_limit: true,
                    notes: vec!["a note".into()],
                },
            },
            weaknesses: Vec::new(),
        }
    }

    #[test]
    fn the_summary_says_which_guarantees_were_weaker_in_the_same_line() {
        let s = settings(&["--memory", "100MiB", "--max-processes", "4"]);
        let mut o = outcome(Status::Completed);
        o.exit_code = Some(0);
        o.containment.backend = Backend::ProcessGroup;
        o.weaknesses = vec![
            pynisher::Weakness::EscapeesNotContained,
            pynisher::Weakness::MemorySampled,
            pynisher::Weakness::ProcessLimitPolled,
        ];
        let line = summary_line(&o, &s.requested, None, &[]);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.ends_with(
                "; weaker guarantees (backend none): escapees not contained, memory sampled, \
                 process limit polled"
            ),
            "{line}"
        );
        let report = Report::from_outcome(&s, &o, None, inherited_output());
        let names: Vec<&str> = report
            .containment
            .as_ref()
            .unwrap()
            .weaknesses
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "escapees_not_contained",
                "memory_sampled",
                "process_limit_polled"
            ]
        );
    }

    fn inherited_output() -> OutputReport {
        OutputReport {
            stdout: StreamReport::inherited(),
            stderr: StreamReport::inherited(),
            drain_timed_out: false,
        }
    }

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["pynisher"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--", "sleep", "5"]);
        Settings::from_cli(crate::cli::Cli::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn exit_statuses_follow_gnu_timeout_and_the_documented_limit_codes() {
        let completed = |code| Outcome {
            exit_code: Some(code),
            ..outcome(Status::Completed)
        };
        assert_eq!(exit_status(&completed(0), None), 0);
        assert_eq!(exit_status(&completed(3), None), 3);
        assert_eq!(exit_status(&outcome(Status::WallTimeout), None), 124);
        assert_eq!(exit_status(&outcome(Status::CpuTimeout), None), 124);
        assert_eq!(exit_status(&outcome(Status::MemoryLimit), None), 123);
        assert_eq!(exit_status(&outcome(Status::ProcessLimit), None), 122);
        assert_eq!(
            exit_status(&outcome(Status::Signaled { signal: 11 }), None),
            139
        );
        let spawn = |errno| Status::SpawnFailed {
            errno,
            message: String::new(),
        };
        assert_eq!(exit_status(&outcome(spawn(libc::ENOENT)), None), 127);
        assert_eq!(exit_status(&outcome(spawn(libc::EACCES)), None), 126);
        assert_eq!(exit_status(&outcome(spawn(libc::ENOEXEC)), None), 126);
        assert_eq!(
            exit_status(&outcome(Status::Cancelled), Some(libc::SIGTERM)),
            143
        );
        assert_eq!(exit_status(&outcome(Status::NoResult), None), 125);
    }

    #[test]
    fn the_summary_of_a_process_limit_counts_refused_forks() {
        let refused = Outcome {
            exit_code: Some(2),
            processes_refused: 3,
            ..outcome(Status::ProcessLimit)
        };
        assert_eq!(
            exit_status(&refused, None),
            122,
            "not the program's own code"
        );
        let s = settings(&["--max-processes", "4"]);
        let line = summary_line(&refused, &s.requested, None, &[]);
        assert!(
            line.contains("process limit (4) reached, 3 forks refused"),
            "{line}"
        );
        let report = Report::from_outcome(&s, &refused, None, inherited_output());
        assert_eq!(report.status, "process_limit");
        assert_eq!(report.program.exit_code, Some(2));
    }

    #[test]
    fn limit_codes_do_not_collide_with_timeout_or_signal_codes() {
        let own = [exit::PROCESS_LIMIT, exit::MEMORY_LIMIT];
        for code in own {
            assert!(!(124..=127).contains(&code));
            assert!(!(129..=192).contains(&code), "128+N for N in 1..=64");
        }
        assert_ne!(exit::PROCESS_LIMIT, exit::MEMORY_LIMIT);
    }

    #[test]
    fn summary_names_the_reason_the_limit_and_the_measurements() {
        let s = settings(&["--wall-time", "1s"]);
        let line = summary_line(&outcome(Status::WallTimeout), &s.requested, None, &[]);
        assert!(
            line.starts_with("pynisher: wall-time limit (1.000s) reached"),
            "{line}"
        );
        assert!(line.contains("wall 1.500s"), "{line}");
        assert!(
            line.contains("CPU 1.000s (user 0.700s + sys 0.300s)"),
            "{line}"
        );
        assert!(line.contains("peak memory 3.0 MiB"), "{line}");
        let line = summary_line(
            &outcome(Status::Cancelled),
            &s.requested,
            Some(libc::SIGINT),
            &["stdout truncated".into()],
        );
        assert!(line.contains("cancelled by SIGINT"), "{line}");
        assert!(line.ends_with("; stdout truncated"), "{line}");
    }

    #[test]
    fn the_report_round_trips_through_json_with_the_schema_tag() {
        let s = settings(&["--cpu-time", "2s", "--memory", "1GiB"]);
        let mut o = outcome(Status::Signaled { signal: 9 });
        o.signal = Some(9);
        let report = Report::from_outcome(&s, &o, None, inherited_output());
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema"], "pynisher-report/1");
        assert_eq!(value["status"], "signaled");
        assert_eq!(value["exit_status"], 137);
        assert_eq!(value["program"]["signal_name"], "SIGKILL");
        assert_eq!(value["limits"]["cpu_time_s"], 2.0);
        assert_eq!(value["limits"]["memory_bytes"], 1u64 << 30);
        assert_eq!(value["limits"]["wall_time_s"], serde_json::Value::Null);
        assert_eq!(value["containment"]["backend"], "cgroup1");
        assert_eq!(value["cpu_time_s"]["total"], 1.0);
        assert_eq!(value["command"], serde_json::json!(["sleep", "5"]));
    }

    #[test]
    fn an_error_report_has_status_error_and_exit_status_125() {
        let s = settings(&[]);
        let report = Report::from_error(&s, "containment backend cgroup2 is unavailable");
        assert_eq!(report.status, "error");
        assert_eq!(report.exit_status, 125);
        assert!(report.containment.is_none());
    }
}
