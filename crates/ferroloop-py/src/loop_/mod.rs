//! The native half of `ferroloop.Loop`.
//!
//! This file holds the `Loop` object, its state and its Python method table;
//! the logic is split by concept:
//! - `turn.rs` — `run_forever` and one turn of the loop (poll, dispatch,
//!   timers, running what is ready);
//! - `schedule.rs` — `call_soon`, `call_soon_threadsafe`, `call_later`,
//!   `call_at`, and handles made for the Python layer;
//! - `fastcall.rs` — the vectorcall entry points of the scheduling methods;
//! - `readers.rs` — `add_reader`/`add_writer` and the descriptor registry;
//! - `port.rs` — the narrow interface of the loop for the objects above it
//!   (transports, socket waiters);
//! - `tasks.rs` — futures, tasks, the task factory, handle-free task steps;
//! - `asyncgens.rs` — the asynchronous-generator hooks and their weak set;
//! - `signals.rs` — the signal wake-up descriptor;
//! - `stats.rs` — `loop.stats()`: counters, and timing when it is on.
//!
//! `python/ferroloop/_loop.py` adds the coroutine-level methods and the
//! exception handler on top. All mutable state lives in one
//! `GilCell<State>`; see `gil_cell.rs` for the rule that keeps borrows free
//! of Python code.

mod asyncgens;
mod fastcall;
mod port;
mod readers;
mod schedule;
mod signals;
mod stats;
mod tasks;
mod turn;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use ferroloop_core::reactor::free_list::FreeList;
use ferroloop_core::reactor::registry::{Registry, FOREIGN_TOKEN};
use ferroloop_core::reactor::scheduler::Scheduler;
use ferroloop_core::{monotonic, Events, Interest, Poller, SelfPipe, TimerEntry, CLOCK_RESOLUTION};
use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyWeakrefReference};
use pyo3::PyTraverseError;

use crate::errors::{closed_error, os_error};
use crate::gil_cell::GilCell;
use crate::handles::{Dropped, Handle, HandleOwner, LoopLink, ThreadSafeHandle, TimerHandle};
use crate::source::{Direction, Ready, Source};
use asyncgens::AsyncGens;

/// Readiness reports taken per wait; more are reported by the next one.
const EVENTS_CAPACITY: usize = 1024;
/// Size of the shared receive buffer (asyncio's `max_size`).
pub const READ_BUFFER_SIZE: usize = 256 * 1024;
/// Most handles kept for reuse (see `handles.rs`): enough for the bursts of
/// tens of thousands of callbacks that another thread queues through
/// `call_soon_threadsafe` while the loop waits for the GIL.
const HANDLE_FREE_LIST: usize = 65536;
/// What the free lists are cut back to when they have held more for
/// [`FREE_LIST_TRIM_INTERVAL`] seconds (checked when the loop is about to
/// wait).
const HANDLE_FREE_LIST_RESTING: usize = 256;
const FREE_LIST_TRIM_INTERVAL: f64 = 1.0;
/// The epoll token of the self-pipe.
const SELF_PIPE_TOKEN: u64 = FOREIGN_TOKEN;

/// A timer in the heap (a `TimerHandle`, held through its `Handle` base).
struct Timer(Py<Handle>);

impl TimerEntry for Timer {
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
}

/// Mutable loop state; see the module documentation.
struct State {
    /// The ready queue and the timer heap.
    sched: Scheduler<Ready, Timer>,
    /// Watched descriptors; the owner is the object given to `add_reader`.
    registry: Registry<Source, Py<PyAny>>,
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
    free_handles: FreeList<Py<Handle>>,
    /// Empty timer handles kept for reuse by `call_later` and `call_at`.
    free_timers: FreeList<Py<Handle>>,
    /// Open transports by descriptor (weakly), for asyncio's rule that
    /// `add_reader` and friends refuse a descriptor a transport uses.
    transports: HashMap<RawFd, Py<PyWeakrefReference>>,
    /// The receive buffer transports share; taken out while in use.
    read_buffer: Vec<u8>,
    /// A `bytes` handed to a protocol and dropped by it, with the size it
    /// was allocated for, kept for a later read (`port.rs`).
    spare_bytes: Option<(Py<PyBytes>, usize)>,
    /// What `loop.stats()` reports.
    stats: stats::Stats,
}

