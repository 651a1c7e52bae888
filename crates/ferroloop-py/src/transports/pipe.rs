//! Pipe transports, with asyncio's semantics (`_UnixReadPipeTransport`,
//! `_UnixWritePipeTransport`): one read-only and one write-only kind over a
//! pipe, FIFO, socket or character device (a pty). What every transport
//! shares is in `base.rs`, receiving in `reading.rs`; this file holds only
//! what pipes do differently.
//!
//! Reading: one `read` per readiness event through `reading.rs` (the loop's
//! shared buffer or a direct read; a `BufferedProtocol` too, which
//! asyncio's read pipe does not take; asyncio's `StreamReader` fed
//! natively, `feed.rs`). At end of file, `eof_received` and
//! then `connection_lost(None)` are scheduled, in that order, and
//! `eof_received`'s result is ignored (a pipe cannot be half open). As in
//! asyncio, an exception from `data_received` is reported as a failed
//! callback and the pipe stays open; a read error is fatal, and reported to
//! the exception handler unless it is `EIO` (a pty whose other side
//! closed).
//!
//! Writing: `write()` writes at once when nothing is queued; the rest is
//! queued and flushed with `writev` (`sendmsg` for a socket) when writable,
//! with water-mark flow control. `write_eof()` and `close()` are the same thing
//! for a pipe: `connection_lost(None)` once the queue is flushed. A pipe or
//! socket is also watched for *reading*: it becomes readable (an error
//! event) when the reader goes away, which closes the transport at once
//! (with `BrokenPipeError` if bytes were still queued); a write that fails
//! with `EPIPE` is fatal, with the error passed to `connection_lost`.
//! `SIGPIPE` is not raised: a socket is written with `MSG_NOSIGNAL`, and
//! the interpreter ignores the signal for pipes (see `ferroloop_core::sys`). Writes after closing are dropped, counted as
//! asyncio counts them, with its warning from the fifth on.

use std::os::fd::RawFd;

use ferroloop_core::sys::pipe::{self, FileKind};
use ferroloop_core::sys::EIO;
use ferroloop_core::transport::lifecycle::Flushed;
use ferroloop_core::Sink;
use pyo3::exceptions::{PyAssertionError, PyBrokenPipeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3::{intern, PyTraverseError};

use super::base::{self, Transport, TransportBase};
use super::reading::{Reading, Received, GET_BUFFER_FAILED};
use super::writing::{is_bytes_like, Flush, Writing};
use crate::buffer::with_bytes;
use crate::errors::os_error;
use crate::gil_cell::GilCell;
use crate::loop_::Loop;
use crate::py_refs;
use crate::source::Direction;

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// The shared state of a pipe transport on `pipe`, whose descriptor is
/// checked to be something a pipe transport can use (else asyncio's
/// `ValueError` with `refusal`) and made non-blocking; the extra info is a
/// copy of `extra` with asyncio's `pipe`.
fn pipe_base(
    loop_: &Bound<'_, Loop>,
    pipe: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    extra: Option<&Bound<'_, PyDict>>,
    refusal: &str,
) -> PyResult<(TransportBase, FileKind)> {
    let fd: RawFd = pipe.call_method0(intern!(pipe.py(), "fileno"))?.extract()?;
    let kind = pipe::file_kind(fd).map_err(os_error)?;
    if kind == FileKind::Other {
        return Err(PyValueError::new_err(refusal.to_string()));
    }
    pipe::set_nonblocking(fd).map_err(os_error)?;
    let extra = match extra {
        Some(d) => d.copy()?,
        None => PyDict::new(pipe.py()),
    };
    extra.set_item("pipe", pipe)?;
    let base = TransportBase::new(loop_, fd, pipe, protocol, extra, None);
    Ok((base, kind))
}

/// asyncio's pipe representation: `<Name [closed|closing] fd=N state>`,
/// the state being whether `dir` is polled (and, for writing, the queued
/// size), `open` once the loop is closed, `closed` once the pipe is.
fn describe<T: Transport>(slf: &Bound<'_, T>, class_name: &str, dir: Direction) -> String {
    let py = slf.py();
    let this = slf.get();
    let base = this.base();
    let closed = base.file(py).is_none();
    let mut info = vec![class_name.to_string()];
    if closed {
        info.push("closed".into());
    } else if base.life(py, |l| l.is_closing()) {
        info.push("closing".into());
    }
    info.push(format!("fd={}", base.fd()));
    if closed {
        info.push("closed".into());
    } else if base.lp(py).get().is_closed_now() {
        info.push("open".into());
    } else {
        let watching = base.life(py, |l| l.watching());
        let polling = match dir {
            Direction::Read => watching.read,
            Direction::Write => watching.write,
        };
        info.push(if polling { "polling" } else { "idle" }.into());
        if dir == Direction::Write {
            info.push(format!("bufsize={}", this.queued(py)));
        }
    }
    format!("<{}>", info.join(" "))
}

/// asyncio's "was closed by peer" line, in debug mode.
fn log_closed_by_peer<T: Transport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    if slf.get().base().debug(py) {
        py_refs::transport_info(py)?.call1((base::face(slf), "was closed by peer"))?;
    }
    Ok(())
}

