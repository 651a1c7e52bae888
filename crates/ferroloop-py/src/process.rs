//! Child processes watched by the loop's poller, without a thread per child
//! (the mechanisms are `ferroloop_core::process`).
//!
//! A [`ChildWatch`] follows one child: in pidfd mode it is itself a watcher
//! of the child's pidfd, which becomes readable when the child exits; in
//! SIGCHLD mode (older kernels, or `FERROLOOP_PIDFD=0`) it belongs to its
//! loop's [`ChildReaper`], a watcher of an eventfd that the process-wide
//! SIGCHLD handler wakes, which then tries each of its children by pid.
//! Either way, once the child has exited it is reaped (that child only)
//! and the watch calls its callback with the return code, in the loop's
//! thread: `Popen.returncode`'s convention (minus the signal number for a
//! killed child), or `None` if other code reaped the child first (a
//! `Popen.poll()` or `wait()`, a child watcher calling `waitpid(-1)`).
//!
//! `detach()` (when the loop closes) hands a running child to the process's
//! orphan reaper, as dropping the watch does: no zombie is left behind.
//! The watch also signals the child: through the pidfd (exactly that
//! process, never a recycled pid), or by pid while it is not reaped.
//!
//! This module sits with the transports, above the loop, and reaches the
//! loop only through its port.

use std::os::fd::RawFd;

use ferroloop_core::process::sigchld::{self, SigchldWake};
use ferroloop_core::process::{self, Child, WatchMode};
use pyo3::exceptions::{PyProcessLookupError, PyRuntimeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use crate::errors::os_error;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::source::{Direction, Watcher};

/// `"pidfd"` or `"sigchld"`: how this process watches its children.
#[pyfunction]
fn child_watch_mode() -> &'static str {
    match process::mode() {
        WatchMode::Pidfd => "pidfd",
        WatchMode::Sigchld => "sigchld",
    }
}

struct WatchState {
    /// The child, until it is reaped or detached.
    child: Option<Child>,
    /// Called with the return code (or `None`) once the child is reaped.
    callback: Option<Py<PyAny>>,
}

/// One child process watched by a loop.
#[pyclass(module = "ferroloop._core", name = "ChildWatch", frozen)]
pub struct ChildWatch {
    loop_: Py<Loop>,
    pid: i32,
    /// The pidfd this watch is registered on, in pidfd mode.
    pidfd: Option<RawFd>,
    st: GilCell<WatchState>,
}

impl ChildWatch {
    /// Reaps the child if it has exited and calls the callback.
    fn poll(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(result) = this.st.with(py, |s| s.child.as_mut().map(Child::try_wait)) else {
            return Ok(());
        };
        match result {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Self::finish(slf, Some(status.returncode())),
            // ECHILD: reaped by other code; the status is not ours to know.
            Err(e) if e.raw_os_error() == Some(ferroloop_core::sys::ECHILD) => {
                Self::finish(slf, None)
            }
            Err(e) => {
                Self::finish(slf, None)?;
                Err(os_error(e))
            }
        }
    }

    /// Stops watching, closes the pidfd and calls the callback.
    fn finish(slf: &Bound<'_, Self>, returncode: Option<i32>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let Some(fd) = this.pidfd {
            Loop::forget_fd(this.loop_.bind(py), fd);
        }
        let (child, callback) = this.st.with(py, |s| (s.child.take(), s.callback.take()));
        drop(child);
        match callback {
            Some(callback) => callback.call1(py, (returncode,)).map(drop),
            None => Ok(()),
        }
    }

    /// Whether the child is still watched (not reaped nor detached).
    fn is_watched(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.child.is_some())
    }
}

impl Watcher for ChildWatch {
    fn ready(slf: &Bound<'_, Self>, _dir: Direction) -> PyResult<()> {
        Self::poll(slf)
    }

    fn report(slf: &Bound<'_, Self>, _dir: Direction, err: PyErr) -> PyResult<()> {
        Loop::report_watcher_error(slf.get().loop_.bind(slf.py()), slf, err)
    }
}

#[pymethods]
impl ChildWatch {
    /// Watches child `pid` of this process on `loop_`; `callback(returncode)`
    /// runs once it has exited. In SIGCHLD mode, `reaper` is the loop's
    /// [`ChildReaper`].
    #[new]
    #[pyo3(signature = (loop_, pid, callback, reaper=None))]
    fn new(
        loop_: &Bound<'_, Loop>,
        pid: i32,
        callback: Bound<'_, PyAny>,
        reaper: Option<&Bound<'_, ChildReaper>>,
    ) -> PyResult<Py<Self>> {
        let py = loop_.py();
        let mode = process::mode();
        if mode == WatchMode::Sigchld && reaper.is_none() {
            return Err(PyRuntimeError::new_err(
                "children are watched through a ChildReaper here",
            ));
        }
        let (child, gone) = match Child::new(pid, mode) {
            Ok(child) => (Some(child), false),
            // The pid is not there any more: other code reaped it already.
            Err(e) if e.raw_os_error() == Some(ferroloop_core::sys::ESRCH) => (None, true),
            Err(e) => return Err(os_error(e)),
        };
        let watch = Bound::new(
            py,
            ChildWatch {
                loop_: loop_.clone().unbind(),
                pid,
                pidfd: child.as_ref().and_then(Child::pidfd),
                st: GilCell::new(WatchState {
                    child,
                    callback: Some(callback.unbind()),
                }),
            },
        )?;
        if gone {
            let finish = watch.getattr(pyo3::intern!(py, "_finish_gone"))?;
            Loop::call_soon_plain(loop_, &finish, PyTuple::empty(py))?;
        } else if let Some(fd) = watch.get().pidfd {
            Loop::watch(loop_, fd, &watch, Direction::Read)?;
        } else if let Some(reaper) = reaper {
            ChildReaper::add(reaper, &watch);
        }
        Ok(watch.unbind())
    }

