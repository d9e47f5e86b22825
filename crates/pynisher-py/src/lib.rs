//! `pynisher._core`: the Python binding of the pynisher engine.
//!
//! Thin on purpose: it turns a dict of limits into [`pynisher::Limits`], starts a call (a forked
//! Python callable, or a program that sends one result frame), waits for it with the interpreter
//! lock released, and hands the [`pynisher::Outcome`] back as a plain dict. What a status means to
//! a user (which exception, which attribute) is decided in Python (`pynisher._run` and the API
//! modules), never here.

mod finish;
mod outcome;
mod prepared;
mod slot;
mod wake;
mod warm;

use std::os::fd::{AsFd, OwnedFd};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use outcome::outcome_dict;
use wake::SignalWake;

use pynisher::{
    Backend, Behind, Command, CpuMeasure, Limits, MemoryLimitKind, MemoryMeasure, Observer,
    Outcome, Stdin,
};

create_exception!(
    _core,
    EngineError,
    pyo3::exceptions::PyException,
    "The engine itself failed (a system call, a cgroup file, an unavailable backend); the \
     call's processes were not started or have been cleaned up."
);

create_exception!(
    _core,
    NotEnforceableError,
    EngineError,
    "Strict mode: the backend cannot fully enforce the call's limits; nothing was started. \
     `args[1]` lists the names of what would be weaker."
);

/// How often the wait loop checks for what cannot wake it (Ctrl-C while another owner holds
/// Python's wake-up descriptor; a cancel socket beside the signal pipe).
const OBSERVE_INTERVAL: Duration = Duration::from_millis(20);

/// Bumped by [`cancel_all`]: every call waiting when it changes is cancelled.
static CANCEL_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The eventfd that [`cancel_all`] makes readable, for the calls waiting now (a fresh one for
/// later calls). Only touched with the interpreter lock held, so no fork copies it locked.
static CANCEL_WAKE: std::sync::Mutex<Option<Arc<OwnedFd>>> = std::sync::Mutex::new(None);

/// The eventfd waiting calls watch for [`cancel_all`] (None if one cannot be made: the call
/// then polls).
fn cancel_wake() -> Option<Arc<OwnedFd>> {
    let mut slot = CANCEL_WAKE.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).ok()?;
        *slot = Some(Arc::new(fd));
    }
    slot.clone()
}

/// The keys `limits` may carry; anything else is a programming error in the Python layer.
const LIMIT_KEYS: [&str; 13] = [
    "wall_time",
    "cpu_time",
    "memory",
    "memory_kind",
    "max_processes",
    "grace_period",
    "wall_signal",
    "cpu_signal",
    "capture_output",
    "output_limit",
    "backend",
    "strict",
    "keep_descendants",
];

fn engine_error(err: pynisher::Error) -> PyErr {
    match err {
        pynisher::Error::InvalidLimit { .. } => PyValueError::new_err(err.to_string()),
        pynisher::Error::NotEnforceable { ref weaknesses, .. } => {
            let names: Vec<&'static str> = weaknesses.iter().map(|w| w.name()).collect();
            NotEnforceableError::new_err((err.to_string(), names))
        }
        other => EngineError::new_err(other.chain().to_string()),
    }
}

fn invalid(param: &str, value: &Bound<'_, PyAny>, reason: &str) -> PyErr {
    let shown = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_string());
    PyValueError::new_err(format!("invalid value for {param}: {shown} ({reason})"))
}

/// One of an engine enum's names (`"cgroup1"`, `"resident"`, ...), the message listing them all.
fn named<T>(param: &str, value: &Bound<'_, PyAny>) -> PyResult<T>
where
    T: std::str::FromStr<Err = pynisher::UnknownName>,
{
    let name: String = value
        .extract()
        .map_err(|_| invalid(param, value, "must be a string"))?;
    name.parse().map_err(|err: pynisher::UnknownName| {
        let expected: Vec<String> = err.expected.iter().map(|n| format!("'{n}'")).collect();
        invalid(param, value, &format!("one of {}", expected.join(", ")))
    })
}

fn seconds(param: &'static str, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let secs: f64 = value
        .extract()
        .map_err(|_| invalid(param, value, "must be a number of seconds"))?;
    pynisher::units::duration_from_secs_f64(param, secs).map_err(engine_error)
}

fn count(param: &'static str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(invalid(param, value, "must be an integer, not a bool"));
    }
    let n: i128 = value
        .extract()
        .map_err(|_| invalid(param, value, "must be an integer"))?;
    u64::try_from(n).map_err(|_| invalid(param, value, "must be between 1 and 2**64-1"))
}

