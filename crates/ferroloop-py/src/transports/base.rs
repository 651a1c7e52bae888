//! What every transport kind shares: asyncio's `_SelectorTransport` and
//! `_FlowControlMixin` (uvloop's `basetransport.pyx`).
//!
//! A transport's *core* is a native object; what protocols and users see is
//! its *face*, a Python subclass of the `asyncio` transport class that
//! delegates to the core (`asyncio.BaseTransport` declares `__slots__`, so a
//! native type cannot also derive from it). The core passes its face to
//! `connection_made` and to error reports, and drops it once the connection
//! is lost (which breaks the face <-> core cycle early).
//!
//! Shared here, for every kind:
//! - the lifecycle (`ferroloop_core::transport::lifecycle`): `close()`,
//!   `abort()`, the fatal-error path (report through the exception handler,
//!   OS errors only in debug mode, then abort with the exception passed to
//!   `connection_lost`), `connection_lost` and the cleanup after it, paused
//!   reading;
//! - write flow control (`ferroloop_core::transport::flow`):
//!   `pause_writing`/`resume_writing` at the water marks, failures of those
//!   reported to the exception handler;
//! - the protocol, the extra info, the server the transport is attached
//!   to, and the watching of the descriptor (only on real changes).
//!
//! A kind provides its readiness handlers, its queued-byte count and what
//! to drop on abort ([`Transport`]), and gets the shared Python methods by
//! invoking `transport_methods!` (`methods.rs`) on its type.
//!
//! The transport owns its descriptor: when the connection is lost it
//! removes every registration of the descriptor before closing the file
//! object, and a ready item for a transport whose connection was lost does
//! nothing.

use std::os::fd::RawFd;

use ferroloop_core::transport::flow::{FlowControl, DEFAULT_HIGH_WATER};
use ferroloop_core::transport::lifecycle::{Close, Lifecycle};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyClass, PyTraverseError};

use crate::compat;
use crate::cpython::{copy_context, in_context};
use crate::errors::unless_interrupt;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::py_refs;
use crate::source::{Direction, Watcher};

pub use super::limits::water_marks;

/// The state every transport kind shares.
pub struct TransportBase {
    loop_: Py<Loop>,
    fd: RawFd,
    st: GilCell<BaseState>,
}

struct BaseState {
    /// The `asyncio` transport object protocols see; dropped once the
    /// connection is lost.
    face: Option<Py<PyAny>>,
    /// The file object (a socket, a pipe); `None` once the connection is
    /// lost and it is closed.
    file: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    extra: Option<Py<PyDict>>,
    server: Option<Py<PyAny>>,
    flow: FlowControl,
    life: Lifecycle,
    /// Whether `connection_lost` is to be called on the protocol (asyncio's
    /// `_protocol_connected`).
    protocol_connected: bool,
    /// The `contextvars` contexts the readiness callbacks run in, reading
    /// and writing: copies of the context current when the transport
    /// started watching that direction (as asyncio's `_add_reader` /
    /// `_add_writer` handles capture it). The first read watch starts in a
    /// callback scheduled when the transport is made, so reads see the
    /// context the transport was created in.
    contexts: [Option<Py<PyAny>>; 2],
}

