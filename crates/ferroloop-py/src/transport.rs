//! The stream socket transport (TCP and Unix), with asyncio's semantics.
//!
//! Reading: when the loop finds the descriptor readable it queues a native
//! ready item (in the place asyncio queues the transport's `_read_ready`
//! handle, so ordering is asyncio's) and the transport receives once into the
//! loop's shared receive buffer, then hands an exact-size `bytes` to
//! `data_received`. After a large read (32 KiB or more) it receives straight
//! into a new `bytes` of the last read's size, so that large messages are not
//! copied once more. A `BufferedProtocol` gets `get_buffer(-1)`, a receive
//! straight into that buffer, and `buffer_updated(n)`. End of file calls
//! `eof_received`; a true result keeps the transport open for writing.
//!
//! Writing: `write()` sends at once when nothing is queued; what the kernel
//! does not take is queued (a `bytes` object by reference, anything else
//! copied) and flushed with one vectored send per writable event. The
//! protocol's `pause_writing`/`resume_writing` follow the high and low water
//! marks (64 KiB / 16 KiB by default, as asyncio).
//!
//! Errors in protocol callbacks take asyncio's fatal-error path: reported to
//! the exception handler (OS errors only in debug mode), the transport is
//! aborted, and the exception is passed to `connection_lost`.
//!
//! The transport owns its descriptor: when the connection is lost it removes
//! every registration of the descriptor before closing the socket, and a
//! ready item for a transport whose connection was lost does nothing.
//!
//! This native object is the transport's *core*. What protocols and users
//! see is its *face*, `ferroloop._net.SocketTransport`, a Python subclass of
//! `asyncio.Transport` that delegates to the core: `asyncio.BaseTransport`
//! declares `__slots__`, so a native type cannot also derive from it. The
//! face keeps the core's bound methods for the calls made per message
//! (`write`, `is_closing`, ...) in slots, so those calls go straight to the
//! core without a Python frame. The core passes its face to
//! `connection_made` and to error reports.

use std::os::fd::RawFd;

use ferroloop_core::sys::socket::send;
use ferroloop_core::sys::would_block;
use ferroloop_core::{Chunk, Sink, WriteBuffer};
use pyo3::exceptions::{PyConnectionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::errors::{is_interrupt, os_error};
use crate::event_loop::{Loop, READ_BUFFER_SIZE};
use crate::gil_cell::GilCell;
use crate::py_refs;
use crate::registry::Direction;

/// Reads at least this large are received straight into `bytes` objects
/// (see `read_plain`).
const LARGE_READ: usize = 32 * 1024;
/// Default high water mark of the write buffer (asyncio's).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// After this many writes to a lost connection, each one logs a warning
/// (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// Queued outgoing data.
pub(crate) enum OutChunk {
    /// Part of an immutable `bytes` object, kept alive by `_owner`.
    Bytes {
        _owner: Py<PyAny>,
        ptr: *const u8,
        len: usize,
    },
    /// A copy (of a mutable buffer).
    Owned(Vec<u8>),
}

// SAFETY: `ptr` points into the immutable `bytes` object that `_owner` keeps
// alive; the chunk is only touched with the GIL held.
unsafe impl Send for OutChunk {}

impl Chunk for OutChunk {
    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: see the `Send` impl: the bytes stay valid and unchanged
            // while `_owner` is held.
            OutChunk::Bytes { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            OutChunk::Owned(v) => v,
        }
    }
}

/// How received data reaches the protocol.
enum Receiver {
    /// `protocol.data_received`.
    Plain(Py<PyAny>),
    /// `protocol.get_buffer` and `protocol.buffer_updated`.
    Buffered {
        get_buffer: Py<PyAny>,
        buffer_updated: Py<PyAny>,
    },
}