fn signal(param: &'static str, value: &Bound<'_, PyAny>) -> PyResult<i32> {
    // `signal.Signals` members are ints, so they extract as such.
    let n: i64 = value
        .extract()
        .map_err(|_| invalid(param, value, "must be a signal number"))?;
    i32::try_from(n).map_err(|_| invalid(param, value, "not a signal number"))
}

/// Builds [`Limits`] from the Python layer's dict. `None` values mean "not set".
fn limits_from_dict(dict: &Bound<'_, PyDict>) -> PyResult<Limits> {
    let mut limits = Limits::new();
    for (key, value) in dict.iter() {
        let key: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err("limit names must be strings"))?;
        if !LIMIT_KEYS.contains(&key.as_str()) {
            return Err(PyValueError::new_err(format!(
                "unknown limit {key:?}; known: {}",
                LIMIT_KEYS.join(", ")
            )));
        }
        if value.is_none() {
            continue;
        }
        limits = match key.as_str() {
            "wall_time" => limits.wall_time(seconds("wall_time", &value)?),
            "cpu_time" => limits.cpu_time(seconds("cpu_time", &value)?),
            "memory" => limits.memory(count("memory", &value)?),
            "max_processes" => limits.max_processes(count("max_processes", &value)?),
            "grace_period" => {
                let secs: f64 = value
                    .extract()
                    .map_err(|_| invalid("grace_period", &value, "must be a number of seconds"))?;
                if secs == 0.0 {
                    limits
                } else if secs.is_nan() || secs < 0.0 {
                    return Err(invalid("grace_period", &value, "must be zero or more"));
                } else {
                    let grace = pynisher::units::duration_from_secs_f64("grace_period", secs)
                        .map_err(engine_error)?;
                    limits.grace_period(grace)
                }
            }
            "wall_signal" => limits.wall_signal(signal("wall_signal", &value)?),
            "cpu_signal" => limits.cpu_signal(signal("cpu_signal", &value)?),
            "capture_output" => limits.capture_output(value.is_truthy()?),
            "strict" => limits.strict(value.is_truthy()?),
            "output_limit" => {
                let bytes = count("output_limit", &value)?;
                let bytes = usize::try_from(bytes)
                    .map_err(|_| invalid("output_limit", &value, "too large"))?;
                limits.output_limit(bytes)
            }
            "memory_kind" => limits.memory_kind(named("memory_kind", &value)?),
            "backend" => limits.backend(named("backend", &value)?),
            "keep_descendants" => limits.keep_descendants(value.is_truthy()?),
            _ => unreachable!("checked against LIMIT_KEYS"),
        };
    }
    limits.validate().map_err(engine_error)?;
    Ok(limits)
}

/// Watches the caller while the engine waits: Ctrl-C (Python's pending signals) and, for the
/// forkserver's supervisors, the caller's socket (readable = the caller hung up or cancelled).
/// Both wake the engine's wait at once (`Observer::wake_fd`); nothing polls on a timer unless
/// both must be watched, or another owner holds Python's wake-up descriptor.
struct CallerWatch {
    /// Run Python's signal handlers when woken (main thread only; elsewhere it is a no-op).
    check_signals: bool,
    /// Python's wake-up descriptor, pointed at our pipe for this wait (main thread).
    signal_wake: Option<SignalWake>,
    /// The eventfd [`cancel_all`] makes readable (worker threads' calls watch it).
    cancel_all_wake: Option<Arc<OwnedFd>>,
    /// A descriptor whose readability means "cancel".
    cancel_fd: Option<RawFd>,
    /// The exception a signal handler raised (KeyboardInterrupt), re-raised after the wait.
    raised: Option<PyErr>,
    /// [`CANCEL_GENERATION`] when the wait began.
    generation: u64,
    /// Whether [`cancel_all`] ended the call (then the wait raises KeyboardInterrupt).
    cancelled_by_all: bool,
}

