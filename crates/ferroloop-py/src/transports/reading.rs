//! Receiving, for every transport kind that reads (streams, read pipes).
//!
//! One read per readiness event, where the read-size policy says
//! (`ferroloop_core::io::read_policy`): into the loop's shared receive
//! buffer, copied into a `bytes` of its size for `data_received`, or
//! straight into a `bytes` sized from the recent reads. That object is the
//! loop's spare one when it fits, and is taken back as the spare if the
//! protocol drops it (`OwnedBytes`). A
//! `BufferedProtocol` gets `get_buffer(-1)`, a read straight into that
//! buffer, and `buffer_updated(n)`. A native protocol (the TLS layer) is
//! handed the shared buffer's bytes in place, without a Python call, and so
//! is asyncio's `StreamReaderProtocol`, whose reader the transport feeds
//! from the shared buffer as `data_received` would (`feed.rs`; with a
//! `data_received(bytes)` call whenever that declines). The kind supplies
//! the system call (a socket `recv`, a pipe `read`) and decides what end of
//! file, errors and protocol failures mean for it ([`Received`]).

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::io::read_policy::{fits, ReadPlan, ReadSizer};
use ferroloop_core::sys::would_block;
use pyo3::exceptions::{PyMemoryError, PyRuntimeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{intern, PyTraverseError};

use super::base::{self, ReceiveFn};
use super::feed;
use crate::buffer::BufferGuard;
use crate::cpython::OwnedBytes;
use crate::gil_cell::GilCell;
use crate::loop_::{Loop, READ_BUFFER_SIZE};
use crate::py_refs;

/// One read system call into raw memory (`recv`, `read`).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the
/// call.
pub type RawRead = unsafe fn(RawFd, *mut u8, usize) -> io::Result<usize>;

/// The report of a failed `data_received()`.
const DATA_RECEIVED_FAILED: &str = "Fatal error: protocol.data_received() call failed.";

/// The report of a failed `get_buffer()`.
pub const GET_BUFFER_FAILED: &str = "Fatal error: protocol.get_buffer() call failed.";

/// How received data reaches the protocol.
enum Receiver {
    /// `protocol.data_received`.
    Plain(Py<PyAny>),
    /// `protocol.get_buffer` and `protocol.buffer_updated`.
    Buffered {
        get_buffer: Py<PyAny>,
        buffer_updated: Py<PyAny>,
    },
    /// A native protocol, handed the bytes without a Python call.
    Native(Py<PyAny>, ReceiveFn),
    /// asyncio's `StreamReaderProtocol` (recognised by `feed.rs`), whose
    /// reader is fed natively, or through `data_received` when that
    /// declines.
    Stream {
        protocol: Py<PyAny>,
        data_received: Py<PyAny>,
    },
}

impl Receiver {
    fn for_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = protocol.py();
        if let Some(receive) = base::native_receiver(protocol) {
            return Ok(Receiver::Native(protocol.clone().unbind(), receive));
        }
        if protocol.is_instance(py_refs::buffered_protocol(py)?)? {
            Ok(Receiver::Buffered {
                get_buffer: protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
                buffer_updated: protocol.getattr(intern!(py, "buffer_updated"))?.unbind(),
            })
        } else {
            let data_received = protocol.getattr(intern!(py, "data_received"))?;
            if feed::recognise(protocol, &data_received) {
                return Ok(Receiver::Stream {
                    protocol: protocol.clone().unbind(),
                    data_received: data_received.unbind(),
                });
            }
            Ok(Receiver::Plain(data_received.unbind()))
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
            Receiver::Native(p, receive) => Receiver::Native(p.clone_ref(py), *receive),
            Receiver::Stream {
                protocol,
                data_received,
            } => Receiver::Stream {
                protocol: protocol.clone_ref(py),
                data_received: data_received.clone_ref(py),
            },
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Receiver::Plain(f) | Receiver::Native(f, _) => visit.call(f),
            Receiver::Buffered {
                get_buffer,
                buffer_updated,
            } => {
                visit.call(get_buffer)?;
                visit.call(buffer_updated)
            }
            Receiver::Stream {
                protocol,
                data_received,
            } => {
                visit.call(protocol)?;
                visit.call(data_received)
            }
        }
    }
}

/// What one read did.
pub enum Received {
    /// Nothing to read now (`EAGAIN`, `EINTR`), or no protocol any more.
    Nothing,
    /// End of file.
    Eof,
    /// The read system call failed.
    Failed(io::Error),
    /// `get_buffer()` failed, returned an empty buffer or one that cannot
    /// be written.
    BufferFailed(PyErr),
    /// Bytes were handed to the protocol.
    Delivered {
        /// What `data_received` / `buffer_updated` returned (or raised).
        result: PyResult<()>,
        /// The report of a failure, asyncio's words.
        message: &'static str,
        /// Whether it was `data_received` (not a `BufferedProtocol`).
        plain: bool,
    },
}

