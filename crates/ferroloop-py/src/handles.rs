//! `Handle` and `TimerHandle`: the objects `call_soon`, `call_later` and
//! `call_at` return, with asyncio's API (`cancel`, `cancelled`, `when`,
//! `get_context`) and asyncio's private attributes (`_callback`, `_args`,
//! `_cancelled`, `_loop`, `_source_traceback`, `_when`, `_scheduled`) for the
//! code that reads them.
//!
//! Both kinds share one native layout: a `TimerHandle` is a `Handle` whose
//! timer fields are used. The ready queue and the timer heap therefore hold
//! the same type and a timer moves to the ready queue without conversion.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyFloat, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::event_loop::Loop;
use crate::gil_cell::GilCell;
use crate::py_refs;

/// The parts of a handle that `cancel()` releases.
struct Callback {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
    /// The representation frozen at cancellation in debug mode.
    repr: Option<Py<PyAny>>,
    /// Where the handle was created (debug mode only).
    source_traceback: Option<Py<PyAny>>,
}

/// A scheduled callback.
#[pyclass(module = "ferroloop._core", name = "Handle", subclass, frozen, weakref)]
pub struct Handle {
    cb: GilCell<Callback>,
    /// The `contextvars.Context` the callback runs in.
    context: Py<PyAny>,
    /// The loop that created the handle (for `cancel` in debug mode and for
    /// timer accounting).
    loop_: Py<Loop>,
    cancelled: AtomicBool,
    /// Deadline of a timer as a float (NaN for plain handles).
    when: f64,
    /// The deadline object passed to `call_at` when it was not a float, so
    /// that `when()` returns it unchanged as asyncio does.
    when_obj: Option<Py<PyAny>>,
    /// Whether a timer is still in the loop's timer heap.
    scheduled: AtomicBool,
}

/// A callback scheduled for a point in time.
#[pyclass(module = "ferroloop._core", name = "TimerHandle", extends = Handle, frozen)]
pub struct TimerHandle;

/// A new reference to a copy of the current `contextvars` context.
fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: the GIL is held; PyContext_CopyCurrent returns a new reference
    // or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// Calls `callback(*args)` inside `context`, as `context.run(callback, *args)`.
fn call_in_context<'py>(
    py: Python<'py>,
    context: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<()> {
    let ctx = context.as_ptr();
    // SAFETY: `ctx` is a valid object pointer while `context` lives.
    if unsafe { ffi::PyContext_CheckExact(ctx) } == 0 {
        // Not a real Context: go through its `run` method, as asyncio does.
        let mut call_args = Vec::with_capacity(args.len() + 1);
        call_args.push(callback.clone());
        call_args.extend(args.iter());
        context.call_method1(intern!(py, "run"), PyTuple::new(py, call_args)?)?;
        return Ok(());
    }
    // SAFETY: `ctx` is a Context; entering it is balanced by the exit below.
    if unsafe { ffi::PyContext_Enter(ctx) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `args` is a tuple, so its item array holds `len` valid object
    // pointers that stay alive while `args` does; vectorcall borrows them.
    let result = unsafe {
        let tuple = args.as_ptr().cast::<ffi::PyTupleObject>();
        let items = (*tuple).ob_item.as_ptr();
        ffi::PyObject_Vectorcall(
            callback.as_ptr(),
            items,
            ffi::PyTuple_GET_SIZE(args.as_ptr()) as usize,
            std::ptr::null_mut(),
        )
    };
    // SAFETY: balances the PyContext_Enter above on the same thread; it does
    // not touch a pending exception.
    let exit_rc = unsafe { ffi::PyContext_Exit(ctx) };
    if result.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a non-NULL vectorcall result is a new reference we now own.
    drop(unsafe { Bound::from_owned_ptr(py, result) });
    if exit_rc < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// What a freshly created handle needs.
pub(crate) struct NewHandle<'py> {
    pub callback: Bound<'py, PyAny>,
    pub args: Bound<'py, PyTuple>,
    /// `None`: capture a copy of the current context.
    pub context: Option<Bound<'py, PyAny>>,
    /// Record the creation traceback (debug mode).
    pub traceback: bool,
}

impl Handle {
    fn build(
        py: Python<'_>,
        loop_: &Bound<'_, Loop>,
        new: NewHandle<'_>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let context = match new.context {
            Some(ctx) => ctx.unbind(),
            None => copy_context(py)?,
        };
        let source_traceback = if new.traceback {
            let tb = py_refs::extract_stack(py)?.call0()?;
            (!tb.is_none()).then(|| tb.unbind())
        } else {
            None
        };
        Ok(Handle {
            cb: GilCell::new(Callback {
                callback: Some(new.callback.unbind()),
                args: Some(new.args.unbind()),
                repr: None,
                source_traceback,
            }),
            context,
            loop_: loop_.clone().unbind(),
            cancelled: AtomicBool::new(false),
            when,
            when_obj,
            scheduled: AtomicBool::new(false),
        })
    }

    /// A plain handle.
    pub(crate) fn new_plain<'py>(
        py: Python<'py>,
        loop_: &Bound<'py, Loop>,
        new: NewHandle<'py>,
    ) -> PyResult<Bound<'py, Handle>> {
        Bound::new(py, Self::build(py, loop_, new, f64::NAN, None)?)
    }

    /// A `TimerHandle` (returned as its `Handle` base), marked scheduled.
    pub(crate) fn new_timer<'py>(
        py: Python<'py>,
        loop_: &Bound<'py, Loop>,
        new: NewHandle<'py>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let base = Self::build(py, loop_, new, when, when_obj)?;
        base.scheduled.store(true, Relaxed);
        let init = PyClassInitializer::from(base).add_subclass(TimerHandle);
        Ok(Bound::new(py, init)?.into_super())
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    #[inline]
    pub(crate) fn is_scheduled(&self) -> bool {
        self.scheduled.load(Relaxed)
    }

    #[inline]
    pub(crate) fn set_unscheduled(&self) {
        self.scheduled.store(false, Relaxed);
    }

    /// Runs the callback in its context. Exceptions go to the loop's
    /// exception handler; only `KeyboardInterrupt`, `SystemExit` and errors
    /// raised by the exception handler machinery itself are returned.
    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let parts = this.cb.with(py, |cb| {
            Some((
                cb.callback.as_ref()?.clone_ref(py),
                cb.args.as_ref()?.clone_ref(py),
            ))
        });
        let Some((callback, args)) = parts else {
            return Ok(());
        };
        let (callback, args) = (callback.into_bound(py), args.into_bound(py));
        match call_in_context(py, this.context.bind(py), &callback, &args) {
            Ok(()) => Ok(()),
            Err(err) => {
                if err.is_instance_of::<PyKeyboardInterrupt>(py)
                    || err.is_instance_of::<PySystemExit>(py)
                {
                    return Err(err);
                }
                let exc = err.into_value(py);
                py_refs::report_callback_error(py)?.call1((slf, callback, args, exc))?;
                Ok(())
            }
        }
    }

    /// `Handle.cancel()`: marks the handle cancelled and releases the
    /// callback and its arguments (keeping the representation in debug mode).
    pub(crate) fn cancel_handle(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled.swap(true, Relaxed) {
            return Ok(());
        }
        if this.loop_.get().debug() {
            let repr = slf.repr()?.into_any().unbind();
            let old = this.cb.with(py, |cb| cb.repr.replace(repr));
            drop(old);
        }
        let released = this.cb.with(py, |cb| (cb.callback.take(), cb.args.take()));
        drop(released);
        Ok(())
    }

    fn traverse_fields(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.context)?;
        visit.call(&self.loop_)?;
        visit.call(&self.when_obj)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(cb) = unsafe { self.cb.peek_for_gc() } {
            visit.call(&cb.callback)?;
            visit.call(&cb.args)?;
            visit.call(&cb.repr)?;
            visit.call(&cb.source_traceback)?;
        }
        Ok(())
    }
}