impl CallerWatch {
    fn cancel_fd_ready(&self) -> bool {
        let Some(fd) = self.cancel_fd else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd on our stack, count 1, zero timeout; a closed or invalid
        // descriptor only yields POLLNVAL in `revents`.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents != 0
    }
}

impl Observer for CallerWatch {
    fn interval(&self) -> Option<Duration> {
        let signals_unwatched = self.check_signals && self.signal_wake.is_none();
        let cancel_unwatched = self.cancel_fd.is_some() && self.signal_wake.is_some();
        // A worker thread's call watches the cancel-all eventfd; only if none could be made does it
        // poll. (A main-thread call is cancelled by the Ctrl-C handler's exception itself.)
        let cancel_all_unwatched = self.cancel_all_wake.is_none()
            && self.signal_wake.is_none()
            && self.cancel_fd.is_none();
        (signals_unwatched || cancel_unwatched || cancel_all_unwatched).then_some(OBSERVE_INTERVAL)
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.signal_wake, self.cancel_fd) {
            (Some(wake), _) => Some(wake.fd()),
            // SAFETY: the cancel descriptor is the caller's socket, open for the whole wait (the
            // forkserver closes it only after `wait` returned).
            (None, Some(fd)) => Some(unsafe { BorrowedFd::borrow_raw(fd) }),
            (None, None) => self.cancel_all_wake.as_ref().map(|fd| fd.as_fd()),
        }
    }

    fn should_cancel(&mut self) -> bool {
        if let Some(wake) = &self.signal_wake {
            wake.consume();
        }
        if self.raised.is_some() || self.cancel_fd_ready() {
            return true;
        }
        if CANCEL_GENERATION.load(Ordering::Relaxed) != self.generation {
            self.cancelled_by_all = true;
            return true;
        }
        if self.check_signals {
            if let Err(err) = Python::attach(|py| py.check_signals()) {
                self.raised = Some(err);
                return true;
            }
        }
        false
    }
}

/// What waits for a started call: `|observer| running.wait_observed(observer)`.
type Outcome8 = Result<Outcome<Vec<u8>>, pynisher::Error>;

/// Waits with the interpreter lock released, then re-raises a KeyboardInterrupt (or any exception
/// a signal handler raised) once the call's processes are gone.
fn wait_released<W>(py: Python<'_>, wait: W, cancel_fd: Option<RawFd>) -> PyResult<Outcome<Vec<u8>>>
where
    W: FnOnce(&mut dyn Observer) -> Outcome8 + Send,
{
    // rustix issues the gettid system call itself: glibc's `gettid` wrapper only exists from 2.30,
    // and the manylinux2014 wheels must load on glibc 2.17.
    let on_main_thread = rustix::thread::gettid() == rustix::process::getpid();
    let signal_wake = on_main_thread.then(|| SignalWake::install(py)).flatten();
    let mut watch = CallerWatch {
        check_signals: on_main_thread,
        signal_wake,
        cancel_all_wake: cancel_wake(),
        cancel_fd,
        raised: None,
        generation: CANCEL_GENERATION.load(Ordering::Relaxed),
        cancelled_by_all: false,
    };
    if let Some(wake) = &watch.signal_wake {
        // A signal that arrived before our pipe was installed left no byte in it: run its
        // handler now, and let the engine's first look cancel the call if it raised.
        if let Err(err) = py.check_signals() {
            watch.raised = Some(err);
            wake.poke();
        }
    }
    let watch_ref = &mut watch;
    let result = py.detach(move || wait(watch_ref));
    if let Some(wake) = watch.signal_wake.take() {
        wake.restore(py);
    }
    if let Some(err) = watch.raised.take() {
        return Err(err);
    }
    if watch.cancelled_by_all && result.is_ok() {
        return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(
            "the call was cancelled by Ctrl-C in the main thread",
        ));
    }
    result.map_err(engine_error)
}

/// `on_start(pid)`; a [`slot::ChildSlot`] is written without a call into Python.
fn notify_start(on_start: Option<&Bound<'_, PyAny>>, pid: i32) -> PyResult<()> {
    match on_start {
        Some(on_start) => match on_start.cast::<slot::ChildSlot>() {
            Ok(slot) => {
                slot.get().record(pid);
                Ok(())
            }
            Err(_) => on_start.call1((pid,)).map(drop),
        },
        None => Ok(()),
    }
}

