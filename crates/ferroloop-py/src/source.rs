//! The one dispatch point between readiness and what runs.
//!
//! Everything the loop watches a descriptor for is a [`Source`]: a handle
//! from `add_reader`/`add_writer`, or a *watcher* — a native object that
//! handles its own readiness (a transport of any kind, a pending socket
//! operation). This module is the one place that maps a ready descriptor
//! to the item the loop queues ([`Source::on_event`]), lets go of sources
//! ([`Source::release_into`]) and shows them to the garbage collector
//! ([`Source::traverse`]); the loop turn runs queued items through
//! [`Ready`].
//!
//! A watcher kind is any pyclass implementing [`Watcher`]. `Source` keeps it
//! as an object plus a table of its kind's functions ([`WatcherKind`], one
//! static table per type, made by [`Source::watcher`]), instead of one enum
//! variant per kind: the loop, which holds sources, is then below the
//! transports in the module layers (transports use the loop; the loop never
//! names a transport type), and a new transport kind adds no variant here.

use ferroloop_core::reactor::registry::Graveyard;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::{PyClass, PyTraverseError};

pub use ferroloop_core::Direction;

use crate::handles::{Dropped, Handle};

/// A native object that handles its descriptor's readiness itself.
pub trait Watcher: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    /// The descriptor is ready in direction `dir` (called from the ready
    /// queue, in the place asyncio would run a `_read_ready` handle).
    fn ready(slf: &Bound<'_, Self>, dir: Direction) -> PyResult<()>;

    /// Reports an exception `ready` let through (never `KeyboardInterrupt`
    /// or `SystemExit`, which propagate), as the exception handler report of
    /// a failed callback.
    fn report(slf: &Bound<'_, Self>, dir: Direction, err: PyErr) -> PyResult<()>;

    /// Whether a `ready` call is timed in debug mode, to log slow ones
    /// through [`Watcher::log_slow`].
    const TIMED: bool = false;

    /// In debug mode, with [`Watcher::TIMED`]: `ready` took `seconds`, at
    /// least the loop's slow-callback duration.
    fn log_slow(_slf: &Bound<'_, Self>, _dir: Direction, _seconds: f64) -> PyResult<()> {
        Ok(())
    }
}

/// The functions of one watcher kind, called on an object of that kind.
pub struct WatcherKind {
    ready: fn(&Bound<'_, PyAny>, Direction) -> PyResult<()>,
    report: fn(&Bound<'_, PyAny>, Direction, PyErr) -> PyResult<()>,
    log_slow: fn(&Bound<'_, PyAny>, Direction, f64) -> PyResult<()>,
    /// [`Watcher::TIMED`].
    pub timed: bool,
}

impl WatcherKind {
    /// Runs the watcher's `ready`.
    pub fn ready(&self, obj: &Bound<'_, PyAny>, dir: Direction) -> PyResult<()> {
        (self.ready)(obj, dir)
    }

    /// Runs the watcher's `report`.
    pub fn report(&self, obj: &Bound<'_, PyAny>, dir: Direction, err: PyErr) -> PyResult<()> {
        (self.report)(obj, dir, err)
    }

    /// Runs the watcher's `log_slow`.
    pub fn log_slow(&self, obj: &Bound<'_, PyAny>, dir: Direction, seconds: f64) -> PyResult<()> {
        (self.log_slow)(obj, dir, seconds)
    }
}

/// Casts an object a `WatcherKind` of `T` was paired with back to `T`.
fn as_kind<'a, 'py, T: Watcher>(obj: &'a Bound<'py, PyAny>) -> &'a Bound<'py, T> {
    // SAFETY: a `WatcherKind` of `T` is only ever paired with an object of
    // type `T` (see `Source::watcher`), and objects never change type.
    unsafe { obj.cast_unchecked::<T>() }
}

/// The kind table of `T`: a constant, promoted to a `'static` per type.
struct KindOf<T>(std::marker::PhantomData<T>);

impl<T: Watcher> KindOf<T> {
    const KIND: WatcherKind = WatcherKind {
        ready: |obj, dir| T::ready(as_kind::<T>(obj), dir),
        report: |obj, dir, err| T::report(as_kind::<T>(obj), dir, err),
        log_slow: |obj, dir, seconds| T::log_slow(as_kind::<T>(obj), dir, seconds),
        timed: T::TIMED,
    };
}

/// What runs when a watched descriptor is ready.
pub enum Source {
    /// An `add_reader`/`add_writer` callback.
    Handle(Py<Handle>),
    /// A watcher, with the functions of its kind.
    Watcher(Py<PyAny>, &'static WatcherKind),
}

impl Source {
    /// `watcher` as a source.
    pub fn watcher<T: Watcher>(watcher: &Bound<'_, T>) -> Self {
        Source::Watcher(watcher.clone().into_any().unbind(), &KindOf::<T>::KIND)
    }

    /// Whether this source is `obj` (by identity).
    pub fn is(&self, obj: &Bound<'_, PyAny>) -> bool {
        let ptr = match self {
            Source::Handle(h) => h.as_ptr(),
            Source::Watcher(w, _) => w.as_ptr(),
        };
        ptr == obj.as_ptr()
    }

    /// The item to queue when the descriptor is ready in `dir`, or `None`
    /// for a cancelled handle, which is to be unregistered instead (as
    /// `BaseSelectorEventLoop._process_events` does).
    pub fn on_event(&self, py: Python<'_>, dir: Direction) -> Option<Ready> {
        match self {
            Source::Handle(h) if h.get().is_cancelled() => None,
            Source::Handle(h) => Some(Ready::Handle(h.clone_ref(py))),
            Source::Watcher(w, kind) => Some(Ready::Watcher(w.clone_ref(py), kind, dir)),
        }
    }

    /// Hands the source's reference to `dead`.
    pub fn release_into(self, dead: &mut Dropped) {
        match self {
            Source::Handle(h) => dead.handles.push(h),
            Source::Watcher(w, _) => dead.objects.push(w),
        }
    }

    /// Visits the source (see `Handle::traverse_queued`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Source::Handle(h) => Handle::traverse_queued(h, visit),
            Source::Watcher(w, _) => visit.call(w),
        }
    }
}

/// An item of the loop's ready queue.
pub enum Ready {
    /// A scheduled callback.
    Handle(Py<Handle>),
    /// A watcher whose descriptor is ready in that direction.
    Watcher(Py<PyAny>, &'static WatcherKind, Direction),
    /// A step of an asyncio C `Task`: its callback and the task's context,
    /// queued without a handle, since nothing can see one (see
    /// `loop_/tasks.rs`).
    TaskStep(Py<PyAny>, Py<PyAny>),
}

impl Ready {
    /// Hands the item's references to `dead`.
    pub fn release_into(self, dead: &mut Dropped) {
        match self {
            Ready::Handle(h) => dead.handles.push(h),
            Ready::Watcher(w, _, _) => dead.objects.push(w),
            Ready::TaskStep(callback, context) => dead.objects.extend([callback, context]),
        }
    }

    /// Visits the item (see `Handle::traverse_queued`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Handle(h) => Handle::traverse_queued(h, visit),
            Ready::Watcher(w, _, _) => visit.call(w),
            Ready::TaskStep(callback, context) => {
                visit.call(callback)?;
                visit.call(context)
            }
        }
    }
}

/// What the registry removes (sources, and the file objects given to
/// `add_reader`) is let go of with the other dropped objects.
impl Graveyard<Source, Py<PyAny>> for Dropped {
    fn payload(&mut self, source: Source) {
        source.release_into(self);
    }

    fn owner(&mut self, owner: Py<PyAny>) {
        self.objects.push(owner);
    }
}
