//! The datagram transport (UDP over IPv4 and IPv6, Unix datagram sockets),
//! with asyncio's semantics (`_SelectorDatagramTransport`). What every
//! transport shares is in `base.rs`; this file holds only datagram I/O.
//!
//! Reading: when the loop finds the descriptor readable it queues a native
//! ready item (where asyncio queues `_read_ready`), and the transport
//! receives up to [`READ_BATCH`] datagrams, each with `recvfrom` into the
//! loop's shared receive buffer (asyncio's 256 KiB `max_size`), copied into
//! a `bytes` of its size (the loop's spare object when it fits, taken back
//! if the protocol drops it: `ferroloop_core::io::read_policy`) and passed
//! with its sender's address to `datagram_received`, one datagram per call. It stops early when the
//! socket has nothing more, or the protocol closed, aborted or paused the
//! transport; a socket that keeps receiving then waits for the next turn,
//! so timers and other descriptors are served in between. An `OSError`
//! from the socket (an ICMP error such as `ECONNREFUSED` on a connected
//! socket) goes to `error_received` and the transport stays open. As in
//! asyncio, an exception raised by `datagram_received` or `error_received`
//! is not a fatal error of the transport: it escapes the read callback and
//! the loop reports it to the exception handler.
//!
//! Writing: `sendto()` sends at once when nothing is queued; a datagram the
//! kernel does not take (`EAGAIN`) is queued whole with its destination
//! (`ferroloop_core::io::datagram_queue`) and the queue is flushed when the
//! socket is writable; flow control counts queued payloads (plus asyncio's
//! per-datagram header where the running asyncio counts one). A connected
//! socket is written with `send`, any other with `sendto`.
//!
//! Addresses: received ones become Python objects natively (`sockaddr.rs`,
//! with a cache of recent peers' objects). A destination is converted
//! natively when it is a numeric address the conversion is sure of;
//! anything else goes through the Python socket's own `sendto`, which
//! resolves it or raises exactly as under asyncio (errors other than
//! `OSError` are then fatal, as in asyncio). Sockets of other families
//! (`AF_PACKET`, ...) are read and written through the Python socket
//! object.
//!
//! `recvmmsg`/`sendmmsg` are not used: measured, they did not lower the
//! CPU per datagram (README, Performance), and `sendmmsg` would hold
//! replies back where asyncio sends them in `sendto`.

use ferroloop_core::io::datagram_queue::DatagramQueue;
use ferroloop_core::sys::sockaddr::{Family, SockAddr};
use ferroloop_core::sys::{socket, would_block};
use ferroloop_core::transport::lifecycle::WriteGate;
use ferroloop_core::Chunk;
use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyMemoryError, PyOSError, PyTypeError, PyValueError,
};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView};
use pyo3::{intern, PyTraverseError};

use super::base::{self, Transport, TransportBase};
use crate::buffer::{with_bytes, OutChunk};
use crate::compat;
use crate::errors::{is_interrupt, os_error};
use crate::gil_cell::GilCell;
use crate::loop_::{Loop, READ_BUFFER_SIZE};
use crate::py_refs;
use crate::sockaddr::{from_python, to_python, AddrCache};
use crate::source::Direction;

/// At most this many datagrams are received per readiness event.
pub const READ_BATCH: usize = 32;

const FATAL_READ: &str = "Fatal read error on datagram transport";
const FATAL_WRITE: &str = "Fatal write error on datagram transport";

/// Where a datagram goes.
enum Dest {
    /// The connected peer (`send`).
    Peer,
    /// A converted address (`sendto`).
    Native(SockAddr),
    /// An address only the Python socket's `sendto` can take.
    Python(Py<PyAny>),
}

/// What one send did.
enum Sent {
    Done,
    WouldBlock,
    Failed(PyErr),
}

/// The datagram transport's own state.
struct DatagramIo {
    /// `protocol.datagram_received` and `protocol.error_received`.
    received: Option<(Py<PyAny>, Py<PyAny>)>,
    queue: DatagramQueue<OutChunk, Dest>,
    /// The address given as `remote_addr` (asyncio's `_address`): `sendto`
    /// accepts no other.
    address: Option<Py<PyAny>>,
    /// Whether the socket had a peer name when the transport was made:
    /// datagrams are then sent with `send` (asyncio checks `peername`).
    connected: bool,
    family: Family,
    addresses: AddrCache,
}

