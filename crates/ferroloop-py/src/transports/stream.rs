//! The stream socket transport (TCP and Unix), with asyncio's semantics
//! (`_SelectorSocketTransport`). What every transport shares is in
//! `base.rs`; this file holds only stream I/O.
//!
//! Reading: when the loop finds the descriptor readable it queues a native
//! ready item (in the place asyncio queues the transport's `_read_ready`
//! handle, so ordering is asyncio's) and the transport receives once
//! (`reading.rs`: the shared buffer or a direct read, `data_received` or a
//! `BufferedProtocol`'s buffer, or asyncio's `StreamReader` fed natively,
//! `feed.rs`). End of file calls `eof_received`; a true
//! result keeps the transport open for writing.
//!
//! Writing: `write()` sends at once when nothing is queued; what the kernel
//! does not take is queued (a `bytes` object by reference, anything else
//! copied) and flushed with one vectored send per writable event.

use ferroloop_core::sys::socket;
use ferroloop_core::transport::lifecycle::{Flushed, WriteEof, WriteGate};
use ferroloop_core::Sink;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3::{intern, PyTraverseError};

use super::base::{self, Transport, TransportBase};
use super::reading::{Reading, Received, GET_BUFFER_FAILED};
use super::writing::{is_bytes_like, Flush, Writing};
use crate::buffer::with_bytes;
use crate::compat;
use crate::errors::os_error;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::py_refs;
use crate::source::Direction;

/// The stream's own state.
struct StreamIo {
    /// Future resolved when the write buffer empties (used by sendfile).
    empty_waiter: Option<Py<PyAny>>,
}

/// The native core of a stream socket transport.
#[pyclass(module = "ferroloop._core", name = "TransportCore", frozen, weakref)]
pub struct StreamTransport {
    base: TransportBase,
    reading: Reading,
    writing: Writing,
    io: GilCell<StreamIo>,
}

impl Transport for StreamTransport {
    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    fn queued(&self, py: Python<'_>) -> usize {
        self.writing.len(py)
    }

    fn drop_queued(&self, py: Python<'_>) {
        self.writing.clear(py);
    }

    fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.reading.protocol_changed(py, protocol)
    }

    fn lost(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.reading.release(py);
        let waiter = this.empty_waiter(py);
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
        let lp = this.base.lp(py);
        match this.reading.receive(lp, this.base.fd(), socket::recv_raw) {
            Received::Nothing => Ok(()),
            Received::Eof => Self::on_eof(slf),
            Received::Failed(e) => {
                base::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
            Received::BufferFailed(err) => base::protocol_outcome(slf, Err(err), GET_BUFFER_FAILED),
            Received::Delivered {
                result, message, ..
            } => base::protocol_outcome(slf, result, message),
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
        match this.writing.flush(slf)? {
            Flush::Pending => Ok(()),
            Flush::Failed(e) => {
                let err = os_error(e);
                let value = err.value(py).clone();
                base::fatal_error(slf, err, "Fatal write error on socket transport")?;
                if let Some(waiter) = this.empty_waiter(py) {
                    waiter.call_method1(py, intern!(py, "set_exception"), (value,))?;
                }
                Ok(())
            }
            Flush::Drained => {
                if let Some(waiter) = this.empty_waiter(py) {
                    waiter.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
                }
                match this.base.life(py, |l| l.flushed()) {
                    Flushed::LoseConnection => {
                        base::call_connection_lost(slf, py.None().into_bound(py))
                    }
                    Flushed::ShutDownWrite => shutdown_write(this.base.fd()),
                    Flushed::Nothing => Ok(()),
                }
            }
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
        Ok(StreamTransport {
            base: TransportBase::new(loop_, fd, sock, protocol, extra, server),
            reading: Reading::new(protocol)?,
            writing: Writing::new(Sink::Socket),
            io: GilCell::new(StreamIo { empty_waiter: None }),
        })
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    /// Write bytes-like `data`; what cannot be sent at once is buffered.
    pub(crate) fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !is_bytes_like(data) {
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
        match this.writing.write(slf, data, length)? {
            Ok(()) => Ok(()),
            Err(e) => base::fatal_error(slf, os_error(e), "Fatal write error on socket transport"),
        }
    }

    /// Write an iterable of bytes-like objects. Where asyncio's stream
    /// transport has a `writelines` of its own (3.12+), with its checks, in
    /// its order; before, `write(b"".join(list_of_data))` as asyncio's.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let items = if compat::writelines_takes_views(py)? {
            if this.base.life(py, |l| l.eof_written()) {
                return Err(PyRuntimeError::new_err(
                    "Cannot call writelines() after write_eof()",
                ));
            }
            if this.io.with(py, |s| s.empty_waiter.is_some()) {
                return Err(PyRuntimeError::new_err(
                    "unable to writelines; sendfile is in progress",
                ));
            }
            if !list_of_data.is_truthy()? {
                return Ok(());
            }
            let memoryview = py_refs::memoryview(py)?;
            let views = list_of_data
                .try_iter()?
                .map(|item| memoryview.call1((item?,)))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, views)?.into_any()
        } else {
            list_of_data.clone()
        };
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (items,))?;
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
        this.io
            .with(py, |s| s.empty_waiter = Some(waiter.clone().unbind()));
        let empty = this.writing.is_empty(py);
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
        base::core_repr(slf, "TransportCore")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        self.reading.traverse(&visit)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.io.peek_for_gc() } {
            visit.call(&s.empty_waiter)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        self.reading.release(py);
        let taken = self.io.with(py, |s| s.empty_waiter.take());
        drop(taken);
    }
}

transport_methods!(StreamTransport);
