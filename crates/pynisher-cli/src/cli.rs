//! The command line as clap sees it. Values that need human units stay text here and are parsed in
//! [`crate::settings`], so every error names the flag the way the user wrote it.

use std::ffi::OsString;
use std::path::PathBuf;

use pynisher::{Backend, MemoryLimitKind};

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Parser;

/// Text shown after the options by `-h` (short) …
const AFTER_HELP: &str = "\
Examples:
  pynisher --wall-time 1m30s -- ./solver instance.cnf
  pynisher --cpu-time 10s --memory 2GiB --json=report.json -- python train.py
  pynisher --max-processes 64 --grace 5s --signal INT -- make -j8
  pynisher --stdout out.log --output-limit 64MiB --quiet -- ./chatty
  pynisher --verbose --wall-time 10m -- ./long-job

Exit status: the program's own, or 124 time limit, 123 memory limit, 122 process limit,
125 pynisher failed, 126 cannot execute, 127 not found, 128+N killed by signal N.
Run `pynisher --help` for details and the JSON report schema.";

/// … and by `--help` (long): exit codes, limits and the report schema in full.
const AFTER_LONG_HELP: &str = "\
Examples:
  Stop a solver after 90 s of wall time:
    pynisher --wall-time 1m30s -- ./solver instance.cnf
  Limit CPU time and memory, write a machine-readable report:
    pynisher --cpu-time 10s --memory 2GiB --json=report.json -- python train.py
  Cap the number of processes; on a limit send SIGINT, then SIGKILL 5 s later:
    pynisher --max-processes 64 --grace 5s --signal INT -- make -j8
  Keep at most 64 MiB of a noisy program's output in a file:
    pynisher --stdout out.log --output-limit 64MiB --quiet -- ./chatty
  Watch elapsed time, CPU time and memory live on the terminal:
    pynisher --verbose --wall-time 10m -- ./long-job

Units:
  Durations: 90 (seconds), 1.5s, 250ms, 2m, 1h, 1d, or chained: 1m30s, 1h2m3.5s.
  Sizes: 4096 (bytes), 512MiB, 2GiB, 64k, 1.5G (binary, powers of 1024), or 100MB, 2GB (powers
  of 1000).

Exit status (as GNU timeout where it applies):
  N        the program exited by itself with code N
  124      the wall-time or CPU-time limit was reached
  123      the memory limit was reached
  122      the process-count limit was reached
  125      pynisher itself failed (bad flag, backend unavailable, system error)
  126      the program was found but could not be executed
  127      the program was not found
  128+N    the program was killed by signal N that pynisher did not send for a limit
  Cancelled by SIGINT, SIGTERM or SIGHUP: pynisher ends the whole limited tree, prints its
  summary and report, then ends itself by the same signal, so a shell sees 128+N (130 for ^C).
  It does the same when the program was killed by SIGINT.
  122 and 123 sit just below timeout's 124-127 block and outside 128+N, so they collide with no
  code that timeout or a shell gives meaning to; the JSON report tells every case apart exactly.

Limits and signals:
  On a time limit pynisher sends --signal (default TERM) to the program and its processes, waits
  --grace (default 2s), then SIGKILLs everything left. --grace 0 or --signal KILL kill at once.
  The memory and process limits are enforced by the kernel where a cgroup backend is in use;
  without a cgroup, memory is resident memory sampled (down to every 10 ms) and the process count is
  polled, and the summary line ends with what was weaker (--strict refuses to run instead);
  whatever was still running when the program's main process ended is killed and counted
  (leftovers_killed). If pynisher is killed, the program dies with it.

Terminal:
  When stdin is a terminal and pynisher runs in its foreground, the program gets the terminal
  for the run: it can read it, and Ctrl-C goes to the program, as without pynisher. Ctrl-Z stops
  the program and pynisher together (the shell shows the job stopped); fg continues both.

