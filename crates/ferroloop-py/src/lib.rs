//! `ferroloop._core`: the native part of the ferroloop event loop.
//!
//! A thin binding layer over `ferroloop-core`: it converts arguments, holds
//! the Python objects (callbacks, handles, generators) in the core's
//! containers and maps errors. The module requires the GIL (`gil_used`): the
//! loop's shared state relies on it (see `gil_cell.rs`).
#![deny(unsafe_op_in_unsafe_fn)]

mod asyncgens;
mod errors;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod py_refs;
mod registry;
mod sock;
mod transport;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    event_loop::register(m)?;
    m.add_class::<sock::SockWaiter>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
