//! The native half of `ferroloop.Loop`: scheduling, the loop turn, the
//! asynchronous-generator hooks, futures and tasks, and readiness callbacks
//! (`add_reader`/`add_writer`). This mirrors asyncio's `base_events` plus the
//! readiness part of `selector_events`; `python/ferroloop/_loop.py` adds the
//! coroutine-level methods and the exception handler on top.
//!
//! # One turn of the loop (`run_once`)
//! 1. Drop cancelled timers (the head run, or the whole heap when more than
//!    half of a large heap is cancelled).
//! 2. Compute the timeout: 0 when callbacks are ready or the loop is stopping,
//!    otherwise until the earliest timer (at most a day), otherwise infinite.
//! 3. Poll. With a zero timeout and nothing registered but the self-pipe, the
//!    system call is skipped: no event could be reported that asyncio would
//!    act on in this turn (wake-ups only matter to a sleeping loop). A real
//!    wait releases the GIL; `EINTR` runs Python's signal handlers so Ctrl-C
//!    raises `KeyboardInterrupt` at once.
//! 4. Queue the callbacks of ready descriptors (reader before writer).
//! 5. Move due timers (`when < now + resolution`) to the ready queue in
//!    `(when, sequence)` order.
//! 6. Run exactly the callbacks that were ready at this point; callbacks they
//!    schedule wait for the next turn.
//!
//! All mutable state lives in one `GilCell<State>`; see `gil_cell.rs` for the
//! rule that keeps borrows free of Python code.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ferroloop_core::{
    monotonic, Events, Interest, Poller, SelfPipe, TimerEntry, TimerQueue, CLOCK_RESOLUTION,
};
use pyo3::exceptions::{
    PyAttributeError, PyResourceWarning, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyTuple, PyWeakrefReference};
use pyo3::{intern, PyTraverseError, PyTypeInfo};

use crate::asyncgens::AsyncGens;
use crate::errors::{closed_error, is_interrupt, os_error};
use crate::gil_cell::GilCell;
use crate::handles::{self, Dropped, Handle, NewHandle, TimerHandle};
use crate::py_refs;
use crate::registry::{Direction, IoCallback, Ready, Registry, Removed, SELF_PIPE_TOKEN};
use crate::sock::SockWaiter;
use crate::transport::SocketTransport;

/// The longest single wait, as asyncio's `MAXIMUM_SELECT_TIMEOUT`.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// Readiness reports taken per wait; more are reported by the next one.
const EVENTS_CAPACITY: usize = 1024;
/// Size of the shared receive buffer (asyncio's `max_size`).
pub(crate) const READ_BUFFER_SIZE: usize = 256 * 1024;
/// Most handles kept for reuse (see `handles.rs`): enough for the bursts of
/// tens of thousands of callbacks that another thread queues through
/// `call_soon_threadsafe` while the loop waits for the GIL.
const HANDLE_FREE_LIST: usize = 65536;
/// What the free lists are cut back to when they have held more for
/// [`FREE_LIST_TRIM_INTERVAL`] seconds (checked when the loop is about to
/// wait).
const HANDLE_FREE_LIST_RESTING: usize = 256;
const FREE_LIST_TRIM_INTERVAL: f64 = 1.0;

/// A timer in the heap (a `TimerHandle`, held through its `Handle` base).
pub(crate) struct Timer(Py<Handle>);

impl TimerEntry for Timer {
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
}

/// Mutable loop state; see the module documentation.
#[derive(Default)]
struct State {
    ready: VecDeque<Ready>,
    timers: TimerQueue<Timer>,
    registry: Registry,
    asyncgens: AsyncGens,
    task_factory: Option<Py<PyAny>>,
    /// The handle being run, in debug mode (asyncio's `_current_handle`).
    current_handle: Option<Py<Handle>>,
    /// The readiness buffer; taken out while the loop waits without the GIL.
    events: Option<Events>,
    /// Whether signal handlers are installed: the self-pipe must then be
    /// polled every turn, since signal numbers arrive through it.
    signals_active: bool,
    /// Empty handles kept for reuse by `call_soon` (see `handles.rs`).
    free_handles: Vec<Py<Handle>>,
    /// Empty timer handles kept for reuse by `call_later` and `call_at`.
    free_timers: Vec<Py<Handle>>,
    /// Since when the free lists have held more than their resting size, as
    /// seen each time the loop was about to wait.
    free_lists_full_since: Option<f64>,
    /// Open transports by descriptor (weakly), for asyncio's rule that
    /// `add_reader` and friends refuse a descriptor a transport uses.
    transports: HashMap<RawFd, Py<PyWeakrefReference>>,
    /// The receive buffer transports share; taken out while in use.
    read_buffer: Vec<u8>,
}

/// The native event loop; `ferroloop.Loop` is its Python subclass.
#[pyclass(module = "ferroloop._core", name = "Loop", subclass, frozen, weakref)]
pub struct Loop {
    state: GilCell<State>,
    /// A weak reference to this loop, shared by all its handles.
    weak_self: PyOnceLock<Py<PyWeakrefReference>>,
    poller: Poller,
    self_pipe: SelfPipe,
    closed: AtomicBool,
    stopping: AtomicBool,
    debug: AtomicBool,
    /// Identifier of the thread running the loop, 0 when not running.
    thread_id: AtomicU64,
    asyncgens_shutdown_called: AtomicBool,
    /// `slow_callback_duration`, as the bits of an f64.
    slow_callback_duration: AtomicU64,
}

// `c_ulong` is not u64 on every target.
#[allow(clippy::useless_conversion)]
fn current_thread_id() -> u64 {
    // SAFETY: PyThread_get_thread_ident has no preconditions.
    u64::from(unsafe { ffi::PyThread_get_thread_ident() })
}

fn python_at_least(py: Python<'_>, minor: u8) -> bool {
    py.version_info() >= (3, minor)
}