#[pymethods]
impl Handle {
    /// Cancel the callback; a cancelled callback is not run.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::cancel_handle(slf)
    }

    /// Whether the callback was cancelled.
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The `contextvars.Context` the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run(slf)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(repr) = slf
            .get()
            .cb
            .with(py, |cb| cb.repr.as_ref().map(|r| r.clone_ref(py)))
        {
            return Ok(repr);
        }
        Ok(py_refs::handle_repr(py)?.call1((slf,))?.unbind())
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cb
            .with(py, |cb| cb.callback.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.cb
            .with(py, |cb| cb.args.as_ref().map(|a| a.clone_ref(py)))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<Loop> {
        self.loop_.clone_ref(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cb.with(py, |cb| {
            cb.source_traceback.as_ref().map(|t| t.clone_ref(py))
        })
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cb
            .with(py, |cb| cb.repr.as_ref().map(|r| r.clone_ref(py)))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_fields(&visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        let released = self.cb.with(py, |cb| {
            (
                cb.callback.take(),
                cb.args.take(),
                cb.repr.take(),
                cb.source_traceback.take(),
            )
        });
        drop(released);
    }
}

impl TimerHandle {
    fn when_object<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        let py = slf.py();
        let base = slf.as_super().get();
        match &base.when_obj {
            Some(obj) => obj.bind(py).clone(),
            None => PyFloat::new(py, base.when).into_any(),
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
        if !handle.is_cancelled() {
            handle.loop_.get().timer_handle_cancelled(slf.py(), handle);
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
            if a.when != b.when || a.is_cancelled() != b.is_cancelled() {
                return Ok(false);
            }
            let (cb_a, args_a) = (Handle::_callback(a, py), Handle::_args(a, py));
            let (cb_b, args_b) = (Handle::_callback(b, py), Handle::_args(b, py));
            Ok(cb_a.into_pyobject(py)?.eq(cb_b)? && args_a.into_pyobject(py)?.eq(args_b)?)
        };
        let result = match op {
            CompareOp::Lt => a.when < b.when,
            CompareOp::Gt => a.when > b.when,
            CompareOp::Le => a.when < b.when || equal()?,
            CompareOp::Ge => a.when > b.when || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}
