//! Children forked ahead of their calls, for the forkserver's warm path: [`park_fork`] forks a
//! copy of this interpreter into a fresh container, where it waits; [`ParkedCall::release`] gives
//! it a call's limits and starts it, as [`crate::start_fork`] would have.

use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use pynisher::{Observer, Parked};

use crate::{engine_error, limits_from_dict, EngineError, StartedCall, Waiter};

/// In the forked child, first thing before any other Python API use, as CPython's own os.fork
/// does (the forking thread held the interpreter lock, so it is this thread's after the fork).
pub(crate) fn after_fork_in_child() {
    // SAFETY: only ever called in a child forked by `fork_wrapped`, before any other Python API
    // use (see above).
    unsafe { ffi::PyOS_AfterFork_Child() };
}

/// In the forked child: calls `child()`, which must return `bytes`.
pub(crate) fn call_in_child(child: &Bound<'_, PyAny>) -> Result<Vec<u8>, String> {
    let encoded = child
        .call0()
        .map_err(|err| format!("the child's Python code failed: {err}"))?;
    let bytes = encoded
        .cast::<PyBytes>()
        .map_err(|_| "the child's Python code did not return bytes".to_string())?;
    Ok(bytes.as_bytes().to_vec())
}

/// Runs `fork` (an engine call that forks a child whose first Python step is
/// [`after_fork_in_child`]), wrapped exactly as `os.fork()` wraps a fork (`PyOS_BeforeFork` /
/// `PyOS_AfterFork_Parent`, so `os.register_at_fork` hooks run). `_py` proves the interpreter
/// lock is held.
pub(crate) fn fork_wrapped<R>(_py: Python<'_>, fork: impl FnOnce() -> R) -> R {
    // SAFETY: we hold the interpreter lock (`_py`), as os.fork requires for PyOS_BeforeFork; it
    // is paired with AfterFork_Parent below, and the child calls AfterFork_Child first.
    unsafe { ffi::PyOS_BeforeFork() };
    let forked = fork();
    // SAFETY: parent side of the PyOS_BeforeFork above, still holding the interpreter lock.
    unsafe { ffi::PyOS_AfterFork_Parent() };
    forked
}

/// A child forked by [`park_fork`], waiting in its own container for [`ParkedCall::release`].
/// Dropping it (or `discard()`) kills and reaps it and removes its container.
#[pyclass(module = "pynisher._core", frozen)]
pub(crate) struct ParkedCall {
    pid: i32,
    parked: Mutex<Option<Parked>>,
}

impl ParkedCall {
    fn take(&self) -> PyResult<Option<Parked>> {
        Ok(self
            .parked
            .lock()
            .map_err(|_| EngineError::new_err("the parked call's state is poisoned"))?
            .take())
    }
}

#[pymethods]
impl ParkedCall {
    /// The parked child's pid.
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the child can take a call under `limits` (all but the per-call limits as it was
    /// parked with); False once released or discarded.
    fn fits(&self, limits: &Bound<'_, PyDict>) -> PyResult<bool> {
        let limits = limits_from_dict(limits)?;
        let parked = self
            .parked
            .lock()
            .map_err(|_| EngineError::new_err("the parked call's state is poisoned"))?;
        Ok(parked.as_ref().is_some_and(|p| p.fits(&limits)))
    }

    /// Starts the call under `limits` (its wall clock starts now); the child runs the callable
    /// it was parked with. Raises `ValueError` for limits it does not fit, `EngineError` if it
    /// was released or discarded already; on any error the child is gone.
    fn release(&self, limits: &Bound<'_, PyDict>) -> PyResult<StartedCall> {
        let limits = limits_from_dict(limits)?;
        let parked = self
            .take()?
            .ok_or_else(|| EngineError::new_err("this parked call was released or discarded"))?;
        let running = parked.release(&limits).map_err(engine_error)?;
        let waiter: Waiter =
            Box::new(move |observer: &mut dyn Observer| running.wait_result_first(observer));
        Ok(StartedCall::new(self.pid, waiter))
    }

    /// Kills and reaps the child and removes its container now (what dropping it does).
    fn discard(&self) -> PyResult<()> {
        drop(self.take()?);
        Ok(())
    }
}

/// Forks `child()` (which returns `bytes`, as for [`crate::start_fork`]) into a fresh container
/// made for `limits`, and parks it before it runs anything of the call: see [`ParkedCall`]. The
/// interpreter's after-fork reset (`PyOS_AfterFork_Child`, with the `os.register_at_fork`
/// hooks) and then `prepare()`, if given (its exceptions are ignored), run while it is parked,
/// in its container, off the call's path.
#[pyfunction]
#[pyo3(signature = (child, limits, prepare=None))]
pub(crate) fn park_fork(
    child: Bound<'_, PyAny>,
    limits: &Bound<'_, PyDict>,
    prepare: Option<Bound<'_, PyAny>>,
) -> PyResult<ParkedCall> {
    let limits = limits_from_dict(limits)?;
    let prepare = move || {
        after_fork_in_child();
        if let Some(prepare) = prepare {
            // Only work done ahead of the call: a failure shows again when the call runs.
            let _ = prepare.call0();
        }
    };
    // SAFETY: as for `start_fork`: the child copies only this thread; Python's own locks are
    // reset by PyOS_AfterFork_Child; locks held by other threads are the fork context's
    // documented hazard.
    let parked = fork_wrapped(child.py(), || unsafe {
        limits.park_closure_bytes(prepare, || call_in_child(&child))
    })
    .map_err(engine_error)?;
    Ok(ParkedCall {
        pid: parked.pid(),
        parked: Mutex::new(Some(parked)),
    })
}