/// A transport kind: a pyclass with a [`TransportBase`] and its own I/O.
/// Every kind is a loop [`Watcher`] (implemented here for all of them): the
/// descriptor's readiness runs [`Transport::on_readable`] or
/// [`Transport::on_writable`], and an exception they let through is
/// reported as the failed callback `<face type>._read_ready()` (or
/// `_write_ready()`), timed in debug mode like one.
pub trait Transport: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    /// The shared state.
    fn base(&self) -> &TransportBase;
    /// The descriptor is readable (asyncio's `_read_ready`).
    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()>;
    /// Whether the transport watches for readability once started: while it
    /// reads (not closing, not paused), for the kinds that read.
    fn starts_reading(&self, py: Python<'_>) -> bool {
        self.base().life(py, |l| l.is_reading())
    }
    /// asyncio's name of the kind's write-ready callback (`_write_ready`,
    /// `_sendto_ready`), in reports.
    const WRITE_READY: &'static str = "_write_ready";
    /// The descriptor is writable (asyncio's `_write_ready`).
    fn on_writable(_slf: &Bound<'_, Self>) -> PyResult<()> {
        Ok(())
    }
    /// Bytes queued for sending (what flow control counts).
    fn queued(&self, py: Python<'_>) -> usize;
    /// Drops everything queued for sending (abort, fatal error).
    fn drop_queued(&self, py: Python<'_>);
    /// The protocol was replaced by `set_protocol`.
    fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()>;
    /// The connection is lost, `connection_lost` was called and the file
    /// object closed: let go of the kind's own objects.
    fn lost(slf: &Bound<'_, Self>) -> PyResult<()>;
    /// Whether a fatal error `err` is only logged in debug mode instead of
    /// reported to the exception handler: OS errors, for most kinds.
    fn quiet_error(py: Python<'_>, err: &PyErr) -> bool {
        err.is_instance_of::<PyOSError>(py)
    }
    /// Whether the kind watches its descriptor for reading until the
    /// connection is lost, even while closing: a write pipe's read watch
    /// is how it notices the reader going away, which still matters while
    /// it flushes.
    const WATCHES_PEER_WHILE_CLOSING: bool = false;
    /// The face's representation (`class_name` is the face's): asyncio's
    /// `_SelectorTransport` format unless the kind has its own.
    fn describe(slf: &Bound<'_, Self>, class_name: &str) -> String
    where
        Self: Sized,
    {
        describe(slf, class_name)
    }
}

impl TransportBase {
    /// The shared state of a new transport on `file` (descriptor `fd`).
    pub fn new(
        loop_: &Bound<'_, Loop>,
        fd: RawFd,
        file: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        extra: Bound<'_, PyDict>,
        server: Option<&Bound<'_, PyAny>>,
    ) -> Self {
        TransportBase {
            loop_: loop_.clone().unbind(),
            fd,
            st: GilCell::new(BaseState {
                face: None,
                file: Some(file.clone().unbind()),
                protocol: Some(protocol.clone().unbind()),
                extra: Some(extra.unbind()),
                server: server.filter(|s| !s.is_none()).map(|s| s.clone().unbind()),
                flow: FlowControl::default(),
                life: Lifecycle::default(),
                protocol_connected: true,
                contexts: [None, None],
            }),
        }
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The loop.
    pub fn lp<'py>(&self, py: Python<'py>) -> &Bound<'py, Loop> {
        self.loop_.bind(py)
    }

    /// Whether the loop is in debug mode.
    pub fn debug(&self, py: Python<'_>) -> bool {
        self.lp(py).get().debug()
    }

    /// The protocol, until the connection is lost.
    pub fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st
            .with(py, |s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    /// Whether `connection_lost` has been scheduled.
    pub fn is_lost(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.life.is_lost())
    }

    /// Runs `f` on the lifecycle state.
    pub fn life<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Lifecycle) -> R) -> R {
        self.st.with(py, |s| f(&mut s.life))
    }

    /// The file object, until the connection is lost.
    pub fn file(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st
            .with(py, |s| s.file.as_ref().map(|f| f.clone_ref(py)))
    }

    /// The extra-info mapping.
    pub fn extra(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.st
            .with(py, |s| s.extra.as_ref().map(|e| e.clone_ref(py)))
    }

    /// `get_extra_info(name, default)`.
    pub fn extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        let Some(extra) = self.extra(py) else {
            return Ok(default);
        };
        Ok(extra
            .bind(py)
            .get_item(name)?
            .map_or(default, Bound::unbind))
    }

    /// `get_write_buffer_limits()`: `(low, high)`.
    pub fn limits(&self, py: Python<'_>) -> (usize, usize) {
        self.st.with(py, |s| s.flow.limits())
    }

    /// Whether the protocol was told to pause writing.
    pub fn protocol_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.flow.is_paused())
    }

    /// Lets go of the file object without closing it (the owner of the
    /// face took it over).
    pub fn forget_file(&self, py: Python<'_>) {
        let old = self.st.with(py, |s| s.file.take());
        drop(old);
    }

    /// Replaces the protocol (`set_protocol`).
    pub fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(py, |s| {
            s.protocol_connected = true;
            s.protocol.replace(protocol.clone().unbind())
        });
        drop(old);
    }

    /// Visits the shared references.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            visit.call(&s.face)?;
            visit.call(&s.file)?;
            visit.call(&s.protocol)?;
            visit.call(&s.extra)?;
            visit.call(&s.server)?;
            for context in &s.contexts {
                visit.call(context)?;
            }
        }
        Ok(())
    }

    /// Breaks reference cycles (`tp_clear`).
    pub fn clear(&self, py: Python<'_>) {
        let taken = self.st.with(py, |s| {
            (
                s.face.take(),
                s.protocol.take(),
                s.extra.take(),
                s.server.take(),
                std::mem::take(&mut s.contexts),
            )
        });
        drop(taken);
    }

    /// The context the `dir` readiness callbacks run in.
    fn context(&self, py: Python<'_>, dir: Direction) -> Option<Py<PyAny>> {
        self.st.with(py, |s| {
            s.contexts[dir as usize].as_ref().map(|c| c.clone_ref(py))
        })
    }
}