    /// The callback of a child that was gone before it could be watched.
    fn _finish_gone(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finish(slf, None)
    }

    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends signal `sig` to the child; `ProcessLookupError` once it has
    /// been reaped.
    fn send_signal(&self, py: Python<'_>, sig: i32) -> PyResult<()> {
        self.st
            .with(py, |s| s.child.as_ref().map(|c| c.send_signal(sig)))
            .unwrap_or_else(|| {
                Err(std::io::Error::from_raw_os_error(
                    ferroloop_core::sys::ESRCH,
                ))
            })
            .map_err(|e| match e.raw_os_error() {
                Some(ferroloop_core::sys::ESRCH) => PyProcessLookupError::new_err(()),
                _ => os_error(e),
            })
    }

    /// Whether the child has exited (peeking: it is not reaped here).
    fn has_exited(&self, py: Python<'_>) -> bool {
        self.st
            .with(py, |s| s.child.as_ref().is_none_or(Child::has_exited))
    }

    /// Stops watching (the loop is closing): a child still running is left
    /// to the process's orphan reaper; the callback is not called.
    fn detach(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if let Some(fd) = this.pidfd {
            if this.is_watched(py) {
                Loop::forget_fd(this.loop_.bind(py), fd);
            }
        }
        let (child, callback) = this.st.with(py, |s| (s.child.take(), s.callback.take()));
        drop(child);
        drop(callback);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.is_watched(py) {
            "watched"
        } else {
            "done"
        };
        format!("<ChildWatch pid={} {state}>", self.pid)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            visit.call(&s.callback)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let callback = self.st.with(py, |s| s.callback.take());
        drop(callback);
    }
}

/// A loop's children in SIGCHLD mode: woken through an eventfd at every
/// SIGCHLD, it tries each of its children by pid.
#[pyclass(module = "ferroloop._core", name = "ChildReaper", frozen)]
pub struct ChildReaper {
    loop_: Py<Loop>,
    /// The eventfd the SIGCHLD handler wakes; `None` once closed.
    wake: GilCell<Option<SigchldWake>>,
    watches: GilCell<Vec<Py<ChildWatch>>>,
}

impl ChildReaper {
    fn add(slf: &Bound<'_, Self>, watch: &Bound<'_, ChildWatch>) {
        let py = slf.py();
        let this = slf.get();
        this.watches.with(py, |w| w.push(watch.clone().unbind()));
        // Other code may have replaced the SIGCHLD handler since (Python's
        // `signal.signal`): install it again, chained to the new one.
        let _ = sigchld::ensure_installed();
        // The child may have exited before it was listed: look once more.
        this.wake.with(py, |w| w.as_ref().map(SigchldWake::nudge));
    }
}

impl Watcher for ChildReaper {
    fn ready(slf: &Bound<'_, Self>, _dir: Direction) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.wake.with(py, |w| w.as_ref().map(SigchldWake::take));
        let watches: Vec<Py<ChildWatch>> = this
            .watches
            .with(py, |w| w.iter().map(|w| w.clone_ref(py)).collect());
        let mut result = Ok(());
        for watch in &watches {
            let outcome = ChildWatch::poll(watch.bind(py));
            if result.is_ok() {
                result = outcome;
            }
        }
        let done: Vec<Py<ChildWatch>> = this.watches.with(py, |w| {
            let (live, done) = std::mem::take(w)
                .into_iter()
                .partition(|watch| watch.get().is_watched(py));
            *w = live;
            done
        });
        drop(done);
        result
    }

    fn report(slf: &Bound<'_, Self>, _dir: Direction, err: PyErr) -> PyResult<()> {
        Loop::report_watcher_error(slf.get().loop_.bind(slf.py()), slf, err)
    }
}

#[pymethods]
impl ChildReaper {
    /// The SIGCHLD-mode reaper of `loop_`.
    #[new]
    fn new(loop_: &Bound<'_, Loop>) -> PyResult<Py<Self>> {
        let py = loop_.py();
        let wake = SigchldWake::new().map_err(os_error)?;
        let fd = wake.fd();
        let reaper = Bound::new(
            py,
            ChildReaper {
                loop_: loop_.clone().unbind(),
                wake: GilCell::new(Some(wake)),
                watches: GilCell::new(Vec::new()),
            },
        )?;
        Loop::watch(loop_, fd, &reaper, Direction::Read)?;
        Ok(reaper.unbind())
    }

    /// Stops watching (the loop is closing): every child still running goes
    /// to the orphan reaper.
    fn close(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let watches = this.watches.with(py, std::mem::take);
        for watch in &watches {
            ChildWatch::detach(watch.bind(py));
        }
        drop(watches);
        let wake = this.wake.with(py, Option::take);
        if let Some(wake) = &wake {
            Loop::forget_fd(this.loop_.bind(py), wake.fd());
        }
        drop(wake);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let n = self.watches.with(py, |w| w.len());
        format!("<ChildReaper children={n}>")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(w) = unsafe { self.watches.peek_for_gc() } {
            for watch in w {
                visit.call(watch)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let watches = self.watches.with(py, std::mem::take);
        drop(watches);
    }
}

/// Registers the child-watching classes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(child_watch_mode, m)?)?;
    m.add_class::<ChildWatch>()?;
    m.add_class::<ChildReaper>()?;
    Ok(())
}
