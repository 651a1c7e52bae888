//! TLS as a layer on a stream transport: asyncio's `sslproto.SSLProtocol`,
//! natively.
//!
//! The layer is the *protocol* of the transport below it (a native stream
//! transport, a TLS transport for TLS over TLS, or any transport given to
//! `start_tls`), and the *core* of the transport the application sees (its
//! face is `ferroloop._transports.SSLProtocolTransport`). All TLS work is Python's
//! own `ssl` module, so every `SSLContext` setting holds: an `SSLObject`
//! made by `SSLContext.wrap_bio` over two `MemoryBIO`s. Records from below
//! are written into the incoming BIO and application data is read from the
//! `SSLObject`; application writes go through `SSLObject.write` and the
//! outgoing BIO's bytes go below. The states and what each input does in
//! them are `ferroloop_core::tls::state`; the behaviour, messages and
//! exceptions are asyncio's (as of 3.12, whose fixes of 3.11's abort path
//! are taken on every version).
//!
//! What makes it cheaper than asyncio's pure-Python protocol: no Python
//! frame per record. The C methods of `ssl` (`_ssl._SSLSocket.read`,
//! `write`, `pending`, the BIOs' `write`/`read`) are called directly; a
//! native stream transport below hands received bytes over without a
//! Python call (`NativeProtocol`) and takes outgoing records on its native
//! write path; reads stop when the BIOs say nothing is left, instead of
//! raising and catching `SSLWantReadError` each time.

use std::collections::VecDeque;

use ferroloop_core::tls::state::{AppState, Drive, Eof, StartShutdown, TlsState};
use ferroloop_core::transport::flow::{FlowControl, PauseAt};
use pyo3::exceptions::{
    PyAssertionError, PyConnectionAbortedError, PyConnectionResetError, PyOSError, PyRuntimeError,
    PyTimeoutError, PyValueError,
};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PySlice, PyTuple};
use pyo3::{intern, PyTraverseError};

use super::base::{water_marks, NativeProtocol};
use super::stream::StreamTransport;
use crate::cpython::{memoryview_of, same_object_type};
use crate::errors::unless_interrupt;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::py_refs;

mod lifecycle;
mod methods;
mod records;

/// Buffer size of a read from the `SSLObject` (asyncio's `max_size`).
const MAX_SIZE: usize = 256 * 1024;
/// Default high water mark of the application's outgoing data, in KiB
/// (asyncio's `FLOW_CONTROL_HIGH_WATER_SSL_WRITE`).
const HIGH_WATER_WRITE_KIB: usize = 512;
/// Default high water mark of the incoming records (asyncio's
/// `FLOW_CONTROL_HIGH_WATER_SSL_READ`).
const HIGH_WATER_READ_KIB: usize = 256;
/// Writes to a lost connection after which each one logs a warning.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// The `ssl` types the layer tells apart.
struct SslTypes {
    want_read: Py<PyAny>,
    syscall: Py<PyAny>,
    ssl_error: Py<PyAny>,
    certificate_error: Py<PyAny>,
    ssl_object: Py<PyAny>,
    memory_bio: Py<PyAny>,
    cancelled_error: Py<PyAny>,
}

fn ssl_types(py: Python<'_>) -> PyResult<&SslTypes> {
    static CELL: PyOnceLock<SslTypes> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let ssl = py.import("ssl")?;
        let get = |name: &str| ssl.getattr(name).map(Bound::unbind);
        Ok(SslTypes {
            want_read: get("SSLWantReadError")?,
            syscall: get("SSLSyscallError")?,
            ssl_error: get("SSLError")?,
            certificate_error: get("CertificateError")?,
            ssl_object: get("SSLObject")?,
            memory_bio: get("MemoryBIO")?,
            cancelled_error: py
                .import("asyncio.exceptions")?
                .getattr("CancelledError")?
                .unbind(),
        })
    })
}

/// Whether `err` is one of asyncio's `SSLAgainErrors` (try again later).
fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    let t = ssl_types(py)?;
    Ok(err.matches(py, t.want_read.bind(py))? || err.matches(py, t.syscall.bind(py))?)
}

/// How application data reaches the application protocol.
enum AppReceiver {
    /// `data_received`.
    Plain,
    /// `get_buffer` and `buffer_updated`.
    Buffered {
        get_buffer: Py<PyAny>,
        buffer_updated: Py<PyAny>,
    },
}

struct State {
    state: TlsState,
    app_state: AppState,
    /// The `SSLObject` (what `get_extra_info('ssl_object')` returns).
    sslobj: Py<PyAny>,
    /// Where `read`, `write`, `pending`, `do_handshake` and `shutdown` are
    /// called: the `SSLObject`'s C object when it is a plain `SSLObject`
    /// (its Python methods only forward to it), else the `SSLObject`.
    sslc: Py<PyAny>,
    /// Whether `sslc` is the C object (`shutdown` is its name for `unwrap`).
    direct: bool,
    incoming: Py<PyAny>,
    outgoing: Py<PyAny>,
    app_protocol: Option<Py<PyAny>>,
    app_receiver: AppReceiver,
    /// The application's transport (face); `None` once the connection is
    /// lost.
    app_transport: Option<Py<PyAny>>,
    app_transport_created: bool,
    /// The face's `_closed` flag.
    app_closed: bool,
    /// The transport below; `None` before `connection_made` and after
    /// `connection_lost`.
    transport: Option<Py<PyAny>>,
    /// Its native core, when it is a native stream transport.
    transport_core: Option<Py<StreamTransport>>,
    waiter: Option<Py<PyAny>>,
    extra: Py<PyDict>,
    /// Application data not yet taken by the `SSLObject`.
    backlog: VecDeque<Py<PyAny>>,
    backlog_size: usize,
    /// The transport below asked us to stop writing.
    ssl_writing_paused: bool,
    app_reading_paused: bool,
    /// We asked the transport below to stop reading.
    ssl_reading_paused: bool,
    eof_received: bool,
    /// Flow control of the application's writes (outgoing BIO + backlog).
    app_writing: FlowControl,
    /// Flow control of the incoming BIO.
    ssl_reading: FlowControl,
    handshake_timeout: Py<PyAny>,
    shutdown_timeout: Py<PyAny>,
    handshake_timeout_handle: Option<Py<PyAny>>,
    shutdown_timeout_handle: Option<Py<PyAny>>,
    handshake_start_time: Option<f64>,
    conn_lost: u32,
    /// The buffer handed out by `get_buffer` (transports that are not
    /// native stream transports).
    read_buffer: Option<Py<PyByteArray>>,
}

