//! Every reach into CPython or PyO3 internals, in one place.
//!
//! Each item below goes around the safe PyO3 API for speed on a hot path,
//! or because PyO3 has no API for it. Each was checked against CPython
//! 3.11.7, 3.12.1 and 3.13.0 (the versions the test matrix runs) and PyO3
//! 0.30.1 (pinned exactly in `Cargo.toml` because of [`fastcall_trampoline`]);
//! when either moves, these are the places to check again.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};

/// Releases a strong reference with a plain `Py_DECREF`.
///
/// `Py<T>`'s own drop first asks a thread-local whether the thread is
/// attached to the interpreter. Handles and their contents are only ever
/// released with the GIL held (by the interpreter's dealloc, or by the loop),
/// so the check is pure overhead on the path every callback takes.
///
/// # Safety
/// The GIL must be held.
pub unsafe fn decref(obj: impl Into<Option<Py<PyAny>>>) {
    if let Some(obj) = obj.into() {
        // SAFETY: the caller holds the GIL; `into_ptr` hands over our reference.
        unsafe { ffi::Py_DECREF(obj.into_ptr()) }
    }
}

/// Stops the garbage collector from tracking `obj` (see `handles.rs` for
/// when that is sound).
pub fn gc_untrack(obj: &Py<impl Sized>) {
    // SAFETY: `obj` is a live object of a GC type (a handle or a Context);
    // untracking an untracked object is allowed.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

/// Makes the garbage collector track `obj` again if it does not.
pub fn gc_track(obj: &Py<impl Sized>) {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object of a GC type; it is tracked only if it
    // is not already (tracking twice is a fatal error).
    unsafe {
        if ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

/// Whether the collector tracks `obj`.
pub fn gc_is_tracked(obj: &Py<impl Sized>) -> bool {
    // SAFETY: `obj` is a live object.
    unsafe { ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0 }
}

/// Whether weak references to `obj` exist (so it must not be reused).
/// Reads the weak-reference list through `tp_weaklistoffset`: the layout
/// rule of every CPython version checked.
pub fn has_weakrefs(obj: &Py<impl Sized>) -> bool {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object; `tp_weaklistoffset`, when positive, is
    // the offset of its weak-reference list pointer.
    unsafe {
        let offset = (*ffi::Py_TYPE(ptr)).tp_weaklistoffset;
        offset > 0 && !(*ptr.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
    }
}

/// Whether `obj` holds more than one strong reference (someone besides the
/// caller references it).
pub fn is_shared(obj: &Py<impl Sized>) -> bool {
    // SAFETY: `obj` is a live object we own a reference to.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) > 1 }
}

/// Whether `obj`'s type is exactly `tp` (a pointer comparison).
pub fn is_exact_type(obj: &Bound<'_, PyAny>, tp: &Py<PyType>) -> bool {
    // SAFETY: `obj` is a live object; its type pointer is only compared.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == tp.as_ptr().cast() }
}

/// Number of items of a tuple, read from the object (no token needed:
/// usable in `tp_traverse`).
pub fn tuple_len(args: &Py<PyTuple>) -> usize {
    // SAFETY: `args` is a live tuple.
    unsafe { ffi::PyTuple_GET_SIZE(args.as_ptr()) as usize }
}

/// A new reference to a copy of the current `contextvars` context.
pub fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: the GIL is held; PyContext_CopyCurrent returns a new reference
    // or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// Runs `f` inside the `contextvars.Context` `context` (entered with
/// `PyContext_Enter`, left with `PyContext_Exit` whatever `f` returns).
pub fn in_context<R>(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    let ctx = context.as_ptr();
    // SAFETY: `ctx` is a live Context (made by `copy_context`); entering it
    // is balanced by the exit below, on the same thread.
    if unsafe { ffi::PyContext_Enter(ctx) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = f();
    // SAFETY: balances the PyContext_Enter above.
    if unsafe { ffi::PyContext_Exit(ctx) } < 0 {
        let exit_error = PyErr::fetch(py);
        return result.and(Err(exit_error));
    }
    result
}

/// Calls `callback(*args)` inside `context`, as `context.run(callback, *args)`
/// does, but entering the context with `PyContext_Enter`/`PyContext_Exit`
/// and passing the tuple's item array straight to vectorcall.
#[inline]
pub fn call_in_context<'py>(
    py: Python<'py>,
    context: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<()> {
    let ctx = context.as_ptr();
    // SAFETY: `ctx` is a valid object pointer while `context` lives.
    if unsafe { ffi::PyContext_CheckExact(ctx) } == 0 {
        // Not a real Context: go through its `run` method, as asyncio does.
        let mut call_args = Vec::with_capacity(args.len() + 1);
        call_args.push(callback.clone());
        call_args.extend(args.iter());
        context.call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, call_args)?)?;
        return Ok(());
    }
    // SAFETY: `ctx` is a Context; entering it is balanced by the exit below.
    if unsafe { ffi::PyContext_Enter(ctx) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `args` is a tuple, so its item array holds `len` valid object
    // pointers that stay alive while `args` does; vectorcall borrows them.
    let result = unsafe {
        let tuple = args.as_ptr().cast::<ffi::PyTupleObject>();
        let items = (*tuple).ob_item.as_ptr();
        ffi::PyObject_Vectorcall(
            callback.as_ptr(),
            items,
            ffi::PyTuple_GET_SIZE(args.as_ptr()) as usize,
            std::ptr::null_mut(),
        )
    };
    // SAFETY: balances the PyContext_Enter above on the same thread; it does
    // not touch a pending exception.
    let exit_rc = unsafe { ffi::PyContext_Exit(ctx) };
    if result.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a non-NULL vectorcall result is a new reference we now own.
    drop(unsafe { Bound::from_owned_ptr(py, result) });
    if exit_rc < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// Calls `callable(*positional, **{name: value for each kwname})` through
/// vectorcall, with a tuple of keyword names the caller caches.
pub fn vectorcall_kw<'py>(
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

/// The identifier of the calling thread, as `threading.get_ident()`.
// `c_ulong` is not u64 on every target.
#[allow(clippy::useless_conversion)]
pub fn current_thread_id() -> u64 {
    // SAFETY: PyThread_get_thread_ident has no preconditions.
    u64::from(unsafe { ffi::PyThread_get_thread_ident() })
}

/// A `bytes` object only the loop references, allocated for `capacity`
/// bytes, whose contents the loop writes before handing it out; the object
/// of a read, made new or reused (`ferroloop_core::io::read_policy`,
/// "Reusing the object").
///
/// Writing into a `bytes` and changing its size is sound while nobody else
/// holds a reference: CPython's own `_PyBytes_Resize` relies on the same
/// rule. The size may shrink below the allocation: the object's memory is
/// freed by address, whatever its size says. Empty and one-byte objects
/// made from data are shared singletons, so no object of capacity 0 exists
/// here, and a filled object always holds at least one byte.
pub struct OwnedBytes<'py> {
    obj: Bound<'py, PyBytes>,
    capacity: usize,
}

impl<'py> OwnedBytes<'py> {
    /// A new object for `capacity` (at least 1) bytes; `None` if it cannot
    /// be allocated (the error is left unraised).
    pub fn new(py: Python<'py>, capacity: usize) -> Option<Self> {
        assert!(capacity > 0, "an empty bytes is a shared singleton");
        // SAFETY: PyBytes_FromStringAndSize(NULL, n) with n > 0 returns a
        // new, uninitialised object (never a singleton) or NULL.
        let obj = unsafe {
            let raw = ffi::PyBytes_FromStringAndSize(std::ptr::null(), capacity as ffi::Py_ssize_t);
            Bound::from_owned_ptr_or_err(py, raw)
                .ok()?
                .cast_into_unchecked::<PyBytes>()
        };
        Some(OwnedBytes { obj, capacity })
    }

    /// Takes `obj` back after it was handed out (by [`OwnedBytes::finish`],
    /// from an object of `capacity` bytes) if nobody else references it.
    ///
    /// # Safety
    /// `obj` must come from `finish` on an `OwnedBytes` of this `capacity`.
    pub unsafe fn reclaim(obj: Bound<'py, PyBytes>, capacity: usize) -> Option<Self> {
        // SAFETY: `obj` is a live object; its count is only read.
        let alone = unsafe { ffi::Py_REFCNT(obj.as_ptr()) } == 1;
        alone.then_some(OwnedBytes { obj, capacity })
    }

    /// How many bytes it was allocated for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The object as it is, for the loop to keep while nobody uses it.
    pub fn into_unfilled(self) -> Bound<'py, PyBytes> {
        self.obj
    }

    /// Its `capacity` writable bytes.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: the object is a live bytes; nobody else references it.
        unsafe { ffi::PyBytes_AS_STRING(self.obj.as_ptr()).cast_mut().cast() }
    }

    /// The object, holding its first `n` bytes (1 to `capacity`): its size
    /// is set to `n`, the terminating NUL rewritten, and a hash cached from
    /// an earlier use forgotten.
    pub fn finish(mut self, n: usize) -> Bound<'py, PyBytes> {
        assert!(n > 0 && n <= self.capacity, "filled size out of range");
        let data = self.as_mut_ptr();
        let raw = self.obj.as_ptr();
        // SAFETY: nobody else references the object (see above); `n` is
        // within its allocation, which has room for `capacity` bytes and a
        // NUL after them.
        unsafe {
            (*raw.cast::<ffi::PyVarObject>()).ob_size = n as ffi::Py_ssize_t;
            #[allow(deprecated)]
            {
                (*raw.cast::<ffi::PyBytesObject>()).ob_shash = -1;
            }
            *data.add(n) = 0;
        }
        self.obj
    }
}

/// Installs a `METH_FASTCALL | METH_KEYWORDS` method on `tp`, whose body
/// goes through PyO3's own trampoline (which keeps PyO3's bookkeeping of the
/// attached interpreter and turns panics into exceptions). The trampoline is
/// PyO3's internal `impl_::trampoline` API, hence the exact version pin.
macro_rules! fastcall_trampoline {
    ($body:ident) => {
        pyo3::impl_::trampoline::get_trampoline_function!(fastcall_cfunction_with_keywords, $body)
    };
}
pub(crate) use fastcall_trampoline;

/// Adds the C method `def` to type `tp` as a method descriptor, named
/// `def.ml_name`. The definition is leaked: it must outlive the type.
pub fn add_method(tp: &Bound<'_, PyType>, def: ffi::PyMethodDef) -> PyResult<()> {
    let def: *mut ffi::PyMethodDef = Box::leak(Box::new(def));
    // SAFETY: `tp` is a live type object and `def` lives forever.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(tp.py(), ffi::PyDescr_NewMethod(tp.as_type_ptr(), def))?
    };
    // SAFETY: `def` was just leaked (valid forever); `ml_name` is a
    // NUL-terminated static string.
    let name = unsafe { std::ffi::CStr::from_ptr((*def).ml_name) };
    tp.setattr(name.to_str().expect("ASCII method name"), descr)
}