Output:
  By default the program's stdout and stderr are its own (pass-through, live, unbounded).
  With --stdout FILE and/or --stderr FILE pynisher captures BOTH streams (at most --output-limit
  bytes each, keeping head and tail), writes them to the files when the program ends, and replays
  a stream without a file to its own stdout or stderr at that point. --output-limit applies only
  with --stdout or --stderr.

JSON report (--json writes one line to stdout after the program's own output; --json=FILE
writes it, pretty-printed, to FILE; --json=- is stdout). Schema \"pynisher-report/1\"; fields may
be added within /1, a change of meaning or a removal bumps it:
  schema               \"pynisher-report/1\"
  pynisher_version     version of pynisher
  command              [program, args...]
  status               completed | wall_timeout | cpu_timeout | memory_limit | process_limit |
                       signaled | spawn_failed | cancelled | error (pynisher failed)
  exit_status          pynisher's own exit status (cancelled: 128+N, see above)
  message              one-line human description (the summary line)
  limits               wall_time_s, cpu_time_s, memory_bytes, memory_kind (auto | resident |
                       address_space), max_processes, grace_period_s, soft_signal,
                       output_limit_bytes, backend (requested); null = no limit
  program              exit_code (exited by itself), signal and signal_name (killed by a signal)
  soft_signal_sent     signal sent before the grace period on a time limit, or null
  killed               pynisher SIGKILLed processes of the call
  cancel_signal        signal that cancelled the run, or null
  spawn_error          {errno, message} when the program could not be started
  error                pynisher's own error message when status is error
  wall_time_s          from the program's start to the end of its main process
  cpu_time_s           {user, system, total}, over the whole process tree
  cpu_measure          cgroup (exact, every process) | process_tree (reaped + live samples)
  peak_memory_bytes    peak memory, or null when not measured
  memory_measure       cgroup_peak (all processes together) | sampled | max_rss_of_one_process
  memory_limit_kind    what the memory limit counted: resident | sampled | address_space | null
  oom_kills            kernel OOM kills inside the call (cgroup backends)
  processes_refused    forks refused by the process limit (cgroup backends)
  leftovers_killed     processes still alive after the main process ended, killed
  output               stdout and stderr: {destination: inherit | file | replayed, path,
                       total_bytes, written_bytes, truncated}; drain_timed_out
  containment          backend (cgroup2 | cgroup1 | none) and guarantees:
                       all_descendants_contained, exact_tree_cpu_time, tree_memory_limit,
                       kernel_process_limit, notes; weaknesses: [{name, description}]
                       for what this run asked that the backend enforced less strongly
All times are seconds as numbers; all sizes are bytes. Full description and an example report:
docs/cli.md.";

/// A flag value that must be one of an engine enum's names (`--backend`, `--memory-kind`): the
/// names and their parsing come from the engine, so the command line cannot drift from them. A
/// name with `_` is also accepted with `-`, as command lines spell words (`address-space`).
fn engine_names<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = pynisher::UnknownName> + Clone + Send + Sync + 'static,
{
    let values = names.iter().map(|&name| {
        let value = PossibleValue::new(name);
        if name.contains('_') {
            value.alias(name.replace('_', "-"))
        } else {
            value
        }
    });
    PossibleValuesParser::new(values).map(|name| {
        name.replace('-', "_")
            .parse::<T>()
            .expect("clap accepted only the listed names")
    })
}

/// Run a program under wall-time, CPU-time, memory and process-count limits, and report exactly
/// why it ended.
#[derive(Debug, Parser)]
#[command(
    name = "pynisher",
    version,
    about = "Run a program under wall-time, CPU-time, memory and process-count limits; report why it ended.",
    after_help = AFTER_HELP,
    after_long_help = AFTER_LONG_HELP,
    override_usage = "pynisher [OPTIONS] -- PROGRAM [ARGS]..."
)]
pub struct Cli {
    /// Wall-clock limit, from the program's start (e.g. 1m30s, 1.5s, 250ms).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub wall_time: Option<String>,