/// A protocol implemented natively, which transports hand received bytes
/// without a Python call (the TLS layer, as the protocol of the stream
/// transport below it).
pub trait NativeProtocol: PyClass<Frozen = True> + Sync {
    /// Bytes arrived; `data` is only valid during the call.
    fn received(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()>;
}

/// How a transport hands bytes to a native protocol.
pub type ReceiveFn = fn(&Bound<'_, PyAny>, &[u8]) -> PyResult<()>;

/// The native protocol types, registered when the module is initialized.
static NATIVE_PROTOCOLS: PyOnceLock<Vec<(Py<PyType>, ReceiveFn)>> = PyOnceLock::new();

/// The entry of native protocol type `T` for [`register_native_protocols`].
pub fn native_protocol<T: NativeProtocol>(py: Python<'_>) -> (Py<PyType>, ReceiveFn) {
    // SAFETY (of the cast): `native_receiver` pairs this function only with
    // objects whose exact type is `T`.
    let receive: ReceiveFn = |obj, data| T::received(unsafe { obj.cast_unchecked::<T>() }, data);
    (py.get_type::<T>().unbind(), receive)
}

/// Registers the native protocol types (once, at module initialization).
pub fn register_native_protocols(py: Python<'_>, types: Vec<(Py<PyType>, ReceiveFn)>) {
    let _ = NATIVE_PROTOCOLS.set(py, types);
}

/// The receive function for `protocol` if its exact type is a native
/// protocol.
pub fn native_receiver(protocol: &Bound<'_, PyAny>) -> Option<ReceiveFn> {
    let types = NATIVE_PROTOCOLS.get(protocol.py())?;
    types
        .iter()
        .find(|(tp, _)| crate::cpython::is_exact_type(protocol, tp))
        .map(|&(_, receive)| receive)
}

/// The extra-info mapping of a transport on `sock`: a copy of `extra` with
/// asyncio's `socket`, `sockname` and (unless given) `peername`.
pub fn socket_extra<'py>(
    sock: &Bound<'py, PyAny>,
    extra: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = sock.py();
    let extra = match extra {
        Some(d) => d.copy()?,
        None => PyDict::new(py),
    };
    extra.set_item("socket", py_refs::transport_socket(py)?.call1((sock,))?)?;
    let sockname = sock.call_method0(intern!(py, "getsockname"));
    extra.set_item("sockname", sockname.ok())?;
    if !extra.contains("peername")? {
        let peername = sock.call_method0(intern!(py, "getpeername"));
        extra.set_item("peername", peername.ok())?;
    }
    Ok(extra)
}

/// The face of the transport, or the core itself once the connection is
/// lost.
pub fn face<'py, T: Transport>(slf: &Bound<'py, T>) -> Bound<'py, PyAny> {
    let py = slf.py();
    slf.get()
        .base()
        .st
        .with(py, |s| s.face.as_ref().map(|f| f.clone_ref(py)))
        .map_or_else(|| slf.clone().into_any(), |f| f.into_bound(py))
}

/// Logs `message` about the transport at debug level (debug mode; with the
/// exception, if any).
pub fn debug_log<T: Transport>(
    slf: &Bound<'_, T>,
    message: &str,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    py_refs::transport_debug(py)?.call1((face(slf), message, exc))?;
    Ok(())
}