/// A `Python` token inside a C method that PyO3 does not wrap (see
/// `loop_/fastcall.rs`'s `get_debug`).
///
/// # Safety
/// The caller must be running in a thread attached to the interpreter
/// (inside a method called by the interpreter).
pub unsafe fn assume_attached<'py>() -> Python<'py> {
    // SAFETY: guaranteed by the caller.
    unsafe { Python::assume_attached() }
}

/// A read-only `memoryview` over `data`, without a copy
/// (`PyMemoryView_FromMemory`). The view does not keep the memory alive:
/// the caller must `release()` it before `data` goes away.
pub fn memoryview_of<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the view reads `data.len()` bytes at `data`, which are valid
    // until the caller releases the view (documented above); PyBUF_READ
    // makes it read-only.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMemoryView_FromMemory(
                data.as_ptr() as *mut std::ffi::c_char,
                data.len() as ffi::Py_ssize_t,
                ffi::PyBUF_READ,
            ),
        )
    }
}

/// Whether `obj`'s type is exactly the type object `tp`.
pub fn same_object_type(obj: &Bound<'_, PyAny>, tp: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; its type pointer is only compared.
    unsafe { ffi::Py_TYPE(obj.as_ptr()).cast::<ffi::PyObject>() == tp.as_ptr() }
}