impl Default for State {
    fn default() -> Self {
        let free_list = || {
            FreeList::new(
                HANDLE_FREE_LIST,
                HANDLE_FREE_LIST_RESTING,
                FREE_LIST_TRIM_INTERVAL,
            )
        };
        State {
            sched: Scheduler::default(),
            registry: Registry::default(),
            asyncgens: AsyncGens::default(),
            task_factory: None,
            current_handle: None,
            events: None,
            signals_active: false,
            free_handles: free_list(),
            free_timers: free_list(),
            transports: HashMap::new(),
            read_buffer: Vec::new(),
            spare_bytes: None,
            stats: stats::Stats::default(),
        }
    }
}

impl State {
    /// Adds the timers cancelled since the last call to the heap's count.
    fn sync_cancelled_timers(&mut self, link: &LoopLink) {
        let n = link.take_cancelled_timers();
        if n > 0 {
            self.sched.timers.note_cancelled_many(n);
            self.stats.counters.timers_cancelled += n as u64;
        }
    }

    /// Empties every queue and table into `dead` (closing or clearing).
    fn drain_into(&mut self, dead: &mut Dropped) {
        self.registry.clear(dead);
        for item in self.sched.ready.drain(..) {
            item.release_into(dead);
        }
        dead.objects
            .extend(self.transports.drain().map(|(_, w)| w.into_any()));
        for Timer(handle) in self.sched.timers.drain() {
            handle.get().set_unscheduled();
            dead.handles.push(handle);
        }
        dead.objects
            .extend(self.spare_bytes.take().map(|(b, _)| b.into_any()));
        for list in [&mut self.free_handles, &mut self.free_timers] {
            dead.objects
                .extend(list.drain().into_iter().map(Py::into_any));
        }
    }
}

/// The native event loop; `ferroloop.Loop` is its Python subclass.
#[pyclass(module = "ferroloop._core", name = "Loop", subclass, frozen, weakref)]
pub struct Loop {
    state: GilCell<State>,
    /// What the loop shares with its handles (debug flag, weak reference).
    link: Py<LoopLink>,
    poller: Poller,
    self_pipe: SelfPipe,
    closed: AtomicBool,
    stopping: AtomicBool,
    /// Identifier of the thread running the loop, 0 when not running.
    thread_id: AtomicU64,
    asyncgens_shutdown_called: AtomicBool,
    /// `slow_callback_duration`, as the bits of an f64.
    slow_callback_duration: AtomicU64,
    /// Timing for `stats()` (`set_stats`); debug mode times too.
    timing_on: AtomicBool,
    /// The unclosed-generator report (`FERROLOOP_ASYNCGEN_DEBUG`); debug
    /// mode reports too.
    asyncgen_report: AtomicBool,
    /// Wake-ups written by `call_soon_threadsafe` (from any thread).
    threadsafe_wakeups: AtomicU64,
}

impl HandleOwner for Loop {
    fn link(&self) -> &Py<LoopLink> {
        &self.link
    }

    #[inline]
    fn reusable(&self, py: Python<'_>, timer: bool) -> Option<Py<Handle>> {
        self.state.with(py, |s| {
            if timer {
                s.free_timers.pop()
            } else {
                s.free_handles.pop()
            }
        })
    }

    #[inline]
    fn keep(&self, py: Python<'_>, handle: Py<Handle>, timer: bool) -> Option<Py<Handle>> {
        if self.closed.load(Relaxed) {
            return Some(handle);
        }
        self.state.with(py, |s| {
            if timer {
                s.free_timers.push(handle)
            } else {
                s.free_handles.push(handle)
            }
        })
    }
}