/// The TLS layer: protocol of the transport below, core of the application's
/// transport.
#[pyclass(module = "ferroloop._core", name = "SSLProtocol", frozen, weakref)]
pub struct TlsProtocol {
    loop_: Py<Loop>,
    st: GilCell<State>,
}

impl NativeProtocol for TlsProtocol {
    fn received(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        let py = slf.py();
        let view = memoryview_of(py, data)?;
        let incoming = slf.get().st.with(py, |s| s.incoming.clone_ref(py));
        let written = incoming.call_method1(py, intern!(py, "write"), (&view,));
        // The view points into memory the caller reuses: make sure nothing
        // can read through it later.
        view.call_method0(intern!(py, "release"))?;
        written?;
        Self::drive_incoming(slf)
    }
}

/// Validates a timeout as asyncio does; `None` gives the default.
fn timeout_or_default<'py>(
    py: Python<'py>,
    value: Option<Bound<'py, PyAny>>,
    name: &str,
    default: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return py.import("asyncio.constants")?.getattr(default);
    };
    if value.le(0)? {
        return Err(PyValueError::new_err(format!(
            "{name} should be a positive number, got {value}"
        )));
    }
    Ok(value)
}

fn app_receiver(protocol: &Bound<'_, PyAny>) -> PyResult<AppReceiver> {
    let py = protocol.py();
    if protocol.hasattr(intern!(py, "get_buffer"))?
        && protocol.is_instance(py_refs::buffered_protocol(py)?)?
    {
        Ok(AppReceiver::Buffered {
            get_buffer: protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
            buffer_updated: protocol.getattr(intern!(py, "buffer_updated"))?.unbind(),
        })
    } else {
        Ok(AppReceiver::Plain)
    }
}

impl TlsProtocol {
    fn lp<'py>(&self, py: Python<'py>) -> &Bound<'py, Loop> {
        self.loop_.bind(py)
    }

    fn debug(&self, py: Python<'_>) -> bool {
        self.lp(py).get().debug()
    }

    fn get<T>(&self, py: Python<'_>, f: impl FnOnce(&State) -> T) -> T {
        self.st.with(py, |s| f(s))
    }

    fn state(&self, py: Python<'_>) -> TlsState {
        self.get(py, |s| s.state)
    }

    fn set_state(&self, py: Python<'_>, to: TlsState) -> PyResult<()> {
        self.st
            .with(py, |s| s.state.become_(to))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get(py, |s| s.transport.as_ref().map(|t| t.clone_ref(py)))
    }

    fn app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get(py, |s| s.app_protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    fn sslc<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.get(py, |s| s.sslc.clone_ref(py)).into_bound(py)
    }

    fn debug_log(slf: &Bound<'_, Self>, message: &str) -> PyResult<()> {
        py_refs::debug_log(slf.py())?.call1(("%r%s", slf, message))?;
        Ok(())
    }

    /// `loop.call_soon(callback, *args)`.
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Loop::call_soon_plain(slf.get().lp(slf.py()), callback, args)
    }

    /// `loop.call_later(delay, method)` for a method of this layer.
    fn call_later_method(
        slf: &Bound<'_, Self>,
        delay: &Py<PyAny>,
        method: &str,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let callback = slf.as_any().getattr(method)?;
        Ok(slf
            .get()
            .lp(py)
            .call_method1(intern!(py, "call_later"), (delay, callback))?
            .unbind())
    }

    fn cancel_timer(py: Python<'_>, handle: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(handle) = handle {
            handle.call_method0(py, intern!(py, "cancel"))?;
        }
        Ok(())
    }

    fn wakeup_waiter(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let Some(waiter) = slf.get().st.with(py, |s| s.waiter.take()) else {
            return Ok(());
        };
        let waiter = waiter.into_bound(py);
        if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            match exc {
                Some(exc) => waiter.call_method1(intern!(py, "set_exception"), (exc,))?,
                None => waiter.call_method1(intern!(py, "set_result"), (py.None(),))?,
            };
        }
        Ok(())
    }

    /// asyncio's `_fatal_error`: force the transport below closed, then
    /// report (OS errors only in debug mode; cancellations not at all).
    fn fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let transport = this.transport(py);
        if let Some(t) = &transport {
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        if exc.is_instance_of::<PyOSError>() {
            if this.debug(py) {
                py_refs::debug_log_exc(py)?.call1(("%r: %s", slf, message, exc))?;
            }
        } else if !exc.is_instance(ssl_types(py)?.cancelled_error.bind(py))? {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", exc)?;
            context.set_item("transport", transport)?;
            context.set_item("protocol", slf)?;
            Loop::report(this.lp(py), context)?;
        }
        Ok(())
    }
}
