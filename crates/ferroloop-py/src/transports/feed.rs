//! asyncio's streams fed natively: what `StreamReaderProtocol.data_received`
//! and `StreamReader.feed_data` do with received bytes, without a Python
//! frame per read.
//!
//! `asyncio.open_connection`, `start_server` and `connect_read_pipe` with a
//! `StreamReaderProtocol` put asyncio's `StreamReaderProtocol` over a
//! transport of ours, and per read its `data_received(data)` runs three
//! Python functions (`data_received`, the `_stream_reader` property,
//! `feed_data` and its `_wakeup_waiter`) to append `data` to the reader's
//! `bytearray` and wake the coroutine waiting for it. [`feed`] does the same
//! natively, straight from the loop's receive buffer (no `bytes` object).
//!
//! # What is recognised
//! Only asyncio's own code, never a subclass, and nothing is patched:
//! - `STREAM_FEED` (`_compat.py`) holds asyncio's classes and functions if
//!   their source is the one this file carries out (3.11.7, 3.12.1 and
//!   3.13.0 share it); otherwise nothing is recognised.
//! - When a transport gets its protocol ([`recognise`], on creation and on
//!   `set_protocol`): the protocol's type is exactly `StreamReaderProtocol`,
//!   its `data_received` (looked up on the object, so an instance attribute
//!   counts) is asyncio's function bound to it, and the class's
//!   `_stream_reader` property is still asyncio's. The transports bind
//!   `data_received` at that point, for every protocol (`reading.rs`), so a
//!   later replacement of that method is seen by neither path.
//! - On every read, before anything changes ([`feed`]): the protocol's
//!   `_stream_reader_wr` is a live `weakref.ref` to an object whose type is
//!   exactly `StreamReader` and whose `feed_data` and `_wakeup_waiter`
//!   (looked up as Python looks them up) are asyncio's functions bound to
//!   it; its `_eof` is `False`; its `_buffer` is exactly a `bytearray` that
//!   can grow; its `_waiter` is `None` or an asyncio `Future` (exact type)
//!   that is pending or cancelled.
//!
//! # Every fallback
//! When a check fails, [`feed`] changes nothing and declines; the transport
//! then calls `data_received(bytes)` as for any protocol, and asyncio's own
//! code does what it does, raising from Python exactly as on asyncio's loop:
//! the `AssertionError` of data after `feed_eof()`, the `BufferError` of a
//! buffer exported to a `memoryview`, the `InvalidStateError` of a waiter
//! already done, a dead reader (nothing happens), a subclass anywhere.
//!
//! # Why it is indistinguishable
//! The native steps are `feed_data`'s, in its order, on the same objects,
//! through the same operations: the bytes are appended as
//! `bytearray.extend` appends a buffer (`PyByteArray_Resize`, then a copy:
//! the same growth policy); the waiter is taken (`_waiter = None`) and, if
//! not cancelled, given `set_result(None)`, which schedules its callbacks
//! with `call_soon` in their own contexts, as from Python; then the
//! transport is paused once the buffer exceeds twice the limit, calling
//! `_transport.pause_reading()` through Python's attribute lookup,
//! catching `NotImplementedError` and setting `_transport` or `_paused` as
//! asyncio does, with the attributes read afresh at that point and compared
//! with Python's own operations. It runs where `data_received` would run
//! (inside the transport's read callback and its context), and an
//! exception from these last steps takes the same fatal-error path with the
//! same message. What differs is only what cannot be seen without a
//! debugger or a tracer: no Python frames, no `bytes` object per read.
//!
//! Over TLS the stream protocol is the TLS layer's application protocol,
//! which the layer calls itself (`tls/`): this path does not apply there.

use pyo3::exceptions::PyNotImplementedError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyInt, PyWeakrefReference};

use crate::compat;
use crate::cpython::{is_exact_type, is_method_of};
use crate::py_refs;

/// Whether the transport may feed `protocol`'s reader natively: its exact
/// type is asyncio's `StreamReaderProtocol`, its `data_received` (already
/// looked up as `data_received`) and its class's `_stream_reader` are still
/// asyncio's.
pub fn recognise(protocol: &Bound<'_, PyAny>, data_received: &Bound<'_, PyAny>) -> bool {
    let py = protocol.py();
    let Ok(Some(feed)) = compat::stream_feed(py) else {
        return false;
    };
    if !is_exact_type(protocol, &feed.protocol) {
        return false;
    }
    let is =
        |obj: PyResult<Bound<'_, PyAny>>, function: &Py<PyAny>| obj.is_ok_and(|o| o.is(function));
    is_method_of(data_received, feed.data_received.bind(py))
        && is(
            feed.protocol
                .bind(py)
                .getattr(intern!(py, "_stream_reader"))
                .and_then(|p| p.getattr(intern!(py, "fget"))),
            &feed.stream_reader,
        )
}

/// The state of a reader's waiter, checked before anything changes.
enum Waiter<'py> {
    None,
    /// Pending: it gets `set_result(None)`.
    Pending(Bound<'py, PyAny>),
    /// Cancelled: it is only taken.
    Cancelled,
}