struct State {
    /// The `asyncio.Transport` object protocols see; dropped once the
    /// connection is lost (which breaks the face <-> core cycle early).
    face: Option<Py<PyAny>>,
    /// The socket object; `None` once the connection is lost.
    sock: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    receiver: Option<Receiver>,
    extra: Option<Py<PyDict>>,
    server: Option<Py<PyAny>>,
    buffer: WriteBuffer<OutChunk>,
    high_water: usize,
    low_water: usize,
    protocol_paused: bool,
    protocol_connected: bool,
    /// `close()` was called (or the transport was aborted).
    closing: bool,
    /// `write_eof()` was called.
    eof: bool,
    /// `pause_reading()` was called.
    paused: bool,
    /// Set when `connection_lost` is scheduled; counts writes after that.
    conn_lost: u32,
    /// Registered with the loop for readable / writable events.
    reading: bool,
    writing: bool,
    /// Future resolved when the write buffer empties (used by sendfile).
    empty_waiter: Option<Py<PyAny>>,
    /// Size of the last receive (picks the read strategy, see `read_plain`).
    last_read: usize,
}

/// The native core of a stream socket transport.
#[pyclass(module = "ferroloop._core", name = "TransportCore", frozen, weakref)]
pub struct SocketTransport {
    loop_: Py<Loop>,
    fd: RawFd,
    st: GilCell<State>,
}

/// Runs `f` on a borrowed view of a bytes-like object.
pub(crate) fn with_bytes<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    // SAFETY: `view` is filled by PyObject_GetBuffer and released below; the
    // slice does not outlive the call.
    unsafe {
        let mut view: ffi::Py_buffer = std::mem::zeroed();
        if ffi::PyObject_GetBuffer(data.as_ptr(), &mut view, ffi::PyBUF_SIMPLE) != 0 {
            return Err(PyErr::fetch(data.py()));
        }
        let bytes = if view.len > 0 {
            std::slice::from_raw_parts(view.buf as *const u8, view.len as usize)
        } else {
            &[]
        };
        let result = f(bytes);
        ffi::PyBuffer_Release(&mut view);
        Ok(result)
    }
}

impl SocketTransport {
    fn receiver_for(protocol: &Bound<'_, PyAny>) -> PyResult<Receiver> {
        let py = protocol.py();
        if protocol.is_instance(py_refs::buffered_protocol(py)?)? {
            Ok(Receiver::Buffered {
                get_buffer: protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
                buffer_updated: protocol.getattr(intern!(py, "buffer_updated"))?.unbind(),
            })
        } else {
            Ok(Receiver::Plain(
                protocol.getattr(intern!(py, "data_received"))?.unbind(),
            ))
        }
    }