/// The native core of a datagram transport.
#[pyclass(
    module = "ferroloop._core",
    name = "DatagramTransportCore",
    frozen,
    weakref
)]
pub struct DatagramTransport {
    base: TransportBase,
    /// Whether `sendto(b"")` sends (see `_compat.DATAGRAM_SENDS_EMPTY`).
    sends_empty: bool,
    io: GilCell<DatagramIo>,
}

impl Transport for DatagramTransport {
    const WRITE_READY: &'static str = "_sendto_ready";

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn queued(&self, py: Python<'_>) -> usize {
        self.io.with(py, |s| s.queue.size())
    }

    fn drop_queued(&self, py: Python<'_>) {
        let dropped = self.io.with(py, |s| s.queue.clear());
        drop(dropped);
    }

    fn protocol_changed(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let received = receivers(protocol)?;
        let old = self.io.with(py, |s| s.received.replace(received));
        drop(old);
        Ok(())
    }

    fn lost(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let dropped = slf.get().io.with(py, |s| {
            (
                s.received.take(),
                s.queue.clear(),
                s.addresses.clear(),
                s.address.take(),
            )
        });
        drop(dropped);
        Ok(())
    }
}

/// The protocol's `datagram_received` and `error_received`.
fn receivers(protocol: &Bound<'_, PyAny>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let py = protocol.py();
    Ok((
        protocol.getattr(intern!(py, "datagram_received"))?.unbind(),
        protocol.getattr(intern!(py, "error_received"))?.unbind(),
    ))
}

/// Whether a failed Python socket call only means "not now".
fn python_would_block(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py)
}

impl DatagramTransport {
    /// The protocol's receiving methods, until the connection is lost.
    fn receivers(&self, py: Python<'_>) -> Option<(Py<PyAny>, Py<PyAny>)> {
        self.io.with(py, |s| {
            s.received
                .as_ref()
                .map(|(d, e)| (d.clone_ref(py), e.clone_ref(py)))
        })
    }

    /// Whether reading goes on (not paused, closed or lost).
    fn still_reading(&self, py: Python<'_>) -> bool {
        self.base.life(py, |l| l.watching().read && !l.is_lost())
    }