/// What `protocol.data_received(data)` does, natively, for a recognised
/// protocol (see the module's documentation). `None`: a check failed and
/// nothing changed; the caller calls `data_received`. `Some(result)`: the
/// data was fed; `result` is what an exception in the last steps would be.
pub fn feed(protocol: &Bound<'_, PyAny>, data: &[u8]) -> Option<PyResult<()>> {
    let py = protocol.py();
    let feed = compat::stream_feed(py).ok()??;
    let reader = protocol
        .getattr(intern!(py, "_stream_reader_wr"))
        .ok()?
        .cast_exact::<PyWeakrefReference>()
        .ok()?
        .upgrade()?;
    if !is_exact_type(&reader, &feed.reader) || !own_methods(&reader, feed) {
        return None;
    }
    if !reader
        .getattr(intern!(py, "_eof"))
        .ok()?
        .is(PyBool::new(py, false))
        || data.is_empty()
    {
        return None;
    }
    let buffer = reader.getattr(intern!(py, "_buffer")).ok()?;
    let buffer = buffer.cast_exact::<PyByteArray>().ok()?;
    let waiter = waiter_state(&reader.getattr(intern!(py, "_waiter")).ok()?)?;
    // `self._buffer.extend(data)`: bytearray's extend by a buffer resizes
    // and copies. A failed resize (the buffer exported, no memory) changes
    // nothing: then asyncio's code runs and raises.
    let old = buffer.len();
    buffer.resize(old.checked_add(data.len())?).ok()?;
    // SAFETY: the bytearray was just resized to `old + data.len()` bytes and
    // no Python code has run since; the slice is dropped at once.
    unsafe { buffer.as_bytes_mut()[old..].copy_from_slice(data) };
    Some(wake_and_pause(&reader, waiter))
}

/// Whether the reader's `feed_data` and `_wakeup_waiter` are asyncio's
/// functions bound to it (not attributes of its own, nor replaced on the
/// class): looked up as Python looks them up. The reader's `__dict__` is not
/// touched (asking for it would turn the instance's inline attribute values
/// into a dictionary, slowing every attribute access of asyncio's reading
/// code).
fn own_methods(reader: &Bound<'_, PyAny>, feed: &compat::StreamFeed) -> bool {
    let py = reader.py();
    let bound_to = |name, function: &Py<PyAny>| {
        reader
            .getattr(name)
            .is_ok_and(|m| is_method_of(&m, function.bind(py)))
    };
    bound_to(intern!(py, "feed_data"), &feed.feed_data)
        && bound_to(intern!(py, "_wakeup_waiter"), &feed.wakeup_waiter)
}

/// The waiter as `_wakeup_waiter` would find it; `None` (decline) for
/// anything but `None` or a pending or cancelled asyncio `Future`.
fn waiter_state<'py>(waiter: &Bound<'py, PyAny>) -> Option<Waiter<'py>> {
    let py = waiter.py();
    if waiter.is_none() {
        return Some(Waiter::None);
    }
    let future = py_refs::future_type(py).ok()?;
    if !waiter.get_type().is(future) {
        return None;
    }
    let flag = |name| {
        waiter
            .call_method0(name)
            .ok()
            .and_then(|v| v.cast_exact::<PyBool>().ok().map(|b| b.is_true()))
    };
    if !flag(intern!(py, "done"))? {
        Some(Waiter::Pending(waiter.clone()))
    } else if flag(intern!(py, "cancelled"))? {
        Some(Waiter::Cancelled)
    } else {
        // Done with a result: `set_result` raises, from asyncio's code.
        None
    }
}

/// `feed_data` after the `extend`: `self._wakeup_waiter()`, then the pause
/// at twice the limit.
fn wake_and_pause(reader: &Bound<'_, PyAny>, waiter: Waiter<'_>) -> PyResult<()> {
    let py = reader.py();
    match waiter {
        Waiter::None => {}
        Waiter::Cancelled => reader.setattr(intern!(py, "_waiter"), py.None())?,
        Waiter::Pending(waiter) => {
            reader.setattr(intern!(py, "_waiter"), py.None())?;
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
    }
    let transport = reader.getattr(intern!(py, "_transport"))?;
    if transport.is_none() || reader.getattr(intern!(py, "_paused"))?.is_truthy()? {
        return Ok(());
    }
    let length = reader.getattr(intern!(py, "_buffer"))?.len()?;
    if !over_twice(&reader.getattr(intern!(py, "_limit"))?, length)? {
        return Ok(());
    }
    match transport.call_method0(intern!(py, "pause_reading")) {
        Ok(_) => reader.setattr(intern!(py, "_paused"), true),
        Err(err) if err.is_instance_of::<PyNotImplementedError>(py) => {
            reader.setattr(intern!(py, "_transport"), py.None())
        }
        Err(err) => Err(err),
    }
}

/// `length > 2 * limit`, natively for an `int` limit that fits, with
/// Python's operators otherwise.
fn over_twice(limit: &Bound<'_, PyAny>, length: usize) -> PyResult<bool> {
    let py = limit.py();
    if let Ok(limit) = limit.cast_exact::<PyInt>() {
        if let Ok(limit) = limit.extract::<i64>() {
            return Ok(length as i128 > 2 * limit as i128);
        }
    }
    let twice = 2i64.into_pyobject(py)?.mul(limit)?;
    length.into_pyobject(py)?.gt(twice)
}
