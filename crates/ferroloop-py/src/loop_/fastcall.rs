//! Vectorcall entry points for the scheduling methods: `call_soon`,
//! `call_soon_threadsafe`, `call_later` and `call_at`.
//!
//! These are the hottest calls into the loop: asyncio's C `Task` and `Future`
//! schedule every task step and every done-callback with
//! `loop.call_soon(callback, [arg], context=ctx)`. PyO3's generic argument
//! extraction converts each keyword name to UTF-8 and compares it against the
//! parameter names, which costs more than the rest of `call_soon` together.
//! Here the one shape these methods share, `(fixed, callback, *args,
//! context=None)`, is read straight from the vectorcall arguments, comparing
//! a keyword name by identity with the interned `"context"` before comparing
//! the text.
//!
//! The common shapes of call (no keyword, or only `context=` named by the
//! interned string, outside debug mode) are served straight from the C entry
//! point; everything else goes through PyO3's own trampoline (which keeps
//! PyO3's bookkeeping of the attached interpreter and turns panics into
//! exceptions; see `cpython.rs`). The functions are installed on the `Loop`
//! type as method descriptors when the module is initialized.
//!
//! # The direct path
//! PyO3's trampoline costs about a tenth of a `call_soon` (two thread-local
//! updates of its attach count, a check of its deferred-decref pool, and the
//! unwinding guard). The direct path skips it, which is sound because of
//! what it runs: the schedule functions below with arguments already known
//! to be well formed. They hold Python objects as `Bound` (released with a
//! plain `Py_DECREF`); what they store is moved, not dropped; a `Py<T>`
//! dropped there anyway would only have its release deferred by PyO3 to the
//! next trampoline, not lost. They should not panic (a panic is a bug, such
//! as a broken `GilCell` rule), but the direct path keeps the trampoline's
//! promise anyway: it catches an unwinding panic and raises it as PyO3's
//! `PanicException`, as the trampoline would (a landing pad, free unless a
//! panic happens). Errors (a closed loop, a failed allocation) are restored
//! as the pending exception. Debug mode, whose checks call into Python code,
//! always takes the trampoline.

use std::ffi::CStr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::Borrowed;

use super::Loop;
use crate::cpython::{add_method, assume_attached, fastcall_trampoline, is_exact_type};

/// The arguments of a scheduling method.
struct Parsed<'py> {
    /// `delay` / `when`, for the methods that take one.
    fixed: Option<Bound<'py, PyAny>>,
    callback: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// How a method's arguments are named (for error messages).
struct Spec {
    name: &'static str,
    /// The positional parameter before `callback`, if any.
    fixed: Option<&'static str>,
}

impl Spec {
    /// The parameters before `*args`, in order.
    fn slots(&self) -> impl Iterator<Item = &'static str> {
        self.fixed.into_iter().chain(["callback"])
    }
}

fn missing(spec: &Spec, names: &[&str]) -> PyErr {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let (count, plural) = (names.len(), if names.len() == 1 { "" } else { "s" });
    PyTypeError::new_err(format!(
        "{}() missing {count} required positional argument{plural}: {}",
        spec.name,
        quoted.join(" and ")
    ))
}