    /// Called by the loop when the descriptor is readable.
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        if matches!(this.io.with(py, |s| s.family), Family::Other(_)) {
            return Self::read_through_python(slf);
        }
        let fd = this.base.fd();
        for _ in 0..READ_BATCH {
            // Looked up per datagram: the protocol may be replaced meanwhile.
            let Some((received, error_received)) = this.receivers(py) else {
                return Ok(());
            };
            let mut from = SockAddr::empty();
            let lp = this.base.lp(py);
            let got = {
                let mut buf = lp.get().read_buffer(py);
                socket::recv_from(fd, &mut buf, &mut from)
                    .map(|n| datagram_bytes(lp.get(), py, &buf[..n]))
            };
            match got {
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => {
                    error_received.call1(py, (os_error(e).into_value(py),))?;
                    return Ok(());
                }
                Ok(data) => {
                    let (data, capacity) = data?;
                    let addr = this.address_object(py, &from)?;
                    let result = received.call1(py, (&data, addr));
                    if let Some(capacity) = capacity {
                        // SAFETY: `data` was finished from an object of
                        // `capacity` bytes by `datagram_bytes`.
                        unsafe { lp.get().recycle_bytes(py, data, capacity) };
                    }
                    result?;
                }
            }
            if !this.still_reading(py) {
                break;
            }
        }
        Ok(())
    }

    /// The object for a received address (cached, or made and cached).
    fn address_object<'py>(&self, py: Python<'py>, from: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
        if let Some(obj) = self.io.with(py, |s| s.addresses.find(py, from)) {
            return Ok(obj.into_bound(py));
        }
        let obj = to_python(py, from)?;
        let evicted = self
            .io
            .with(py, |s| s.addresses.insert(*from, obj.clone().unbind()));
        drop(evicted);
        Ok(obj)
    }

    /// One datagram through the Python socket's `recvfrom` (a family the
    /// native conversion does not know).
    fn read_through_python(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (Some(file), Some((received, error_received))) =
            (slf.get().base.file(py), slf.get().receivers(py))
        else {
            return Ok(());
        };
        match file.call_method1(py, intern!(py, "recvfrom"), (READ_BUFFER_SIZE,)) {
            Ok(pair) => {
                let (data, addr): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract(py)?;
                received.call1(py, (data, addr)).map(drop)
            }
            Err(err) if python_would_block(py, &err) => Ok(()),
            Err(err) if err.is_instance_of::<PyOSError>(py) => {
                error_received.call1(py, (err.into_value(py),)).map(drop)
            }
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => base::fatal_error(slf, err, FATAL_READ),
        }
    }

    /// Sends one datagram.
    fn send_one(&self, py: Python<'_>, data: &[u8], dest: &Dest) -> PyResult<Sent> {
        let fd = self.base.fd();
        let native = match dest {
            Dest::Peer => socket::send(fd, data),
            Dest::Native(addr) => socket::send_to(fd, data, addr),
            Dest::Python(addr) => {
                let Some(file) = self.base.file(py) else {
                    return Ok(Sent::Done);
                };
                let data = PyBytes::new(py, data);
                return Ok(
                    match file.call_method1(py, intern!(py, "sendto"), (data, addr)) {
                        Ok(_) => Sent::Done,
                        Err(err) if python_would_block(py, &err) => Sent::WouldBlock,
                        Err(err) if is_interrupt(py, &err) => return Err(err),
                        Err(err) => Sent::Failed(err),
                    },
                );
            }
        };
        Ok(match native {
            Ok(_) => Sent::Done,
            Err(e) if would_block(&e) => Sent::WouldBlock,
            Err(e) => Sent::Failed(os_error(e)),
        })
    }

    /// A send failed: an `OSError` goes to `error_received` (whose own
    /// exceptions propagate), anything else is a fatal error.
    fn send_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        if !err.is_instance_of::<PyOSError>(py) {
            return base::fatal_error(slf, err, FATAL_WRITE);
        }
        match slf.get().receivers(py) {
            Some((_, error_received)) => error_received.call1(py, (err.into_value(py),)).map(drop),
            None => Ok(()),
        }
    }

    /// Called by the loop when the descriptor is writable: flush the queue.
    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.is_lost(py) {
            return Ok(());
        }
        while let Some((chunk, dest)) = this.io.with(py, |s| s.queue.pop_front()) {
            match this.send_one(py, chunk.bytes(), &dest)? {
                Sent::Done => {}
                Sent::WouldBlock => {
                    this.io.with(py, |s| s.queue.push_front(chunk, dest));
                    break;
                }
                Sent::Failed(err) => return Self::send_failed(slf, err),
            }
        }
        base::maybe_resume_protocol(slf)?;
        if !this.io.with(py, |s| s.queue.is_empty()) {
            return Ok(());
        }
        base::set_watching(slf, Direction::Write, false)?;
        if this.base.life(py, |l| l.is_closing()) {
            base::call_connection_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    /// Where `sendto(data, addr)` sends, `addr` being checked already.
    fn destination(&self, py: Python<'_>, addr: Option<Bound<'_, PyAny>>) -> Dest {
        let Some(addr) = addr else {
            return if self.io.with(py, |s| s.connected) {
                Dest::Peer
            } else {
                Dest::Python(py.None())
            };
        };
        let (connected, family) = self.io.with(py, |s| (s.connected, s.family));
        if connected {
            return Dest::Peer;
        }
        from_python(family, &addr).map_or_else(|| Dest::Python(addr.unbind()), Dest::Native)
    }
}

