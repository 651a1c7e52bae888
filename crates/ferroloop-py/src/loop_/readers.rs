//! `add_reader`/`add_writer` and their removal: the registry of watched
//! descriptors as seen from Python, with asyncio's checks and errors.

use std::os::fd::RawFd;

use ferroloop_core::reactor::registry::Removed;
use pyo3::exceptions::{
    PyAttributeError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::Loop;
use crate::errors::os_error;
use crate::handles::{Handle, NewHandle};
use crate::source::{Direction, Source};

/// Converts what asyncio accepts as a file object to a descriptor number,
/// raising `ValueError("Invalid file object: ...")` as
/// `_ensure_fd_no_transport` does. Negative numbers are returned as they are;
/// numbers beyond `i64` are saturated (no descriptor is that large: see
/// `add_io` and `remove_io`, which treat every number above a C `int` as
/// asyncio's selector does).
pub(super) fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = obj.py();
    if let Ok(int) = obj.cast::<PyInt>() {
        return Ok(saturated(int));
    }
    let converted = obj
        .call_method0(intern!(py, "fileno"))
        .and_then(|fileno| py.get_type::<PyInt>().call1((fileno,)))
        .and_then(|fd| Ok(saturated(fd.cast::<PyInt>()?)));
    match converted {
        Err(e)
            if e.is_instance_of::<PyAttributeError>(py)
                || e.is_instance_of::<PyTypeError>(py)
                || e.is_instance_of::<PyValueError>(py) =>
        {
            Err(PyValueError::new_err(format!(
                "Invalid file object: {}",
                obj.repr()?
            )))
        }
        other => other,
    }
}

/// An int as an `i64`, saturated at either end.
fn saturated(int: &Bound<'_, PyInt>) -> i64 {
    int.extract::<i64>().unwrap_or_else(|_| {
        if int.lt(0).unwrap_or(false) {
            i64::MIN
        } else {
            i64::MAX
        }
    })
}

/// `ValueError("Invalid file descriptor: ...")` for the negative number `fd`
/// of `fileobj` (shown as Python shows it when it was saturated).
fn invalid_fd(fileobj: &Bound<'_, PyAny>, fd: i64) -> PyErr {
    let shown = if fd == i64::MIN {
        let py = fileobj.py();
        let number = if fileobj.is_instance_of::<PyInt>() {
            Ok(fileobj.clone())
        } else {
            fileobj
                .call_method0(intern!(py, "fileno"))
                .and_then(|fileno| py.get_type::<PyInt>().call1((fileno,)))
        };
        number
            .and_then(|n| n.str().map(|s| s.to_string()))
            .unwrap_or_else(|_| fd.to_string())
    } else {
        fd.to_string()
    };
    PyValueError::new_err(format!("Invalid file descriptor: {shown}"))
}

/// asyncio's selector hands descriptors to `epoll` as C `int`s.
fn too_large_for_c_int() -> PyErr {
    PyOverflowError::new_err("Python int too large to convert to C int")
}

impl Loop {
    /// Lets go of a source the registry displaced or removed: an
    /// `add_reader` handle is cancelled (as asyncio cancels the handle it
    /// replaces); a watcher is simply dropped.
    pub(super) fn release_source(&self, py: Python<'_>, source: Option<Source>) -> PyResult<()> {
        match source {
            Some(Source::Handle(h)) => {
                let cancelled = Handle::cancel_handle(h.bind(py));
                Handle::release(py, self, h);
                cancelled
            }
            Some(Source::Watcher(w, _)) => {
                drop(w);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// asyncio's `_ensure_fd_no_transport`: a descriptor used by a transport
    /// that is not closing cannot be given to `add_reader` and friends.
    pub(crate) fn ensure_fd_no_transport(
        slf: &Bound<'_, Self>,
        fd: i64,
        fileobj: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let Ok(fd) = RawFd::try_from(fd) else {
            return Ok(());
        };
        let weak = slf
            .get()
            .state
            .with(py, |s| s.transports.get(&fd).map(|w| w.clone_ref(py)));
        let Some(transport) = weak.and_then(|w| w.bind(py).upgrade()) else {
            return Ok(());
        };
        if !transport
            .call_method0(intern!(py, "is_closing"))?
            .is_truthy()?
        {
            return Err(PyRuntimeError::new_err(format!(
                "File descriptor {} is used by transport {}",
                fileobj.repr()?,
                transport.repr()?
            )));
        }
        Ok(())
    }

    pub(super) fn add_io<'py>(
        slf: &Bound<'py, Self>,
        fileobj: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        dir: Direction,
        check_transport: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        let fd = fileobj_to_fd(&fileobj)?;
        if check_transport {
            Self::ensure_fd_no_transport(slf, fd, &fileobj)?;
        }
        this.check_closed()?;
        let fd: RawFd = match RawFd::try_from(fd) {
            Ok(fd) if fd >= 0 => fd,
            Err(_) if fd > 0 => return Err(too_large_for_c_int()),
            _ => return Err(invalid_fd(&fileobj, fd)),
        };
        let new = NewHandle {
            callback,
            args,
            context: None,
            traceback: this.debug(),
        };
        let handle = Handle::new_plain(slf, new, true)?;
        let source = Source::Handle(handle.clone().unbind());
        let owner = Some(fileobj.unbind());
        let result = this.with_dead(py, |s, dead| {
            s.registry.set(&this.poller, fd, owner, source, dir, dead)
        });
        match result {
            Ok(previous) => this.release_source(py, previous).map(|()| handle),
            Err(e) => Err(os_error(e)),
        }
    }

    pub(super) fn remove_io(
        slf: &Bound<'_, Self>,
        fileobj: Bound<'_, PyAny>,
        dir: Direction,
        check_transport: bool,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let fd = fileobj_to_fd(&fileobj)?;
        if check_transport {
            Self::ensure_fd_no_transport(slf, fd, &fileobj)?;
        }
        if this.is_closed_now() || fd > i64::from(RawFd::MAX) {
            // Nothing is registered under a number beyond a C `int`.
            return Ok(false);
        }
        let result = this.with_dead(py, |s, dead| {
            let fd = match RawFd::try_from(fd) {
                Ok(fd) if fd >= 0 => fd,
                // A closed file object (`fileno()` is -1) is found by
                // identity, as `selectors` does.
                _ => s
                    .registry
                    .find_by_owner(|owner| owner.as_ptr() == fileobj.as_ptr())?,
            };
            Some(s.registry.remove(&this.poller, fd, dir, dead))
        });
        match result {
            None => Err(invalid_fd(&fileobj, fd)),
            Some(Err(e)) => Err(os_error(e)),
            Some(Ok(Removed::Payload(source))) => {
                this.release_source(py, Some(source)).map(|()| true)
            }
            Some(Ok(Removed::NotRegistered | Removed::NoPayload)) => Ok(false),
        }
    }
}