/// Reads `(fixed, callback, *args, context=None)` from vectorcall arguments.
/// As with asyncio's Python signature, `fixed` and `callback` may also be
/// passed by keyword (when no `*args` follow them); only the name `context`
/// is on the fast path.
///
/// # Safety
/// `args` must point to `nargs` positional arguments followed by one value
/// per name in `kwnames` (a tuple of strings, or NULL), all valid for the
/// duration of the call, as the interpreter guarantees for METH_FASTCALL.
unsafe fn parse<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    spec: &Spec,
) -> PyResult<Parsed<'py>> {
    let nargs = nargs as usize;
    let required = 1 + usize::from(spec.fixed.is_some());
    // SAFETY: the caller guarantees `nargs` valid positional pointers.
    let positional = unsafe { std::slice::from_raw_parts(args, nargs) };
    // SAFETY (both): the pointers are valid borrowed references.
    let borrowed = |ptr: *mut ffi::PyObject| unsafe { Bound::from_borrowed_ptr(py, ptr) };
    // `fixed` (if the method has one), then `callback`.
    let mut slots: [Option<Bound<'py, PyAny>>; 2] = [None, None];
    for (slot, &ptr) in slots.iter_mut().zip(positional).take(required) {
        *slot = Some(borrowed(ptr));
    }
    // SAFETY: forwarded from the caller.
    let rest = unsafe { tuple_of(py, &positional[required.min(nargs)..]) }?;
    let mut context = None;
    if !kwnames.is_null() {
        // SAFETY: `kwnames` is a tuple of strings (vectorcall protocol).
        let names =
            unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() };
        for (i, name) in names.iter().enumerate() {
            // SAFETY: keyword values follow the positional arguments.
            let value = borrowed(unsafe { *args.add(nargs + i) });
            if is_context_name(py, &name) {
                context = (!value.is_none()).then_some(value);
                continue;
            }
            let text = name.cast::<PyString>()?.to_str()?;
            let Some(index) = spec.slots().position(|slot| slot == text) else {
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected keyword argument {}",
                    spec.name,
                    name.repr()?
                )));
            };
            if slots[index].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{text}'",
                    spec.name
                )));
            }
            slots[index] = Some(value);
        }
    }
    let absent: Vec<&str> = spec
        .slots()
        .zip(&slots)
        .filter(|(_, slot)| slot.is_none())
        .map(|(name, _)| name)
        .collect();
    if !absent.is_empty() {
        return Err(missing(spec, &absent));
    }
    let [first, second] = slots;
    let (fixed, callback) = match spec.fixed {
        Some(_) => (first, second),
        None => (None, first),
    };
    Ok(Parsed {
        fixed,
        callback: callback.expect("every slot was checked above"),
        args: rest,
        context,
    })
}

/// The string `"context"` of callers that are not Python code; see
/// [`is_context_name`].
static CONTEXT_NAME: PyOnceLock<Py<PyString>> = PyOnceLock::new();

/// Whether `name` is one of the `"context"` strings already known: the
/// interned one, or the one remembered by [`is_context_name`]. Identity only.
fn is_known_context_name(py: Python<'_>, name: &Bound<'_, PyAny>) -> bool {
    name.is(intern!(py, "context")) || CONTEXT_NAME.get(py).is_some_and(|seen| name.is(seen))
}

/// Whether `name` is the string `"context"`. Callers that are not Python code
/// (asyncio's C `Task` and `Future`) pass a string of their own rather than
/// the interned one; the first such object is remembered (and kept alive), so
/// that later calls compare by identity instead of by text.
fn is_context_name(py: Python<'_>, name: &Bound<'_, PyAny>) -> bool {
    if is_known_context_name(py, name) {
        return true;
    }
    let Ok(name) = name.cast::<PyString>() else {
        return false;
    };
    // SAFETY: `name` is a live str object; the ASCII argument is NUL-terminated.
    let equal =
        unsafe { ffi::PyUnicode_CompareWithASCIIString(name.as_ptr(), c"context".as_ptr()) } == 0;
    if equal {
        let _ = CONTEXT_NAME.set(py, name.clone().unbind());
    }
    equal
}

type Schedule = for<'py> fn(&Bound<'py, Loop>, Parsed<'py>) -> PyResult<Bound<'py, PyAny>>;

/// The type of the callback asyncio's C `Task` passes to `call_soon` for
/// each of its steps (`TaskStepMethWrapper`, which `_asyncio` does not
/// export). The Python package finds it at import time by letting a `Task`
/// schedule its first step on a stand-in loop, and registers it here.
static TASK_STEP_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `_register_task_step_type(tp)`: see [`TASK_STEP_TYPE`]. A type not named
/// `TaskStepMethWrapper` (another `Task` implementation) is not taken:
/// `call_soon` then makes a handle for every callback. Returns whether `tp`
/// is the registered type.
#[pyfunction]
fn _register_task_step_type(tp: &Bound<'_, PyType>) -> PyResult<bool> {
    if tp.name()? != "TaskStepMethWrapper" {
        return Ok(false);
    }
    let registered = TASK_STEP_TYPE.get_or_init(tp.py(), || tp.clone().unbind());
    Ok(registered.is(tp))
}

/// Whether `callback` is a step of asyncio's C `Task`.
fn is_task_step(py: Python<'_>, callback: &Bound<'_, PyAny>) -> bool {
    TASK_STEP_TYPE
        .get(py)
        .is_some_and(|tp| is_exact_type(callback, tp))
}

