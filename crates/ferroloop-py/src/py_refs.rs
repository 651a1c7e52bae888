//! Python objects the native code calls, looked up once per process: parts
//! of asyncio and the standard library, and the functions of the Python
//! package that native code calls back into.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

macro_rules! cached_attr {
    ($(#[$doc:meta])* $name:ident, $module:literal, $attr:literal) => {
        $(#[$doc])*
        pub fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            CELL.import(py, $module, $attr)
        }
    };
}

cached_attr!(
    /// asyncio's C `Future` type.
    future_type, "asyncio.futures", "Future");
cached_attr!(
    /// asyncio's C `Task` type.
    task_type, "asyncio.tasks", "Task");
cached_attr!(
    /// `asyncio.BaseEventLoop`, whose `create_future` debug mode uses.
    base_event_loop, "asyncio.base_events", "BaseEventLoop");
/// `asyncio.events`, whose `_get_running_loop`/`_set_running_loop` are
/// looked up on every use, as asyncio's own loop does, so that code replacing
/// them (CPython's tests of the pure-Python versions) is honoured.
pub fn asyncio_events(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static CELL: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || py.import("asyncio.events").map(Bound::unbind))
        .map(|m| m.bind(py))
}

pub fn get_running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    asyncio_events(py)?.getattr(pyo3::intern!(py, "_get_running_loop"))
}

pub fn set_running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    asyncio_events(py)?.getattr(pyo3::intern!(py, "_set_running_loop"))
}
/// The module named `name` if it is imported (in `sys.modules`), without
/// importing it.
pub fn imported_module<'py>(
    py: Python<'py>,
    name: &Bound<'py, pyo3::types::PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    static SYS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let sys = SYS.get_or_try_init(py, || py.import("sys").map(Bound::unbind))?;
    let modules = sys.bind(py).getattr(pyo3::intern!(py, "modules"))?;
    match modules.get_item(name) {
        Ok(module) => Ok(Some(module)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(py) => Ok(None),
        Err(e) => Err(e),
    }
}

cached_attr!(get_asyncgen_hooks, "sys", "get_asyncgen_hooks");
cached_attr!(set_asyncgen_hooks, "sys", "set_asyncgen_hooks");
cached_attr!(warn, "warnings", "warn");
cached_attr!(
    /// `_report_callback_error(handle, callback, args, exc)`.
    report_callback_error, "ferroloop._hooks", "_report_callback_error");
cached_attr!(
    /// `_extract_stack()`: the creation traceback of a handle in debug mode.
    extract_stack, "ferroloop._hooks", "_extract_stack");
cached_attr!(
    /// `_check_callback(callback, method)`: debug-mode validation.
    check_callback, "ferroloop._hooks", "_check_callback");
cached_attr!(
    /// `_log_slow_callback(handle, seconds)`.
    log_slow_callback, "ferroloop._hooks", "_log_slow_callback");
cached_attr!(
    /// `_handle_repr(handle)`: asyncio's `Handle.__repr__` text.
    handle_repr, "ferroloop._hooks", "_handle_repr");
cached_attr!(
    /// The classes handles give as their `__class__` (subclasses of
    /// asyncio's `Handle`, `TimerHandle` and `_ThreadSafeHandle`).
    nominal_handle, "ferroloop._hooks", "_Handle");
cached_attr!(nominal_timer_handle, "ferroloop._hooks", "_TimerHandle");
cached_attr!(
    nominal_threadsafe_handle,
    "ferroloop._hooks",
    "_ThreadSafeHandle"
);
cached_attr!(
    /// `asyncio.BufferedProtocol`.
    buffered_protocol, "asyncio.protocols", "BufferedProtocol");
cached_attr!(
    /// `asyncio.trsock.TransportSocket`: the `socket` extra of transports.
    transport_socket, "asyncio.trsock", "TransportSocket");
cached_attr!(
    set_result_unless_cancelled,
    "ferroloop._hooks",
    "_set_result_unless_cancelled"
);
cached_attr!(
    /// `_transport_debug(transport, message, exc)`: debug-mode log line.
    transport_debug, "ferroloop._hooks", "_transport_debug");
cached_attr!(
    /// `_transport_info(transport, message)`: an INFO log line.
    transport_info, "ferroloop._hooks", "_transport_info");
cached_attr!(
    /// `_transport_warning(message)`.
    transport_warning, "ferroloop._hooks", "_transport_warning");
cached_attr!(
    /// `_report_transport_error(transport, method, exc)`.
    report_transport_error, "ferroloop._hooks", "_report_transport_error");
cached_attr!(
    /// `_log_slow_transport(transport, method, seconds)`.
    log_slow_transport, "ferroloop._hooks", "_log_slow_transport");
cached_attr!(
    /// `_report_watcher_error(loop, watcher, exc)`: an exception escaped a
    /// native watcher that is not a transport (a socket waiter, a child
    /// watch).
    report_watcher_error, "ferroloop._hooks", "_report_watcher_error");
cached_attr!(
    /// `_debug_log(format, *args)`: a debug-level line of asyncio's logger.
    debug_log, "ferroloop._hooks", "_debug_log");
cached_attr!(
    /// `_debug_log_exc(format, obj, message, exc)`: the same, with `exc`'s
    /// traceback.
    debug_log_exc, "ferroloop._hooks", "_debug_log_exc");
cached_attr!(
    /// `memoryview`.
    memoryview, "builtins", "memoryview");
cached_attr!(
    /// `asyncio.current_task(loop)`.
    current_task, "asyncio.tasks", "current_task");

/// `asyncio.current_task(loop)`, read straight from the dictionary it reads
/// where it is asyncio's pure-Python function over `_current_tasks` (3.11),
/// rather than through a Python call; elsewhere a call of it (a C function).
pub fn current_task_of<'py>(loop_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = loop_.py();
    static TASKS: PyOnceLock<Option<Py<pyo3::types::PyDict>>> = PyOnceLock::new();
    let tasks = TASKS.get_or_try_init(py, || -> PyResult<_> {
        if !current_task(py)?.hasattr(pyo3::intern!(py, "__code__"))? {
            return Ok(None);
        }
        let module = py.import("asyncio.tasks")?;
        Ok(module
            .getattr("_current_tasks")
            .ok()
            .and_then(|d| d.cast_into::<pyo3::types::PyDict>().ok())
            .map(Bound::unbind))
    })?;
    match tasks {
        Some(tasks) => Ok(tasks
            .bind(py)
            .get_item(loop_)?
            .unwrap_or_else(|| py.None().into_bound(py))),
        None => current_task(py)?.call1((loop_,)),
    }
}
