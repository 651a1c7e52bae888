//! Native `sock_recv`, `sock_recv_into` and `sock_sendall` for plain
//! `socket.socket` objects.
//!
//! asyncio's versions try the operation, and when it would block register a
//! reader (or writer) callback that retries it, plus a done callback on the
//! future that removes the registration. Each wait costs a handle, two
//! `functools.partial` objects, a raised and caught `BlockingIOError` and a
//! scheduled done callback. Here the first attempt reports "would block"
//! without an exception, and a wait is one [`SockWaiter`]: the registry holds
//! it as the descriptor's callback, the loop retries the operation natively
//! when the descriptor is ready, and the same object is the future's done
//! callback, which removes the registration if the future is cancelled. When
//! the operation completes, the waiter unregisters itself and takes its done
//! callback back before resolving the future, so nothing extra is scheduled.
//!
//! The observable behaviour is asyncio's: the same results and exceptions
//! (`OSError` subclasses with `errno`), `EINTR` retried after running signal
//! handlers as `socket.socket` does, the `_ensure_fd_no_transport` check
//! before waiting, a second wait on the same descriptor displacing the first
//! (whose future then never completes, as with asyncio), and the data of
//! `sock_sendall` pinned by a `memoryview` while it waits. Subclasses of
//! `socket.socket` and other socket-like objects take the Python path in
//! the Python layer, which calls their methods as asyncio does.
//!
//! This module sits above the loop: it adds the three `Loop._sock_*`
//! methods the Python layer calls, and reaches the loop only through its
//! port (`loop_/port.rs`).

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::sys::socket;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyMemoryView};
use pyo3::{intern, PyTraverseError};

use crate::buffer::{with_bytes, BufferGuard};
use crate::errors::{os_error, unless_interrupt};
use crate::gil_cell::GilCell;
use crate::loop_::{Loop, READ_BUFFER_SIZE};
use crate::source::{Direction, Watcher};

/// The operation a waiter retries.
enum Op {
    /// `sock.recv(n)`.
    Recv { n: usize },
    /// `sock.recv_into(buf)`.
    RecvInto { buf: Py<PyAny> },
    /// `sock.sendall(data)`: `view` pins the data, `sent` bytes are out.
    SendAll { view: Py<PyAny>, sent: usize },
    /// Finished: the objects have been released.
    Done,
}

/// A pending socket operation: the descriptor's registered callback and the
/// future's done callback.
#[pyclass(module = "ferroloop._core", name = "SockWaiter", frozen)]
pub struct SockWaiter {
    loop_: Py<Loop>,
    sock: Py<PyAny>,
    fd: RawFd,
    future: Py<PyAny>,
    op: GilCell<Op>,
}

/// Outcome of one attempt.
enum Attempt<'py> {
    WouldBlock,
    Done(Bound<'py, PyAny>),
}

/// `recv(fd, ptr, len)` until it does not fail with `EINTR`; `None` when it
/// would block.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn recv_raw(py: Python<'_>, fd: RawFd, ptr: *mut u8, len: usize) -> PyResult<Option<usize>> {
    loop {
        // SAFETY: the caller guarantees `ptr` is writable for `len` bytes.
        match unsafe { socket::recv_raw(fd, ptr, len) } {
            Ok(n) => return Ok(Some(n)),
            Err(e) => match interpret(py, e)? {
                Some(()) => continue,
                None => return Ok(None),
            },
        }
    }
}

/// `send(fd, data)` until it does not fail with `EINTR`; `None` when it
/// would block.
fn send_raw(py: Python<'_>, fd: RawFd, data: &[u8]) -> PyResult<Option<usize>> {
    loop {
        match socket::send(fd, data) {
            Ok(n) => return Ok(Some(n)),
            Err(e) => match interpret(py, e)? {
                Some(()) => continue,
                None => return Ok(None),
            },
        }
    }
}

/// A failed system call: `Some(())` to retry (`EINTR`, after running signal
/// handlers, as `socket.socket` does), `None` if it would block, otherwise
/// the error as an `OSError`.
fn interpret(py: Python<'_>, err: io::Error) -> PyResult<Option<()>> {
    match err.kind() {
        io::ErrorKind::Interrupted => {
            py.check_signals()?;
            Ok(Some(()))
        }
        io::ErrorKind::WouldBlock => Ok(None),
        _ => Err(os_error(err)),
    }
}

