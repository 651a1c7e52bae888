//! The asynchronous-generator hooks and the loop's weak set of generators.
//!
//! While the loop runs, `sys.set_asyncgen_hooks` points at
//! `_asyncgen_firstiter_hook` and `_asyncgen_finalizer_hook` (installed and
//! restored by `run_forever`, see `turn.rs`). The finalizer is called by the
//! interpreter during garbage collection or frame teardown, in any thread:
//! it only schedules the generator's `aclose()` thread-safely, and does
//! nothing heavy (no stack walk).
//!
//! `firstiter` is called for every asynchronous generator the first time it
//! is iterated while the loop runs, which makes it a hot path (one call per
//! `async for` over a fresh generator). asyncio keeps a `weakref.WeakSet`,
//! paying for a weak reference with a callback and a set insertion each time.
//!
//! Here each generator gets a plain weak reference without callback and is
//! appended to a vector. Dead references are swept lazily, when the vector has
//! doubled since the last sweep, so the amortized cost per generator stays
//! O(1) and no Python code ever runs to keep the set current. The finalizer
//! does not need to remove its generator either: the interpreter clears weak
//! references to an object before calling its finalizer.

use std::sync::atomic::Ordering::Relaxed;

use pyo3::exceptions::PyResourceWarning;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyWeakrefReference};
use pyo3::PyTypeInfo;

use super::Loop;
use crate::py_refs;

const MIN_SWEEP: usize = 64;

/// Weak references to the generators first iterated on the loop.
pub struct AsyncGens {
    refs: Vec<Py<PyWeakrefReference>>,
    /// Sweep dead references when `refs` reaches this length.
    sweep_at: usize,
}

impl Default for AsyncGens {
    fn default() -> Self {
        Self {
            refs: Vec::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

fn is_alive(py: Python<'_>, r: &Py<PyWeakrefReference>) -> bool {
    r.bind(py).upgrade().is_some()
}

impl AsyncGens {
    /// Tracks a generator; dead references found by a sweep go to `dead`.
    pub fn add(&mut self, py: Python<'_>, r: Py<PyWeakrefReference>, dead: &mut Vec<Py<PyAny>>) {
        if self.refs.len() >= self.sweep_at {
            let (live, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.refs)
                .into_iter()
                .partition(|r| is_alive(py, r));
            self.refs = live;
            dead.extend(gone.into_iter().map(Py::into_any));
            self.sweep_at = (self.refs.len() * 2).max(MIN_SWEEP);
        }
        self.refs.push(r);
    }

    /// Number of generators still alive.
    pub fn live_count(&self, py: Python<'_>) -> usize {
        self.refs.iter().filter(|r| is_alive(py, r)).count()
    }

    /// Removes every reference; returns the generators still alive (strong
    /// references, in first-iteration order) and puts the rest in `dead`.
    pub fn take_live(&mut self, py: Python<'_>, dead: &mut Vec<Py<PyAny>>) -> Vec<Py<PyAny>> {
        self.sweep_at = MIN_SWEEP;
        let mut live = Vec::new();
        for r in std::mem::take(&mut self.refs) {
            if let Some(obj) = r.bind(py).upgrade() {
                live.push(obj.unbind());
            }
            dead.push(r.into_any());
        }
        live
    }
}

impl Loop {
    pub(super) fn asyncgen_firstiter(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.asyncgens_shutdown_called.load(Relaxed) {
            let message = format!(
                "asynchronous generator {} was scheduled after loop.shutdown_asyncgens() call",
                agen.repr()?
            );
            let kwargs = PyDict::new(py);
            kwargs.set_item("source", slf)?;
            py_refs::warn(py)?
                .call((message, PyResourceWarning::type_object(py)), Some(&kwargs))?;
        }
        let weak = PyWeakrefReference::new(agen)?.unbind();
        let mut dead = Vec::new();
        this.state
            .with(py, |s| s.asyncgens.add(py, weak, &mut dead));
        drop(dead);
        Ok(())
    }

    pub(super) fn asyncgen_finalizer(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if slf.get().is_closed_now() {
            return Ok(());
        }
        let aclose = agen.call_method0(intern!(py, "aclose"))?;
        let create_task = slf.getattr(intern!(py, "create_task"))?;
        Self::call_soon_threadsafe_internal(slf, create_task, PyTuple::new(py, [aclose])?)?;
        Ok(())
    }

    pub(super) fn take_asyncgens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut dead = Vec::new();
        let live = self
            .state
            .with(py, |s| s.asyncgens.take_live(py, &mut dead));
        drop(dead);
        PyList::new(py, live)
    }
}