/// Converts what asyncio accepts as a file object to a descriptor number,
/// raising `ValueError("Invalid file object: ...")` as
/// `_ensure_fd_no_transport` does. Negative numbers are returned as they are.
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = obj.py();
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>();
    }
    let converted = obj
        .call_method0(intern!(py, "fileno"))
        .and_then(|fileno| py.get_type::<PyInt>().call1((fileno,)))
        .and_then(|fd| fd.extract::<i64>());
    match converted {
        Err(e)
            if e.is_instance_of::<PyAttributeError>(py)
                || e.is_instance_of::<PyTypeError>(py)
                || e.is_instance_of::<PyValueError>(py) =>
        {
            Err(PyValueError::new_err(format!(
                "Invalid file object: {}",
                obj.repr()?
            )))
        }
        other => other,
    }
}

/// Calls `callable(*args, **{name: value for each kwname})` through
/// vectorcall, with a cached tuple of keyword names.
fn vectorcall_kw<'py>(
    callable: &Bound<'py, PyAny>,
    positional: &[&Bound<'py, PyAny>],
    keywords: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    const MAX_ARGS: usize = 8;
    let total = positional.len() + keywords.len();
    assert!(total <= MAX_ARGS && keywords.len() == kwnames.len());
    let mut argv = [std::ptr::null_mut::<ffi::PyObject>(); MAX_ARGS];
    for (slot, arg) in argv.iter_mut().zip(positional.iter().chain(keywords)) {
        *slot = arg.as_ptr();
    }
    // SAFETY: `argv` holds `total` valid borrowed object pointers kept alive
    // by the callers' `Bound`s; `kwnames` is a tuple of strings whose length
    // matches the keyword values at the end of the positional ones.
    unsafe {
        Bound::from_owned_ptr_or_err(
            callable.py(),
            ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                argv.as_ptr(),
                positional.len(),
                kwnames.as_ptr(),
            ),
        )
    }
}

fn kwnames<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyTuple>>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    cell.get_or_try_init(py, || PyTuple::new(py, names).map(Bound::unbind))
        .map(|t| t.bind(py))
}

impl Loop {
    /// The weak reference handles keep to their loop.
    pub(crate) fn weak_ref<'a>(slf: &'a Bound<'_, Self>) -> PyResult<&'a Py<PyWeakrefReference>> {
        slf.get()
            .weak_self
            .get_or_try_init(slf.py(), || PyWeakrefReference::new(slf).map(Bound::unbind))
    }

    #[inline]
    pub(crate) fn debug(&self) -> bool {
        self.debug.load(Relaxed)
    }

    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    fn running(&self) -> bool {
        self.thread_id.load(Relaxed) != 0
    }