struct ReadState {
    receiver: Option<Receiver>,
    sizer: ReadSizer,
}

/// The receiving side of a transport.
pub struct Reading {
    st: GilCell<ReadState>,
}

impl Reading {
    /// Receiving for `protocol`.
    pub fn new(protocol: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Reading {
            st: GilCell::new(ReadState {
                receiver: Some(Receiver::for_protocol(protocol)?),
                sizer: ReadSizer::default(),
            }),
        })
    }

    /// The protocol was replaced.
    pub fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = Receiver::for_protocol(protocol)?;
        let old = self.st.with(py, |s| s.receiver.replace(receiver));
        drop(old);
        Ok(())
    }

    /// Lets go of the protocol's methods (connection lost, `tp_clear`).
    pub fn release(&self, py: Python<'_>) {
        let old = self.st.with(py, |s| s.receiver.take());
        drop(old);
    }

    /// Visits the protocol's methods.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            if let Some(receiver) = &s.receiver {
                receiver.traverse(visit)?;
            }
        }
        Ok(())
    }

    /// Reads once from `fd` with `read` and hands what arrived to the
    /// protocol.
    pub fn receive(&self, lp: &Bound<'_, Loop>, fd: RawFd, read: RawRead) -> Received {
        let py = lp.py();
        let receiver = self
            .st
            .with(py, |s| s.receiver.as_ref().map(|r| r.clone_ref(py)));
        match receiver {
            None => Received::Nothing,
            Some(Receiver::Plain(data_received)) => {
                self.receive_plain(lp, fd, read, data_received.bind(py))
            }
            Some(Receiver::Buffered {
                get_buffer,
                buffer_updated,
            }) => receive_buffered(fd, read, get_buffer.bind(py), buffer_updated.bind(py)),
            Some(Receiver::Native(protocol, receive)) => {
                receive_native(lp, fd, read, protocol.bind(py), receive)
            }
            Some(Receiver::Stream {
                protocol,
                data_received,
            }) => receive_stream(lp, fd, read, protocol.bind(py), data_received.bind(py)),
        }
    }

    fn receive_plain(
        &self,
        lp: &Bound<'_, Loop>,
        fd: RawFd,
        read: RawRead,
        data_received: &Bound<'_, PyAny>,
    ) -> Received {
        let py = lp.py();
        let plan = self.st.with(py, |s| s.sizer.plan(READ_BUFFER_SIZE));
        let (received, room) = match plan {
            ReadPlan::Direct(size) => read_direct(lp, fd, read, size),
            ReadPlan::Shared => None,
        }
        .unwrap_or_else(|| (read_shared(lp, fd, read), READ_BUFFER_SIZE));
        let n = match &received {
            Ok(Some((data, _))) => data.as_bytes().len(),
            _ => 0,
        };
        self.st.with(py, |s| s.sizer.record(n, room));
        match received {
            Err(e) if would_block(&e) => Received::Nothing,
            Err(e) => Received::Failed(e),
            Ok(None) => Received::Eof,
            Ok(Some((data, capacity))) => {
                let result = data_received.call1((&data,)).map(drop);
                // SAFETY: `data` was finished from an object of `capacity`
                // bytes by `read_shared` or `read_direct`.
                unsafe { lp.get().recycle_bytes(py, data, capacity) };
                Received::Delivered {
                    result,
                    message: DATA_RECEIVED_FAILED,
                    plain: true,
                }
            }
        }
    }
}

/// Reads into the loop's shared buffer and hands the bytes to a native
/// protocol in place.
fn receive_native(
    lp: &Bound<'_, Loop>,
    fd: RawFd,
    read: RawRead,
    protocol: &Bound<'_, PyAny>,
    receive: ReceiveFn,
) -> Received {
    let py = lp.py();
    let mut buf = lp.get().read_buffer(py);
    // SAFETY: the shared buffer is writable for its whole length.
    match unsafe { read(fd, buf.as_mut_ptr(), buf.len()) } {
        Err(e) if would_block(&e) => Received::Nothing,
        Err(e) => Received::Failed(e),
        Ok(0) => Received::Eof,
        Ok(n) => Received::Delivered {
            result: receive(protocol, &buf[..n]),
            message: "Fatal error: protocol.buffer_updated() call failed.",
            plain: false,
        },
    }
}