/// Runs `child()` in a forked copy of this interpreter under `limits` and waits for it.
///
/// `child` runs only in the forked process; it must return `bytes` (the encoded result) — an
/// exception it lets escape becomes status `result_undecodable` with the exception's text. The fork
/// is wrapped exactly as `os.fork()` wraps it (`PyOS_BeforeFork` / `PyOS_AfterFork_*`, so
/// `os.register_at_fork` hooks run). While waiting, the interpreter lock is released; Ctrl-C
/// cancels the call (its processes are killed and reaped) and then raises `KeyboardInterrupt`. When
/// `cancel_fd` is given, the call is also cancelled as soon as that descriptor becomes readable
/// or hangs up. `on_start(pid)` is called once the child runs (the pid is also its process group);
/// if it raises, the call is killed and the exception propagates. `limits`: a dict of limits or
/// a [`prepared::PreparedLimits`] made from one.
#[pyfunction]
#[pyo3(signature = (child, limits, *, cancel_fd=None, on_start=None))]
fn run_fork<'py>(
    py: Python<'py>,
    child: Bound<'py, PyAny>,
    limits: &Bound<'py, PyAny>,
    cancel_fd: Option<RawFd>,
    on_start: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let limits = prepared::limits_of(limits)?;
    let (pid, waiter) = fork_child(&child, &limits)?;
    // On error `waiter` is dropped unwaited, which kills and reaps the call.
    notify_start(on_start.as_ref(), pid)?;
    // The child's exit (its teardown) overlaps the building of the outcome dict; it is waited
    // for (interpreter lock released) before the call returns, so no child of ours outlives it.
    let mut behind = Behind::none();
    let left = &mut behind;
    let waited = wait_released(
        py,
        move |observer: &mut dyn Observer| {
            waiter(observer).map(|(outcome, rest)| {
                *left = rest;
                outcome
            })
        },
        cancel_fd,
    );
    let dict = waited.and_then(|outcome| outcome_dict(py, &outcome, pid));
    if behind.is_pending() {
        py.detach(move || behind.finish());
    }
    dict
}

/// Forks `child()` under `limits`, wrapped as `os.fork()` wraps a fork (see [`run_fork`]);
/// returns the child's pid and what waits for it.
fn fork_child(child: &Bound<'_, PyAny>, limits: &Limits) -> PyResult<(i32, Waiter)> {
    // SAFETY: the child copies only this thread. Python's own locks are reset by
    // PyOS_AfterFork_Child; like os.fork, we cannot vouch for locks held by other threads of the
    // caller (user mutexes, C libraries), which is the documented hazard of the fork context.
    let started = warm::fork_wrapped(child.py(), || unsafe {
        limits.spawn_closure_bytes(|| {
            warm::after_fork_in_child();
            warm::call_in_child(child)
        })
    });
    let running = started.map_err(engine_error)?;
    let pid = running.pid();
    let waiter: Waiter =
        Box::new(move |observer: &mut dyn Observer| running.wait_result_first(observer));
    Ok((pid, waiter))
}

/// The waiting half of a started call (the engine's `Running`), boxed so that it can be kept in
/// a Python object and waited for from any thread. It gives a completed closure's outcome at its
/// result, with the exit left [`Behind`] (`Running::wait_result_first`).
type Waiter = Box<
    dyn FnOnce(&mut dyn Observer) -> Result<(Outcome<Vec<u8>>, Behind), pynisher::Error> + Send,
>;

/// A [`Waiter`] that also waits for what was left behind (the fork context: its caller stays
/// single-threaded, so nothing can wait for that later on another thread).
fn wait_whole(waiter: Waiter) -> impl FnOnce(&mut dyn Observer) -> Outcome8 + Send {
    move |observer: &mut dyn Observer| {
        waiter(observer).map(|(outcome, behind)| {
            behind.finish();
            outcome
        })
    }
}

/// A call started by [`start_fork`]: wait for it with `wait()`. Dropping it unwaited kills and
/// reaps the call's processes.
#[pyclass(module = "pynisher._core", frozen)]
struct StartedCall {
    pid: i32,
    waiter: std::sync::Mutex<Option<Waiter>>,
}

