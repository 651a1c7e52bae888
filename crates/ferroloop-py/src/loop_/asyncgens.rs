//! The asynchronous-generator hooks and the loop's weak set of generators.
//!
//! While the loop runs, `sys.set_asyncgen_hooks` points at
//! `_asyncgen_firstiter_hook` and `_asyncgen_finalizer_hook` (installed and
//! restored by `run_forever`, see `turn.rs`). The finalizer is called by the
//! interpreter during garbage collection or frame teardown, in any thread:
//! it only schedules the generator's `aclose()` thread-safely, and does
//! nothing heavy (no stack walk).
//!
//! `firstiter` is called for every asynchronous generator the first time it
//! is iterated while the loop runs, which makes it a hot path (one call per
//! `async for` over a fresh generator). asyncio keeps a `weakref.WeakSet`,
//! paying for a weak reference with a callback and a set insertion each time.
//!
//! Here each generator gets a plain weak reference without callback and is
//! appended to a vector. Dead references are swept lazily, when the vector has
//! doubled since the last sweep, so the amortized cost per generator stays
//! O(1) and no Python code ever runs to keep the set current. The finalizer
//! does not need to remove its generator either: the interpreter clears weak
//! references to an object before calling its finalizer.
//!
//! # Counters and the unclosed-generator report
//! The loop counts generators first iterated, finalized by the garbage
//! collector while suspended (the interpreter calls the finalizer only for a
//! generator that was neither exhausted nor closed), closed by
//! `shutdown_asyncgens`, and the cleanup errors it reported; each count is
//! one addition. When the report is on (debug mode, or
//! `FERROLOOP_ASYNCGEN_DEBUG=1`), `firstiter` also records where the
//! generator was first iterated: the caller's code object and line (one
//! frame read, no stack walk) and the name of the current task; the
//! finalizer then warns with a `ResourceWarning` naming that place. The
//! records are keyed by the generator's address: a generator reaching the
//! finalizer was first iterated with these hooks, so the record at its
//! address is its own.

use std::sync::atomic::Ordering::Relaxed;

use ferroloop_core::address_map::AddressMap;
use pyo3::exceptions::PyResourceWarning;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyWeakrefReference};
use pyo3::PyTypeInfo;

use super::Loop;
use crate::cpython::{caller_location, code_line};
use crate::py_refs;

const MIN_SWEEP: usize = 64;

/// What happened to the generators first iterated on the loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncGenCounts {
    /// First iterated on this loop.
    pub first_iterated: u64,
    /// Handed to the finalizer while suspended (never closed).
    pub finalized: u64,
    /// Closed by `shutdown_asyncgens`.
    pub closed_by_shutdown: u64,
    /// Cleanup errors `shutdown_asyncgens` reported.
    pub cleanup_errors: u64,
}

/// Where a generator was first iterated (report mode).
struct Origin {
    code: Py<PyAny>,
    /// The offset of the instruction in `code` (its line is looked up
    /// when reported).
    offset: i32,
    /// The name of the task that iterated it, if any.
    task_name: Option<Py<PyAny>>,
    /// The generator, weakly: a dead one's record is swept.
    weak: Py<PyWeakrefReference>,
}

/// Weak references to the generators first iterated on the loop.
pub struct AsyncGens {
    refs: Vec<Py<PyWeakrefReference>>,
    /// Sweep dead references when `refs` reaches this length.
    sweep_at: usize,
    pub counts: AsyncGenCounts,
    /// First-iteration records by generator address (report mode).
    origins: AddressMap<Origin>,
    /// The last task seen by `firstiter` (weakly: a record must not keep a
    /// task alive, which would delay its "exception was never retrieved"
    /// report) and its name, so that a task iterating many generators is
    /// asked its name once.
    last_task: Option<(Py<PyWeakrefReference>, Py<PyAny>)>,
}

impl Default for AsyncGens {
    fn default() -> Self {
        Self {
            refs: Vec::new(),
            sweep_at: MIN_SWEEP,
            counts: AsyncGenCounts::default(),
            origins: AddressMap::default(),
            last_task: None,
        }
    }
}

fn is_alive(py: Python<'_>, r: &Py<PyWeakrefReference>) -> bool {
    r.bind(py).upgrade().is_some()
}

impl AsyncGens {
    /// Tracks a generator; dead references found by a sweep go to `dead`.
    pub fn add(&mut self, py: Python<'_>, r: Py<PyWeakrefReference>, dead: &mut Vec<Py<PyAny>>) {
        if self.refs.len() >= self.sweep_at {
            let (live, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.refs)
                .into_iter()
                .partition(|r| is_alive(py, r));
            self.refs = live;
            dead.extend(gone.into_iter().map(Py::into_any));
            self.sweep_at = (self.refs.len() * 2).max(MIN_SWEEP);
            if !self.origins.is_empty() {
                let stale: Vec<usize> = self
                    .origins
                    .iter()
                    .filter(|(_, o)| !is_alive(py, &o.weak))
                    .map(|(&k, _)| k)
                    .collect();
                for key in stale {
                    if let Some(origin) = self.origins.remove(&key) {
                        dead.extend(origin.into_objects());
                    }
                }
            }
        }
        self.counts.first_iterated += 1;
        self.refs.push(r);
    }