/// Reads into the loop's shared buffer (as much as asyncio asks for) and
/// feeds a `StreamReaderProtocol`'s reader from it; if the native feed
/// declines, the bytes go to `data_received` as a `bytes` object.
fn receive_stream(
    lp: &Bound<'_, Loop>,
    fd: RawFd,
    read: RawRead,
    protocol: &Bound<'_, PyAny>,
    data_received: &Bound<'_, PyAny>,
) -> Received {
    let py = lp.py();
    let mut buf = lp.get().read_buffer(py);
    // SAFETY: the shared buffer is writable for its whole length.
    let n = match unsafe { read(fd, buf.as_mut_ptr(), buf.len()) } {
        Err(e) if would_block(&e) => return Received::Nothing,
        Err(e) => return Received::Failed(e),
        Ok(0) => return Received::Eof,
        Ok(n) => n,
    };
    let result = match feed::feed(protocol, &buf[..n]) {
        Some(result) => result,
        None => {
            let copied = lp.get().bytes_of(py, &buf[..n]);
            drop(buf);
            match copied {
                Some((data, capacity)) => {
                    let result = data_received.call1((&data,)).map(drop);
                    // SAFETY: `data` comes from `bytes_of`, with `capacity`.
                    unsafe { lp.get().recycle_bytes(py, data, capacity) };
                    result
                }
                None => Err(PyMemoryError::new_err(())),
            }
        }
    };
    Received::Delivered {
        result,
        message: DATA_RECEIVED_FAILED,
        plain: true,
    }
}

/// Received data as a `bytes`, with the size its object was allocated for
/// (to reuse it once the protocol is done with it).
type ReceivedBytes<'py> = (Bound<'py, PyBytes>, usize);

/// Reads into the loop's shared buffer and copies what arrived into a
/// `bytes` (see `read_policy`, "Reusing the object"); `None` at end of file.
fn read_shared<'py>(
    lp: &Bound<'py, Loop>,
    fd: RawFd,
    read: RawRead,
) -> io::Result<Option<ReceivedBytes<'py>>> {
    let py = lp.py();
    let mut buf = lp.get().read_buffer(py);
    // SAFETY: the shared buffer is writable for its whole length.
    let n = unsafe { read(fd, buf.as_mut_ptr(), buf.len()) }?;
    if n == 0 {
        return Ok(None);
    }
    let copied = lp.get().bytes_of(py, &buf[..n]);
    Ok(Some(copied.ok_or(io::ErrorKind::OutOfMemory)?))
}

/// Reads straight into a `bytes` of at least `size` bytes (the loop's spare
/// object if it fits), and says how much room the read had; `None` if no
/// object can be allocated (then `read_shared` runs). A read much shorter
/// than the object is copied into one of its size, and the unused object
/// kept as the spare.
fn read_direct<'py>(
    lp: &Bound<'py, Loop>,
    fd: RawFd,
    read: RawRead,
    size: usize,
) -> Option<(io::Result<Option<ReceivedBytes<'py>>>, usize)> {
    let py = lp.py();
    let mut owned = lp.get().bytes_for(py, size)?;
    let capacity = owned.capacity();
    // SAFETY: the object is writable for `capacity` bytes, and nothing else
    // references it.
    let n = match unsafe { read(fd, owned.as_mut_ptr(), capacity) } {
        Ok(0) => return Some((Ok(None), capacity)),
        Ok(n) => n,
        Err(e) => return Some((Err(e), capacity)),
    };
    if fits(capacity, n) {
        return Some((Ok(Some((owned.finish(n), capacity))), capacity));
    }
    let Some(mut exact) = OwnedBytes::new(py, n) else {
        return Some((Err(io::ErrorKind::OutOfMemory.into()), capacity));
    };
    // SAFETY: `owned` holds `n` read bytes; `exact` has room for `n`; they
    // are distinct objects.
    unsafe { std::ptr::copy_nonoverlapping(owned.as_mut_ptr(), exact.as_mut_ptr(), n) };
    lp.get().keep_spare_bytes(py, owned);
    Some((Ok(Some((exact.finish(n), n))), capacity))
}

fn receive_buffered(
    fd: RawFd,
    read: RawRead,
    get_buffer: &Bound<'_, PyAny>,
    buffer_updated: &Bound<'_, PyAny>,
) -> Received {
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
        Ok(buffer) => buffer,
        Err(err) => return Received::BufferFailed(err),
    };
    let received = BufferGuard::get(&buffer, true).map(|mut view| {
        // SAFETY: the writable view stays exported (its memory put) until
        // `view` is dropped at the end of this closure; no Python code runs
        // meanwhile.
        unsafe { read(fd, view.as_mut_ptr(), view.len()) }
    });
    match received {
        Err(err) => Received::BufferFailed(err),
        Ok(Err(e)) if would_block(&e) => Received::Nothing,
        Ok(Err(e)) => Received::Failed(e),
        Ok(Ok(0)) => Received::Eof,
        Ok(Ok(n)) => Received::Delivered {
            result: buffer_updated.call1((n,)).map(drop),
            message: "Fatal error: protocol.buffer_updated() call failed.",
            plain: false,
        },
    }
}
