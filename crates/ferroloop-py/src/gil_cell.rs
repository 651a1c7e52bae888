//! `GilCell`: interior mutability guarded by the GIL.
//!
//! The loop and its handles are `frozen` pyclasses shared between threads
//! (`call_soon_threadsafe`, and asynchronous-generator finalizers run by the
//! garbage collector in any thread). All of their mutable state is touched
//! only while holding the GIL — `ferroloop._core` is declared `gil_used`, so a
//! `Python<'_>` token proves the GIL is held — which serializes every thread.
//!
//! What the GIL does not prevent is re-entrancy on one thread: Python code
//! can run in the middle of a borrow (a decref that frees an object with
//! `__del__`, a call into a callback) and call back into the loop. The rule of
//! this crate is therefore that a borrow never calls into Python, never drops
//! a Python object that could be the last reference, and never releases the
//! GIL: closures passed to [`GilCell::with`] only move values in and out. The
//! `busy` flag turns a violation of that rule into a panic instead of two
//! aliasing `&mut`.

use std::cell::{Cell, UnsafeCell};

use pyo3::Python;

/// A value that may be mutated only while holding the GIL, one borrow at a
/// time.
pub struct GilCell<T> {
    value: UnsafeCell<T>,
    /// Set while a `with` closure runs.
    busy: Cell<bool>,
}

// SAFETY: every access to `value` and `busy` goes through `with` (which needs
// a `Python` token, i.e. the GIL, and the module requires the GIL even on
// free-threaded builds) or through `peek_for_gc` (whose caller must hold the
// GIL). The GIL serializes threads, so `T: Send` is all that is needed for the
// cell to be shared.
unsafe impl<T: Send> Sync for GilCell<T> {}

struct Release<'a>(&'a Cell<bool>);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<T> GilCell<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self {
            value: UnsafeCell::new(value),
            busy: Cell::new(false),
        }
    }

    /// Runs `f` with exclusive access to the value.
    ///
    /// `f` must not call into Python, drop Python objects that may be the last
    /// reference, or release the GIL (see the module documentation).
    ///
    /// # Panics
    /// If called again (on this thread) while `f` runs.
    #[inline]
    pub fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(!self.busy.replace(true), "GilCell borrowed re-entrantly");
        let _release = Release(&self.busy);
        // SAFETY: the GIL is held (we have a token) so no other thread is
        // here, and `busy` excludes re-entrant access on this thread.
        f(unsafe { &mut *self.value.get() })
    }

    /// Exclusive access through an exclusive reference (no borrow needed).
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Read access for `tp_traverse`, or `None` if a borrow is active (a
    /// skipped traversal only makes the collector more conservative).
    ///
    /// # Safety
    /// The caller must hold the GIL, e.g. be inside `tp_traverse`, and must not
    /// keep the reference past the current GIL-holding section.
    #[inline]
    pub unsafe fn peek_for_gc(&self) -> Option<&T> {
        if self.busy.get() {
            None
        } else {
            // SAFETY: the caller holds the GIL and no `with` borrow is active,
            // so there is no `&mut` to the value.
            Some(unsafe { &*self.value.get() })
        }
    }
}