/// Where the running Python code is: the code object of the innermost
/// Python frame (the caller of a native hook) and the offset of its current
/// instruction, or `None` outside Python code. One frame read, no stack
/// walk; the line is worked out from the offset only when it is needed
/// ([`code_line`]), which is what most of a line lookup costs.
pub fn caller_location(py: Python<'_>) -> Option<(Py<PyAny>, i32)> {
    // SAFETY: the GIL is held; PyEval_GetFrame returns a borrowed frame (or
    // NULL), valid while this thread runs no other Python code, and
    // PyFrame_GetCode returns a new reference.
    unsafe {
        let frame = ffi::PyEval_GetFrame();
        if frame.is_null() {
            return None;
        }
        let offset = ffi::PyFrame_GetLasti(frame);
        let code = Bound::from_owned_ptr(py, ffi::PyFrame_GetCode(frame).cast());
        Some((code.unbind(), offset))
    }
}

/// The source line of the instruction at byte `offset` of `code` (a code
/// object from [`caller_location`]).
pub fn code_line(code: &Bound<'_, PyAny>, offset: i32) -> i32 {
    // SAFETY: `code` is a live code object (PyFrame_GetCode's result), and
    // PyCode_Addr2Line only reads its line table.
    unsafe { ffi::PyCode_Addr2Line(code.as_ptr().cast(), offset) }
}

// CPython's bound-method API, which pyo3-ffi does not declare (public and
// unchanged in every version checked).
extern "C" {
    static mut PyMethod_Type: ffi::PyTypeObject;
    fn PyMethod_Function(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Whether `obj` is a bound method (exactly `types.MethodType`) of
/// `function`: what `obj.__func__ is function` says, without the attribute
/// lookup.
pub fn is_method_of(obj: &Bound<'_, PyAny>, function: &Bound<'_, PyAny>) -> bool {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a live object; its type is only compared with the
    // address of `PyMethod_Type`, and `PyMethod_Function` is called only on
    // a method object, returning a borrowed reference that is only compared.
    unsafe {
        ffi::Py_TYPE(ptr) == std::ptr::addr_of_mut!(PyMethod_Type)
            && PyMethod_Function(ptr) == function.as_ptr()
    }
}