    fn lp<'py>(&self, py: Python<'py>) -> &Bound<'py, Loop> {
        self.loop_.bind(py)
    }

    /// Registers or unregisters interest in one direction with the loop.
    fn set_interest(slf: &Bound<'_, Self>, dir: Direction, on: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let changed = this.st.with(py, |s| {
            let flag = match dir {
                Direction::Read => &mut s.reading,
                Direction::Write => &mut s.writing,
            };
            std::mem::replace(flag, on) != on
        });
        if !changed {
            return Ok(());
        }
        let lp = this.lp(py);
        if on {
            Loop::watch_transport(lp, this.fd, slf, dir)
        } else {
            Loop::unwatch_transport(lp, this.fd, dir);
            Ok(())
        }
    }

    fn call_soon_method(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let lp = slf.get().lp(slf.py());
        Loop::call_soon(lp, method.clone(), args, None)?;
        Ok(())
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st
            .with(py, |s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    /// The face (`asyncio.Transport`) of this core, or the core itself once
    /// the connection is lost.
    fn face<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        let py = slf.py();
        slf.get()
            .st
            .with(py, |s| s.face.as_ref().map(|f| f.clone_ref(py)))
            .map_or_else(|| slf.clone().into_any(), |f| f.into_bound(py))
    }

    /// asyncio's `_fatal_error`: report (OS errors only in debug mode), then
    /// abort with the exception.
    fn fatal_error(slf: &Bound<'_, Self>, exc: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lp = this.lp(py);
        let value = exc.value(py).clone();
        if exc.is_instance_of::<PyOSError>(py) {
            if lp.get().debug() {
                py_refs::transport_debug(py)?.call1((Self::face(slf), message, &value))?;
            }
        } else {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", &value)?;
            context.set_item("transport", Self::face(slf))?;
            context.set_item("protocol", this.protocol(py))?;
            lp.call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Self::force_close(slf, value.into_any())
    }

    /// asyncio's `_force_close`.
    fn force_close(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (lost, had_buffer, was_closing, dropped) = this.st.with(py, |s| {
            if s.conn_lost > 0 {
                return (true, false, false, Vec::new());
            }
            let dropped = s.buffer.clear();
            let was_closing = std::mem::replace(&mut s.closing, true);
            s.conn_lost += 1;
            (false, !dropped.is_empty(), was_closing, dropped)
        });
        drop(dropped);
        if lost {
            return Ok(());
        }
        if had_buffer {
            Self::set_interest(slf, Direction::Write, false)?;
        }
        if !was_closing {
            Self::set_interest(slf, Direction::Read, false)?;
        }
        let method = slf.getattr(intern!(py, "_call_connection_lost"))?;
        Self::call_soon_method(slf, &method, PyTuple::new(py, [exc])?)
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = this.st.with(py, |s| {
            if s.buffer.len() <= s.high_water || s.protocol_paused {
                return None;
            }
            s.protocol_paused = true;
            s.protocol.as_ref().map(|p| p.clone_ref(py))
        });
        match protocol {
            Some(p) => Self::call_flow_control(slf, p.bind(py), "pause_writing"),
            None => Ok(()),
        }
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = this.st.with(py, |s| {
            if !s.protocol_paused || s.buffer.len() > s.low_water {
                return None;
            }
            s.protocol_paused = false;
            s.protocol.as_ref().map(|p| p.clone_ref(py))
        });
        match protocol {
            Some(p) => Self::call_flow_control(slf, p.bind(py), "resume_writing"),
            None => Ok(()),
        }
    }

    /// Calls `pause_writing`/`resume_writing`; failures go to the exception
    /// handler (asyncio's `_FlowControlMixin`).
    fn call_flow_control(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
        method: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        match protocol.call_method0(method) {
            Ok(_) => Ok(()),
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => {
                let context = PyDict::new(py);
                context.set_item("message", format!("protocol.{method}() failed"))?;
                context.set_item("exception", err.value(py))?;
                context.set_item("transport", Self::face(slf))?;
                context.set_item("protocol", protocol)?;
                slf.get()
                    .lp(py)
                    .call_method1(intern!(py, "call_exception_handler"), (context,))?;
                Ok(())
            }
        }
    }

    /// Called by the loop when the descriptor is readable.
    pub(crate) fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let receiver = this.st.with(py, |s| {
            if s.conn_lost > 0 {
                return None;
            }
            s.receiver.as_ref().map(|r| match r {
                Receiver::Plain(f) => Receiver::Plain(f.clone_ref(py)),
                Receiver::Buffered {
                    get_buffer,
                    buffer_updated,
                } => Receiver::Buffered {
                    get_buffer: get_buffer.clone_ref(py),
                    buffer_updated: buffer_updated.clone_ref(py),
                },
            })
        });
        match receiver {
            None => Ok(()),
            Some(Receiver::Plain(data_received)) => Self::read_plain(slf, data_received.bind(py)),
            Some(Receiver::Buffered {
                get_buffer,
                buffer_updated,
            }) => Self::read_buffered(slf, get_buffer.bind(py), buffer_updated.bind(py)),
        }
    }

    fn read_plain(slf: &Bound<'_, Self>, data_received: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let last = this.st.with(py, |s| s.last_read);
        let received = match (last >= LARGE_READ)
            .then(|| this.recv_large(py, last))
            .flatten()
        {
            Some(received) => received,
            None => this.recv_small(py),
        };
        this.st.with(py, |s| {
            s.last_read = *received.as_ref().map(|(n, _)| n).unwrap_or(&0);
        });
        match received {
            Err(e) if would_block(&e) => Ok(()),
            Err(e) => Self::fatal_error(slf, os_error(e), "Fatal read error on socket transport"),
            Ok((0, _)) => Self::on_eof(slf),
            Ok((_, data)) => match data_received.call1((data.expect("non-empty read"),)) {
                Ok(_) => Ok(()),
                Err(err) if is_interrupt(py, &err) => Err(err),
                Err(err) => Self::fatal_error(
                    slf,
                    err,
                    "Fatal error: protocol.data_received() call failed.",
                ),
            },
        }
    }

    /// Receives into the loop's shared buffer and copies what arrived into a
    /// `bytes` of that size (cheap for small reads: no allocation of a large
    /// object that is mostly unused).
    fn recv_small<'py>(
        &self,
        py: Python<'py>,
    ) -> std::io::Result<(usize, Option<Bound<'py, PyBytes>>)> {
        let lp = self.lp(py).get();
        let mut buf = lp.take_read_buffer(py);
        // SAFETY: `buf` has `buf.len()` writable bytes.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let outcome = if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            let n = n as usize;
            Ok((n, (n > 0).then(|| PyBytes::new(py, &buf[..n]))))
        };
        lp.return_read_buffer(py, buf);
        outcome
    }

    /// After a read of `size >= LARGE_READ` bytes: receives straight into a
    /// `bytes` of that size, which saves copying it when as much arrives
    /// again (fixed-size messages, bulk transfers); a shorter read is copied
    /// into an exact-size `bytes`, as `recv_small` would. Asking the kernel
    /// how much is queued (`FIONREAD`) instead would cost a system call per
    /// read, measurably more than it saves on Unix sockets. `None` if the
    /// allocation fails (then `recv_small` runs).
    fn recv_large<'py>(
        &self,
        py: Python<'py>,
        size: usize,
    ) -> Option<std::io::Result<(usize, Option<Bound<'py, PyBytes>>)>> {
        let size = size.min(READ_BUFFER_SIZE);
        // SAFETY: a new bytes object of `size` bytes, uninitialised until
        // recv fills it; it is handed out only once filled (or replaced by
        // an exact copy of the filled part). Nothing else sees it before.
        unsafe {
            let raw = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size as ffi::Py_ssize_t);
            let Ok(obj) = Bound::from_owned_ptr_or_err(py, raw) else {
                return None;
            };
            let obj = obj.cast_into_unchecked::<PyBytes>();
            let ptr = ffi::PyBytes_AsString(obj.as_ptr()).cast::<libc::c_void>();
            let n = libc::recv(self.fd, ptr, size, 0);
            if n < 0 {
                return Some(Err(std::io::Error::last_os_error()));
            }
            let n = n as usize;
            Some(Ok(match n {
                0 => (0, None),
                n if n == size => (n, Some(obj)),
                n => {
                    let filled = std::slice::from_raw_parts(ptr.cast::<u8>(), n);
                    (n, Some(PyBytes::new(py, filled)))
                }
            }))
        }
    }

    fn read_buffered(
        slf: &Bound<'_, Self>,
        get_buffer: &Bound<'_, PyAny>,
        buffer_updated: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let buffer = get_buffer.call1((-1,)).and_then(|buf| {
            if buf.len()? == 0 {
                Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                ))
            } else {
                Ok(buf)
            }
        });
        let buffer = match buffer {
            Ok(b) => b,
            Err(err) if is_interrupt(py, &err) => return Err(err),
            Err(err) => {
                return Self::fatal_error(
                    slf,
                    err,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        // SAFETY: the writable view is filled by PyObject_GetBuffer and
        // released before any other Python code runs.
        let received = unsafe {
            let mut view: ffi::Py_buffer = std::mem::zeroed();
            if ffi::PyObject_GetBuffer(buffer.as_ptr(), &mut view, ffi::PyBUF_WRITABLE) != 0 {
                Err(PyErr::fetch(py))
            } else {
                let n = libc::recv(this.fd, view.buf, view.len as usize, 0);
                let result = if n < 0 {
                    Ok(Err(std::io::Error::last_os_error()))
                } else {
                    Ok(Ok(n as usize))
                };
                ffi::PyBuffer_Release(&mut view);
                result
            }
        };
        match received {
            Err(err) => {
                Self::fatal_error(slf, err, "Fatal error: protocol.get_buffer() call failed.")
            }
            Ok(Err(e)) if would_block(&e) => Ok(()),
            Ok(Err(e)) => {
                Self::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
            Ok(Ok(0)) => Self::on_eof(slf),
            Ok(Ok(n)) => match buffer_updated.call1((n,)) {
                Ok(_) => Ok(()),
                Err(err) if is_interrupt(py, &err) => Err(err),
                Err(err) => Self::fatal_error(
                    slf,
                    err,
                    "Fatal error: protocol.buffer_updated() call failed.",
                ),
            },
        }
    }

    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.lp(py).get().debug() {
            py_refs::transport_debug(py)?.call1((Self::face(slf), "received EOF", py.None()))?;
        }
        let Some(protocol) = this.protocol(py) else {
            return Ok(());
        };
        match protocol.bind(py).call_method0(intern!(py, "eof_received")) {
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => Self::fatal_error(
                slf,
                err,
                "Fatal error: protocol.eof_received() call failed.",
            ),
            Ok(keep_open) => {
                if keep_open.is_truthy()? {
                    // Keep the connection open for writing; nothing more can
                    // be received.
                    Self::set_interest(slf, Direction::Read, false)
                } else {
                    Self::close(slf)
                }
            }
        }
    }

    /// Called by the loop when the descriptor is writable.
    pub(crate) fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut done = Vec::new();
        let sent = this.st.with(py, |s| {
            if s.conn_lost > 0 {
                return None;
            }
            Some(s.buffer.flush(Sink::Socket, this.fd, &mut done))
        });
        drop(done);
        let Some(sent) = sent else {
            return Ok(());
        };
        if let Err(e) = sent {
            Self::set_interest(slf, Direction::Write, false)?;
            let dropped = this.st.with(py, |s| s.buffer.clear());
            drop(dropped);
            let err = os_error(e);
            let value = err.value(py).clone();
            Self::fatal_error(slf, err, "Fatal write error on socket transport")?;
            if let Some(waiter) = this
                .st
                .with(py, |s| s.empty_waiter.as_ref().map(|w| w.clone_ref(py)))
            {
                waiter.call_method1(py, intern!(py, "set_exception"), (value,))?;
            }
            return Ok(());
        }
        Self::maybe_resume_protocol(slf)?;
        let (empty, closing, eof, waiter) = this.st.with(py, |s| {
            (
                s.buffer.is_empty(),
                s.closing,
                s.eof,
                s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        });
        if !empty {
            return Ok(());
        }
        Self::set_interest(slf, Direction::Write, false)?;
        if let Some(waiter) = waiter {
            waiter.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        }
        if closing {
            Self::call_connection_lost(slf, py.None().into_bound(py))?;
        } else if eof {
            Self::shutdown_write(this.fd)?;
        }
        Ok(())
    }

    fn shutdown_write(fd: RawFd) -> PyResult<()> {
        // SAFETY: shuts down the sending side of our own socket.
        if unsafe { libc::shutdown(fd, libc::SHUT_WR) } != 0 {
            return Err(os_error(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (was_closing, empty) = this.st.with(py, |s| {
            let was_closing = std::mem::replace(&mut s.closing, true);
            let empty = s.buffer.is_empty();
            if !was_closing && empty {
                s.conn_lost += 1;
            }
            (was_closing, empty)
        });
        if was_closing {
            return Ok(());
        }
        Self::set_interest(slf, Direction::Read, false)?;
        if empty {
            Self::set_interest(slf, Direction::Write, false)?;
            let method = slf.getattr(intern!(py, "_call_connection_lost"))?;
            Self::call_soon_method(slf, &method, PyTuple::new(py, [py.None()])?)?;
        }
        Ok(())
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, connected) = this.st.with(py, |s| {
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
        // asyncio's `finally:` part.
        let lp = this.lp(py);
        Loop::forget_transport(lp, this.fd);
        let face = Self::face(slf);
        let (sock, protocol, receiver, server, waiter) = this.st.with(py, |s| {
            s.reading = false;
            s.writing = false;
            (
                s.sock.take(),
                s.protocol.take(),
                s.receiver.take(),
                s.server.take(),
                s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        });
        drop((protocol, receiver));
        let closed = sock.map_or(Ok(()), |sock| {
            sock.call_method0(py, intern!(py, "close")).map(drop)
        });
        let detached = server.map_or(Ok(()), |server| Self::detach_from(&face, server.bind(py)));
        let old_face = this.st.with(py, |s| s.face.take());
        drop(old_face);
        let waited = waiter.map_or(Ok(()), |w| {
            let err = PyConnectionError::new_err("Connection is closed by peer");
            w.call_method1(py, intern!(py, "set_exception"), (err.value(py),))
                .map(drop)
        });
        result.and(closed).and(detached).and(waited)
    }

    fn detach_from(face: &Bound<'_, PyAny>, server: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = face.py();
        if py.version_info() >= (3, 13) {
            server.call_method1(intern!(py, "_detach"), (face,))?;
        } else {
            server.call_method0(intern!(py, "_detach"))?;
        }
        Ok(())
    }

    fn interest_desc(polling: bool) -> &'static str {
        if polling {
            "polling"
        } else {
            "idle"
        }
    }
}

#[pymethods]
impl SocketTransport {
    #[new]
    #[pyo3(signature = (loop_, sock, protocol, extra=None, server=None))]
    fn new(
        loop_: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        extra: Option<&Bound<'_, PyDict>>,
        server: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let extra_dict = match extra {
            Some(d) => d.copy()?,
            None => PyDict::new(py),
        };
        extra_dict.set_item("socket", py_refs::transport_socket(py)?.call1((sock,))?)?;
        let sockname = sock.call_method0(intern!(py, "getsockname"));
        extra_dict.set_item("sockname", sockname.ok())?;
        if !extra_dict.contains("peername")? {
            let peername = sock.call_method0(intern!(py, "getpeername"));
            extra_dict.set_item("peername", peername.ok())?;
        }
        let receiver = Self::receiver_for(protocol)?;
        Ok(SocketTransport {
            loop_: loop_.clone().unbind(),
            fd,
            st: GilCell::new(State {
                face: None,
                sock: Some(sock.clone().unbind()),
                protocol: Some(protocol.clone().unbind()),
                receiver: Some(receiver),
                extra: Some(extra_dict.unbind()),
                server: server.filter(|s| !s.is_none()).map(|s| s.clone().unbind()),
                buffer: WriteBuffer::new(),
                high_water: DEFAULT_HIGH_WATER,
                low_water: DEFAULT_HIGH_WATER / 4,
                protocol_paused: false,
                protocol_connected: true,
                closing: false,
                eof: false,
                paused: false,
                conn_lost: 0,
                reading: false,
                writing: false,
                empty_waiter: None,
                last_read: 0,
            }),
        })
    }

    /// Attaches the transport (seen through `face`) to its loop and server,
    /// then schedules, in asyncio's order, `connection_made`, the start of
    /// reading and the waiter.
    #[pyo3(signature = (face, waiter=None))]
    fn _start(
        slf: &Bound<'_, Self>,
        face: Bound<'_, PyAny>,
        waiter: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lp = this.lp(py);
        let old = this.st.with(py, |s| s.face.replace(face.clone().unbind()));
        drop(old);
        if let Some(server) = this
            .st
            .with(py, |s| s.server.as_ref().map(|sv| sv.clone_ref(py)))
        {
            if py.version_info() >= (3, 13) {
                server.call_method1(py, intern!(py, "_attach"), (&face,))?;
            } else {
                server.call_method0(py, intern!(py, "_attach"))?;
            }
        }
        Loop::adopt_transport(lp, this.fd, slf)?;
        let protocol = this.protocol(py).expect("new transport has a protocol");
        let connection_made = protocol.getattr(py, intern!(py, "connection_made"))?;
        Self::call_soon_method(slf, connection_made.bind(py), PyTuple::new(py, [&face])?)?;
        let start = slf.getattr(intern!(py, "_start_reading"))?;
        Self::call_soon_method(slf, &start, PyTuple::empty(py))?;
        if let Some(waiter) = waiter.filter(|w| !w.is_none()) {
            Self::call_soon_method(
                slf,
                py_refs::set_result_unless_cancelled(py)?,
                PyTuple::new(py, [waiter, py.None().into_bound(py)])?,
            )?;
        }
        Ok(())
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if Self::is_reading(slf) {
            Self::set_interest(slf, Direction::Read, true)?;
        }
        Ok(())
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    /// Write bytes-like `data`; what cannot be sent at once is buffered.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        }
        let (eof, sending_file, conn_lost, buffered) = this.st.with(py, |s| {
            (
                s.eof,
                s.empty_waiter.is_some(),
                s.conn_lost,
                !s.buffer.is_empty(),
            )
        });
        if eof {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if sending_file {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        let length = with_bytes(data, |b| b.len())?;
        if length == 0 {
            return Ok(());
        }
        if conn_lost > 0 {
            if conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                py_refs::transport_warning(py)?.call1(("socket.send() raised exception.",))?;
            }
            this.st.with(py, |s| s.conn_lost += 1);
            return Ok(());
        }
        let mut sent = 0;
        if !buffered {
            match with_bytes(data, |b| send(this.fd, b))? {
                Ok(n) => sent = n,
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    return Self::fatal_error(
                        slf,
                        os_error(e),
                        "Fatal write error on socket transport",
                    )
                }
            }
            if sent == length {
                return Ok(());
            }
            Self::set_interest(slf, Direction::Write, true)?;
        }
        let chunk = if data.is_exact_instance_of::<PyBytes>() {
            let b = data.cast::<PyBytes>()?.as_bytes();
            OutChunk::Bytes {
                _owner: data.clone().unbind(),
                ptr: b[sent..].as_ptr(),
                len: length - sent,
            }
        } else {
            OutChunk::Owned(with_bytes(data, |b| b[sent..].to_vec())?)
        };
        this.st.with(py, |s| s.buffer.push(chunk));
        Self::maybe_pause_protocol(slf)
    }

    /// Write an iterable of bytes-like objects.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        Self::write(slf, &joined)
    }

    /// Close the write end after flushing buffered data.
    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let shutdown_now = this.st.with(py, |s| {
            if s.closing || s.eof {
                return None;
            }
            s.eof = true;
            Some(s.buffer.is_empty())
        });
        match shutdown_now {
            Some(true) => Self::shutdown_write(this.fd),
            _ => Ok(()),
        }
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    /// Close after flushing buffered data; `connection_lost(None)` follows.
    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close(slf)
    }

    /// Close at once, dropping buffered data; `connection_lost(None)` follows.
    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, slf.py().None().into_bound(slf.py()))
    }

    /// asyncio's `_force_close(exc)`.
    fn _force_close(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::force_close(slf, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    fn is_reading(slf: &Bound<'_, Self>) -> bool {
        slf.get().st.with(slf.py(), |s| !s.closing && !s.paused)
    }

    /// Stop calling `data_received` until `resume_reading()`.
    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let paused_now = this.st.with(py, |s| {
            if s.closing || s.paused {
                return false;
            }
            s.paused = true;
            true
        });
        if !paused_now {
            return Ok(());
        }
        Self::set_interest(slf, Direction::Read, false)?;
        if this.lp(py).get().debug() {
            py_refs::transport_debug(py)?.call1((Self::face(slf), "pauses reading", py.None()))?;
        }
        Ok(())
    }

    /// Resume calling `data_received` after `pause_reading()`.
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let resumed = this.st.with(py, |s| {
            if s.closing || !s.paused {
                return false;
            }
            s.paused = false;
            true
        });
        if !resumed {
            return Ok(());
        }
        Self::set_interest(slf, Direction::Read, true)?;
        if this.lp(py).get().debug() {
            py_refs::transport_debug(py)?.call1((Self::face(slf), "resumes reading", py.None()))?;
        }
        Ok(())
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.buffer.len())
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> (usize, usize) {
        self.st.with(py, |s| (s.low_water, s.high_water))
    }

    /// Set the high and low water marks of the write buffer.
    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let (high, low) = match (high, low) {
            (None, None) => (DEFAULT_HIGH_WATER as i64, DEFAULT_HIGH_WATER as i64 / 4),
            (None, Some(l)) => {
                let l: i64 = l.extract()?;
                (4 * l, l)
            }
            (Some(h), None) => {
                let h: i64 = h.extract()?;
                (h, h.div_euclid(4))
            }
            (Some(h), Some(l)) => (h.extract()?, l.extract()?),
        };
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        slf.get().st.with(py, |s| {
            s.high_water = high as usize;
            s.low_water = low as usize;
        });
        Self::maybe_pause_protocol(slf)
    }

    #[pyo3(signature = (name, default=None))]
    fn get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        let Some(extra) = self
            .st
            .with(py, |s| s.extra.as_ref().map(|e| e.clone_ref(py)))
        else {
            return Ok(default);
        };
        Ok(extra
            .bind(py)
            .get_item(name)?
            .map_or(default, Bound::unbind))
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = Self::receiver_for(protocol)?;
        let old = self.st.with(py, |s| {
            s.protocol_connected = true;
            (
                s.protocol.replace(protocol.clone().unbind()),
                s.receiver.replace(receiver),
            )
        });
        drop(old);
        Ok(())
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::call_connection_lost(slf, exc)
    }

    /// A future resolved when the write buffer is empty (for sendfile).
    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| s.empty_waiter.is_some()) {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = Loop::create_future_for(this.lp(py))?;
        let empty = this.st.with(py, |s| {
            s.empty_waiter = Some(waiter.clone().unbind());
            s.buffer.is_empty()
        });
        if empty {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(waiter.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) {
        let old = self.st.with(py, |s| s.empty_waiter.take());
        drop(old);
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st
            .with(py, |s| s.sock.as_ref().map(|x| x.clone_ref(py)))
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<Loop> {
        self.loop_.clone_ref(py)
    }

    #[getter]
    fn _protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    #[getter]
    fn _closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.st.with(py, |s| s.conn_lost)
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.protocol_paused)
    }

    /// The face's representation, asyncio style.
    fn _describe(slf: &Bound<'_, Self>, class_name: &str) -> String {
        let py = slf.py();
        let this = slf.get();
        let (closed, closing, reading, writing, bufsize) = this.st.with(py, |s| {
            (
                s.sock.is_none(),
                s.closing,
                s.reading,
                s.writing,
                s.buffer.len(),
            )
        });
        let mut info = vec![class_name.to_string()];
        if closed {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", this.fd));
        if !closed && !this.lp(py).get().is_closed_now() {
            info.push(format!("read={}", Self::interest_desc(reading)));
            info.push(format!(
                "write=<{}, bufsize={}>",
                Self::interest_desc(writing),
                bufsize
            ));
        }
        format!("<{}>", info.join(" "))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let face = Self::face(slf);
        if face.is(slf) {
            return Ok(Self::_describe(slf, "TransportCore"));
        }
        Ok(face.repr()?.to_string())
    }

    #[getter]
    fn _extra(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.st
            .with(py, |s| s.extra.as_ref().map(|e| e.clone_ref(py)))
    }

    #[getter]
    fn _face(slf: &Bound<'_, Self>) -> Py<PyAny> {
        Self::face(slf).unbind()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            visit.call(&s.face)?;
            visit.call(&s.sock)?;
            visit.call(&s.protocol)?;
            match &s.receiver {
                Some(Receiver::Plain(f)) => visit.call(f)?,
                Some(Receiver::Buffered {
                    get_buffer,
                    buffer_updated,
                }) => {
                    visit.call(get_buffer)?;
                    visit.call(buffer_updated)?;
                }
                None => {}
            }
            visit.call(&s.extra)?;
            visit.call(&s.server)?;
            visit.call(&s.empty_waiter)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let taken = self.st.with(py, |s| {
            (
                s.face.take(),
                s.protocol.take(),
                s.receiver.take(),
                s.extra.take(),
                s.server.take(),
                s.empty_waiter.take(),
            )
        });
        drop(taken);
    }
}
