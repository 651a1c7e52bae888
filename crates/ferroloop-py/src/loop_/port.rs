//! The narrow interface of the loop for the objects above it: transports of
//! every kind and socket waiters. They watch and unwatch their descriptor,
//! schedule callbacks, borrow the shared receive buffer and the spare
//! `bytes` object of received data, make futures, read the debug flag and
//! report errors; nothing else of the loop's state is theirs to touch.

use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;

use ferroloop_core::io::read_policy::fits;
use ferroloop_core::reactor::registry::Removed;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyWeakrefReference};

use super::{Loop, READ_BUFFER_SIZE};
use crate::cpython::OwnedBytes;
use crate::errors::os_error;
use crate::source::{Direction, Source, Watcher};

/// The loop's shared receive buffer, lent to one read at a time and given
/// back when dropped (a fresh one is made if it is already lent).
pub struct ReadBuffer<'a> {
    lp: &'a Loop,
    py: Python<'a>,
    buf: Vec<u8>,
}

impl Deref for ReadBuffer<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for ReadBuffer<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for ReadBuffer<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.lp.state.with(self.py, |s| s.read_buffer = buf);
    }
}

impl Loop {
    /// Borrows the shared receive buffer (`READ_BUFFER_SIZE` bytes).
    pub(crate) fn read_buffer<'a>(&'a self, py: Python<'a>) -> ReadBuffer<'a> {
        let buf = self.state.with(py, |s| std::mem::take(&mut s.read_buffer));
        let buf = if buf.len() == READ_BUFFER_SIZE {
            buf
        } else {
            vec![0; READ_BUFFER_SIZE]
        };
        ReadBuffer { lp: self, py, buf }
    }

