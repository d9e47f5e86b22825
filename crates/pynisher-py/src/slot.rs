//! [`ChildSlot`]: where a call's child pid is recorded when it starts, without calling into
//! Python. In the fork context the caller's `on_start` runs right after the fork, while the child
//! shares the caller's pages: a Python callback there (its frame, a bound method, a tuple, an
//! attribute store) copied about ten pages per call. A slot passed as `on_start` is written by
//! the binding directly (one word); it is callable too, so every start method can fill it.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

/// The pid of the most recent call started with this slot, whether that call has returned, and
/// how many calls were started with it, in one word so that a reader sees them together: the pid
/// in the high 32 bits, the count (wrapping) in bits 1-31, "ended" in bit 0.
#[pyclass(module = "pynisher._core", frozen)]
pub(crate) struct ChildSlot {
    state: AtomicU64,
}

const ENDED: u64 = 1;
const COUNT_MASK: u64 = 0xffff_fffe;

impl ChildSlot {
    /// A call started with this slot: its child is `pid`.
    pub(crate) fn record(&self, pid: i32) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                // Count 0 means "never started": skipped when the count wraps.
                let count = match (s & COUNT_MASK).wrapping_add(2) & COUNT_MASK {
                    0 => 2,
                    n => n,
                };
                Some(u64::from(pid as u32) << 32 | count)
            });
    }
}

#[pymethods]
impl ChildSlot {
    /// An empty slot, or one in the state `state` (as `__reduce__` gives it).
    #[new]
    #[pyo3(signature = (state=0))]
    fn new(state: u64) -> Self {
        ChildSlot {
            state: AtomicU64::new(state),
        }
    }

    /// Records that a call's child `pid` started (what `on_start(pid)` means).
    fn __call__(&self, pid: i32) {
        self.record(pid);
    }

    /// Records that the most recent call has returned (its child is gone).
    fn end(&self) {
        self.state.fetch_or(ENDED, Ordering::AcqRel);
    }

    /// `(count, pid, ended)` of the most recent call, or None before the first.
    fn get(&self) -> Option<(u32, i32, bool)> {
        let s = self.state.load(Ordering::Acquire);
        let count = ((s & COUNT_MASK) >> 1) as u32;
        (count != 0).then_some((count, (s >> 32) as u32 as i32, s & ENDED != 0))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> (Bound<'py, pyo3::types::PyType>, (u64,)) {
        (slf.get_type(), (slf.get().state.load(Ordering::Acquire),))
    }
}
