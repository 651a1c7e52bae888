//! The stream socket transport (TCP and Unix), with asyncio's semantics
//! (`_SelectorSocketTransport`). What every transport shares is in
//! `base.rs`; this file holds only stream I/O.
//!
//! Reading: when the loop finds the descriptor readable it queues a native
//! ready item (in the place asyncio queues the transport's `_read_ready`
//! handle, so ordering is asyncio's) and the transport receives once, where
//! the read-size policy says (`ferroloop_core::io::read_policy`): into the
//! loop's shared receive buffer, copied into an exact-size `bytes` for
//! `data_received`, or after a large read straight into a new `bytes` of
//! the last read's size. A `BufferedProtocol` gets `get_buffer(-1)`, a
//! receive straight into that buffer, and `buffer_updated(n)`. End of file
//! calls `eof_received`; a true result keeps the transport open for
//! writing.
//!
//! Writing: `write()` sends at once when nothing is queued; what the kernel
//! does not take is queued (a `bytes` object by reference, anything else
//! copied) and flushed with one vectored send per writable event.

use ferroloop_core::io::read_policy::{ReadPlan, ReadSizer};
use ferroloop_core::sys::{socket, would_block};
use ferroloop_core::transport::lifecycle::{Flushed, WriteEof, WriteGate};
use ferroloop_core::{Sink, WriteBuffer};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView};
use pyo3::{intern, PyTraverseError};

use super::base::{self, Transport, TransportBase};
use crate::buffer::{with_bytes, BufferGuard, OutChunk};
use crate::cpython::fill_new_bytes;
use crate::errors::{os_error, unless_interrupt};
use crate::gil_cell::GilCell;
use crate::loop_::{Loop, READ_BUFFER_SIZE};
use crate::py_refs;
use crate::source::Direction;

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

impl Receiver {
    fn for_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<Self> {
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

    fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            Receiver::Plain(f) => Receiver::Plain(f.clone_ref(py)),
            Receiver::Buffered {
                get_buffer,
                buffer_updated,
            } => Receiver::Buffered {
                get_buffer: get_buffer.clone_ref(py),
                buffer_updated: buffer_updated.clone_ref(py),
            },
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Receiver::Plain(f) => visit.call(f),
            Receiver::Buffered {
                get_buffer,
                buffer_updated,
            } => {
                visit.call(get_buffer)?;
                visit.call(buffer_updated)
            }
        }
    }
}

/// The stream's own state.
struct StreamIo {
    receiver: Option<Receiver>,
    buffer: WriteBuffer<OutChunk>,
    sizer: ReadSizer,
    /// Future resolved when the write buffer empties (used by sendfile).
    empty_waiter: Option<Py<PyAny>>,
}

/// The native core of a stream socket transport.
#[pyclass(module = "ferroloop._core", name = "TransportCore", frozen, weakref)]
pub struct StreamTransport {
    base: TransportBase,
    io: GilCell<StreamIo>,
}

impl Transport for StreamTransport {
    const WRITE_READY: &'static str = "_write_ready";

    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn queued(&self, py: Python<'_>) -> usize {
        self.io.with(py, |s| s.buffer.len())
    }

    fn drop_queued(&self, py: Python<'_>) {
        let dropped = self.io.with(py, |s| s.buffer.clear());
        drop(dropped);
    }

    fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = Receiver::for_protocol(protocol)?;
        let old = self.io.with(py, |s| s.receiver.replace(receiver));
        drop(old);
        Ok(())
    }

    fn lost(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (receiver, waiter) = slf.get().io.with(py, |s| {
            (
                s.receiver.take(),
                s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        });
        drop(receiver);
        waiter.map_or(Ok(()), |w| {
            let err = PyConnectionError::new_err("Connection is closed by peer");
            w.call_method1(py, intern!(py, "set_exception"), (err.value(py),))
                .map(drop)
        })
    }
}