impl Loop {
    #[inline]
    pub(crate) fn debug(&self) -> bool {
        self.link.get().debug.load(Relaxed)
    }

    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// Whether `close()` has been called.
    pub(crate) fn is_closed_now(&self) -> bool {
        self.closed.load(Relaxed)
    }

    fn running(&self) -> bool {
        self.thread_id.load(Relaxed) != 0
    }

    fn slow_callback_seconds(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Relaxed))
    }

    /// Runs `f` on the state, then releases what it put in `dead` (outside
    /// the borrow, where dropping may run Python code).
    fn with_dead<R>(&self, py: Python<'_>, f: impl FnOnce(&mut State, &mut Dropped) -> R) -> R {
        let mut dead = Dropped::default();
        let result = self.state.with(py, |s| f(s, &mut dead));
        dead.release(py, self);
        result
    }
}

/// The Python method table. Each method validates and converts its
/// arguments, then calls the concept module that does the work.
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
            link: Py::new(_args.py(), LoopLink::default())?,
            poller,
            self_pipe,
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            asyncgens_shutdown_called: AtomicBool::new(false),
            slow_callback_duration: AtomicU64::new(0.1f64.to_bits()),
            timing_on: AtomicBool::new(false),
            asyncgen_report: AtomicBool::new(false),
            threadsafe_wakeups: AtomicU64::new(0),
        })
    }

    // --- running and closing -----------------------------------------------

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        monotonic()
    }

    /// Run until `stop()` is called.
    fn run_forever(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_forever_impl(slf)
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
        self.with_dead(py, State::drain_into);
        self.poller.close();
        self.self_pipe.close();
        Ok(true)
    }

    /// asyncio's `_run_once`: one turn of the loop.
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    fn set_debug(slf: &Bound<'_, Self>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::set_debug_impl(slf, enabled)
    }

    #[getter(slow_callback_duration)]
    fn slow_callback_duration(&self) -> f64 {
        self.slow_callback_seconds()
    }

    #[setter(slow_callback_duration)]
    fn set_slow_callback_duration(&self, value: f64) {
        self.slow_callback_duration.store(value.to_bits(), Relaxed);
    }

    // --- futures and tasks -------------------------------------------------

    /// Create a Future attached to the loop.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::create_future_impl(slf)
    }

    /// Schedule a coroutine as a Task (or through the task factory). This is
    /// the signature of the Python versions whose `create_task` takes no
    /// extra keywords; `_loop.py` replaces the method where asyncio's does.
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::create_task_impl(slf, coro, name, context)
    }

    fn set_task_factory(&self, py: Python<'_>, factory: Bound<'_, PyAny>) -> PyResult<()> {
        self.set_task_factory_impl(py, factory)
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory(py)
    }

    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory(py)
    }

    // --- asynchronous generators -------------------------------------------

    fn _asyncgen_firstiter_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::asyncgen_firstiter(slf, agen)
    }

    /// Called by the interpreter (garbage collector or frame teardown, in any
    /// thread) for a generator that was not exhausted: schedule its
    /// `aclose()` on the loop. Cheap and thread-safe on purpose.
    fn _asyncgen_finalizer_hook(slf: &Bound<'_, Self>, agen: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::asyncgen_finalizer(slf, agen)
    }

    /// The live generators, forgetting them all (for `shutdown_asyncgens`).
    fn _take_asyncgens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.take_asyncgens(py)
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

    // --- readiness callbacks -----------------------------------------------

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

    /// Raise if `fd` is used by a transport that is not closing.
    fn _ensure_fd_no_transport(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<()> {
        let number = readers::fileobj_to_fd(&fd)?;
        Self::ensure_fd_no_transport(slf, number, &fd)
    }

    // --- scheduling internals used by the Python layer and asyncio's code ---

    /// A handle for `callback(*args)` that is not scheduled (signal handlers).
    fn _new_handle<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, Handle>> {
        Self::unscheduled_handle(slf, callback, args)
    }

    /// Append a handle to the ready queue unless it is cancelled.
    fn _add_callback(slf: &Bound<'_, Self>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::add_callback(slf, handle)
    }

    fn _timer_handle_cancelled(&self, handle: &Bound<'_, PyAny>) {
        if handle
            .cast::<Handle>()
            .is_ok_and(|h| h.get().is_scheduled())
        {
            self.link.get().note_cancelled_timer();
        }
    }

    /// Wake the loop if it is waiting for I/O.
    fn _write_to_self(&self) {
        self.self_pipe.wake();
    }

    // --- signals -------------------------------------------------------------

    /// The descriptor Python's signal machinery should write to.
    fn _signal_wakeup_fd(&self) -> PyResult<RawFd> {
        self.self_pipe.write_fd().ok_or_else(closed_error)
    }

    fn _set_signals_active(&self, py: Python<'_>, active: bool) {
        self.set_signals_active(py, active);
    }

    // --- statistics -----------------------------------------------------------

    /// The loop's figures: counters (always), and durations when timing is
    /// on (see `stats.rs` and README).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.stats_dict(py)
    }

    /// Turn timing of callbacks and waits on or off (debug mode times
    /// anyway).
    fn set_stats(&self, enabled: bool) {
        self.timing_on.store(enabled, Relaxed);
    }

    /// Start the figures over.
    fn reset_stats(&self, py: Python<'_>) {
        self.reset_stats_impl(py);
    }

    /// Turn the unclosed-generator report on or off (debug mode reports
    /// anyway).
    fn _set_asyncgen_report(&self, enabled: bool) {
        self.asyncgen_report.store(enabled, Relaxed);
    }

    /// Whether the unclosed-generator report is on (set, or debug mode).
    #[getter]
    fn _asyncgen_report(&self) -> bool {
        self.asyncgen_report()
    }

    /// `shutdown_asyncgens` reported a cleanup error.
    fn _count_asyncgen_cleanup_error(&self, py: Python<'_>) {
        self.state
            .with(py, |s| s.asyncgens.counts.cleanup_errors += 1);
    }

    // --- introspection -------------------------------------------------------

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
        self.state.with(py, |s| {
            s.sync_cancelled_timers(self.link.get());
            s.sched.timers.cancelled_count()
        })
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        CLOCK_RESOLUTION
    }

    /// Sizes of the internal queues: (ready callbacks, timers, watched fds).
    fn _queue_sizes(&self, py: Python<'_>) -> (usize, usize, usize) {
        self.state.with(py, |s| {
            (s.sched.ready.len(), s.sched.timers.len(), s.registry.len())
        })
    }

    // --- garbage collection --------------------------------------------------

    /// Reports the loop's references to the collector. Queued handles are
    /// untracked (see `handles.rs`): their references are reported here, as
    /// the loop's own, so that cycles through the queues are collected. The
    /// weak references to asynchronous generators hold nothing strongly, and
    /// the empty handles kept for reuse hold no reference at all.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: tp_traverse runs with the GIL held.
        let Some(s) = (unsafe { self.state.peek_for_gc() }) else {
            return Ok(());
        };
        for item in &s.sched.ready {
            item.traverse(&visit)?;
        }
        for Timer(handle) in s.sched.timers.iter() {
            Handle::traverse_queued(handle, &visit)?;
        }
        for (_, owner, reader, writer) in s.registry.iter() {
            visit.call(owner)?;
            for source in reader.into_iter().chain(writer) {
                source.traverse(&visit)?;
            }
        }
        visit.call(&s.task_factory)?;
        visit.call(&s.current_handle)?;
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.with_dead(py, |s, dead| {
            s.drain_into(dead);
            let live = s.asyncgens.take_live(py, &mut dead.objects);
            dead.objects.extend(live);
            dead.objects.extend(s.task_factory.take());
            dead.handles.extend(s.current_handle.take());
        });
    }
}

/// Registers the classes of the loop layer.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Loop>()?;
    fastcall::install(m, &m.py().get_type::<Loop>())?;
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    m.add_class::<ThreadSafeHandle>()?;
    Ok(())
}
