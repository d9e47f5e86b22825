//! The engine's [`Outcome`] as the plain dict Python receives (picklable, so the forkserver can
//! forward it; its keys are `_core._RawOutcome`'s).
//!
//! Built on every call's path in a caller that has just forked, where every page written is a
//! page fault: the dict is a copy of a template that holds every key already (one table of the
//! right size, where inserting 29 keys into a new dict grew it three times), and the keys are
//! interned strings made once (a fresh string per key and call was a fresh allocation each).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use pynisher::{Captured, Outcome, Status};

/// Every key of the outcome dict, in the order they are set.
const KEYS: [&str; 29] = [
    "status",
    "message",
    "spawn_errno",
    "value",
    "exit_code",
    "signal",
    "soft_signal_sent",
    "killed",
    "wall_time",
    "cpu_user",
    "cpu_system",
    "cpu_measure",
    "peak_memory",
    "memory_measure",
    "memory_limit_kind",
    "oom_kills",
    "processes_refused",
    "leftovers_killed",
    "output_drain_timed_out",
    "stdout",
    "stdout_truncated",
    "stdout_total_bytes",
    "stderr",
    "stderr_truncated",
    "stderr_total_bytes",
    "backend",
    "guarantees",
    "weaknesses",
    "pid",
];

/// The keys of the `guarantees` dict.
const GUARANTEE_KEYS: [&str; 5] = [
    "all_descendants_contained",
    "exact_tree_cpu_time",
    "tree_memory_limit",
    "kernel_process_limit",
    "notes",
];

static TEMPLATE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static GUARANTEES_TEMPLATE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// A new dict with `keys` (interned, so the `intern!` keys set later find their slots by
/// identity), all None.
fn with_keys<'py>(
    py: Python<'py>,
    template: &PyOnceLock<Py<PyDict>>,
    keys: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let template = template.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let d = PyDict::new(py);
        for key in keys {
            d.set_item(PyString::intern(py, key), py.None())?;
        }
        Ok(d.unbind())
    })?;
    template.bind(py).copy()
}

fn status_message(status: &Status) -> Option<String> {
    match status {
        Status::Panicked { message } => Some(message.clone()),
        Status::SpawnFailed { message, .. } => Some(message.clone()),
        Status::ResultUndecodable { reason } => Some(reason.clone()),
        _ => None,
    }
}

fn put_captured(
    d: &Bound<'_, PyDict>,
    [stream, truncated, total]: [&Bound<'_, PyString>; 3],
    captured: Option<&Captured>,
) -> PyResult<()> {
    // Without a stream, `stream` keeps the template's None.
    match captured {
        Some(c) => {
            d.set_item(stream, PyBytes::new(d.py(), &c.bytes))?;
            d.set_item(truncated, c.truncated)?;
            d.set_item(total, c.total_bytes)?;
        }
        None => {
            d.set_item(truncated, false)?;
            d.set_item(total, 0)?;
        }
    }
    Ok(())
}

/// The outcome of the call whose child was `pid`, as a dict of plain values.
pub(crate) fn outcome_dict<'py>(
    py: Python<'py>,
    outcome: &Outcome<Vec<u8>>,
    pid: i32,
) -> PyResult<Bound<'py, PyDict>> {
    let d = with_keys(py, &TEMPLATE, &KEYS)?;
    d.set_item(intern!(py, "status"), outcome.status.name())?;
    if let Some(message) = status_message(&outcome.status) {
        d.set_item(intern!(py, "message"), message)?;
    }
    if let Status::SpawnFailed { errno, .. } = &outcome.status {
        d.set_item(intern!(py, "spawn_errno"), *errno)?;
    }
    if let Some(value) = outcome.value.as_deref() {
        d.set_item(intern!(py, "value"), PyBytes::new(py, value))?;
    }
    d.set_item(intern!(py, "exit_code"), outcome.exit_code)?;
    d.set_item(intern!(py, "signal"), outcome.signal)?;
    d.set_item(intern!(py, "soft_signal_sent"), outcome.soft_signal_sent)?;
    d.set_item(intern!(py, "killed"), outcome.killed)?;
    d.set_item(intern!(py, "wall_time"), outcome.wall_time.as_secs_f64())?;
    d.set_item(intern!(py, "cpu_user"), outcome.cpu_time.user.as_secs_f64())?;
    d.set_item(
        intern!(py, "cpu_system"),
        outcome.cpu_time.system.as_secs_f64(),
    )?;
    d.set_item(intern!(py, "cpu_measure"), outcome.cpu_measure.name())?;
    d.set_item(intern!(py, "peak_memory"), outcome.peak_memory)?;
    d.set_item(intern!(py, "memory_measure"), outcome.memory_measure.name())?;
    if let Some(kind) = outcome.memory_limit_kind {
        d.set_item(intern!(py, "memory_limit_kind"), kind.name())?;
    }
    d.set_item(intern!(py, "oom_kills"), outcome.oom_kills)?;
    d.set_item(intern!(py, "processes_refused"), outcome.processes_refused)?;
    d.set_item(intern!(py, "leftovers_killed"), outcome.leftovers_killed)?;
    d.set_item(
        intern!(py, "output_drain_timed_out"),
        outcome.output_drain_timed_out,
    )?;
    let stdout = [
        intern!(py, "stdout"),
        intern!(py, "stdout_truncated"),
        intern!(py, "stdout_total_bytes"),
    ];
    put_captured(&d, stdout, outcome.stdout.as_ref())?;
    let stderr = [
        intern!(py, "stderr"),
        intern!(py, "stderr_truncated"),
        intern!(py, "stderr_total_bytes"),
    ];
    put_captured(&d, stderr, outcome.stderr.as_ref())?;
    d.set_item(intern!(py, "backend"), outcome.containment.backend.name())?;
    let g = &outcome.containment.guarantees;
    let guarantees = with_keys(py, &GUARANTEES_TEMPLATE, &GUARANTEE_KEYS)?;
    guarantees.set_item(
        intern!(py, "all_descendants_contained"),
        g.all_descendants_contained,
    )?;
    guarantees.set_item(intern!(py, "exact_tree_cpu_time"), g.exact_tree_cpu_time)?;
    guarantees.set_item(intern!(py, "tree_memory_limit"), g.tree_memory_limit)?;
    guarantees.set_item(intern!(py, "kernel_process_limit"), g.kernel_process_limit)?;
    guarantees.set_item(intern!(py, "notes"), PyList::new(py, &g.notes)?)?;
    d.set_item(intern!(py, "guarantees"), guarantees)?;
    let weaknesses = PyDict::new(py);
    for w in &outcome.weaknesses {
        weaknesses.set_item(w.name(), w.describe())?;
    }
    d.set_item(intern!(py, "weaknesses"), weaknesses)?;
    d.set_item(intern!(py, "pid"), pid)?;
    Ok(d)
}
