//! Futures and tasks: asyncio's own C `Future` and `Task`, the task factory,
//! and the task steps queued without a handle.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use super::Loop;
use crate::compat;
use crate::cpython::{call_in_context, vectorcall_kw};
use crate::errors::unless_interrupt;
use crate::handles::{Handle, NewHandle};
use crate::py_refs;
use crate::source::Ready;

fn kwnames<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyTuple>>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    cell.get_or_try_init(py, || PyTuple::new(py, names).map(Bound::unbind))
        .map(|t| t.bind(py))
}

impl Loop {
    /// `Future(loop=self)`. In debug mode the future is made by asyncio's
    /// own `BaseEventLoop.create_future`, as on asyncio's loop: its creation
    /// traceback (shown by its repr, and in error reports) then ends in that
    /// method's frame as asyncio's does, not one frame short.
    pub(super) fn create_future_impl<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let py = slf.py();
        if slf.get().debug() {
            return py_refs::base_event_loop(py)?
                .getattr(intern!(py, "create_future"))?
                .call1((slf,));
        }
        vectorcall_kw(
            py_refs::future_type(py)?,
            &[],
            &[slf.as_any()],
            kwnames(py, &NAMES, &["loop"])?,
        )
    }

    /// `create_task(coro, *, name=None, context=None)`: a `Task`, or what the
    /// task factory makes, named as asyncio names it.
    pub(super) fn create_task_impl<'py>(
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
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        let Some(factory) = this.task_factory(py) else {
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
        let factory = factory.into_bound(py);
        let task = match &context {
            None => factory.call1((slf, coro))?,
            Some(context) => {
                let kw = PyDict::new(py);
                kw.set_item("context", context)?;
                factory.call((slf, coro), Some(&kw))?
            }
        };
        let name = name.unwrap_or_else(|| py.None().into_bound(py));
        match compat::set_task_name(py)? {
            // `tasks._set_task_name(task, name)`, where asyncio has it.
            Some(set_task_name) => {
                set_task_name.call1((&task, name))?;
            }
            // Where it does not, asyncio's `create_task` calls `set_name`
            // whatever the name.
            None => {
                task.call_method1(intern!(py, "set_name"), (name,))?;
            }
        }
        Ok(task)
    }

    pub(super) fn set_task_factory_impl(
        &self,
        py: Python<'_>,
        factory: Bound<'_, PyAny>,
    ) -> PyResult<()> {
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

    pub(super) fn task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .with(py, |s| s.task_factory.as_ref().map(|f| f.clone_ref(py)))
    }

    /// `call_soon(step, context=ctx)` where `step` is the callback asyncio's
    /// C `Task` schedules for each of its steps (`fastcall::is_task_step`). The
    /// `Task` drops the handle `call_soon` returns without looking at it, and
    /// the callback object is private to it, so outside debug mode the step
    /// is queued without a handle and `None` is returned: no handle to
    /// allocate, fill, and release per step, and none to count towards the
    /// garbage collector's thresholds when thousands of tasks start at once.
    pub(super) fn call_soon_task_step<'py>(
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
        this.push_ready(py, Ready::TaskStep(callback.unbind(), context.unbind()));
        Ok(py.None().into_bound(py))
    }

    /// Runs a task step queued by [`Self::call_soon_task_step`]. In debug
    /// mode (turned on since it was queued) and when it raises, it is given
    /// the handle asyncio would have made, for the slow-callback warning and
    /// the error report.
    pub(super) fn run_task_step(
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
            Handle::new_plain(slf, new, false)
        };
        if slf.get().debug() {
            return Self::run_debug(slf, &as_handle(callback, context)?);
        }
        let result = call_in_context(py, &context, &callback, &args);
        unless_interrupt(py, result, |err| {
            let handle = as_handle(callback.clone(), context)?;
            py_refs::report_callback_error(py)?.call1((
                handle,
                callback,
                args.clone(),
                err.into_value(py),
            ))?;
            Ok(())
        })
    }
}
