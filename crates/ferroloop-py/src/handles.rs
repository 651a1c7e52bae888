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
//! once it has held more for a second (`ferroloop_core::reactor::free_list`).
//!
//! # Thread-safe handles
//! Where asyncio's `call_soon_threadsafe` returns a `_ThreadSafeHandle`
//! (3.14+; `compat::threadsafe_handles_wait`), ferroloop returns a
//! [`ThreadSafeHandle`]: `cancel()` and `cancelled()` called from another
//! thread while its callback runs wait for the callback to return (a
//! canceller can then rely on the callback not running any more). The loop
//! records which such handle is running in the [`LoopLink`], under a mutex
//! whose condition variable wakes the waiters; the waiting happens without
//! the GIL, which the callback needs to finish. Elsewhere, and for every
//! other handle, nothing of this runs: a plain handle pays one flag test.
//!
//! # The loop seen from a handle
//! This module sits below the loop: a handle reaches what it needs of the
//! loop that made it through a [`LoopLink`] they share (the loop's weak
//! reference, its debug flag, and the count of timers cancelled while in the
//! heap), and the loop lends its free lists through [`HandlePool`].

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyWeakrefReference};
use pyo3::{PyClass, PyTraverseError};

use crate::cpython::{
    call_in_context, copy_context, current_thread_id, decref, gc_is_tracked, gc_track, gc_untrack,
    has_weakrefs, is_shared, tuple_len,
};
use crate::errors::unless_interrupt;
use crate::gil_cell::GilCell;
use crate::py_refs;

mod kinds;

/// What a handle knows of the loop that made it, shared by the loop and all
/// its handles. It holds no strong reference to a Python object that could
/// reach a handle, so sharing it creates no cycle. It is a (frozen) Python
/// object rather than an `Arc` so that sharing it costs a plain reference
/// count increment, not an atomic one, per new handle.
#[pyclass(module = "ferroloop._core", name = "LoopLink", frozen)]
pub struct LoopLink {
    /// Weak reference to the loop object (`Handle._loop`); weak so that
    /// queued handles do not form cycles with their loop. Set when the first
    /// handle is made (a loop cannot refer to itself while being built).
    weak_loop: PyOnceLock<Py<PyWeakrefReference>>,
    /// The loop's debug mode (`loop.get_debug()`).
    pub debug: AtomicBool,
    /// Timers cancelled while in the loop's heap, not yet added to the
    /// heap's own count (the loop takes them with [`LoopLink::take_cancelled_timers`]).
    cancelled_timers: AtomicUsize,
    /// The [`ThreadSafeHandle`] whose callback is running (its address)
    /// and the thread running it; `None` between such callbacks.
    running_threadsafe: Mutex<Option<(usize, u64)>>,
    /// Signalled when that callback returns.
    threadsafe_done: Condvar,
}

impl Default for LoopLink {
    fn default() -> Self {
        LoopLink {
            weak_loop: PyOnceLock::new(),
            debug: AtomicBool::new(false),
            cancelled_timers: AtomicUsize::new(0),
            running_threadsafe: Mutex::new(None),
            threadsafe_done: Condvar::new(),
        }
    }
}

impl LoopLink {
    /// Makes the weak reference to `lp`, the loop of this link, if needed.
    fn init(&self, lp: &Bound<'_, PyAny>) -> PyResult<()> {
        self.weak_loop
            .get_or_try_init(lp.py(), || PyWeakrefReference::new(lp).map(Bound::unbind))?;
        Ok(())
    }

    /// The loop, if it still exists.
    pub fn loop_object<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.weak_loop.get(py)?.bind(py).upgrade()
    }

    /// A timer still in the loop's heap was cancelled.
    pub fn note_cancelled_timer(&self) {
        self.cancelled_timers.fetch_add(1, Relaxed);
    }

    /// Timers cancelled since the last call.
    pub fn take_cancelled_timers(&self) -> usize {
        self.cancelled_timers.swap(0, Relaxed)
    }

    fn running_threadsafe(&self) -> MutexGuard<'_, Option<(usize, u64)>> {
        // Nothing can be left half-written: a poisoned lock is still valid.
        self.running_threadsafe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks a [`ThreadSafeHandle`]'s callback as running for as long as it
/// lives; dropping it wakes the threads waiting in `cancel()`.
struct ThreadSafeRun<'a> {
    link: &'a LoopLink,
}

impl<'a> ThreadSafeRun<'a> {
    fn begin(link: &'a LoopLink, handle: usize) -> Self {
        *link.running_threadsafe() = Some((handle, current_thread_id()));
        ThreadSafeRun { link }
    }
}

impl Drop for ThreadSafeRun<'_> {
    fn drop(&mut self) {
        *self.link.running_threadsafe() = None;
        self.link.threadsafe_done.notify_all();
    }
}