impl StartedCall {
    fn new(pid: i32, waiter: Waiter) -> Self {
        StartedCall {
            pid,
            waiter: std::sync::Mutex::new(Some(waiter)),
        }
    }

    /// What waits for the call, taken out: a call is waited for once (by `wait` or by a
    /// forkserver finisher).
    pub(crate) fn take_waiter(&self) -> PyResult<Waiter> {
        self.waiter
            .lock()
            .map_err(|_| EngineError::new_err("the call's state is poisoned"))?
            .take()
            .ok_or_else(|| EngineError::new_err("this call was already waited for"))
    }
}

#[pymethods]
impl StartedCall {
    /// The pid of the call's child (also its process group).
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the call like [`run_fork`] does (interpreter lock released; `cancel_fd` cancels);
    /// returns the outcome dict. A call is waited for once.
    #[pyo3(signature = (*, cancel_fd=None))]
    fn wait<'py>(&self, py: Python<'py>, cancel_fd: Option<RawFd>) -> PyResult<Bound<'py, PyDict>> {
        let outcome = wait_released(py, wait_whole(self.take_waiter()?), cancel_fd)?;
        outcome_dict(py, &outcome, self.pid)
    }
}

/// Starts `child()` in a forked copy of this interpreter, like [`run_fork`], without waiting: the
/// forkserver starts calls from one thread and waits for each in another.
#[pyfunction]
fn start_fork<'py>(child: Bound<'py, PyAny>, limits: &Bound<'py, PyDict>) -> PyResult<StartedCall> {
    let limits = limits_from_dict(limits)?;
    let (pid, waiter) = fork_child(&child, &limits)?;
    Ok(StartedCall::new(pid, waiter))
}

/// Runs `argv` under `limits` as a program that sends one result frame on the descriptor named
/// by `PYNISHER_RESULT_FD`; `stdin` is written to its standard input. `env` entries are set (a
/// `None` value removes the variable). Waits like [`run_fork`], and calls `on_start` likewise.
#[pyfunction]
#[pyo3(signature = (argv, limits, *, stdin=None, env=None, cwd=None, cancel_fd=None, on_start=None))]
#[allow(clippy::too_many_arguments)]
fn run_command<'py>(
    py: Python<'py>,
    argv: Vec<std::ffi::OsString>,
    limits: &Bound<'py, PyDict>,
    stdin: Option<Vec<u8>>,
    env: Option<Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>>,
    cwd: Option<std::path::PathBuf>,
    cancel_fd: Option<RawFd>,
    on_start: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let limits = limits_from_dict(limits)?;
    let Some((program, args)) = argv.split_first() else {
        return Err(PyValueError::new_err("argv must not be empty"));
    };
    let mut command = Command::new(program).args(args);
    for (key, value) in env.into_iter().flatten() {
        command = match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if let Some(cwd) = cwd {
        command = command.current_dir(cwd);
    }
    command = command.stdin(match stdin {
        Some(bytes) => Stdin::Bytes(bytes),
        None => Stdin::Null,
    });
    // No Python runs in this child (it execs), so the lock can be released while starting too.
    let running = py
        .detach(|| limits.spawn_command_for_result(&command))
        .map_err(engine_error)?;
    let pid = running.pid();
    notify_start(on_start.as_ref(), pid)?;
    let outcome = wait_released(py, |observer| running.wait_observed(observer), cancel_fd)?;
    outcome_dict(py, &outcome, pid)
}

/// Whether this process has a child, living or a zombie, of any of its threads: a wait that
/// neither blocks nor reaps (Linux waits for the children of every thread of a process). A call's
/// child asks this before it looks for the function's processes to end; unlike `os.waitid`, no
/// exception is built for the common answer (a Python exception in a forked child touches, and so
/// copies, a dozen pages).
#[pyfunction]
fn has_children() -> bool {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let any_state = WaitIdOptions::EXITED
        | WaitIdOptions::STOPPED
        | WaitIdOptions::CONTINUED
        | WaitIdOptions::NOHANG
        | WaitIdOptions::NOWAIT;
    // Any error but "no child" (an interrupted call) answers yes: the caller then looks closer.
    !matches!(
        waitid(WaitId::All, any_state),
        Err(rustix::io::Errno::CHILD)
    )
}