    /// asyncio's `_check_thread` (debug mode only).
    fn check_thread(&self) -> PyResult<()> {
        let owner = self.thread_id.load(Relaxed);
        if owner != 0 && owner != current_thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// An empty handle (`timer`: a `TimerHandle`) from a free list, if any.
    #[inline]
    pub(crate) fn reusable_handle(&self, py: Python<'_>, timer: bool) -> Option<Py<Handle>> {
        self.state.with(py, |s| {
            if timer {
                s.free_timers.pop()
            } else {
                s.free_handles.pop()
            }
        })
    }

    /// Keeps an empty handle for reuse; hands it back if the list is full or
    /// the loop is closed.
    #[inline]
    pub(crate) fn keep_for_reuse(
        &self,
        py: Python<'_>,
        handle: Py<Handle>,
        timer: bool,
    ) -> Option<Py<Handle>> {
        let closed = self.closed.load(Relaxed);
        self.state.with(py, |s| {
            let list = if timer {
                &mut s.free_timers
            } else {
                &mut s.free_handles
            };
            if closed || list.len() >= HANDLE_FREE_LIST {
                Some(handle)
            } else {
                list.push(handle);
                None
            }
        })
    }

    /// `TimerHandle.cancel()` notification: count it if still in the heap.
    pub(crate) fn timer_handle_cancelled(&self, py: Python<'_>, handle: &Handle) {
        if handle.is_scheduled() {
            self.state.with(py, |s| s.timers.note_cancelled());
        }
    }

    fn new_handle<'py>(
        slf: &Bound<'py, Self>,
        method: &str,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
        check_thread: bool,
    ) -> PyResult<NewHandle<'py>> {
        let this = slf.get();
        let debug = this.debug();
        if debug {
            if check_thread {
                this.check_thread()?;
            }
            py_refs::check_callback(slf.py())?.call1((&callback, method))?;
        }
        Ok(NewHandle {
            callback,
            args,
            context,
            traceback: debug,
        })
    }

    fn push_ready(&self, py: Python<'_>, handle: Py<Handle>) {
        self.state
            .with(py, |s| s.ready.push_back(Ready::Handle(handle)));
    }

    /// Whether `close()` has been called.
    pub(crate) fn is_closed_now(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// The shared receive buffer (a fresh one if it is in use).
    pub(crate) fn take_read_buffer(&self, py: Python<'_>) -> Vec<u8> {
        let buf = self.state.with(py, |s| std::mem::take(&mut s.read_buffer));
        if buf.len() == READ_BUFFER_SIZE {
            buf
        } else {
            vec![0; READ_BUFFER_SIZE]
        }
    }

    /// Gives the receive buffer back.
    pub(crate) fn return_read_buffer(&self, py: Python<'_>, buf: Vec<u8>) {
        self.state.with(py, |s| s.read_buffer = buf);
    }

    /// Records a new transport as the owner of `fd`.
    pub(crate) fn adopt_transport(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        transport: &Bound<'_, SocketTransport>,
    ) -> PyResult<()> {
        let weak = PyWeakrefReference::new(transport)?.unbind();
        let old = slf
            .get()
            .state
            .with(slf.py(), |s| s.transports.insert(fd, weak));
        drop(old);
        Ok(())
    }

    /// Calls the transport's `_read_ready`/`_write_ready` whenever `fd` is
    /// readable/writable.
    pub(crate) fn watch_transport(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        transport: &Bound<'_, SocketTransport>,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return Ok(());
        }
        let mut dead = Dropped::default();
        let callback = IoCallback::Transport(transport.clone().unbind());
        let result = this.state.with(py, |s| {
            s.registry
                .set(&this.poller, fd, None, callback, dir, &mut dead)
        });
        dead.release(py, this);
        match result {
            Ok(previous) => {
                Self::release_callback(py, this, previous)?;
                Ok(())
            }
            Err(e) => Err(os_error(e)),
        }
    }

    /// Stops calling the transport for `dir` events (asyncio's
    /// `_remove_reader`/`_remove_writer`, which remove whatever is there).
    pub(crate) fn unwatch_transport(slf: &Bound<'_, Self>, fd: RawFd, dir: Direction) {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return;
        }
        let mut dead = Dropped::default();
        let removed = this
            .state
            .with(py, |s| s.registry.remove(&this.poller, fd, dir, &mut dead));
        dead.release(py, this);
        if let Ok(Removed::Callback(callback)) = removed {
            // Errors from cancelling a displaced handle cannot happen outside
            // debug mode and are not the transport's to report.
            let _ = Self::release_callback(py, this, Some(callback));
        }
    }

    /// The transport of `fd` lost its connection: forget every registration
    /// of the descriptor, which is about to be closed.
    pub(crate) fn forget_transport(slf: &Bound<'_, Self>, fd: RawFd) {
        let py = slf.py();
        let this = slf.get();
        let mut dead = Dropped::default();
        this.state.with(py, |s| {
            if !this.is_closed_now() {
                s.registry.forget(&this.poller, fd, &mut dead);
            }
            dead.objects
                .extend(s.transports.remove(&fd).map(Py::into_any));
        });
        dead.release(py, this);
    }

    /// Calls `waiter` when `fd` is ready in direction `dir`.
    pub(crate) fn watch_sock(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        waiter: &Bound<'_, SockWaiter>,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let mut dead = Dropped::default();
        let callback = IoCallback::Sock(waiter.clone().unbind());
        let result = this.state.with(py, |s| {
            s.registry
                .set(&this.poller, fd, None, callback, dir, &mut dead)
        });
        dead.release(py, this);
        match result {
            Ok(previous) => Self::release_callback(py, this, previous),
            Err(e) => Err(os_error(e)),
        }
    }

    /// Removes `waiter` from `fd` if it is still the `dir` callback there.
    pub(crate) fn unwatch_sock(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        waiter: &Bound<'_, SockWaiter>,
        dir: Direction,
    ) {
        let py = slf.py();
        let this = slf.get();
        if this.is_closed_now() {
            return;
        }
        let mut dead = Dropped::default();
        this.state.with(py, |s| {
            s.registry
                .remove_if(&this.poller, fd, dir, waiter.as_ptr(), &mut dead)
        });
        dead.release(py, this);
    }

    /// Retries a socket operation whose descriptor is ready. An unexpected
    /// exception goes to the exception handler, as from a callback.
    fn run_sock(
        slf: &Bound<'_, Self>,
        waiter: &Bound<'_, SockWaiter>,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        match SockWaiter::ready(waiter, dir) {
            Ok(()) => Ok(()),
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => {
                py_refs::report_sock_error(py)?.call1((slf, waiter, err.into_value(py)))?;
                Ok(())
            }
        }
    }

    /// Cancels and releases a displaced `add_reader`/`add_writer` callback.
    fn release_callback(py: Python<'_>, this: &Loop, callback: Option<IoCallback>) -> PyResult<()> {
        match callback {
            Some(IoCallback::Handle(h)) => {
                let cancelled = Handle::cancel_handle(h.bind(py));
                Handle::release(py, this, h);
                cancelled
            }
            Some(IoCallback::Transport(t)) => {
                drop(t);
                Ok(())
            }
            Some(IoCallback::Sock(w)) => {
                drop(w);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// asyncio's `_ensure_fd_no_transport`: a descriptor used by a transport
    /// that is not closing cannot be given to `add_reader` and friends.
    pub(crate) fn ensure_fd_no_transport(
        slf: &Bound<'_, Self>,
        fd: i64,
        fileobj: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let Ok(fd) = RawFd::try_from(fd) else {
            return Ok(());
        };
        let weak = slf
            .get()
            .state
            .with(py, |s| s.transports.get(&fd).map(|w| w.clone_ref(py)));
        let Some(transport) = weak.and_then(|w| w.bind(py).upgrade()) else {
            return Ok(());
        };
        if !transport
            .call_method0(intern!(py, "is_closing"))?
            .is_truthy()?
        {
            return Err(PyRuntimeError::new_err(format!(
                "File descriptor {} is used by transport {}",
                fileobj.repr()?,
                transport.repr()?
            )));
        }
        Ok(())
    }

    /// A new future of this loop (`loop.create_future()`).
    pub(crate) fn create_future_for<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method0(intern!(slf.py(), "create_future"))
    }

    fn call_soon_threadsafe_impl<'py>(
        slf: &Bound<'py, Self>,
        new: NewHandle<'py>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        let handle = Handle::new_plain(py, slf, new, true)?;
        this.push_ready(py, handle.clone().unbind());
        this.self_pipe.wake_if_sleeping();
        Ok(handle)
    }

    fn check_running(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().running() {
            return Err(PyRuntimeError::new_err(
                "This event loop is already running",
            ));
        }
        if !py_refs::get_running_loop(slf.py())?.call0()?.is_none() {
            return Err(PyRuntimeError::new_err(
                "Cannot run the event loop while another loop is running",
            ));
        }
        Ok(())
    }

    fn run_forever_inner(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.thread_id.store(current_thread_id(), Relaxed);
        let hooks = PyDict::new(py);
        hooks.set_item(
            intern!(py, "firstiter"),
            slf.getattr(intern!(py, "_asyncgen_firstiter_hook"))?,
        )?;
        hooks.set_item(
            intern!(py, "finalizer"),
            slf.getattr(intern!(py, "_asyncgen_finalizer_hook"))?,
        )?;
        py_refs::set_asyncgen_hooks(py)?.call((), Some(&hooks))?;
        py_refs::set_running_loop(py)?.call1((slf,))?;
        // asyncio calls `self._run_once()` each turn, so an override on a
        // subclass or an instance takes effect; look for one once per run.
        let run_once_override = Self::run_once_override(slf)?;
        loop {
            match &run_once_override {
                None => Self::run_once(slf)?,
                Some(method) => {
                    method.call0()?;
                }
            }
            if this.stopping.load(Relaxed) {
                return Ok(());
            }
        }
    }

    /// The `_run_once` to call each turn if it is not the native one.
    fn run_once_override<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let name = intern!(py, "_run_once");
        let native = py.get_type::<Loop>().getattr(name)?;
        let in_class = slf.get_type().getattr(name)?;
        let in_instance = match slf.getattr(intern!(py, "__dict__")) {
            Ok(dict) => dict
                .cast_into::<PyDict>()
                .ok()
                .and_then(|d| d.get_item(name).ok().flatten()),
            Err(_) => None,
        };
        if in_instance.is_none() && in_class.is(&native) {
            return Ok(None);
        }
        slf.getattr(name).map(Some)
    }

    /// One turn of the loop; see the module documentation.
    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();

        // 1 and 2: prune cancelled timers, compute the timeout.
        let stopping = this.stopping.load(Relaxed);
        let (pruned, timeout, must_poll) = this.state.with(py, |s| {
            let pruned = s.timers.prune();
            let timeout = if !s.ready.is_empty() || stopping {
                Some(Duration::ZERO)
            } else {
                s.timers.next_when().map(|when| {
                    Duration::from_secs_f64((when - monotonic()).clamp(0.0, MAXIMUM_SELECT_TIMEOUT))
                })
            };
            (pruned, timeout, s.registry.len() > 0 || s.signals_active)
        });
        if !pruned.is_empty() {
            for Timer(handle) in pruned {
                handle.get().set_unscheduled();
                Handle::release(py, this, handle);
            }
        }

        // 3 and 4: poll and queue I/O callbacks.
        if timeout != Some(Duration::ZERO) || must_poll {
            Self::poll(slf, timeout)?;
        }

        // 5: due timers join the ready queue; 6 runs what is ready now. The
        // timer handles are not touched when moved (with many timers they are
        // cold in the cache): their heap bookkeeping is settled when they run.
        let ntodo = this.state.with(py, |s| {
            if !s.timers.is_empty() {
                let end_time = monotonic() + CLOCK_RESOLUTION;
                while let Some(Timer(handle)) = s.timers.pop_due(end_time) {
                    s.ready.push_back(Ready::Handle(handle));
                }
            }
            s.ready.len()
        });
        for _ in 0..ntodo {
            let Some(item) = this.state.with(py, |s| s.ready.pop_front()) else {
                break;
            };
            let handle = match item {
                Ready::Handle(handle) => handle.into_bound(py),
                Ready::Read(transport) => {
                    Self::run_transport(slf, transport.bind(py), Direction::Read)?;
                    continue;
                }
                Ready::Write(transport) => {
                    Self::run_transport(slf, transport.bind(py), Direction::Write)?;
                    continue;
                }
                Ready::Sock(waiter, dir) => {
                    Self::run_sock(slf, waiter.bind(py), dir)?;
                    continue;
                }
                Ready::TaskStep(callback, context) => {
                    Self::run_task_step(slf, callback.into_bound(py), context.into_bound(py))?;
                    continue;
                }
            };
            let h = handle.get();
            if h.is_scheduled() {
                // A timer that left the heap in this turn.
                h.set_unscheduled();
                if h.is_cancelled() {
                    // Counted as a cancelled heap entry when cancelled.
                    this.state.with(py, |s| s.timers.forget_cancelled());
                }
            }
            let result = if h.is_cancelled() {
                Ok(())
            } else if this.debug() {
                Self::run_debug(slf, &handle)
            } else {
                Handle::run(&handle)
            };
            Handle::release(py, this, handle.unbind());
            result?;
        }
        Ok(())
    }

    /// Runs a task step queued by [`Self::call_soon_task_step`]. In debug
    /// mode (turned on since it was queued) and when it raises, it is given
    /// the handle asyncio would have made, for the slow-callback warning and
    /// the error report.
    fn run_task_step(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        context: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let args = PyTuple::empty(py);
        let as_handle = |callback, context| {
            let new = NewHandle {
                callback,
                args: args.clone(),
                context: Some(context),
                traceback: false,
            };
            Handle::new_plain(py, slf, new, false)
        };
        if slf.get().debug() {
            return Self::run_debug(slf, &as_handle(callback, context)?);
        }
        match handles::call_in_context(py, &context, &callback, &args) {
            Ok(()) => Ok(()),
            Err(err) if is_interrupt(py, &err) => Err(err),
            Err(err) => {
                let handle = as_handle(callback.clone(), context)?;
                py_refs::report_callback_error(py)?.call1((
                    handle,
                    callback,
                    args,
                    err.into_value(py),
                ))?;
                Ok(())
            }
        }
    }

    /// Runs a transport's `_read_ready`/`_write_ready`. Like a callback, an
    /// exception it lets through goes to the exception handler unless it is
    /// `KeyboardInterrupt` or `SystemExit`.
    fn run_transport(
        slf: &Bound<'_, Self>,
        transport: &Bound<'_, SocketTransport>,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        let t0 = slf.get().debug().then(monotonic);
        let result = match dir {
            Direction::Read => SocketTransport::read_ready(transport),
            Direction::Write => SocketTransport::write_ready(transport),
        };
        let method = match dir {
            Direction::Read => "_read_ready",
            Direction::Write => "_write_ready",
        };
        if let Err(err) = result {
            if is_interrupt(py, &err) {
                return Err(err);
            }
            py_refs::report_transport_error(py)?.call1((transport, method, err.into_value(py)))?;
        }
        if let Some(t0) = t0 {
            let dt = monotonic() - t0;
            if dt >= f64::from_bits(slf.get().slow_callback_duration.load(Relaxed)) {
                py_refs::log_slow_transport(py)?.call1((transport, method, dt))?;
            }
        }
        Ok(())
    }

    /// Frees the handles a burst left in the free lists beyond their
    /// resting size once the lists have stayed above it for
    /// [`FREE_LIST_TRIM_INTERVAL`]. Called when the loop is about to wait, so
    /// that a loop that had one burst of callbacks does not keep its handles
    /// for good, while a loop that waits between bursts (another thread
    /// feeding it) keeps reusing them.
    fn trim_free_lists(&self, py: Python<'_>) {
        let excess = self.state.with(py, |s| {
            if s.free_handles.len() <= HANDLE_FREE_LIST_RESTING
                && s.free_timers.len() <= HANDLE_FREE_LIST_RESTING
            {
                s.free_lists_full_since = None;
                return None;
            }
            let now = monotonic();
            match s.free_lists_full_since {
                None => {
                    s.free_lists_full_since = Some(now);
                    return None;
                }
                Some(since) if now - since < FREE_LIST_TRIM_INTERVAL => return None,
                Some(_) => s.free_lists_full_since = None,
            }
            let mut excess = Vec::new();
            for list in [&mut s.free_handles, &mut s.free_timers] {
                if list.len() > HANDLE_FREE_LIST_RESTING {
                    excess.extend(list.drain(HANDLE_FREE_LIST_RESTING..));
                }
            }
            Some(excess)
        });
        drop(excess);
    }

    fn poll(slf: &Bound<'_, Self>, timeout: Option<Duration>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut events = this
            .state
            .with(py, |s| s.events.take())
            .unwrap_or_else(|| Events::with_capacity(EVENTS_CAPACITY));
        let result = if timeout == Some(Duration::ZERO) {
            this.poller.wait(&mut events, timeout)
        } else {
            this.trim_free_lists(py);
            this.self_pipe.set_sleeping(true);
            py.detach(|| {
                let result = this.poller.wait(&mut events, timeout);
                // Awake from here on, even while still waiting for the GIL:
                // wakers need not write to the pipe, since the ready queue is
                // read after this poll anyway.
                this.self_pipe.set_sleeping(false);
                result
            })
        };
        let interrupted = match result {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) => {
                this.state.with(py, |s| s.events = Some(events));
                return Err(os_error(e));
            }
        };
        let mut dead = Dropped::default();
        let mut signals = Vec::new();
        let drain_error = this.state.with(py, |s| {
            let mut drain_error = None;
            for event in events.iter() {
                if event.token == SELF_PIPE_TOKEN {
                    if let Err(e) = this.self_pipe.drain(|sig| signals.push(sig)) {
                        drain_error = Some(e);
                    }
                    continue;
                }
                s.registry
                    .ready_callbacks(py, &this.poller, event, &mut s.ready, &mut dead);
            }
            events.clear();
            s.events = Some(events);
            drain_error
        });
        dead.release(py, this);
        if interrupted {
            py.check_signals()?;
        }
        if let Some(e) = drain_error {
            return Err(os_error(e));
        }
        for sig in signals {
            slf.call_method1(intern!(py, "_handle_signal"), (sig,))?;
        }
        Ok(())
    }

    fn run_debug(slf: &Bound<'_, Self>, handle: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let previous = this
            .state
            .with(py, |s| s.current_handle.replace(handle.clone().unbind()));
        drop(previous);
        let t0 = monotonic();
        let result = Handle::run(handle).and_then(|()| {
            let dt = monotonic() - t0;
            if dt >= f64::from_bits(this.slow_callback_duration.load(Relaxed)) {
                py_refs::log_slow_callback(py)?.call1((handle, dt))?;
            }
            Ok(())
        });
        let current = this.state.with(py, |s| s.current_handle.take());
        drop(current);
        result
    }

    fn add_io<'py>(
        slf: &Bound<'py, Self>,
        fileobj: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        dir: Direction,
        check_transport: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        let fd = fileobj_to_fd(&fileobj)?;
        if check_transport {
            Self::ensure_fd_no_transport(slf, fd, &fileobj)?;
        }
        this.check_closed()?;
        let fd: RawFd = match RawFd::try_from(fd) {
            Ok(fd) if fd >= 0 => fd,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "Invalid file descriptor: {fd}"
                )))
            }
        };
        let new = NewHandle {
            callback,
            args,
            context: None,
            traceback: this.debug(),
        };
        let handle = Handle::new_plain(py, slf, new, true)?;
        let registered = IoCallback::Handle(handle.clone().unbind());
        let mut dead = Dropped::default();
        let result = this.state.with(py, |s| {
            s.registry.set(
                &this.poller,
                fd,
                Some(fileobj.unbind()),
                registered,
                dir,
                &mut dead,
            )
        });
        dead.release(py, this);
        match result {
            Ok(previous) => Self::release_callback(py, this, previous).map(|()| handle),
            Err(e) => Err(os_error(e)),
        }
    }

    fn remove_io(
        slf: &Bound<'_, Self>,
        fileobj: Bound<'_, PyAny>,
        dir: Direction,
        check_transport: bool,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let fd = fileobj_to_fd(&fileobj)?;
        if check_transport {
            Self::ensure_fd_no_transport(slf, fd, &fileobj)?;
        }
        if this.closed.load(Relaxed) {
            return Ok(false);
        }
        let mut dead = Dropped::default();
        let result = this.state.with(py, |s| {
            let fd = match RawFd::try_from(fd) {
                Ok(fd) if fd >= 0 => fd,
                _ => s.registry.find_by_object(&fileobj)?,
            };
            Some(s.registry.remove(&this.poller, fd, dir, &mut dead))
        });
        dead.release(py, this);
        match result {
            None => Err(PyValueError::new_err(format!(
                "Invalid file descriptor: {fd}"
            ))),
            Some(Err(e)) => Err(os_error(e)),
            Some(Ok(Removed::Callback(callback))) => {
                Self::release_callback(py, this, Some(callback)).map(|()| true)
            }
            Some(Ok(Removed::NotRegistered | Removed::NoCallback)) => Ok(false),
        }
    }
}

