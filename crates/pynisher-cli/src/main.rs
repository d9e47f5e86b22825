//! `pynisher`: run a program under wall-time, CPU-time, memory and process-count limits, and report
//! exactly why it ended. Usage, exit codes and the report schema: `pynisher --help`, `docs/cli.md`.

mod cli;
mod human;
mod observer;
mod report;
mod settings;
mod signals;
mod terminal;

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use clap::Parser;
use pynisher::units::format_size;
use pynisher::{Captured, Outcome, Status};

use crate::cli::Cli;
use crate::observer::{CliObserver, StatusLine};
use crate::report::{exit, OutputReport, Report, StreamReport};
use crate::settings::{JsonDestination, Settings};
use crate::signals::{die_by_signal, CancelSignals};
use crate::terminal::TerminalJob;

/// Prints one line on stderr. Unlike `eprintln!`, a closed pipe (`pynisher … 2>&1 | head -1`) is
/// not a panic: pynisher's own messages must never change its exit status.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// How pynisher ends.
enum Ending {
    /// `exit(code)`.
    Exit(i32),
    /// Raise this signal on itself (after a cancel, or when the program died of SIGINT), so the
    /// shell sees 128+N and treats the interrupt as it would without pynisher.
    Signal(i32),
}

fn main() {
    // pynisher is its own guard program (see the engine's `guard` module): a process that kills
    // the program's whole tree if pynisher is killed. Started after the program, never before it.
    pynisher::guard::serve_if_requested();
    // Forked rather than run again (pynisher is single-threaded then): no second start-up.
    pynisher::guard::install_deferred(pynisher::guard::GuardProgram::current_exe_forked());
    // One call, then exit: no cgroup leaf is made ahead for a next call that never comes.
    pynisher::one_call_per_process();
    // First, while this is the only thread: every thread created later inherits the blocked mask,
    // so the cancel signals reach nobody but the signalfd.
    let signals = match CancelSignals::block_and_open() {
        Ok(signals) => signals,
        Err(e) => {
            say!("pynisher: cannot set up signal handling: {e}");
            std::process::exit(exit::FAILED);
        }
    };
    // A panic is pynisher failing, not the program: exit 125 like any other failure of ours.
    let ending = std::panic::catch_unwind(|| run(&signals)).unwrap_or(Ending::Exit(exit::FAILED));
    match ending {
        Ending::Exit(code) => std::process::exit(code),
        Ending::Signal(signal) => die_by_signal(signal),
    }
}

/// Parses the command line, runs the program, reports; everything between start-up and exit.
fn run(signals: &CancelSignals) -> Ending {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => exit::FAILED,
            };
            // Printing help or an error to a closed stream is not worth another message.
            let _ = e.print();
            return Ending::Exit(code);
        }
    };
    let settings = match Settings::from_cli(cli) {
        Ok(settings) => settings,
        Err(bad) => {
            say!("pynisher: {bad}\nRun `pynisher --help` for the accepted values.");
            return Ending::Exit(exit::FAILED);
        }
    };
    Run::open(settings).map_or_else(Ending::Exit, |run| run.execute(signals))
}

/// The output files of a run, created before the program starts so that a bad path fails early.
struct Files {
    stdout: Option<File>,
    stderr: Option<File>,
    json: Option<File>,
}

/// One run: the settings and the files they name.
struct Run {
    settings: Settings,
    files: Files,
}

/// Creates (truncates) the file named by `flag`; on failure prints why and gives exit status 125.
fn create(flag: &str, path: &Path) -> Result<File, i32> {
    File::create(path).map_err(|e| {
        say!(
            "pynisher: cannot create {flag} file {}: {e}",
            path.display()
        );
        exit::FAILED
    })
}

impl Run {
    /// Creates the files the settings name; `Err` is the exit status (125) after a message.
    fn open(settings: Settings) -> Result<Run, i32> {
        let stdout = settings
            .stdout_file
            .as_deref()
            .map(|p| create("--stdout", p))
            .transpose()?;
        let stderr = match (&settings.stderr_file, &settings.stdout_file, &stdout) {
            (Some(err), Some(out), Some(file)) if err == out => {
                Some(file.try_clone().map_err(|e| {
                    say!("pynisher: cannot share {}: {e}", err.display());
                    exit::FAILED
                })?)
            }
            (Some(err), _, _) => Some(create("--stderr", err)?),
            _ => None,
        };
        let json = match &settings.json {
            Some(JsonDestination::File(path)) => Some(create("--json", path)?),
            _ => None,
        };
        Ok(Run {
            settings,
            files: Files {
                stdout,
                stderr,
                json,
            },
        })
    }