    /// A `bytes` to carry `n` received bytes: the loop's spare object if
    /// it fits (`read_policy::fits`), otherwise a new one; `None` if one
    /// cannot be allocated.
    pub(crate) fn bytes_for<'py>(&self, py: Python<'py>, n: usize) -> Option<OwnedBytes<'py>> {
        let spare = self.state.with(py, |s| match s.spare_bytes {
            Some((_, capacity)) if fits(capacity, n) => s.spare_bytes.take(),
            _ => None,
        });
        // SAFETY: the spare was reclaimed by `recycle_bytes` with its
        // capacity, and the loop's state lends it to nobody.
        spare
            .and_then(|(obj, capacity)| unsafe {
                OwnedBytes::reclaim(obj.into_bound(py), capacity)
            })
            .or_else(|| OwnedBytes::new(py, n))
    }

    /// `data` (not empty) copied into a `bytes` from [`Loop::bytes_for`],
    /// with the size that object was allocated for (to give it back with
    /// `recycle_bytes`); `None` if none can be allocated.
    pub(crate) fn bytes_of<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
    ) -> Option<(Bound<'py, PyBytes>, usize)> {
        let mut owned = self.bytes_for(py, data.len())?;
        // SAFETY: the object has room for `data.len()` bytes, and nothing
        // else references it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), owned.as_mut_ptr(), data.len()) };
        let capacity = owned.capacity();
        Some((owned.finish(data.len()), capacity))
    }

    /// After a protocol was handed `data`: kept as the loop's spare object if
    /// nobody references it any more.
    ///
    /// # Safety
    /// `data` must come from [`OwnedBytes::finish`] on an object of
    /// `capacity` bytes.
    pub(crate) unsafe fn recycle_bytes(
        &self,
        py: Python<'_>,
        data: Bound<'_, PyBytes>,
        capacity: usize,
    ) {
        // SAFETY: forwarded from the caller.
        if let Some(owned) = unsafe { OwnedBytes::reclaim(data, capacity) } {
            self.keep_spare_bytes(py, owned);
        }
    }

    /// Keeps an object nobody else references as the loop's spare.
    pub(crate) fn keep_spare_bytes(&self, py: Python<'_>, owned: OwnedBytes<'_>) {
        let capacity = owned.capacity();
        let obj = owned.into_unfilled().unbind();
        let old = self
            .state
            .with(py, |s| s.spare_bytes.replace((obj, capacity)));
        drop(old);
    }

    /// Calls `watcher` whenever `fd` is ready in direction `dir`, replacing
    /// whatever watched that direction. A closed loop watches nothing.
    pub(crate) fn watch<T: Watcher>(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        watcher: &Bound<'_, T>,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return Ok(());
        }
        let source = Source::watcher(watcher);
        let result = this.with_dead(py, |s, dead| {
            s.registry.set(&this.poller, fd, None, source, dir, dead)
        });
        match result {
            Ok(previous) => this.release_source(py, previous),
            Err(e) => Err(os_error(e)),
        }
    }

    /// Stops watching `fd` in direction `dir`, whatever watches it there
    /// (asyncio's `_remove_reader`/`_remove_writer`).
    pub(crate) fn unwatch(slf: &Bound<'_, Self>, fd: RawFd, dir: Direction) {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return;
        }
        let removed = this.with_dead(py, |s, dead| s.registry.remove(&this.poller, fd, dir, dead));
        if let Ok(Removed::Payload(source)) = removed {
            // Errors from cancelling a displaced handle cannot happen outside
            // debug mode and are not the caller's to report.
            let _ = this.release_source(py, Some(source));
        }
    }

    /// Stops watching `fd` in direction `dir` if `watcher` is what watches
    /// it (a waiter taking itself off, leaving whatever replaced it).
    pub(crate) fn unwatch_if<T: Watcher>(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        watcher: &Bound<'_, T>,
        dir: Direction,
    ) {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return;
        }
        let watcher = watcher.as_any();
        this.with_dead(py, |s, dead| {
            s.registry
                .remove_if(&this.poller, fd, dir, |source| source.is(watcher), dead)
        });
    }

    /// Records `transport` as the owner of `fd`, for `add_reader`'s check
    /// that a transport's descriptor is not watched by anyone else.
    pub(crate) fn adopt_fd(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        transport: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let weak = PyWeakrefReference::new(transport)?.unbind();
        let old = slf
            .get()
            .state
            .with(slf.py(), |s| s.transports.insert(fd, weak));
        drop(old);
        Ok(())
    }

    /// The owner of `fd` is about to close it: forget every registration of
    /// the descriptor and its transport.
    pub(crate) fn forget_fd(slf: &Bound<'_, Self>, fd: RawFd) {
        let py = slf.py();
        let this = slf.get();
        this.with_dead(py, |s, dead| {
            if !this.is_closed_now() {
                s.registry.forget(&this.poller, fd, dead);
            }
            dead.objects
                .extend(s.transports.remove(&fd).map(Py::into_any));
        });
    }

    /// `call_soon(callback, *args)` in the current context.
    pub(crate) fn call_soon_plain(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::call_soon(slf, callback.clone(), args, None).map(drop)
    }

    /// A new future of this loop, through `loop.create_future()` (so that
    /// an override takes effect).
    pub(crate) fn new_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method0(intern!(slf.py(), "create_future"))
    }

    /// Reports an exception that escaped `watcher`, a native watcher that
    /// is not a transport, as a failed callback.
    pub(crate) fn report_watcher_error(
        slf: &Bound<'_, Self>,
        watcher: &Bound<'_, PyAny>,
        err: PyErr,
    ) -> PyResult<()> {
        let py = slf.py();
        crate::py_refs::report_watcher_error(py)?.call1((slf, watcher, err.into_value(py)))?;
        Ok(())
    }

    /// `loop.call_exception_handler(context)` (through Python, so that
    /// overrides and custom handlers take effect).
    pub(crate) fn report(slf: &Bound<'_, Self>, context: Bound<'_, PyDict>) -> PyResult<()> {
        slf.call_method1(intern!(slf.py(), "call_exception_handler"), (context,))
            .map(drop)
    }
}
