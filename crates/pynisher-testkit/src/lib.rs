//! The harness of the workspace's test files whose tests depend on what the machine has (cgroup
//! backends, root, a program, a terminal): `libtest-mimic`, so that a test whose needs are not met
//! is reported `ignored` with the reason, never counted as passed without running. Test files that
//! use it set `harness = false` and build their tests in `main`.
//!
//! ```text
//! test [needs a cgroup backend: none here] an_escaped_setsid_grandchild_... ... ignored
//! ```

use libtest_mimic::{Arguments, Failed, Trial};

/// The tests of one file, built in `main` and run with the standard harness's flags
/// (`--exact`, `--ignored`, `--nocapture`, filters).
#[derive(Default)]
pub struct Trials(Vec<Trial>);

impl Trials {
    /// A test that runs on every machine.
    pub fn test(mut self, name: &'static str, test: fn()) -> Self {
        self.0.push(Trial::test(name, runner(test)));
        self
    }

    /// A test that needs something of the machine: `lacking` is `Some(why)` when it is missing,
    /// and the test is then reported ignored, with `why` shown beside its name.
    pub fn needs(mut self, lacking: Option<String>, name: &'static str, test: fn()) -> Self {
        let trial = Trial::test(name, runner(test));
        self.0.push(match lacking {
            Some(why) => trial.with_kind(why).with_ignored_flag(true),
            None => trial,
        });
        self
    }

    /// A test that cannot even be built here (a cargo feature is off): listed as ignored, `why`
    /// beside its name.
    pub fn unavailable(mut self, name: &'static str, why: &str) -> Self {
        self.0.push(
            Trial::test(name, || Ok(()))
                .with_kind(why.to_string())
                .with_ignored_flag(true),
        );
        self
    }

    /// A helper that another test of the file runs in a fresh process
    /// (`--exact NAME --ignored`); ignored in a normal run.
    pub fn helper(mut self, name: &'static str, test: fn()) -> Self {
        self.0.push(
            Trial::test(name, runner(test))
                .with_kind("helper, run by another test")
                .with_ignored_flag(true),
        );
        self
    }

    /// Runs the tests selected by the command line and exits with the harness's status.
    pub fn run(self) -> ! {
        libtest_mimic::run(&Arguments::from_args(), self.0).exit()
    }

    /// Like [`Trials::run`], one test at a time, for tests that count this process's threads,
    /// descriptors or children.
    pub fn run_one_at_a_time(self) -> ! {
        let mut args = Arguments::from_args();
        args.test_threads = Some(1);
        libtest_mimic::run(&args, self.0).exit()
    }
}

fn runner(test: fn()) -> impl FnOnce() -> Result<(), Failed> + Send + 'static {
    move || {
        std::panic::catch_unwind(test).map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the test panicked".into());
            Failed::from(message)
        })
    }
}

/// `Some(why)` when `found` is empty: the test needs one of `what`; `here` says what the machine has.
pub fn lacking_if_empty<T, H: std::fmt::Debug>(found: &[T], what: &str, here: H) -> Option<String> {
    found
        .is_empty()
        .then(|| format!("needs {what}; this machine has {here:?}"))
}

/// `Some(why)` when one of `programs` is not on `PATH`.
pub fn lacking_programs(programs: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&path).any(|dir| dir.join(p).is_file()))
        .collect();
    (!missing.is_empty()).then(|| format!("needs {} on PATH", missing.join(", ")))
}

/// The command that runs helper `name` of this test binary (see [`Trials::helper`]) alone, in a
/// fresh process, on its main thread, its output not captured; spawn it, or take its output or
/// status.
pub fn helper_process(name: &str) -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::current_exe().expect("the test binary's own path"));
    command.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}
