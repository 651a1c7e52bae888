//! Scheduling: `call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`
//! (whose Python entry points are in `fastcall.rs`), and the handles the
//! Python layer makes for signal handlers and asyncio's `_add_callback`.

use std::sync::atomic::Ordering::Relaxed;

use ferroloop_core::monotonic;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyTuple};

use super::{Loop, Timer};
use crate::compat;
use crate::cpython::current_thread_id;
use crate::handles::{Handle, NewHandle};
use crate::py_refs;
use crate::source::Ready;

impl Loop {
    /// asyncio's `_check_thread` (debug mode only).
    fn check_thread(&self) -> PyResult<()> {
        let owner = self.thread_id.load(Relaxed);
        if owner != 0 && owner != current_thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// What a new handle for `callback(*args)` needs, after asyncio's
    /// debug-mode checks (`method` names the caller in their messages).
    #[inline]
    fn new_handle<'py>(
        slf: &Bound<'py, Self>,
        method: &str,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
        check_thread: bool,
    ) -> PyResult<NewHandle<'py>> {
        let this = slf.get();
        let debug = this.debug();
        if debug {
            if check_thread {
                this.check_thread()?;
            }
            py_refs::check_callback(slf.py())?.call1((&callback, method))?;
        }
        Ok(NewHandle {
            callback,
            args,
            context,
            traceback: debug,
        })
    }

    #[inline]
    pub(super) fn push_ready(&self, py: Python<'_>, item: Ready) {
        self.state.with(py, |s| {
            s.stats.counters.callbacks_scheduled += 1;
            s.sched.ready.push_back(item)
        });
    }

    /// `call_soon(callback, *args, context=None)`.
    #[inline]
    pub(crate) fn call_soon<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let new = Self::new_handle(slf, "call_soon", callback, args, context, true)?;
        let handle = Handle::new_plain(slf, new, true)?;
        this.push_ready(py, Ready::Handle(handle.clone().unbind()));
        Ok(handle)
    }

    /// `call_soon_threadsafe(callback, *args, context=None)`: safe from any
    /// thread; wakes the loop if it sleeps. The handle is a
    /// `_ThreadSafeHandle` where asyncio's is (its `cancel()` waits for a
    /// callback already running).
    pub(super) fn call_soon_threadsafe<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        slf.get().check_closed()?;
        let new = Self::new_handle(slf, "call_soon_threadsafe", callback, args, context, false)?;
        let handle = if compat::threadsafe_handles_wait(slf.py())? {
            Handle::new_threadsafe(slf, new)?
        } else {
            Handle::new_plain(slf, new, true)?
        };
        Self::queue_threadsafe(slf, handle)
    }

    /// `call_soon_threadsafe` for the loop's own callbacks: no debug-mode
    /// checks, no creation traceback, the current context.
    pub(super) fn call_soon_threadsafe_internal<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        let new = NewHandle {
            callback,
            args,
            context: None,
            traceback: false,
        };
        Self::queue_threadsafe(slf, Handle::new_plain(slf, new, true)?)
    }

    fn queue_threadsafe<'py>(
        slf: &Bound<'py, Self>,
        handle: Bound<'py, Handle>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.push_ready(py, Ready::Handle(handle.clone().unbind()));
        if this.self_pipe.wake_if_sleeping() {
            this.threadsafe_wakeups.fetch_add(1, Relaxed);
        }
        Ok(handle)
    }

    /// `call_at(when, callback, *args, context=None)`.
    pub(super) fn call_at<'py>(
        slf: &Bound<'py, Self>,
        when: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        slf.get().check_closed()?;
        let new = Self::new_handle(slf, "call_at", callback, args, context, true)?;
        let when_f: f64 = when.extract()?;
        let when_obj = (!when.is_exact_instance_of::<PyFloat>()).then(|| when.unbind());
        Self::schedule_timer(slf, new, when_f, when_obj)
    }

    /// `call_later(delay, callback, *args, context=None)`.
    pub(super) fn call_later<'py>(
        slf: &Bound<'py, Self>,
        delay: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        // asyncio computes `self.time() + delay`: anything but a float or an
        // int goes through Python's addition, which fails as asyncio's does
        // ("unsupported operand type(s) for +: 'float' and 'str'").
        let when =
            if delay.is_exact_instance_of::<PyFloat>() || delay.is_exact_instance_of::<PyInt>() {
                monotonic() + delay.extract::<f64>()?
            } else {
                PyFloat::new(slf.py(), monotonic())
                    .add(&delay)?
                    .extract::<f64>()?
            };
        slf.get().check_closed()?;
        // asyncio's call_later goes through call_at, whose name it reports.
        let new = Self::new_handle(slf, "call_at", callback, args, context, true)?;
        Self::schedule_timer(slf, new, when, None)
    }

    fn schedule_timer<'py>(
        slf: &Bound<'py, Self>,
        new: NewHandle<'py>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let handle = Handle::new_timer(slf, new, when, when_obj)?;
        let timer = Timer(handle.clone().unbind());
        slf.get().state.with(slf.py(), |s| {
            s.stats.counters.timers_scheduled += 1;
            s.sched.timers.push(when, timer)
        });
        Ok(handle)
    }

    /// A handle for `callback(*args)` that is not scheduled (signal handlers).
    pub(super) fn unscheduled_handle<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        let new = NewHandle {
            callback,
            args,
            context: None,
            traceback: slf.get().debug(),
        };
        Handle::new_plain(slf, new, false)
    }

    /// asyncio's `_add_callback`: queue a handle unless it is cancelled.
    pub(super) fn add_callback(slf: &Bound<'_, Self>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        match handle.cast::<Handle>() {
            Ok(handle) => {
                if !handle.get().is_cancelled() {
                    slf.get()
                        .push_ready(py, Ready::Handle(handle.clone().unbind()));
                }
            }
            Err(_) => {
                // A handle of another implementation: run it through `_run`.
                if !handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                    let new = NewHandle {
                        callback: handle.getattr(intern!(py, "_run"))?,
                        args: PyTuple::empty(py),
                        context: None,
                        traceback: false,
                    };
                    let ours = Handle::new_plain(slf, new, true)?;
                    slf.get().push_ready(py, Ready::Handle(ours.unbind()));
                }
            }
        }
        Ok(())
    }
}
