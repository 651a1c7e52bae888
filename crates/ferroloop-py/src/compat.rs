//! Differences between Python versions, as the native code sees them.
//!
//! Every version difference is decided once, by a feature probe in
//! `python/ferroloop/_compat.py` (never by comparing version numbers:
//! asyncio changes between patch releases too); the native code reads the
//! probes' results from there.

use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Reads a probe of `ferroloop._compat` (a flag, a number), once per
/// process.
fn probe<'py, T>(py: Python<'py>, cell: &'static PyOnceLock<T>, name: &str) -> PyResult<T>
where
    T: Copy + FromPyObjectOwned<'py>,
{
    cell.get_or_try_init(py, || {
        py.import("ferroloop._compat")?
            .getattr(name)?
            .extract()
            .map_err(Into::into)
    })
    .copied()
}

/// Whether `asyncio.Server._attach`/`_detach` take the transport (asyncio
/// keeps a set of client transports, for `close_clients()`), or nothing (a
/// count of active connections).
pub fn server_attach_takes_transport(py: Python<'_>) -> PyResult<bool> {
    static CELL: PyOnceLock<bool> = PyOnceLock::new();
    probe(py, &CELL, "SERVER_ATTACH_TAKES_TRANSPORT")
}

/// Whether asyncio's `call_soon_threadsafe` returns a `_ThreadSafeHandle`,
/// whose `cancel()` waits for a callback already running on another thread.
pub fn threadsafe_handles_wait(py: Python<'_>) -> PyResult<bool> {
    static CELL: PyOnceLock<bool> = PyOnceLock::new();
    probe(py, &CELL, "THREADSAFE_HANDLE_WAITS")
}

/// Whether asyncio's stream transport has a `writelines` of its own, which
/// checks its argument as `memoryview`s (see `_compat.py`).
pub fn writelines_takes_views(py: Python<'_>) -> PyResult<bool> {
    static CELL: PyOnceLock<bool> = PyOnceLock::new();
    probe(py, &CELL, "WRITELINES_TAKES_VIEWS")
}

/// `tasks._set_task_name`, through which `create_task` names a task made by
/// a task factory, where asyncio has it; `None` where `create_task` calls
/// `task.set_name(name)` instead.
pub fn set_task_name(py: Python<'_>) -> PyResult<Option<&Bound<'_, PyAny>>> {
    static CELL: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let found = CELL.get_or_try_init(py, || -> PyResult<_> {
        let value = py.import("ferroloop._compat")?.getattr("SET_TASK_NAME")?;
        Ok((!value.is_none()).then(|| value.unbind()))
    })?;
    Ok(found.as_ref().map(|f| f.bind(py)))
}

/// Whether `DatagramTransport.sendto(b"")` sends an empty datagram (it does
/// nothing where asyncio drops empty datagrams).
pub fn datagram_sends_empty(py: Python<'_>) -> PyResult<bool> {
    static CELL: PyOnceLock<bool> = PyOnceLock::new();
    probe(py, &CELL, "DATAGRAM_SENDS_EMPTY")
}

/// What each queued datagram counts for write flow control beyond its
/// payload (asyncio's per-datagram header, 0 where it counts none).
pub fn datagram_header_size(py: Python<'_>) -> PyResult<usize> {
    static CELL: PyOnceLock<usize> = PyOnceLock::new();
    probe(py, &CELL, "DATAGRAM_HEADER_SIZE")
}

/// asyncio's stream classes and the functions of theirs that the stream
/// transports carry out natively (`transports/feed.rs`), as probed.
pub struct StreamFeed {
    /// `asyncio.StreamReaderProtocol`.
    pub protocol: Py<PyType>,
    /// `asyncio.StreamReader`.
    pub reader: Py<PyType>,
    /// `StreamReaderProtocol.data_received`.
    pub data_received: Py<PyAny>,
    /// The getter of the `StreamReaderProtocol._stream_reader` property.
    pub stream_reader: Py<PyAny>,
    /// `StreamReader.feed_data`.
    pub feed_data: Py<PyAny>,
    /// `StreamReader._wakeup_waiter`.
    pub wakeup_waiter: Py<PyAny>,
}

/// The stream classes and functions if asyncio's are the ones the native
/// feed implements (`STREAM_FEED` in `_compat.py`); `None` otherwise.
pub fn stream_feed(py: Python<'_>) -> PyResult<Option<&StreamFeed>> {
    static CELL: PyOnceLock<Option<StreamFeed>> = PyOnceLock::new();
    let found = CELL.get_or_try_init(py, || -> PyResult<_> {
        let value = py.import("ferroloop._compat")?.getattr("STREAM_FEED")?;
        if value.is_none() {
            return Ok(None);
        }
        let item = |i: usize| value.get_item(i).map(Bound::unbind);
        Ok(Some(StreamFeed {
            protocol: value.get_item(0)?.cast_into::<PyType>()?.unbind(),
            reader: value.get_item(1)?.cast_into::<PyType>()?.unbind(),
            data_received: item(2)?,
            stream_reader: item(3)?,
            feed_data: item(4)?,
            wakeup_waiter: item(5)?,
        }))
    })?;
    Ok(found.as_ref())
}