/// Starts or stops watching the descriptor in `dir`, if that changes.
pub fn set_watching<T: Transport>(slf: &Bound<'_, T>, dir: Direction, on: bool) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    if !base.life(py, |l| l.set_watching(dir == Direction::Read, on)) {
        return Ok(());
    }
    let lp = base.lp(py);
    if on {
        let context = copy_context(py)?;
        let old = base
            .st
            .with(py, |s| s.contexts[dir as usize].replace(context));
        drop(old);
        Loop::watch(lp, base.fd, slf, dir)
    } else {
        Loop::unwatch(lp, base.fd, dir);
        Ok(())
    }
}

/// Schedules `method(*args)` of the transport on the loop.
fn call_soon_method<T: Transport>(
    slf: &Bound<'_, T>,
    method: &Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
) -> PyResult<()> {
    Loop::call_soon_plain(slf.get().base().lp(slf.py()), method, args)
}

/// Schedules `_call_connection_lost(exc)`: the face's method, so that a
/// report of an exception raised by `connection_lost` names the face's
/// class ("Exception in callback SocketTransport._call_connection_lost(...)"),
/// as asyncio's names its transport's.
fn schedule_connection_lost<T: Transport>(
    slf: &Bound<'_, T>,
    exc: Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = slf.py();
    let method = face(slf).getattr(intern!(py, "_call_connection_lost"))?;
    call_soon_method(slf, &method, PyTuple::new(py, [exc])?)
}

/// asyncio's `_fatal_error`: report (OS errors only in debug mode), then
/// abort with the exception.
pub fn fatal_error<T: Transport>(slf: &Bound<'_, T>, exc: PyErr, message: &str) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    let value = exc.value(py).clone();
    if T::quiet_error(py, &exc) {
        if base.debug(py) {
            debug_log(slf, message, Some(value.as_any()))?;
        }
    } else {
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", &value)?;
        context.set_item("transport", face(slf))?;
        context.set_item("protocol", base.protocol(py))?;
        Loop::report(base.lp(py), context)?;
    }
    force_close(slf, value.into_any())
}

/// Calls a protocol method's result through the loop's rule: an exception
/// (other than `KeyboardInterrupt`/`SystemExit`) takes the fatal-error path
/// with `message`.
pub fn protocol_outcome<T: Transport>(
    slf: &Bound<'_, T>,
    result: PyResult<()>,
    message: &str,
) -> PyResult<()> {
    unless_interrupt(slf.py(), result, |err| fatal_error(slf, err, message))
}

/// asyncio's `_force_close(exc)` (and `abort()` with `exc=None`).
pub fn force_close<T: Transport>(slf: &Bound<'_, T>, exc: Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let queued = this.queued(py) > 0;
    let Some(forced) = this.base().life(py, |l| l.force_close(queued)) else {
        return Ok(());
    };
    if forced.stop.write {
        this.drop_queued(py);
        set_watching(slf, Direction::Write, false)?;
    }
    // Whatever still watches for reading stops (a no-op for a kind that
    // stopped when it began closing).
    set_watching(slf, Direction::Read, false)?;
    schedule_connection_lost(slf, exc)
}

/// `close()`: stop reading; `connection_lost(None)` follows once the
/// queued bytes are flushed.
pub fn close<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let queued = this.queued(py) > 0;
    match this.base().life(py, |l| l.close(queued)) {
        Close::Nothing => Ok(()),
        Close::AfterFlush if T::WATCHES_PEER_WHILE_CLOSING => Ok(()),
        Close::AfterFlush => set_watching(slf, Direction::Read, false),
        Close::LoseNow => {
            set_watching(slf, Direction::Read, false)?;
            set_watching(slf, Direction::Write, false)?;
            schedule_connection_lost(slf, py.None().into_bound(py))
        }
    }
}