/// One `sock.recv(n)` attempt.
fn try_recv<'py>(lp: &Bound<'py, Loop>, fd: RawFd, n: usize) -> PyResult<Attempt<'py>> {
    let py = lp.py();
    if n <= READ_BUFFER_SIZE {
        let mut buf = lp.get().read_buffer(py);
        // SAFETY: the buffer holds READ_BUFFER_SIZE >= n initialised bytes.
        let got = unsafe { recv_raw(py, fd, buf.as_mut_ptr(), n) }?;
        return Ok(match got {
            Some(got) => Attempt::Done(PyBytes::new(py, &buf[..got]).into_any()),
            None => Attempt::WouldBlock,
        });
    }
    let mut buf: Vec<u8> = Vec::with_capacity(n);
    // SAFETY: the spare capacity is writable for `n` bytes; only the bytes
    // the kernel wrote are made part of the vector.
    match unsafe { recv_raw(py, fd, buf.as_mut_ptr(), n) }? {
        Some(got) => {
            // SAFETY: recv initialised the first `got` bytes.
            unsafe { buf.set_len(got) };
            Ok(Attempt::Done(PyBytes::new(py, &buf).into_any()))
        }
        None => Ok(Attempt::WouldBlock),
    }
}

/// One `sock.recv_into(buf)` attempt. An object that does not export a
/// writable buffer is handed to `sock.recv_into` itself, for its exact error.
fn try_recv_into<'py>(
    sock: &Bound<'py, PyAny>,
    fd: RawFd,
    buf: &Bound<'py, PyAny>,
) -> PyResult<Attempt<'py>> {
    let py = sock.py();
    let Ok(mut view) = BufferGuard::get(buf, true) else {
        return Ok(Attempt::Done(
            sock.call_method1(intern!(py, "recv_into"), (buf,))?,
        ));
    };
    // SAFETY: the writable view stays exported (so its memory stays put)
    // until `view` is dropped; while the call runs, only signal handlers (on
    // EINTR) can run Python code.
    let got = unsafe { recv_raw(py, fd, view.as_mut_ptr(), view.len()) };
    drop(view);
    Ok(match got? {
        Some(n) => Attempt::Done(PyInt::new(py, n).into_any()),
        None => Attempt::WouldBlock,
    })
}

/// Sends as much of `data[start..]` as the kernel takes; the new count of
/// bytes sent and the total length.
fn send_from(
    py: Python<'_>,
    fd: RawFd,
    data: &Bound<'_, PyAny>,
    start: usize,
) -> PyResult<(usize, usize)> {
    with_bytes(data, |bytes| {
        let rest = bytes.get(start..).unwrap_or_default();
        if rest.is_empty() {
            return Ok((start, bytes.len()));
        }
        match send_raw(py, fd, rest)? {
            Some(n) => Ok((start + n, bytes.len())),
            None => Ok((start, bytes.len())),
        }
    })?
}

impl SockWaiter {
    /// Registers a waiter for `op` on `fd` and returns its future.
    fn wait<'py>(
        lp: &Bound<'py, Loop>,
        sock: &Bound<'py, PyAny>,
        fd: RawFd,
        op: Op,
        dir: Direction,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = lp.py();
        let future = Loop::new_future(lp)?;
        Loop::ensure_fd_no_transport(lp, i64::from(fd), PyInt::new(py, fd).as_any())?;
        let waiter = Bound::new(
            py,
            SockWaiter {
                loop_: lp.clone().unbind(),
                sock: sock.clone().unbind(),
                fd,
                future: future.clone().unbind(),
                op: GilCell::new(op),
            },
        )?;
        Loop::watch(lp, fd, &waiter, dir)?;
        future.call_method1(intern!(py, "add_done_callback"), (&waiter,))?;
        Ok(future)
    }

    /// The loop found the descriptor ready: retry the operation.
    fn retry(slf: &Bound<'_, Self>, dir: Direction) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let future = this.future.bind(py);
        if future.call_method0(intern!(py, "done"))?.is_truthy()? {
            // Cancelled: its done callback is scheduled and unregisters.
            return Ok(());
        }
        let lp = this.loop_.bind(py);
        let outcome = match this.op.with(py, |op| match op {
            Op::Recv { n } => Pending::Recv(*n),
            Op::RecvInto { buf } => Pending::RecvInto(buf.clone_ref(py)),
            Op::SendAll { view, sent } => Pending::SendAll(view.clone_ref(py), *sent),
            Op::Done => Pending::Nothing,
        }) {
            Pending::Nothing => return Ok(()),
            Pending::Recv(n) => try_recv(lp, this.fd, n),
            Pending::RecvInto(buf) => try_recv_into(this.sock.bind(py), this.fd, buf.bind(py)),
            Pending::SendAll(view, sent) => match send_from(py, this.fd, view.bind(py), sent) {
                Ok((sent, total)) if sent < total => {
                    this.op.with(py, |op| {
                        if let Op::SendAll { sent: s, .. } = op {
                            *s = sent;
                        }
                    });
                    Ok(Attempt::WouldBlock)
                }
                Ok(_) => Ok(Attempt::Done(py.None().into_bound(py))),
                Err(e) => Err(e),
            },
        };
        let result = match unless_interrupt(py, outcome.map(Ok), |err| Ok(Err(err)))? {
            Ok(Attempt::WouldBlock) => return Ok(()),
            Ok(Attempt::Done(value)) => Ok(value),
            Err(err) => Err(err),
        };
        Self::finish(slf, dir, result)
    }

    /// Unregisters, takes the done callback back and resolves the future.
    fn finish(
        slf: &Bound<'_, Self>,
        dir: Direction,
        result: PyResult<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let old = this.op.with(py, |op| std::mem::replace(op, Op::Done));
        drop(old);
        Loop::unwatch_if(this.loop_.bind(py), this.fd, slf, dir);
        let future = this.future.bind(py);
        future.call_method1(intern!(py, "remove_done_callback"), (slf,))?;
        match result {
            Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
            Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?,
        };
        Ok(())
    }
}

