//! The methods of the two handle kinds beyond `Handle`'s own: a
//! `TimerHandle`'s deadline, ordering and hash (as asyncio's), and a
//! `_ThreadSafeHandle`'s waiting `cancel()`.

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::PyFloat;

use super::{Handle, ThreadSafeHandle, TimerHandle};

impl TimerHandle {
    fn when_object<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        let py = slf.py();
        let base = slf.as_super().get();
        match base
            .inner
            .with(py, |i| i.when_obj.as_ref().map(|w| w.clone_ref(py)))
        {
            Some(obj) => obj.into_bound(py),
            None => PyFloat::new(py, base.when_f64()).into_any(),
        }
    }
}

#[pymethods]
impl TimerHandle {
    /// The absolute time (in `loop.time()` terms) the callback is due.
    fn when<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        Self::when_object(slf)
    }

    /// Cancel the callback; a cancelled callback is not run.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super();
        let handle = base.get();
        if !handle.is_cancelled() && handle.is_scheduled() {
            // Still in the loop's heap: counted for its compaction.
            handle.link.get().note_cancelled_timer();
        }
        Handle::cancel_handle(base)
    }

    #[getter]
    fn _when<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        Self::when_object(slf)
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().is_scheduled()
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        Self::when_object(slf).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.as_super().get(), other.as_super().get());
        let equal = || -> PyResult<bool> {
            if a.when_f64() != b.when_f64() || a.is_cancelled() != b.is_cancelled() {
                return Ok(false);
            }
            let (cb_a, args_a) = (Handle::_callback(a, py), Handle::_args(a, py));
            let (cb_b, args_b) = (Handle::_callback(b, py), Handle::_args(b, py));
            Ok(cb_a.into_pyobject(py)?.eq(cb_b)? && args_a.into_pyobject(py)?.eq(args_b)?)
        };
        let result = match op {
            CompareOp::Lt => a.when_f64() < b.when_f64(),
            CompareOp::Gt => a.when_f64() > b.when_f64(),
            CompareOp::Le => a.when_f64() < b.when_f64() || equal()?,
            CompareOp::Ge => a.when_f64() > b.when_f64() || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}

#[pymethods]
impl ThreadSafeHandle {
    /// Cancel the callback; if it is running on another thread, wait for it
    /// to return first.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super();
        Handle::wait_until_not_running_elsewhere(base);
        Handle::cancel_handle(base)
    }

    /// Whether the callback was cancelled (once it is not running on
    /// another thread).
    fn cancelled(slf: &Bound<'_, Self>) -> bool {
        let base = slf.as_super();
        Handle::wait_until_not_running_elsewhere(base);
        base.get().is_cancelled()
    }
}
