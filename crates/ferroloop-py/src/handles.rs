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
//! assuming it is tracked, a context of ours is tracked again before its
//! last reference goes.
//!
//! # Reuse
//! Most handles die as soon as they have run: asyncio's C `Task` drops the
//! handle `call_soon` returns at once. When the loop releases a plain handle
//! that nothing else references (and that has no weak references), it clears
//! the handle's references right away, as asyncio frees the object, and keeps
//! the empty object in a per-loop free list for the next `call_soon`, which
//! spares the allocation, initialization and deallocation of a Python object
//! per callback. A reused handle is indistinguishable from a new one: nobody
//! could observe it in between. The free list is large enough for a burst of
//! tens of thousands of callbacks (another thread filling the ready queue
//! while the loop waits for the GIL), and cut back to a few hundred handles
//! once it has held more for a second.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyFloat, PyTuple, PyWeakrefReference};
use pyo3::{intern, PyTraverseError};

use crate::errors::is_interrupt;
use crate::event_loop::Loop;
use crate::gil_cell::GilCell;
use crate::py_refs;

/// Releases a strong reference with a plain `Py_DECREF`.
///
/// `Py<T>`'s own drop first asks a thread-local whether the thread is
/// attached to the interpreter. Handles and their contents are only ever
/// released with the GIL held (by the interpreter's dealloc, or by the loop),
/// so the check is pure overhead on the path every callback takes.
///
/// # Safety
/// The GIL must be held.
unsafe fn decref(obj: impl Into<Option<Py<PyAny>>>) {
    if let Some(obj) = obj.into() {
        // SAFETY: the caller holds the GIL; `into_ptr` hands over our reference.
        unsafe { ffi::Py_DECREF(obj.into_ptr()) }
    }
}

/// What varies over a handle's life (and between reuses).
#[derive(Default)]
struct Inner {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
    /// The `contextvars.Context` the callback runs in; `None` only while the
    /// handle waits in the loop's free list.
    context: Option<Py<PyAny>>,
    /// Whether `context` was copied for this handle, and so is untracked by
    /// the garbage collector until it is shared (see the module docs).
    owns_context: bool,
    /// The representation frozen at cancellation in debug mode.
    repr: Option<Py<PyAny>>,
    /// Where the handle was created (debug mode only).
    source_traceback: Option<Py<PyAny>>,
    /// The deadline object passed to `call_at` when it was not a float, so
    /// that `when()` returns it unchanged as asyncio does.
    when_obj: Option<Py<PyAny>>,
}

impl Inner {
    /// Releases every reference (tracking an owned context first, since
    /// CPython frees a Context assuming it is tracked).
    ///
    /// # Safety
    /// The GIL must be held, outside any `GilCell` borrow.
    unsafe fn release(self) {
        if self.owns_context {
            if let Some(ctx) = &self.context {
                gc_track(ctx);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            decref(self.callback);
            decref(self.args.map(Py::into_any));
            decref(self.context);
            decref(self.repr);
            decref(self.source_traceback);
            decref(self.when_obj);
        }
    }
}

/// A scheduled callback.
#[pyclass(module = "ferroloop._core", name = "Handle", subclass, frozen, weakref)]
pub struct Handle {
    inner: GilCell<Inner>,
    /// Weak reference to the loop that created the handle (for `cancel` in
    /// debug mode and for timer accounting); weak so that queued handles do
    /// not form cycles with their loop. Released in `Drop`.
    loop_: ManuallyDrop<Py<PyWeakrefReference>>,
    cancelled: AtomicBool,
    /// Deadline of a timer as the bits of an f64 (NaN for plain handles);
    /// atomic only so that a reused timer can be given a new one.
    when: AtomicU64,
    /// Whether a timer is still in the loop's timer heap.
    scheduled: AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = std::mem::take(self.inner.get_mut());
        // SAFETY: a handle is dropped only with the GIL held, and `&mut self`
        // excludes any borrow; the `ManuallyDrop` field is not used after.
        unsafe {
            inner.release();
            decref(ManuallyDrop::take(&mut self.loop_).into_any());
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
pub(crate) fn call_in_context<'py>(
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
    pub fn release(self, py: Python<'_>, lp: &Loop) {
        for handle in self.handles {
            Handle::release(py, lp, handle);
        }
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
    /// The varying part of a new handle. `queued`: the handle goes into one
    /// of the loop's queues, so a context copied for it starts untracked.
    fn fill(py: Python<'_>, new: NewHandle<'_>, queued: bool) -> PyResult<Inner> {
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
        Ok(Inner {
            callback: Some(new.callback.unbind()),
            args: Some(new.args.unbind()),
            context: Some(context),
            owns_context,
            repr: None,
            source_traceback,
            when_obj: None,
        })
    }

    fn build(loop_: &Bound<'_, Loop>, inner: Inner, when: f64) -> PyResult<Self> {
        Ok(Handle {
            inner: GilCell::new(inner),
            loop_: ManuallyDrop::new(Loop::weak_ref(loop_)?.clone_ref(loop_.py())),
            cancelled: AtomicBool::new(false),
            when: AtomicU64::new(when.to_bits()),
            scheduled: AtomicBool::new(false),
        })
    }

    /// Gives an empty handle from the loop's free list its new contents.
    fn reuse<'py>(
        py: Python<'py>,
        handle: Py<Handle>,
        inner: Inner,
        when: f64,
    ) -> Bound<'py, Handle> {
        let this = handle.get();
        this.cancelled.store(false, Relaxed);
        this.when.store(when.to_bits(), Relaxed);
        let empty = this.inner.with(py, |i| std::mem::replace(i, inner));
        // SAFETY: the GIL is held and the borrow has ended; the replaced part
        // is empty anyway.
        unsafe { empty.release() };
        handle.into_bound(py)
    }

