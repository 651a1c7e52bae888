//! `ferroloop._core`: the native part of the ferroloop event loop.
//!
//! A binding layer over `ferroloop-core`: it holds the Python objects
//! (callbacks, handles, protocols, generators) in the core's containers,
//! converts arguments and errors, calls protocols, enters contexts and
//! reports references to the garbage collector. The mechanisms themselves
//! (registry, scheduler, write queues, flow control, transport lifecycle)
//! are the core's. The module requires the GIL (`gil_used`): the loop's
//! shared state relies on it (see `gil_cell.rs`).
//!
//! # Layers
//! Each module uses only modules of the layers below it (and its own
//! layer's siblings where stated); nothing imports upward:
//! 1. `cpython` (every reach into CPython/PyO3 internals), `gil_cell`,
//!    `errors`, `buffer`, `py_refs`, `compat`, `sockaddr` — no loop
//!    concepts.
//! 2. `handles` — `Handle`/`TimerHandle`; they see their loop only through
//!    the `LoopLink` they share with it.
//! 3. `source` — the one dispatch point: what a ready descriptor runs
//!    (a handle, or a *watcher* of any kind), how sources are released and
//!    traversed.
//! 4. `loop_` — the loop: its state, turn, scheduling, readers, tasks,
//!    asynchronous generators and signals, and `port`, its narrow interface
//!    for the layer above.
//! 5. `sock` (native `sock_*` waiters), `transports` (a base every kind
//!    shares, then one file per kind) and `process` (child processes watched
//!    by pidfd or the SIGCHLD fallback) — watchers, which reach the loop
//!    through its port.
//!
//! # Panics
//! Every entry point from Python goes through PyO3's trampolines, which turn
//! a panic into a `PanicException` (the release profile keeps Rust's
//! unwinding panics for them to catch): the `#[pymethods]` and
//! `#[pyfunction]`s, the GC and deallocation slots, and the vectorcall
//! scheduling methods of `loop_/fastcall.rs` (through PyO3's own trampoline,
//! see `cpython.rs`, except for their common shapes of call, served directly
//! under a `catch_unwind` of their own that raises the same
//! `PanicException`). The one C function installed without any guard is
//! `Loop.get_debug` (`fastcall.rs`), which cannot panic. A panic is a bug all
//! the same: `tests/test_native_boundary.py` calls every native method with
//! absurd arguments and fails on a `PanicException`.
//!
//! # Adding a transport kind
//! One file in `transports/` (a pyclass with a `TransportBase`, implementing
//! `Transport` and invoking `transport_methods!`), registered below, and one
//! Python face in `python/ferroloop/_transports.py`. The loop and `source`
//! do not change.
#![deny(unsafe_op_in_unsafe_fn)]

mod buffer;
mod compat;
mod cpython;
mod errors;
mod gil_cell;
mod handles;
mod loop_;
mod process;
mod py_refs;
mod sock;
mod sockaddr;
mod source;
mod transports;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    loop_::register(m)?;
    m.add_class::<sock::SockWaiter>()?;
    process::register(m)?;
    m.add_class::<transports::stream::StreamTransport>()?;
    m.add_class::<transports::datagram::DatagramTransport>()?;
    m.add_class::<transports::pipe::ReadPipeTransport>()?;
    m.add_class::<transports::pipe::WritePipeTransport>()?;
    m.add_class::<transports::tls::TlsProtocol>()?;
    transports::base::register_native_protocols(
        m.py(),
        vec![transports::base::native_protocol::<
            transports::tls::TlsProtocol,
        >(m.py())],
    );
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