/// asyncio's `_call_connection_lost(exc)`: tell the protocol, then (as its
/// `finally:` part) forget the descriptor, close the file object, detach
/// from the server and drop the face.
pub fn call_connection_lost<T: Transport>(
    slf: &Bound<'_, T>,
    exc: Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let base = this.base();
    let (protocol, connected) = base.st.with(py, |s| {
        (
            s.protocol.as_ref().map(|p| p.clone_ref(py)),
            s.protocol_connected,
        )
    });
    let result = match protocol {
        Some(p) if connected => p
            .bind(py)
            .call_method1(intern!(py, "connection_lost"), (&exc,))
            .map(drop),
        _ => Ok(()),
    };
    Loop::forget_fd(base.lp(py), base.fd);
    let face = face(slf);
    let (file, protocol, server) = base.st.with(py, |s| {
        s.life.connection_lost();
        (s.file.take(), s.protocol.take(), s.server.take())
    });
    drop(protocol);
    let closed = file.map_or(Ok(()), |file| {
        file.call_method0(py, intern!(py, "close")).map(drop)
    });
    let detached = server.map_or(Ok(()), |server| detach(&face, server.bind(py)));
    let old_face = base.st.with(py, |s| s.face.take());
    drop(old_face);
    let kind = T::lost(slf);
    result.and(closed).and(detached).and(kind)
}

/// Attaches the transport (seen through `face`) to its loop and server,
/// then schedules, in asyncio's order, `connection_made`, the start of
/// reading and the waiter's result.
pub fn start<T: Transport>(
    slf: &Bound<'_, T>,
    face: Bound<'_, PyAny>,
    waiter: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    // A core whose protocol is gone (closed, or given None) cannot start.
    let Some(protocol) = base.protocol(py) else {
        return Err(PyRuntimeError::new_err("the transport has no protocol"));
    };
    let old = base.st.with(py, |s| s.face.replace(face.clone().unbind()));
    drop(old);
    let server = base
        .st
        .with(py, |s| s.server.as_ref().map(|sv| sv.clone_ref(py)));
    if let Some(server) = server {
        attach(&face, server.bind(py))?;
    }
    Loop::adopt_fd(base.lp(py), base.fd, slf.as_any())?;
    let connection_made = protocol.getattr(py, intern!(py, "connection_made"))?;
    call_soon_method(slf, connection_made.bind(py), PyTuple::new(py, [&face])?)?;
    let start_reading = slf.as_any().getattr(intern!(py, "_start_reading"))?;
    call_soon_method(slf, &start_reading, PyTuple::empty(py))?;
    if let Some(waiter) = waiter.filter(|w| !w.is_none()) {
        call_soon_method(
            slf,
            py_refs::set_result_unless_cancelled(py)?,
            PyTuple::new(py, [waiter, py.None().into_bound(py)])?,
        )?;
    }
    Ok(())
}

/// `Server._attach`, with the transport where asyncio's takes one.
fn attach(face: &Bound<'_, PyAny>, server: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = face.py();
    if compat::server_attach_takes_transport(py)? {
        server.call_method1(intern!(py, "_attach"), (face,))?;
    } else {
        server.call_method0(intern!(py, "_attach"))?;
    }
    Ok(())
}

/// `Server._detach`, with the transport where asyncio's takes one.
fn detach(face: &Bound<'_, PyAny>, server: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = face.py();
    if compat::server_attach_takes_transport(py)? {
        server.call_method1(intern!(py, "_detach"), (face,))?;
    } else {
        server.call_method0(intern!(py, "_detach"))?;
    }
    Ok(())
}

/// Calls `pause_writing`/`resume_writing`; failures go to the exception
/// handler (asyncio's `_FlowControlMixin`).
fn call_flow_control<T: Transport>(
    slf: &Bound<'_, T>,
    protocol: &Bound<'_, PyAny>,
    method: &str,
) -> PyResult<()> {
    let py = slf.py();
    let result = protocol.call_method0(method).map(drop);
    unless_interrupt(py, result, |err| {
        let context = PyDict::new(py);
        context.set_item("message", format!("protocol.{method}() failed"))?;
        context.set_item("exception", err.value(py))?;
        context.set_item("transport", face(slf))?;
        context.set_item("protocol", protocol)?;
        Loop::report(slf.get().base().lp(py), context)
    })
}

/// Tells the protocol to pause writing if the queue grew above the high
/// water mark.
pub fn maybe_pause_protocol<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let queued = this.queued(py);
    let protocol = this.base().st.with(py, |s| {
        s.flow
            .pause_due(queued)
            .then(|| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .flatten()
    });
    match protocol {
        Some(p) => call_flow_control(slf, p.bind(py), "pause_writing"),
        None => Ok(()),
    }
}

