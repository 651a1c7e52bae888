//! Borrowing the bytes of Python objects: the buffer protocol with an RAII
//! guard, and queued outgoing chunks that keep their object alive.

use std::ptr::NonNull;

use ferroloop_core::Chunk;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// An exported buffer (`PyObject_GetBuffer`), released when dropped.
///
/// While it lives, the exporter cannot resize or free the memory (a
/// `bytearray` refuses to resize while exported). It must be dropped with
/// the GIL held, which `!Send` (from the raw pointers inside) and the
/// `'py` lifetime make sure of.
pub struct BufferGuard<'py> {
    view: ffi::Py_buffer,
    _py: Python<'py>,
}

impl<'py> BufferGuard<'py> {
    /// Exports `obj`'s buffer, writable or read-only.
    pub fn get(obj: &Bound<'py, PyAny>, writable: bool) -> PyResult<Self> {
        let flags = if writable {
            ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: a zeroed Py_buffer is a valid out-parameter; on success
        // PyObject_GetBuffer fills it and we release it exactly once in Drop.
        unsafe {
            let mut view: ffi::Py_buffer = std::mem::zeroed();
            if ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, flags) != 0 {
                return Err(PyErr::fetch(obj.py()));
            }
            Ok(Self {
                view,
                _py: obj.py(),
            })
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.view.len as usize
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        if self.view.len <= 0 {
            return &[];
        }
        // SAFETY: the exporter keeps `len` bytes at `buf` alive and unmoved
        // while the buffer is exported.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.len()) }
    }

    /// The start of the memory, for a system call to write into (the guard
    /// must come from `get(_, true)`).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.view.buf.cast()
    }
}

impl Drop for BufferGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and
        // is released once; the GIL is held (see the type's documentation).
        unsafe { ffi::PyBuffer_Release(&mut self.view) }
    }
}

/// Runs `f` on the bytes of a bytes-like object (without a copy).
pub fn with_bytes<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    Ok(f(BufferGuard::get(data, false)?.as_slice()))
}

/// Outgoing data queued by a transport.
pub enum OutChunk {
    /// Part of an immutable `bytes` object, kept alive by `_owner`.
    Bytes {
        _owner: Py<PyAny>,
        ptr: NonNull<u8>,
        len: usize,
    },
    /// A copy (of a mutable buffer, whose contents may change after the
    /// write call returned).
    Owned(Vec<u8>),
}

// SAFETY: `ptr` points into the immutable `bytes` object that `_owner` keeps
// alive; the chunk is only touched with the GIL held.
unsafe impl Send for OutChunk {}

impl OutChunk {
    /// `data[skip..]` as a chunk: by reference for an exact `bytes`, copied
    /// otherwise.
    pub fn new(data: &Bound<'_, PyAny>, skip: usize) -> PyResult<Self> {
        if let Ok(b) = data.cast_exact::<PyBytes>() {
            let rest = &b.as_bytes()[skip..];
            return Ok(OutChunk::Bytes {
                _owner: data.clone().unbind(),
                ptr: NonNull::from(rest).cast(),
                len: rest.len(),
            });
        }
        with_bytes(data, |b| OutChunk::Owned(b[skip..].to_vec()))
    }
}

impl Chunk for OutChunk {
    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: see the `Send` impl: the bytes stay valid and unchanged
            // while `_owner` is held.
            OutChunk::Bytes { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            OutChunk::Owned(v) => v,
        }
    }
}