    /// A plain handle. `queued`: it goes into one of the loop's queues; it is
    /// then taken from the loop's free list when possible, and left untracked
    /// by the garbage collector until released.
    pub(crate) fn new_plain<'py>(
        py: Python<'py>,
        loop_: &Bound<'py, Loop>,
        new: NewHandle<'py>,
        queued: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let inner = Self::fill(py, new, queued)?;
        if queued {
            if let Some(handle) = loop_.get().reusable_handle(py, false) {
                return Ok(Self::reuse(py, handle, inner, f64::NAN));
            }
        }
        let handle = Bound::new(py, Self::build(loop_, inner, f64::NAN)?)?;
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
        let mut inner = Self::fill(py, new, true)?;
        inner.when_obj = when_obj;
        let handle = match loop_.get().reusable_handle(py, true) {
            Some(handle) => Self::reuse(py, handle, inner, when),
            None => {
                let base = Self::build(loop_, inner, when)?;
                let init = PyClassInitializer::from(base).add_subclass(TimerHandle);
                let handle = Bound::new(py, init)?.into_super();
                gc_untrack(handle.as_unbound());
                handle
            }
        };
        handle.get().scheduled.store(true, Relaxed);
        Ok(handle)
    }

    /// The loop lets go of a handle it held in a queue. If anything else
    /// still references it, the garbage collector must see it (and its
    /// context) again; if nothing does, its references are released now and
    /// the empty object goes back to the loop's free list. Must not be
    /// called inside a `GilCell` borrow: releasing runs arbitrary code.
    pub(crate) fn release(py: Python<'_>, lp: &Loop, handle: Py<Handle>) {
        let ptr = handle.as_ptr();
        // SAFETY: `handle` is a live object we own a reference to.
        let shared = unsafe { ffi::Py_REFCNT(ptr) } > 1;
        let this = handle.get();
        if shared {
            gc_track(&handle);
            this.inner.with(py, |i| {
                if let (true, Some(ctx)) = (i.owns_context, &i.context) {
                    gc_track(ctx);
                }
            });
        } else if let Some(timer) = Self::reusable_kind(handle.bind(py)) {
            let inner = this.inner.with(py, std::mem::take);
            // SAFETY: the GIL is held and the borrow has ended.
            unsafe { inner.release() };
            if let Some(rejected) = lp.keep_for_reuse(py, handle, timer) {
                // SAFETY: the GIL is held.
                unsafe { decref(rejected.into_any()) };
            }
            return;
        }
        // SAFETY: the GIL is held (we have a token).
        unsafe { decref(handle.into_any()) }
    }

    /// Whether a handle the loop alone references may be reused, and as
    /// which kind (`Some(true)`: a `TimerHandle`). Subclasses and objects
    /// with weak references are never reused.
    fn reusable_kind(handle: &Bound<'_, Handle>) -> Option<bool> {
        let timer = if handle.is_exact_instance_of::<Handle>() {
            false
        } else if handle.is_exact_instance_of::<TimerHandle>() {
            true
        } else {
            return None;
        };
        (!has_weakrefs(handle.as_ptr())).then_some(timer)
    }

