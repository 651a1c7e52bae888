//! `run_forever` and one turn of the loop.
//!
//! A turn follows `ferroloop_core::reactor::scheduler` (CPython's
//! `_run_once`): plan (prune cancelled timers, compute the timeout, decide
//! whether to poll), poll with the GIL released, queue what is ready
//! (through `Source::on_event`, reader before writer), move due timers to
//! the ready queue, then run exactly the items ready at that point. A real
//! wait releases the GIL; `EINTR` runs Python's signal handlers so Ctrl-C
//! raises `KeyboardInterrupt` at once.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ferroloop_core::reactor::registry::Dispatch;
use ferroloop_core::{monotonic, Events, CLOCK_RESOLUTION};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{Loop, State, Timer, EVENTS_CAPACITY, SELF_PIPE_TOKEN};
use crate::cpython::current_thread_id;
use crate::errors::{os_error, unless_interrupt};
use crate::handles::Handle;
use crate::py_refs;
use crate::source::{Direction, Ready, WatcherKind};

impl Loop {
    pub(super) fn run_forever_impl(slf: &Bound<'_, Self>) -> PyResult<()> {
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
    pub(super) fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();

        let stopping = this.stopping.load(Relaxed);
        let plan = this.state.with(py, |s| {
            s.sync_cancelled_timers(this.link.get());
            let watching = !s.registry.is_empty() || s.signals_active;
            s.sched.plan(monotonic, stopping, watching)
        });
        for Timer(handle) in plan.pruned {
            handle.get().set_unscheduled();
            Handle::release(py, this, handle);
        }
        if plan.poll {
            Self::poll(slf, plan.timeout)?;
        }

        // The timer handles are not touched when moved (with many timers they
        // are cold in the cache): their heap bookkeeping is settled when they
        // run.
        // Untimed, the callbacks are counted as run up front (one addition
        // per turn); those not taken, because the queue ran short or a
        // callback raised out of the loop, are taken back, and a cancelled
        // handle moves its count to the cancelled ones. Timed, each is
        // counted as it is taken.
        let timing = this.timing();
        let ntodo = this.state.with(py, |s| {
            let before = s.sched.ready.len();
            let ntodo = s.sched.collect_due(
                || monotonic() + CLOCK_RESOLUTION,
                |Timer(h)| Ready::Handle(h),
            );
            let counters = &mut s.stats.counters;
            counters.turns += 1;
            counters.timers_fired += (ntodo - before) as u64;
            counters.callbacks_scheduled += (ntodo - before) as u64;
            if !timing {
                counters.callbacks_run += ntodo as u64;
            }
            ntodo
        });
        if timing {
            return Self::run_ready_timed(slf, ntodo);
        }
        let mut taken = 0;
        let result = (|| {
            while taken < ntodo {
                let Some(item) = this.state.with(py, |s| s.sched.ready.pop_front()) else {
                    break;
                };
                taken += 1;
                match item {
                    Ready::Handle(handle) => Self::run_handle::<false>(slf, handle, 0.0)?,
                    Ready::Watcher(obj, kind, dir) => {
                        Self::run_watcher(slf, obj.bind(py), kind, dir)?
                    }
                    Ready::TaskStep(callback, context) => {
                        Self::run_task_step(slf, callback.into_bound(py), context.into_bound(py))?
                    }
                }
            }
            Ok(())
        })();
        if taken < ntodo {
            this.state.with(py, |s| {
                s.stats.counters.callbacks_run -= (ntodo - taken) as u64
            });
        }
        result
    }