/// Checks a dict of limits as a call would, without starting anything; raises `ValueError` naming
/// the first bad parameter.
#[pyfunction]
fn check_limits(limits: &Bound<'_, PyDict>) -> PyResult<()> {
    limits_from_dict(limits).map(drop)
}

/// The containment backends usable on this machine, strongest first (`"cgroup2"`, `"cgroup1"`,
/// `"none"`).
#[pyfunction]
fn available_backends() -> Vec<&'static str> {
    pynisher::available_backends()
        .into_iter()
        .map(Backend::name)
        .collect()
}

/// The native half of pynisher's Python package. Private: use `pynisher`.
/// Cancels every call of this process that is waiting now, in any thread: each ends with its
/// processes killed and reaped and raises KeyboardInterrupt (Python's SIGINT handler calls this).
#[pyfunction]
fn cancel_all() {
    CANCEL_GENERATION.fetch_add(1, Ordering::Relaxed);
    let waiting = CANCEL_WAKE.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(fd) = waiting {
        // Readable from now on: wakes every call that watches it; later calls get a fresh one.
        let _ = rustix::io::write(&*fd, &1u64.to_ne_bytes());
    }
}

/// Guards this process's calls from now on with `program args…` (started after the first call's
/// child runs): if this process dies mid-call, the guard kills the calls' whole trees and removes
/// their cgroup leaves (see the engine's `guard` module).
#[pyfunction]
fn install_guard(program: std::path::PathBuf, args: Vec<String>) {
    let program = args
        .into_iter()
        .fold(pynisher::guard::GuardProgram::new(program), |p, a| p.arg(a));
    pynisher::guard::install_deferred(program);
}

/// The pid of this process's guard (started if needed), or None without one.
#[pyfunction]
fn guard_pid(py: Python<'_>) -> Option<i32> {
    py.detach(pynisher::guard::guard_pid)
}

/// The guard program's body when the guard is a Python interpreter: becomes the guard (never
/// returns) when started as one.
#[pyfunction]
fn _guard_main() -> PyResult<()> {
    pynisher::guard::serve_if_requested();
    Err(pyo3::exceptions::PyRuntimeError::new_err(
        "not started as a pynisher guard",
    ))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_fork, m)?)?;
    m.add_function(wrap_pyfunction!(start_fork, m)?)?;
    m.add_class::<StartedCall>()?;
    m.add_class::<slot::ChildSlot>()?;
    m.add_class::<prepared::PreparedLimits>()?;
    m.add_function(wrap_pyfunction!(finish::send_outcome_when_done, m)?)?;
    m.add_function(wrap_pyfunction!(finish::decode_outcome, m)?)?;
    m.add_function(wrap_pyfunction!(warm::park_fork, m)?)?;
    m.add_class::<warm::ParkedCall>()?;
    m.add_function(wrap_pyfunction!(run_command, m)?)?;
    m.add_function(wrap_pyfunction!(check_limits, m)?)?;
    m.add_function(wrap_pyfunction!(has_children, m)?)?;
    m.add_function(wrap_pyfunction!(available_backends, m)?)?;
    m.add_function(wrap_pyfunction!(cancel_all, m)?)?;
    m.add_function(wrap_pyfunction!(install_guard, m)?)?;
    m.add_function(wrap_pyfunction!(guard_pid, m)?)?;
    m.add_function(wrap_pyfunction!(_guard_main, m)?)?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    m.add(
        "NotEnforceableError",
        m.py().get_type::<NotEnforceableError>(),
    )?;
    m.add("RESULT_FD_ENV", pynisher::transport::RESULT_FD_ENV)?;
    m.add("FRAME_VERSION", pynisher::transport::FRAME_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The engine's words, named once in the engine (`named_enum!`), for the Python side to check
    // and document against instead of spelling them again.
    m.add("BACKENDS", Backend::NAMES.to_vec())?;
    m.add("MEMORY_KINDS", MemoryLimitKind::NAMES.to_vec())?;
    m.add("CPU_MEASURES", CpuMeasure::NAMES.to_vec())?;
    m.add("MEMORY_MEASURES", MemoryMeasure::NAMES.to_vec())?;
    Ok(())
}