    #[inline]
    pub(crate) fn when_f64(&self) -> f64 {
        f64::from_bits(self.when.load(Relaxed))
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

    /// The loop, if it still exists.
    pub(crate) fn loop_object<'py>(&self, py: Python<'py>) -> Option<Bound<'py, Loop>> {
        let obj = self.loop_.bind(py).upgrade()?;
        obj.cast_into::<Loop>().ok()
    }

    /// The context, made visible to the garbage collector first since the
    /// caller hands it to Python code.
    fn shared_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.with(py, |i| {
            let ctx = i.context.as_ref()?;
            if i.owns_context {
                gc_track(ctx);
            }
            Some(ctx.clone_ref(py))
        })
    }

    /// Runs the callback in its context. Exceptions go to the loop's
    /// exception handler; only `KeyboardInterrupt`, `SystemExit` and errors
    /// raised by the exception handler machinery itself are returned.
    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let parts = slf.get().inner.with(py, |i| {
            Some((
                i.callback.as_ref()?.clone_ref(py),
                i.args.as_ref()?.clone_ref(py),
                i.context.as_ref()?.clone_ref(py),
            ))
        });
        let Some((callback, args, context)) = parts else {
            return Ok(());
        };
        let (callback, args) = (callback.into_bound(py), args.into_bound(py));
        match call_in_context(py, context.bind(py), &callback, &args) {
            Ok(()) => Ok(()),
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => {
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
            let old = this.inner.with(py, |i| i.repr.replace(repr));
            drop(old);
        }
        let released = this.inner.with(py, |i| (i.callback.take(), i.args.take()));
        drop(released);
        Ok(())
    }

    /// Visits the references that can be part of a cycle. The weak reference
    /// to the loop is not one (a weak reference without callback holds
    /// nothing strongly), and neither is an empty argument tuple; skipping
    /// them halves the work of a full collection over a long queue of task
    /// steps.
    fn traverse_fields(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(i) = unsafe { self.inner.peek_for_gc() } {
            visit.call(&i.callback)?;
            // SAFETY: `args` is a live tuple.
            if let Some(args) = i
                .args
                .as_ref()
                .filter(|a| unsafe { ffi::PyTuple_GET_SIZE(a.as_ptr()) } > 0)
            {
                visit.call(args)?;
            }
            visit.call(&i.context)?;
            visit.call(&i.repr)?;
            visit.call(&i.source_traceback)?;
            visit.call(&i.when_obj)?;
        }
        Ok(())
    }
}

impl Handle {
    /// Called by the loop's `tp_traverse` for a handle in one of its queues.
    /// A tracked handle is visited itself; an untracked one (the usual case,
    /// see the module docs) is invisible to the collector, so its references
    /// are reported as the loop's: the collector then still sees cycles that
    /// run through the queue, such as loop -> task step -> task -> loop.
    pub(crate) fn traverse_queued(
        handle: &Py<Handle>,
        visit: &PyVisit<'_>,
    ) -> Result<(), PyTraverseError> {
        // SAFETY: `handle` is a live object; tp_traverse runs with the GIL.
        if unsafe { ffi::PyObject_GC_IsTracked(handle.as_ptr()) } != 0 {
            return visit.call(handle);
        }
        handle.get().traverse_fields(visit)
    }
}

/// Whether weak references to `ptr` exist (so it must not be reused).
fn has_weakrefs(ptr: *mut ffi::PyObject) -> bool {
    // SAFETY: `ptr` is a live object; `tp_weaklistoffset`, when positive, is
    // the offset of its weak-reference list pointer (CPython's layout rule).
    unsafe {
        let offset = (*ffi::Py_TYPE(ptr)).tp_weaklistoffset;
        offset > 0 && !(*ptr.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
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
    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.shared_context(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run(slf)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(repr) = slf
            .get()
            .inner
            .with(py, |i| i.repr.as_ref().map(|r| r.clone_ref(py)))
        {
            return Ok(repr);
        }
        Ok(py_refs::handle_repr(py)?.call1((slf,))?.unbind())
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .with(py, |i| i.callback.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.inner
            .with(py, |i| i.args.as_ref().map(|a| a.clone_ref(py)))
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
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.shared_context(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .with(py, |i| i.source_traceback.as_ref().map(|t| t.clone_ref(py)))
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .with(py, |i| i.repr.as_ref().map(|r| r.clone_ref(py)))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_fields(&visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        let released = self.inner.with(py, |i| {
            (
                i.callback.take(),
                i.args.take(),
                i.repr.take(),
                i.source_traceback.take(),
            )
        });
        drop(released);
    }
}

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
