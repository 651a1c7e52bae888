//! Errors: OS errors as Python exceptions, the loop's own errors, and the
//! one rule for exceptions raised by user code the loop calls.
//!
//! PyO3's default `io::Error` conversion does not set `errno`; here an OS
//! error becomes `OSError(errno, strerror)`, which Python's `OSError`
//! constructor turns into the matching subclass (`FileNotFoundError`,
//! `BlockingIOError`, ...), with `.errno` and `.strerror` set.

use std::io;

use ferroloop_core::sys::strerror;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit};
use pyo3::{PyErr, PyResult, Python};

/// Whether `err` must propagate out of the loop instead of going to the
/// exception handler (`KeyboardInterrupt`, `SystemExit`), as asyncio lets
/// them through `Handle._run` and the transports' callbacks.
pub fn is_interrupt(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

/// The loop's rule for an exception from user code (a callback, a protocol
/// method): `KeyboardInterrupt` and `SystemExit` propagate; anything else
/// goes to `handle` (which reports it, or turns it into a fatal error, or
/// sets it on a future).
pub fn unless_interrupt<T>(
    py: Python<'_>,
    result: PyResult<T>,
    handle: impl FnOnce(PyErr) -> PyResult<T>,
) -> PyResult<T> {
    match result {
        Err(err) if !is_interrupt(py, &err) => handle(err),
        other => other,
    }
}

/// `OSError(errno, strerror)` for an OS error, a plain `OSError` otherwise.
pub fn os_error(err: io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => PyOSError::new_err((code, strerror(code))),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// `RuntimeError('Event loop is closed')`.
pub fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}
