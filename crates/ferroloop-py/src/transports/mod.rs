//! Transports: what every kind shares (`base.rs`) and each kind's own I/O.
//!
//! A kind is a frozen pyclass holding a [`base::TransportBase`] and its own
//! I/O state; it implements [`base::Transport`] (and, through it, the
//! loop's `Watcher`), and gets the shared Python methods with
//! `transport_methods!`. Its Python face, a subclass of the matching
//! `asyncio` transport class, lives in `python/ferroloop/_transports.py`.

#[macro_use]
pub mod base;
pub mod datagram;
pub mod stream;

use pyo3::prelude::*;

use crate::py_refs;
use crate::source::{Direction, Watcher};
use base::{face, Transport};

/// Every transport kind is a watcher: the loop calls its `read_ready` and
/// `write_ready`, and exceptions and slow calls are reported with its face
/// and asyncio's name of the callback.
impl<T: Transport> Watcher for T {
    fn ready(slf: &Bound<'_, Self>, dir: Direction) -> PyResult<()> {
        match dir {
            Direction::Read => T::read_ready(slf),
            Direction::Write => T::write_ready(slf),
        }
    }

    fn report(slf: &Bound<'_, Self>, dir: Direction, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        let method = callback_name::<T>(dir);
        py_refs::report_transport_error(py)?.call1((face(slf), method, err.into_value(py)))?;
        Ok(())
    }

    const TIMED: bool = true;

    fn log_slow(slf: &Bound<'_, Self>, dir: Direction, seconds: f64) -> PyResult<()> {
        let method = callback_name::<T>(dir);
        py_refs::log_slow_transport(slf.py())?.call1((face(slf), method, seconds))?;
        Ok(())
    }
}

/// The asyncio callback a readiness direction stands for (in reports).
fn callback_name<T: Transport>(dir: Direction) -> &'static str {
    match dir {
        Direction::Read => "_read_ready",
        Direction::Write => T::WRITE_READY,
    }
}
