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

use super::base::NativeProtocol;
use super::stream::StreamTransport;
use crate::cpython::{memoryview_of, same_object_type};
use crate::errors::unless_interrupt;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::py_refs;

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

    // --- handshake ---------------------------------------------------------

    fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let start = if this.debug(py) {
            Self::debug_log(slf, " starts SSL handshake")?;
            Some(this.lp(py).call_method0(intern!(py, "time"))?.extract()?)
        } else {
            None
        };
        this.st.with(py, |s| s.handshake_start_time = start);
        this.set_state(py, TlsState::DoHandshake)?;
        let timeout = this.get(py, |s| s.handshake_timeout.clone_ref(py));
        let handle = Self::call_later_method(slf, &timeout, "_check_handshake_timeout")?;
        let old = this
            .st
            .with(py, |s| s.handshake_timeout_handle.replace(handle));
        drop(old);
        Self::do_handshake(slf)
    }

    fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match this.sslc(py).call_method0(intern!(py, "do_handshake")) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.matches(py, ssl_types(py)?.ssl_error.bind(py))? => {
                Self::on_handshake_complete(slf, Some(err))
            }
            Err(err) => Err(err),
        }
    }

    fn on_handshake_complete(slf: &Bound<'_, Self>, handshake_exc: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.st.with(py, |s| s.handshake_timeout_handle.take());
        Self::cancel_timer(py, handle)?;
        let sslobj = this.get(py, |s| s.sslobj.clone_ref(py)).into_bound(py);
        let peercert = match handshake_exc {
            None => this
                .set_state(py, TlsState::Wrapped)
                .and_then(|()| sslobj.call_method0(intern!(py, "getpeercert"))),
            Some(err) => Err(err),
        };
        let peercert = match peercert {
            Ok(peercert) => peercert,
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                this.set_state(py, TlsState::Unwrapped)?;
                let exc = err.into_value(py).into_bound(py);
                let message = if exc.is_instance(ssl_types(py)?.certificate_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, exc.as_any(), message)?;
                return Self::wakeup_waiter(slf, Some(exc.as_any()));
            }
            Err(err) => return Err(err),
        };
        if this.debug(py) {
            let start = this.get(py, |s| s.handshake_start_time).unwrap_or(0.0);
            let now: f64 = this.lp(py).call_method0(intern!(py, "time"))?.extract()?;
            let took = format!(": SSL handshake took {:.1} ms", (now - start) * 1e3);
            Self::debug_log(slf, &took)?;
        }
        let extra = this.get(py, |s| s.extra.clone_ref(py)).into_bound(py);
        extra.set_item("peercert", peercert)?;
        extra.set_item("cipher", sslobj.call_method0(intern!(py, "cipher"))?)?;
        extra.set_item(
            "compression",
            sslobj.call_method0(intern!(py, "compression"))?,
        )?;
        extra.set_item("ssl_object", &sslobj)?;
        let make = this.st.with(py, |s| {
            let make = s.app_state == AppState::Init;
            if make {
                s.app_state = AppState::Made;
            }
            make
        });
        if make {
            let app_transport = Self::app_transport_for_protocol(slf)?;
            if let Some(app) = this.app_protocol(py) {
                app.call_method1(py, intern!(py, "connection_made"), (app_transport,))?;
            }
        }
        Self::wakeup_waiter(slf, None)?;
        Self::do_read(slf)
    }

    /// asyncio's `_get_app_transport`.
    fn app_transport_for_protocol(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match slf
            .get()
            .get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py)))
        {
            Some(t) => Ok(t),
            None => Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            )),
        }
    }

    // --- shutdown ------------------------------------------------------------

    fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let action = this.st.with(py, |s| {
            let action = s.state.on_close();
            if action != StartShutdown::Nothing && s.app_transport.is_some() {
                s.app_closed = true;
            }
            action
        });
        match action {
            StartShutdown::Nothing => Ok(()),
            StartShutdown::Abort => Self::abort(slf, None),
            StartShutdown::Flush => {
                this.set_state(py, TlsState::Flushing)?;
                let timeout = this.get(py, |s| s.shutdown_timeout.clone_ref(py));
                let handle = Self::call_later_method(slf, &timeout, "_check_shutdown_timeout")?;
                let old = this
                    .st
                    .with(py, |s| s.shutdown_timeout_handle.replace(handle));
                drop(old);
                Self::do_flush(slf)
            }
        }
    }

    fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        slf.get().set_state(slf.py(), TlsState::Shutdown)?;
        Self::do_shutdown(slf)
    }

    fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (eof, direct) = this.get(py, |s| (s.eof_received, s.direct));
        let result = if eof {
            Ok(())
        } else {
            let name = if direct {
                intern!(py, "shutdown")
            } else {
                intern!(py, "unwrap")
            };
            this.sslc(py).call_method0(name).map(drop)
        };
        match result {
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.matches(py, ssl_types(py)?.ssl_error.bind(py))? => {
                Self::on_shutdown_complete(slf, Some(err.into_value(py).into_bound(py).into_any()))
            }
            Err(err) => Err(err),
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.st.with(py, |s| s.shutdown_timeout_handle.take());
        Self::cancel_timer(py, handle)?;
        match exc {
            Some(exc) => Self::fatal_error(slf, &exc, "Fatal error on transport"),
            None => match this.transport(py) {
                Some(t) => {
                    let close = t.bind(py).getattr(intern!(py, "close"))?;
                    Self::call_soon(slf, &close, PyTuple::empty(py))
                }
                None => Ok(()),
            },
        }
    }

    /// asyncio's `_abort(exc)`.
    fn abort(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_state(py, TlsState::Unwrapped)?;
        if let Some(t) = this.transport(py) {
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    // --- outgoing ------------------------------------------------------------

    fn write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let refused = this.st.with(py, |s| {
            if s.state.accepts_writes() {
                return None;
            }
            let warn = s.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            s.conn_lost += 1;
            Some(warn)
        });
        if let Some(warn) = refused {
            if warn {
                py_refs::transport_warning(py)?.call1(("SSL connection is closed",))?;
            }
            return Ok(());
        }
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()?;
            this.st.with(py, |s| {
                s.backlog.push_back(data.unbind());
                s.backlog_size += len;
            });
        }
        if this.state(py) == TlsState::Wrapped {
            let result = Self::do_write(slf);
            Self::guard(slf, result, "Fatal error on SSL protocol")?;
        }
        Ok(())
    }

    /// Turns an `Exception` from a step into asyncio's fatal-error path
    /// (other `BaseException`s propagate, as from asyncio's `except
    /// Exception`).
    fn guard(slf: &Bound<'_, Self>, result: PyResult<()>, message: &str) -> PyResult<()> {
        let py = slf.py();
        match result {
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                Self::fatal_error(slf, err.value(py), message)
            }
            other => other,
        }
    }

    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sslc = this.sslc(py);
        loop {
            let Some(data) = this.get(py, |s| s.backlog.front().map(|d| d.clone_ref(py))) else {
                break;
            };
            let data = data.into_bound(py);
            let count: usize = match sslc.call_method1(intern!(py, "write"), (&data,)) {
                Ok(count) => count.extract()?,
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            };
            let len = data.len()?;
            let rest = if count < len {
                Some(
                    data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?
                        .unbind(),
                )
            } else {
                None
            };
            let old = this.st.with(py, |s| {
                let old = match rest {
                    Some(rest) => s.backlog.front_mut().map(|d| std::mem::replace(d, rest)),
                    None => s.backlog.pop_front(),
                };
                s.backlog_size -= count.min(len);
                old
            });
            drop(old);
        }
        Self::process_outgoing(slf)
    }

    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (paused, outgoing) = this.get(py, |s| (s.ssl_writing_paused, s.outgoing.clone_ref(py)));
        if !paused {
            let data = outgoing
                .call_method0(py, intern!(py, "read"))?
                .into_bound(py);
            if data.len()? > 0 {
                Self::write_below(slf, &data)?;
            }
        }
        Self::control_app_writing(slf)
    }

    /// Writes records to the transport below: natively to a native stream
    /// transport, else through its `write`.
    fn write_below(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (core, transport) = slf.get().get(py, |s| {
            (
                s.transport_core.as_ref().map(|c| c.clone_ref(py)),
                s.transport.as_ref().map(|t| t.clone_ref(py)),
            )
        });
        match (core, transport) {
            (Some(core), _) => StreamTransport::write(core.bind(py), data),
            (None, Some(t)) => t.call_method1(py, intern!(py, "write"), (data,)).map(drop),
            (None, None) => Ok(()),
        }
    }

    // --- incoming ------------------------------------------------------------

    /// What records arriving from below drive (asyncio's `buffer_updated`
    /// after the BIO write).
    fn drive_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()).on_incoming() {
            Drive::Handshake => Self::do_handshake(slf),
            Drive::Read => Self::do_read(slf),
            Drive::Flush => Self::do_flush(slf),
            Drive::Shutdown => Self::do_shutdown(slf),
            Drive::Nothing => Ok(()),
        }
    }

    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.state(py).reads() {
            return Ok(());
        }
        let result = (|| {
            let (paused, buffered) = this.get(py, |s| {
                (
                    s.app_reading_paused,
                    matches!(s.app_receiver, AppReceiver::Buffered { .. }),
                )
            });
            if !paused {
                if buffered {
                    Self::do_read_buffered(slf)?;
                } else {
                    Self::do_read_copied(slf)?;
                }
                if this.get(py, |s| !s.backlog.is_empty()) {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        })();
        Self::guard(slf, result, "Fatal error on SSL protocol")
    }

    /// How much a read could return at most: the bytes in the incoming BIO
    /// (plaintext is never longer than its records) plus the plaintext the
    /// `SSLObject` already holds, capped at [`MAX_SIZE`]. When it is 0, a
    /// read would only raise `SSLWantReadError`, so none is made. Sizing
    /// the read by it (rather than asking for `MAX_SIZE`, as asyncio does)
    /// keeps the `bytes` it allocates close to what arrives: a large
    /// allocation shrunk to a small message costs an `mmap`, `mremap` and
    /// `munmap` per read.
    fn readable(&self, py: Python<'_>, sslc: &Bound<'_, PyAny>) -> PyResult<usize> {
        let incoming = self.get(py, |s| s.incoming.clone_ref(py));
        let queued: usize = incoming.getattr(py, intern!(py, "pending"))?.extract(py)?;
        let decrypted: usize = sslc.call_method0(intern!(py, "pending"))?.extract()?;
        Ok((queued + decrypted).min(MAX_SIZE))
    }

    fn do_read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sslc = this.sslc(py);
        let mut chunks: Vec<Bound<'_, PyAny>> = Vec::new();
        let mut close_notify = false;
        loop {
            let size = this.readable(py, &sslc)?;
            if size == 0 {
                break;
            }
            match sslc.call_method1(intern!(py, "read"), (size,)) {
                Ok(chunk) if chunk.len()? == 0 => {
                    close_notify = true;
                    break;
                }
                Ok(chunk) => chunks.push(chunk),
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.pop().expect("one chunk")
            } else {
                PyBytes::new(py, b"")
                    .call_method1(intern!(py, "join"), (PyList::new(py, chunks)?,))?
            };
            if let Some(app) = this.app_protocol(py) {
                app.call_method1(py, intern!(py, "data_received"), (data,))?;
            }
        }
        if close_notify {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn do_read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (get_buffer, buffer_updated) = match this.get(py, |s| match &s.app_receiver {
            AppReceiver::Buffered {
                get_buffer,
                buffer_updated,
            } => Some((get_buffer.clone_ref(py), buffer_updated.clone_ref(py))),
            AppReceiver::Plain => None,
        }) {
            Some(pair) => pair,
            None => return Ok(()),
        };
        let sslc = this.sslc(py);
        let pending = Self::read_buffer_size(slf)?;
        let buf = get_buffer.call1(py, (pending,))?.into_bound(py);
        let wants = buf.len()?;
        let mut offset = 0;
        let mut count = 1;
        let read = (|| -> PyResult<()> {
            count = sslc
                .call_method1(intern!(py, "read"), (wants, &buf))?
                .extract()?;
            if count > 0 {
                offset = count;
                while offset < wants {
                    let rest = buf.get_item(PySlice::new(py, offset as isize, isize::MAX, 1))?;
                    count = sslc
                        .call_method1(intern!(py, "read"), (wants - offset, rest))?
                        .extract()?;
                    if count > 0 {
                        offset += count;
                    } else {
                        break;
                    }
                }
                if offset >= wants {
                    let again = slf.as_any().getattr(intern!(py, "_do_read"))?;
                    Self::call_soon(slf, &again, PyTuple::empty(py))?;
                }
            }
            Ok(())
        })();
        match read {
            Ok(()) => {}
            Err(err) if is_again(py, &err)? => {}
            Err(err) => return Err(err),
        }
        if offset > 0 {
            buffer_updated.call1(py, (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let call = this.st.with(py, |s| {
            let call = s.app_state == AppState::Made;
            if call {
                s.app_state = AppState::Eof;
            }
            call
        });
        if !call {
            return Ok(());
        }
        let Some(app) = this.app_protocol(py) else {
            return Ok(());
        };
        let result = app
            .call_method0(py, intern!(py, "eof_received"))
            .and_then(|keep_open| {
                if keep_open.is_truthy(py)? {
                    py_refs::transport_warning(py)?.call1((
                        "returning true from eof_received() has no effect when using ssl",
                    ))?;
                }
                Ok(())
            });
        unless_interrupt(py, result, |err| {
            Self::fatal_error(slf, err.value(py), "Error calling eof_received()")
        })
    }

    // --- flow control ----------------------------------------------------------

    fn write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let (outgoing, backlog) = slf
            .get()
            .get(py, |s| (s.outgoing.clone_ref(py), s.backlog_size));
        let pending: usize = outgoing.getattr(py, intern!(py, "pending"))?.extract(py)?;
        Ok(pending + backlog)
    }

    fn read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let incoming = slf.get().get(py, |s| s.incoming.clone_ref(py));
        incoming.getattr(py, intern!(py, "pending"))?.extract(py)
    }

    fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = Self::write_buffer_size(slf)?;
        let method = this.st.with(py, |s| {
            if s.app_writing.pause_due(size) {
                Some("pause_writing")
            } else if s.app_writing.resume_due(size) {
                Some("resume_writing")
            } else {
                None
            }
        });
        let (Some(method), Some(app)) = (method, this.app_protocol(py)) else {
            return Ok(());
        };
        let result = app.call_method0(py, method).map(drop);
        unless_interrupt(py, result, |err| {
            let context = PyDict::new(py);
            context.set_item("message", format!("protocol.{method}() failed"))?;
            context.set_item("exception", err.value(py))?;
            context.set_item(
                "transport",
                this.get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py))),
            )?;
            context.set_item("protocol", slf)?;
            Loop::report(this.lp(py), context)
        })
    }

    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = Self::read_buffer_size(slf)?;
        let method = this.st.with(py, |s| {
            if s.ssl_reading.pause_due(size) {
                s.ssl_reading_paused = true;
                Some("pause_reading")
            } else if s.ssl_reading.resume_due(size) {
                s.ssl_reading_paused = false;
                Some("resume_reading")
            } else {
                None
            }
        });
        match (method, this.transport(py)) {
            (Some(method), Some(t)) => t.call_method0(py, method).map(drop),
            _ => Ok(()),
        }
    }

    fn set_app_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = app_receiver(protocol)?;
        let old = self.st.with(py, |s| {
            (
                s.app_protocol.replace(protocol.clone().unbind()),
                std::mem::replace(&mut s.app_receiver, receiver),
            )
        });
        drop(old);
        Ok(())
    }
}