    /// The weak references, for [`count_live`] outside the state's borrow.
    pub fn refs_snapshot(&self, py: Python<'_>) -> Vec<Py<PyWeakrefReference>> {
        self.refs.iter().map(|r| r.clone_ref(py)).collect()
    }

    /// Number of generators still alive.
    pub fn live_count(&self, py: Python<'_>) -> usize {
        self.refs.iter().filter(|r| is_alive(py, r)).count()
    }

    /// Removes every reference; returns the generators still alive (strong
    /// references, in first-iteration order) and puts the rest in `dead`.
    pub fn take_live(&mut self, py: Python<'_>, dead: &mut Vec<Py<PyAny>>) -> Vec<Py<PyAny>> {
        self.sweep_at = MIN_SWEEP;
        for (_, origin) in self.origins.drain() {
            dead.extend(origin.into_objects());
        }
        let mut live = Vec::new();
        for r in std::mem::take(&mut self.refs) {
            if let Some(obj) = r.bind(py).upgrade() {
                live.push(obj.unbind());
            }
            dead.push(r.into_any());
        }
        live
    }
}

/// Generators alive among `refs`, and how many of them are not finished
/// (suspended or running: their frame is still there).
pub fn count_live(py: Python<'_>, refs: &[Py<PyWeakrefReference>]) -> PyResult<(usize, usize)> {
    let mut live = 0;
    let mut unfinished = 0;
    for r in refs {
        if let Some(agen) = r.bind(py).upgrade() {
            live += 1;
            if !agen.getattr(intern!(py, "ag_frame"))?.is_none() {
                unfinished += 1;
            }
        }
    }
    Ok((live, unfinished))
}

impl Origin {
    fn into_objects(self) -> impl Iterator<Item = Py<PyAny>> {
        [Some(self.code), self.task_name, Some(self.weak.into_any())]
            .into_iter()
            .flatten()
    }
}

/// Whether `warnings` is sure to ignore a `ResourceWarning` now, whatever
/// its message and origin: the first filter that matches the category
/// matches every message, module and line, and says "ignore" (with no
/// filter matching, the default action decides). Anything this does not
/// settle (a filter on a message, module or line; context-local filters;
/// `warnings` not imported yet) answers `false`, and the report is then
/// made through `warnings.warn`, which decides.
///
/// This is what makes the report cheap where the warning is not shown (the
/// default filters ignore `ResourceWarning`): the message is not formatted
/// and `warnings.warn` (its frame walk, registry and filter match) is not
/// called.
fn resource_warning_ignored(py: Python<'_>) -> PyResult<bool> {
    // sys.flags do not change in a process.
    static CONTEXT_AWARE: PyOnceLock<bool> = PyOnceLock::new();
    let context_aware = *CONTEXT_AWARE.get_or_try_init(py, || -> PyResult<bool> {
        let flags = py
            .import(intern!(py, "sys"))?
            .getattr(intern!(py, "flags"))?;
        match flags.getattr(intern!(py, "context_aware_warnings")) {
            Ok(aware) => aware.is_truthy(),
            Err(_) => Ok(false),
        }
    })?;
    if context_aware {
        return Ok(false);
    }
    let Some(warnings) = py_refs::imported_module(py, intern!(py, "warnings"))? else {
        return Ok(false);
    };
    let category = PyResourceWarning::type_object(py);
    let filters = warnings.getattr(intern!(py, "filters"))?;
    let Ok(filters) = filters.cast::<PyList>() else {
        return Ok(false);
    };
    for filter in filters.iter() {
        let Ok(filter) = filter.cast_into::<PyTuple>() else {
            return Ok(false);
        };
        if filter.len() != 5 {
            return Ok(false);
        }
        let filter_category = filter.get_item(2)?;
        if !category.is_subclass(&filter_category)? {
            continue;
        }
        let any_message = filter.get_item(1)?.is_none();
        let any_module = filter.get_item(3)?.is_none();
        let any_line = filter
            .get_item(4)?
            .extract::<i64>()
            .is_ok_and(|line| line == 0);
        if !(any_message && any_module && any_line) {
            return Ok(false);
        }
        return filter.get_item(0)?.eq(intern!(py, "ignore"));
    }
    warnings
        .getattr(intern!(py, "defaultaction"))?
        .eq(intern!(py, "ignore"))
}

