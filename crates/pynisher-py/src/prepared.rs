//! [`PreparedLimits`]: a dict of limits turned into the engine's [`Limits`] once, for an API
//! object that makes many calls under the same limits. Reading the dict on every call (13 keys,
//! each value converted and checked) took a refcount of every key and value: pages a caller that
//! has just forked copies again on each call.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use pynisher::Limits;

use crate::limits_from_dict;

/// Limits checked once (as `check_limits` does); `run_fork` takes one in place of the dict.
#[pyclass(module = "pynisher._core", frozen)]
pub(crate) struct PreparedLimits {
    limits: Limits,
    /// The dict it was made from (a copy), for pickling.
    source: Py<PyDict>,
}

#[pymethods]
impl PreparedLimits {
    /// Checks `limits` (raises `ValueError` naming the first bad parameter) and keeps them.
    #[new]
    fn new(limits: &Bound<'_, PyDict>) -> PyResult<Self> {
        Ok(PreparedLimits {
            limits: limits_from_dict(limits)?,
            source: limits.copy()?.unbind(),
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> (Bound<'py, PyType>, (Py<PyDict>,)) {
        (slf.get_type(), (slf.get().source.clone_ref(slf.py()),))
    }
}

/// The engine's limits from a dict of limits or a [`PreparedLimits`].
pub(crate) fn limits_of(limits: &Bound<'_, PyAny>) -> PyResult<Limits> {
    if let Ok(prepared) = limits.cast::<PreparedLimits>() {
        return Ok(prepared.get().limits.clone());
    }
    let dict = limits.cast::<PyDict>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err("limits must be a dict or a PreparedLimits")
    })?;
    limits_from_dict(dict)
}