    /// Runs the program under the limits, then writes its output, the summary and the report.
    fn execute(mut self, signals: &CancelSignals) -> Ending {
        let settings = &self.settings;
        if wants_subreaper(settings.limits.get_backend()) {
            if let Err(e) = pynisher::become_subreaper() {
                if settings.verbose {
                    say!(
                        "pynisher: cannot become a subreaper ({e}); orphans of the program go to init"
                    );
                }
            }
        }
        if settings.verbose {
            say!("pynisher: {}", settings.describe_limits());
        }
        let status_line = (settings.verbose && io::stderr().is_terminal())
            .then(|| StatusLine::new(settings.requested.clone()));
        let mut observer = CliObserver::new(signals, status_line);

        let result = settings
            .limits
            .spawn_command(&settings.command)
            .and_then(|running| {
                observer.follow_terminal_job(TerminalJob::hand_over(running.pid()));
                let outcome = running.wait_observed(&mut observer);
                if let Some(job) = observer.take_terminal_job() {
                    job.take_back();
                }
                outcome
            });
        observer.finish();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = e.chain().to_string();
                say!("pynisher: {message}");
                match e {
                    pynisher::Error::BackendUnavailable { .. } => {
                        say!("pynisher: the backends that work here, strongest first: {}; `--memory-kind address-space` needs no cgroup", backend_list());
                    }
                    pynisher::Error::NotEnforceable { .. } => {
                        say!("pynisher: the backends that work here, strongest first: {}; run without --strict to accept weaker guarantees", backend_list());
                    }
                    _ => {}
                }
                let report = Report::from_error(&self.settings, &message);
                self.write_report(&report);
                return Ending::Exit(exit::FAILED);
            }
        };
        let cancel_signal = observer.cancel_signal();

        let (output, notes) = self.write_output(&outcome);
        let report = Report::from_outcome(&self.settings, &outcome, cancel_signal, output);
        if !self.settings.quiet {
            say!(
                "{}",
                report::summary_line(&outcome, &self.settings.requested, cancel_signal, &notes)
            );
        }
        self.write_report(&report);
        match (&outcome.status, cancel_signal) {
            (Status::Cancelled, Some(signal)) => Ending::Signal(signal),
            // Ctrl-C on a terminal handed to the program (see terminal.rs): end as the program
            // did, so that a shell loop running pynisher stops as it would without it.
            (Status::Signaled { signal }, _) if *signal == libc::SIGINT => {
                Ending::Signal(libc::SIGINT)
            }
            _ => Ending::Exit(report.exit_status),
        }
    }

    /// Writes captured streams to their files (or replays them), and describes where they went.
    fn write_output(&mut self, outcome: &Outcome<()>) -> (OutputReport, Vec<String>) {
        let mut notes = Vec::new();
        let stdout = write_stream(
            "stdout",
            outcome.stdout.as_ref(),
            self.settings.stdout_file.as_deref(),
            self.files.stdout.as_mut(),
            &mut io::stdout(),
            &mut notes,
        );
        let stderr = write_stream(
            "stderr",
            outcome.stderr.as_ref(),
            self.settings.stderr_file.as_deref(),
            self.files.stderr.as_mut(),
            &mut io::stderr(),
            &mut notes,
        );
        if outcome.output_drain_timed_out {
            notes.push("output reading stopped early: a leftover process kept a pipe open".into());
        }
        let output = OutputReport {
            stdout,
            stderr,
            drain_timed_out: outcome.output_drain_timed_out,
        };
        (output, notes)
    }

    /// Writes the JSON report where `--json` said; a failure is reported on stderr only.
    fn write_report(&mut self, report: &Report) {
        let written = match (&self.settings.json, &mut self.files.json) {
            (Some(JsonDestination::File(path)), Some(file)) => {
                serde_json::to_writer_pretty(&mut *file, report)
                    .map_err(io::Error::from)
                    .and_then(|()| file.write_all(b"\n"))
                    .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))
            }
            (Some(JsonDestination::Stdout), _) => {
                let mut out = io::stdout().lock();
                serde_json::to_writer(&mut out, report)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write the report to stdout: {e}"))
            }
            _ => Ok(()),
        };
        if let Err(message) = written {
            say!("pynisher: {message}");
        }
    }
}

/// Whether to make pynisher a child subreaper (orphans of the program are re-parented to it).
///
/// Not with the process-group backend: there the engine (as of d707f6a) reaps the group's zombies
/// with `waitpid(-pgid)` when its caller is a subreaper, which also reaps the main process before
/// the supervisor's own `wait4`, and the run fails with ECHILD. A cgroup backend holds orphans
/// anyway; the process-group backend kills its group by pgid either way.
fn wants_subreaper(backend: pynisher::Backend) -> bool {
    match backend {
        pynisher::Backend::ProcessGroup => false,
        pynisher::Backend::Auto => pynisher::preferred_backend() != pynisher::Backend::ProcessGroup,
        pynisher::Backend::CgroupV2 | pynisher::Backend::CgroupV1 => true,
    }
}

/// The backends available on this machine, by their `--backend` names.
fn backend_list() -> String {
    pynisher::available_backends()
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes one captured stream to its file, or replays it to pynisher's own stream when the stream
/// has no file (captured only because the other stream has one).
fn write_stream(
    name: &str,
    captured: Option<&Captured>,
    path: Option<&Path>,
    file: Option<&mut File>,
    own: &mut dyn Write,
    notes: &mut Vec<String>,
) -> StreamReport {
    let Some(captured) = captured else {
        return StreamReport::inherited();
    };
    let target: &mut dyn Write = match file {
        Some(file) => file,
        None => own,
    };
    let written = match target
        .write_all(&captured.bytes)
        .and_then(|()| target.flush())
    {
        Ok(()) => captured.bytes.len() as u64,
        Err(e) => {
            let into =
                path.map_or_else(|| format!("pynisher's {name}"), |p| p.display().to_string());
            notes.push(format!("could not write {name} to {into}: {e}"));
            0
        }
    };
    if captured.truncated {
        notes.push(format!(
            "{name} truncated: {} written by the program, {} kept (--output-limit)",
            format_size(captured.total_bytes),
            format_size(captured.bytes.len() as u64)
        ));
    }
    StreamReport::captured(captured, path, written)
}