impl StreamTransport {
    /// Called by the loop when the descriptor is readable.
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        let receiver = this
            .io
            .with(py, |s| s.receiver.as_ref().map(|r| r.clone_ref(py)));
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
        let plan = this.io.with(py, |s| s.sizer.plan(READ_BUFFER_SIZE));
        let received = match plan {
            ReadPlan::Direct(size) => this.recv_direct(py, size),
            ReadPlan::Shared => None,
        }
        .unwrap_or_else(|| this.recv_shared(py));
        let n = match &received {
            Ok(Some(data)) => data.as_bytes().len(),
            _ => 0,
        };
        this.io.with(py, |s| s.sizer.record(n));
        match received {
            Err(e) if would_block(&e) => Ok(()),
            Err(e) => base::fatal_error(slf, os_error(e), "Fatal read error on socket transport"),
            Ok(None) => Self::on_eof(slf),
            Ok(Some(data)) => base::protocol_outcome(
                slf,
                data_received.call1((data,)).map(drop),
                "Fatal error: protocol.data_received() call failed.",
            ),
        }
    }

    /// Receives into the loop's shared buffer and copies what arrived into a
    /// `bytes` of that size; `None` at end of stream.
    fn recv_shared<'py>(&self, py: Python<'py>) -> std::io::Result<Option<Bound<'py, PyBytes>>> {
        let mut buf = self.base.lp(py).get().read_buffer(py);
        let n = socket::recv(self.base.fd(), &mut buf)?;
        Ok((n > 0).then(|| PyBytes::new(py, &buf[..n])))
    }

    /// Receives straight into a new `bytes` of `size` bytes (see the module
    /// documentation); `None` if the allocation fails (then `recv_shared`
    /// runs).
    fn recv_direct<'py>(
        &self,
        py: Python<'py>,
        size: usize,
    ) -> Option<std::io::Result<Option<Bound<'py, PyBytes>>>> {
        let fd = self.base.fd();
        let mut got = 0;
        let filled = fill_new_bytes(py, size, |ptr, len| {
            // SAFETY: `ptr` is writable for `len` bytes (see fill_new_bytes).
            got = unsafe { socket::recv_raw(fd, ptr, len) }?;
            Ok(got)
        })?;
        Some(filled.map(|bytes| (got > 0).then_some(bytes)))
    }

    fn read_buffered(
        slf: &Bound<'_, Self>,
        get_buffer: &Bound<'_, PyAny>,
        buffer_updated: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        const GET_BUFFER_FAILED: &str = "Fatal error: protocol.get_buffer() call failed.";
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
        let buffer = match unless_interrupt(py, buffer.map(Some), |err| {
            base::fatal_error(slf, err, GET_BUFFER_FAILED).map(|()| None)
        })? {
            Some(buffer) => buffer,
            None => return Ok(()),
        };
        let received = BufferGuard::get(&buffer, true).map(|mut view| {
            // SAFETY: the writable view stays exported (its memory put)
            // until `view` is dropped at the end of this closure; no Python
            // code runs meanwhile.
            unsafe { socket::recv_raw(this.base.fd(), view.as_mut_ptr(), view.len()) }
        });
        match received {
            Err(err) => base::fatal_error(slf, err, GET_BUFFER_FAILED),
            Ok(Err(e)) if would_block(&e) => Ok(()),
            Ok(Err(e)) => {
                base::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
            Ok(Ok(0)) => Self::on_eof(slf),
            Ok(Ok(n)) => base::protocol_outcome(
                slf,
                buffer_updated.call1((n,)).map(drop),
                "Fatal error: protocol.buffer_updated() call failed.",
            ),
        }
    }

    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let base = &slf.get().base;
        if base.debug(py) {
            base::debug_log(slf, "received EOF", None)?;
        }
        let Some(protocol) = base.protocol(py) else {
            return Ok(());
        };
        match protocol.bind(py).call_method0(intern!(py, "eof_received")) {
            Ok(keep_open) if keep_open.is_truthy()? => {
                // Keep the connection open for writing; nothing more can be
                // received.
                base::set_watching(slf, Direction::Read, false)
            }
            Ok(_) => base::close(slf),
            Err(err) => base::protocol_outcome(
                slf,
                Err(err),
                "Fatal error: protocol.eof_received() call failed.",
            ),
        }
    }

    /// Called by the loop when the descriptor is writable.
    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        let fd = this.base.fd();
        let mut done = Vec::new();
        let sent = this
            .io
            .with(py, |s| s.buffer.flush(Sink::Socket, fd, &mut done));
        drop(done);
        if let Err(e) = sent {
            base::set_watching(slf, Direction::Write, false)?;
            this.drop_queued(py);
            let err = os_error(e);
            let value = err.value(py).clone();
            base::fatal_error(slf, err, "Fatal write error on socket transport")?;
            if let Some(waiter) = this.empty_waiter(py) {
                waiter.call_method1(py, intern!(py, "set_exception"), (value,))?;
            }
            return Ok(());
        }
        base::maybe_resume_protocol(slf)?;
        if this.queued(py) > 0 {
            return Ok(());
        }
        base::set_watching(slf, Direction::Write, false)?;
        if let Some(waiter) = this.empty_waiter(py) {
            waiter.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        }
        match this.base.life(py, |l| l.flushed()) {
            Flushed::LoseConnection => base::call_connection_lost(slf, py.None().into_bound(py)),
            Flushed::ShutDownWrite => shutdown_write(fd),
            Flushed::Nothing => Ok(()),
        }
    }

    fn empty_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.io
            .with(py, |s| s.empty_waiter.as_ref().map(|w| w.clone_ref(py)))
    }
}

