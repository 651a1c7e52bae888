//! `Handle` and `TimerHandle`: the objects `call_soon`, `call_later` and
//! `call_at` return, with asyncio's API (`cancel`, `cancelled`, `when`,
//! `get_context`) and asyncio's private attributes (`_callback`, `_args`,
//! `_cancelled`, `_loop`, `_source_traceback`, `_when`, `_scheduled`) for the
//! code that reads them.
//!
//! Both kinds share one native layout: a `TimerHandle` is a `Handle` whose
//! timer fields are used. The ready queue and the timer heap therefore hold
//! the same type and a timer moves to the ready queue without conversion.
//!
//! # Garbage-collector tracking
//! A handle that only the loop's queues reference is reachable from the loop
//! for as long as it is queued, so the cyclic garbage collector has nothing
//! to find through it. Handles made for the queues (and the context copied
//! for them) are therefore created *untracked*: a burst of `call_soon` does
//! not make every collection walk every pending callback. When the loop lets
//! go of a handle ([`Handle::release`]) that something else still references
//! (`self._timer = loop.call_later(...)`), the handle and its context are
//! tracked again, so cycles through them are collected as with asyncio. The
//! context is also tracked whenever it is handed to Python code.
//!
//! This is only sound if a queued handle cannot be part of an unreachable
//! cycle, i.e. if the loop is not reachable from it: a handle refers to its
//! loop through a weak reference. And since CPython frees a `Context`
//! assuming it is tracked, a handle re-tracks its context when dropped.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyFloat, PyTuple, PyWeakrefReference};
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
    /// Whether `context` was copied for this handle, and so is untracked by
    /// the garbage collector until it is shared (see the module docs).
    owns_context: bool,
    /// Weak reference to the loop that created the handle (for `cancel` in
    /// debug mode and for timer accounting); weak so that queued handles do
    /// not form cycles with their loop.
    loop_: Py<PyWeakrefReference>,
    cancelled: AtomicBool,
    /// Deadline of a timer as a float (NaN for plain handles).
    when: f64,
    /// The deadline object passed to `call_at` when it was not a float, so
    /// that `when()` returns it unchanged as asyncio does.
    when_obj: Option<Py<PyAny>>,
    /// Whether a timer is still in the loop's timer heap.
    scheduled: AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // CPython frees a Context assuming it is tracked (its dealloc uses
        // the unchecked untrack), so an untracked context of ours must be
        // tracked again before its last reference can go.
        if self.owns_context {
            gc_track(&self.context);
        }
    }
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

/// Stops the garbage collector from tracking `obj`.
fn gc_untrack(obj: &Py<impl Sized>) {
    // SAFETY: `obj` is a live object of a GC type (a handle or a Context);
    // untracking an untracked object is allowed.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

/// Makes the garbage collector track `obj` again if it does not.
fn gc_track(obj: &Py<impl Sized>) {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object of a GC type; it is tracked only if it
    // is not already (tracking twice is a fatal error).
    unsafe {
        if ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
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

/// Python objects taken out of the loop's state inside a `GilCell` borrow,
/// to be let go of after it: handles through [`Handle::release`], other
/// objects by dropping them.
#[derive(Default)]
pub(crate) struct Dropped {
    pub handles: Vec<Py<Handle>>,
    pub objects: Vec<Py<PyAny>>,
}

impl Dropped {
    /// Lets go of everything; call outside any `GilCell` borrow.
    pub fn release(self) {
        self.handles.into_iter().for_each(Handle::release);
        drop(self.objects);
    }
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
        queued: bool,
    ) -> PyResult<Self> {
        let (context, owns_context) = match new.context {
            Some(ctx) => (ctx.unbind(), false),
            None => {
                let ctx = copy_context(py)?;
                if queued {
                    gc_untrack(&ctx);
                }
                (ctx, queued)
            }
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
            owns_context,
            loop_: Loop::weak_ref(loop_)?.clone_ref(py),
            cancelled: AtomicBool::new(false),
            when,
            when_obj,
            scheduled: AtomicBool::new(false),
        })
    }

    /// A plain handle. `queued`: it goes into one of the loop's queues and is
    /// left untracked by the garbage collector until released.
    pub(crate) fn new_plain<'py>(
        py: Python<'py>,
        loop_: &Bound<'py, Loop>,
        new: NewHandle<'py>,
        queued: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let handle = Bound::new(py, Self::build(py, loop_, new, f64::NAN, None, queued)?)?;
        if queued {
            gc_untrack(handle.as_unbound());
        }
        Ok(handle)
    }

    /// A `TimerHandle` (returned as its `Handle` base), marked scheduled and
    /// untracked until released by the loop.
    pub(crate) fn new_timer<'py>(
        py: Python<'py>,
        loop_: &Bound<'py, Loop>,
        new: NewHandle<'py>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let base = Self::build(py, loop_, new, when, when_obj, true)?;
        base.scheduled.store(true, Relaxed);
        let init = PyClassInitializer::from(base).add_subclass(TimerHandle);
        let handle = Bound::new(py, init)?.into_super();
        gc_untrack(handle.as_unbound());
        Ok(handle)
    }

    /// The loop lets go of a handle it held in a queue: if anything else
    /// still references it, the garbage collector must see it (and its
    /// context) again. Must not be called inside a `GilCell` borrow, since
    /// dropping the handle may run arbitrary code.
    pub(crate) fn release(handle: Py<Handle>) {
        // SAFETY: `handle` is a live object we own a reference to.
        if unsafe { ffi::Py_REFCNT(handle.as_ptr()) } > 1 {
            gc_track(&handle);
            let this = handle.get();
            if this.owns_context {
                gc_track(&this.context);
            }
        }
        drop(handle);
    }

    /// The context, made visible to the garbage collector first since the
    /// caller hands it to Python code.
    fn shared_context(&self, py: Python<'_>) -> Py<PyAny> {
        if self.owns_context {
            gc_track(&self.context);
        }
        self.context.clone_ref(py)
    }

    /// The loop, if it still exists.
    pub(crate) fn loop_object<'py>(&self, py: Python<'py>) -> Option<Bound<'py, Loop>> {
        let obj = self.loop_.bind(py).upgrade()?;
        obj.cast_into::<Loop>().ok()
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
        if this.loop_object(py).is_some_and(|lp| lp.get().debug()) {
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
        self.shared_context(py)
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
    fn _loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, Loop>> {
        self.loop_object(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared_context(py)
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
            if let Some(lp) = handle.loop_object(slf.py()) {
                lp.get().timer_handle_cancelled(slf.py(), handle);
            }
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