/// The native core of a read pipe transport.
#[pyclass(module = "ferroloop._core", name = "ReadPipeCore", frozen, weakref)]
pub struct ReadPipeTransport {
    base: TransportBase,
    reading: Reading,
}

impl Transport for ReadPipeTransport {
    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn queued(&self, _py: Python<'_>) -> usize {
        0
    }

    fn drop_queued(&self, _py: Python<'_>) {}

    fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.reading.protocol_changed(py, protocol)
    }

    fn lost(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().reading.release(slf.py());
        Ok(())
    }

    /// Only `EIO` (the other side of a pty closed) is quiet: asyncio
    /// reports every other read error.
    fn quiet_error(py: Python<'_>, err: &PyErr) -> bool {
        err.value(py)
            .getattr(intern!(py, "errno"))
            .and_then(|e| e.extract::<i32>())
            .is_ok_and(|e| e == EIO)
    }

    fn describe(slf: &Bound<'_, Self>, class_name: &str) -> String {
        describe(slf, class_name, Direction::Read)
    }
}

impl ReadPipeTransport {
    /// Called by the loop when the descriptor is readable.
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        let lp = this.base.lp(py);
        match this.reading.receive(lp, this.base.fd(), pipe::read_raw) {
            Received::Nothing => Ok(()),
            Received::Eof => Self::on_eof(slf),
            Received::Failed(e) => {
                base::fatal_error(slf, os_error(e), "Fatal read error on pipe transport")
            }
            Received::BufferFailed(err) => base::protocol_outcome(slf, Err(err), GET_BUFFER_FAILED),
            // As asyncio's read pipe: a failing `data_received` is the
            // failed callback's report, and the pipe stays open.
            Received::Delivered {
                result,
                plain: true,
                ..
            } => result,
            Received::Delivered {
                result, message, ..
            } => base::protocol_outcome(slf, result, message),
        }
    }

    /// End of file: `eof_received()`, then `connection_lost(None)`.
    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        log_closed_by_peer(slf)?;
        if let Some(protocol) = slf.get().base.protocol(py) {
            let eof_received = protocol.getattr(py, intern!(py, "eof_received"))?;
            Loop::call_soon_plain(
                slf.get().base.lp(py),
                eof_received.bind(py),
                pyo3::types::PyTuple::empty(py),
            )?;
        }
        base::close(slf)
    }
}