#[pymethods]
impl Loop {
    /// Arguments are accepted here and checked by `__init__` (the Python
    /// subclass), so that subclasses can take their own.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let poller = Poller::new().map_err(os_error)?;
        let self_pipe = SelfPipe::new().map_err(os_error)?;
        let read_fd = self_pipe.read_fd().expect("new self-pipe is open");
        poller
            .add(read_fd, SELF_PIPE_TOKEN, Interest::READABLE)
            .map_err(os_error)?;
        Ok(Loop {
            state: GilCell::new(State::default()),
            poller,
            self_pipe,
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            asyncgens_shutdown_called: AtomicBool::new(false),
            slow_callback_duration: AtomicU64::new(0.1f64.to_bits()),
            weak_self: PyOnceLock::new(),
        })
    }

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        monotonic()
    }

    /// Run until `stop()` is called.
    fn run_forever(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        Self::check_running(slf)?;
        let tracking = intern!(py, "_set_coroutine_origin_tracking");
        slf.call_method1(tracking, (this.debug(),))?;
        let old_hooks = py_refs::get_asyncgen_hooks(py)?.call0()?;
        let result = Self::run_forever_inner(slf);
        // The `finally` part: every step runs even if an earlier one fails.
        this.stopping.store(false, Relaxed);
        this.thread_id.store(0, Relaxed);
        let unset = py_refs::set_running_loop(py).and_then(|f| f.call1((py.None(),)));
        let untrack = slf.call_method1(tracking, (false,));
        let restore = old_hooks
            .cast::<PyTuple>()
            .map_err(PyErr::from)
            .and_then(|hooks| py_refs::set_asyncgen_hooks(py)?.call1(hooks));
        unset?;
        untrack?;
        restore?;
        result
    }

    /// Stop after the current turn (callbacks already scheduled still run).
    fn stop(&self) {
        self.stopping.store(true, Relaxed);
    }

    fn is_running(&self) -> bool {
        self.running()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Closes the native part: drops queued callbacks and timers, releases
    /// the poller and the self-pipe. Returns False if already closed.
    fn _close_native(&self, py: Python<'_>) -> PyResult<bool> {
        if self.running() {
            return Err(PyRuntimeError::new_err("Cannot close a running event loop"));
        }
        if self.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        let mut dead = Dropped::default();
        self.state.with(py, |s| {
            s.registry.clear(&mut dead);
            for item in s.ready.drain(..) {
                item.release_into(&mut dead);
            }
            dead.objects
                .extend(s.transports.drain().map(|(_, w)| w.into_any()));
            for Timer(handle) in s.timers.drain() {
                handle.get().set_unscheduled();
                dead.handles.push(handle);
            }
            dead.objects
                .extend(s.free_handles.drain(..).map(Py::into_any));
            dead.objects
                .extend(s.free_timers.drain(..).map(Py::into_any));
        });
        dead.release(py, self);
        self.poller.close();
        self.self_pipe.close();
        Ok(true)
    }

    fn set_debug(slf: &Bound<'_, Self>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.debug.store(enabled.is_truthy()?, Relaxed);
        if this.running() {
            let callback = slf.getattr(intern!(py, "_set_coroutine_origin_tracking"))?;
            let new = NewHandle {
                callback,
                args: PyTuple::new(py, [enabled])?,
                context: None,
                traceback: false,
            };
            Self::call_soon_threadsafe_impl(slf, new)?;
        }
        Ok(())
    }

    #[getter(slow_callback_duration)]
    fn slow_callback_duration(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Relaxed))
    }

    #[setter(slow_callback_duration)]
    fn set_slow_callback_duration(&self, value: f64) {
        self.slow_callback_duration.store(value.to_bits(), Relaxed);
    }

    /// Create a Future attached to the loop.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let py = slf.py();
        vectorcall_kw(
            py_refs::future_type(py)?,
            &[],
            &[slf.as_any()],
            kwnames(py, &NAMES, &["loop"])?,
        )
    }

    /// Schedule a coroutine as a Task (or through the task factory). This is
    /// the Python 3.11/3.12 signature; `_loop.py` replaces the method on 3.13+,
    /// where extra keyword arguments are forwarded.
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static LOOP: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        static LOOP_NAME: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        static LOOP_CONTEXT: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        static ALL: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let factory = this
            .state
            .with(py, |s| s.task_factory.as_ref().map(|f| f.clone_ref(py)));
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        let Some(factory) = factory else {
            // Only the keywords that were given: fewer for Task() to unpack.
            let task_type = py_refs::task_type(py)?;
            let lp = slf.as_any();
            return match (&name, &context) {
                (None, None) => {
                    vectorcall_kw(task_type, &[&coro], &[lp], kwnames(py, &LOOP, &["loop"])?)
                }
                (Some(n), None) => vectorcall_kw(
                    task_type,
                    &[&coro],
                    &[lp, n],
                    kwnames(py, &LOOP_NAME, &["loop", "name"])?,
                ),
                (None, Some(c)) => vectorcall_kw(
                    task_type,
                    &[&coro],
                    &[lp, c],
                    kwnames(py, &LOOP_CONTEXT, &["loop", "context"])?,
                ),
                (Some(n), Some(c)) => vectorcall_kw(
                    task_type,
                    &[&coro],
                    &[lp, n, c],
                    kwnames(py, &ALL, &["loop", "name", "context"])?,
                ),
            };
        };
        let name = name.unwrap_or_else(|| py.None().into_bound(py));
        let context = context.unwrap_or_else(|| py.None().into_bound(py));
        let factory = factory.into_bound(py);
        let task = if context.is_none() {
            factory.call1((slf, coro))?
        } else {
            let kw = PyDict::new(py);
            kw.set_item("context", &context)?;
            factory.call((slf, coro), Some(&kw))?
        };
        if python_at_least(py, 12) {
            if !name.is_none() {
                task.call_method1(intern!(py, "set_name"), (name,))?;
            }
        } else {
            py_refs::set_task_name(py)?.call1((&task, name))?;
        }
        Ok(task)
    }

    fn set_task_factory(&self, py: Python<'_>, factory: Bound<'_, PyAny>) -> PyResult<()> {
        if !factory.is_none() && !factory.is_callable() {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let factory = (!factory.is_none()).then(|| factory.unbind());
        let old = self
            .state
            .with(py, |s| std::mem::replace(&mut s.task_factory, factory));
        drop(old);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .with(py, |s| s.task_factory.as_ref().map(|f| f.clone_ref(py)))
    }

    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_task_factory(py)
    }

    // --- asynchronous generators -------------------------------------------

    fn _asyncgen_firstiter_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.asyncgens_shutdown_called.load(Relaxed) {
            let message = format!(
                "asynchronous generator {} was scheduled after loop.shutdown_asyncgens() call",
                agen.repr()?
            );
            let kwargs = PyDict::new(py);
            kwargs.set_item("source", slf)?;
            py_refs::warn(py)?
                .call((message, PyResourceWarning::type_object(py)), Some(&kwargs))?;
        }
        let weak = PyWeakrefReference::new(agen)?.unbind();
        let mut dead = Vec::new();
        this.state
            .with(py, |s| s.asyncgens.add(py, weak, &mut dead));
        drop(dead);
        Ok(())
    }

    /// Called by the interpreter (garbage collector or frame teardown, in any
    /// thread) for a generator that was not exhausted: schedule its
    /// `aclose()` on the loop. Cheap and thread-safe on purpose.
    fn _asyncgen_finalizer_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().closed.load(Relaxed) {
            return Ok(());
        }
        let aclose = agen.call_method0(intern!(py, "aclose"))?;
        let new = NewHandle {
            callback: slf.getattr(intern!(py, "create_task"))?,
            args: PyTuple::new(py, [aclose])?,
            context: None,
            traceback: false,
        };
        Self::call_soon_threadsafe_impl(slf, new)?;
        Ok(())
    }

    /// The live generators, forgetting them all (for `shutdown_asyncgens`).
    fn _take_asyncgens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut dead = Vec::new();
        let live = self
            .state
            .with(py, |s| s.asyncgens.take_live(py, &mut dead));
        drop(dead);
        PyList::new(py, live)
    }

    /// Number of live generators first iterated on this loop.
    fn _asyncgens_count(&self, py: Python<'_>) -> usize {
        self.state.with(py, |s| s.asyncgens.live_count(py))
    }

    #[getter(_asyncgens_shutdown_called)]
    fn asyncgens_shutdown_called(&self) -> bool {
        self.asyncgens_shutdown_called.load(Relaxed)
    }

    #[setter(_asyncgens_shutdown_called)]
    fn set_asyncgens_shutdown_called(&self, value: bool) {
        self.asyncgens_shutdown_called.store(value, Relaxed);
    }

    // --- readiness callbacks ---------------------------------------------

    /// Call `callback(*args)` whenever `fd` is readable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, Direction::Read, true).map(drop)
    }

    /// Stop watching `fd` for reading; True if a callback was removed.
    fn remove_reader(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Read, true)
    }

    /// Call `callback(*args)` whenever `fd` is writable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, Direction::Write, true).map(drop)
    }

    /// Stop watching `fd` for writing; True if a callback was removed.
    fn remove_writer(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Write, true)
    }

    /// asyncio's `_add_reader`: no transport check; returns the handle.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader<'py>(
        slf: &Bound<'py, Self>,
        fd: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        Self::add_io(slf, fd, callback, args, Direction::Read, false)
    }

    /// asyncio's `_add_writer`: no transport check; returns the handle.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer<'py>(
        slf: &Bound<'py, Self>,
        fd: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        Self::add_io(slf, fd, callback, args, Direction::Write, false)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Read, false)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Write, false)
    }

    /// `sock.recv(n)` on a plain non-blocking socket: the data, or a future
    /// of it (see `sock.rs`).
    fn _sock_recv<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        n: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::sock::sock_recv(slf, sock, n)
    }

    /// `sock.recv_into(buf)`: the count, or a future of it.
    fn _sock_recv_into<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        buf: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::sock::sock_recv_into(slf, sock, buf)
    }

    /// Sends all of `data`: None when done at once, else a future.
    fn _sock_sendall<'py>(
        slf: &Bound<'py, Self>,
        sock: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::sock::sock_sendall(slf, sock, data)
    }

    /// Raise if `fd` is used by a transport that is not closing.
    fn _ensure_fd_no_transport(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<()> {
        let number = fileobj_to_fd(&fd)?;
        Self::ensure_fd_no_transport(slf, number, &fd)
    }

    // --- internals used by the Python layer and by asyncio's own code ------

    /// A handle for `callback(*args)` that is not scheduled (signal handlers).
    fn _new_handle<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        let traceback = slf.get().debug();
        Handle::new_plain(
            slf.py(),
            slf,
            NewHandle {
                callback,
                args,
                context: None,
                traceback,
            },
            false,
        )
    }

    /// asyncio's `_run_once`: one turn of the loop.
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// Append a handle to the ready queue unless it is cancelled.
    fn _add_callback(slf: &Bound<'_, Self>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        match handle.cast::<Handle>() {
            Ok(handle) => {
                if !handle.get().is_cancelled() {
                    slf.get().push_ready(py, handle.clone().unbind());
                }
            }
            Err(_) => {
                // A handle of another implementation: run it through `_run`.
                if !handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                    let new = NewHandle {
                        callback: handle.getattr(intern!(py, "_run"))?,
                        args: PyTuple::empty(py),
                        context: None,
                        traceback: false,
                    };
                    let ours = Handle::new_plain(py, slf, new, true)?;
                    slf.get().push_ready(py, ours.unbind());
                }
            }
        }
        Ok(())
    }

    /// Wake the loop if it is waiting for I/O.
    fn _write_to_self(&self) {
        self.self_pipe.wake();
    }

    fn _timer_handle_cancelled(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) {
        if let Ok(handle) = handle.cast::<Handle>() {
            self.timer_handle_cancelled(py, handle.get());
        }
    }

    /// The descriptor Python's signal machinery should write to.
    fn _signal_wakeup_fd(&self) -> PyResult<RawFd> {
        self.self_pipe.write_fd().ok_or_else(closed_error)
    }

    fn _set_signals_active(&self, py: Python<'_>, active: bool) {
        self.state.with(py, |s| s.signals_active = active);
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        Some(self.thread_id.load(Relaxed)).filter(|&id| id != 0)
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.debug()
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.state
            .with(py, |s| s.current_handle.as_ref().map(|h| h.clone_ref(py)))
    }

    #[getter]
    fn _timer_cancelled_count(&self, py: Python<'_>) -> usize {
        self.state.with(py, |s| s.timers.cancelled_count())
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        CLOCK_RESOLUTION
    }

    /// Sizes of the internal queues: (ready callbacks, timers, watched fds).
    fn _queue_sizes(&self, py: Python<'_>) -> (usize, usize, usize) {
        self.state
            .with(py, |s| (s.ready.len(), s.timers.len(), s.registry.len()))
    }

    /// Reports the loop's references to the collector. Queued handles are
    /// untracked (see `handles.rs`): their references are reported here, as
    /// the loop's own, so that cycles through the queues are collected. The
    /// weak references to asynchronous generators hold nothing strongly, and
    /// the empty handles kept for reuse hold only the loop's weak reference.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held.
        let Some(s) = (unsafe { self.state.peek_for_gc() }) else {
            return Ok(());
        };
        for item in &s.ready {
            item.traverse(&visit)?;
        }
        for Timer(handle) in s.timers.iter() {
            Handle::traverse_queued(handle, &visit)?;
        }
        s.registry.traverse(&visit)?;
        visit.call(&s.task_factory)?;
        visit.call(&s.current_handle)?;
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let mut dead = Dropped::default();
        self.state.with(py, |s| {
            s.registry.clear(&mut dead);
            let live = s.asyncgens.take_live(py, &mut dead.objects);
            dead.objects.extend(live);
            for item in s.ready.drain(..) {
                item.release_into(&mut dead);
            }
            dead.objects
                .extend(s.transports.drain().map(|(_, w)| w.into_any()));
            dead.handles
                .extend(s.timers.drain().into_iter().map(|Timer(h)| h));
            dead.objects.extend(s.task_factory.take());
            dead.handles.extend(s.current_handle.take());
            dead.objects
                .extend(s.free_handles.drain(..).map(Py::into_any));
            dead.objects
                .extend(s.free_timers.drain(..).map(Py::into_any));
        });
        dead.release(py, self);
    }
}