fn shutdown_write(fd: std::os::fd::RawFd) -> PyResult<()> {
    socket::shutdown_write(fd).map_err(os_error)
}

#[pymethods]
impl StreamTransport {
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
        let fd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let extra = base::socket_extra(sock, extra)?;
        let receiver = Receiver::for_protocol(protocol)?;
        Ok(StreamTransport {
            base: TransportBase::new(loop_, fd, sock, protocol, extra, server),
            io: GilCell::new(StreamIo {
                receiver: Some(receiver),
                buffer: WriteBuffer::new(),
                sizer: ReadSizer::default(),
                empty_waiter: None,
            }),
        })
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
        if this.base.life(py, |l| l.eof_written()) {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if this.io.with(py, |s| s.empty_waiter.is_some()) {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        let length = with_bytes(data, |b| b.len())?;
        if length == 0 {
            return Ok(());
        }
        if let WriteGate::Lost { warn } = this.base.life(py, |l| l.write_gate()) {
            if warn {
                py_refs::transport_warning(py)?.call1(("socket.send() raised exception.",))?;
            }
            return Ok(());
        }
        let mut sent = 0;
        if this.queued(py) == 0 {
            match with_bytes(data, |b| socket::send(this.base.fd(), b))? {
                Ok(n) => sent = n,
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    return base::fatal_error(
                        slf,
                        os_error(e),
                        "Fatal write error on socket transport",
                    )
                }
            }
            if sent == length {
                return Ok(());
            }
            base::set_watching(slf, Direction::Write, true)?;
        }
        let chunk = OutChunk::new(data, sent)?;
        this.io.with(py, |s| s.buffer.push(chunk));
        base::maybe_pause_protocol(slf)
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
        let queued = this.queued(py) > 0;
        match this.base.life(py, |l| l.write_eof(queued)) {
            WriteEof::ShutDownNow => shutdown_write(this.base.fd()),
            WriteEof::AfterFlush | WriteEof::Nothing => Ok(()),
        }
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    /// A future resolved when the write buffer is empty (for sendfile).
    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.io.with(py, |s| s.empty_waiter.is_some()) {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = Loop::new_future(this.base.lp(py))?;
        let empty = this.io.with(py, |s| {
            s.empty_waiter = Some(waiter.clone().unbind());
            s.buffer.is_empty()
        });
        if empty {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(waiter.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) {
        let old = self.io.with(py, |s| s.empty_waiter.take());
        drop(old);
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let face = base::face(slf);
        if face.is(slf) {
            return Ok(base::describe(slf, "TransportCore"));
        }
        Ok(face.repr()?.to_string())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.io.peek_for_gc() } {
            if let Some(receiver) = &s.receiver {
                receiver.traverse(&visit)?;
            }
            visit.call(&s.empty_waiter)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        let taken = self
            .io
            .with(py, |s| (s.receiver.take(), s.empty_waiter.take()));
        drop(taken);
    }
}

transport_methods!(StreamTransport);