/// The message of the report of a generator finalized while suspended.
fn unclosed_message(agen: &Bound<'_, PyAny>, origin: &Origin) -> PyResult<String> {
    let py = agen.py();
    let code = origin.code.bind(py);
    let task = match &origin.task_name {
        Some(name) => format!("task {}", name.bind(py).str()?),
        None => "no task".to_string(),
    };
    Ok(format!(
        "asynchronous generator {} was never closed: first iterated at {}:{} in {} ({}); \
         close it with 'async with contextlib.aclosing(...)' or 'await agen.aclose()'",
        agen.getattr(intern!(py, "__qualname__"))?.str()?,
        code.getattr(intern!(py, "co_filename"))?.str()?,
        code_line(code, origin.offset),
        code.getattr(intern!(py, "co_name"))?.str()?,
        task,
    ))
}

impl Loop {
    /// Whether the unclosed-generator report is on.
    pub(super) fn asyncgen_report(&self) -> bool {
        self.asyncgen_report.load(Relaxed) || self.debug()
    }

    /// The name of the task running on this loop now, asking a task for its
    /// name only when it is not the last one seen.
    fn current_task_name(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let task = py_refs::current_task_of(slf.as_any())?;
        if task.is_none() {
            return Ok(None);
        }
        let this = slf.get();
        let cached = this.state.with(py, |s| {
            s.asyncgens
                .last_task
                .as_ref()
                .map(|(t, name)| (t.clone_ref(py), name.clone_ref(py)))
        });
        if let Some((seen, name)) = cached {
            if seen.bind(py).upgrade().is_some_and(|t| t.is(&task)) {
                return Ok(Some(name));
            }
        }
        let name = task.call_method0(intern!(py, "get_name"))?.unbind();
        // A task that takes no weak reference is simply not remembered.
        if let Ok(weak) = PyWeakrefReference::new(&task) {
            let old = this.state.with(py, |s| {
                s.asyncgens
                    .last_task
                    .replace((weak.unbind(), name.clone_ref(py)))
            });
            drop(old);
        }
        Ok(Some(name))
    }

    pub(super) fn asyncgen_firstiter(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
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
        let origin = match this
            .asyncgen_report()
            .then(|| caller_location(py))
            .flatten()
        {
            Some((code, offset)) => Some(Origin {
                code,
                offset,
                task_name: Self::current_task_name(slf)?,
                weak: weak.clone_ref(py),
            }),
            None => None,
        };
        let mut dead = Vec::new();
        let key = agen.as_ptr() as usize;
        this.state.with(py, |s| {
            s.asyncgens.add(py, weak, &mut dead);
            if let Some(origin) = origin {
                if let Some(old) = s.asyncgens.origins.insert(key, origin) {
                    dead.extend(old.into_objects());
                }
            }
        });
        drop(dead);
        Ok(())
    }

    pub(super) fn asyncgen_finalizer(
        slf: &Bound<'_, Self>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let key = agen.as_ptr() as usize;
        let origin = this.state.with(py, |s| {
            s.asyncgens.counts.finalized += 1;
            s.asyncgens.origins.remove(&key)
        });
        // The generator's cleanup is scheduled first, so that a warning
        // turned into an error (`-W error`) does not leave it unclosed.
        let scheduled = if this.is_closed_now() {
            Ok(())
        } else {
            agen.call_method0(intern!(py, "aclose")).and_then(|aclose| {
                let create_task = slf.getattr(intern!(py, "create_task"))?;
                Self::call_soon_threadsafe_internal(slf, create_task, PyTuple::new(py, [aclose])?)
                    .map(drop)
            })
        };
        if let Some(origin) = origin.filter(|_| !resource_warning_ignored(py).unwrap_or(false)) {
            let message = unclosed_message(agen, &origin);
            drop(origin);
            let kwargs = PyDict::new(py);
            kwargs.set_item("source", agen)?;
            py_refs::warn(py)?.call(
                (message?, PyResourceWarning::type_object(py)),
                Some(&kwargs),
            )?;
        }
        scheduled?;
        Ok(())
    }

    /// The live generators, forgotten by the loop (for
    /// `shutdown_asyncgens`, which closes them); those still suspended are
    /// counted as closed by the shutdown (a finished generator's frame is
    /// gone).
    pub(super) fn take_asyncgens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut dead = Vec::new();
        let live = self
            .state
            .with(py, |s| s.asyncgens.take_live(py, &mut dead));
        drop(dead);
        let mut suspended = 0;
        for agen in &live {
            if !agen.bind(py).getattr(intern!(py, "ag_frame"))?.is_none() {
                suspended += 1;
            }
        }
        self.state
            .with(py, |s| s.asyncgens.counts.closed_by_shutdown += suspended);
        PyList::new(py, live)
    }
}