#[pymethods]
impl ReadPipeTransport {
    #[new]
    #[pyo3(signature = (loop_, pipe, protocol, extra=None))]
    fn new(
        loop_: &Bound<'_, Loop>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let refusal = "Pipe transport is for pipes/sockets only.";
        let (base, _) = pipe_base(loop_, pipe, protocol, extra, refusal)?;
        Ok(ReadPipeTransport {
            base,
            reading: Reading::new(protocol)?,
        })
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    /// Lets go of the pipe without closing it (`transport._pipe = None`).
    fn _forget_pipe(&self, py: Python<'_>) {
        self.base.forget_file(py);
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        base::core_repr(slf, "ReadPipeCore")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        self.reading.traverse(&visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        self.reading.release(py);
    }
}

transport_methods!(ReadPipeTransport);

/// The write pipe's own state.
struct WriteIo {
    /// asyncio's `_conn_lost` of a write pipe: failed writes, then writes
    /// dropped because the pipe is closing or lost.
    conn_lost: u32,
    /// Whether the descriptor is watched for reading to notice the reader
    /// going away (pipes and sockets; not character devices).
    watch_peer: bool,
}

/// The native core of a write pipe transport.
#[pyclass(module = "ferroloop._core", name = "WritePipeCore", frozen, weakref)]
pub struct WritePipeTransport {
    base: TransportBase,
    writing: Writing,
    io: GilCell<WriteIo>,
}

impl Transport for WritePipeTransport {
    fn base(&self) -> &TransportBase {
        &self.base
    }

    /// A write pipe watches for readability to notice the reader going away
    /// (pipes and sockets), until it closes.
    fn starts_reading(&self, py: Python<'_>) -> bool {
        self.io.with(py, |s| s.watch_peer) && !self.base.life(py, |l| l.is_closing())
    }

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::peer_closed(slf)
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

    fn protocol_changed(&self, _py: Python<'_>, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(())
    }

    fn lost(_slf: &Bound<'_, Self>) -> PyResult<()> {
        Ok(())
    }

    const WATCHES_PEER_WHILE_CLOSING: bool = true;

    fn describe(slf: &Bound<'_, Self>, class_name: &str) -> String {
        describe(slf, class_name, Direction::Write)
    }
}

impl WritePipeTransport {
    fn count_lost_write(&self, py: Python<'_>) -> u32 {
        self.io.with(py, |s| {
            s.conn_lost += 1;
            s.conn_lost
        })
    }

    /// The descriptor became readable: the reader went away.
    fn peer_closed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        log_closed_by_peer(slf)?;
        let exc = if this.queued(py) > 0 {
            PyBrokenPipeError::new_err(()).into_value(py).into_any()
        } else {
            py.None()
        };
        base::force_close(slf, exc.into_bound(py))
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
                this.count_lost_write(py);
                base::fatal_error(slf, os_error(e), "Fatal write error on pipe transport")
            }
            Flush::Drained => match this.base.life(py, |l| l.flushed()) {
                Flushed::LoseConnection => {
                    base::call_connection_lost(slf, py.None().into_bound(py))
                }
                Flushed::ShutDownWrite | Flushed::Nothing => Ok(()),
            },
        }
    }
}

#[pymethods]
impl WritePipeTransport {
    #[new]
    #[pyo3(signature = (loop_, pipe, protocol, extra=None))]
    fn new(
        loop_: &Bound<'_, Loop>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let refusal = "Pipe transport is only for pipes, sockets and character devices";
        let (base, kind) = pipe_base(loop_, pipe, protocol, extra, refusal)?;
        Ok(WritePipeTransport {
            base,
            // A socket is written with MSG_NOSIGNAL; other descriptors
            // rely on the interpreter ignoring SIGPIPE.
            writing: Writing::new(if kind == FileKind::Socket {
                Sink::Socket
            } else {
                Sink::Pipe
            }),
            io: GilCell::new(WriteIo {
                conn_lost: 0,
                watch_peer: matches!(kind, FileKind::Fifo | FileKind::Socket),
            }),
        })
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::peer_closed(slf)
    }

    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    /// Write bytes-like `data`; what cannot be written at once is queued.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !is_bytes_like(data) {
            return Err(PyAssertionError::new_err(data.repr()?.unbind()));
        }
        let length = with_bytes(data, |b| b.len())?;
        if length == 0 {
            return Ok(());
        }
        if this.base.life(py, |l| l.is_closing()) {
            let seen = this.io.with(py, |s| s.conn_lost);
            if seen >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                py_refs::transport_warning(py)?
                    .call1(("pipe closed by peer or os.write(pipe, data) raised exception.",))?;
            }
            this.count_lost_write(py);
            return Ok(());
        }
        match this.writing.write(slf, data, length)? {
            Ok(()) => Ok(()),
            Err(e) => {
                this.count_lost_write(py);
                base::fatal_error(slf, os_error(e), "Fatal write error on pipe transport")
            }
        }
    }

    /// Write an iterable of bytes-like objects.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        Self::write(slf, &joined)
    }

    /// Close once the queue is flushed: for a pipe, the end of file.
    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        base::close(slf)
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    /// Lets go of the pipe without closing it (`transport._pipe = None`).
    fn _forget_pipe(&self, py: Python<'_>) {
        self.base.forget_file(py);
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        base::core_repr(slf, "WritePipeCore")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
    }
}

transport_methods!(WritePipeTransport);