enum Pending {
    Nothing,
    Recv(usize),
    RecvInto(Py<PyAny>),
    SendAll(Py<PyAny>, usize),
}

#[pymethods]
impl SockWaiter {
    /// The future's done callback: a cancelled wait unregisters.
    fn __call__(slf: &Bound<'_, Self>, _future: &Bound<'_, PyAny>) {
        let py = slf.py();
        let this = slf.get();
        let dir = this.op.with(py, |op| match op {
            Op::SendAll { .. } => Some(Direction::Write),
            Op::Recv { .. } | Op::RecvInto { .. } => Some(Direction::Read),
            Op::Done => None,
        });
        let old = this.op.with(py, |op| std::mem::replace(op, Op::Done));
        drop(old);
        if let Some(dir) = dir {
            Loop::unwatch_if(this.loop_.bind(py), this.fd, slf, dir);
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let op = self.op.with(py, |op| match op {
            Op::Recv { .. } => "sock_recv",
            Op::RecvInto { .. } => "sock_recv_into",
            Op::SendAll { .. } => "sock_sendall",
            Op::Done => "done",
        });
        format!("<SockWaiter {op} fd={}>", self.fd)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.sock)?;
        visit.call(&self.future)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(op) = unsafe { self.op.peek_for_gc() } {
            match op {
                Op::RecvInto { buf } => visit.call(buf)?,
                Op::SendAll { view, .. } => visit.call(view)?,
                Op::Recv { .. } | Op::Done => {}
            }
        }
        Ok(())
    }
}

impl Watcher for SockWaiter {
    fn ready(slf: &Bound<'_, Self>, dir: Direction) -> PyResult<()> {
        Self::retry(slf, dir)
    }

    /// An unexpected exception while retrying goes to the exception
    /// handler, as from a callback.
    fn report(slf: &Bound<'_, Self>, _dir: Direction, err: PyErr) -> PyResult<()> {
        Loop::report_watcher_error(slf.get().loop_.bind(slf.py()), slf, err)
    }
}

/// The native socket operations, added to the loop's methods.
#[pymethods]
impl Loop {
    /// `sock.recv(n)` on a plain non-blocking socket: the data, or a future
    /// of it.
    fn _sock_recv<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        n: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        sock_recv(slf, sock, n)
    }

    /// `sock.recv_into(buf)`: the count, or a future of it.
    fn _sock_recv_into<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        buf: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sock_recv_into(slf, sock, buf)
    }

    /// Sends all of `data`: None when done at once, else a future.
    fn _sock_sendall<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sock_sendall(slf, sock, data)
    }
}

/// `sock.recv(n)` for a plain socket: the data, or a future of it.
fn sock_recv<'py>(
    lp: &Bound<'py, Loop>,
    sock: &Bound<'py, PyAny>,
    n: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let fd = socket_fd(sock)?;
    match try_recv(lp, fd, n)? {
        Attempt::Done(data) => Ok(data),
        Attempt::WouldBlock => SockWaiter::wait(lp, sock, fd, Op::Recv { n }, Direction::Read),
    }
}

/// `sock.recv_into(buf)` for a plain socket: the count, or a future of it.
fn sock_recv_into<'py>(
    lp: &Bound<'py, Loop>,
    sock: &Bound<'py, PyAny>,
    buf: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let fd = socket_fd(sock)?;
    match try_recv_into(sock, fd, buf)? {
        Attempt::Done(n) => Ok(n),
        Attempt::WouldBlock => SockWaiter::wait(
            lp,
            sock,
            fd,
            Op::RecvInto {
                buf: buf.clone().unbind(),
            },
            Direction::Read,
        ),
    }
}

/// `sock.sendall(data)` for a plain socket: None once everything is sent,
/// or a future resolved when it is.
fn sock_sendall<'py>(
    lp: &Bound<'py, Loop>,
    sock: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lp.py();
    let fd = socket_fd(sock)?;
    let (sent, total) = send_from(py, fd, data, 0)?;
    if sent == total {
        return Ok(py.None().into_bound(py));
    }
    let view = PyMemoryView::from(data)?.into_any().unbind();
    SockWaiter::wait(lp, sock, fd, Op::SendAll { view, sent }, Direction::Write)
}

fn socket_fd(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    sock.call_method0(intern!(sock.py(), "fileno"))?.extract()
}