#[pymethods]
impl DatagramTransport {
    #[new]
    #[pyo3(signature = (loop_, sock, protocol, address=None, extra=None))]
    fn new(
        loop_: &Bound<'_, Loop>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        address: Option<Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let fd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let family = Family::from_raw(sock.getattr(intern!(py, "family"))?.extract()?);
        let extra = base::socket_extra(sock, extra)?;
        let connected = match extra.get_item("peername")? {
            Some(peer) => peer.is_truthy()?,
            None => false,
        };
        let received = receivers(protocol)?;
        Ok(DatagramTransport {
            base: TransportBase::new(loop_, fd, sock, protocol, extra, None),
            sends_empty: compat::datagram_sends_empty(py)?,
            io: GilCell::new(DatagramIo {
                received: Some(received),
                queue: DatagramQueue::new(compat::datagram_header_size(py)?),
                address: address.filter(|a| !a.is_none()).map(Bound::unbind),
                connected,
                family,
                addresses: AddrCache::default(),
            }),
        })
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    fn _sendto_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    /// Send bytes-like `data` to `addr` (or to the connected peer, or the
    /// transport's `remote_addr`, with `addr=None`).
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
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
        if !this.sends_empty && with_bytes(data, |b| b.is_empty())? {
            return Ok(());
        }
        let address = this
            .io
            .with(py, |s| s.address.as_ref().map(|a| a.clone_ref(py)));
        let address = match address {
            Some(a) if a.bind(py).is_truthy()? => Some(a.into_bound(py)),
            _ => None,
        };
        let addr = match (address.as_ref(), addr) {
            (Some(expected), given) => {
                if let Some(given) = given.filter(|g| !g.is_none()) {
                    if !(given.is(expected) || expected.eq(&given)?) {
                        return Err(PyValueError::new_err(format!(
                            "Invalid address: must be None or {}",
                            expected.str()?
                        )));
                    }
                }
                Some(expected.clone())
            }
            (None, given) => given,
        };
        if let WriteGate::Lost { warn } = this.base.life(py, |l| l.write_gate()) {
            if warn {
                py_refs::transport_warning(py)?.call1(("socket.send() raised exception.",))?;
            }
            return Ok(());
        }
        let dest = this.destination(py, addr);
        if this.io.with(py, |s| s.queue.is_empty()) {
            match with_bytes(data, |b| this.send_one(py, b, &dest))?? {
                Sent::Done => return Ok(()),
                Sent::WouldBlock => base::set_watching(slf, Direction::Write, true)?,
                Sent::Failed(err) => return Self::send_failed(slf, err),
            }
        }
        let chunk = OutChunk::new(data, 0)?;
        this.io.with(py, |s| s.queue.push(chunk, dest));
        base::maybe_pause_protocol(slf)
    }

    #[getter]
    fn _address(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.io
            .with(py, |s| s.address.as_ref().map(|a| a.clone_ref(py)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let face = base::face(slf);
        if face.is(slf) {
            return Ok(base::describe(slf, "DatagramTransportCore"));
        }
        Ok(face.repr()?.to_string())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.io.peek_for_gc() } {
            if let Some((received, error_received)) = &s.received {
                visit.call(received)?;
                visit.call(error_received)?;
            }
            visit.call(&s.address)?;
            s.addresses.traverse(&visit)?;
            for (_, dest) in s.queue.iter() {
                if let Dest::Python(addr) = dest {
                    visit.call(addr)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        let taken = self.io.with(py, |s| {
            (
                s.received.take(),
                s.address.take(),
                s.addresses.clear(),
                s.queue.clear(),
            )
        });
        drop(taken);
    }
}

transport_methods!(DatagramTransport);

/// A received datagram as a `bytes`, in the loop's spare object when it fits
/// (`ferroloop_core::io::read_policy`, "Reusing the object"), with the size
/// its object was allocated for; an empty datagram is the shared empty
/// `bytes`, never reused.
fn datagram_bytes<'py>(
    lp: &Loop,
    py: Python<'py>,
    data: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Option<usize>)> {
    if data.is_empty() {
        return Ok((PyBytes::new(py, data), None));
    }
    let (bytes, capacity) = lp
        .bytes_of(py, data)
        .ok_or_else(|| PyMemoryError::new_err(()))?;
    Ok((bytes, Some(capacity)))
}