/// The body every entry point shares on the trampoline path.
///
/// # Safety
/// Called by the interpreter through a method descriptor of `Loop`, which
/// guarantees that `slf` is an instance of `Loop`; see `parse` for the rest.
unsafe fn entry(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    spec: &Spec,
    schedule: Schedule,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the descriptor checked the type of `slf` before calling us.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Loop>() };
    // SAFETY: forwarded from the caller.
    let parsed = unsafe { parse(py, args, nargs, kwnames, spec)? };
    Ok(schedule(&slf, parsed)?.into_ptr())
}

/// The arguments of a call of the common shape: every parameter before
/// `*args` given by position, and no keyword but `context` named by the
/// interned string (or by the string asyncio's C `Task` and `Future` use,
/// once seen); `None` for any other shape, or in debug mode (see "The
/// direct path" above).
///
/// # Safety
/// As for `parse`, and `slf` must be a `Loop`.
#[inline(always)]
unsafe fn parse_common<'py>(
    py: Python<'py>,
    slf: &Bound<'py, Loop>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    spec: &Spec,
) -> Option<Parsed<'py>> {
    let nargs = nargs as usize;
    let required = 1 + usize::from(spec.fixed.is_some());
    let context = if kwnames.is_null() {
        None
    } else {
        // SAFETY: `kwnames` is a tuple of strings (vectorcall protocol).
        let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
        if names.len() != 1 {
            return None;
        }
        // SAFETY: the tuple has one item.
        let name = unsafe { names.get_borrowed_item_unchecked(0) };
        if !is_known_context_name(py, &name) {
            return None;
        }
        // SAFETY: the keyword value follows the positional arguments.
        let value = unsafe { Bound::from_borrowed_ptr(py, *args.add(nargs)) };
        (!value.is_none()).then_some(value)
    };
    if nargs < required || slf.get().debug() {
        return None;
    }
    // SAFETY: the caller guarantees `nargs` valid positional pointers.
    let positional = unsafe { std::slice::from_raw_parts(args, nargs) };
    // SAFETY (both): the pointers are valid borrowed references.
    let fixed = spec
        .fixed
        .map(|_| unsafe { Bound::from_borrowed_ptr(py, positional[0]) });
    let callback = unsafe { Bound::from_borrowed_ptr(py, positional[required - 1]) };
    Some(Parsed {
        fixed,
        callback,
        // SAFETY: the pointers are the call's valid borrowed references. A
        // tuple that cannot be made (no memory) sends the call down the
        // trampoline path, which raises the error.
        args: unsafe { tuple_of(py, &positional[required..]) }.ok()?,
        context,
    })
}

/// A tuple of the borrowed object pointers `items` (the shared empty tuple
/// when there are none).
///
/// # Safety
/// Every pointer in `items` must be a valid borrowed reference.
unsafe fn tuple_of<'py>(
    py: Python<'py>,
    items: &[*mut ffi::PyObject],
) -> PyResult<Bound<'py, PyTuple>> {
    if items.is_empty() {
        return Ok(PyTuple::empty(py));
    }
    PyTuple::new(
        py,
        items
            .iter()
            // SAFETY: guaranteed by the caller.
            .map(|&p| unsafe { Bound::from_borrowed_ptr(py, p) }),
    )
}

/// The direct path of an entry point (see "The direct path" above), or
/// `None` to take the trampoline.
///
/// # Safety
/// Called from the C entry point with its arguments; see `parse_common`.
#[inline(always)]
unsafe fn direct(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    spec: &Spec,
    schedule: Schedule,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: the interpreter calls the entry point with the GIL held, and
    // the descriptor checked the type of `slf`; the rest is forwarded.
    unsafe {
        let py = assume_attached();
        let lp = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Loop>();
        let parsed = parse_common(py, &lp, args, nargs, kwnames, spec)?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            schedule(&lp, parsed).map(Bound::into_ptr)
        }));
        Some(match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => {
                err.restore(py);
                std::ptr::null_mut()
            }
            Err(payload) => {
                panic_error(payload).restore(py);
                std::ptr::null_mut()
            }
        })
    }
}

/// The `PanicException` for a caught panic, with its message as PyO3 words
/// it (the text of a `String` or `&str` payload).
#[cold]
fn panic_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "panic from Rust code".to_owned()
    };
    pyo3::panic::PanicException::new_err((message,))
}