    /// CPU-time limit (user + system) over all the program's processes (e.g. 10s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub cpu_time: Option<String>,

    /// Memory limit (e.g. 2GiB, 512MiB); what it counts is set by --memory-kind.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,

    /// What --memory counts: resident memory of the whole tree, by a cgroup where one can enforce
    /// it, else sampled by pynisher (auto); resident memory of all processes together, needing a cgroup backend
    /// (resident); RLIMIT_AS on every process, reserved address space (address_space).
    #[arg(long, value_name = "KIND", default_value = "auto",
          value_parser = engine_names::<MemoryLimitKind>(MemoryLimitKind::NAMES))]
    pub memory_kind: MemoryLimitKind,

    /// Maximum number of live processes of the program, itself included.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_processes: Option<String>,

    /// Time between the soft signal and SIGKILL on a time limit [default: 2s]; 0 kills at once.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub grace: Option<String>,

    /// Soft signal sent on a time limit, by name or number (TERM, INT, 10…) [default: TERM].
    #[arg(long, value_name = "SIGNAL", allow_hyphen_values = true)]
    pub signal: Option<String>,

    /// Cap on captured bytes per stream with --stdout/--stderr [default: 16MiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub output_limit: Option<String>,

    /// Capture the program's stdout and write it to FILE when it ends (see --help).
    #[arg(long, value_name = "FILE")]
    pub stdout: Option<PathBuf>,

    /// Capture the program's stderr and write it to FILE when it ends (see --help).
    #[arg(long, value_name = "FILE")]
    pub stderr: Option<PathBuf>,

    /// Write a JSON report: one line on stdout, or pretty-printed to FILE with --json=FILE.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    pub json: Option<PathBuf>,

    /// Containment backend.
    #[arg(long, value_name = "BACKEND", default_value = "auto",
          value_parser = engine_names::<Backend>(Backend::NAMES))]
    pub backend: Backend,

    /// Refuse to run (exit 125) when the backend cannot fully enforce the limits: no cgroup to
    /// hold escaped descendants, memory only by sampling, the process limit only by polling.
    #[arg(long)]
    pub strict: bool,

    /// Print nothing of pynisher's own except errors (no summary line).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print the limits at the start and, on a terminal, a live status line while it runs.
    #[arg(short, long)]
    pub verbose: bool,

    /// The program to run and its arguments (put them after --).
    #[arg(value_name = "PROGRAM", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn program_arguments_after_the_separator_are_kept_verbatim() {
        let cli =
            Cli::try_parse_from(["pynisher", "--wall-time", "1s", "--", "ls", "-l", "--json"])
                .unwrap();
        assert_eq!(cli.command, ["ls", "-l", "--json"]);
        assert_eq!(cli.json, None);
    }

    #[test]
    fn json_without_a_value_means_stdout_and_with_equals_a_file() {
        let cli = Cli::try_parse_from(["pynisher", "--json", "--", "true"]).unwrap();
        assert_eq!(cli.json, Some(PathBuf::from("-")));
        let cli = Cli::try_parse_from(["pynisher", "--json=r.json", "--", "true"]).unwrap();
        assert_eq!(cli.json, Some(PathBuf::from("r.json")));
    }

    #[test]
    fn a_mistyped_flag_is_an_error_not_the_program() {
        assert!(Cli::try_parse_from(["pynisher", "--wall-tim", "1s", "--", "true"]).is_err());
    }

    #[test]
    fn without_the_separator_flags_after_the_program_belong_to_it() {
        let cli = Cli::try_parse_from(["pynisher", "--quiet", "ls", "-l", "--quiet"]).unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.command, ["ls", "-l", "--quiet"]);
    }

    #[test]
    fn a_program_is_required() {
        assert!(Cli::try_parse_from(["pynisher", "--wall-time", "1s"]).is_err());
    }
}