impl Loop {
    // The scheduling methods. Their Python entry points are in `fastcall.rs`.

    /// `call_soon(callback, *args, context=None)`.
    pub(crate) fn call_soon<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let new = Self::new_handle(slf, "call_soon", callback, args, context, true)?;
        let handle = Handle::new_plain(py, slf, new, true)?;
        this.push_ready(py, handle.clone().unbind());
        Ok(handle)
    }

    /// `call_soon(step, context=ctx)` where `step` is the callback asyncio's
    /// C `Task` schedules for each of its steps (`fastcall::is_task_step`). The
    /// `Task` drops the handle `call_soon` returns without looking at it, and
    /// the callback object is private to it, so outside debug mode the step
    /// is queued without a handle and `None` is returned: no handle to
    /// allocate, fill, and release per step, and none to count towards the
    /// garbage collector's thresholds when thousands of tasks start at once.
    pub(crate) fn call_soon_task_step<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        context: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.debug() {
            let handle = Self::call_soon(slf, callback, PyTuple::empty(py), Some(context))?;
            return Ok(handle.into_any());
        }
        this.check_closed()?;
        this.state.with(py, |s| {
            s.ready
                .push_back(Ready::TaskStep(callback.unbind(), context.unbind()))
        });
        Ok(py.None().into_bound(py))
    }

    /// `call_soon_threadsafe(callback, *args, context=None)`: safe from any
    /// thread; wakes the loop if it sleeps.
    pub(crate) fn call_soon_threadsafe<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        slf.get().check_closed()?;
        let new = Self::new_handle(slf, "call_soon_threadsafe", callback, args, context, false)?;
        Self::call_soon_threadsafe_impl(slf, new)
    }

    /// `call_at(when, callback, *args, context=None)`.
    pub(crate) fn call_at<'py>(
        slf: &Bound<'py, Self>,
        when: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        slf.get().check_closed()?;
        let new = Self::new_handle(slf, "call_at", callback, args, context, true)?;
        let when_f: f64 = when.extract()?;
        let when_obj = (!when.is_exact_instance_of::<PyFloat>()).then(|| when.unbind());
        Self::schedule_timer(slf, new, when_f, when_obj)
    }

    /// `call_later(delay, callback, *args, context=None)`.
    pub(crate) fn call_later<'py>(
        slf: &Bound<'py, Self>,
        delay: Bound<'py, PyAny>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let delay: f64 = delay.extract()?;
        let when = monotonic() + delay;
        slf.get().check_closed()?;
        // asyncio's call_later goes through call_at, whose name it reports.
        let new = Self::new_handle(slf, "call_at", callback, args, context, true)?;
        Self::schedule_timer(slf, new, when, None)
    }

    fn schedule_timer<'py>(
        slf: &Bound<'py, Self>,
        new: NewHandle<'py>,
        when: f64,
        when_obj: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let handle = Handle::new_timer(py, slf, new, when, when_obj)?;
        let timer = Timer(handle.clone().unbind());
        slf.get().state.with(py, |s| s.timers.push(when, timer));
        Ok(handle)
    }
}

/// Registers the classes of this file.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Loop>()?;
    crate::fastcall::install(m, &m.py().get_type::<Loop>())?;
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    m.add_class::<SocketTransport>()?;
    Ok(())
}