macro_rules! entry_point {
    ($fn_name:ident, $spec:expr, $schedule:expr) => {
        /// The C entry point: the direct path for the common shapes of call,
        /// PyO3's trampoline for the rest.
        ///
        /// # Safety
        /// Called by the interpreter as a `METH_FASTCALL | METH_KEYWORDS`
        /// method of `Loop`.
        unsafe extern "C" fn $fn_name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            const SPEC: Spec = $spec;
            const SCHEDULE: Schedule = $schedule;
            /// # Safety
            /// See `entry`.
            unsafe fn slow(
                py: Python<'_>,
                slf: *mut ffi::PyObject,
                args: *const *mut ffi::PyObject,
                nargs: ffi::Py_ssize_t,
                kwnames: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: forwarded from the interpreter.
                unsafe { entry(py, slf, args, nargs, kwnames, &SPEC, SCHEDULE) }
            }
            // SAFETY: forwarded from the interpreter.
            unsafe {
                match direct(slf, args, nargs, kwnames, &SPEC, SCHEDULE) {
                    Some(result) => result,
                    None => fastcall_trampoline!(slow)(slf, args, nargs, kwnames),
                }
            }
        }
    };
}

entry_point!(
    call_soon,
    Spec {
        name: "call_soon",
        fixed: None
    },
    |slf, p| match p.context {
        Some(context) if p.args.is_empty() && is_task_step(slf.py(), &p.callback) => {
            Loop::call_soon_task_step(slf, p.callback, context)
        }
        context => Loop::call_soon(slf, p.callback, p.args, context).map(Bound::into_any),
    }
);
entry_point!(
    call_soon_threadsafe,
    Spec {
        name: "call_soon_threadsafe",
        fixed: None
    },
    |slf, p| Loop::call_soon_threadsafe(slf, p.callback, p.args, p.context).map(Bound::into_any)
);
entry_point!(
    call_later,
    Spec {
        name: "call_later",
        fixed: Some("delay")
    },
    |slf, p| {
        Loop::call_later(slf, p.fixed.expect("parsed"), p.callback, p.args, p.context)
            .map(Bound::into_any)
    }
);
entry_point!(
    call_at,
    Spec {
        name: "call_at",
        fixed: Some("when")
    },
    |slf, p| {
        Loop::call_at(slf, p.fixed.expect("parsed"), p.callback, p.args, p.context)
            .map(Bound::into_any)
    }
);

/// `get_debug()` without any argument handling: asyncio's C `Future` calls it
/// for every future and task it creates.
///
/// # Safety
/// Called by the interpreter (GIL held) through a method descriptor of
/// `Loop`, which guarantees that `slf` is a `Loop` instance. The body can
/// neither panic nor release a reference, so it needs none of PyO3's
/// trampoline bookkeeping.
unsafe extern "C" fn get_debug(
    slf: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see above; `Borrowed` takes no reference and `get` only reads
    // the frozen Rust struct.
    unsafe {
        let py = assume_attached();
        let lp = Borrowed::from_ptr(py, slf).cast_unchecked::<Loop>();
        let result = if lp.get().debug() {
            ffi::Py_True()
        } else {
            ffi::Py_False()
        };
        ffi::Py_IncRef(result);
        result
    }
}

/// Installs the entry points on the `Loop` type, and adds the function that
/// registers the task-step type to `module`.
pub fn install(module: &Bound<'_, PyModule>, loop_type: &Bound<'_, PyType>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(_register_task_step_type, module)?)?;
    let methods: [(
        &'static CStr,
        &'static CStr,
        ffi::PyCFunctionFastWithKeywords,
    ); 4] = [
        (
            c"call_soon",
            c"call_soon($self, callback, *args, context=None)\n--\n\n\
              Arrange for callback(*args) to be called soon, in FIFO order.",
            call_soon,
        ),
        (
            c"call_soon_threadsafe",
            c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\n\
              Like call_soon(), but safe to call from any thread; wakes the loop.",
            call_soon_threadsafe,
        ),
        (
            c"call_later",
            c"call_later($self, delay, callback, *args, context=None)\n--\n\n\
              Arrange for callback(*args) to be called after delay seconds.",
            call_later,
        ),
        (
            c"call_at",
            c"call_at($self, when, callback, *args, context=None)\n--\n\n\
              Arrange for callback(*args) to be called at loop time when.",
            call_at,
        ),
    ];
    add_method(
        loop_type,
        ffi::PyMethodDef {
            ml_name: c"get_debug".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: get_debug,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"get_debug($self, /)\n--\n\nWhether the loop is in debug mode.".as_ptr(),
        },
    )?;
    for (name, doc, function) in methods {
        add_method(
            loop_type,
            ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: function,
                },
                ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
                ml_doc: doc.as_ptr(),
            },
        )?;
    }
    Ok(())
}