/// Tells the protocol to resume writing if the queue drained to the low
/// water mark.
pub fn maybe_resume_protocol<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let queued = this.queued(py);
    let protocol = this.base().st.with(py, |s| {
        s.flow
            .resume_due(queued)
            .then(|| s.protocol.as_ref().map(|p| p.clone_ref(py)))
            .flatten()
    });
    match protocol {
        Some(p) => call_flow_control(slf, p.bind(py), "resume_writing"),
        None => Ok(()),
    }
}

/// `set_write_buffer_limits(high=None, low=None)`.
pub fn set_write_buffer_limits<T: Transport>(
    slf: &Bound<'_, T>,
    high: Option<Bound<'_, PyAny>>,
    low: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let (high, low) = water_marks(high, low, DEFAULT_HIGH_WATER, py)?;
    slf.get()
        .base()
        .st
        .with(py, |s| s.flow.set_limits(Some(high), Some(low)))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    maybe_pause_protocol(slf)
}

/// `_start_reading()`: the first watch for readability, if the kind wants
/// one now.
pub fn start_reading<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    if slf.get().starts_reading(slf.py()) {
        set_watching(slf, Direction::Read, true)?;
    }
    Ok(())
}

/// `pause_reading()`.
pub fn pause_reading<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    if !base.life(py, Lifecycle::pause_reading) {
        return Ok(());
    }
    set_watching(slf, Direction::Read, false)?;
    if base.debug(py) {
        debug_log(slf, "pauses reading", None)?;
    }
    Ok(())
}

/// `resume_reading()`.
pub fn resume_reading<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    if !base.life(py, Lifecycle::resume_reading) {
        return Ok(());
    }
    set_watching(slf, Direction::Read, true)?;
    if base.debug(py) {
        debug_log(slf, "resumes reading", None)?;
    }
    Ok(())
}

/// The face's representation in asyncio's `_SelectorTransport` format.
pub fn describe<T: Transport>(slf: &Bound<'_, T>, class_name: &str) -> String {
    let py = slf.py();
    let this = slf.get();
    let base = this.base();
    let (closed, closing, watching) = base.st.with(py, |s| {
        (s.file.is_none(), s.life.is_closing(), s.life.watching())
    });
    let mut info = vec![class_name.to_string()];
    if closed {
        info.push("closed".into());
    } else if closing {
        info.push("closing".into());
    }
    info.push(format!("fd={}", base.fd));
    if !closed && !base.lp(py).get().is_closed_now() {
        let polling = |on: bool| if on { "polling" } else { "idle" };
        info.push(format!("read={}", polling(watching.read)));
        info.push(format!(
            "write=<{}, bufsize={}>",
            polling(watching.write),
            this.queued(py)
        ));
    }
    format!("<{}>", info.join(" "))
}

/// `repr()` of a core: its face's, or the core's own description (under
/// the core's class name `name`) once the face is gone.
pub fn core_repr<T: Transport>(slf: &Bound<'_, T>, name: &str) -> PyResult<String> {
    let face = face(slf);
    if face.is(slf) {
        return Ok(T::describe(slf, name));
    }
    Ok(face.repr()?.to_string())
}

/// The asyncio method a readiness direction stands for (in reports).
fn ready_method_name<T: Transport>(dir: Direction) -> &'static str {
    match dir {
        Direction::Read => "_read_ready",
        Direction::Write => T::WRITE_READY,
    }
}

impl<T: Transport> Watcher for T {
    /// Runs the kind's readiness callback in the context captured when the
    /// direction started being watched.
    fn ready(slf: &Bound<'_, Self>, dir: Direction) -> PyResult<()> {
        let py = slf.py();
        let run = || match dir {
            Direction::Read => T::on_readable(slf),
            Direction::Write => T::on_writable(slf),
        };
        match slf.get().base().context(py, dir) {
            Some(context) => in_context(py, context.bind(py), run),
            None => run(),
        }
    }

    fn report(slf: &Bound<'_, Self>, dir: Direction, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        py_refs::report_transport_error(py)?.call1((
            face(slf),
            ready_method_name::<T>(dir),
            err.into_value(py),
        ))?;
        Ok(())
    }

    const TIMED: bool = true;

    fn log_slow(slf: &Bound<'_, Self>, dir: Direction, seconds: f64) -> PyResult<()> {
        py_refs::log_slow_transport(slf.py())?.call1((
            face(slf),
            ready_method_name::<T>(dir),
            seconds,
        ))?;
        Ok(())
    }
}