/// The loop as its handles see it: the link they share and the free lists
/// of empty handles (see "Reuse" above).
pub trait HandleOwner: PyClass<Frozen = True> + Sync {
    /// The link to give new handles.
    fn link(&self) -> &Py<LoopLink>;
    /// An empty handle (`timer`: a `TimerHandle`) to reuse, if any.
    fn reusable(&self, py: Python<'_>, timer: bool) -> Option<Py<Handle>>;
    /// Keeps an empty handle for reuse; hands it back if it cannot.
    fn keep(&self, py: Python<'_>, handle: Py<Handle>, timer: bool) -> Option<Py<Handle>>;
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
    /// Whether it holds no reference (a handle in the free list).
    fn is_empty(&self) -> bool {
        self.callback.is_none()
            && self.args.is_none()
            && self.context.is_none()
            && self.repr.is_none()
            && self.source_traceback.is_none()
            && self.when_obj.is_none()
    }

    /// Releases every reference (tracking an owned context first, since
    /// CPython frees a Context assuming it is tracked).
    ///
    /// # Safety
    /// The GIL must be held, outside any `GilCell` borrow.
    #[inline]
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
    /// The loop that created the handle (for `_loop`, `cancel` in debug mode
    /// and timer accounting). Released in `Drop`.
    link: ManuallyDrop<Py<LoopLink>>,
    cancelled: AtomicBool,
    /// Deadline of a timer as the bits of an f64 (NaN for plain handles);
    /// atomic only so that a reused timer can be given a new one.
    when: AtomicU64,
    /// Whether a timer is still in the loop's timer heap.
    scheduled: AtomicBool,
    /// A [`ThreadSafeHandle`]: running its callback is recorded for
    /// `cancel()` to wait on. Such handles are never reused.
    threadsafe: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = std::mem::take(self.inner.get_mut());
        // SAFETY: a handle is dropped only with the GIL held, and `&mut self`
        // excludes any borrow; the `ManuallyDrop` field is not used after.
        unsafe {
            // A handle from the free list (the usual case at close) holds
            // nothing: skip the per-field checks.
            if inner.is_empty() {
                std::mem::forget(inner);
            } else {
                inner.release();
            }
            decref(ManuallyDrop::take(&mut self.link).into_any());
        }
    }
}

/// A callback scheduled for a point in time.
#[pyclass(module = "ferroloop._core", name = "TimerHandle", extends = Handle, frozen)]
pub struct TimerHandle;

/// What `call_soon_threadsafe` returns where asyncio's returns a
/// `_ThreadSafeHandle`: see "Thread-safe handles" above.
#[pyclass(module = "ferroloop._core", name = "_ThreadSafeHandle", extends = Handle, frozen)]
pub struct ThreadSafeHandle;

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
    pub fn release(self, py: Python<'_>, owner: &impl HandleOwner) {
        for handle in self.handles {
            Handle::release(py, owner, handle);
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
    #[inline]
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

    fn build<O: HandleOwner>(owner: &Bound<'_, O>, inner: Inner, when: f64) -> PyResult<Self> {
        let link = owner.get().link();
        link.get().init(owner.as_any())?;
        Ok(Handle {
            inner: GilCell::new(inner),
            link: ManuallyDrop::new(link.clone_ref(owner.py())),
            cancelled: AtomicBool::new(false),
            when: AtomicU64::new(when.to_bits()),
            scheduled: AtomicBool::new(false),
            threadsafe: false,
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
        // A handle in the free list was emptied by `release` (which took its
        // `Inner`) and nobody else could reach it since: there is nothing to
        // release, so the checks of `Inner::release` are skipped.
        debug_assert!(
            empty.is_empty(),
            "a handle in the free list holds references"
        );
        std::mem::forget(empty);
        handle.into_bound(py)
    }

    /// A plain handle. `queued`: it goes into one of the loop's queues; it is
    /// then taken from the loop's free list when possible, and left untracked
    /// by the garbage collector until released.
    #[inline]
    pub(crate) fn new_plain<'py, O: HandleOwner>(
        owner: &Bound<'py, O>,
        new: NewHandle<'py>,
        queued: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = owner.py();
        let inner = Self::fill(py, new, queued)?;
        if queued {
            if let Some(handle) = owner.get().reusable(py, false) {
                return Ok(Self::reuse(py, handle, inner, f64::NAN));
            }
        }
        let handle = Bound::new(py, Self::build(owner, inner, f64::NAN)?)?;
        if queued {
            gc_untrack(handle.as_unbound());
        }
        Ok(handle)
    }

    /// A `TimerHandle` (returned as its `Handle` base), marked scheduled and
    /// untracked until released by the loop.
    pub(crate) fn new_timer<'py, O: HandleOwner>(
        owner: &Bound<'py, O>,
        new: NewHandle<'py>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = owner.py();
        let mut inner = Self::fill(py, new, true)?;
        inner.when_obj = when_obj;
        let handle = match owner.get().reusable(py, true) {
            Some(handle) => Self::reuse(py, handle, inner, when),
            None => {
                let base = Self::build(owner, inner, when)?;
                let init = PyClassInitializer::from(base).add_subclass(TimerHandle);
                let handle = Bound::new(py, init)?.into_super();
                gc_untrack(handle.as_unbound());
                handle
            }
        };
        handle.get().scheduled.store(true, Relaxed);
        Ok(handle)
    }

    /// A [`ThreadSafeHandle`] (returned as its `Handle` base) for the ready
    /// queue, untracked until released by the loop.
    pub(crate) fn new_threadsafe<'py, O: HandleOwner>(
        owner: &Bound<'py, O>,
        new: NewHandle<'py>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = owner.py();
        let inner = Self::fill(py, new, true)?;
        let mut base = Self::build(owner, inner, f64::NAN)?;
        base.threadsafe = true;
        let init = PyClassInitializer::from(base).add_subclass(ThreadSafeHandle);
        let handle = Bound::new(py, init)?.into_super();
        gc_untrack(handle.as_unbound());
        Ok(handle)
    }

    /// The loop lets go of a handle it held in a queue. If anything else
    /// still references it, the garbage collector must see it (and its
    /// context) again; if nothing does, its references are released now and
    /// the empty object goes back to the loop's free list. Must not be
    /// called inside a `GilCell` borrow: releasing runs arbitrary code.
    #[inline]
    pub(crate) fn release(py: Python<'_>, owner: &impl HandleOwner, handle: Py<Handle>) {
        let this = handle.get();
        if is_shared(&handle) {
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
            if let Some(rejected) = owner.keep(py, handle, timer) {
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
        (!has_weakrefs(handle.as_unbound())).then_some(timer)
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
    #[inline]
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
        let this = slf.get();
        let _running = this
            .threadsafe
            .then(|| ThreadSafeRun::begin(this.link.get(), slf.as_ptr() as usize));
        let (callback, args) = (callback.into_bound(py), args.into_bound(py));
        let result = call_in_context(py, context.bind(py), &callback, &args);
        unless_interrupt(py, result, |err| {
            let exc = err.into_value(py);
            py_refs::report_callback_error(py)?.call1((slf, callback, args, exc))?;
            Ok(())
        })
    }

    /// Returns once this handle's callback is not running on another
    /// thread, waiting without the GIL while it is (see "Thread-safe
    /// handles" above). The thread running it does not wait for itself.
    fn wait_until_not_running_elsewhere(slf: &Bound<'_, Handle>) {
        let link = slf.get().link.get();
        let (handle, me) = (slf.as_ptr() as usize, current_thread_id());
        let elsewhere = |running: &Option<(usize, u64)>| matches!(*running, Some((h, t)) if h == handle && t != me);
        if !elsewhere(&link.running_threadsafe()) {
            return;
        }
        slf.py().detach(|| {
            let mut running = link.running_threadsafe();
            while elsewhere(&running) {
                running = link
                    .threadsafe_done
                    .wait(running)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        });
    }

    /// `Handle.cancel()`: marks the handle cancelled and releases the
    /// callback and its arguments (keeping the representation in debug mode).
    pub(crate) fn cancel_handle(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled.swap(true, Relaxed) {
            return Ok(());
        }
        if this.link.get().debug.load(Relaxed) {
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
            if let Some(args) = i.args.as_ref().filter(|a| tuple_len(a) > 0) {
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
        if gc_is_tracked(handle) {
            return visit.call(handle);
        }
        handle.get().traverse_fields(visit)
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

    /// What `isinstance` consults when the type does not match: for
    /// ferroloop's own handle types, the subclass of asyncio's class this
    /// handle stands for (`_hooks._Handle` and friends), so that
    /// `isinstance(handle, asyncio.Handle)` holds as on asyncio's loop; for
    /// a subclass defined elsewhere, its own type. Nothing on the loop's
    /// paths reads it.
    #[getter(__class__)]
    fn nominal_class<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let ty = slf.get_type();
        let nominal = if ty.is(py.get_type::<Handle>()) {
            py_refs::nominal_handle(py)
        } else if ty.is(py.get_type::<TimerHandle>()) {
            py_refs::nominal_timer_handle(py)
        } else if ty.is(py.get_type::<ThreadSafeHandle>()) {
            py_refs::nominal_threadsafe_handle(py)
        } else {
            return Ok(ty.into_any());
        };
        nominal.cloned()
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
    pub(crate) fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
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
    fn _loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.link.get().loop_object(py)
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