    /// The ready callbacks of a turn with timing on: each is timed, and the
    /// slowest described.
    fn run_ready_timed(slf: &Bound<'_, Self>, ntodo: usize) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        for _ in 0..ntodo {
            let Some(item) = this.state.with(py, |s| {
                let item = s.sched.ready.pop_front();
                s.stats.counters.callbacks_run += item.is_some() as u64;
                item
            }) else {
                break;
            };
            let t0 = monotonic();
            match item {
                Ready::Handle(handle) => Self::run_handle::<true>(slf, handle, t0)?,
                Ready::Watcher(obj, kind, dir) => {
                    let obj = obj.bind(py);
                    Self::run_watcher(slf, obj, kind, dir)?;
                    this.record_callback(py, monotonic() - t0, || {
                        let what = match dir {
                            Direction::Read => "readable",
                            Direction::Write => "writable",
                        };
                        Ok(format!("{} {what}", obj.repr()?))
                    })?;
                }
                Ready::TaskStep(callback, context) => {
                    let callback = callback.into_bound(py);
                    Self::run_task_step(slf, callback.clone(), context.into_bound(py))?;
                    this.record_callback(py, monotonic() - t0, || {
                        let task = callback.getattr(intern!(py, "__self__"))?;
                        Ok(format!("step of {}", task.repr()?))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Runs a handle; with `TIMED`, records how long it took since `t0`.
    /// A const parameter, so that the untimed turn runs the code it ran
    /// before timing existed (inlined, no timing branch).
    #[inline(always)]
    fn run_handle<const TIMED: bool>(
        slf: &Bound<'_, Self>,
        handle: Py<Handle>,
        t0: f64,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = handle.into_bound(py);
        let h = handle.get();
        if h.is_scheduled() {
            // A timer that left the heap in this turn.
            h.set_unscheduled();
            if h.is_cancelled() {
                // Counted as a cancelled heap entry when cancelled.
                this.state.with(py, |s| {
                    s.sync_cancelled_timers(this.link.get());
                    s.sched.timers.forget_cancelled();
                });
            }
        }
        let result = if h.is_cancelled() {
            this.count_cancelled_callback(py);
            Ok(())
        } else {
            let result = if this.debug() {
                Self::run_debug(slf, &handle)
            } else {
                Handle::run(&handle)
            };
            if TIMED {
                let timed = this.record_callback(py, monotonic() - t0, || describe_handle(&handle));
                result.and(timed)
            } else {
                result
            }
        };
        Handle::release(py, this, handle.unbind());
        result
    }

    /// A handle taken from the ready queue was cancelled: counted as
    /// cancelled rather than run.
    #[cold]
    #[inline(never)]
    fn count_cancelled_callback(&self, py: Python<'_>) {
        self.state.with(py, |s| {
            s.stats.counters.callbacks_run -= 1;
            s.stats.counters.callbacks_cancelled += 1;
        });
    }

    /// Runs a watcher whose descriptor is ready. Like a callback, an
    /// exception it lets through goes to the exception handler unless it is
    /// `KeyboardInterrupt` or `SystemExit`; in debug mode, timed watchers
    /// report slow runs.
    fn run_watcher(
        slf: &Bound<'_, Self>,
        obj: &Bound<'_, PyAny>,
        kind: &WatcherKind,
        dir: Direction,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let t0 = (kind.timed && this.debug()).then(monotonic);
        let result = kind.ready(obj, dir);
        unless_interrupt(py, result, |err| kind.report(obj, dir, err))?;
        if let Some(t0) = t0 {
            let dt = monotonic() - t0;
            if dt >= this.slow_callback_seconds() {
                kind.log_slow(obj, dir, dt)?;
            }
        }
        Ok(())
    }

    /// Runs `handle` as the current handle, logging it if it is slow (debug
    /// mode).
    pub(super) fn run_debug(slf: &Bound<'_, Self>, handle: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let previous = this
            .state
            .with(py, |s| s.current_handle.replace(handle.clone().unbind()));
        drop(previous);
        let t0 = monotonic();
        let result = Handle::run(handle).and_then(|()| {
            let dt = monotonic() - t0;
            if dt >= this.slow_callback_seconds() {
                py_refs::log_slow_callback(py)?.call1((handle, dt))?;
            }
            Ok(())
        });
        let current = this.state.with(py, |s| s.current_handle.take());
        drop(current);
        result
    }

    /// Frees what a burst left in the handle free lists (see
    /// `ferroloop_core::reactor::free_list`). Called when the loop is about
    /// to wait.
    fn trim_free_lists(&self, py: Python<'_>) {
        let now = monotonic();
        let excess = self.state.with(py, |s| {
            let mut excess = s.free_handles.trim(now);
            excess.extend(s.free_timers.trim(now));
            excess
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
        let t0 = this.timing().then(monotonic);
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
        if let Some(t0) = t0 {
            let waited = monotonic() - t0;
            this.state
                .with(py, |s| s.stats.timing.poll_seconds += waited);
        }
        let interrupted = match result {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) => {
                this.state.with(py, |s| s.events = Some(events));
                return Err(os_error(e));
            }
        };
        let mut signals = Vec::new();
        let drain_error = this.with_dead(py, |s, dead| {
            let mut drain_error = None;
            for event in events.iter() {
                if event.token == SELF_PIPE_TOKEN {
                    if let Err(e) = this.self_pipe.drain(|sig| signals.push(sig)) {
                        drain_error = Some(e);
                    }
                    continue;
                }
                let State {
                    registry,
                    sched,
                    stats,
                    ..
                } = s;
                stats.counters.io_events += 1;
                registry.dispatch(&this.poller, event, dead, |dir, source| {
                    match source.on_event(py, dir) {
                        Some(item) => {
                            stats.counters.callbacks_scheduled += 1;
                            sched.ready.push_back(item);
                            Dispatch::Keep
                        }
                        None => Dispatch::Remove,
                    }
                });
            }
            events.clear();
            s.events = Some(events);
            drain_error
        });
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
}

impl Loop {
    /// `set_debug(enabled)`; a running loop also switches coroutine origin
    /// tracking, from its own thread.
    pub(super) fn set_debug_impl(
        slf: &Bound<'_, Self>,
        enabled: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.link.get().debug.store(enabled.is_truthy()?, Relaxed);
        if this.running() {
            let callback = slf.getattr(intern!(py, "_set_coroutine_origin_tracking"))?;
            let args = PyTuple::new(py, [enabled])?;
            Self::call_soon_threadsafe_internal(slf, callback, args)?;
        }
        Ok(())
    }
}

/// What a timed handle ran, for the slowest callbacks: the task it stepped
/// (a task's step or wake-up), or else the handle itself.
fn describe_handle(handle: &Bound<'_, Handle>) -> PyResult<String> {
    let py = handle.py();
    if let Some(callback) = Handle::_callback(handle.get(), py) {
        if let Ok(owner) = callback.bind(py).getattr(intern!(py, "__self__")) {
            let task_type = py_refs::task_type(py)?;
            if owner.is_instance(task_type)? {
                return Ok(format!("step of {}", owner.repr()?));
            }
        }
    }
    Ok(handle.repr()?.to_string())
}
