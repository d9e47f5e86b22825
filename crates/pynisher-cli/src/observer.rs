//! The [`Observer`] the CLI hands to the engine: it cancels the run when a cancel signal arrives and,
//! with `--verbose` on a terminal, redraws a live status line.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use pynisher::units::format_size;
use pynisher::{Observer, Progress};

use crate::human::format_duration;
use crate::settings::RequestedLimits;
use crate::signals::CancelSignals;
use crate::terminal::TerminalJob;

/// How often the CLI looks whether a program on the terminal was stopped (Ctrl-Z), only while it
/// follows such a job. Cancel signals need no interval: the engine polls their `signalfd`.
pub const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The live status line is redrawn at most this often (4 times a second).
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(250);

/// A status line on stderr, redrawn in place with `\r` and "erase to end of line".
#[derive(Debug)]
pub struct StatusLine {
    requested: RequestedLimits,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl StatusLine {
    /// A status line showing progress against `requested`.
    pub fn new(requested: RequestedLimits) -> Self {
        StatusLine {
            requested,
            last_draw: None,
            drawn: false,
        }
    }

    /// The text of the line for one snapshot.
    pub fn render(&self, progress: &Progress) -> String {
        let r = &self.requested;
        let against = |now: String, limit: Option<String>| match limit {
            Some(limit) => format!("{now} / {limit}"),
            None => now,
        };
        let mut parts = vec![format!(
            "elapsed {}",
            against(
                format_duration(progress.elapsed),
                r.wall_time.map(format_duration)
            )
        )];
        parts.push(format!(
            "CPU {}",
            against(
                progress
                    .cpu
                    .map_or_else(|| "?".into(), |c| format_duration(c.total())),
                r.cpu_time.map(format_duration)
            )
        ));
        parts.push(format!(
            "memory {}",
            against(
                progress.memory.map_or_else(|| "?".into(), format_size),
                r.memory.map(format_size)
            )
        ));
        if progress.processes.is_some() || r.max_processes.is_some() {
            parts.push(format!(
                "processes {}",
                against(
                    progress
                        .processes
                        .map_or_else(|| "?".into(), |n| n.to_string()),
                    r.max_processes.map(|n| n.to_string())
                )
            ));
        }
        format!("pynisher: {}", parts.join(" | "))
    }

    /// Redraws the line on `out` unless it was drawn less than [`REDRAW_INTERVAL`] ago.
    pub fn update(&mut self, progress: &Progress, now: Instant, out: &mut dyn Write) -> bool {
        if self
            .last_draw
            .is_some_and(|last| now.duration_since(last) < REDRAW_INTERVAL)
        {
            return false;
        }
        self.last_draw = Some(now);
        let text = self.render(progress);
        // A status line that cannot be drawn is not worth failing the run for.
        let _ = write!(out, "\r\x1b[K{text}");
        let _ = out.flush();
        self.drawn = true;
        true
    }

    /// Erases the line from `out`, so the summary starts on a clean line.
    pub fn clear(&mut self, out: &mut dyn Write) {
        if self.drawn {
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
            self.drawn = false;
        }
    }
}

/// Cancels on SIGINT/SIGTERM/SIGHUP and draws the optional status line.
#[derive(Debug)]
pub struct CliObserver<'a> {
    signals: &'a CancelSignals,
    cancel_signal: Option<i32>,
    status_line: Option<StatusLine>,
    terminal_job: Option<TerminalJob>,
}

impl<'a> CliObserver<'a> {
    /// An observer reading `signals`, with a status line when `status_line` is given.
    pub fn new(signals: &'a CancelSignals, status_line: Option<StatusLine>) -> Self {
        CliObserver {
            signals,
            cancel_signal: None,
            status_line,
            terminal_job: None,
        }
    }

    /// Follows the program's stops (Ctrl-Z) while it runs on the terminal; see
    /// [`TerminalJob::stop_with_program`].
    pub fn follow_terminal_job(&mut self, job: Option<TerminalJob>) {
        self.terminal_job = job;
    }

    /// The terminal job, given back at the end of the run.
    pub fn take_terminal_job(&mut self) -> Option<TerminalJob> {
        self.terminal_job.take()
    }

    /// The signal that cancelled the run, if one did.
    pub fn cancel_signal(&self) -> Option<i32> {
        self.cancel_signal
    }

    /// Erases the status line, if one was drawn.
    pub fn finish(&mut self) {
        if let Some(line) = &mut self.status_line {
            line.clear(&mut std::io::stderr().lock());
        }
    }
}

impl Observer for CliObserver<'_> {
    fn interval(&self) -> Option<Duration> {
        if self.terminal_job.is_some() {
            Some(STOP_CHECK_INTERVAL)
        } else if self.status_line.is_some() {
            Some(REDRAW_INTERVAL)
        } else {
            None
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.signals.as_fd())
    }

    fn should_cancel(&mut self) -> bool {
        if let Some(job) = &mut self.terminal_job {
            if job.program_stopped() {
                // Leave a clean line for the shell's "Stopped" message.
                if let Some(line) = &mut self.status_line {
                    line.clear(&mut std::io::stderr().lock());
                }
                job.stop_with_program();
            }
        }
        // Read every pending signal (the descriptor must not stay readable); the first one counts.
        while let Some(signal) = self.signals.take() {
            self.cancel_signal.get_or_insert(signal);
        }
        self.cancel_signal.is_some()
    }

    fn progress(&mut self, progress: &Progress) {
        if let Some(line) = &mut self.status_line {
            line.update(progress, Instant::now(), &mut std::io::stderr().lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pynisher::{Backend, CpuTime, MemoryLimitKind};

    fn requested() -> RequestedLimits {
        RequestedLimits {
            wall_time: Some(Duration::from_secs(10)),
            cpu_time: None,
            memory: Some(2 << 30),
            memory_kind: MemoryLimitKind::Auto,
            max_processes: None,
            grace: Duration::from_secs(2),
            soft_signal: Some(libc::SIGTERM),
            output_limit: None,
            backend: Backend::Auto,
        }
    }

    fn progress() -> Progress {
        Progress {
            elapsed: Duration::from_millis(3200),
            cpu: Some(CpuTime {
                user: Duration::from_millis(1000),
                system: Duration::from_millis(100),
            }),
            memory: Some(120 << 20),
            processes: None,
        }
    }

    #[test]
    fn the_status_line_shows_usage_against_the_limits_that_are_set() {
        let line = StatusLine::new(requested()).render(&progress());
        assert_eq!(
            line,
            "pynisher: elapsed 3.200s / 10.00s | CPU 1.100s | memory 120.0 MiB / 2.0 GiB"
        );
    }

    #[test]
    fn the_status_line_is_redrawn_at_most_four_times_a_second() {
        let mut line = StatusLine::new(requested());
        let mut terminal = Vec::new();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(line.update(&progress(), at(0), &mut terminal));
        assert!(!line.update(&progress(), at(100), &mut terminal));
        assert!(!line.update(&progress(), at(249), &mut terminal));
        assert!(line.update(&progress(), at(250), &mut terminal));
        line.clear(&mut terminal);
        let text = String::from_utf8(terminal).unwrap();
        assert_eq!(text.matches("pynisher: elapsed").count(), 2);
        assert!(text.starts_with("\r\x1b[K"));
        assert!(text.ends_with("\r\x1b[K"), "the line is erased at the end");
    }
}