/// The arguments of a new layer, as `sslproto.SSLProtocol` takes them.
#[pymethods]
impl TlsProtocol {
    #[new]
    #[pyo3(signature = (
        loop_, app_protocol, sslcontext, waiter, server_side=false, server_hostname=None,
        call_connection_made=true, ssl_handshake_timeout=None, ssl_shutdown_timeout=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        loop_: &Bound<'_, Loop>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: Option<Bound<'_, PyAny>>,
        waiter: Option<Bound<'_, PyAny>>,
        server_side: bool,
        server_hostname: Option<Bound<'_, PyAny>>,
        call_connection_made: bool,
        ssl_handshake_timeout: Option<Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let handshake_timeout = timeout_or_default(
            py,
            ssl_handshake_timeout,
            "ssl_handshake_timeout",
            "SSL_HANDSHAKE_TIMEOUT",
        )?;
        let shutdown_timeout = timeout_or_default(
            py,
            ssl_shutdown_timeout,
            "ssl_shutdown_timeout",
            "SSL_SHUTDOWN_TIMEOUT",
        )?;
        let sslcontext = match sslcontext.filter(|c| c.is_truthy().unwrap_or(true)) {
            Some(ctx) => ctx,
            None => py
                .import("asyncio.sslproto")?
                .getattr("_create_transport_context")?
                .call1((server_side, &server_hostname))?,
        };
        let server_hostname = match server_hostname {
            Some(name) if !server_side && name.is_truthy()? => Some(name),
            _ => None,
        };
        let extra = PyDict::new(py);
        extra.set_item("sslcontext", &sslcontext)?;
        let types = ssl_types(py)?;
        let incoming = types.memory_bio.call0(py)?;
        let outgoing = types.memory_bio.call0(py)?;
        let app_receiver = app_receiver(app_protocol)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("server_side", server_side)?;
        kwargs.set_item("server_hostname", server_hostname)?;
        let sslobj = sslcontext.call_method(
            intern!(py, "wrap_bio"),
            (&incoming, &outgoing),
            Some(&kwargs),
        )?;
        let direct = same_object_type(&sslobj, types.ssl_object.bind(py));
        let sslc = if direct {
            sslobj.getattr(intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        Ok(TlsProtocol {
            loop_: loop_.clone().unbind(),
            st: GilCell::new(State {
                state: TlsState::Unwrapped,
                app_state: if call_connection_made {
                    AppState::Init
                } else {
                    AppState::Made
                },
                sslobj: sslobj.unbind(),
                sslc: sslc.unbind(),
                direct,
                incoming,
                outgoing,
                app_protocol: Some(app_protocol.clone().unbind()),
                app_receiver,
                app_transport: None,
                app_transport_created: false,
                app_closed: false,
                transport: None,
                transport_core: None,
                waiter: waiter.filter(|w| !w.is_none()).map(Bound::unbind),
                extra: extra.unbind(),
                backlog: VecDeque::new(),
                backlog_size: 0,
                ssl_writing_paused: false,
                app_reading_paused: false,
                ssl_reading_paused: false,
                eof_received: false,
                app_writing: FlowControl::new(HIGH_WATER_WRITE_KIB * 1024, PauseAt::AtOrAbove),
                ssl_reading: FlowControl::new(HIGH_WATER_READ_KIB * 1024, PauseAt::AtOrAbove),
                handshake_timeout: handshake_timeout.unbind(),
                shutdown_timeout: shutdown_timeout.unbind(),
                handshake_timeout_handle: None,
                shutdown_timeout_handle: None,
                handshake_start_time: None,
                conn_lost: 0,
                read_buffer: None,
            }),
        })
    }

    /// Gives the layer its application transport (the face), once.
    fn _set_app_transport(&self, py: Python<'_>, transport: Bound<'_, PyAny>) -> PyResult<()> {
        let twice = self.st.with(py, |s| {
            if s.app_transport_created {
                return true;
            }
            s.app_transport = Some(transport.unbind());
            s.app_transport_created = true;
            false
        });
        if twice {
            return Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            ));
        }
        Ok(())
    }

    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py)))
    }

    #[getter]
    fn _app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.app_protocol(py)
    }

    #[getter]
    fn _transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport(py)
    }

    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.get(py, |s| s.sslobj.clone_ref(py))
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> String {
        self.state(py).to_string()
    }

    // --- as the protocol of the transport below ----------------------------

    /// The connection below is made: start the handshake.
    fn connection_made(slf: &Bound<'_, Self>, transport: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let core = transport
            .getattr_opt(intern!(py, "_core"))?
            .and_then(|c| c.cast_into::<StreamTransport>().ok())
            .map(Bound::unbind);
        let old = slf.get().st.with(py, |s| {
            (
                s.transport.replace(transport.unbind()),
                std::mem::replace(&mut s.transport_core, core),
            )
        });
        drop(old);
        Self::start_handshake(slf)
    }

    /// The connection below is lost or closed.
    fn connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (backlog, outgoing) = this.st.with(py, |s| {
            s.backlog_size = 0;
            s.conn_lost += 1;
            if s.app_transport.is_some() {
                s.app_closed = true;
            }
            (std::mem::take(&mut s.backlog), s.outgoing.clone_ref(py))
        });
        drop(backlog);
        outgoing.call_method0(py, intern!(py, "read"))?;
        let notify = this.st.with(py, |s| {
            let notify = s.state != TlsState::DoHandshake && s.app_state.owes_connection_lost();
            if notify {
                s.app_state = AppState::Lost;
            }
            notify
        });
        if notify {
            if let Some(app) = this.app_protocol(py) {
                let lost = app.bind(py).getattr(intern!(py, "connection_lost"))?;
                Self::call_soon(slf, &lost, PyTuple::new(py, [&exc])?)?;
            }
        }
        this.set_state(py, TlsState::Unwrapped)?;
        let old = this.st.with(py, |s| {
            (
                s.transport.take(),
                s.transport_core.take(),
                s.app_transport.take(),
                s.app_protocol.take(),
            )
        });
        drop(old);
        let exc = (!exc.is_none()).then_some(exc);
        Self::wakeup_waiter(slf, exc.as_ref())?;
        let (shutdown, handshake) = this.st.with(py, |s| {
            (
                s.shutdown_timeout_handle.take(),
                s.handshake_timeout_handle.take(),
            )
        });
        Self::cancel_timer(py, shutdown)?;
        Self::cancel_timer(py, handshake)
    }

    /// The buffer the transport below receives into (`BufferedProtocol`).
    fn get_buffer(&self, py: Python<'_>, n: isize) -> PyResult<Py<PyAny>> {
        let want = if n <= 0 || n as usize > MAX_SIZE {
            MAX_SIZE
        } else {
            n as usize
        };
        let existing = self.get(py, |s| s.read_buffer.as_ref().map(|b| b.clone_ref(py)));
        let buffer = match existing {
            Some(b) if b.bind(py).len() >= want => b,
            _ => {
                let b = PyByteArray::new(py, &vec![0u8; want]).unbind();
                let old = self.st.with(py, |s| s.read_buffer.replace(b.clone_ref(py)));
                drop(old);
                b
            }
        };
        Ok(py_refs::memoryview(py)?.call1((buffer,))?.unbind())
    }

    /// `nbytes` were received into the buffer from `get_buffer`.
    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (buffer, incoming) = this.get(py, |s| {
            (
                s.read_buffer.as_ref().map(|b| b.clone_ref(py)),
                s.incoming.clone_ref(py),
            )
        });
        if let Some(buffer) = buffer {
            let view = py_refs::memoryview(py)?.call1((buffer,))?;
            let part = view.get_item(PySlice::new(py, 0, nbytes as isize, 1))?;
            incoming.call_method1(py, intern!(py, "write"), (part,))?;
        }
        Self::drive_incoming(slf)
    }

    /// Bytes arrived from a transport below that calls `data_received`
    /// (one that is neither native nor checks for `BufferedProtocol`: the
    /// layer is not a Python subclass of it).
    fn data_received(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let incoming = slf.get().get(py, |s| s.incoming.clone_ref(py));
        incoming.call_method1(py, intern!(py, "write"), (data,))?;
        Self::drive_incoming(slf)
    }

    /// The end of stream arrived from below.
    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let this = slf.get();
        let (state, paused) = this.st.with(py, |s| {
            s.eof_received = true;
            (s.state, s.app_reading_paused)
        });
        let result = (|| -> PyResult<Option<bool>> {
            if this.debug(py) {
                Self::debug_log(slf, " received EOF")?;
            }
            match state.on_eof(paused) {
                Eof::HandshakeReset => {
                    Self::on_handshake_complete(slf, Some(PyConnectionResetError::new_err(())))?
                }
                Eof::FlushLater => {
                    this.set_state(py, TlsState::Flushing)?;
                    return Ok(Some(true));
                }
                Eof::Flush => {
                    this.set_state(py, TlsState::Flushing)?;
                    Self::do_flush(slf)?;
                }
                Eof::WriteThenShutdown => {
                    Self::do_write(slf)?;
                    this.set_state(py, TlsState::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                Eof::Shutdown => Self::do_shutdown(slf)?,
                Eof::Nothing => {}
            }
            Ok(None)
        })();
        if let Err(err) = &result {
            if err.is_instance_of::<pyo3::exceptions::PyException>(py) {
                if let Some(t) = this.transport(py) {
                    t.call_method0(py, intern!(py, "close"))?;
                }
            }
        }
        result
    }

    /// The transport below is over its high water mark.
    fn pause_writing(&self, py: Python<'_>) -> PyResult<()> {
        let was = self
            .st
            .with(py, |s| std::mem::replace(&mut s.ssl_writing_paused, true));
        if was {
            return Err(PyAssertionError::new_err(()));
        }
        Ok(())
    }

    /// The transport below drained to its low water mark.
    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let was = slf
            .get()
            .st
            .with(py, |s| std::mem::replace(&mut s.ssl_writing_paused, false));
        if !was {
            return Err(PyAssertionError::new_err(()));
        }
        Self::process_outgoing(slf)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.state(py) != TlsState::DoHandshake {
            return Ok(());
        }
        let timeout = this.get(py, |s| s.handshake_timeout.clone_ref(py));
        let message = format!(
            "SSL handshake is taking longer than {} seconds: aborting the connection",
            timeout.bind(py).str()?
        );
        let exc = PyConnectionAbortedError::new_err(message).into_value(py);
        Self::fatal_error(slf, exc.bind(py).as_any(), "Fatal error on transport")
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.state(py), TlsState::Flushing | TlsState::Shutdown) {
            return Ok(());
        }
        if let Some(t) = this.transport(py) {
            let exc = PyTimeoutError::new_err("SSL shutdown timed out").into_value(py);
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    /// A resumed application reader continues where the layer is.
    fn _resume_drive(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()).on_resume_reading() {
            Drive::Read => Self::do_read(slf),
            Drive::Flush => Self::do_flush(slf),
            Drive::Shutdown => Self::do_shutdown(slf),
            Drive::Handshake | Drive::Nothing => Ok(()),
        }
    }

    // --- as the core of the application's transport ------------------------

    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        let extra = self.get(py, |s| s.extra.clone_ref(py)).into_bound(py);
        if let Some(value) = extra.get_item(name)? {
            return Ok(value.unbind());
        }
        match self.transport(py) {
            Some(t) => Ok(t.call_method1(py, intern!(py, "get_extra_info"), (name, default))?),
            None => Ok(default),
        }
    }

    fn _set_app_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_app_protocol(py, protocol)
    }

    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }

    /// The application transport's `write(data)`.
    fn _app_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<pyo3::types::PyMemoryView>())
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        Self::write_appdata(slf, PyTuple::new(py, [data])?.as_any())
    }

    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_shutdown(slf)
    }

    #[pyo3(signature = (exc=None))]
    fn _abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::abort(slf, exc.as_ref())
    }

    #[getter]
    fn _app_closed(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_closed)
    }

    #[setter(_app_closed)]
    fn set_app_closed(&self, py: Python<'_>, value: bool) {
        self.st.with(py, |s| s.app_closed = value);
    }

    #[getter]
    fn _app_reading_paused(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_reading_paused)
    }

    fn _pause_reading(&self, py: Python<'_>) {
        self.st.with(py, |s| s.app_reading_paused = true);
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let was = slf
            .get()
            .st
            .with(py, |s| std::mem::replace(&mut s.app_reading_paused, false));
        if was {
            let resume = slf.as_any().getattr(intern!(py, "_resume_drive"))?;
            Self::call_soon(slf, &resume, PyTuple::empty(py))?;
        }
        Ok(())
    }

    #[getter]
    fn _app_writing_paused(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_writing.is_paused())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        self.st
            .with(py, |s| s.app_writing.set_limits(high, low))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_read_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        self.st
            .with(py, |s| s.ssl_reading.set_limits(high, low))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    fn _get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::write_buffer_size(slf)
    }

    fn _get_read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::read_buffer_size(slf)
    }

    #[getter]
    fn _outgoing_low_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.app_writing.limits().0)
    }

    #[getter]
    fn _outgoing_high_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.app_writing.limits().1)
    }

    #[getter]
    fn _incoming_low_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.ssl_reading.limits().0)
    }

    #[getter]
    fn _incoming_high_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.ssl_reading.limits().1)
    }

    /// Queues `data` as if written, without writing (asyncio's test hook).
    #[allow(non_snake_case)]
    fn _test__append_write_backlog(&self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<()> {
        let len = data.len()?;
        self.st.with(py, |s| {
            s.backlog.push_back(data.unbind());
            s.backlog_size += len;
        });
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            visit.call(&s.sslobj)?;
            visit.call(&s.sslc)?;
            visit.call(&s.incoming)?;
            visit.call(&s.outgoing)?;
            visit.call(&s.app_protocol)?;
            if let AppReceiver::Buffered {
                get_buffer,
                buffer_updated,
            } = &s.app_receiver
            {
                visit.call(get_buffer)?;
                visit.call(buffer_updated)?;
            }
            visit.call(&s.app_transport)?;
            visit.call(&s.transport)?;
            visit.call(&s.transport_core)?;
            visit.call(&s.waiter)?;
            visit.call(&s.extra)?;
            for data in &s.backlog {
                visit.call(data)?;
            }
            visit.call(&s.handshake_timeout_handle)?;
            visit.call(&s.shutdown_timeout_handle)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let taken = self.st.with(py, |s| {
            (
                s.app_protocol.take(),
                std::mem::replace(&mut s.app_receiver, AppReceiver::Plain),
                s.app_transport.take(),
                s.transport.take(),
                s.transport_core.take(),
                s.waiter.take(),
                std::mem::take(&mut s.backlog),
                s.handshake_timeout_handle.take(),
                s.shutdown_timeout_handle.take(),
            )
        });
        drop(taken);
    }
}
